// switchback process-server: receive agents' replication streams into a datastore (docs/transport.md).
import type { Command } from "commander";
import { parseDuration } from "../../domain/duration.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import { addRetentionOptions, parseRetention, type RetentionFlags } from "../retention-options.ts";

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) {
    throw new SwitchbackError(
      "INVALID_OPTION",
      `--listen ${JSON.stringify(s)} is not HOST:PORT; write e.g. 127.0.0.1:7443 (port 0 picks a free port)`,
    );
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

export function register(program: Command): void {
  const cmd = program
    .command("process-server")
    .description("receive replication streams from agents over HTTP and write them into a datastore")
    .requiredOption("--datastore <dir>", "the datastore")
    .requiredOption("--listen <host:port>", "address to listen on (port 0: any free port)")
    .requiredOption("--tokens <file>", "JSON file of agent tokens and the items each may write")
    .option("--json-logs", "log JSON lines (pino) to stdout")
    .option(
      "--prune-every <duration>",
      "with --keep-within: how often to prune every item and collect garbage",
      "1h",
    );
  addRetentionOptions(cmd, false).action(
    async (
      o: {
        datastore: string;
        listen: string;
        tokens: string;
        jsonLogs?: boolean;
        pruneEvery: string;
      } & RetentionFlags,
    ) => {
      const { host, port } = parseListen(o.listen);
      const policy = parseRetention(o);
      const retention = policy
        ? { policy, everyMs: parseDuration(o.pruneEvery, "--prune-every") }
        : undefined;
      const [{ loadTokensFile, ProcessServer, tokenAuthenticator }, { Datastore }] = await Promise.all([
        import("../../appliance/process-server.ts"),
        import("../../datastore/datastore.ts"),
      ]);
      const authenticate = tokenAuthenticator(loadTokensFile(o.tokens));
      const ds = await Datastore.open(o.datastore);
      const server = new ProcessServer({
        ds,
        authenticate,
        host,
        port,
        jsonLogs: o.jsonLogs === true,
        retention,
      });
      const url = await server.start();
      process.stdout.write(`process-server listening on ${url}\n`);
      await new Promise<void>((resolve, reject) => {
        let signals = 0;
        const stop = (sig: NodeJS.Signals) => {
          if (++signals > 1) process.exit(130); // a second signal: do not wait any longer
          server.log.info({ signal: sig }, "stopping: finishing requests, flushing");
          server.close().then(resolve, reject);
        };
        process.on("SIGTERM", stop);
        process.on("SIGINT", stop);
      });
      await ds.close();
      if (!o.jsonLogs) process.stderr.write("process-server stopped\n");
    },
  );
}

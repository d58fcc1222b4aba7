// switchback appliance: a site's appliance as its own process (docs/vault.md, "Appliances as their own
// processes"): process servers for its datastores, the master target, the site's `process` compute
// provider, and the control API the vault drives them through. It registers with the vault at start.
import path from "node:path";
import type { Command } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";
import { parseListen } from "./process-server.ts";

export function register(program: Command): void {
  program
    .command("appliance")
    .description(
      "run a site's appliance (process servers, master target, compute provider) as its own process, managed by the vault",
    )
    .option("--vault <url>", "the vault's URL (env SWITCHBACK_VAULT)")
    .option("--token <token>", "an appliance token ('switchback appliances token'; env SWITCHBACK_TOKEN)")
    .requiredOption("--name <name>", "the appliance's name (it keeps it across restarts)")
    .requiredOption("--site <site>", "the site it serves (name or id): a site of its own")
    .option(
      "--datastore <dir>",
      "a datastore folder on this host (repeat for more; created when new or empty)",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      "--listen <host:port>",
      "where the control API listens; process servers use the same host",
      "127.0.0.1:0",
    )
    .option(
      "--machines <dir>",
      "where the site's machines live (default: 'machines' beside the first datastore)",
    )
    .option(
      "--site-networks <file>",
      "run machines privileged (root): each in its own network and mount namespace on the site's networks this file describes ('switchback lab up' writes one per site)",
    )
    .option(
      "--no-replicas",
      "keep no replica images (drills and failovers then restore disks from the datastore: slower, no extra space)",
    )
    .option("--json-logs", "log JSON lines (pino) to stdout")
    .action(
      async (o: {
        vault?: string;
        token?: string;
        name: string;
        site: string;
        datastore: string[];
        listen: string;
        machines?: string;
        siteNetworks?: string;
        replicas: boolean;
        jsonLogs?: boolean;
      }) => {
        const vault = o.vault ?? process.env["SWITCHBACK_VAULT"];
        const token = o.token ?? process.env["SWITCHBACK_TOKEN"];
        if (vault === undefined || token === undefined || token === "") {
          throw new SwitchbackError(
            "INVALID_OPTION",
            "the appliance needs the vault's URL and a token: --vault URL --token T (an appliance token from 'switchback appliances token')",
          );
        }
        if (o.datastore.length === 0) {
          throw new SwitchbackError("INVALID_OPTION", "give the appliance at least one --datastore DIR");
        }
        const listen = parseListen(o.listen);
        let networks: import("../../compute/process/netns.ts").SiteNetworks | undefined;
        if (o.siteNetworks !== undefined) {
          if (process.getuid?.() !== 0) {
            throw new SwitchbackError(
              "PRIVILEGED_NEEDS_ROOT",
              "--site-networks runs machines in namespaces on loop devices, which needs root; run the appliance as root or without it",
            );
          }
          const { readSiteNetworks } = await import("../../compute/process/netns.ts");
          networks = readSiteNetworks(o.siteNetworks);
        }
        const { default: pino } = await import("pino");
        const { Appliance } = await import("../../appliance/appliance.ts");
        const log = pino(
          {
            level: o.jsonLogs ? "info" : (process.env["SWITCHBACK_LOG_LEVEL"] ?? "warn"),
            base: { role: "appliance", appliance: o.name },
            timestamp: pino.stdTimeFunctions.isoTime,
          },
          pino.destination({ dest: o.jsonLogs ? 1 : 2, sync: true }),
        );
        const appliance = new Appliance({
          vault,
          token,
          name: o.name,
          site: o.site,
          datastores: o.datastore,
          listen,
          machines: path.resolve(
            o.machines ?? path.join(path.dirname(path.resolve(o.datastore[0]!)), "machines"),
          ),
          cli: `${process.execPath} ${path.resolve(import.meta.dirname, "../main.mjs")}`,
          log,
          ...(o.jsonLogs ? { jsonLogs: true } : {}),
          ...(networks !== undefined ? { networks } : {}),
          ...(o.replicas === false ? { replicas: false } : {}),
        });
        let signals = 0;
        const stopped = new Promise<void>((resolve, reject) => {
          const stop = () => {
            if (++signals > 1) process.exit(130); // a second signal: do not wait any longer
            appliance.stop().then(resolve, reject);
          };
          process.on("SIGTERM", stop);
          process.on("SIGINT", stop);
        });
        await appliance.start();
        const out = (s: string) => process.stdout.write(`${s}\n`);
        out(`appliance ${o.name} of site ${o.site}: control API on ${appliance.controlUrl}`);
        for (const d of appliance.site?.datastores() ?? [])
          out(`process server for datastore ${d.name}: ${d.url}`);
        out("registered with the vault");
        await stopped;
        if (!o.jsonLogs) process.stderr.write("appliance stopped\n");
      },
    );
}

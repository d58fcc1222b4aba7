// switchback server: runs the vault (API, inventory, bootstrap on first start) until SIGINT/SIGTERM.
import { homedir } from "node:os";
import path from "node:path";
import type { Command } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";

function defaultData(): string {
  return (
    process.env["SWITCHBACK_DATA"] ??
    path.join(process.env["XDG_DATA_HOME"] ?? path.join(homedir(), ".local", "share"), "switchback")
  );
}

function parsePort(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n > 65535) {
    throw new SwitchbackError(
      "INVALID_PORT",
      `--port ${JSON.stringify(s)} is not a port; give 0 to 65535 (0: any free port)`,
    );
  }
  return n;
}

export function register(program: Command): void {
  program
    .command("server")
    .description("run the vault: API, inventory and the embedded sites (first start creates them)")
    .option(
      "--data <dir>",
      "folder of the embedded defaults (env SWITCHBACK_DATA, default ~/.local/share/switchback)",
    )
    .option("--db <url>", "database URL: postgres://… or sqlite:/path (default sqlite:DATA/vault.db)")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "8470")
    .option(
      "--heartbeat-interval <duration>",
      "how often agents and appliances report (3 missed: lost)",
      "15s",
    )
    .option(
      "--alert-webhook <url>",
      "POST alert events (JSON {alert, event}) to this URL; kept in the vault's settings (PUT /v1/settings/alert-webhook changes it)",
    )
    .action(
      async (o: {
        data?: string;
        db?: string;
        host: string;
        port: string;
        heartbeatInterval: string;
        alertWebhook?: string;
      }) => {
        const port = parsePort(o.port);
        const { parseDuration } = await import("../../domain/duration.ts");
        const heartbeatIntervalMs = parseDuration(o.heartbeatInterval, "--heartbeat-interval");
        const { startVault } = await import("../../vault/server.ts");
        const vault = await startVault({
          data: o.data ?? defaultData(),
          host: o.host,
          port,
          heartbeatIntervalMs,
          ...(o.db !== undefined ? { db: o.db } : {}),
          ...(o.alertWebhook !== undefined ? { alertWebhook: o.alertWebhook } : {}),
        });
        const out = (s: string) => process.stdout.write(`${s}\n`);
        out(`vault listening on ${vault.url}`);
        if (vault.adminToken !== null) {
          out(`admin token (shown once): ${vault.adminToken}`);
          out(
            `point the CLI at it: export SWITCHBACK_VAULT=${vault.url} SWITCHBACK_TOKEN=${vault.adminToken}`,
          );
        } else {
          out(
            `point the CLI at it: export SWITCHBACK_VAULT=${vault.url} SWITCHBACK_TOKEN=<the admin token printed at the first start>`,
          );
        }
        out(`portal: ${vault.url}/ (sign in with the admin token)`);
        await new Promise<void>((resolve, reject) => {
          let signals = 0;
          const stop = () => {
            if (++signals > 1) process.exit(130); // a second signal: do not wait any longer
            vault.close().then(resolve, reject);
          };
          process.on("SIGTERM", stop);
          process.on("SIGINT", stop);
        });
        process.stderr.write("vault stopped\n");
      },
    );
}

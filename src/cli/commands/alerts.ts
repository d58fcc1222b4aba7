// switchback alerts [list [--open] [--kind K] [--limit N] | show ALERT]
// What the vault raised and cleared: RPO breach, replication stalled, agent or appliance lost, job
// failed; and whether each event reached the webhook.
import { type Command, Option } from "commander";
import { ALERT_KINDS } from "../../domain/alerts.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import type { AlertRecord } from "../../vault/alerts/store.ts";
import { printFields, printJson, printRecords } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

function delivery(a: AlertRecord): string {
  if (a.delivery.deliveredAt !== null) return "delivered";
  return a.delivery.error === null ? "pending" : "failing";
}

export function register(program: Command): void {
  const alerts = program.command("alerts").description("alerts the vault raised and cleared");
  withVault(alerts.command("list", { isDefault: true }).description("list alerts, newest first"))
    .option("--open", "only the open ones")
    .addOption(new Option("--kind <kind>", "only alerts of this kind").choices([...ALERT_KINDS]))
    .option("--limit <n>", "at most this many (1 to 1000)", "100")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { open?: boolean; kind?: string; limit: string }) => {
      if (!/^\d+$/.test(o.limit) || Number(o.limit) < 1 || Number(o.limit) > 1000) {
        throw new SwitchbackError(
          "INVALID_LIMIT",
          `--limit ${JSON.stringify(o.limit)} is not a number from 1 to 1000`,
        );
      }
      const list = await vaultClient(o).get<AlertRecord[]>("/v1/alerts", {
        open: o.open ? "true" : undefined,
        kind: o.kind,
        limit: o.limit,
      });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["ALERT", (a) => a.id],
          ["KIND", (a) => a.kind],
          ["SEVERITY", (a) => a.severity],
          ["STATE", (a) => (a.open ? "open" : "cleared")],
          ["RAISED", (a) => a.raisedAt],
          ["WEBHOOK", delivery],
          ["MESSAGE", (a) => a.message],
        ],
        o.open ? "no open alerts" : "no alerts",
      );
    });
  withVault(
    alerts
      .command("show")
      .argument("<alert>", "the alert id (see 'alerts list')")
      .description("show an alert and its delivery to the webhook"),
  )
    .option("--json", "print the result as JSON")
    .action(async (id: string, o: Flags) => {
      const a = await vaultClient(o).get<AlertRecord>(`/v1/alerts/${seg(id)}`);
      if (o.json) return printJson(a);
      printFields([
        ["alert", a.id],
        ["kind", a.kind],
        ["severity", a.severity],
        ["subject", a.subject],
        ["state", a.open ? "open" : "cleared"],
        ["raised", a.raisedAt],
        ["cleared", a.clearedAt],
        ["webhook", delivery(a)],
        ["delivered", a.delivery.deliveredAt],
        ["delivery error", a.delivery.error],
        ["message", a.message],
      ]);
    });
}

// switchback policies [list | show NAME | create NAME --rpo … | update NAME [--rpo …]]
import type { Command } from "commander";
import type { Policy } from "../../vault/http/schemas.ts";
import { printFields, printJson, printRecords, seconds } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };
interface ValueFlags {
  rpo?: string;
  retention?: string;
  appEvery?: string;
  crashEvery?: string;
}

function body(o: ValueFlags): Record<string, string> {
  const b: Record<string, string> = {};
  if (o.rpo !== undefined) b.rpoThreshold = o.rpo;
  if (o.retention !== undefined) b.retention = o.retention;
  if (o.appEvery !== undefined) b.appConsistentEvery = o.appEvery;
  if (o.crashEvery !== undefined) b.crashConsistentEvery = o.crashEvery;
  return b;
}

function valueOptions(cmd: Command, defaults: boolean): Command {
  const d = (v: string) => (defaults ? v : undefined);
  return cmd
    .option("--rpo <duration>", "RPO threshold: alert when the newest point is older", d("15m"))
    .option("--retention <duration>", "how long recovery points are kept", d("72h"))
    .option("--app-every <duration>", "app-consistent point frequency (0: none)", d("4h"))
    .option("--crash-every <duration>", "crash-consistent point frequency", d("5m"));
}

function show(p: Policy, o: Flags): void {
  if (o.json) {
    printJson(p);
    return;
  }
  printFields([
    ["name", p.name],
    ["id", p.id],
    ["rpo threshold", seconds(p.rpoThresholdSeconds)],
    ["retention", seconds(p.retentionSeconds)],
    ["app-consistent every", seconds(p.appConsistentEverySeconds, true)],
    ["crash-consistent every", seconds(p.crashConsistentEverySeconds)],
    ["derived from", p.derivedFrom],
    ["created", p.createdAt],
  ]);
}

export function register(program: Command): void {
  const policies = program.command("policies").description("replication policies");
  withVault(policies.command("list", { isDefault: true }).description("list the policies"))
    .option("--json", "print the result as JSON")
    .action(async (o: Flags) => {
      const list = await vaultClient(o).get<Policy[]>("/v1/policies");
      if (o.json) return printJson(list);
      const names = new Map(list.map((p) => [p.id, p.name]));
      printRecords(
        list,
        [
          ["NAME", (p) => p.name],
          ["RPO", (p) => seconds(p.rpoThresholdSeconds)],
          ["RETENTION", (p) => seconds(p.retentionSeconds)],
          ["APP EVERY", (p) => seconds(p.appConsistentEverySeconds, true)],
          ["CRASH EVERY", (p) => seconds(p.crashConsistentEverySeconds)],
          [
            "DERIVED FROM",
            (p) => (p.derivedFrom === null ? "-" : (names.get(p.derivedFrom) ?? p.derivedFrom)),
          ],
        ],
        "no policies",
      );
    });
  withVault(policies.command("show").argument("<policy>", "name or id").description("show a policy"))
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) =>
      show(await vaultClient(o).get<Policy>(`/v1/policies/${seg(ref)}`), o),
    );
  withVault(
    valueOptions(
      policies.command("create").argument("<name>", "the new policy's name").description("create a policy"),
      true,
    ),
  )
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: Flags & ValueFlags) =>
      show(await vaultClient(o).post<Policy>("/v1/policies", { name, ...body(o) }), o),
    );
  withVault(
    valueOptions(
      policies
        .command("update")
        .argument("<policy>", "name or id")
        .description("change some of a policy's values"),
      false,
    ),
  )
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags & ValueFlags) =>
      show(await vaultClient(o).patch<Policy>(`/v1/policies/${seg(ref)}`, body(o)), o),
    );
}

// switchback appliances [list [--site S] | show NAME | token [--name N]]
import type { Command } from "commander";
import type { Appliance } from "../../vault/http/schemas.ts";
import { printFields, printJson, printRecords } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

export function register(program: Command): void {
  const appliances = program.command("appliances").description("each site's data-plane services");
  withVault(appliances.command("list", { isDefault: true }).description("list the appliances"))
    .option("--site <site>", "only this site's")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { site?: string }) => {
      const list = await vaultClient(o).get<Appliance[]>("/v1/appliances", { site: o.site });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (a) => a.name],
          ["SITE", (a) => a.site],
          ["ROLES", (a) => a.roles.join(",")],
          ["KIND", (a) => a.kind],
          ["LIVENESS", (a) => a.health.liveness],
          ["LAST HEARTBEAT", (a) => a.lastHeartbeatAt ?? "-"],
          ["URL", (a) => a.url ?? "-"],
        ],
        "no appliances",
      );
    });
  withVault(appliances.command("show").argument("<appliance>", "name or id").description("show an appliance"))
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) => {
      const a = await vaultClient(o).get<Appliance>(`/v1/appliances/${seg(ref)}`);
      if (o.json) return printJson(a);
      printFields([
        ["name", a.name],
        ["id", a.id],
        ["site", a.site],
        ["roles", a.roles.join(", ")],
        ["kind", a.kind],
        ["url", a.url],
        ["control API", a.controlUrl],
        ["liveness", a.health.liveness],
        ["last heartbeat", a.lastHeartbeatAt],
        ["created", a.createdAt],
      ]);
    });
  withVault(
    appliances
      .command("token")
      .description("create a token a `switchback appliance` process registers with (shown once)"),
  )
    .option("--name <name>", "a name for the token, for people")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { name?: string }) => {
      const t = await vaultClient(o).post<{ id: string; token: string }>("/v1/appliance-tokens", {
        ...(o.name !== undefined ? { name: o.name } : {}),
      });
      if (o.json) return printJson(t);
      process.stdout.write(`${t.token}\n`);
    });
}

// switchback sites [list | show NAME | create NAME [--subnet S]]
import type { Command } from "commander";
import type { Site } from "../../vault/http/schemas.ts";
import { printFields, printJson, printRecords } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

function showSite(s: Site): void {
  printFields([
    ["name", s.name],
    ["id", s.id],
    ["subnet", s.subnet],
    ["created", s.createdAt],
  ]);
}

export function register(program: Command): void {
  const sites = program.command("sites").description("the sites machines run at and fail over between");
  withVault(sites.command("list", { isDefault: true }).description("list the sites"))
    .option("--json", "print the result as JSON")
    .action(async (o: Flags) => {
      const list = await vaultClient(o).get<Site[]>("/v1/sites");
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (s) => s.name],
          ["ID", (s) => s.id],
          ["SUBNET", (s) => s.subnet ?? "-"],
          ["CREATED", (s) => s.createdAt],
        ],
        "no sites",
      );
    });
  withVault(sites.command("show").argument("<site>", "name or id").description("show a site"))
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) => {
      const s = await vaultClient(o).get<Site>(`/v1/sites/${seg(ref)}`);
      if (o.json) printJson(s);
      else showSite(s);
    });
  withVault(sites.command("create").argument("<name>", "the new site's name").description("create a site"))
    .option("--subnet <cidr>", "the site's IPv4 subnet, e.g. 10.10.0.0/24")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: Flags & { subnet?: string }) => {
      const s = await vaultClient(o).post<Site>("/v1/sites", {
        name,
        ...(o.subnet !== undefined ? { subnet: o.subnet } : {}),
      });
      if (o.json) printJson(s);
      else process.stdout.write(`created site ${s.name} (${s.id})\n`);
    });
}

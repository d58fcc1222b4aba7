// switchback datastores [list [--site S] | show NAME | create NAME --site S --path P]
// (`switchback datastore …`, singular, works on a datastore folder directly; these ask the vault.)
import path from "node:path";
import type { Command } from "commander";
import type { DatastoreInfo } from "../../vault/http/schemas.ts";
import { bytes, printFields, printJson, printRecords } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };
const size = (n: number | null) => (n === null ? "-" : bytes(n));

export function register(program: Command): void {
  const datastores = program
    .command("datastores")
    .description("where sites keep replica data (via the vault)");
  withVault(
    datastores.command("list", { isDefault: true }).description("list the datastores, capacity read now"),
  )
    .option("--site <site>", "only this site's")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { site?: string }) => {
      const list = await vaultClient(o).get<DatastoreInfo[]>("/v1/datastores", { site: o.site });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (d) => d.name],
          ["SITE", (d) => d.site],
          ["KIND", (d) => d.kind],
          ["USED", (d) => size(d.usedBytes)],
          ["CAPACITY", (d) => size(d.capacityBytes)],
          ["REACHABLE", (d) => (d.health.reachable ? "yes" : "no")],
          ["LOCATION", (d) => d.location],
        ],
        "no datastores",
      );
    });
  withVault(datastores.command("show").argument("<datastore>", "name or id").description("show a datastore"))
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) => {
      const d = await vaultClient(o).get<DatastoreInfo>(`/v1/datastores/${seg(ref)}`);
      if (o.json) return printJson(d);
      printFields([
        ["name", d.name],
        ["id", d.id],
        ["site", d.site],
        ["kind", d.kind],
        ["location", d.location],
        ["used", size(d.usedBytes)],
        ["capacity", size(d.capacityBytes)],
        ["reachable", d.health.reachable ? "yes" : "no"],
        ["last seen", d.lastSeenAt],
        ["created", d.createdAt],
      ]);
    });
  withVault(
    datastores
      .command("create")
      .argument("<name>", "the new datastore's name")
      .description(
        "create a local datastore: the vault initialises the folder (or adopts the datastore in it)",
      ),
  )
    .requiredOption("--site <site>", "the site it belongs to")
    .requiredOption("--path <dir>", "its folder on the vault's host (relative paths are taken from here)")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: Flags & { site: string; path: string }) => {
      const d = await vaultClient(o).post<DatastoreInfo>("/v1/datastores", {
        name,
        site: o.site,
        path: path.resolve(o.path),
      });
      if (o.json) printJson(d);
      else process.stdout.write(`created datastore ${d.name} (${d.id}) at ${d.location}\n`);
    });
}

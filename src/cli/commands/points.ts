// switchback points list
import type { Command } from "commander";
import { parseItemName } from "../../domain/ids.ts";
import { printJson, printTable } from "../output.ts";

export function register(program: Command): void {
  const points = program.command("points").description("recovery points of an item");
  points
    .command("list")
    .description("list an item's recovery points, oldest first")
    .requiredOption("--datastore <dir>", "the datastore")
    .requiredOption("--item <name>", "the replicated item")
    .option("--json", "print the result as JSON")
    .action(async (o: { datastore: string; item: string; json?: boolean }) => {
      const { Datastore } = await import("../../datastore/datastore.ts");
      const ds = await Datastore.open(o.datastore);
      const list = await ds.listPoints(parseItemName(o.item));
      if (o.json) {
        printJson(
          list.map((p) => ({
            id: p.id,
            createdAt: p.createdAt,
            consistency: p.consistency,
            parent: p.parent,
            changedBlocks: p.disks.reduce((s, d) => s + d.entries, 0),
            disks: p.disks.map((d) => ({ uuid: d.uuid, sizeBytes: d.sizeBytes, source: d.source })),
            warnings: p.warnings,
            stats: p.stats,
          })),
        );
      } else if (list.length === 0) console.log(`item ${o.item} has no recovery points yet`);
      else {
        printTable([
          ["ID", "CREATED", "CONSISTENCY", "CHANGED BLOCKS", "WARNINGS"],
          ...list.map((p) => [
            p.id,
            p.createdAt,
            p.consistency,
            String(p.disks.reduce((s, d) => s + d.entries, 0)),
            String(p.warnings.length),
          ]),
        ]);
      }
      await ds.close();
    });
}

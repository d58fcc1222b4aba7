// switchback points list ITEM            the item's recovery points, as the vault holds them
// switchback points list --datastore DIR --item NAME   read a datastore folder directly (data plane)

import type { Static } from "@sinclair/typebox";
import type { Command } from "commander";
import { parseItemName } from "../../domain/ids.ts";
import type { PointViewSchema } from "../../vault/items-view.ts";
import { printJson, printRecords, printTable } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";
import { wholeSeconds } from "./items.ts";

type PointView = Static<typeof PointViewSchema>;

async function fromDatastore(dir: string, item: string, json: boolean): Promise<void> {
  const { Datastore } = await import("../../datastore/datastore.ts");
  const ds = await Datastore.open(dir);
  const list = await ds.listPoints(parseItemName(item));
  if (json) {
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
  } else if (list.length === 0) console.log(`item ${item} has no recovery points yet`);
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
}

export function register(program: Command): void {
  const points = program.command("points").description("recovery points of an item");
  const list: Command = withVault(
    points
      .command("list")
      .argument("[item]", "the replicated item (name or id)")
      .description(
        "list an item's recovery points: from the vault, newest first; with --datastore, read from a datastore folder, oldest first",
      )
      .option("--datastore <dir>", "read this datastore folder directly instead of asking the vault")
      .option("--item <name>", "the replicated item (the datastore's name for it)")
      .option("--json", "print the result as JSON"),
  );
  list.action(
    async (
      arg: string | undefined,
      o: VaultFlags & { datastore?: string; item?: string; json?: boolean },
    ) => {
      const item = arg ?? o.item;
      if (item === undefined) list.error("error: name the item: 'points list ITEM'", { exitCode: 2 });
      if (o.datastore !== undefined) return fromDatastore(o.datastore, item, o.json === true);
      const got = await vaultClient(o).get<PointView[]>(`/v1/items/${seg(item)}/points`);
      if (o.json) return printJson(got);
      printRecords(
        got,
        [
          ["ID", (p) => p.id],
          ["CREATED", (p) => p.createdAt],
          ["AGE", (p) => wholeSeconds(p.ageSeconds)],
          ["CONSISTENCY", (p) => p.consistency],
        ],
        `item ${item} has no recovery points at its target`,
      );
    },
  );
}

// switchback datastore init|check|prune|gc|rebuild-index
// The datastore modules are loaded when a command runs, so that the CLI starts fast.
import type { Command } from "commander";
import { parseItemName } from "../../domain/ids.ts";
import { killAfterStep } from "../fault.ts";
import { bytes, printJson } from "../output.ts";
import { addRetentionOptions, parseRetention } from "../retention-options.ts";

const load = async () => {
  const [{ Datastore }, { checkDatastore }, { collectGarbage }, { prune }, { rebuildIndex }] =
    await Promise.all([
      import("../../datastore/datastore.ts"),
      import("../../datastore/check.ts"),
      import("../../datastore/gc.ts"),
      import("../../datastore/prune.ts"),
      import("../../datastore/rebuild-index.ts"),
    ]);
  return { Datastore, checkDatastore, collectGarbage, prune, rebuildIndex };
};

export function register(program: Command): void {
  const ds = program.command("datastore").description("create, check and prune datastores");

  ds.command("init")
    .description("create an empty datastore in a folder")
    .requiredOption("--path <dir>", "folder for the datastore (created if missing)")
    .option("--json", "print the result as JSON")
    .action(async (o: { path: string; json?: boolean }) => {
      const { Datastore } = await load();
      const d = await Datastore.init(o.path);
      if (o.json) printJson({ path: d.backend.location, ...d.config });
      else console.log(`created datastore ${d.config.id} at ${d.backend.location}`);
    });

  ds.command("check")
    .description("prove the datastore: packs, index, manifests; with --read-data every block's hash")
    .requiredOption("--datastore <dir>", "the datastore")
    .option("--read-data", "read every pack and check every block against its hash")
    .option("--json", "print the result as JSON")
    .action(async (o: { datastore: string; readData?: boolean; json?: boolean }) => {
      const { Datastore, checkDatastore } = await load();
      const d = await Datastore.open(o.datastore);
      const r = await checkDatastore(d, { readData: o.readData === true });
      if (o.json) printJson(r);
      else {
        for (const p of r.problems) console.log(`error: ${p.object}: ${p.message}`);
        console.log(
          `${r.packs} packs, ${r.indexFiles} index files, ${r.blocks} blocks, ${r.points} points checked${r.readData ? ", data read" : ""}: ${r.problems.length === 0 ? "no problems" : `${r.problems.length} problem(s)`}`,
        );
      }
      await d.close();
      if (r.problems.length > 0) process.exitCode = 1;
    });

  addRetentionOptions(
    ds
      .command("prune")
      .description("delete recovery points outside the retention policy, then free unreferenced data")
      .requiredOption("--datastore <dir>", "the datastore")
      .requiredOption("--item <name>", "the replicated item"),
    true,
  )
    .option("--dry-run", "say what would be deleted, change nothing")
    .option("--no-gc", "do not free unreferenced data afterwards")
    .option("--json", "print the result as JSON")
    .action(
      async (o: {
        datastore: string;
        item: string;
        keepWithin: string;
        keepAppEvery?: string;
        keepCrashEvery?: string;
        keepAllWithin?: string;
        dryRun?: boolean;
        gc: boolean;
        json?: boolean;
      }) => {
        const { Datastore, collectGarbage, prune } = await load();
        const d = await Datastore.open(o.datastore);
        const item = parseItemName(o.item);
        const policy = parseRetention(o)!;
        const r = await prune(d, item, policy, {
          now: new Date(),
          dryRun: o.dryRun === true,
          afterStep: killAfterStep("prune"),
        });
        const gc = o.gc && !o.dryRun ? await collectGarbage(d, { afterStep: killAfterStep("gc") }) : null;
        if (o.json) printJson({ ...r, gc });
        else {
          for (const p of r.deleted) console.log(`${o.dryRun ? "would delete" : "deleted"} ${p}`);
          console.log(
            `${r.kept.length} point(s) kept, ${r.deleted.length} ${o.dryRun ? "to delete" : "deleted"}`,
          );
          if (gc)
            console.log(
              `gc: ${gc.packsDeleted} pack(s) deleted, ${gc.packsRewritten} rewritten, ${bytes(gc.bytesFreed)} freed`,
            );
        }
        await d.close();
      },
    );

  ds.command("rebuild-index")
    .description("rebuild the index from the packs' trailers (after losing or damaging index files)")
    .requiredOption("--datastore <dir>", "the datastore")
    .option("--read-data", "also check that each pack's bytes match its name; damaged packs are left out")
    .option("--json", "print the result as JSON")
    .action(async (o: { datastore: string; readData?: boolean; json?: boolean }) => {
      const { Datastore, rebuildIndex } = await load();
      const d = await Datastore.open(o.datastore);
      const r = await rebuildIndex(d, { readData: o.readData === true });
      if (o.json) printJson(r);
      else {
        for (const p of r.damagedPacks) console.log(`damaged pack left out: ${p}`);
        console.log(
          `index rebuilt: ${r.packs} pack(s), ${r.blocks} block(s); ${r.indexFilesRemoved} old index file(s) removed`,
        );
      }
      await d.close();
      if (r.damagedPacks.length > 0) process.exitCode = 1;
    });

  ds.command("gc")
    .description("free packs that no recovery point references")
    .requiredOption("--datastore <dir>", "the datastore")
    .option("--json", "print the result as JSON")
    .action(async (o: { datastore: string; json?: boolean }) => {
      const { Datastore, collectGarbage } = await load();
      const d = await Datastore.open(o.datastore);
      const gc = await collectGarbage(d, { afterStep: killAfterStep("gc") });
      if (o.json) printJson(gc);
      else
        console.log(
          `gc: ${gc.packsDeleted} pack(s) deleted, ${gc.packsRewritten} rewritten, ${bytes(gc.bytesFreed)} freed`,
        );
      await d.close();
    });
}

// switchback restore: write a point's disk to an image file or block device.
import type { Command } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";
import { parseItemName, parsePointId } from "../../domain/ids.ts";
import { bytes, printJson } from "../output.ts";

export function register(program: Command): void {
  program
    .command("restore")
    .description(
      "write a recovery point's disk to an image file or block device (full, or --delta: only differing blocks)",
    )
    .requiredOption("--datastore <dir>", "the datastore")
    .requiredOption("--item <name>", "the replicated item")
    .requiredOption("--point <id>", "a point id, or latest")
    .requiredOption("--disk <n>", "the disk's position (0-based) as given at enable time")
    .requiredOption("--to <path>", "image file (created if missing) or block device")
    .option("--delta", "the target holds an older copy: write only the blocks that differ")
    .option("--no-verify", "skip reading the target back and comparing it with the point")
    .option("--json", "print the result as one JSON object")
    .action(
      async (o: {
        datastore: string;
        item: string;
        point: string;
        disk: string;
        to: string;
        delta?: boolean;
        verify: boolean;
        json?: boolean;
      }) => {
        const item = parseItemName(o.item);
        const point = o.point === "latest" ? "latest" : parsePointId(o.point);
        if (!/^\d+$/.test(o.disk)) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--disk ${JSON.stringify(o.disk)} is not a disk number; disks are numbered 0, 1, …`,
          );
        }
        const [{ Datastore }, { restoreDisk }] = await Promise.all([
          import("../../datastore/datastore.ts"),
          import("../../replication/restore.ts"),
        ]);
        const ds = await Datastore.open(o.datastore);
        const lock = await ds.lock("shared", `restore ${item}`);
        try {
          const r = await restoreDisk(ds, {
            item,
            point,
            disk: Number(o.disk),
            to: o.to,
            delta: o.delta === true,
            verify: o.verify,
          });
          if (o.json) printJson(r);
          else {
            console.log(`restored disk ${r.disk} of ${item} at point ${r.pointId} to ${r.to} (${r.mode})`);
            console.log(
              `  wrote ${r.blocksWritten} block(s) (${bytes(r.bytesWritten)}) of ${bytes(r.sizeBytes)} in ${r.durationMs} ms${r.zeroBlocksByDevice > 0 ? ` (${r.zeroBlocksByDevice} zero block(s) zeroed by the device)` : ""}${r.verified ? `; verified in ${r.verifyMs} ms` : "; not verified"}`,
            );
          }
        } finally {
          await lock.release();
          await ds.close();
        }
      },
    );
}

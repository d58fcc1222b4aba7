// One point of a disk image into a local datastore, as `replicate-once --snapshot none` takes it, with
// the native comparing pass on or off: for tests that hold the native passes to the JavaScript ones.
import { Datastore } from "../../src/datastore/datastore.ts";
import { BLOCK_SIZE } from "../../src/datastore/format.ts";
import { type DiskEntries, manifestSource } from "../../src/datastore/manifest.ts";
import { type DiskUuid, type ItemName, type PointId, parseItemName } from "../../src/domain/ids.ts";
import {
  type ReplicateOptions,
  type ReplicateResult,
  replicateOnce,
} from "../../src/replication/replicate.ts";
import { LocalSink } from "../../src/replication/sink.ts";

export async function imagePoint(
  image: string,
  ds: string,
  state: string,
  nativeUnitPass: boolean,
  item = parseItemName("web1"),
  more: Partial<ReplicateOptions> = {},
): Promise<ReplicateResult> {
  const d = await Datastore.open(ds);
  try {
    return await replicateOnce({
      item,
      disks: [image],
      stateDir: state,
      sink: new LocalSink(d),
      consistency: "crash",
      snapshot: "none",
      nativeUnitPass,
      ...more,
    });
  } finally {
    await d.close();
  }
}

/** The uuid a made-up point gives its disk `d`. */
export function testDiskUuid(d: number): DiskUuid {
  return `00000000-0000-4000-8000-${String(d + 1).padStart(12, "0")}` as DiskUuid;
}

/**
 * Commits a point made up for a test, straight from its entries: disk d is `disks[d].blocks` blocks
 * long and lists `disks[d].entries` (sorted, unique blocks).
 */
export async function commitEntries(
  ds: Datastore,
  o: {
    item: ItemName;
    id: PointId;
    parent: PointId | null;
    createdAt: Date;
    disks: { blocks: number; entries: DiskEntries }[];
  },
): Promise<void> {
  await ds.commitPoint(
    manifestSource({
      header: {
        version: 1,
        item: o.item,
        id: o.id,
        parent: o.parent,
        createdAt: o.createdAt.toISOString(),
        consistency: "crash",
        warnings: [],
        disks: o.disks.map((d, i) => ({
          uuid: testDiskUuid(i),
          sizeBytes: d.blocks * BLOCK_SIZE,
          sectorSize: 512,
          blockSize: BLOCK_SIZE,
          entries: d.entries.blocks.length,
        })),
        stats: {},
      },
      disks: o.disks.map((d) => d.entries),
    }),
  );
}

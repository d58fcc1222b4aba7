// The master-target role of an appliance: it works on real disks at its own site (docs/vault.md,
// "Reprotect and failback data flow"). It seeds its site's datastore with a point read locally from
// disks already there (original-location reprotect: the running copy then resyncs by comparison
// and only differing blocks cross the network), and applies a point onto those disks with a delta
// restore (failback: only differing blocks are written).
//
// Invariants: a seed carries the disks' own uuids (the item's identity), so it can only become a
// point of the item it belongs to; it is the item's latest point, a child of the previous latest when
// there is one; the disks are read while their machine is stopped, so no snapshot is needed.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { applyPointToImages } from "../compute/images.ts";
import { Datastore } from "../datastore/datastore.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { type DiskUuid, type ItemName, type PointId, parseDiskUuid, parseItemName } from "../domain/ids.ts";
import { AgentState } from "../replication/agent-state.ts";
import { inspectDisk } from "../replication/disk-source.ts";
import { replicateOnce } from "../replication/replicate.ts";
import { LocalSink } from "../replication/sink.ts";

export interface SeedOptions {
  /** the site's local datastore folder */
  datastore: string;
  item: string;
  /** the machine's disk images (or devices) at this site, each with its uuid in the item's points */
  disks: { path: string; uuid: string }[];
  /** where the throwaway agent state goes (hashes: 2 MiB per GiB of disk); default: the OS temp folder */
  stateDir?: string;
}

export interface SeedResult {
  pointId: PointId;
  /** the item's previous latest point in this datastore, or null when the seed is its first */
  parent: PointId | null;
  mode: "full" | "resync";
  bytesRead: number;
  /** bytes of blocks the datastore did not hold yet */
  bytesStored: number;
  /** blocks the seed's manifest lists (all non-zero blocks for a first seed; those that differ from the parent otherwise) */
  blocks: number;
}

/** Takes a point of stopped local disks into the site's datastore; it becomes the item's latest point. */
export async function seedPoint(o: SeedOptions): Promise<SeedResult> {
  const item = parseItemName(o.item);
  if (o.disks.length === 0) {
    throw new SwitchbackError("SEED_NO_DISKS", `seeding item ${item}: no disks were given`);
  }
  const given = o.disks.map((d) => ({ path: d.path, uuid: parseDiskUuid(d.uuid) }));
  const ds = await Datastore.open(o.datastore);
  const lock = await ds.lock("shared", `seed ${item}`);
  const parentDir = o.stateDir ?? tmpdir();
  mkdirSync(parentDir, { recursive: true });
  const scratch = mkdtempSync(path.join(parentDir, "switchback-seed-"));
  try {
    const disks = await inPointOrder(ds, item, given, o.datastore);
    const infos = disks.map((d) => inspectDisk(d.path));
    // a throwaway agent state that knows the disks by their item's uuids; without hashes of an
    // earlier point it reads every block, and against an existing point it stores only what differs
    const state = AgentState.enable(path.join(scratch, "state"), item, infos);
    state.machine.disks.forEach((d, i) => {
      d.uuid = disks[i]!.uuid;
    });
    state.saveMachine();
    const sink = new LocalSink(ds, undefined, scratch);
    const r = await replicateOnce({
      item,
      disks: disks.map((d) => d.path),
      stateDir: state.dir,
      sink,
      consistency: "crash",
      snapshot: "none",
    });
    return {
      pointId: r.pointId,
      parent: r.parent,
      mode: r.mode === "full" ? "full" : "resync",
      bytesRead: r.bytesRead,
      bytesStored: sink.bytesStored,
      blocks: r.changedBlocks,
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await lock.release();
    await ds.close();
  }
}

/**
 * The disks in the order of the item's latest point (disk i of an item keeps its uuid for the item's
 * life), checked against it: the same uuids and sizes. Without points, the order given.
 */
async function inPointOrder(
  ds: Datastore,
  item: ItemName,
  given: { path: string; uuid: DiskUuid }[],
  where: string,
): Promise<{ path: string; uuid: DiskUuid }[]> {
  const ids = await ds.pointIds(item);
  const latest = ids[ids.length - 1];
  if (latest === undefined) return given;
  const header = await ds.readPointHeader(item, latest);
  const theirs = header.disks.map((d) => d.uuid).join(", ");
  if (header.disks.length !== given.length) {
    throw new SwitchbackError(
      "SEED_DISKS_MISMATCH",
      `item ${item} has ${header.disks.length} disk(s) in ${where} (uuids ${theirs}) but ${given.length} were given to seed; give every disk of the item`,
    );
  }
  return header.disks.map((d) => {
    const g = given.find((x) => x.uuid === d.uuid);
    if (g === undefined) {
      throw new SwitchbackError(
        "SEED_DISKS_MISMATCH",
        `item ${item} in ${where} has disk uuids ${theirs}; the disks given to seed have ${given.map((x) => x.uuid).join(", ")}; seed the item with its own disks`,
      );
    }
    const size = inspectDisk(g.path).sizeBytes;
    if (size !== d.sizeBytes) {
      throw new SwitchbackError(
        "SEED_DISK_SIZE_MISMATCH",
        `disk ${g.path} (uuid ${d.uuid}) is ${size} bytes but ${d.sizeBytes} in point ${latest} of item ${item}; a resized disk cannot seed the item`,
      );
    }
    return g;
  });
}

export interface ApplyOptions {
  datastore: string;
  item: string;
  /** a point id, or "latest" */
  point: string;
  /** the disks to rewrite, each with the uuid of the point's disk it receives */
  disks: { path: string; uuid: string }[];
}

/** Rewrites existing disks to a point, writing only the blocks that differ (failback onto the home disks); verified. */
export async function applyPoint(
  o: ApplyOptions,
): Promise<{ pointId: PointId; blocksWritten: number; bytesWritten: number }> {
  const r = await applyPointToImages(
    { datastore: o.datastore, item: o.item, point: o.point },
    o.disks.map((d) => ({ path: d.path, uuid: parseDiskUuid(d.uuid) })),
  );
  return { pointId: r.pointId, blocksWritten: r.blocksWritten, bytesWritten: r.bytesWritten };
}

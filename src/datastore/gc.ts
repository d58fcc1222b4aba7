// Garbage collection: frees packs whose blocks no point references. Holds the exclusive lock (a
// running replication could otherwise rely on a block GC is about to free). Order, for crash safety:
//   1. copy the live blocks of mostly-dead packs into new packs (fsynced) and index them;
//   2. write one new index covering every pack that stays;
//   3. delete the old index files; 4. delete the dead packs; 5. sweep temporary leftovers.
// A kill -9 between any two steps leaves every referenced block in a pack that some index names, or
// in a pack not yet indexed, which the next GC adopts: a pack on disk that no index names is read and
// kept if it holds a live block found nowhere else.
import { SwitchbackError } from "../domain/errors.ts";
import { BlockIndex, decodeIndexFile, NO_LOCATION } from "./block-index.ts";
import type { Datastore } from "./datastore.ts";
import { verifyBlock } from "./datastore.ts";
import { BLOCK_SIZE, ENTRY_BYTES, FRAME_MAX_BLOCKS, paths } from "./format.ts";
import { HASH_BYTES, isZeroHash } from "./hash.ts";
import { makeFrame, readEntry } from "./pack.ts";

export interface GcResult {
  liveBlocks: number;
  packsKept: number;
  packsDeleted: number;
  packsRewritten: number;
  packsAdopted: number;
  blocksCopied: number;
  bytesFreed: number;
  indexFilesBefore: number;
  tempFilesRemoved: number;
}

/** Repack a pack when less than this share of its blocks is still live. */
export const REPACK_BELOW = 0.75;

export async function collectGarbage(
  ds: Datastore,
  o: { afterStep?: (step: string) => void; lockWaitMs?: number } = {},
): Promise<GcResult> {
  const lock = await ds.lock("exclusive", "gc", o.lockWaitMs !== undefined ? { waitMs: o.lockWaitMs } : {});
  try {
    return await gc(ds, o.afterStep ?? (() => {}));
  } finally {
    // also when GC failed halfway: an index that still names removed packs would make writers skip
    // blocks as "already stored"
    try {
      await ds.reloadIndex();
    } finally {
      await lock.release();
    }
  }
}

async function gc(ds: Datastore, step: (s: string) => void): Promise<GcResult> {
  const be = ds.backend;
  // mark: every hash any manifest names is live (a delta's entries are blocks of that point)
  const live = new BlockIndex(1 << 16);

  for (const item of await ds.items()) {
    for (const id of await ds.pointIds(item)) {
      const m = await ds.readPoint(item, id);
      for (const d of m.disks) {
        for (let i = 0; i < d.blocks.length; i++)
          if (!isZeroHash(d.hashes, i * HASH_BYTES)) live.add(d.hashes, i * HASH_BYTES, NO_LOCATION);
      }
    }
  }

  // what the index files say, pack by pack
  const indexNames = await be.list("index");
  const records = new Map<string, Buffer[]>();
  for (const n of indexNames) {
    // views (mapped where the backend can): the records stay the page cache's
    for (const s of decodeIndexFile(n, await be.view(`index/${n}`))) {
      const list = records.get(s.packId) ?? [];
      list.push(s.entries);
      records.set(s.packId, list);
    }
  }
  // packs on disk
  const onDisk = await ds.packsOnDisk();
  // adopt packs that no index names (a writer killed after its packs, before its index)
  let adopted = 0;
  for (const [packId, size] of onDisk) {
    if (records.has(packId)) continue;
    try {
      records.set(packId, [(await ds.readPackTrailer(packId, size)).entries]);
      adopted++;
    } catch {
      // an unreadable stray pack holds nothing we can use; it is deleted below
    }
  }

  const result: GcResult = {
    liveBlocks: live.size,
    packsKept: 0,
    packsDeleted: 0,
    packsRewritten: 0,
    packsAdopted: adopted,
    blocksCopied: 0,
    bytesFreed: 0,
    indexFilesBefore: indexNames.length,
    tempFilesRemoved: 0,
  };

  // sweep: decide per pack. A live block is "covered" once a kept pack holds it.
  const covered = new BlockIndex(1 << 16);
  const keep: { packId: string; entries: Buffer }[] = [];
  const repack: { packId: string; entries: Buffer }[] = [];
  const drop: string[] = [];
  const packIds = [...records.keys()].filter((p) => onDisk.has(p)).sort();
  for (const packId of packIds) {
    const entries = Buffer.concat(records.get(packId)!);
    let liveHere = 0;
    let total = 0;
    for (let at = 0; at < entries.length; at += ENTRY_BYTES) {
      total++;
      if (live.has(entries, at) && !covered.has(entries, at)) liveHere++;
    }
    if (liveHere === 0) drop.push(packId);
    else if (liveHere < total * REPACK_BELOW) repack.push({ packId, entries });
    else {
      keep.push({ packId, entries: dedupeRecords(entries) });
      for (let at = 0; at < entries.length; at += ENTRY_BYTES) covered.add(entries, at, NO_LOCATION);
    }
  }

  // 1. copy live blocks out of packs being repacked
  // copy: the blocks are still indexed in the packs being repacked; they must be written again
  const writer = ds.writer({ copy: true });
  for (const { packId, entries } of repack) {
    const frames = new Map<number, number[]>();
    for (let at = 0; at < entries.length; at += ENTRY_BYTES) {
      if (!live.has(entries, at) || covered.has(entries, at)) continue;
      covered.add(entries, at, NO_LOCATION);
      const list = frames.get(entries.readUInt32LE(at + 32)) ?? [];
      list.push(at);
      frames.set(entries.readUInt32LE(at + 32), list);
    }
    let hashes: Buffer[] = [];
    let blocks: Buffer[] = [];
    const emit = async () => {
      if (blocks.length === 0) return;
      await writer.add(makeFrame(Buffer.concat(hashes), Buffer.concat(blocks)));
      result.blocksCopied += blocks.length;
      hashes = [];
      blocks = [];
    };
    for (const ats of frames.values()) {
      const first = readEntry(entries, ats[0]!);
      const loc = { packId, ...first.loc };
      const raw = await ds.readFrame(loc);
      for (const at of ats) {
        const e = readEntry(entries, at);
        const data = raw.subarray(e.loc.slot * BLOCK_SIZE, (e.loc.slot + 1) * BLOCK_SIZE);
        verifyBlock(data, e.hash, { packId, ...e.loc });
        hashes.push(Buffer.from(e.hash));
        blocks.push(Buffer.from(data));
        if (blocks.length === FRAME_MAX_BLOCKS) await emit();
      }
    }
    await emit();
    result.packsRewritten++;
  }
  await writer.flush();
  step("repacked");

  // 2. one index for every pack that stays (the writer's new index file stays as it is)
  const after = new Set(await be.list("index"));
  const fresh = [...after].filter((n) => !indexNames.includes(n));
  const consolidated = keep.length > 0 ? await ds.writeIndexFile(keep) : null;
  step("indexed");

  // 3. old index files go, 4. then the packs nothing names any more
  const stays = new Set([...fresh, ...(consolidated ? [`${consolidated}.idx`] : [])]);
  // before removing anything: every live block must be named by an index that stays
  const post = new BlockIndex(1 << 16);
  for (const n of stays) post.addIndexFile(n, await be.view(`index/${n}`));
  let lost = 0;
  let firstLost = "";
  live.forEach((h) => {
    if (post.has(h)) return;
    if (lost++ === 0) firstLost = h.toString("hex");
  });
  if (lost > 0) {
    throw new SwitchbackError(
      "GC_WOULD_LOSE_DATA",
      `gc stopped before removing anything: ${lost} live block(s) (first ${firstLost}) would not be indexed afterwards; the datastore is unchanged apart from new packs, run 'datastore check' and report this`,
    );
  }
  for (const n of indexNames) {
    if (stays.has(n)) continue;
    await be.remove(`index/${n}`);
    step(`removed index ${n}`);
  }
  const keptIds = new Set(keep.map((k) => k.packId));
  for (const packId of onDisk.keys()) {
    if (keptIds.has(packId)) continue;
    if (fresh.length > 0 && (await packNamedBy(ds, packId, fresh))) continue;
    result.bytesFreed += onDisk.get(packId)!;
    await be.remove(paths.pack(packId));
    result.packsDeleted++;
    step(`removed pack ${packId}`);
  }
  for (const t of await be.listTemporary("")) {
    // staging/ is the process servers' (manifests uploaded in parts), whatever its files are named
    if (t.startsWith("staging/")) continue;
    await be.remove(t);
    result.tempFilesRemoved++;
  }
  result.packsKept = keep.length + writer.packsWritten;
  return result;
}

async function packNamedBy(ds: Datastore, packId: string, indexFiles: string[]): Promise<boolean> {
  for (const n of indexFiles) {
    for (const s of decodeIndexFile(n, await ds.backend.read(`index/${n}`)))
      if (s.packId === packId) return true;
  }
  return false;
}

/** An index lists each (pack, hash) once, even when an old and an adopted index both named it. */
function dedupeRecords(entries: Buffer): Buffer {
  const seen = new BlockIndex(1024);

  const out: Buffer[] = [];
  for (let at = 0; at < entries.length; at += ENTRY_BYTES) {
    if (seen.add(entries, at, NO_LOCATION)) out.push(entries.subarray(at, at + ENTRY_BYTES));
  }
  return Buffer.concat(out);
}

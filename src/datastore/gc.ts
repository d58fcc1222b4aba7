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
  // Every record on disk in one index: the index files (views: mapped, the page cache's) and the
  // trailers of packs that no index names (a writer killed after its packs, before its index), which
  // are adopted. A block's marks are bits at its first record's number: a bit per record, where a set
  // of hashes cost ~60 bytes a block.
  const indexNames = await be.list("index");
  const files = await Promise.all(
    indexNames.map(async (name) => ({ name, buf: await be.view(`index/${name}`) })),
  );
  const all = await BlockIndex.load(files);
  const records = new Map<string, Buffer[]>();
  for (const { name, buf } of files) {
    for (const s of decodeIndexFile(name, buf)) {
      const list = records.get(s.packId) ?? [];
      list.push(s.entries);
      records.set(s.packId, list);
    }
  }
  const onDisk = await ds.packsOnDisk();
  let adopted = 0;
  for (const [packId, size] of onDisk) {
    if (records.has(packId)) continue;
    try {
      const { entries } = await ds.readPackTrailer(packId, size);
      records.set(packId, [entries]);
      all.addRecords(packId, entries);
      adopted++;
    } catch {
      // an unreadable stray pack holds nothing we can use; it is deleted below
    }
  }

  // mark: every hash any manifest names is live (a delta's entries are blocks of that point); a
  // manifest is read a chunk at a time, never whole
  const live = new Bits(all.records);
  let liveBlocks = 0;
  let missing = 0;
  let firstMissing = "";
  for (const item of await ds.items()) {
    for (const id of await ds.pointIds(item)) {
      for await (const { entries: e } of ds.pointEntries(item, id)) {
        for (let at = 0; at < e.hashes.length; at += HASH_BYTES) {
          if (isZeroHash(e.hashes, at)) continue;
          const ref = all.refOf(e.hashes, at);
          if (ref < 0) {
            if (missing++ === 0) firstMissing = e.hashes.toString("hex", at, at + HASH_BYTES);
          } else if (live.set(ref)) liveBlocks++;
        }
      }
    }
  }
  if (missing > 0) {
    throw new SwitchbackError(
      "GC_WOULD_LOSE_DATA",
      `gc stopped before changing anything: points name ${missing} block(s) that no pack holds (first ${firstMissing}); run 'datastore check' and report this`,
    );
  }

  const result: GcResult = {
    liveBlocks,
    packsKept: 0,
    packsDeleted: 0,
    packsRewritten: 0,
    packsAdopted: adopted,
    blocksCopied: 0,
    bytesFreed: 0,
    indexFilesBefore: indexNames.length,
    tempFilesRemoved: 0,
  };

  // sweep: decide per pack, in name order. A live block is "covered" once a kept pack holds it.
  const covered = new Bits(all.records);
  const recordsOf = (packId: string) => {
    const list = records.get(packId)!;
    return list.length === 1 ? list[0]! : Buffer.concat(list);
  };
  const keep: string[] = [];
  const repack: string[] = [];
  const packIds = [...records.keys()].filter((p) => onDisk.has(p)).sort();
  for (const packId of packIds) {
    const entries = recordsOf(packId);
    let liveHere = 0;
    const total = entries.length / ENTRY_BYTES;
    for (let at = 0; at < entries.length; at += ENTRY_BYTES) {
      const ref = all.refOf(entries, at);
      if (live.has(ref) && !covered.has(ref)) liveHere++;
    }
    if (liveHere === 0) continue; // dropped
    if (liveHere < total * REPACK_BELOW) repack.push(packId);
    else {
      keep.push(packId);
      for (let at = 0; at < entries.length; at += ENTRY_BYTES) covered.set(all.refOf(entries, at));
    }
  }

  // 1. copy live blocks out of packs being repacked
  // copy: the blocks are still indexed in the packs being repacked; they must be written again
  const writer = ds.writer({ copy: true });
  for (const packId of repack) {
    const entries = recordsOf(packId);
    const frames = new Map<number, number[]>();
    for (let at = 0; at < entries.length; at += ENTRY_BYTES) {
      const ref = all.refOf(entries, at);
      if (!live.has(ref) || !covered.set(ref)) continue;
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

  // 2. one index for every pack that stays (the writer's new index file stays as it is), written a
  // pack's records at a time
  const after = new Set(await be.list("index"));
  const fresh = [...after].filter((n) => !indexNames.includes(n));
  const consolidated =
    keep.length > 0
      ? await ds.writeIndexFileFrom(function* () {
          // (a pack's own trailer lists each block once: only a pack named twice has copies)
          for (const packId of keep)
            yield {
              packId,
              entries:
                records.get(packId)!.length === 1 ? recordsOf(packId) : dedupeRecords(recordsOf(packId)),
            };
        })
      : null;
  step("indexed");

  // 3. old index files go, 4. then the packs nothing names any more
  const stays = new Set([...fresh, ...(consolidated ? [`${consolidated}.idx`] : [])]);
  // before removing anything: every live block must be named by an index that stays
  const post = new BlockIndex(1 << 16);
  const namedByFresh = new Set<string>();
  for (const n of stays) {
    const sections = post.addIndexFile(n, await be.view(`index/${n}`));
    if (fresh.includes(n)) for (const s of sections) namedByFresh.add(s.packId);
  }
  let lost = 0;
  let firstLost = "";
  live.forEach((ref) => {
    const h = all.hashOf(ref);
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
  const keptIds = new Set(keep);
  for (const packId of onDisk.keys()) {
    if (keptIds.has(packId) || namedByFresh.has(packId)) continue;
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

/** A bit per record of an index. */
class Bits {
  readonly #b: Uint8Array;

  constructor(n: number) {
    this.#b = new Uint8Array(Math.ceil(n / 8));
  }

  has(i: number): boolean {
    return (this.#b[i >>> 3]! & (1 << (i & 7))) !== 0;
  }

  /** Sets bit `i`; false when it was set already. */
  set(i: number): boolean {
    const m = 1 << (i & 7);
    const v = this.#b[i >>> 3]!;
    if ((v & m) !== 0) return false;
    this.#b[i >>> 3] = v | m;
    return true;
  }

  forEach(fn: (i: number) => void): void {
    const b = this.#b;
    for (let k = 0; k < b.length; k++) {
      if (b[k] === 0) continue;
      for (let j = 0; j < 8; j++) if ((b[k]! & (1 << j)) !== 0) fn(k * 8 + j);
    }
  }
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

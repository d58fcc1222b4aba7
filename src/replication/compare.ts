// Compares a disk (or image) with what it should hold: which blocks differ. Two modes:
//  - against a point's disk map (BLAKE3 of every block): delta restore, to write only what differs;
//  - against fingerprints (keyed xxh64 of what was just written, or "must be zero", or "skip"): the
//    check after a restore, which reads back only what the restore wrote and needs no BLAKE3.
// Runs in worker threads; maps are passed in SharedArrayBuffers so workers do not copy them.
import { availableParallelism } from "node:os";
import type { DiskMap } from "../datastore/disk-map.ts";
import { BLOCK_SIZE } from "../datastore/format.ts";
import { blockHash, HASH_BYTES, HASHES_IN_BATCHES, hashBlocks, isAllZero } from "../datastore/hash.ts";
import { native, xxh64 } from "../platform/native.ts";
import { runWorkers } from "../platform/workers.ts";
import { BlockList, concatBlocks } from "./block-list.ts";
import { type DiskInfo, DiskReader } from "./disk-source.ts";
import { onDisk } from "./unit-pass.ts";

const CHUNK_BLOCKS = 64; // 256 KiB reads
/** blocks one native check covers (256 MiB) */
const CALL_BLOCKS = 65536;

export interface CompareJob {
  info: DiskInfo;
  /** the point's disk size: blocks beyond it are not compared */
  sizeBytes: number;
  from: number;
  to: number;
  /** the block refs[0] is (a map of a window of the disk starts there) */
  first: number;
  refs: Uint32Array;
  arena: Uint8Array;
  /** fingerprint mode: per block 0 skip, 1 must be zero, 2 xxh64(block, seed) must be fp[b] */
  expect?: Fingerprints;
}

/** What the check expects of blocks [first, first + kind.length) of the disk (a window of it). */
export interface Fingerprints {
  kind: Uint8Array;
  fp: BigUint64Array;
  seed: bigint;
  first: number;
}

export const SKIP = 0;
export const MUST_BE_ZERO = 1;
export const FINGERPRINT = 2;

/** Fingerprints of `blocks` blocks from block `first` (0: the disk's start), all "skip". */
export function fingerprints(blocks: number, seed: bigint, first = 0): Fingerprints {
  return {
    kind: new Uint8Array(new SharedArrayBuffer(blocks)),
    fp: new BigUint64Array(new SharedArrayBuffer(blocks * 8)),
    seed,
    first,
  };
}

/** Whether the addon's passes can take these fingerprints (an addon built before windows cannot). */
export function nativeTakes(ex: Fingerprints): boolean {
  return ex.first === 0 || native?.windowedFingerprints === true;
}

/** Block numbers in [from, to) whose content on the disk is not what the map says. */
export function compareRange(job: CompareJob): Float64Array {
  const reader = new DiskReader(job.info, CHUNK_BLOCKS * BLOCK_SIZE);
  const arena = Buffer.from(job.arena.buffer, job.arena.byteOffset, job.arena.byteLength);
  const ex = job.expect;
  const out = new BlockList();
  try {
    for (let b0 = job.from; b0 < job.to; b0 += CHUNK_BLOCKS) {
      const n = Math.min(CHUNK_BLOCKS, job.to - b0);
      if (ex !== undefined) {
        let any = false;
        for (let k = 0; k < n && !any; k++) any = ex.kind[b0 + k - ex.first] !== SKIP;
        if (!any) continue; // nothing to check here: do not even read it
      }
      const buf = reader.read(b0 * BLOCK_SIZE, n * BLOCK_SIZE);
      // a target bigger than the disk (a block device): bytes past the disk's end are not the disk's,
      // and the last block's address is that of the block padded with zeros
      const past = job.sizeBytes - b0 * BLOCK_SIZE;
      if (past < n * BLOCK_SIZE) buf.fill(0, Math.max(0, past), n * BLOCK_SIZE);
      // with the addon, the whole read is hashed in one call (zero blocks too: cheaper than a call each)
      const got = ex === undefined && HASHES_IN_BATCHES ? hashBlocks(buf.subarray(0, n * BLOCK_SIZE)) : null;
      for (let k = 0; k < n; k++) {
        const b = b0 + k;
        const block = buf.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE);
        if (ex !== undefined) {
          const kind = ex.kind[b - ex.first];
          if (kind === MUST_BE_ZERO) {
            if (!isAllZero(block)) out.push(b);
          } else if (kind === FINGERPRINT && xxh64(block, ex.seed) !== ex.fp[b - ex.first]) out.push(b);
          continue;
        }
        const r = job.refs[b - job.first]!;
        if (r === 0) {
          if (!isAllZero(block)) out.push(b);
        } else {
          const want = arena.subarray((r - 1) * HASH_BYTES, r * HASH_BYTES);
          if (
            !(got === null ? blockHash(block) : got.subarray(k * HASH_BYTES, (k + 1) * HASH_BYTES)).equals(
              want,
            )
          )
            out.push(b);
        }
      }
    }
  } finally {
    reader.close();
  }
  return out.done();
}

/** The same bytes in shared memory: as they are when they already live there, else copied once. */
function shared(a: Uint8Array): Uint8Array {
  if (a.buffer instanceof SharedArrayBuffer) return a;
  const copy = new Uint8Array(new SharedArrayBuffer(a.byteLength));
  copy.set(a);
  return copy;
}

/** The blocks of `map`'s window whose content on the disk is not what the map says (a delta restore). */
export function compareWithMap(
  info: DiskInfo,
  sizeBytes: number,
  map: DiskMap,
  workers = Math.min(4, availableParallelism()),
): Promise<Float64Array> {
  // workers read the map in shared memory (DiskMap keeps it there)
  const r = shared(new Uint8Array(map.refs.buffer, map.refs.byteOffset, map.refs.byteLength));
  const job = {
    info,
    sizeBytes,
    first: map.first,
    refs: new Uint32Array(r.buffer, r.byteOffset, r.byteLength / 4),
    arena: shared(map.hashArena),
  };
  return inShares(job, map.first, map.first + map.blockCount, workers);
}

/**
 * The blocks `expect` covers whose content on the disk is not what it expects (the check after a
 * restore): on libuv's thread pool through the addon, else in worker threads.
 */
export async function checkExpected(
  info: DiskInfo,
  sizeBytes: number,
  expect: Fingerprints,
  workers = Math.min(4, availableParallelism()),
): Promise<Float64Array> {
  const from = expect.first;
  const to = Math.min(Math.ceil(sizeBytes / BLOCK_SIZE), expect.first + expect.kind.length);
  const addon = native;
  if (addon !== null && typeof addon.checkFingerprints === "function" && nativeTakes(expect)) {
    // no worker to start, no call per block
    const calls: [number, number][] = [];
    for (let b = from; b < to; b += CALL_BLOCKS) calls.push([b, Math.min(to, b + CALL_BLOCKS)]);
    const bad = await onDisk(info, calls, workers, async (disk, [from, to]) => {
      const r = await addon.checkFingerprints(
        ...disk,
        from,
        to,
        expect.seed,
        sizeBytes,
        expect.kind,
        expect.fp,
        ...(expect.first === 0 ? [] : [expect.first]),
      );
      return r.bad;
    });
    return concatBlocks(bad);
  }
  return inShares(
    { info, sizeBytes, first: 0, refs: new Uint32Array(0), arena: new Uint8Array(0), expect },
    from,
    to,
    workers,
  );
}

/** compareRange over [from, to), here when it is small, else in worker threads a share each. */
async function inShares(
  job: Omit<CompareJob, "from" | "to">,
  from: number,
  to: number,
  workers: number,
): Promise<Float64Array> {
  if (workers <= 1 || to - from < 32768) return compareRange({ ...job, from, to });
  const per = Math.ceil((to - from) / workers / CHUNK_BLOCKS) * CHUNK_BLOCKS;
  const jobs: CompareJob[] = [];
  for (let at = from; at < to; at += per) jobs.push({ ...job, from: at, to: Math.min(to, at + per) });
  return concatBlocks(
    await runWorkers<CompareJob, Float64Array>(new URL("./compare-worker.ts", import.meta.url), jobs),
  );
}

// Disk passes in the native addon, on libuv's thread pool, and what they share (onDisk):
//  - the comparing half of a hashing pass: where a disk is read whole (an image file, a disk without
//    a write journal, the first point after a reboot, a frozen re-read without a tracker), the addon
//    reads the units and compares their XXH64 with the agent state's, and hands back only the 4 KiB
//    blocks that changed; the pass then reads those blocks again as it does a journal's. On the 2 GiB
//    benchmark image with 1 % of its blocks changed: ~0.9 CPU-s over two workers before, ~225 ms now;
//  - a journal's pass (nativeBlockBatches): blocks read and hashed ahead of the JavaScript thread,
//    which frames and ships them.
// compare.ts runs restore's read-back check through onDisk as well.
import { BLOCK_SIZE, FRAME_MAX_BLOCKS } from "../datastore/format.ts";
import { HASH_BYTES } from "../datastore/hash.ts";
import { makeFrame } from "../datastore/pack.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { type NativeDisk, type NativeHashes, native, onPool, poolThreads } from "../platform/native.ts";
import type { DiskHashes } from "./agent-state.ts";
import { type BlockHashes, unitAlignedCuts } from "./block-hashes.ts";
import { type DiskInfo, DiskReader } from "./disk-source.ts";
import { BATCH_ENTRIES, type Batch, frameBuffer, NO_PAYLOAD, recycleFrame, type ScanJob } from "./scan.ts";

/** units one native call compares (256 MiB): progress and the thread pool's turns come this often */
const CALL_UNITS = 4096;

/** Whether the comparing pass can run natively in this process. */
export function nativeUnitPass(): boolean {
  return native !== null && typeof native.unitChanges === "function";
}

/** Whether a journal's pass can run natively in this process. */
export function nativeBlockPass(): boolean {
  return native !== null && typeof native.blockPass === "function";
}

/**
 * The 4 KiB blocks of `units` (ascending [from, to) unit ranges) whose content differs from the
 * hashes `h` holds, as ascending, merged [from, to) block ranges. Units whose hash was stale in
 * `h.unit` while none of their blocks changed get their hash there; nothing else is written.
 * `threads` calls run at once; `onBytes` hears of each call's bytes read.
 */
export async function changedBlocks(
  info: DiskInfo,
  units: readonly (readonly [number, number])[],
  seed: bigint,
  h: DiskHashes,
  threads: number,
  onBytes: (bytes: number) => void,
): Promise<[number, number][]> {
  const addon = native;
  if (addon === null) throw new Error("changedBlocks needs the native addon");
  const calls: [number, number][] = [];
  for (const [a, b] of units)
    for (let u = a; u < b; u += CALL_UNITS) calls.push([u, Math.min(b, u + CALL_UNITS)]);
  const results = await onDisk(info, calls, threads, async (disk, [from, to]) => {
    const r = await addon.unitChanges(...disk, from, to, seed, h.unit, h.unit, ...nativeHashes(h.blocks));
    onBytes(r.bytesRead);
    return r.ranges;
  });
  // calls cover ascending, disjoint units: their ranges only need joining where one ends as the next begins
  const out: [number, number][] = [];
  for (const r of results) {
    for (let k = 0; k < r.length; k += 2) {
      const a = r[k]!;
      const b = r[k + 1]!;
      const last = out[out.length - 1];
      if (last !== undefined && last[1] === a) last[1] = b;
      else out.push([a, b]);
    }
  }
  return out;
}

/** blocks one native block pass reads (4 MiB): the next is read while this one's frames are made */
const CALL_BLOCKS = 1024;
/**
 * blocks the first call reads (512 KiB), each next one twice as many up to CALL_BLOCKS: the
 * JavaScript thread has frames to make after ~1 ms instead of waiting ~10 ms for a whole first call
 */
const FIRST_CALL_BLOCKS = 128;

/**
 * A journal's pass (`job.blocks`) in the addon: reading, XXH64 and BLAKE3 of the blocks happen on
 * libuv's thread pool, `threads` calls ahead, while this thread makes frames of what came back and
 * the caller ships them; the batches are those scanRanges would make (same entries, hashes, frames).
 */
export async function* nativeBlockBatches(job: ScanJob, threads: number): AsyncGenerator<Batch> {
  const addon = native!;
  const { info } = job;
  // calls of about CALL_BLOCKS blocks, each a list of whole or cut ranges, cut between units only:
  // calls run at once, and each reads and writes its units' block hashes
  const calls = unitAlignedCuts(job.ranges, CALL_BLOCKS, FIRST_CALL_BLOCKS).map((c) =>
    Float64Array.from(c.flat()),
  );
  if (calls.length === 0) return;
  const blocksIn = (r: Float64Array): number => {
    let n = 0;
    for (let k = 0; k < r.length; k += 2) n += r[k + 1]! - r[k]!;
    return n;
  };
  const totalBlocks = Math.ceil(info.sizeBytes / BLOCK_SIZE);
  const reader = new DiskReader(info, 4096);
  const disk = nativeDisk(info, reader);
  const start = (r: Float64Array) => {
    const n = blocksIn(r);
    const out = {
      entries: new Float64Array(n),
      zero: new Uint8Array(n),
      data: Buffer.allocUnsafeSlow(n * BLOCK_SIZE),
      b3: Buffer.allocUnsafeSlow(n * HASH_BYTES),
      // each data block's judgement by makeFrame's sample, made on the pool beside its hash
      random: addon.blockPassRandom === true ? new Uint8Array(n) : undefined,
    };
    const done = addon
      .blockPass(
        ...disk,
        0,
        totalBlocks,
        job.seed,
        r,
        job.compare,
        job.nextUnit,
        ...nativeHashes(job.hashes),
        out.entries,
        out.zero,
        out.data,
        out.b3,
        ...(out.random !== undefined ? [out.random] : []),
      )
      .catch((err: unknown) => {
        throw diskError(info, err);
      });
    // a failure is seen where the call is awaited; until then it must not count as unhandled
    done.catch(() => {});
    return { out, done };
  };
  const ahead: ReturnType<typeof start>[] = [];
  let next = 0;
  try {
    for (;;) {
      while (ahead.length < poolThreads(threads) && next < calls.length) ahead.push(start(calls[next++]!));
      const call = ahead.shift();
      if (call === undefined) break;
      const r = await call.done;
      yield* batchesOf(job.disk, call.out, r.entries, r.bytesRead, job.compress !== false);
    }
  } finally {
    // every call must have settled before the descriptor closes (see onDisk)
    await Promise.allSettled(ahead.map((c) => c.done));
    reader.close();
  }
}

/** The batches of one block pass's output: frames of up to FRAME_MAX_BLOCKS data blocks (raw without `compress`). */
function batchesOf(
  disk: number,
  out: { entries: Float64Array; zero: Uint8Array; data: Buffer; b3: Buffer; random: Uint8Array | undefined },
  n: number,
  bytesRead: number,
  compress: boolean,
): Batch[] {
  const batches: Batch[] = [];
  let e = 0;
  let d = 0; // data blocks before entry e
  while (e < n) {
    const first = e;
    const firstData = d;
    while (e < n && e - first < BATCH_ENTRIES && (out.zero[e] === 1 || d - firstData < FRAME_MAX_BLOCKS)) {
      if (out.zero[e] === 0) d++;
      e++;
    }
    const hashes = Buffer.alloc((e - first) * HASH_BYTES); // zero blocks keep 32 zero bytes
    // the data blocks' hashes, a run of consecutive ones at a time (one copy for a batch without zeros)
    for (let k = first, q = firstData; k < e; ) {
      if (out.zero[k] === 1) {
        k++;
        continue;
      }
      let end = k + 1;
      while (end < e && out.zero[end] === 0) end++;
      out.b3.copy(hashes, (k - first) * HASH_BYTES, q * HASH_BYTES, (q + end - k) * HASH_BYTES);
      q += end - k;
      k = end;
    }
    const dataBlocks = d - firstData;
    const dataHashes = out.b3.subarray(firstData * HASH_BYTES, d * HASH_BYTES);
    let payload: Buffer = NO_PAYLOAD;
    let compression: 0 | 1 = 0;
    if (dataBlocks > 0 && !compress) {
      payload = out.data.subarray(firstData * BLOCK_SIZE, d * BLOCK_SIZE);
    } else if (dataBlocks > 0) {
      const into = frameBuffer();
      const raw = out.data.subarray(firstData * BLOCK_SIZE, d * BLOCK_SIZE);
      const f = makeFrame(dataHashes, raw, into, out.random?.subarray(firstData, d));
      if (f.payload.buffer !== into.buffer) recycleFrame(into); // stayed raw: a view of `data`
      payload = f.payload;
      compression = f.compression;
    }
    batches.push({
      disk,
      blocks: out.entries.subarray(first, e),
      hashes,
      dataHashes,
      payload,
      compression,
      dataBlocks,
      bytesRead: batches.length === 0 ? bytesRead : 0,
    });
  }
  if (batches.length === 0 && bytesRead > 0) {
    // nothing changed in what was read: the bytes still count
    batches.push({
      disk,
      blocks: new Float64Array(0),
      hashes: Buffer.alloc(0),
      dataHashes: Buffer.alloc(0),
      payload: NO_PAYLOAD,
      compression: 0,
      dataBlocks: 0,
      bytesRead,
    });
  }
  return batches;
}

function nativeHashes(h: BlockHashes): NativeHashes {
  return [h.prevFd, h.prevAt, h.nextFd, h.written];
}

function nativeDisk(info: DiskInfo, reader: DiskReader): NativeDisk {
  const { fd, base, direct } = reader.source;
  return [fd, base, info.sizeBytes, info.sectorSize, direct];
}

/**
 * Runs `call` for each of `calls` (in the order given, `threads` at a time) over the disk opened as a
 * pass reads it; the results come back in the order of `calls`. Errors of the addon's reads become
 * SwitchbackErrors naming the disk.
 */
export async function onDisk<C, R>(
  info: DiskInfo,
  calls: readonly C[],
  threads: number,
  call: (disk: NativeDisk, c: C) => Promise<R>,
): Promise<R[]> {
  const reader = new DiskReader(info, 4096);
  const disk = nativeDisk(info, reader);
  try {
    // onPool settles only when every call has: none still reads whatever file the number is given to next
    return await onPool(calls.length, threads, (i) =>
      call(disk, calls[i]!).catch((err: unknown) => {
        throw diskError(info, err);
      }),
    );
  } finally {
    reader.close();
  }
}

/** The addon's read failures, named as DiskReader.read names them. */
function diskError(info: DiskInfo, err: unknown): unknown {
  const e = err as Error & { code?: string };
  if (e.code === "DISK_READ_FAILED")
    return new SwitchbackError(e.code, `reading disk ${info.path} ${e.message}`);
  if (e.code === "DISK_SHRUNK") return new SwitchbackError(e.code, `disk ${info.path} ${e.message}`);
  return err;
}

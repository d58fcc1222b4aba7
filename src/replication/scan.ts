// Change detection by hashing. For every 64 KiB unit we keep a keyed xxh64 of the unit and of each of
// its 16 4-KiB blocks (the agent state). A pass reads the disk, skips units whose unit hash is
// unchanged, and within a changed unit finds the changed 4 KiB blocks; only those are hashed with
// BLAKE3 (their content address, a frame's blocks in one call) and compressed. The xxh64 key is a random per-disk seed kept in the
// agent state, so a collision that hides a change is a 2^-64 accident per changed unit, not a thing
// a workload can aim at. This function is synchronous so that it runs unchanged in worker threads.
import { BLOCK_SIZE, FRAME_MAX_BLOCKS } from "../datastore/format.ts";
import { HASH_BYTES, hashBlocksInto } from "../datastore/hash.ts";
import { makeFrame } from "../datastore/pack.ts";
import { xxh64 } from "../platform/native.ts";
import {
  type BlockHashes,
  RECORD_BYTES,
  readUnitHashes,
  UNIT_BLOCKS,
  unitOf,
  writeUnitHashes,
} from "./block-hashes.ts";
import { type DiskInfo, DiskReader } from "./disk-source.ts";

export { UNIT_BLOCKS };
export const UNIT_BYTES = UNIT_BLOCKS * BLOCK_SIZE;
const READ_UNITS = 16; // 1 MiB reads: 2 GiB from the page cache in 120 ms here, against 280 ms in 256 KiB reads
/** what a pass reads at a time */
export const READ_BYTES = READ_UNITS * UNIT_BYTES;
const PROGRESS_BYTES = 64 * 1024 * 1024;
const ZERO_UNIT = Buffer.alloc(UNIT_BYTES);
const ZERO_BLOCK = ZERO_UNIT.subarray(0, BLOCK_SIZE);

export interface ScanJob {
  disk: number;
  info: DiskInfo;
  seed: bigint;
  /** [fromUnit, toUnit) ranges to read, ascending; [fromBlock, toBlock) with `blocks` */
  ranges: [number, number][];
  /**
   * the ranges are of 4 KiB blocks (a write journal's): only those blocks are read and compared, and
   * each unit they touch gets UNIT_UNKNOWN as its unit hash, so that the next full pass compares its
   * blocks one by one
   */
  blocks?: boolean;
  /**
   * the disk's block hashes: read (the last point's, or those an earlier pass of this point wrote) and
   * written (this point's) a unit at a time
   */
  hashes: BlockHashes;
  /** whether blocks are compared with the hashes read (false: every block is a candidate) */
  compare: boolean;
  /**
   * false: frames leave raw, never compressed (a resync's first pass: the blocks are compared with the
   * parent's first, and only those shipped are compressed, by the consumer)
   */
  compress?: boolean;
  /** previous unit hashes (null: compare with nothing) */
  prevUnit: BigUint64Array | null;
  /** where this pass writes the unit hashes it computes (may alias prevUnit) */
  nextUnit: BigUint64Array;
}

export interface Batch {
  disk: number;
  /** candidate blocks (content differs from the previous pass), ascending */
  blocks: Float64Array;
  /** BLAKE3 of each candidate; 32 zero bytes for an all-zero block */
  hashes: Buffer;
  /** non-zero candidates, in order: their hashes and their frame (zstd or raw) */
  dataHashes: Buffer;
  payload: Buffer;
  compression: 0 | 1;
  dataBlocks: number;
  bytesRead: number;
}

/**
 * Consecutive batches of one disk as they leave a worker: one message for up to 8 frames (1 MiB of
 * data), their block numbers and hashes in one buffer, each frame's payload in a buffer of its own
 * (zstd's output moves as it is). Measured alone, 11,000 frames took 0.7-1.4 CPU-s of the two
 * threads as a message of 4 buffers each, 0.5 s this way, and 1.0 s copied into one buffer per
 * group (1 MiB buffers are fresh pages to fault in, then to unmap).
 */
export interface BatchGroup {
  disk: number;
  /** every batch's blocks (8 bytes each), then their hashes, then their data hashes */
  meta: ArrayBuffer;
  /** the payload of each batch that has data blocks, in order, at the start of its buffer (its length in the layout) */
  payloads: ArrayBuffer[];
  /** LAYOUT_FIELDS numbers per batch: entries, data blocks, payload bytes, compression, bytes read */
  layout: number[];
}

const LAYOUT_FIELDS = 5;
const GROUP_FRAMES = 8;
/** entries (blocks, zero or not) of one batch at most: a run of zero blocks ends its batch here */
export const BATCH_ENTRIES = 4096;
const GROUP_ENTRIES = 4 * BATCH_ENTRIES;
export const NO_PAYLOAD = Buffer.alloc(0);
/** bytes of a frame's raw blocks: every payload (raw, or compressed to less) fits in this */
const FRAME_BYTES = FRAME_MAX_BLOCKS * BLOCK_SIZE;

/** The batches of a group, in order; their arrays are views of the group's buffers. */
export function unpackGroup(g: BatchGroup): Batch[] {
  const { meta, layout } = g;
  let entries = 0;
  for (let i = 0; i < layout.length; i += LAYOUT_FIELDS) entries += layout[i]!;
  let blocksAt = 0;
  let hashesAt = entries * 8;
  let dataAt = hashesAt + entries * HASH_BYTES;
  let payload = 0;
  const out: Batch[] = [];
  for (let i = 0; i < layout.length; i += LAYOUT_FIELDS) {
    const n = layout[i]!;
    const d = layout[i + 1]!;
    out.push({
      disk: g.disk,
      blocks: new Float64Array(meta, blocksAt, n),
      hashes: Buffer.from(meta, hashesAt, n * HASH_BYTES),
      dataHashes: Buffer.from(meta, dataAt, d * HASH_BYTES),
      payload: d > 0 ? Buffer.from(g.payloads[payload++]!, 0, layout[i + 2]) : NO_PAYLOAD,
      compression: layout[i + 3] as 0 | 1,
      dataBlocks: d,
      bytesRead: layout[i + 4]!,
    });
    blocksAt += n * 8;
    hashesAt += n * HASH_BYTES;
    dataAt += d * HASH_BYTES;
  }
  return out;
}

/**
 * Frame buffers the consumer of a pass has finished with (recycleFrame), staged into again by the
 * passes of this thread: a fresh buffer's pages are faulted in as it is first written, which was a
 * quarter of an incremental pass's time here (~10 ms for 21 MB; 2 GiB would be ~1 s of it).
 */
const spareFrames: ArrayBuffer[] = [];
const SPARE_FRAMES = 64;

export function frameBuffer(): Buffer {
  const ab = spareFrames.pop();
  return ab === undefined ? Buffer.allocUnsafeSlow(FRAME_BYTES) : Buffer.from(ab);
}

/**
 * Hands a batch's payload buffer back once nothing refers to it any more (its bytes were copied
 * where they go); buffers of another size, shared ones and those beyond the spares kept are left to
 * the collector.
 */
export function recycleFrame(payload: Buffer): void {
  const ab = payload.buffer;
  if (ab instanceof ArrayBuffer && ab.byteLength === FRAME_BYTES && spareFrames.length < SPARE_FRAMES) {
    spareFrames.push(ab);
  }
}

/** `b`'s bytes in an ArrayBuffer of their own: b's own when it is exactly that and not `staging`, else a copy. */
function ownBuffer(b: Buffer, staging: Buffer): ArrayBuffer {
  const ab = b.buffer;
  if (
    ab !== staging.buffer &&
    ab instanceof ArrayBuffer &&
    b.byteOffset === 0 &&
    b.byteLength === ab.byteLength
  ) {
    return ab;
  }
  const out = Buffer.allocUnsafeSlow(b.byteLength);
  b.copy(out);
  return out.buffer as ArrayBuffer;
}

/**
 * The unit hash of a unit whose blocks a pass read one by one (never the xxh64 of real content, but
 * for a 2^-64 accident per unit and pass: the same odds the unit hashes already take).
 */
export const UNIT_UNKNOWN = 0n;

/** Bytes a job reads. */
export function jobBytes(job: ScanJob): number {
  const n = job.ranges.reduce((t, [a, b]) => t + (b - a), 0);
  return n * (job.blocks === true ? BLOCK_SIZE : UNIT_BYTES);
}

export function unitCount(sizeBytes: number): number {
  return Math.ceil(sizeBytes / UNIT_BYTES);
}

export function blockCount(sizeBytes: number): number {
  return Math.ceil(sizeBytes / BLOCK_SIZE);
}

/** Scans `job`, handing out its batches a group at a time; reads through `shared` when given (left open). */
export function scanRanges(job: ScanJob, emit: (g: BatchGroup) => void, shared?: DiskReader): void {
  const reader = shared ?? new DiskReader(job.info, READ_BYTES);
  const totalBlocks = blockCount(job.info.sizeBytes);
  const { seed, prevUnit, nextUnit, compare } = job;
  const bh = job.hashes;
  // one unit's block hashes, as read and as computed; a read's worth of computed ones, written in runs
  const was = new BigUint64Array(UNIT_BLOCKS);
  const wasBytes = new Uint8Array(was.buffer);
  const computed = new BigUint64Array(READ_UNITS * UNIT_BLOCKS);
  const computedBytes = new Uint8Array(computed.buffer);
  const zeroUnitHash = xxh64(ZERO_UNIT, seed);
  const zeroBlockHash = xxh64(ZERO_BLOCK, seed);
  // A group is staged in buffers reused from group to group and leaves in buffers of its own, exactly
  // as big as they need (fresh staging buffers each time were ~1.8 GB of garbage for 2 GiB, and RSS
  // followed). One frame at a time is staged raw.
  const blocks = new Float64Array(GROUP_ENTRIES);
  const hashes = Buffer.allocUnsafeSlow(GROUP_ENTRIES * HASH_BYTES);
  const dataHashes = Buffer.allocUnsafeSlow(GROUP_FRAMES * FRAME_MAX_BLOCKS * HASH_BYTES);
  /** the entry (index into blocks/hashes) of each data block staged in the group */
  const dataEntry = new Int32Array(GROUP_FRAMES * FRAME_MAX_BLOCKS);
  let raw = frameBuffer();
  /** where a frame is compressed to, when the addon compresses (no page of it is touched until then) */
  let zbuf = frameBuffer();
  const payloads: ArrayBuffer[] = [];
  const layout: number[] = [];
  let n = 0; // entries staged in the group
  let data = 0; // data blocks staged in the group
  let batchN = 0; // where the open batch starts
  let batchData = 0;
  let readSince = 0; // bytes read since the last batch was closed
  let groupRead = 0; // bytes read since the group began

  const closeBatch = (): void => {
    const d = data - batchData;
    if (n === batchN && readSince === 0) return;
    let bytes = 0;
    let compression: 0 | 1 = 0;
    if (d > 0) {
      // the frame's blocks are hashed together, then each hash goes to its entry too
      hashBlocksInto(raw.subarray(0, d * BLOCK_SIZE), dataHashes, batchData * HASH_BYTES);
      for (let k = batchData; k < data; k++) {
        dataHashes.copy(hashes, dataEntry[k]! * HASH_BYTES, k * HASH_BYTES, (k + 1) * HASH_BYTES);
      }
      const frameHashes = dataHashes.subarray(batchData * HASH_BYTES, data * HASH_BYTES);
      const f =
        job.compress === false
          ? { payload: raw.subarray(0, d * BLOCK_SIZE), compression: 0 as const }
          : makeFrame(frameHashes, raw.subarray(0, d * BLOCK_SIZE), zbuf);
      // the payload leaves in a buffer of its own (its length goes in the layout): the staging buffer
      // itself when the frame stays raw, the zstd buffer it was compressed into; each gets a new one
      if (f.payload.buffer === raw.buffer) {
        payloads.push(raw.buffer as ArrayBuffer);
        raw = frameBuffer();
      } else if (f.payload.buffer === zbuf.buffer) {
        payloads.push(zbuf.buffer as ArrayBuffer);
        zbuf = frameBuffer();
      } else payloads.push(ownBuffer(f.payload, raw));
      bytes = f.payload.length;
      compression = f.compression;
    }
    layout.push(n - batchN, d, bytes, compression, readSince);
    batchN = n;
    batchData = data;
    readSince = 0;
  };

  const closeGroup = (): void => {
    closeBatch();
    if (layout.length === 0) return;
    const meta = Buffer.allocUnsafeSlow(n * (8 + HASH_BYTES) + data * HASH_BYTES);
    new Float64Array(meta.buffer, 0, n).set(blocks.subarray(0, n));
    hashes.copy(meta, n * 8, 0, n * HASH_BYTES);
    dataHashes.copy(meta, n * (8 + HASH_BYTES), 0, data * HASH_BYTES);
    emit({
      disk: job.disk,
      meta: meta.buffer as ArrayBuffer,
      payloads: payloads.splice(0),
      layout: layout.splice(0),
    });
    n = 0;
    data = 0;
    batchN = 0;
    batchData = 0;
    groupRead = 0;
  };
  /** Stages block `b` as a candidate (it differs from the previous pass). */
  const consider = (b: number, block: Buffer, zero: boolean): void => {
    blocks[n] = b;
    if (zero || block.equals(ZERO_BLOCK)) {
      hashes.fill(0, n * HASH_BYTES, (n + 1) * HASH_BYTES);
    } else {
      block.copy(raw, (data - batchData) * BLOCK_SIZE); // hashed when its frame closes
      dataEntry[data] = n;
      data++;
    }
    n++;
    if (data - batchData === FRAME_MAX_BLOCKS || n - batchN === BATCH_ENTRIES) {
      closeBatch();
      if (layout.length === GROUP_FRAMES * LAYOUT_FIELDS || n > GROUP_ENTRIES - BATCH_ENTRIES) closeGroup();
    }
  };

  /** Reads the job's ranges (of `size`-byte pieces) a MiB at a time and hands each read to `visit`. */
  const readRanges = (size: number, visit: (buf: Buffer, first: number, count: number) => void): void => {
    const step = READ_BYTES / size;
    for (const [from, to] of job.ranges) {
      for (let first = from; first < to; first += step) {
        const count = Math.min(step, to - first);
        const buf = reader.read(first * size, count * size);
        const got = Math.min(count * size, job.info.sizeBytes - first * size);
        readSince += got;
        groupRead += got;
        visit(buf, first, count);
        if (groupRead >= PROGRESS_BYTES) closeGroup();
      }
    }
  };

  /**
   * A journal's pass: only the blocks written since the last point. Each unit's record is read, its
   * blocks' hashes replaced, and written back once the pass leaves the unit.
   */
  const scanBlocks = (): void => {
    let unit = -1;
    let known = false;
    const leave = (): void => {
      if (unit >= 0) writeUnitHashes(bh, unit, wasBytes, 1);
      unit = -1;
    };
    readRanges(BLOCK_SIZE, (buf, b0, count) => {
      for (let k = 0; k < count; k++) {
        const b = b0 + k;
        const u = unitOf(b);
        if (u !== unit) {
          leave();
          unit = u;
          known = readUnitHashes(bh, u, wasBytes);
          nextUnit[u] = UNIT_UNKNOWN;
        }
        const block = buf.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE);
        const h = xxh64(block, seed);
        const slot = b - u * UNIT_BLOCKS;
        const same = compare && known && was[slot] === h;
        was[slot] = h;
        if (!same) consider(b, block, false);
      }
    });
    leave();
  };

  /** A hashing pass: every unit of the ranges, compared unit first, then block by block. */
  const scanUnits = (): void =>
    readRanges(UNIT_BYTES, (buf, u0, units) => {
      let run = -1; // the first of the consecutive units whose records wait in `computed`
      const flush = (to: number): void => {
        if (run < 0) return;
        const from = (run - u0) * RECORD_BYTES;
        writeUnitHashes(bh, run, computedBytes.subarray(from, (to - u0) * RECORD_BYTES), to - run);
        run = -1;
      };
      for (let k = 0; k < units; k++) {
        const u = u0 + k;
        const unit = buf.subarray(k * UNIT_BYTES, (k + 1) * UNIT_BYTES);
        // an all-zero unit (a third of the benchmark's image) has known hashes: one compare
        // instead of 17 xxh64 calls and 16 zero tests
        const zeroUnit = unit.equals(ZERO_UNIT);
        const uh = zeroUnit ? zeroUnitHash : xxh64(unit, seed);
        if (prevUnit !== null && prevUnit[u] === uh) {
          nextUnit[u] = uh;
          flush(u);
          continue;
        }
        nextUnit[u] = uh;
        const known = compare && readUnitHashes(bh, u, wasBytes);
        const firstBlock = u * UNIT_BLOCKS;
        for (let j = 0; j < UNIT_BLOCKS; j++) {
          const b = firstBlock + j;
          const at = k * UNIT_BLOCKS + j;
          if (b >= totalBlocks) {
            computed[at] = 0n;
            continue;
          }
          const block = zeroUnit ? ZERO_BLOCK : unit.subarray(j * BLOCK_SIZE, (j + 1) * BLOCK_SIZE);
          const h = zeroUnit ? zeroBlockHash : xxh64(block, seed);
          computed[at] = h;
          if (!(known && was[j] === h)) consider(b, block, zeroUnit);
        }
        if (run < 0) run = u;
      }
      flush(u0 + units);
    });

  try {
    if (job.blocks === true) scanBlocks();
    else scanUnits();
    closeGroup();
  } finally {
    if (shared === undefined) reader.close();
  }
}

// Switchback's native addon (native/switchback.c, built by scripts/build-native.mjs): BLAKE3 of many
// 4 KiB blocks in one call (about 3 times the speed of one call per block), and zstd frames with a
// context kept per thread and no allocation (compression ~1.25 and decompression ~2.4 times node:zlib's
// speed here). It is optional: when it is not built, or SWITCHBACK_NATIVE=0 asks to do without it,
// callers hash block by block through @napi-rs/blake-hash and compress through node:zlib, with the
// same results (zstd frames of either kind read back the same).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";

export interface NativeAddon {
  /** BLAKE3-256 of each 4 KiB block of `data` (a whole number of blocks), 32 bytes each into `out` at `outAt`. */
  hashBlocks(data: Uint8Array, out: Uint8Array, outAt: number): void;
  /** bytes from the start of `bytes` to the first address that is a multiple of `to` (a power of two) */
  alignOffset(bytes: Uint8Array, to: number): number;
  /**
   * zstd at `level` of `src` into the start of `dst`: the frame's size, or -1 when it does not fit
   * (the thread keeps one context for all its calls)
   */
  zstdCompress(src: Uint8Array, dst: Uint8Array, level: number): number;
  /** the zstd frame `src` into the start of `dst`: the bytes written; throws with zstd's reason */
  zstdDecompress(src: Uint8Array, dst: Uint8Array): number;
  /** whether this Node.js exports the zstd the two calls above use (Node's own, since 23.8) */
  zstdAvailable(): boolean;
  /** flock(2) without waiting: false when another holds a conflicting lock; dropped when `fd` closes */
  flock(fd: number, exclusive: boolean): boolean;
  /** inputs BLAKE3 hashes at once on this CPU: 1, 4, 8 or 16 */
  simdDegree(): number;
  /**
   * the loop driver's record of the file an open loop device reads (LOOP_GET_STATUS64): its device
   * number in the kernel's encoding and its inode; null when the device has none
   */
  loopBacking(fd: number): [number, number] | null;
  /**
   * The comparing half of a hashing pass, on libuv's thread pool: reads units [fromUnit, toUnit) of
   * the disk at `base` in `fd`, and resolves with the 4 KiB blocks whose XXH64 differs from the
   * block hashes' (read a unit at a time), in units whose XXH64 differs from prevUnit's, as [from,
   * to) pairs (see native/switchback.c); writes no block hash; rejects with an Error whose `code` is
   * DISK_READ_FAILED, DISK_SHRUNK or HASHES_IO
   */
  unitChanges(
    ...args: [
      ...disk: NativeDisk,
      fromUnit: number,
      toUnit: number,
      seed: bigint,
      prevUnit: BigUint64Array,
      nextUnit: BigUint64Array,
      ...hashes: NativeHashes,
    ]
  ): Promise<{ ranges: Float64Array; bytesRead: number; holeBytes: number }>;
  /**
   * The check after a restore, on libuv's thread pool: per block of [fromBlock, toBlock), kind 0
   * skips it, 1 wants zeros, 2 wants XXH64(seed) to be fp[b]; bytes past `pointBytes` count as zeros.
   * Resolves with the blocks that fail, ascending.
   */
  checkFingerprints(
    ...args: [
      ...disk: NativeDisk,
      fromBlock: number,
      toBlock: number,
      seed: bigint,
      pointBytes: number,
      kind: Uint8Array,
      fp: BigUint64Array,
      first?: number,
    ]
  ): Promise<{ bad: Float64Array; bytesRead: number }>;
  /**
   * A journal's pass over block `ranges` (pairs, within [fromBlock, toBlock), no unit shared with a
   * call running at the same time), on libuv's thread pool: each block's XXH64 into its unit's
   * record, its unit unknown in nextUnit; blocks whose hash differs from the record's (all, without
   * `compare`) are listed in `entries` (zero[i] 1 when all zero), the others' bytes packed into
   * `data` and their BLAKE3 into `b3`; `random` (where blockPassRandom says so) gets each data
   * block's judgement by makeFrame's sample, 1 when it looks random
   */
  blockPass(
    ...args: [
      ...disk: NativeDisk,
      fromBlock: number,
      toBlock: number,
      seed: bigint,
      ranges: Float64Array,
      compare: boolean,
      nextUnit: BigUint64Array,
      ...hashes: NativeHashes,
      entries: Float64Array,
      zero: Uint8Array,
      data: Buffer,
      b3: Buffer,
      random?: Uint8Array,
    ]
  ): Promise<{ entries: number; dataBlocks: number; bytesRead: number }>;
  /**
   * A restore's share of frames on libuv's thread pool: read from the packs, decompressed, each block
   * checked against its BLAKE3, fingerprinted and written to `target` (see native/switchback.c for
   * the layout of `tasks`); resolves with the blocks written
   */
  applyFrames(
    packPaths: string[],
    tasks: Float64Array,
    blocks: Float64Array,
    slots: Uint32Array,
    hashes: Buffer,
    target: number,
    sizeBytes: number,
    seed: bigint,
    kind: Uint8Array,
    fp: BigUint64Array,
    first?: number,
  ): Promise<number>;
  /** blockPass takes `random`; absent before */
  blockPassRandom?: boolean;
  /** applyFrames and checkFingerprints take `first` (fingerprints of a window of the disk); absent before */
  windowedFingerprints?: boolean;
  /**
   * the extent of the open file `fd` that byte `pos` is in: a hole (reads as zeros) or data, and where
   * it ends (SEEK_DATA / SEEK_HOLE); data to Infinity where the file system cannot tell, or past the
   * file's end
   */
  extentAt(fd: number, pos: number): [hole: boolean, end: number];
  /**
   * Makes `length` bytes of the open block device at `offset` read as zeros, by the device where it
   * can (BLKZEROOUT), on libuv's thread pool; rejects with the errno's name as `code`. Absent from
   * addons built before it.
   */
  zeroOut?(fd: number, offset: number, length: number): Promise<void>;
  /**
   * A read-only view of the open file's first `length` bytes (mmap, populated on libuv's thread pool;
   * keep `fd` open until it settles), unmapped when its memory is collected: its pages are the page
   * cache's, not the process's. Only for files never changed in place (a file cut short under it ends
   * the process). Absent from addons built before it.
   */
  mapFile?(fd: number, length: number): Promise<Buffer>;
  /**
   * The open file's extents (FIEMAP, its dirty pages written first), four numbers each: logical and
   * physical byte offsets, length, FIEMAP flags; logical order, holes left out. Throws with the errno
   * as `code` (EOPNOTSUPP where the file system cannot tell). Absent from addons built before it.
   */
  fileExtents?(fd: number): Float64Array;
  /** The f_type of the file system the open file is on (fstatfs). Absent from addons built before it. */
  fileSystemType?(fd: number): number;
  /** The open file's inode flags (FS_IOC_GETFLAGS). Absent from addons built before it. */
  fileFlags?(fd: number): number;
  /**
   * A BucketTable's tables (src/datastore/prefix-tables.ts) built from the block index's records on
   * libuv's thread pool: `runs` (whole 48-byte records, in ref order) counted into `dir` (2^(32 -
   * shift) + 2 u32s, zeroed here) and placed into `ent` (a prefix and a ref per record). Resolves with
   * -1, or the first run holding a record of unknown compression (the tables are then not to be
   * used). Absent from addons built before it.
   */
  bucketTable?(runs: Uint8Array[], shift: number, dir: Uint32Array, ent: Uint32Array): Promise<number>;
  /**
   * toRanges of src/replication/ranges.ts on flat [from, to) pairs: each as the [floor(from / granule),
   * min(count, ceil(to / granule))) pieces it touches, empty ones dropped, sorted and merged where they
   * overlap or touch. Absent from addons built before it.
   */
  mergePairs?(pairs: Float64Array, granule: number, count: number): Float64Array;
  /**
   * A write trace's raw pages read and parsed, and its events placed on the disks (see
   * native/switchback.c): RawTraceReader.drain and the tracker's event handling in one call. Absent
   * from addons built before it.
   */
  traceDrain?(
    fds: Int32Array,
    pageBytes: number,
    dataOffset: number,
    layouts: Float64Array,
    windows: Float64Array,
    disks: number,
  ): { pairs: Float64Array[]; problem: string | null; passthrough: string | null };
  /**
   * `length` bytes of fresh memory, page-aligned, its pages in place (faulted in on libuv's thread
   * pool): writing it takes no page faults. Absent from addons built before it.
   */
  populatedPages?(length: number): Promise<Buffer>;
  /** XXH64 of `data` with `seed`, as the call above computes it */
  xxh64(data: Uint8Array, seed: bigint): bigint;
  /**
   * BLAKE3 of bytes given part by part, in a state the caller holds (Buffer.alloc(blake3StateBytes)):
   * init, update with each part, digest into 32 bytes. Absent from addons built before them.
   */
  blake3StateBytes?: number;
  blake3Init?(state: Uint8Array): void;
  blake3Update?(state: Uint8Array, data: Uint8Array): void;
  blake3Digest?(state: Uint8Array, out: Uint8Array): void;
  /** BLAKE3-256 of `data` on libuv's thread pool (keep `data` unchanged until it settles). Absent from addons built before it. */
  blake3OnPool?(data: Uint8Array): Promise<Buffer>;
}

/**
 * The disk the addon's passes read, their first five arguments: the open disk (or loop backing
 * file), where the disk's byte 0 is in it, its size and sector size, and whether it is O_DIRECT.
 */
export type NativeDisk = [fd: number, base: number, sizeBytes: number, sectorSize: number, direct: boolean];

/**
 * A disk's block hashes as the addon's passes take them (BlockHashes in
 * src/replication/block-hashes.ts): the last point's hash file and where its block section starts
 * (-1: none), this point's scratch file, and the per-unit flags of the records it holds.
 */
export type NativeHashes = [prevFd: number, prevAt: number, nextFd: number, written: Uint8Array];

export const NATIVE_ADDON_PATH = new URL("../../native/build/switchback.node", import.meta.url).pathname;

function load(): NativeAddon | null {
  if (process.env.SWITCHBACK_NATIVE === "0" || !existsSync(NATIVE_ADDON_PATH)) return null;
  try {
    return createRequire(import.meta.url)(NATIVE_ADDON_PATH) as NativeAddon;
  } catch (err) {
    // a stale build for another Node or CPU: say so once, and go on without it
    process.emitWarning(`native addon not loaded (${(err as Error).message}); hashing block by block`);
    return null;
  }
}

export const native: NativeAddon | null = load();

/**
 * How many native calls of one pass may run at once on libuv's thread pool: at most `wanted`, and
 * always one thread fewer than the pool has, so that file-system calls (pack writes, index reads) and
 * DNS lookups of the same process never wait for a whole pass.
 */
export function poolThreads(wanted: number): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(wanted, pool - 1));
}

/**
 * Runs `work(0)` … `work(count - 1)` in that order, poolThreads(threads) at a time, and resolves with
 * their results in order. It settles only once every call it started has: a native call still on the
 * thread pool may use a descriptor or buffer the caller frees next. After a failure no new call
 * starts, and the first failure is what it rejects with.
 */
export async function onPool<R>(
  count: number,
  threads: number,
  work: (i: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(count);
  let next = 0;
  let failed = false;
  const runner = async (): Promise<void> => {
    while (next < count && !failed) {
      const i = next++;
      results[i] = await work(i);
    }
  };
  const settled = await Promise.allSettled(
    Array.from({ length: Math.min(poolThreads(threads), count) }, () =>
      runner().catch((err: unknown) => {
        failed = true;
        throw err;
      }),
    ),
  );
  const failure = settled.find((x) => x.status === "rejected");
  if (failure !== undefined) throw failure.reason;
  return results;
}

let xxhNpm: ((data: Uint8Array, seed: bigint) => bigint) | undefined;

/**
 * XXH64 of `data` with `seed`: the addon's, else @node-rs/xxhash's, loaded at its first use (loading a
 * second native library costs every CLI start ~5 ms).
 */
export const xxh64: (data: Uint8Array, seed: bigint) => bigint =
  native !== null
    ? native.xxh64
    : (data, seed) => {
        xxhNpm ??= (createRequire(import.meta.url)("@node-rs/xxhash") as typeof import("@node-rs/xxhash"))
          .xxh64;
        return xxhNpm(data, seed);
      };

/** The addon, when it is loaded and this Node.js exports zstd for it. */
export const nativeZstd: NativeAddon | null = native?.zstdAvailable() ? native : null;

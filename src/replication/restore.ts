// Writes a recovery point's disk to an image file or block device. Full: every block (a new image is
// sparse where the disk is zero). Delta: read the target first (BLAKE3 of every block against the
// point) and write only the blocks that differ. Every block taken from the datastore is checked
// against its hash before it is written; afterwards everything the restore wrote (and, for a new
// image, every block it left as a hole) is read back and compared with a keyed xxh64 fingerprint
// taken as it was written. Blocks a delta restore left alone were proven equal by the first read.

import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsync,
  ftruncateSync,
  openSync,
  write,
  writeSync,
} from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Datastore } from "../datastore/datastore.ts";
import { verifyBlock } from "../datastore/datastore.ts";
import type { DiskMap } from "../datastore/disk-map.ts";
import { DiskWindows } from "../datastore/disk-windows.ts";
import { BLOCK_SIZE, paths } from "../datastore/format.ts";
import { HASH_BYTES, HASHES_IN_BATCHES, hashBlocks } from "../datastore/hash.ts";
import { LocalBackend } from "../datastore/local/local-backend.ts";
import type { BlockLocation } from "../datastore/pack.ts";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import { type NativeAddon, native, nativeZstd, onPool, xxh64 } from "../platform/native.ts";
import { runWorkers } from "../platform/workers.ts";
import { BlockList } from "./block-list.ts";
import {
  checkExpected,
  compareWithMap,
  FINGERPRINT,
  type Fingerprints,
  fingerprints,
  MUST_BE_ZERO,
  nativeTakes,
} from "./compare.ts";
import { type DiskInfo, inspectDisk } from "./disk-source.ts";

export interface RestoreOptions {
  item: ItemName;
  point: PointId | "latest";
  disk: number;
  to: string;
  delta: boolean;
  verify?: boolean;
  /**
   * With delta: the target holds exactly this point's disk (the same uuid), so only the blocks whose
   * content differs between the two points are written, found from their maps without reading the
   * target (a replica kept at a point, a copy-on-write clone of it)
   */
  base?: PointId;
  /** blocks mapped at a time (WINDOW_BLOCKS unless given: tests make it small) */
  windowBlocks?: number;
  /** called once blocks [from, to) are written, before they are read back (tests: a failing disk) */
  beforeCheck?: (from: number, to: number) => void;
}

export interface RestoreResult {
  item: ItemName;
  pointId: PointId;
  disk: number;
  uuid: string;
  to: string;
  mode: "full" | "delta";
  sizeBytes: number;
  blocksCompared: number;
  blocksWritten: number;
  bytesWritten: number;
  zeroBlocksWritten: number;
  /** of those, the blocks a block device zeroed itself (BLKZEROOUT) instead of being written */
  zeroBlocksByDevice: number;
  durationMs: number;
  verified: boolean;
  verifyMs: number;
}

const ZERO_RUN = Buffer.alloc(1024 * 1024);

export async function restoreDisk(ds: Datastore, o: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const pointId = o.point === "latest" ? await latestPoint(ds, o.item) : o.point;
  // the point's map a window at a time: memory follows the window, not the disk (disk-windows.ts)
  const windows = await DiskWindows.open(ds, o.item, pointId, o.disk);
  let base: DiskWindows | null = null;
  try {
    const d = windows.header.disks[o.disk]!;
    const size = d.sizeBytes;
    const blockCount = windows.blockCount;

    let target: DiskInfo | null = null;
    if (existsSync(o.to)) {
      try {
        target = inspectDisk(o.to);
      } catch (err) {
        if (!isEmptyFileError(err)) throw err;
      }
    }
    if (o.delta && target === null) {
      throw new SwitchbackError(
        "RESTORE_TARGET_MISSING",
        `delta restore needs an existing disk at ${o.to}; use a full restore to create it`,
      );
    }
    if (target !== null && target.kind === "block" && target.sizeBytes < size) {
      throw new SwitchbackError(
        "RESTORE_TARGET_TOO_SMALL",
        `${o.to} is ${target.sizeBytes} bytes, the disk needs ${size}`,
      );
    }
    if (o.delta && target !== null && target.kind === "file" && target.sizeBytes !== size) {
      throw new SwitchbackError(
        "RESTORE_SIZE_MISMATCH",
        `${o.to} is ${target.sizeBytes} bytes but disk ${o.disk} of point ${pointId} is ${size}; delta restore needs a disk of the same size`,
      );
    }
    if (o.delta && o.base !== undefined) base = await openBase(ds, o.item, o.base, d.uuid, blockCount);

    const isBlock = target?.kind === "block";
    const fd = openSync(o.to, isBlock ? constants.O_WRONLY : constants.O_WRONLY | constants.O_CREAT, 0o644);
    let blocksWritten = 0;
    let zeroBlocksWritten = 0;
    const seed = randomBytes(8).readBigUInt64LE();
    const zeros = new ZeroWriter(fd, size, isBlock ? target!.sectorSize : 0);
    let blocksCompared = 0;
    let verified = false;
    let verifyMs = 0;
    let synced: Promise<void> | null = null;
    try {
      if (!o.delta && !isBlock) {
        // a fresh sparse file: zero blocks cost nothing and need no writing, and its holes read as zeros
        ftruncateSync(fd, 0);
        ftruncateSync(fd, size);
      }
      // block numbers in typed arrays and zeros as runs: a JavaScript array stops at 2^27 elements,
      // the blocks of a 512 GiB disk
      const window = o.windowBlocks ?? WINDOW_BLOCKS;
      for (let w0 = 0; w0 < blockCount; w0 += window) {
        const w1 = Math.min(blockCount, w0 + window);
        const map = await windows.window(w0, w1);
        // what the check expects of the window's blocks (9 bytes a block), taken as they are written
        const expect = fingerprints(w1 - w0, seed, w0);
        if (!o.delta && !isBlock) expect.kind.fill(MUST_BE_ZERO);
        const zero = (b: number) => map.refs[b - w0] === 0;
        let data: Float64Array;
        if (!o.delta) {
          if (isBlock) zeroBlocksWritten += await zeros.write(runsWhere(w0, w1, zero), expect);
          data = blocksWhere(w0, w1, (b) => !zero(b));
        } else {
          let want: Float64Array;
          if (base !== null) want = changedIn(map, await base.window(w0, w1));
          else {
            want = await compareWithMap(target!, size, map);
            blocksCompared += w1 - w0;
          }
          zeroBlocksWritten += await zeros.write(runsOf(want.filter(zero)), expect);
          data = want.filter((b) => !zero(b));
        }
        // the data a part at a time: planning a frame's blocks costs memory per block
        for (let i = 0; i < data.length; i += PLAN_BLOCKS) {
          blocksWritten += await writeBlocks(
            ds,
            fd,
            o.to,
            map,
            data.subarray(i, i + PLAN_BLOCKS),
            size,
            expect,
          );
        }
        // The window is read back before the next is written. After the last, an image file is made
        // durable while it is read back: the check reads it through the page cache either way, and
        // the two took ~0.65 + 0.27 s one after the other for 2 GiB. A block device is read back with
        // O_DIRECT, which can return what the device held before writes still in its cache (seen in
        // test/privileged/restore-device.test.ts): there the fsync comes first, for every window.
        if (w1 === blockCount) {
          if (!isBlock && fstatSync(fd).size !== size) ftruncateSync(fd, size);
          synced = fsyncAsync(fd);
          synced.catch(() => {}); // seen by the `await` below: not an unhandled rejection meanwhile
          if (isBlock) await synced;
        } else if (isBlock && o.verify !== false) await fsyncAsync(fd);
        if (o.verify !== false) {
          o.beforeCheck?.(w0, w1);
          const t = performance.now();
          const bad = await checkExpected(inspectDisk(o.to), size, expect);
          verifyMs += Math.round(performance.now() - t);
          if (bad.length > 0) {
            throw new SwitchbackError(
              "RESTORE_VERIFY_FAILED",
              `${o.to}: ${bad.length} block(s) differ from point ${pointId} after writing (first at byte ${bad[0]! * BLOCK_SIZE}); the target may be failing or in use`,
            );
          }
        }
      }
      blocksWritten += zeroBlocksWritten;
      verified = o.verify !== false;
    } finally {
      try {
        await synced; // a failed fsync fails the restore, whatever the check said
      } finally {
        closeSync(fd);
      }
    }
    return {
      item: o.item,
      pointId,
      disk: o.disk,
      uuid: d.uuid,
      to: o.to,
      mode: o.delta ? "delta" : "full",
      sizeBytes: size,
      blocksCompared,
      blocksWritten,
      bytesWritten: blocksWritten * BLOCK_SIZE,
      zeroBlocksWritten,
      zeroBlocksByDevice: zeros.blocksByDevice,
      durationMs: Math.round(performance.now() - started),
      verified,
      verifyMs,
    };
  } finally {
    await windows.close();
    await base?.close();
  }
}

/** blocks of the disk a restore maps at a time (16 GiB): its map costs 4 bytes a block and 32 an entry */
const WINDOW_BLOCKS = 1 << 22;

const fsyncAsync = promisify(fsync);

/** The same disk (by uuid) at point `base`, which a delta restore writes the difference against. */
async function openBase(
  ds: Datastore,
  item: ItemName,
  base: PointId,
  uuid: string,
  blockCount: number,
): Promise<DiskWindows> {
  const header = await ds.readPointHeader(item, base);
  const index = header.disks.findIndex((x) => x.uuid === uuid);
  const disk = header.disks[index];
  if (disk === undefined || Math.ceil(disk.sizeBytes / BLOCK_SIZE) !== blockCount) {
    throw new SwitchbackError(
      "RESTORE_BASE_MISMATCH",
      `point ${base} of item ${item} has no disk ${uuid} of ${blockCount} blocks to write the difference against; restore it whole`,
    );
  }
  return DiskWindows.open(ds, item, base, index);
}

/** The blocks of a window whose content differs between two maps of it. */
function changedIn(map: DiskMap, old: DiskMap): Float64Array {
  const want = new BlockList();
  for (let b = map.first; b < map.first + map.blockCount; b++) {
    const a = map.hashOf(b);
    const o = old.hashOf(b);
    if (a === undefined ? o !== undefined : o === undefined || !a.equals(o)) want.push(b);
  }
  return want.done();
}

function isEmptyFileError(err: unknown): boolean {
  return err instanceof SwitchbackError && err.code === "DISK_EMPTY";
}

export async function latestPoint(ds: Datastore, item: ItemName): Promise<PointId> {
  const ids = await ds.pointIds(item);
  const last = ids[ids.length - 1];
  if (last === undefined) {
    throw new SwitchbackError(
      "POINT_NOT_FOUND",
      `item ${item} has no recovery points in ${ds.backend.location}`,
    );
  }
  return last;
}

/** Writes zeros over runs of blocks (ascending), in 1 MiB writes. Returns blocks written. */
/** Runs [from, to) of consecutive blocks in an ascending list. */
function* runsOf(blocks: ArrayLike<number>): Generator<[number, number]> {
  let i = 0;
  while (i < blocks.length) {
    let j = i + 1;
    while (j < blocks.length && blocks[j] === blocks[j - 1]! + 1) j++;
    yield [blocks[i]!, blocks[j - 1]! + 1];
    i = j;
  }
}

/** Runs [from, to) of the blocks in [first, end) for which `is` holds. */
function* runsWhere(first: number, end: number, is: (b: number) => boolean): Generator<[number, number]> {
  for (let b = first; b < end; ) {
    if (!is(b)) {
      b++;
      continue;
    }
    const from = b;
    while (b < end && is(b)) b++;
    yield [from, b];
  }
}

/** The blocks in [first, end) for which `is` holds, ascending. */
function blocksWhere(first: number, end: number, is: (b: number) => boolean): Float64Array {
  let n = 0;
  for (let b = first; b < end; b++) if (is(b)) n++;
  const out = new Float64Array(n);
  for (let b = first, k = 0; b < end; b++) if (is(b)) out[k++] = b;
  return out;
}

const writeAsync = promisify(write);
/** bytes one BLKZEROOUT covers at most (it holds a thread of the pool as long as it runs) */
const ZERO_OUT_BYTES = 1024 * 1024 * 1024;
/** what a device or kernel says when it cannot zero a range itself: the zeros are written then */
const NO_ZERO_OUT = new Set(["ENOTTY", "EOPNOTSUPP", "EINVAL", "ENOSYS"]);

/**
 * Zeros over runs of blocks of the target, whose blocks the check must then read as zeros. On a block
 * device the device zeroes them itself where it can (BLKZEROOUT through the addon: a thin volume, an
 * SSD or a loop device's file zeroes a range without the zeros crossing the bus); elsewhere they are
 * written, 1 MiB at a time, off the event loop.
 */
class ZeroWriter {
  readonly #fd: number;
  readonly #size: number;
  /** the device's logical sector size: what it zeroes must be whole sectors (0: not a device) */
  readonly #sector: number;
  #byDevice: boolean;
  /** blocks the device zeroed itself */
  blocksByDevice = 0;

  /** `sector`: the block device's logical sector size, 0 for a file */
  constructor(fd: number, size: number, sector: number) {
    this.#fd = fd;
    this.#size = size;
    this.#sector = sector;
    this.#byDevice = sector > 0 && typeof native?.zeroOut === "function";
  }

  /** The blocks zeroed; `expect` (which covers them) is told they must read as zeros. */
  async write(runs: Iterable<[number, number]>, expect: Fingerprints): Promise<number> {
    let blocks = 0;
    for (const [from, to] of runs) {
      expect.kind.fill(MUST_BE_ZERO, from - expect.first, to - expect.first);
      blocks += to - from;
      let pos = from * BLOCK_SIZE;
      const end = Math.min(this.#size, to * BLOCK_SIZE);
      // whole sectors by the device; a disk whose size is not a multiple of the device's sectors
      // ends in a part of one, which is written
      while (this.#byDevice && end - pos >= this.#sector) {
        const left = end - pos;
        const n = Math.min(ZERO_OUT_BYTES, left - (left % this.#sector));
        try {
          await native!.zeroOut!(this.#fd, pos, n);
          this.blocksByDevice += Math.ceil(n / BLOCK_SIZE);
          pos += n;
        } catch (err) {
          if (!NO_ZERO_OUT.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
          this.#byDevice = false; // this device cannot: write them
        }
      }
      while (pos < end) {
        const n = Math.min(ZERO_RUN.length, end - pos);
        const { bytesWritten } = await writeAsync(this.#fd, ZERO_RUN, 0, n, pos);
        if (bytesWritten === 0) throw new Error(`no space left to write zeros at byte ${pos}`);
        pos += bytesWritten;
      }
    }
    return blocks;
  }
}

/** The blocks to take from one frame of one pack, ascending by disk block. */
export interface FrameTask {
  packId: string;
  frameOffset: number;
  frameLength: number;
  compression: BlockLocation["compression"];
  frameBlocks: number;
  slots: number[];
  blocks: number[];
  /** expected BLAKE3 of each block, 32 bytes each */
  hashes: Uint8Array;
}

/**
 * Groups the blocks to write (ascending, none of them zero) by the frame that holds them, in pack
 * order (each frame is read once). Frames are found by pack, then by offset (a number): a string key
 * per block made this ~400 ms for 350k blocks.
 */
async function planFrames(ds: Datastore, map: DiskMap, blocks: ArrayLike<number>): Promise<FrameTask[]> {
  const idx = await ds.index();
  const arena = map.hashArena;
  interface Plan {
    loc: BlockLocation;
    blocks: number[];
    slots: number[];
    refs: number[];
  }
  const byPack = new Map<string, Map<number, Plan>>();
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    const r = map.refs[b - map.first]!;
    const loc = idx.get(arena, (r - 1) * HASH_BYTES);
    if (loc === undefined) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `block ${arena.toString("hex", (r - 1) * HASH_BYTES, r * HASH_BYTES)} (disk block ${b}) is not in the datastore's index`,
      );
    }
    let frames = byPack.get(loc.packId);
    if (frames === undefined) {
      frames = new Map();
      byPack.set(loc.packId, frames);
    }
    let f = frames.get(loc.frameOffset);
    if (f === undefined) {
      f = { loc, blocks: [], slots: [], refs: [] };
      frames.set(loc.frameOffset, f);
    }
    f.blocks.push(b); // ascending, as `blocks` is
    f.slots.push(loc.slot);
    f.refs.push(r);
  }
  const out: FrameTask[] = [];
  for (const packId of [...byPack.keys()].sort()) {
    const frames = byPack.get(packId)!;
    for (const off of [...frames.keys()].sort((a, b) => a - b)) {
      const { loc, blocks: bs, slots, refs } = frames.get(off)!;
      const hashes = Buffer.allocUnsafe(refs.length * HASH_BYTES);
      refs.forEach((r, i) => {
        arena.copy(hashes, i * HASH_BYTES, (r - 1) * HASH_BYTES, r * HASH_BYTES);
      });
      out.push({
        packId,
        frameOffset: loc.frameOffset,
        frameLength: loc.frameLength,
        compression: loc.compression,
        frameBlocks: loc.frameBlocks,
        slots,
        blocks: bs,
        hashes,
      });
    }
  }
  return out;
}

/**
 * Writes one frame's blocks: each block is checked against its address, fingerprinted for the check
 * afterwards, and runs of consecutive disk blocks in consecutive slots go out in one write.
 */
export function applyFrame(
  raw: Buffer,
  t: FrameTask,
  fd: number,
  size: number,
  expect: Fingerprints,
): number {
  const hashes = Buffer.from(t.hashes.buffer, t.hashes.byteOffset, t.hashes.byteLength);
  const n = t.blocks.length;
  // every block of the frame hashed in one call when the addon can (most restores take most slots)
  const got = HASHES_IN_BATCHES && n * 2 >= t.frameBlocks ? hashBlocks(raw) : null;
  let written = 0;
  let k = 0;
  while (k < n) {
    let m = k + 1;
    while (m < n && t.blocks[m] === t.blocks[m - 1]! + 1 && t.slots[m] === t.slots[m - 1]! + 1) m++;
    for (let q = k; q < m; q++) {
      const slot = t.slots[q]!;
      const data = raw.subarray(slot * BLOCK_SIZE, (slot + 1) * BLOCK_SIZE);
      const want = hashes.subarray(q * HASH_BYTES, (q + 1) * HASH_BYTES);
      if (got === null || !got.subarray(slot * HASH_BYTES, (slot + 1) * HASH_BYTES).equals(want)) {
        // (with the batch's answer wrong, this says which block and where)
        verifyBlock(data, want, {
          packId: t.packId,
          frameOffset: t.frameOffset,
          frameLength: t.frameLength,
          slot,
          frameBlocks: t.frameBlocks,
          compression: t.compression,
        });
      }
      expect.kind[t.blocks[q]! - expect.first] = FINGERPRINT;
      expect.fp[t.blocks[q]! - expect.first] = xxh64(data, expect.seed);
    }
    const pos = t.blocks[k]! * BLOCK_SIZE;
    const len = Math.min((m - k) * BLOCK_SIZE, size - pos);
    writeSync(fd, raw, t.slots[k]! * BLOCK_SIZE, len, pos);
    written += m - k;
    k = m;
  }
  return written;
}

/** frames one native call applies (up to 32 MiB): a bounded turn of a thread-pool thread */
const FRAMES_PER_CALL = 256;
/** data blocks a restore plans and writes at a time (4 GiB): a block's plan costs ~30 bytes */
const PLAN_BLOCKS = 1 << 20;

/** Below this many frames a restore stays on the main thread: worker start-up would cost more. */
const WORKERS_FROM_FRAMES = 64;

/**
 * Fetches blocks frame by frame and writes them. Big restores from a local datastore run in worker
 * threads (each reads, decompresses, checks and writes its share of the frames), the rest here.
 */
async function writeBlocks(
  ds: Datastore,
  fd: number,
  target: string,
  map: DiskMap,
  blocks: ArrayLike<number>,
  size: number,
  expect: Fingerprints,
): Promise<number> {
  const tasks = await planFrames(ds, map, blocks);
  const workers = Math.min(4, availableParallelism());
  if (
    ds.backend instanceof LocalBackend &&
    nativeZstd !== null &&
    typeof nativeZstd.applyFrames === "function" &&
    nativeTakes(expect)
  ) {
    // the addon, on libuv's thread pool: no worker to start, no JavaScript per block. In calls of a
    // bounded size, never on every thread of the pool at once: a process server in the same process
    // writes its packs through that pool too
    const addon = nativeZstd;
    const root = ds.backend.location;
    // (onPool settles only when every call has: the caller closes the target next)
    const written = await onPool(Math.ceil(tasks.length / FRAMES_PER_CALL), workers, (i) =>
      applyNatively(
        addon,
        root,
        tasks.slice(i * FRAMES_PER_CALL, (i + 1) * FRAMES_PER_CALL),
        fd,
        size,
        expect,
      ),
    );
    return written.reduce((a, b) => a + b, 0);
  }
  if (ds.backend instanceof LocalBackend && tasks.length >= WORKERS_FROM_FRAMES && workers > 1) {
    const per = Math.ceil(tasks.length / workers);
    const jobs: RestoreJob[] = [];
    for (let i = 0; i < tasks.length; i += per) {
      jobs.push({ root: ds.backend.location, target, size, tasks: tasks.slice(i, i + per), expect });
    }
    const written = await runWorkers<RestoreJob, number>(
      new URL("./restore-worker.ts", import.meta.url),
      jobs,
    );
    return written.reduce((a, b) => a + b, 0);
  }
  let written = 0;
  // read ahead a few frames while writing the current one
  const ahead = 8;
  const loc = (t: FrameTask): BlockLocation => ({ ...t, slot: 0 });
  const pending: Promise<Buffer>[] = [];
  for (let i = 0; i < Math.min(ahead, tasks.length); i++) pending.push(ds.readFrame(loc(tasks[i]!)));
  for (let i = 0; i < tasks.length; i++) {
    const raw = await pending.shift()!;
    if (i + ahead < tasks.length) pending.push(ds.readFrame(loc(tasks[i + ahead]!)));
    written += applyFrame(raw, tasks[i]!, fd, size, expect);
  }
  return written;
}

/** One share of a restore's frames through the addon's applyFrames; its failures named as applyFrame's are. */
async function applyNatively(
  addon: NativeAddon,
  root: string,
  tasks: FrameTask[],
  fd: number,
  size: number,
  expect: Fingerprints,
): Promise<number> {
  const packIndex = new Map<string, number>();
  const packPaths: string[] = [];
  let count = 0;
  for (const t of tasks) count += t.blocks.length;
  const flat = new Float64Array(tasks.length * 6);
  const blocks = new Float64Array(count);
  const slots = new Uint32Array(count);
  const hashes = Buffer.allocUnsafe(count * HASH_BYTES);
  let at = 0;
  tasks.forEach((t, i) => {
    let p = packIndex.get(t.packId);
    if (p === undefined) {
      p = packPaths.length;
      packIndex.set(t.packId, p);
      packPaths.push(path.join(root, paths.pack(t.packId)));
    }
    flat.set([p, t.frameOffset, t.frameLength, t.compression, t.frameBlocks, t.blocks.length], i * 6);
    blocks.set(t.blocks, at);
    slots.set(t.slots, at);
    hashes.set(t.hashes.subarray(0, t.blocks.length * HASH_BYTES), at * HASH_BYTES);
    at += t.blocks.length;
  });
  try {
    return await addon.applyFrames(
      packPaths,
      flat,
      blocks,
      slots,
      hashes,
      fd,
      size,
      expect.seed,
      expect.kind,
      expect.fp,
      ...(expect.first === 0 ? [] : [expect.first]),
    );
  } catch (err) {
    const e = err as Error & { code?: string; task?: number; slot?: number; reason?: string };
    const t = e.task === undefined ? undefined : tasks[e.task];
    if (e.code !== "DATASTORE_CORRUPT" || t === undefined) throw err;
    const where = `pack ${t.packId} frame @${t.frameOffset}`;
    const why: Record<string, string> = {
      missing: `pack ${t.packId} is missing from the datastore`,
      short: `pack ${t.packId}: frame @${t.frameOffset} is cut short (${e.message} of ${t.frameLength} bytes)`,
      decompress: `${where}: frame does not decompress (${e.message})`,
      size: `${where}: frame holds ${e.message} bytes, expected ${t.frameBlocks * BLOCK_SIZE}`,
      compression: `${where}: unknown compression ${e.message}`,
    };
    if (e.reason === "hash") {
      const q = t.slots.indexOf(e.slot ?? -1);
      const hash = Buffer.from(t.hashes.buffer, t.hashes.byteOffset + q * HASH_BYTES, HASH_BYTES);
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `block ${q < 0 ? "?" : hash.toString("hex")} in pack ${t.packId} (frame @${t.frameOffset}, slot ${e.slot}) does not match its hash`,
      );
    }
    throw new SwitchbackError("DATASTORE_CORRUPT", why[e.reason ?? ""] ?? `${where}: ${e.message}`);
  }
}

export interface RestoreJob {
  root: string;
  target: string;
  size: number;
  tasks: FrameTask[];
  expect: Fingerprints;
}

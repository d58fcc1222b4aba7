// Packs: write-once files of compressed frames, named by the BLAKE3 hash of their bytes.
//
//   magic "SBPACK\0\1" | frame … frame | entry × n (48 bytes each) | n u32 | "SBPKEND1"
//
// An entry locates one block: hash[32] frameOffset u32 frameLength u32 slot u16 frameBlocks u16
// compression u8 reserved[3]. The trailer lets the index be rebuilt from the packs alone.
import { SwitchbackError } from "../domain/errors.ts";
import { giveBack, prefillAligned, takeAligned } from "../platform/aligned.ts";
import { zlib } from "../platform/lazy.ts";
import { native, nativeZstd } from "../platform/native.ts";
import {
  BLOCK_SIZE,
  COMPRESSION_NONE,
  COMPRESSION_ZSTD,
  type Compression,
  ENTRY_BYTES,
  FRAME_MAX_BLOCKS,
  PACK_END_MAGIC,
  PACK_MAGIC,
  PACK_TARGET_BYTES,
} from "./format.ts";
import { HASH_BYTES, PartsHash } from "./hash.ts";

export interface BlockLocation {
  packId: string;
  frameOffset: number;
  frameLength: number;
  slot: number;
  frameBlocks: number;
  compression: Compression;
}

/** A compressed group of blocks as it travels on the wire and lies in a pack. */
export interface Frame {
  /** hash of each block, 32 bytes each, in slot order */
  hashes: Buffer;
  payload: Buffer;
  compression: Compression;
  blocks: number;
}

const ZSTD_LEVEL = 1;
/** node:zlib's zstd options, made when first needed (the addon usually compresses: zlib is not loaded) */
let zstdOpts: { params: Record<number, number> } | undefined;

/**
 * Compresses blocks into a frame; keeps them raw when zstd saves less than 1/16, or without trying
 * when a sample shows the blocks to be incompressible (zstd -1 spends ~100 µs on 128 KiB of random
 * bytes to save nothing; the sample costs ~13 µs there, and ~0.3 µs on text, where it stops early).
 * `random`: each block's judgement by the sample, where the native addon made it already (1: looks random).
 */
export function makeFrame(hashes: Buffer, raw: Buffer, into?: Buffer, random?: Uint8Array): Frame {
  if (looksIncompressible(raw, hashes, random)) return frameOf(hashes, raw, null);
  if (nativeZstd !== null) {
    // straight into `into` (or a new buffer): a frame that does not fit in the limit stays raw
    const limit = zstdLimit(raw);
    const out = into !== undefined && into.length >= limit ? into : Buffer.allocUnsafe(limit);
    const n = nativeZstd.zstdCompress(raw, out.subarray(0, limit), ZSTD_LEVEL);
    return frameOf(hashes, raw, n >= 0 ? out.subarray(0, n) : null);
  }
  const { zl, opts } = zlibZstd();
  return frameOf(hashes, raw, zl.zstdCompressSync(raw, opts));
}

/**
 * makeFrame on libuv's thread pool (node:zlib's zstd), for the JavaScript thread, which must not
 * spend its time compressing: the frames a resync decides to ship only once it has compared them.
 */
export async function makeFrameOffThread(hashes: Buffer, raw: Buffer): Promise<Frame> {
  if (looksIncompressible(raw, hashes)) return frameOf(hashes, raw, null);
  const { zl, opts } = zlibZstd();
  const z = await new Promise<Buffer>((resolve, reject) => {
    zl.zstdCompress(raw, opts, (err, out) => (err === null ? resolve(out) : reject(err)));
  });
  return frameOf(hashes, raw, z);
}

/** A compressed frame is kept only below this size: zstd must save at least 1/16 of `raw`. */
function zstdLimit(raw: Buffer): number {
  return raw.length - (raw.length >> 4);
}

/** `raw` as a frame: as `z` (its zstd) when that saves enough, else raw. */
function frameOf(hashes: Buffer, raw: Buffer, z: Buffer | null): Frame {
  const blocks = raw.length / BLOCK_SIZE;
  return z !== null && z.length < zstdLimit(raw)
    ? { hashes, payload: z, compression: COMPRESSION_ZSTD, blocks }
    : { hashes, payload: raw, compression: COMPRESSION_NONE, blocks };
}

/** node:zlib and its zstd options, made when first needed (the addon usually compresses) */
function zlibZstd(): { zl: ReturnType<typeof zlib>; opts: { params: Record<number, number> } } {
  const zl = zlib();
  zstdOpts ??= { params: { [zl.constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } };
  return { zl, opts: zstdOpts };
}

// The sample: in every block, 8 pieces of 32 bytes, one in each 512-byte eighth (at an offset that
// moves from block to block: one of 15, chosen by the first byte of the block's hash, so that the
// native addon's journal pass judges a block exactly as this does, before its frame is made). A block looks random when its 256 sampled bytes hold 140 to 185
// distinct values (uniform random bytes: 162, sd 5; text: 40-70; bytes uniform over 180 values,
// 7.5 bits each, where zstd's entropy coding alone saves 1/16: 137) and no value 16 times or more
// (random: 16 times has odds of ~1e-11; a run of one value 528 bytes long anywhere in the block puts
// 16 of it in a piece).
// A block that repeats an earlier one of the frame (same hash) does not look random either: zstd
// would match it whole.
const PIECES = 8;
const PIECE_BYTES = 32;
const PIECE_STRIDE = BLOCK_SIZE / PIECES;
const counts = new Int32Array(256);

/** Whether the 4 KiB block at `raw[at]` looks random to the sample (`hashByte`: its hash's first byte). */
export function blockLooksRandom(raw: Uint8Array, at: number, hashByte: number): boolean {
  counts.fill(0);
  const phase = (hashByte % 15) * PIECE_BYTES;
  for (let p = 0; p < PIECES; p++) {
    const from = at + p * PIECE_STRIDE + phase;
    for (let i = from; i < from + PIECE_BYTES; i++) counts[raw[i]!]!++;
  }
  // branch-free (on random bytes each branch would be a coin toss, and mispredictions cost more
  // than the counting): (c + 255) >> 8 is 1 for a value seen, c >> 4 is not 0 for one seen 16 times
  let distinct = 0;
  let frequent = 0;
  for (let v = 0; v < 256; v++) {
    const c = counts[v]!;
    distinct += (c + 255) >> 8;
    frequent |= c >> 4;
  }
  return frequent === 0 && distinct >= 140 && distinct <= 185;
}

const hashHeads = new Uint32Array(FRAME_MAX_BLOCKS);

/** Whether block `slot` has the same hash as an earlier one (`hashHeads` holds the earlier ones' first 4 bytes). */
function repeatsEarlierBlock(hashes: Buffer, slot: number): boolean {
  const at = slot * HASH_BYTES;
  const head = hashes.readUInt32LE(at);
  hashHeads[slot] = head;
  for (let s = 0; s < slot; s++) {
    if (
      hashHeads[s] === head &&
      hashes.compare(hashes, at, at + HASH_BYTES, s * HASH_BYTES, (s + 1) * HASH_BYTES) === 0
    ) {
      return true;
    }
  }
  return false;
}

/**
 * True when zstd would not save 1/16 of these blocks, judged from a sample: fewer than 1/16 of them
 * look compressible. Measured on 1.9 GB of real files laid out as on a disk (Debian packages, git
 * packs, libraries, executables, images, fonts, databases, text; 14,626 frames, in file order and
 * shuffled): of the frames that zstd shrinks by 1/16, 2 in file order (to 0.89 and 0.91) and 1
 * shuffled (to 0.94) were judged incompressible: 30 KB not saved of 1.1 GB stored. `hashes` are
 * the blocks' content addresses, 32 bytes each.
 */
export function looksIncompressible(raw: Uint8Array, hashes: Buffer, random?: Uint8Array): boolean {
  const blocks = raw.length / BLOCK_SIZE;
  const enough = Math.ceil(blocks / 16);
  let compressible = 0;
  for (let s = 0; s < blocks; s++) {
    const looksRandom =
      random !== undefined ? random[s] === 1 : blockLooksRandom(raw, s * BLOCK_SIZE, hashes[s * HASH_BYTES]!);
    if (repeatsEarlierBlock(hashes, s) || !looksRandom) {
      if (++compressible >= enough) return false;
    }
  }
  return true;
}

/**
 * Returns the raw bytes of a frame, checking the decompressed size. A compressed frame is written into
 * `into` when it is given and big enough (the result is then a view of it), else into a new buffer.
 */
export function openFrame(
  payload: Buffer,
  compression: Compression,
  blocks: number,
  where: string,
  into?: Buffer,
): Buffer {
  const expected = blocks * BLOCK_SIZE;
  let raw: Buffer;
  if (compression === COMPRESSION_NONE) raw = payload;
  else if (compression === COMPRESSION_ZSTD) {
    try {
      if (nativeZstd !== null) {
        const out = into !== undefined && into.length >= expected ? into : Buffer.allocUnsafe(expected);
        raw = out.subarray(0, nativeZstd.zstdDecompress(payload, out.subarray(0, expected)));
      } else raw = zlib().zstdDecompressSync(payload, { maxOutputLength: expected });
    } catch (err) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `${where}: frame does not decompress (${(err as Error).message})`,
      );
    }
  } else throw new SwitchbackError("DATASTORE_CORRUPT", `${where}: unknown compression ${compression}`);
  if (raw.length !== expected) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `${where}: frame holds ${raw.length} bytes, expected ${expected}`,
    );
  }
  return raw;
}

export function writeEntry(
  out: Buffer,
  at: number,
  hash: Uint8Array,
  hashAt: number,
  loc: Omit<BlockLocation, "packId">,
): void {
  out.set(hash.subarray(hashAt, hashAt + HASH_BYTES), at);
  out.writeUInt32LE(loc.frameOffset, at + 32);
  out.writeUInt32LE(loc.frameLength, at + 36);
  out.writeUInt16LE(loc.slot, at + 40);
  out.writeUInt16LE(loc.frameBlocks, at + 42);
  out[at + 44] = loc.compression;
  out[at + 45] = 0;
  out[at + 46] = 0;
  out[at + 47] = 0;
}

export function readEntry(buf: Buffer, at: number): { hash: Buffer; loc: Omit<BlockLocation, "packId"> } {
  const compression = buf[at + 44];
  if (compression !== COMPRESSION_NONE && compression !== COMPRESSION_ZSTD) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `entry at byte ${at} has unknown compression ${compression}`,
    );
  }
  return {
    hash: buf.subarray(at, at + HASH_BYTES),
    loc: {
      frameOffset: buf.readUInt32LE(at + 32),
      frameLength: buf.readUInt32LE(at + 36),
      slot: buf.readUInt16LE(at + 40),
      frameBlocks: buf.readUInt16LE(at + 42),
      compression,
    },
  };
}

/**
 * Room for a pack: the target size, one more whole frame of raw blocks (the last one added), and 1 MiB
 * for the trailer (48 bytes a block: ~100 kB for 8 MiB of raw blocks, ~800 kB if they compress 8:1).
 */
const PACK_ROOM = PACK_TARGET_BYTES + PACK_MAGIC.length + FRAME_MAX_BLOCKS * BLOCK_SIZE + 1024 * 1024;

/**
 * Makes room for `count` packs ahead of time, their pages in place (prefillAligned), beside other
 * work; never rejects.
 */
export function preparePackBuffers(count: number): Promise<void> {
  return prefillAligned(PACK_ROOM, count);
}

/**
 * Accumulates frames until the pack is big enough to close. Each frame is copied, as it is added, into
 * one page-aligned buffer that becomes the pack file's bytes (written from there with O_DIRECT, no
 * second copy), so the caller may reuse a frame's memory as soon as add() returns. The buffer comes
 * from a pool: release() the finished pack once it is written.
 */
export class PackBuilder {
  #buf: Buffer | null = null;
  // The pack's id: with the native addon, hashed whole on libuv's thread pool when the pack closes
  // (beside the JavaScript thread's work: ~8 ms of it for a point's 21 MB, and a full copy's main
  // thread is busy enough); without it, frame by frame as they are added, while each is fresh in
  // the cache.
  readonly #id: PartsHash | null = native?.blake3OnPool !== undefined ? null : new PartsHash();
  #finished: Promise<FinishedPack> | undefined;
  /** buffers outgrown (a long trailer): kept until release(), as bytes of them may still be being written */
  readonly #retired: Buffer[] = [];
  readonly #entries: Buffer[] = [];
  #offset = PACK_MAGIC.length;
  #count = 0;

  constructor() {
    this.#id?.update(PACK_MAGIC);
  }

  get bytes(): number {
    return this.#offset;
  }
  get blockCount(): number {
    return this.#count;
  }

  /** The buffer, with room for `more` bytes after the offset (taken on first use, grown when short). */
  #room(more: number): Buffer {
    const need = this.#offset + more;
    if (this.#buf === null) {
      this.#buf = takeAligned(Math.max(PACK_ROOM, need));
      PACK_MAGIC.copy(this.#buf, 0);
    } else if (this.#buf.length < need) {
      const bigger = takeAligned(Math.max(need, this.#buf.length * 2));
      this.#buf.copy(bigger, 0, 0, this.#offset);
      this.#retired.push(this.#buf);
      this.#buf = bigger;
    }
    return this.#buf;
  }

  /**
   * The pack's bytes [from, to), below `bytes` (or the finished pack's size): a view of its buffer,
   * valid until release(). Bytes once added never change, so they may be written out before the pack
   * is finished.
   */
  bytesIn(from: number, to: number): Buffer {
    if (this.#buf === null) throw new Error("PackBuilder.bytesIn of an empty or released pack");
    return this.#buf.subarray(from, to);
  }

  add(frame: Frame, keep?: readonly boolean[]): void {
    if (this.#finished !== undefined) throw new Error("PackBuilder.add after finish");
    const e = Buffer.alloc(frame.blocks * ENTRY_BYTES);
    let n = 0;
    for (let slot = 0; slot < frame.blocks; slot++) {
      if (keep !== undefined && keep[slot] !== true) continue;
      writeEntry(e, n * ENTRY_BYTES, frame.hashes, slot * HASH_BYTES, {
        frameOffset: this.#offset,
        frameLength: frame.payload.length,
        slot,
        frameBlocks: frame.blocks,
        compression: frame.compression,
      });
      n++;
    }
    this.#entries.push(e.subarray(0, n * ENTRY_BYTES));
    this.#count += n;
    frame.payload.copy(this.#room(frame.payload.length), this.#offset);
    this.#id?.update(frame.payload);
    this.#offset += frame.payload.length;
  }

  /**
   * The finished pack: its bytes (one buffer, in `parts`), its id, and its trailer entries (for the
   * index). Add nothing after; release() once the bytes are written.
   */
  finish(): Promise<FinishedPack> {
    this.#finished ??= this.#finish();
    return this.#finished;
  }

  async #finish(): Promise<FinishedPack> {
    const entries = Buffer.concat(this.#entries);
    const foot = Buffer.alloc(4 + PACK_END_MAGIC.length);
    foot.writeUInt32LE(this.#count, 0);
    PACK_END_MAGIC.copy(foot, 4);
    const buf = this.#room(entries.length + foot.length);
    entries.copy(buf, this.#offset);
    foot.copy(buf, this.#offset + entries.length);
    const size = this.#offset + entries.length + foot.length;
    let id: string;
    if (this.#id !== null) {
      this.#id.update(entries);
      this.#id.update(foot);
      id = this.#id.digest().toString("hex");
    } else id = (await native!.blake3OnPool!(buf.subarray(0, size))).toString("hex");
    return {
      id,
      parts: [buf.subarray(0, size)],
      entries,
      size,
      release: () => {
        if (this.#buf === null) return;
        giveBack(this.#buf);
        this.#buf = null;
        for (const b of this.#retired.splice(0)) giveBack(b);
      },
    };
  }
}

export interface FinishedPack {
  id: string;
  /** the pack file's bytes: valid until release() */
  parts: Buffer[];
  entries: Buffer;
  size: number;
  /** hands the pack's buffer back for reuse; its bytes must not be used afterwards */
  release(): void;
}

/** Reads and checks a pack's trailer from its last bytes; returns the raw entry records. */
export function parsePackTrailer(
  packId: string,
  tail: Buffer,
  packSize: number,
): { entries: Buffer; count: number } {
  const where = `pack ${packId}`;
  const footLen = 4 + PACK_END_MAGIC.length;
  if (tail.length < footLen || !tail.subarray(tail.length - PACK_END_MAGIC.length).equals(PACK_END_MAGIC)) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `${where}: trailer magic missing (truncated or damaged pack)`,
    );
  }
  const count = tail.readUInt32LE(tail.length - footLen);
  const need = count * ENTRY_BYTES + footLen;
  if (need + PACK_MAGIC.length > packSize) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `${where}: trailer claims ${count} entries, more than the pack holds`,
    );
  }
  if (tail.length < need) return { entries: Buffer.alloc(0), count: -need };
  return { entries: tail.subarray(tail.length - need, tail.length - footLen), count };
}

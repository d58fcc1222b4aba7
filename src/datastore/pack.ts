// Packs: write-once files of compressed frames, named by the BLAKE3 hash of their bytes.
//
//   magic "SBPACK\0\1" | frame … frame | entry × n (48 bytes each) | n u32 | "SBPKEND1"
//
// An entry locates one block: hash[32] frameOffset u32 frameLength u32 slot u16 frameBlocks u16
// compression u8 reserved[3]. The trailer lets the index be rebuilt from the packs alone.
import { constants as zc, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { SwitchbackError } from "../domain/errors.ts";
import {
  BLOCK_SIZE,
  COMPRESSION_NONE,
  COMPRESSION_ZSTD,
  type Compression,
  ENTRY_BYTES,
  PACK_END_MAGIC,
  PACK_MAGIC,
} from "./format.ts";
import { HASH_BYTES, hashParts } from "./hash.ts";

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

const ZSTD_OPTS = { params: { [zc.ZSTD_c_compressionLevel]: 1 } };

/** Compresses blocks into a frame; keeps them raw when zstd saves less than 1/16. */
export function makeFrame(hashes: Buffer, raw: Buffer): Frame {
  const blocks = raw.length / BLOCK_SIZE;
  const z = zstdCompressSync(raw, ZSTD_OPTS);
  if (z.length < raw.length - (raw.length >> 4)) {
    return { hashes, payload: z, compression: COMPRESSION_ZSTD, blocks };
  }
  return { hashes, payload: raw, compression: COMPRESSION_NONE, blocks };
}

/** Returns the raw bytes of a frame, checking the decompressed size. */
export function openFrame(payload: Buffer, compression: Compression, blocks: number, where: string): Buffer {
  const expected = blocks * BLOCK_SIZE;
  let raw: Buffer;
  if (compression === COMPRESSION_NONE) raw = payload;
  else if (compression === COMPRESSION_ZSTD) {
    try {
      raw = zstdDecompressSync(payload, { maxOutputLength: expected });
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

/** Accumulates frames in memory until the pack is big enough to close. */
export class PackBuilder {
  readonly #parts: Buffer[] = [PACK_MAGIC];
  readonly #entries: Buffer[] = [];
  #offset = PACK_MAGIC.length;
  #count = 0;

  get bytes(): number {
    return this.#offset;
  }
  get blockCount(): number {
    return this.#count;
  }

  add(frame: Frame, keep?: readonly boolean[]): void {
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
    this.#parts.push(frame.payload);
    this.#offset += frame.payload.length;
  }

  /** The finished pack: its bytes, its id, and its trailer entries (for the index). */
  finish(): { id: string; parts: Buffer[]; entries: Buffer; size: number } {
    const entries = Buffer.concat(this.#entries);
    const foot = Buffer.alloc(4 + PACK_END_MAGIC.length);
    foot.writeUInt32LE(this.#count, 0);
    PACK_END_MAGIC.copy(foot, 4);
    const parts = [...this.#parts, entries, foot];
    const id = hashParts(parts).toString("hex");
    return { id, parts, entries, size: this.#offset + entries.length + foot.length };
  }
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

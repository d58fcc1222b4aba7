// The 48-byte records (format.md: hash, frame, slot, compression) that a BlockIndex points into, numbered
// in the order they were added ("refs"). They lie in runs: a section of an index file kept as it was
// read (no copy: loading an index does not touch a record twice), a copy of the records given to
// addRecords, or a chunk of records written for blocks added one by one. Runs are never changed.
import { SwitchbackError } from "../domain/errors.ts";
import { ENTRY_BYTES } from "./format.ts";
import { HASH_BYTES } from "./hash.ts";
import type { BlockLocation } from "./pack.ts";

/** The first 4 bytes of a hash as a u32: BLAKE3 output is uniform, so this is already a hash. */
export function prefixAt(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/** A run of one-by-one records names its pack per record, in the reserved bytes 45..47 (never written out). */
const OWN_PACK = -1;
const MAX_OWN_PACKS = 1 << 24;
const CHUNK_MIN = 256;
const CHUNK_MAX = 1 << 16;

export class BlockRecords {
  /** per run: its first ref, buffer, byte offset of its first record, and pack number (or OWN_PACK) */
  readonly #first: number[] = [];
  readonly #bufs: Buffer[] = [];
  readonly #at: number[] = [];
  readonly #packs: number[] = [];
  #count = 0;
  #lastRun = 0;
  readonly #packIds: string[] = [];
  readonly #packNos = new Map<string, number>();
  #chunk: Buffer = Buffer.alloc(0);
  #chunkUsed = 0;
  #chunkRun = -1;

  /** How many records (refs) there are, duplicates included. */
  get count(): number {
    return this.#count;
  }

  get packIds(): readonly string[] {
    return this.#packIds;
  }

  #packNo(packId: string): number {
    let n = this.#packNos.get(packId);
    if (n === undefined) {
      n = this.#packIds.length;
      this.#packIds.push(packId);
      this.#packNos.set(packId, n);
    }
    return n;
  }

  /**
   * Takes `records` (whole 48-byte records of pack `packId`) as they are; returns the first one's ref.
   * Their compression bytes are checked by the caller (checkCompression) or by the table built on them.
   */
  addRun(packId: string, records: Buffer): number {
    const first = this.#count;
    this.#first.push(first);
    this.#bufs.push(records);
    this.#at.push(0);
    this.#packs.push(this.#packNo(packId));
    this.#count += records.length / ENTRY_BYTES;
    return first;
  }

  /** Writes one record for a block added on its own; returns its ref. */
  append(hash: Uint8Array, hashAt: number, loc: BlockLocation): number {
    const packNo = this.#packNo(loc.packId);
    if (packNo >= MAX_OWN_PACKS) throw new Error(`a block index holds at most ${MAX_OWN_PACKS} packs`);
    if (this.#chunkUsed * ENTRY_BYTES === this.#chunk.length) {
      // chunks grow with the records (at most 3 MiB each): little waste for small sets, few runs for big ones
      const n = Math.min(CHUNK_MAX, Math.max(CHUNK_MIN, this.#count));
      this.#chunk = Buffer.alloc(n * ENTRY_BYTES);
      this.#chunkUsed = 0;
      this.#chunkRun = -1;
    }
    if (this.#chunkRun !== this.#first.length - 1 || this.#chunkRun < 0) {
      this.#chunkRun = this.#first.length;
      this.#first.push(this.#count);
      this.#bufs.push(this.#chunk);
      this.#at.push(this.#chunkUsed * ENTRY_BYTES);
      this.#packs.push(OWN_PACK);
    }
    const c = this.#chunk;
    const a = this.#chunkUsed * ENTRY_BYTES;
    // byte by byte: a subarray and the range checks of writeUInt32LE cost more than the copy itself
    for (let j = 0; j < HASH_BYTES; j++) c[a + j] = hash[hashAt + j]!;
    putLE(c, a + 32, loc.frameOffset, 4);
    putLE(c, a + 36, loc.frameLength, 4);
    putLE(c, a + 40, loc.slot, 2);
    putLE(c, a + 42, loc.frameBlocks, 2);
    c[a + 44] = loc.compression;
    putLE(c, a + 45, packNo, 3);
    this.#chunkUsed++;
    return this.#count++;
  }

  /** The run that holds `ref`. */
  #run(ref: number): number {
    const first = this.#first;
    let r = this.#lastRun;
    if (first[r]! <= ref && (r + 1 === first.length || ref < first[r + 1]!)) return r;
    let lo = 0;
    let hi = first.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (first[mid]! <= ref) lo = mid;
      else hi = mid - 1;
    }
    r = lo;
    this.#lastRun = r;
    return r;
  }

  #byte(r: number, ref: number): number {
    return this.#at[r]! + (ref - this.#first[r]!) * ENTRY_BYTES;
  }

  /** True when record `ref` is for the block whose hash is at `hash[at]`. */
  keyEquals(ref: number, hash: Uint8Array, at: number): boolean {
    const r = this.#run(ref);
    return bytesEqual(this.#bufs[r]!, this.#byte(r, ref), hash, at);
  }

  /** True when records `a` and `b` are for the same block. */
  sameKey(a: number, b: number): boolean {
    const r = this.#run(b);
    const buf = this.#bufs[r]!;
    return this.keyEquals(a, buf, this.#byte(r, b));
  }

  /** The block hash of record `ref` (a view, not a copy). */
  hash(ref: number): Buffer {
    const r = this.#run(ref);
    const a = this.#byte(r, ref);
    return this.#bufs[r]!.subarray(a, a + HASH_BYTES);
  }

  location(ref: number): BlockLocation {
    const r = this.#run(ref);
    const b = this.#bufs[r]!;
    const a = this.#byte(r, ref);
    const pack = this.#packs[r]!;
    return {
      packId: this.#packIds[pack === OWN_PACK ? b.readUIntLE(a + 45, 3) : pack]!,
      frameOffset: b.readUInt32LE(a + 32),
      frameLength: b.readUInt32LE(a + 36),
      slot: b.readUInt16LE(a + 40),
      frameBlocks: b.readUInt16LE(a + 42),
      compression: b[a + 44] as BlockLocation["compression"],
    };
  }

  /**
   * Calls `fn` with each run in ref order: its buffer, the byte offset of its first record, its first
   * ref, its length, and its pack (undefined for records added one by one: add() wrote them).
   */
  eachRun(
    fn: (buf: Buffer, at: number, first: number, count: number, packId: string | undefined) => void,
  ): void {
    const runs = this.#first.length;
    for (let r = 0; r < runs; r++) {
      const first = this.#first[r]!;
      const end = r + 1 < runs ? this.#first[r + 1]! : this.#count;
      const pack = this.#packs[r]!;
      fn(
        this.#bufs[r]!,
        this.#at[r]!,
        first,
        end - first,
        pack === OWN_PACK ? undefined : this.#packIds[pack],
      );
    }
  }
}

/** Refuses records with a compression that format version 1 does not know, before any is used. */
export function checkCompression(packId: string, records: Buffer): void {
  for (let at = 0; at < records.length; at += ENTRY_BYTES) {
    const comp = records[at + 44]!;
    if (comp > 1)
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `pack ${packId}: entry at byte ${at} has unknown compression ${comp}`,
      );
  }
}

function putLE(b: Uint8Array, at: number, v: number, bytes: number): void {
  for (let j = 0; j < bytes; j++) b[at + j] = v >>> (8 * j);
}

function bytesEqual(a: Uint8Array, aAt: number, b: Uint8Array, bAt: number): boolean {
  for (let j = 0; j < HASH_BYTES; j++) if (a[aAt + j] !== b[bAt + j]) return false;
  return true;
}

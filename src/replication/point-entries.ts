// A point's entries for one disk as its passes find them: the block numbers and BLAKE3 hashes its
// manifest will list. A later pass's entry for a block replaces an earlier one (the frozen re-read
// after a pre-copy), and a resync takes back the entry of a block it finds as the parent had it. A
// base point keeps no entry for a zero block that has none yet.
//
// An incremental has few entries and keeps them in memory. A full copy of a big disk would not fit:
// 1 TiB of data is 268 million blocks, 32 bytes of hash each. Past `inMemory` entries they move to a
// scratch file in the agent state's folder, each block's hash at block × 32 (a hole where a block has
// none), with a bit per block saying which blocks have one: 32 MiB of memory per TiB of disk. The
// manifest then reads them back in block order, a window at a time.
import { closeSync } from "node:fs";
import { HASH_BYTES, isZeroHash } from "../datastore/hash.ts";
import { type DiskEntries, type EntrySource, PART_ENTRIES } from "../datastore/manifest.ts";
import { openScratch, preadFully, pwriteFully } from "../platform/files.ts";
import { BlockList } from "./block-list.ts";

/** entries kept in memory before they move to a scratch file: 32 MiB of hashes, 4 GiB of data */
export const ENTRIES_IN_MEMORY = 1 << 20;
/** hashes a run of consecutive blocks gathers before it is written to the scratch file: 64 KiB */
const RUN_BLOCKS = 2048;
/** blocks whose hashes the manifest reads back from the scratch file at a time: 1 MiB */
const WINDOW_BLOCKS = PART_ENTRIES / 2;

export class PointEntries {
  readonly #blocks: number;
  readonly #base: boolean;
  readonly #dir: string;
  readonly #inMemory: number;
  // in memory
  /**
   * per block, 1 + the index of its latest entry (0: none): zero is what a new array holds, so only
   * the pages of blocks that get entries are ever touched (a fill(-1) faulted in 2 MiB a disk of 2 GiB)
   */
  #latest: Int32Array | null;
  #hashes = Buffer.allocUnsafe(4096 * HASH_BYTES);
  #n = 0;
  /** the distinct blocks added, in the order they first came */
  #seen = new BlockList();
  // in the scratch file
  #fd = -1;
  /** a bit per block: it has an entry */
  #has: Uint8Array | null = null;
  /** a run of consecutive blocks' hashes not yet written */
  #run = Buffer.allocUnsafe(0);
  #runFrom = 0;
  #runLength = 0;

  /** `dir`: where a scratch file goes when the entries outgrow `inMemory` */
  constructor(blocks: number, base: boolean, dir: string, inMemory = ENTRIES_IN_MEMORY) {
    this.#blocks = blocks;
    this.#base = base;
    this.#dir = dir;
    this.#inMemory = inMemory;
    this.#latest = new Int32Array(blocks);
  }

  /** whether the entries have moved to a scratch file */
  get spilled(): boolean {
    return this.#has !== null;
  }

  add(block: number, hashes: Buffer, at: number): void {
    if (this.#has !== null) {
      this.#addSpilled(block, hashes, at);
      return;
    }
    const latest = this.#latest!;
    // (a zero block that has an entry from an earlier pass keeps it: the zeros are news then)
    if (this.#base && latest[block]! <= 0 && isZeroHash(hashes, at)) return;
    if (this.#n === this.#inMemory) {
      this.#spill();
      this.#addSpilled(block, hashes, at);
      return;
    }
    if ((this.#n + 1) * HASH_BYTES > this.#hashes.length) {
      const bigger = Buffer.allocUnsafe(this.#hashes.length * 2);
      this.#hashes.copy(bigger, 0, 0, this.#n * HASH_BYTES);
      this.#hashes = bigger;
    }
    hashes.copy(this.#hashes, this.#n * HASH_BYTES, at, at + HASH_BYTES);
    if (latest[block] === 0) this.#seen.push(block);
    latest[block] = ++this.#n;
  }

  /**
   * Takes back the entry of `block`, if it has one: a resync found the block as it was in the parent.
   * A later add gives it one again.
   */
  drop(block: number): void {
    if (this.#has !== null) {
      this.#has[Math.floor(block / 8)]! &= ~(1 << (block % 8));
      return;
    }
    // (-1: seen and dropped; it stays in #seen, which an add must not push it to twice)
    const latest = this.#latest!;
    if (latest[block]! > 0) latest[block] = -1;
  }

  /**
   * The entries as the manifest lists them, in block order: `base` drops zero blocks.
   * Their count is known at once; in a scratch file they are read once to count and once per walk.
   */
  source(base: boolean): EntrySource {
    if (this.#has === null) {
      const e = this.#inMemoryEntries(base);
      return { count: e.blocks.length, chunks: () => [e] };
    }
    this.#flushRun();
    let count = 0;
    for (const c of this.#walk(base)) count += c.blocks.length;
    return { count, chunks: () => this.#walk(base) };
  }

  /** Closes the scratch file (if any); the entries are gone. */
  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  /** The blocks added, ascending: sorted when few, else found by walking the whole disk. */
  #order(): ArrayLike<number> {
    const latest = this.#latest!;
    const total = latest.length;
    if (this.#seen.length * 16 < total) return this.#seen.done().sort();
    const out = new Float64Array(this.#seen.length);
    let k = 0;
    // (blocks seen and dropped since are not among them: fewer than #seen)
    for (let b = 0; b < total; b++) if (latest[b]! > 0) out[k++] = b;
    return out.subarray(0, k);
  }

  #inMemoryEntries(base: boolean): DiskEntries {
    const latest = this.#latest!;
    const order = this.#order();
    const blocks = new Float64Array(order.length);
    const idx = new Int32Array(order.length);
    let n = 0;
    for (let i = 0; i < order.length; i++) {
      const b = order[i]!;
      const e = latest[b]! - 1;
      if (e < 0) continue; // dropped
      if (base && isZeroHash(this.#hashes, e * HASH_BYTES)) continue;
      blocks[n] = b;
      idx[n++] = e;
    }
    const hashes = Buffer.allocUnsafe(n * HASH_BYTES);
    for (let i = 0; i < n; i++) {
      this.#hashes.copy(hashes, i * HASH_BYTES, idx[i]! * HASH_BYTES, (idx[i]! + 1) * HASH_BYTES);
    }
    return { blocks: blocks.subarray(0, n), hashes };
  }

  /** Moves the entries into a scratch file: from now on memory holds a bit per block. */
  #spill(): void {
    this.#fd = openScratch(this.#dir, "point-entries", this.#blocks * HASH_BYTES);
    this.#has = new Uint8Array(Math.ceil(this.#blocks / 8));
    this.#run = Buffer.allocUnsafe(RUN_BLOCKS * HASH_BYTES);
    const order = this.#order();
    const latest = this.#latest!;
    for (let i = 0; i < order.length; i++) {
      const b = order[i]!;
      if (latest[b]! > 0) this.#addSpilled(b, this.#hashes, (latest[b]! - 1) * HASH_BYTES);
    }
    this.#latest = null;
    this.#hashes = Buffer.allocUnsafe(0);
    this.#seen = new BlockList();
  }

  #addSpilled(block: number, hashes: Buffer, at: number): void {
    // (no shifts on block numbers: a disk of 8 TiB or more has blocks past 2^31)
    const has = this.#has!;
    const byte = Math.floor(block / 8);
    const bit = 1 << (block % 8);
    if (this.#base && (has[byte]! & bit) === 0 && isZeroHash(hashes, at)) return;
    has[byte]! |= bit;
    const end = this.#runFrom + this.#runLength;
    if (this.#runLength > 0 && block >= this.#runFrom && block < end) {
      // a block of the run again: its newer hash replaces the one gathered
      hashes.copy(this.#run, (block - this.#runFrom) * HASH_BYTES, at, at + HASH_BYTES);
      return;
    }
    if (this.#runLength === 0 || block !== end || this.#runLength === RUN_BLOCKS) {
      this.#flushRun();
      this.#runFrom = block;
    }
    hashes.copy(this.#run, this.#runLength * HASH_BYTES, at, at + HASH_BYTES);
    this.#runLength++;
  }

  #flushRun(): void {
    if (this.#runLength === 0) return;
    pwriteFully(this.#fd, this.#run.subarray(0, this.#runLength * HASH_BYTES), this.#runFrom * HASH_BYTES);
    this.#runLength = 0;
  }

  /** The spilled entries in block order, a window of the disk at a time (only windows with entries are read). */
  *#walk(base: boolean): Generator<DiskEntries> {
    const has = this.#has!;
    const window = Buffer.allocUnsafe(WINDOW_BLOCKS * HASH_BYTES);
    for (let from = 0; from < this.#blocks; from += WINDOW_BLOCKS) {
      const to = Math.min(this.#blocks, from + WINDOW_BLOCKS);
      // the window's first and last blocks with an entry (WINDOW_BLOCKS is a multiple of 8)
      let first = -1;
      let last = -1;
      for (let byte = from / 8; byte < Math.ceil(to / 8); byte++) {
        if (has[byte] === 0) continue;
        if (first < 0) first = byte;
        last = byte;
      }
      if (first < 0) continue;
      const lo = Math.max(from, first * 8);
      const hi = Math.min(to, (last + 1) * 8);
      const got = preadFully(this.#fd, window.subarray(0, (hi - lo) * HASH_BYTES), lo * HASH_BYTES);
      if (got !== (hi - lo) * HASH_BYTES)
        throw new Error("point entries: the scratch file is shorter than the disk");
      const blocks = new Float64Array(hi - lo);
      const hashes = Buffer.allocUnsafe((hi - lo) * HASH_BYTES);
      let n = 0;
      for (let b = lo; b < hi; b++) {
        if ((has[Math.floor(b / 8)]! & (1 << (b % 8))) === 0) continue;
        const at = (b - lo) * HASH_BYTES;
        if (base && isZeroHash(window, at)) continue;
        blocks[n] = b;
        window.copy(hashes, n * HASH_BYTES, at, at + HASH_BYTES);
        n++;
      }
      if (n > 0) yield { blocks: blocks.subarray(0, n), hashes: hashes.subarray(0, n * HASH_BYTES) };
    }
  }
}

// The two tables of a BlockIndex, both from a hash's 32-bit prefix to the refs of BlockRecords (8 bytes an
// entry; a block's record is read only when its prefix matches). A BucketTable is built in one go from
// every record (an index loaded from its files): a counting sort on the prefix's top bits, a pass to
// count and one to place, no probing, ~9 bytes a block. A ProbingTable takes blocks one at a time
// (linear probing); growing it moves only its 8-byte entries, never a record.
import { native } from "../platform/native.ts";
import { type BlockRecords, checkCompression, prefixAt } from "./block-records.ts";
import { ENTRY_BYTES } from "./format.ts";

/** A BucketTable entry for a later copy of a block already listed: lookups pass over it. */
const DEAD = 0xffffffff;

export class BucketTable {
  readonly #records: BlockRecords;
  readonly #shift: number;
  /** bucket b holds entries dir[b] .. dir[b + 1] - 1 */
  readonly #dir: Uint32Array;
  /** per entry: prefix, ref; within a bucket in ref order, so the first copy of a block is the one found */
  readonly #ent: Uint32Array;
  #size = -1;

  /**
   * The table of every record `records` holds; `built`: its tables, made by BucketTable.build (the
   * constructor makes them itself, on this thread, without).
   */
  constructor(records: BlockRecords, built?: { shift: number; dir: Uint32Array; ent: Uint32Array }) {
    this.#records = records;
    if (built !== undefined) {
      this.#shift = built.shift;
      this.#dir = built.dir;
      this.#ent = built.ent;
      return;
    }
    const n = records.count;
    const shift = shiftFor(n);
    const bits = 32 - shift;
    // one pass over the records: each one's prefix, its bucket counted, its compression byte checked
    // (it shares the record's cache lines; an unknown one is refused here)
    const pre = new Uint32Array(n);
    const dir = new Uint32Array(2 ** bits + 2);
    records.eachRun((b, from, first, count, packId) => {
      let bad = 0;
      for (let ref = first, a = from; ref < first + count; ref++, a += ENTRY_BYTES) {
        const p = prefixAt(b, a);
        pre[ref] = p;
        dir[(p >>> shift) + 2]!++;
        bad |= b[a + 44]! & 0xfe;
      }
      if (bad !== 0 && packId !== undefined)
        checkCompression(packId, b.subarray(from, from + count * ENTRY_BYTES));
    });
    for (let b = 2; b < dir.length; b++) dir[b]! += dir[b - 1]!;
    // dir[b + 1] is bucket b's start here and its end (bucket b + 1's start) once it is filled
    const ent = new Uint32Array(2 * n);
    for (let ref = 0; ref < n; ref++) {
      const p = pre[ref]!;
      const j = dir[(p >>> shift) + 1]!++;
      ent[2 * j] = p;
      ent[2 * j + 1] = ref;
    }
    this.#shift = shift;
    this.#dir = dir;
    this.#ent = ent;
  }

  /**
   * The table of every record `records` holds, built in the native addon on libuv's thread pool where
   * it can be (the JavaScript thread goes on with other work meanwhile: a point's write journal, say;
   * ~3 ms of a pool thread for 500,000 records against ~15 ms of a cold process's JavaScript), else
   * as the constructor builds it. A record of unknown compression is refused as the constructor does.
   */
  static async build(records: BlockRecords): Promise<BucketTable> {
    const addon = native;
    if (addon === null || typeof addon.bucketTable !== "function") return new BucketTable(records);
    const n = records.count;
    const shift = shiftFor(n);
    const runs: Buffer[] = [];
    const packs: (string | undefined)[] = [];
    records.eachRun((b, from, _first, count, packId) => {
      runs.push(b.subarray(from, from + count * ENTRY_BYTES));
      packs.push(packId);
    });
    const dir = new Uint32Array(2 ** (32 - shift) + 2);
    const ent = new Uint32Array(2 * n);
    const bad = await addon.bucketTable(runs, shift, dir, ent);
    if (bad >= 0) {
      // the run with the unknown byte: named as the constructor names it (a run of records added one
      // by one was checked when they were written)
      for (let r = bad; r < runs.length; r++)
        if (packs[r] !== undefined) checkCompression(packs[r]!, runs[r]!);
    }
    return new BucketTable(records, { shift, dir, ent });
  }

  /** Records listed, later copies of a block included. */
  get entries(): number {
    return this.#ent.length / 2;
  }

  /** Distinct blocks: the first call marks the later copies (a pass that loading does not wait for). */
  get size(): number {
    if (this.#size < 0)
      this.#size = this.#ent.length / 2 - markLaterCopies(this.#dir, this.#ent, this.#records);
    return this.#size;
  }

  /** The ref of the block whose hash (prefix `p`) is at `hash[at]`, or -1. */
  find(p: number, hash: Uint8Array, at: number): number {
    const b = p >>> this.#shift;
    const ent = this.#ent;
    for (let j = this.#dir[b]!, end = this.#dir[b + 1]!; j < end; j++) {
      if (ent[2 * j] !== p) continue;
      const ref = ent[2 * j + 1]!;
      if (ref !== DEAD && this.#records.keyEquals(ref, hash, at)) return ref;
    }
    return -1;
  }

  forEachRef(fn: (ref: number) => void): void {
    if (this.size === 0) return; // (size marks the later copies first)
    const ent = this.#ent;
    for (let j = 1; j < ent.length; j += 2) if (ent[j] !== DEAD) fn(ent[j]!);
  }
}

/** The shift of a BucketTable of `n` records: n/8 to n/4 buckets, 4 to 8 entries (one cache line) to look at for a block. */
function shiftFor(n: number): number {
  let bits = 1;
  while (bits < 30 && 2 ** (bits + 3) < n) bits++;
  return 32 - bits;
}

/** Marks every later copy of a block DEAD (copies share a bucket); returns how many there were. */
function markLaterCopies(dir: Uint32Array, ent: Uint32Array, records: BlockRecords): number {
  let dead = 0;
  const buckets = dir.length - 2;
  for (let b = 0; b < buckets; b++) {
    const end = dir[b + 1]!;
    for (let j = dir[b]! + 1; j < end; j++) {
      const p = ent[2 * j];
      for (let k = dir[b]!; k < j; k++) {
        if (ent[2 * k] !== p || ent[2 * k + 1] === DEAD) continue;
        if (records.sameKey(ent[2 * k + 1]!, ent[2 * j + 1]!)) {
          ent[2 * j + 1] = DEAD;
          dead++;
          break;
        }
      }
    }
  }
  return dead;
}

export class ProbingTable {
  readonly #records: BlockRecords;
  size = 0;
  #mask: number;
  /** per slot: prefix, ref + 1 (0: empty) */
  #slots: Uint32Array;

  /** Room for `capacity` blocks before the first growth. */
  constructor(records: BlockRecords, capacity: number) {
    this.#records = records;
    let cap = 16;
    while (cap * 0.7 < capacity) cap *= 2;
    this.#mask = cap - 1;
    this.#slots = new Uint32Array(2 * cap);
  }

  /** True when one more block would fill the table past 70 % (linear probing slows down beyond). */
  get full(): boolean {
    return (this.size + 1) * 10 > (this.#mask + 1) * 7;
  }

  /** The ref of the block whose hash (prefix `p`) is at `hash[at]`, or -1 - the slot it would take. */
  find(p: number, hash: Uint8Array, at: number): number {
    const s = this.#slots;
    const mask = this.#mask;
    for (let i = p & mask; ; i = (i + 1) & mask) {
      const v = s[2 * i + 1]!;
      if (v === 0) return -1 - i;
      if (s[2 * i] === p && this.#records.keyEquals(v - 1, hash, at)) return v - 1;
    }
  }

  /** Puts a block into the empty `slot` that find() named. */
  put(slot: number, p: number, ref: number): void {
    this.#slots[2 * slot] = p;
    this.#slots[2 * slot + 1] = ref + 1;
    this.size++;
  }

  grow(): void {
    const old = this.#slots;
    const mask = old.length - 1; // twice the slots: (old.length / 2) * 2 - 1
    const s = new Uint32Array(2 * old.length);
    for (let j = 0; j < old.length; j += 2) {
      if (old[j + 1] === 0) continue;
      const p = old[j]!;
      let i = p & mask;
      while (s[2 * i + 1] !== 0) i = (i + 1) & mask;
      s[2 * i] = p;
      s[2 * i + 1] = old[j + 1]!;
    }
    this.#mask = mask;
    this.#slots = s;
  }

  forEachRef(fn: (ref: number) => void): void {
    const s = this.#slots;
    for (let j = 1; j < s.length; j += 2) if (s[j] !== 0) fn(s[j]! - 1);
  }
}

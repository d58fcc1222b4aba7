// The in-memory index from block hash to its place in a pack. It keeps the 48-byte records themselves
// (BlockRecords: index files as read, no copy) and two tables from a hash's first 4 bytes to a record:
// a BucketTable built in bulk from the loaded files, and a ProbingTable for blocks added since. About
// 60 bytes a block; a JavaScript Map with string keys costs ~150 and millions of blocks are normal.
// Loading 350k blocks takes ~10 ms besides reading the files (an insert per record took ~150 ms).
import { SwitchbackError } from "../domain/errors.ts";
import { BlockRecords, checkCompression, prefixAt } from "./block-records.ts";
import { ENTRY_BYTES, INDEX_MAGIC } from "./format.ts";
import { HASH_BYTES, hashParts } from "./hash.ts";
import { type BlockLocation, writeEntry } from "./pack.ts";
import { BucketTable, ProbingTable } from "./prefix-tables.ts";

/** A location for BlockIndex used as a plain set of hashes (GC's mark, a writer's pending blocks). */
export const NO_LOCATION: BlockLocation = {
  packId: "",
  frameOffset: 0,
  frameLength: 0,
  slot: 0,
  frameBlocks: 0,
  compression: 0,
};

/** Blocks added one by one go into a rebuilt BucketTable when they are this many and as many as it holds. */
const MERGE_MIN = 1 << 16;

export class BlockIndex {
  readonly #records = new BlockRecords();
  #bulk: BucketTable;
  #added: ProbingTable;

  /** `capacity`: how many blocks to make room for before the first growth. */
  constructor(capacity = 1 << 16) {
    this.#bulk = new BucketTable(this.#records);
    this.#added = new ProbingTable(this.#records, capacity);
  }

  /** The index that index files describe; it keeps their buffers (an index file never changes). */
  static fromIndexFiles(files: readonly { name: string; buf: Buffer }[]): BlockIndex {
    const idx = BlockIndex.#ofFiles(files);
    idx.#bulk = new BucketTable(idx.#records);
    return idx;
  }

  /** fromIndexFiles, its table built on libuv's thread pool where the native addon can (BucketTable.build). */
  static async load(files: readonly { name: string; buf: Buffer }[]): Promise<BlockIndex> {
    const idx = BlockIndex.#ofFiles(files);
    idx.#bulk = await BucketTable.build(idx.#records);
    return idx;
  }

  static #ofFiles(files: readonly { name: string; buf: Buffer }[]): BlockIndex {
    const idx = new BlockIndex(0);
    for (const { name, buf } of files)
      for (const sec of decodeIndexFile(name, buf)) idx.#records.addRun(sec.packId, sec.entries);
    return idx;
  }

  /** Distinct blocks. */
  get size(): number {
    return this.#bulk.size + this.#added.size;
  }

  get packIds(): readonly string[] {
    return this.#records.packIds;
  }

  /** The ref of the block whose hash is at `hash[at]`, or a negative number. */
  #find(hash: Uint8Array, at: number): number {
    const p = prefixAt(hash, at);
    const ref = this.#bulk.find(p, hash, at);
    return ref >= 0 ? ref : this.#added.find(p, hash, at);
  }

  /**
   * The record number ("ref") of the block whose hash is at `hash[at]`, or a negative number: the
   * same for every copy of a block (its first record), below `records`. For marks kept as bits.
   */
  refOf(hash: Uint8Array, at = 0): number {
    return this.#find(hash, at);
  }

  /** Records held, later copies of a block included: every ref is below this. */
  get records(): number {
    return this.#records.count;
  }

  /** The hash of record `ref` (a view: do not keep it past the index). */
  hashOf(ref: number): Buffer {
    return this.#records.hash(ref);
  }

  has(hash: Uint8Array, at = 0): boolean {
    return this.#find(hash, at) >= 0;
  }

  get(hash: Uint8Array, at = 0): BlockLocation | undefined {
    const ref = this.#find(hash, at);
    return ref < 0 ? undefined : this.#records.location(ref);
  }

  /** Adds a location; an existing entry for the same hash is kept (any copy is as good as another). */
  add(hash: Uint8Array, at: number, loc: BlockLocation): boolean {
    const p = prefixAt(hash, at);
    const slot = this.#slotFor(p, hash, at);
    if (slot < 0) return false;
    this.#added.put(slot, p, this.#records.append(hash, at, loc));
    return true;
  }

  /** Adds every record of a pack trailer or index section (see addSections). */
  addRecords(packId: string, records: Buffer): void {
    this.addSections([{ packId, entries: records }]);
  }

  /**
   * Adds the records of pack trailers or index sections, as copies (a caller's buffer may be part of
   * something bigger). A record whose block is already indexed stays in the copy, unused.
   */
  addSections(sections: readonly { packId: string; entries: Buffer }[]): void {
    const own = Buffer.allocUnsafe(sections.reduce((n, s) => n + s.entries.length, 0));
    let at = 0;
    const copies = sections.map((s) => {
      const entries = own.subarray(at, at + s.entries.copy(own, at));
      at += entries.length;
      return { packId: s.packId, entries };
    });
    this.#addRuns(copies);
  }

  /**
   * Adds the records of index file `name`, kept as they are in `buf` (no copy: a view of the file
   * that the backend mapped costs the process no memory of its own); returns the file's sections.
   */
  addIndexFile(name: string, buf: Buffer): { packId: string; entries: Buffer }[] {
    const sections = decodeIndexFile(name, buf);
    this.#addRuns(sections);
    return sections;
  }

  #addRuns(sections: readonly { packId: string; entries: Buffer }[]): void {
    for (const s of sections) checkCompression(s.packId, s.entries);
    const first = this.#records.count;
    let n = 0;
    for (const s of sections) {
      this.#records.addRun(s.packId, s.entries);
      n += s.entries.length / ENTRY_BYTES;
    }
    if (n >= MERGE_MIN && n >= this.#bulk.entries + this.#added.size) {
      // as many records as are indexed already (a full copy's index file): rebuilding costs less
      this.#bulk = new BucketTable(this.#records);
      this.#added = new ProbingTable(this.#records, 0);
      return;
    }
    let ref = first;
    for (const { entries: e } of sections) {
      for (let a = 0; a < e.length; a += ENTRY_BYTES, ref++) {
        const p = prefixAt(e, a);
        const slot = this.#slotFor(p, e, a);
        if (slot >= 0) this.#added.put(slot, p, ref);
      }
    }
  }

  /** The ProbingTable slot for a block not indexed yet, or -1 when it is indexed. */
  #slotFor(p: number, hash: Uint8Array, at: number): number {
    // room first: a rebuilt BucketTable takes in every record there is, this one too when it is one
    if (this.#added.full) {
      const n = this.#added.size;
      if (n >= MERGE_MIN && n >= this.#bulk.entries) {
        // the bulk table at least doubles each time: a block is in ~2 rebuilds on average
        this.#bulk = new BucketTable(this.#records);
        this.#added = new ProbingTable(this.#records, n); // it will fill as far again: no growing anew
      } else this.#added.grow();
    }
    if (this.#bulk.find(p, hash, at) >= 0) return -1;
    const i = this.#added.find(p, hash, at);
    return i >= 0 ? -1 : -1 - i;
  }

  /** Calls `fn` for every entry. */
  forEach(fn: (hash: Buffer, loc: BlockLocation) => void): void {
    const each = (ref: number) => fn(this.#records.hash(ref), this.#records.location(ref));
    this.#bulk.forEachRef(each);
    this.#added.forEachRef(each);
  }
}

// Index file: magic "SBINDX\0\1" | (packId[32] | count u32 | entry × count) … ; named by its BLAKE3.
export function encodeIndexFile(packs: readonly { packId: string; entries: Buffer }[]): {
  id: string;
  parts: Buffer[];
} {
  const parts = [...indexFileParts(packs)];
  return { id: hashParts(parts).toString("hex"), parts };
}

/** The bytes of an index file of `packs`, part by part as the sections come. */
export function* indexFileParts(packs: Iterable<{ packId: string; entries: Buffer }>): Generator<Buffer> {
  yield INDEX_MAGIC;
  for (const p of packs) {
    const head = Buffer.alloc(HASH_BYTES + 4);
    Buffer.from(p.packId, "hex").copy(head);
    head.writeUInt32LE(p.entries.length / ENTRY_BYTES, HASH_BYTES);
    yield head;
    yield p.entries;
  }
}

export function decodeIndexFile(name: string, buf: Buffer): { packId: string; entries: Buffer }[] {
  if (!buf.subarray(0, INDEX_MAGIC.length).equals(INDEX_MAGIC)) {
    throw new SwitchbackError("DATASTORE_CORRUPT", `index file ${name}: not an index file (bad magic)`);
  }
  const out: { packId: string; entries: Buffer }[] = [];
  let at = INDEX_MAGIC.length;
  while (at < buf.length) {
    if (at + HASH_BYTES + 4 > buf.length) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `index file ${name}: truncated section header at byte ${at}`,
      );
    }
    const packId = buf.subarray(at, at + HASH_BYTES).toString("hex");
    const count = buf.readUInt32LE(at + HASH_BYTES);
    at += HASH_BYTES + 4;
    const end = at + count * ENTRY_BYTES;
    if (end > buf.length) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `index file ${name}: section for pack ${packId} is truncated`,
      );
    }
    out.push({ packId, entries: buf.subarray(at, end) });
    at = end;
  }
  return out;
}

export { writeEntry };

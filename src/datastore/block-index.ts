// The in-memory index from block hash to its place in a pack. An open-addressing table over typed
// arrays (about 60 bytes a block), because a JavaScript Map with string keys costs ~150 bytes a block
// and millions of blocks are normal. Index files on disk hold the same 48-byte records as pack trailers.
import { SwitchbackError } from "../domain/errors.ts";
import { ENTRY_BYTES, INDEX_MAGIC } from "./format.ts";
import { HASH_BYTES, hashParts } from "./hash.ts";
import { type BlockLocation, writeEntry } from "./pack.ts";

/** A location for BlockIndex used as a plain set of hashes (GC's mark, a writer's pending blocks). */
export const NO_LOCATION: BlockLocation = {
  packId: "",
  frameOffset: 0,
  frameLength: 0,
  slot: 0,
  frameBlocks: 0,
  compression: 0,
};

export class BlockIndex {
  #cap: number;
  #mask: number;
  #size = 0;
  #keys: Uint8Array;
  #keyWords: Uint32Array;
  /** per slot: packNo+1 (0 = empty), frameOffset, frameLength, slot<<16 | frameBlocks */
  #vals: Uint32Array;
  #comp: Uint8Array;
  readonly #packIds: string[] = [];
  readonly #packNos = new Map<string, number>();

  constructor(capacity = 1 << 16) {
    let cap = 1024;
    while (cap < capacity) cap <<= 1;
    this.#cap = cap;
    this.#mask = cap - 1;
    this.#keys = new Uint8Array(cap * HASH_BYTES);
    this.#keyWords = new Uint32Array(this.#keys.buffer);
    this.#vals = new Uint32Array(cap * 4);
    this.#comp = new Uint8Array(cap);
  }

  get size(): number {
    return this.#size;
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

  #find(hash: Uint8Array, at: number): number {
    const w0 = hash[at]! | (hash[at + 1]! << 8) | (hash[at + 2]! << 16) | (hash[at + 3]! << 24);
    let i = (w0 >>> 0) & this.#mask;
    const kw = this.#keyWords;
    for (;;) {
      if (this.#vals[i * 4] === 0) return -1 - i;
      const base = i * 8;
      if (kw[base] === w0 >>> 0 && this.#keyEquals(i, hash, at)) return i;
      i = (i + 1) & this.#mask;
    }
  }

  #keyEquals(i: number, hash: Uint8Array, at: number): boolean {
    const k = this.#keys;
    const base = i * HASH_BYTES;
    for (let j = 4; j < HASH_BYTES; j++) if (k[base + j] !== hash[at + j]) return false;
    return true;
  }

  has(hash: Uint8Array, at = 0): boolean {
    return this.#find(hash, at) >= 0;
  }

  get(hash: Uint8Array, at = 0): BlockLocation | undefined {
    const i = this.#find(hash, at);
    if (i < 0) return undefined;
    const v = this.#vals;
    return {
      packId: this.#packIds[v[i * 4]! - 1]!,
      frameOffset: v[i * 4 + 1]!,
      frameLength: v[i * 4 + 2]!,
      slot: v[i * 4 + 3]! >>> 16,
      frameBlocks: v[i * 4 + 3]! & 0xffff,
      compression: this.#comp[i] as BlockLocation["compression"],
    };
  }

  /** Adds a location; an existing entry for the same hash is kept (any copy is as good as another). */
  add(hash: Uint8Array, at: number, loc: BlockLocation): boolean {
    return this.#insert(
      hash,
      at,
      this.#packNo(loc.packId) + 1,
      loc.frameOffset,
      loc.frameLength,
      (loc.slot << 16) | loc.frameBlocks,
      loc.compression,
    );
  }

  #insert(
    hash: Uint8Array,
    at: number,
    pack1: number,
    off: number,
    len: number,
    slotBlocks: number,
    comp: number,
  ): boolean {
    if ((this.#size + 1) * 10 > this.#cap * 7) this.#grow();
    const i = this.#find(hash, at);
    if (i >= 0) return false;
    const slot = -1 - i;
    this.#keys.set(hash.subarray(at, at + HASH_BYTES), slot * HASH_BYTES);
    const v = this.#vals;
    v[slot * 4] = pack1;
    v[slot * 4 + 1] = off;
    v[slot * 4 + 2] = len;
    v[slot * 4 + 3] = slotBlocks;
    this.#comp[slot] = comp;
    this.#size++;
    return true;
  }

  /** Makes room for `n` more entries at once, so that loading a big index does not grow it step by step. */
  reserve(n: number): void {
    while ((this.#size + n) * 10 > this.#cap * 7) this.#grow();
  }

  /** Adds every record of a pack trailer or index section (the hot path of loading an index). */
  addRecords(packId: string, records: Buffer): void {
    const pack1 = this.#packNo(packId) + 1;
    this.reserve(records.length / ENTRY_BYTES);
    for (let at = 0; at < records.length; at += ENTRY_BYTES) {
      const comp = records[at + 44]!;
      if (comp > 1)
        throw new SwitchbackError(
          "DATASTORE_CORRUPT",
          `pack ${packId}: entry at byte ${at} has unknown compression ${comp}`,
        );
      this.#insert(
        records,
        at,
        pack1,
        records.readUInt32LE(at + 32),
        records.readUInt32LE(at + 36),
        (records.readUInt16LE(at + 40) << 16) | records.readUInt16LE(at + 42),
        comp,
      );
    }
  }

  #grow(): void {
    const old = { keys: this.#keys, vals: this.#vals, comp: this.#comp, cap: this.#cap };
    this.#cap *= 2;
    this.#mask = this.#cap - 1;
    this.#keys = new Uint8Array(this.#cap * HASH_BYTES);
    this.#keyWords = new Uint32Array(this.#keys.buffer);
    this.#vals = new Uint32Array(this.#cap * 4);
    this.#comp = new Uint8Array(this.#cap);
    for (let i = 0; i < old.cap; i++) {
      if (old.vals[i * 4] === 0) continue;
      const j = -1 - this.#find(old.keys, i * HASH_BYTES);
      this.#keys.set(old.keys.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), j * HASH_BYTES);
      this.#vals.set(old.vals.subarray(i * 4, i * 4 + 4), j * 4);
      this.#comp[j] = old.comp[i]!;
    }
  }

  /** Calls `fn` for every entry. */
  forEach(fn: (hash: Buffer, loc: BlockLocation) => void): void {
    const keys = Buffer.from(this.#keys.buffer);
    for (let i = 0; i < this.#cap; i++) {
      if (this.#vals[i * 4] === 0) continue;
      const loc = this.get(keys, i * HASH_BYTES)!;
      fn(keys.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES), loc);
    }
  }
}

// Index file: magic "SBINDX\0\1" | (packId[32] | count u32 | entry × count) … ; named by its BLAKE3.
export function encodeIndexFile(packs: readonly { packId: string; entries: Buffer }[]): {
  id: string;
  parts: Buffer[];
} {
  const parts: Buffer[] = [INDEX_MAGIC];
  for (const p of packs) {
    const head = Buffer.alloc(HASH_BYTES + 4);
    Buffer.from(p.packId, "hex").copy(head);
    head.writeUInt32LE(p.entries.length / ENTRY_BYTES, HASH_BYTES);
    parts.push(head, p.entries);
  }
  return { id: hashParts(parts).toString("hex"), parts };
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

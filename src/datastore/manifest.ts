// Point manifests: one file per recovery point. A point is either a base (lists every non-zero block
// of each disk) or a delta over its parent point (lists only blocks that changed, ZERO_HASH for
// blocks that became zero), so the metadata a point writes grows with what changed, not with the disk.
//
//   magic "SBPOINT\1" | header length u32 | header JSON | per disk: (blockIndex u64, hash[32]) × n | BLAKE3[32]
//
// A base point of a big disk has a big manifest (40 bytes per non-zero 4 KiB block: ~10 GiB for 1 TiB
// of data), so manifests are written and read part by part: `manifestParts` encodes entries given a
// chunk at a time, and `ManifestParser` takes the bytes in pieces of any size, checking as it goes.
import { SwitchbackError } from "../domain/errors.ts";
import type { DiskUuid, ItemName, PointId } from "../domain/ids.ts";
import { POINT_MAGIC } from "./format.ts";
import { HASH_BYTES, PartsHash } from "./hash.ts";

export type Consistency = "crash" | "app";

export interface DiskHeader {
  uuid: DiskUuid;
  sizeBytes: number;
  sectorSize: number;
  blockSize: number;
  /** number of (blockIndex, hash) entries in this manifest for this disk */
  entries: number;
  /** where the disk was read from, for operators */
  source?: string;
}

export interface PointHeader {
  version: 1;
  item: ItemName;
  id: PointId;
  /** null for a base point */
  parent: PointId | null;
  createdAt: string;
  consistency: Consistency;
  warnings: string[];
  disks: DiskHeader[];
  /** figures about how the point was taken (bytes read, sent, freeze time…) */
  stats: Record<string, number>;
}

export const ENTRY = 8 + HASH_BYTES;
/** entries per part of an encoded manifest, and at most per chunk a parser hands out: 2.5 MiB */
export const PART_ENTRIES = 65536;
const PREFIX = POINT_MAGIC.length + 4;
/** a manifest is read (and a process server checks one) in pieces of this size */
export const MANIFEST_PIECE_BYTES = 4 * 1024 * 1024;
/** the fewest bytes a manifest can have: its prefix, an empty header and its checksum */
export const MANIFEST_MIN_BYTES = PREFIX + HASH_BYTES;
/**
 * a header longer than this is damage (a real one is a few KiB: its warnings and a line per disk); the
 * parser gathers a header whole before it can check it, so a damaged length must not make it gather
 * the rest of the file
 */
export const HEADER_MAX_BYTES = 16 * 1024 * 1024;

/** Sorted (blockIndex, hash) pairs for one disk. */
export interface DiskEntries {
  /** blockIndex as float64-safe integers */
  blocks: Float64Array;
  /** hashes, 32 bytes each, aligned with blocks */
  hashes: Buffer;
}

export interface PointManifest {
  header: PointHeader;
  disks: DiskEntries[];
}

/** One disk's entries given a chunk at a time, ascending across chunks, their number known up front. */
export interface EntrySource {
  readonly count: number;
  /** may be called more than once; each call gives the same entries */
  chunks(): Iterable<DiskEntries>;
}

/** A point to write: its header (entry counts are taken from the sources) and each disk's entries. */
export interface ManifestSource {
  header: PointHeader;
  disks: readonly EntrySource[];
}

export function entrySource(e: DiskEntries): EntrySource {
  return { count: e.blocks.length, chunks: () => [e] };
}

export function manifestSource(m: PointManifest): ManifestSource {
  return { header: m.header, disks: m.disks.map(entrySource) };
}

function headerBytes(m: ManifestSource): Buffer {
  const header: PointHeader = {
    ...m.header,
    disks: m.header.disks.map((d, i) => ({ ...d, entries: m.disks[i]!.count })),
  };
  return Buffer.from(JSON.stringify(header), "utf8");
}

/** The encoded size of a manifest, in bytes. */
export function manifestSize(m: ManifestSource): number {
  return PREFIX + headerBytes(m).length + m.disks.reduce((n, d) => n + d.count * ENTRY, 0) + HASH_BYTES;
}

/**
 * The bytes of a manifest, part by part (the prefix and header, then entries at most PART_ENTRIES a
 * part, then the checksum), holding one part at a time. Throws when a source's entries are out of
 * order or their number is not its count.
 */
export function* manifestParts(m: ManifestSource): Generator<Buffer> {
  if (m.disks.length !== m.header.disks.length) {
    throw new Error(`manifest: ${m.disks.length} entry sources for ${m.header.disks.length} disks`);
  }
  const sum = new PartsHash();
  const emit = (b: Buffer): Buffer => {
    sum.update(b);
    return b;
  };
  const json = headerBytes(m);
  const prefix = Buffer.alloc(PREFIX);
  POINT_MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(json.length, POINT_MAGIC.length);
  yield emit(prefix);
  yield emit(json);
  for (const [d, src] of m.disks.entries()) {
    let given = 0;
    let last = -1;
    for (const c of src.chunks()) {
      for (let from = 0; from < c.blocks.length; from += PART_ENTRIES) {
        const n = Math.min(PART_ENTRIES, c.blocks.length - from);
        if (given + n > src.count) {
          throw new Error(`manifest: disk ${d} was to have ${src.count} entries, its chunks give more`);
        }
        const body = Buffer.allocUnsafe(n * ENTRY);
        for (let i = 0; i < n; i++) {
          const b = c.blocks[from + i]!;
          if (b <= last) throw new Error("manifest entries must be sorted and unique");
          last = b;
          body.writeUInt32LE(b % 0x1_0000_0000, i * ENTRY);
          body.writeUInt32LE(Math.floor(b / 0x1_0000_0000), i * ENTRY + 4);
          c.hashes.copy(body, i * ENTRY + 8, (from + i) * HASH_BYTES, (from + i + 1) * HASH_BYTES);
        }
        given += n;
        yield emit(body);
      }
    }
    if (given !== src.count) {
      throw new Error(`manifest: disk ${d} was to have ${src.count} entries, its chunks gave ${given}`);
    }
  }
  yield sum.digest();
}

export function encodeManifest(m: PointManifest): Buffer[] {
  return [...manifestParts(manifestSource(m))];
}

function corrupt(name: string, what: string): SwitchbackError {
  return new SwitchbackError("DATASTORE_CORRUPT", `manifest ${name}: ${what}`);
}

function parseHeader(name: string, json: Buffer): PointHeader {
  let header: PointHeader;
  try {
    header = JSON.parse(json.toString("utf8")) as PointHeader;
  } catch {
    throw corrupt(name, "header is not valid JSON");
  }
  if (header === null || typeof header !== "object" || header.version !== 1 || !Array.isArray(header.disks)) {
    throw corrupt(name, `unsupported manifest version ${(header as { version?: unknown } | null)?.version}`);
  }
  for (const [i, d] of header.disks.entries()) {
    const ok =
      d !== null &&
      typeof d === "object" &&
      Number.isSafeInteger(d.entries) &&
      d.entries >= 0 &&
      Number.isSafeInteger(d.sizeBytes) &&
      d.sizeBytes >= 0 &&
      Number.isSafeInteger(d.blockSize) &&
      d.blockSize > 0;
    if (!ok) throw corrupt(name, `disk ${i} of the header is not valid`);
  }
  return header;
}

/** The header's length from a manifest's prefix (its first PREFIX bytes), the header to end within `room` bytes. */
function headerLength(name: string, prefix: Buffer, room: number): number {
  if (!prefix.subarray(0, POINT_MAGIC.length).equals(POINT_MAGIC)) {
    throw corrupt(name, "not a point manifest (bad magic)");
  }
  const len = prefix.readUInt32LE(POINT_MAGIC.length);
  if (PREFIX + len > room) throw corrupt(name, "header is truncated");
  if (len > HEADER_MAX_BYTES) throw corrupt(name, `header of ${len} bytes is longer than any point's`);
  return len;
}

export function decodeManifestHeader(name: string, buf: Buffer): { header: PointHeader; bodyAt: number } {
  if (buf.length < PREFIX + HASH_BYTES) throw corrupt(name, "not a point manifest (bad magic)");
  const len = headerLength(name, buf, buf.length);
  return { header: parseHeader(name, buf.subarray(PREFIX, PREFIX + len)), bodyAt: PREFIX + len };
}

/** A chunk of one disk's entries, as a parser hands them out. */
export interface EntryChunk {
  disk: number;
  entries: DiskEntries;
}

/**
 * Checks and decodes a manifest of `size` bytes given in pieces of any size, in order. Entries come
 * out as they complete; the checksum covers the whole file, so they are the point's only once `end()`
 * has returned. When something is wrong before the end, the parser keeps hashing to the end and
 * `end()` throws: a damaged file is reported as a checksum mismatch, a well-formed file with wrong
 * contents by what is wrong.
 */
export class ManifestParser {
  readonly #name: string;
  readonly #size: number;
  readonly #sum = new PartsHash();
  /** bytes taken so far */
  #at = 0;
  /** bytes of the prefix, header or a split entry waiting for the rest */
  #carry: Buffer[] = [];
  #carried = 0;
  /** the header's length, once the prefix is in (-1 before) */
  #headerLen = -1;
  #header: PointHeader | null = null;
  #bodyAt = 0;
  #disk = 0;
  /** entries of #disk taken */
  #taken = 0;
  #last = -1;
  #blocksOfDisk = 0;
  readonly #trailer = Buffer.alloc(HASH_BYTES);
  #error: SwitchbackError | null = null;

  constructor(name: string, size: number) {
    this.#name = name;
    this.#size = size;
    if (size < PREFIX + HASH_BYTES) this.#error = corrupt(name, "not a point manifest (bad magic)");
  }

  /** the header, once its bytes have been taken (null before, or when it is not valid) */
  get header(): PointHeader | null {
    return this.#header;
  }

  /** whether something is already wrong (end() will throw): the rest need only be hashed */
  get failed(): boolean {
    return this.#error !== null;
  }

  /** Takes the next bytes; returns the entry chunks they complete. */
  push(bytes: Buffer): EntryChunk[] {
    if (this.#at + bytes.length > this.#size) {
      throw new Error(`manifest ${this.#name}: more than the ${this.#size} bytes announced`);
    }
    const out: EntryChunk[] = [];
    const end = this.#size - HASH_BYTES;
    // the checksum's own bytes
    const bodyPart = bytes.subarray(0, Math.max(0, Math.min(bytes.length, end - this.#at)));
    if (bodyPart.length < bytes.length) {
      const from = Math.max(0, this.#at - end);
      bytes.subarray(bodyPart.length).copy(this.#trailer, from);
    }
    this.#sum.update(bodyPart);
    this.#at += bytes.length;
    if (this.#error !== null) return out;
    try {
      this.#take(bodyPart, out);
    } catch (err) {
      if (!(err instanceof SwitchbackError)) throw err;
      this.#error = err;
    }
    return out;
  }

  #take(p: Buffer, out: EntryChunk[]): void {
    let off = 0;
    if (this.#header === null) {
      // the prefix, then the header
      while (this.#header === null && off < p.length) {
        const want = this.#headerLen < 0 ? PREFIX : PREFIX + this.#headerLen;
        const n = Math.min(p.length - off, want - this.#carried);
        this.#carry.push(p.subarray(off, off + n));
        this.#carried += n;
        off += n;
        if (this.#headerLen < 0 && this.#carried === PREFIX) {
          this.#headerLen = headerLength(this.#name, this.#carry0(), this.#size - HASH_BYTES);
        }
        if (this.#headerLen >= 0 && this.#carried === PREFIX + this.#headerLen) {
          const all = this.#carry0();
          this.#header = parseHeader(this.#name, all.subarray(PREFIX));
          this.#bodyAt = all.length;
          this.#carry = [];
          this.#carried = 0;
          this.#checkSize();
          this.#startDisk(0);
        }
      }
      if (this.#header === null) return;
    }
    const disks = this.#header.disks;
    while (off < p.length) {
      while (this.#disk < disks.length && this.#taken === disks[this.#disk]!.entries)
        this.#startDisk(this.#disk + 1);
      if (this.#disk >= disks.length) {
        // #checkSize made the body exactly the entries: nothing can be left (kept as a guard)
        throw corrupt(this.#name, `${p.length - off} stray bytes`);
      }
      // a split entry first
      if (this.#carried > 0) {
        const n = Math.min(p.length - off, ENTRY - this.#carried);
        this.#carry.push(p.subarray(off, off + n));
        this.#carried += n;
        off += n;
        if (this.#carried < ENTRY) return;
        const one = this.#carry0();
        this.#carry = [];
        this.#carried = 0;
        out.push({ disk: this.#disk, entries: this.#decode(one, 0, 1) });
        continue;
      }
      const left = disks[this.#disk]!.entries - this.#taken;
      const whole = Math.min(left, Math.floor((p.length - off) / ENTRY), PART_ENTRIES);
      if (whole > 0) {
        out.push({ disk: this.#disk, entries: this.#decode(p, off, whole) });
        off += whole * ENTRY;
        continue;
      }
      // the start of an entry that ends in the next piece
      this.#carry.push(p.subarray(off));
      this.#carried = p.length - off;
      off = p.length;
    }
  }

  #carry0(): Buffer {
    if (this.#carry.length !== 1) this.#carry = [Buffer.concat(this.#carry)];
    return this.#carry[0]!;
  }

  #checkSize(): void {
    const h = this.#header!;
    let at = this.#bodyAt;
    for (const d of h.disks) {
      at += d.entries * ENTRY;
      if (at > this.#size - HASH_BYTES) throw corrupt(this.#name, `entries of disk ${d.uuid} are truncated`);
    }
    if (at !== this.#size - HASH_BYTES)
      throw corrupt(this.#name, `${this.#size - HASH_BYTES - at} stray bytes`);
  }

  #startDisk(d: number): void {
    this.#disk = d;
    this.#taken = 0;
    this.#last = -1;
    const h = this.#header!.disks[d];
    this.#blocksOfDisk = h === undefined ? 0 : Math.ceil(h.sizeBytes / h.blockSize);
  }

  #decode(buf: Buffer, off: number, n: number): DiskEntries {
    const blocks = new Float64Array(n);
    const hashes = Buffer.allocUnsafe(n * HASH_BYTES);
    for (let i = 0, at = off; i < n; i++, at += ENTRY) {
      const b = buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 0x1_0000_0000;
      if (b >= this.#blocksOfDisk || b <= this.#last) {
        throw corrupt(
          this.#name,
          `disk ${this.#header!.disks[this.#disk]!.uuid} entry ${this.#taken + i} is out of order`,
        );
      }
      this.#last = b;
      blocks[i] = b;
      buf.copy(hashes, i * HASH_BYTES, at + 8, at + ENTRY);
    }
    this.#taken += n;
    return { blocks, hashes };
  }

  /** After the last byte: throws when the file is damaged or not a well-formed manifest. */
  end(): PointHeader {
    if (this.#at !== this.#size) {
      throw new Error(
        `manifest ${this.#name}: ${this.#size - this.#at} of its ${this.#size} bytes never came`,
      );
    }
    if (!this.#sum.digest().equals(this.#trailer)) {
      throw corrupt(this.#name, "checksum mismatch (the file is damaged)");
    }
    if (this.#error !== null) throw this.#error;
    if (this.#header === null) throw corrupt(this.#name, "header is truncated");
    return this.#header;
  }
}

/** Collects what a parser hands out into one DiskEntries per disk, sized from the header. */
export class ManifestCollector {
  readonly #parser: ManifestParser;
  #disks: DiskEntries[] | null = null;
  #filled: number[] = [];

  constructor(name: string, size: number) {
    this.#parser = new ManifestParser(name, size);
  }

  push(bytes: Buffer): void {
    const chunks = this.#parser.push(bytes);
    if (this.#disks === null && this.#parser.header !== null) {
      // the header's counts were checked against the size: these allocations are what the file holds
      this.#disks = this.#parser.header.disks.map((d) => ({
        blocks: new Float64Array(d.entries),
        hashes: Buffer.allocUnsafe(d.entries * HASH_BYTES),
      }));
      this.#filled = this.#disks.map(() => 0);
    }
    for (const c of chunks) {
      const d = this.#disks![c.disk]!;
      const at = this.#filled[c.disk]!;
      d.blocks.set(c.entries.blocks, at);
      c.entries.hashes.copy(d.hashes, at * HASH_BYTES);
      this.#filled[c.disk] = at + c.entries.blocks.length;
    }
  }

  end(): PointManifest {
    const header = this.#parser.end();
    return { header, disks: this.#disks ?? [] };
  }
}

export function decodeManifest(name: string, buf: Buffer): PointManifest {
  const c = new ManifestCollector(name, buf.length);
  c.push(buf);
  return c.end();
}

// One disk of a point, a window of blocks at a time: the chain of manifests from the base to the point
// is read side by side, each in block order (entries are sorted), and each window's map is built from
// the entries that fall in it. Memory follows the window, not the disk: a restore of a disk with 1 TiB
// of data held every manifest of the chain whole (40 bytes an entry) beside a map of the whole disk
// (4 bytes a block and 32 an entry), ~18 GB.
//
// Every manifest is read to its end and its checksum verified before the first window is given: a
// damaged manifest stops the reader before anything is written from it. Manifests of up to one piece
// (4 MiB: every delta of ordinary size) are kept in memory from then on; bigger ones are read again
// as the windows pass, through one open file each.
import type { ItemName, PointId } from "../domain/ids.ts";
import { type Datastore, diskOfChain } from "./datastore.ts";
import { DiskMap } from "./disk-map.ts";
import { HASH_BYTES } from "./hash.ts";
import { type DiskEntries, type EntryChunk, MANIFEST_PIECE_BYTES, type PointHeader } from "./manifest.ts";

export class DiskWindows {
  /** the point's header */
  readonly header: PointHeader;
  readonly blockCount: number;
  readonly #cursors: EntryCursor[];
  #next = 0;

  private constructor(header: PointHeader, blockCount: number, cursors: EntryCursor[]) {
    this.header = header;
    this.blockCount = blockCount;
    this.#cursors = cursors;
  }

  /** Opens disk `disk` of `item`'s point `id`; close() it (or read it to its last window) when done. */
  static async open(ds: Datastore, item: ItemName, id: PointId, disk: number): Promise<DiskWindows> {
    const chain = await ds.chainOf(item, id);
    const top = chain[chain.length - 1]!;
    const d = diskOfChain(
      chain.map((c) => c.header),
      disk,
    );
    const cursors: EntryCursor[] = [];
    try {
      for (const { header: h, size } of chain) {
        const kept: DiskEntries[] = [];
        // read to the end (the checksum is checked there), keeping the disk's entries when it is small
        for await (const c of ds.pointEntries(item, h.id)) {
          if (size <= MANIFEST_PIECE_BYTES && c.disk === disk && c.entries.blocks.length > 0)
            kept.push(c.entries);
        }
        cursors.push(
          size <= MANIFEST_PIECE_BYTES
            ? new EntryCursor(disk, null, kept)
            : new EntryCursor(disk, ds.pointEntries(item, h.id), []),
        );
      }
    } catch (err) {
      await Promise.all(cursors.map((c) => c.close()));
      throw err;
    }
    return new DiskWindows(top.header, Math.ceil(d.sizeBytes / d.blockSize), cursors);
  }

  /**
   * The map of blocks [from, to) (block numbers stay the disk's: `map.first` is `from`). Windows are
   * asked for in order, each starting where the one before ended.
   */
  async window(from: number, to: number): Promise<DiskMap> {
    if (from !== this.#next || to <= from || to > this.blockCount)
      throw new Error(
        `disk windows: [${from}, ${to}) does not follow ${this.#next} within ${this.blockCount} blocks`,
      );
    this.#next = to;
    const map = new DiskMap(to - from, from);
    // oldest first: a later manifest's entry replaces an earlier one's
    for (const c of this.#cursors) for (const e of await c.take(to)) map.apply(e);
    if (to === this.blockCount) await this.close();
    return map;
  }

  async close(): Promise<void> {
    await Promise.all(this.#cursors.map((c) => c.close()));
  }
}

/** One manifest's entries of one disk, handed out in block order as the windows move on. */
class EntryCursor {
  readonly #disk: number;
  #chunks: AsyncGenerator<EntryChunk> | null;
  /** chunks of the disk's entries in hand; the first from #pos on */
  readonly #queue: DiskEntries[];
  #pos = 0;

  constructor(disk: number, chunks: AsyncGenerator<EntryChunk> | null, queue: DiskEntries[]) {
    this.#disk = disk;
    this.#chunks = chunks;
    this.#queue = queue;
  }

  /** The entries with block numbers below `to` not handed out yet, in order. */
  async take(to: number): Promise<DiskEntries[]> {
    const out: DiskEntries[] = [];
    for (;;) {
      if (this.#queue.length === 0 && !(await this.#fill())) return out;
      const c = this.#queue[0]!;
      const end = firstAtOrAbove(c.blocks, to, this.#pos);
      if (end > this.#pos) {
        out.push({
          blocks: c.blocks.subarray(this.#pos, end),
          hashes: c.hashes.subarray(this.#pos * HASH_BYTES, end * HASH_BYTES),
        });
      }
      if (end < c.blocks.length) {
        this.#pos = end;
        return out;
      }
      this.#queue.shift();
      this.#pos = 0;
    }
  }

  async #fill(): Promise<boolean> {
    while (this.#chunks !== null) {
      const n = await this.#chunks.next();
      if (n.done) this.#chunks = null;
      else if (n.value.disk === this.#disk && n.value.entries.blocks.length > 0) {
        this.#queue.push(n.value.entries);
        return true;
      } else if (n.value.disk > this.#disk) await this.close(); // (its checksum was checked at open)
    }
    return false;
  }

  async close(): Promise<void> {
    const c = this.#chunks;
    this.#chunks = null;
    await c?.return(undefined);
  }
}

/** The first index at or after `from` whose block is `to` or more (blocks ascending). */
function firstAtOrAbove(blocks: Float64Array, to: number, from: number): number {
  let lo = from;
  let hi = blocks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (blocks[mid]! < to) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

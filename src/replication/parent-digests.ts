// What a resync compares a disk with: the parent point's block digests (src/datastore/digests.ts),
// fetched from the sink a window at a time as the passes reach them and kept for a few windows. A
// pass reads a disk in a few shards at once, each in block order, so a handful of windows serve all
// of them; a window asked for again after it went costs one more request, never a wrong answer.
import { DIGEST_BYTES } from "../datastore/digests.ts";

/** blocks per window: 1 MiB of digests (256 MiB of disk) */
export const DIGEST_WINDOW_BLOCKS = 1 << 16;
/** windows kept (16 MiB at most) */
const KEEP_WINDOWS = 16;

export type FetchDigests = (from: number, count: number) => Promise<Buffer>;

/** A range of the parent's digests in hand: whether a block is as it was in the parent. */
export interface DigestRange {
  /** true when the block's hash (32 bytes at `hashes[at]`, zeros for an all-zero block) has the parent's digest */
  same(block: number, hashes: Buffer, at: number): boolean;
}

export class ParentDigests {
  readonly blockCount: number;
  readonly #fetch: FetchDigests;
  readonly #window: number;
  /** window number → its digests, in the order they were last used */
  readonly #windows = new Map<number, Promise<Buffer>>();
  /** digests fetched (16 bytes each), for the point's stats */
  fetchedBlocks = 0;

  constructor(fetch: FetchDigests, blockCount: number, windowBlocks = DIGEST_WINDOW_BLOCKS) {
    this.#fetch = fetch;
    this.blockCount = blockCount;
    this.#window = windowBlocks;
  }

  /** The digests of blocks [from, to) of the disk. */
  async range(from: number, to: number): Promise<DigestRange> {
    if (from < 0 || to > this.blockCount || to <= from)
      throw new RangeError(`parent digests: blocks [${from}, ${to}) of ${this.blockCount}`);
    const first = Math.floor(from / this.#window);
    const last = Math.floor((to - 1) / this.#window);
    const got: Buffer[] = [];
    for (let w = first; w <= last; w++) got.push(await this.#get(w));
    const size = this.#window;
    return {
      same: (block, hashes, at) => {
        const w = Math.floor(block / size);
        const d = got[w - first]!;
        return (
          hashes.compare(
            d,
            (block - w * size) * DIGEST_BYTES,
            (block - w * size + 1) * DIGEST_BYTES,
            at,
            at + DIGEST_BYTES,
          ) === 0
        );
      },
    };
  }

  #get(w: number): Promise<Buffer> {
    let p = this.#windows.get(w);
    if (p !== undefined) {
      this.#windows.delete(w); // most recently used goes last
      this.#windows.set(w, p);
      return p;
    }
    const from = w * this.#window;
    const count = Math.min(this.#window, this.blockCount - from);
    p = this.#fetch(from, count).then((d) => {
      if (d.length !== count * DIGEST_BYTES)
        throw new Error(`parent digests: ${d.length} bytes for ${count} blocks`);
      this.fetchedBlocks += count;
      return d;
    });
    // a failed fetch is not kept: the next caller asks again
    p.catch(() => {
      if (this.#windows.get(w) === p) this.#windows.delete(w);
    });
    this.#windows.set(w, p);
    while (this.#windows.size > KEEP_WINDOWS) this.#windows.delete(this.#windows.keys().next().value!);
    return p;
  }
}

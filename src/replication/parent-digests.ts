// What a resync compares a disk with: the parent point's block digests (src/datastore/digests.ts),
// fetched from the sink a window at a time as its first pass reaches them and kept for a few windows.
// A pass reads a disk in a few shards at once, each in block order, so a handful of windows serve all
// of them; a window asked for again after it went costs one more request, never a wrong answer.
import { DIGEST_BYTES } from "../datastore/digests.ts";
import { HASH_BYTES } from "../datastore/hash.ts";

/** blocks per window: 1 MiB of digests (256 MiB of disk) */
export const DIGEST_WINDOW_BLOCKS = 1 << 16;
/** windows kept (16 MiB at most) */
const KEEP_WINDOWS = 16;

export type FetchDigests = (from: number, count: number) => Promise<Buffer>;

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

  /**
   * Per block of `blocks` (ascending), 1 when its hash (32 bytes at `hashes[i × 32]`, zeros for an
   * all-zero block) has the parent's digest: the block is as it was in the parent. Only the windows
   * the blocks fall in are fetched, one after another (a batch of blocks scattered over the disk holds
   * one window at a time, not every window between its first and last block).
   */
  async same(blocks: Float64Array, hashes: Buffer): Promise<Uint8Array> {
    const out = new Uint8Array(blocks.length);
    const size = this.#window;
    for (let i = 0; i < blocks.length; ) {
      const w = Math.floor(blocks[i]! / size);
      if (blocks[i]! < 0 || blocks[i]! >= this.blockCount)
        throw new RangeError(`parent digests: block ${blocks[i]} of ${this.blockCount}`);
      const d = await this.#get(w);
      const base = w * size;
      for (; i < blocks.length && blocks[i]! < base + size; i++) {
        const at = (blocks[i]! - base) * DIGEST_BYTES;
        out[i] =
          hashes.compare(d, at, at + DIGEST_BYTES, i * HASH_BYTES, i * HASH_BYTES + DIGEST_BYTES) === 0
            ? 1
            : 0;
      }
    }
    return out;
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

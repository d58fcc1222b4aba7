// The resolved content of one disk at one point: for every block, its hash or "zero".
// Built by applying a chain of manifests (base, then deltas, oldest first).
import { HASH_BYTES, isZeroHash } from "./hash.ts";
import type { DiskEntries } from "./manifest.ts";

export class DiskMap {
  /** blocks the map covers: [first, first + blockCount) of the disk */
  readonly blockCount: number;
  /** the disk's block that refs[0] is (0 but for a window of a disk: DiskWindows) */
  readonly first: number;
  /** per block from `first`: 0 = all-zero, k > 0 = hash number k-1 in #hashes */
  readonly refs: Uint32Array;
  #hashes: Buffer;
  #count = 0;

  constructor(blockCount: number, first = 0) {
    this.blockCount = blockCount;
    this.first = first;
    // in shared memory: comparison workers read the map without a copy
    this.refs = new Uint32Array(new SharedArrayBuffer(blockCount * 4));
    this.#hashes = sharedBuffer(Math.max(1, Math.min(blockCount, 4096)) * HASH_BYTES);
  }

  /** Applies a base or delta manifest's entries on top of what the map holds. */
  apply(e: DiskEntries): void {
    for (let i = 0; i < e.blocks.length; i++) {
      const b = e.blocks[i]! - this.first;
      if (isZeroHash(e.hashes, i * HASH_BYTES)) this.refs[b] = 0;
      else this.refs[b] = this.#push(e.hashes, i * HASH_BYTES);
    }
  }

  #push(src: Buffer, at: number): number {
    if ((this.#count + 1) * HASH_BYTES > this.#hashes.length) {
      const bigger = sharedBuffer(this.#hashes.length * 2);
      this.#hashes.copy(bigger, 0, 0, this.#count * HASH_BYTES);
      this.#hashes = bigger;
    }
    src.copy(this.#hashes, this.#count * HASH_BYTES, at, at + HASH_BYTES);
    return ++this.#count;
  }

  /** Hash of the disk's block `b` (within the map), or undefined when the block is all zeros. */
  hashOf(b: number): Buffer | undefined {
    const r = this.refs[b - this.first]!;
    if (r === 0) return undefined;
    return this.#hashes.subarray((r - 1) * HASH_BYTES, r * HASH_BYTES);
  }

  get hashArena(): Buffer {
    return this.#hashes;
  }

  /** Entries of a base manifest: every non-zero block in order. */
  toEntries(): DiskEntries {
    let n = 0;
    for (let b = 0; b < this.blockCount; b++) if (this.refs[b] !== 0) n++;
    const blocks = new Float64Array(n);
    const hashes = Buffer.allocUnsafe(n * HASH_BYTES);
    let i = 0;
    for (let b = 0; b < this.blockCount; b++) {
      const r = this.refs[b]!;
      if (r === 0) continue;
      blocks[i] = this.first + b;
      this.#hashes.copy(hashes, i * HASH_BYTES, (r - 1) * HASH_BYTES, r * HASH_BYTES);
      i++;
    }
    return { blocks, hashes };
  }

  nonZeroBlocks(): number {
    let n = 0;
    for (let b = 0; b < this.blockCount; b++) if (this.refs[b] !== 0) n++;
    return n;
  }
}

function sharedBuffer(n: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(n));
}

/** Merges two deltas over the same disk: entries of `newer` win. Used when prune removes a point. */
export function mergeEntries(older: DiskEntries, newer: DiskEntries): DiskEntries {
  const blocks: number[] = [];
  const src: [DiskEntries, number][] = [];
  let i = 0;
  let j = 0;
  while (i < older.blocks.length || j < newer.blocks.length) {
    const a = i < older.blocks.length ? older.blocks[i]! : Number.POSITIVE_INFINITY;
    const b = j < newer.blocks.length ? newer.blocks[j]! : Number.POSITIVE_INFINITY;
    if (b <= a) {
      blocks.push(b);
      src.push([newer, j]);
      j++;
      if (a === b) i++;
    } else {
      blocks.push(a);
      src.push([older, i]);
      i++;
    }
  }
  const hashes = Buffer.allocUnsafe(blocks.length * HASH_BYTES);
  src.forEach(([e, k], n) => {
    e.hashes.copy(hashes, n * HASH_BYTES, k * HASH_BYTES, (k + 1) * HASH_BYTES);
  });
  return { blocks: Float64Array.from(blocks), hashes };
}

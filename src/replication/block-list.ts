// Lists of block numbers that may be as long as a disk has blocks.

/**
 * Block numbers gathered one at a time into a typed array: a JavaScript array stops at 2^27 elements,
 * the blocks of a 512 GiB disk.
 */
export class BlockList {
  #a = new Float64Array(1024);
  #n = 0;

  push(b: number): void {
    if (this.#n === this.#a.length) {
      const bigger = new Float64Array(this.#a.length * 2);
      bigger.set(this.#a);
      this.#a = bigger;
    }
    this.#a[this.#n++] = b;
  }

  get length(): number {
    return this.#n;
  }

  done(): Float64Array {
    return this.#a.slice(0, this.#n);
  }
}

/** The block numbers of every list, one after the other, in one typed array. */
export function concatBlocks(lists: readonly ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(lists.reduce((n, l) => n + l.length, 0));
  let at = 0;
  for (const l of lists) {
    out.set(l, at);
    at += l.length;
  }
  return out;
}

// Ranges of units or bytes as the passes and trackers hand them around: [from, to), ascending.
import { native } from "../platform/native.ts";

/** Ascending, merged [from, to) ranges (overlapping or touching ones become one). */
export function mergeRanges(r: readonly (readonly [number, number])[]): [number, number][] {
  const addon = native;
  if (addon?.mergePairs !== undefined && r.length >= NATIVE_MIN) {
    // in the native addon (a write journal's drain merges ~10,000 a point): where every range is
    // whole, non-empty and exact in a double, else below
    const flat = new Float64Array(2 * r.length);
    let whole = true;
    for (let i = 0; i < r.length && whole; i++) {
      const a = r[i]![0];
      const b = r[i]![1];
      whole = b > a && a >= 0 && b <= MAX_EXACT && Number.isInteger(a) && Number.isInteger(b);
      flat[2 * i] = a;
      flat[2 * i + 1] = b;
    }
    if (whole) return pairsOf(addon.mergePairs(flat, 1, Number.POSITIVE_INFINITY));
  }
  const out: [number, number][] = [];
  const push = (a: number, b: number): void => {
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  };
  // Each range as one number, start × 2^LEN_BITS + length, sorted by the typed array's own numeric
  // sort: a write journal's 10,000 ranges took 10-20 ms through a comparator over pairs, ~1 ms so.
  let fits = true;
  for (const [a, b] of r) {
    // (an inverted range, b < a, takes the other path too, which keeps it as it is)
    if (
      !(
        a >= 0 &&
        b >= a &&
        b - a < LEN_LIMIT &&
        a < START_LIMIT &&
        Number.isInteger(a) &&
        Number.isInteger(b)
      )
    ) {
      fits = false;
      break;
    }
  }
  if (fits) {
    const keys = new Float64Array(r.length);
    r.forEach(([a, b], i) => {
      keys[i] = a * LEN_LIMIT + (b - a);
    });
    return mergeKeys(keys);
  }
  for (const [a, b] of r.map(([a, b]): [number, number] => [a, b]).sort((x, y) => x[0] - y[0])) push(a, b);
  return out;
}

/** Merges ranges packed as start × LEN_LIMIT + length (sorted here, in place). */
function mergeKeys(keys: Float64Array): [number, number][] {
  keys.sort();
  const out: [number, number][] = [];
  for (const k of keys) {
    const len = k % LEN_LIMIT;
    const a = (k - len) / LEN_LIMIT;
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], a + len);
    else out.push([a, a + len]);
  }
  return out;
}

/** below this many ranges a merge stays in JavaScript (a call into the addon is not free either) */
const NATIVE_MIN = 64;
/** the largest whole number the native merge takes (2^53 - 1: exact in a double) */
const MAX_EXACT = Number.MAX_SAFE_INTEGER;

const LEN_BITS = 24;
/** ranges shorter than this (in their unit: blocks, units) are packed into one number */
const LEN_LIMIT = 2 ** LEN_BITS;
/** starts below this keep start × LEN_LIMIT + length exact in a double */
const START_LIMIT = 2 ** (53 - LEN_BITS);

/**
 * [from, to) pairs kept flat, two numbers each in one growing array: a write trace's 10,000 events a
 * drain were 10,000 small arrays (and as many again on the way to ranges) for the collector to sweep.
 */
export class RangeList {
  #v = new Float64Array(2048);
  #n = 0;

  get length(): number {
    return this.#n;
  }

  push(from: number, to: number): void {
    if (2 * this.#n + 2 > this.#v.length) {
      const bigger = new Float64Array(this.#v.length * 2);
      bigger.set(this.#v);
      this.#v = bigger;
    }
    this.#v[2 * this.#n] = from;
    this.#v[2 * this.#n + 1] = to;
    this.#n++;
  }

  /** Appends flat [from, to) pairs. */
  pushAll(pairs: Float64Array): void {
    if (2 * this.#n + pairs.length > this.#v.length) {
      let cap = this.#v.length;
      while (2 * this.#n + pairs.length > cap) cap *= 2;
      const bigger = new Float64Array(cap);
      bigger.set(this.#v.subarray(0, 2 * this.#n));
      this.#v = bigger;
    }
    this.#v.set(pairs, 2 * this.#n);
    this.#n += pairs.length / 2;
  }

  /** The pairs as they came, flat: a view, valid until the next push. */
  pairs(): Float64Array {
    return this.#v.subarray(0, 2 * this.#n);
  }

  /** Calls `f` for each pair, in the order they came. */
  forEach(f: (from: number, to: number) => void): void {
    for (let i = 0; i < this.#n; i++) f(this.#v[2 * i]!, this.#v[2 * i + 1]!);
  }
}

/** Byte intervals → ascending, merged [from, to) ranges of the `granule`-byte pieces they touch, of `count`. */
export function toRanges(bytes: RangeList, granule: number, count: number): [number, number][] {
  // in the native addon where it is built: a write journal's ~10,000 pairs a point took a cold
  // process 10-15 ms in JavaScript, ~1 ms there
  if (native?.mergePairs !== undefined) return pairsOf(native.mergePairs(bytes.pairs(), granule, count));
  return toRangesHere(bytes, granule, count);
}

/** toRanges in JavaScript (without the native addon). */
export function toRangesHere(bytes: RangeList, granule: number, count: number): [number, number][] {
  if (count < START_LIMIT) {
    // every piece range fits the packed sort: no pair array at all
    const keys = new Float64Array(bytes.length);
    let n = 0;
    let packed = true;
    bytes.forEach((from, to) => {
      const a = Math.floor(from / granule);
      const b = Math.min(count, Math.ceil(to / granule));
      if (b <= a) return;
      if (b - a >= LEN_LIMIT || a < 0) packed = false;
      keys[n++] = a * LEN_LIMIT + (b - a);
    });
    if (packed) return mergeKeys(keys.subarray(0, n));
  }
  const pieces: [number, number][] = [];
  bytes.forEach((from, to) => {
    const a = Math.floor(from / granule);
    const b = Math.min(count, Math.ceil(to / granule));
    if (b > a) pieces.push([a, b]);
  });
  return mergeRanges(pieces);
}

/** Flat [from, to) pairs as pairs. */
export function pairsOf(flat: Float64Array): [number, number][] {
  const out: [number, number][] = new Array(flat.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = [flat[2 * i]!, flat[2 * i + 1]!];
  return out;
}

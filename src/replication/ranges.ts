// Ranges of units or bytes as the passes and trackers hand them around: [from, to), ascending.

/** Ascending, merged [from, to) ranges (overlapping or touching ones become one). */
export function mergeRanges(r: readonly (readonly [number, number])[]): [number, number][] {
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
    keys.sort();
    for (const k of keys) {
      const len = k % LEN_LIMIT;
      const a = (k - len) / LEN_LIMIT;
      push(a, a + len);
    }
    return out;
  }
  for (const [a, b] of r.map(([a, b]): [number, number] => [a, b]).sort((x, y) => x[0] - y[0])) push(a, b);
  return out;
}

const LEN_BITS = 24;
/** ranges shorter than this (in their unit: blocks, units) are packed into one number */
const LEN_LIMIT = 2 ** LEN_BITS;
/** starts below this keep start × LEN_LIMIT + length exact in a double */
const START_LIMIT = 2 ** (53 - LEN_BITS);

/** Byte intervals → ascending, merged [from, to) ranges of the `granule`-byte pieces they touch, of `count`. */
export function toRanges(
  bytes: readonly (readonly [number, number])[],
  granule: number,
  count: number,
): [number, number][] {
  return mergeRanges(
    bytes
      .map(([a, b]): [number, number] => [Math.floor(a / granule), Math.min(count, Math.ceil(b / granule))])
      .filter(([a, b]) => b > a),
  );
}

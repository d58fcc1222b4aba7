// Ranges of units or bytes as the passes and trackers hand them around: [from, to), ascending.

/** Ascending, merged [from, to) ranges (overlapping or touching ones become one). */
export function mergeRanges(r: readonly (readonly [number, number])[]): [number, number][] {
  const sorted = r.map(([a, b]): [number, number] => [a, b]).sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

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

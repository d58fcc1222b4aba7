import assert from "node:assert/strict";
import { test } from "node:test";
import { native } from "../../src/platform/native.ts";
import { mergeRanges, RangeList, toRanges, toRangesHere } from "../../src/replication/ranges.ts";

/** The merge done the slow, obvious way: every covered point, then its runs. */
function bruteForce(r: [number, number][], base = 0): [number, number][] {
  const covered = new Set<number>();
  for (const [a, b] of r) for (let x = a; x < b; x++) covered.add(x - base);
  const xs = [...covered].sort((x, y) => x - y);
  const out: [number, number][] = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last !== undefined && x === last[1] - base) last[1]++;
    else out.push([x + base, x + base + 1]);
  }
  return out;
}

test("mergeRanges sorts and merges overlapping and touching ranges, whatever their order", () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 200; round++) {
    const r: [number, number][] = [];
    for (let i = 0; i < 1 + rnd(60); i++) {
      const a = rnd(500);
      r.push([a, a + 1 + rnd(20)]);
    }
    // touching ranges merge ([1,3) and [3,5) are [1,5)); bruteForce merges them too
    assert.deepEqual(mergeRanges(r), bruteForce(r), JSON.stringify(r));
  }
  assert.deepEqual(mergeRanges([]), []);
  assert.deepEqual(mergeRanges([[5, 5]]), [[5, 5]], "an empty range is kept, as before");
  // starts too big for the packed sort (a byte offset deep into a big disk) take the other path
  const big = 2 ** 45;
  const r: [number, number][] = [
    [big + 10, big + 20],
    [big, big + 5],
    [big + 5, big + 7],
    [3, 4],
  ];
  assert.deepEqual(mergeRanges(r), [
    [3, 4],
    [big, big + 7],
    [big + 10, big + 20],
  ]);
  // a range longer than the packed sort allows
  assert.deepEqual(
    mergeRanges([
      [0, 2 ** 30],
      [10, 20],
      [2 ** 30, 2 ** 30 + 1],
    ]),
    [[0, 2 ** 30 + 1]],
  );
});

test("mergeRanges of many ranges (the native addon's merge where it is built) is the brute-force merge", () => {
  let seed = 3;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 50; round++) {
    const r: [number, number][] = [];
    for (let i = 0; i < 64 + rnd(2000); i++) {
      const a = rnd(20_000);
      r.push([a, a + 1 + rnd(30)]);
    }
    assert.deepEqual(mergeRanges(r), bruteForce(r));
  }
  // an empty or fractional range among many keeps the JavaScript merge's answer
  const many: [number, number][] = Array.from({ length: 100 }, (_, i) => [3 * i, 3 * i + 2]);
  assert.deepEqual(mergeRanges([...many, [1000, 1000]]).at(-1), [1000, 1000]);
  assert.deepEqual(mergeRanges([...many, [0.5, 1.5]])[0], [0, 2]);
  // far into a big disk
  const big = 2 ** 50;
  assert.deepEqual(mergeRanges(many.map(([a, b]): [number, number] => [big + a, big + b + 1])), [
    [big, big + 300],
  ]);
});

function list(pairs: [number, number][]): RangeList {
  const l = new RangeList();
  for (const [a, b] of pairs) l.push(a, b);
  return l;
}

for (const [how, toRanges] of [
  ["in JavaScript", toRangesHere],
  ...(native?.mergePairs !== undefined ? [["in the native addon", toRangesNative] as const] : []),
] as const)
  test(`toRanges (${how}) turns byte intervals into merged ranges of the pieces they touch, within the count`, () => {
    const bytes: [number, number][] = [
      [8192, 8193],
      [0, 4096],
      [4095, 4097],
      [40000, 50000],
    ];
    const want = [
      [0, 3],
      [9, 12],
    ];
    assert.deepEqual(toRanges(list(bytes), 4096, 12), want);
    // the path for pieces the packed sort cannot hold (a huge count) gives the same
    assert.deepEqual(toRanges(list(bytes), 4096, 2 ** 40), [
      [0, 3],
      [9, 13],
    ]);
    // many pairs (the list grows) against the brute-force merge
    let seed = 11;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const many: [number, number][] = [];
    for (let i = 0; i < 5000; i++) {
      const a = rnd(4_000_000);
      many.push([a, a + 1 + rnd(20_000)]);
    }
    const pieces = many.map(([a, b]): [number, number] => [Math.floor(a / 4096), Math.ceil(b / 4096)]);
    assert.deepEqual(toRanges(list(many), 4096, 10_000), bruteForce(pieces));
  });

function toRangesNative(bytes: RangeList, granule: number, count: number): [number, number][] {
  return toRanges(bytes, granule, count);
}

test("the native merge refuses pairs that are not whole numbers from 0 to 2^53", {
  skip: native?.mergePairs !== undefined ? false : "the native addon is not built",
}, () => {
  for (const bad of [
    [-1, 5],
    [0.5, 3],
    [0, 2 ** 53],
    [Number.NaN, 1],
  ])
    assert.throws(() => native!.mergePairs!(Float64Array.from(bad), 512, 100), /mergePairs/);
  assert.deepEqual([...native!.mergePairs!(Float64Array.from([1000, 1100, 0, 1]), 512, 2)], [0, 2]);
});

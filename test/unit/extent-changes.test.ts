// Which blocks changed between two clones, from their extents: against a block-by-block model.
import assert from "node:assert/strict";
import { closeSync, openSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { native } from "../../src/platform/native.ts";
import { blocksAtSectors, changedByExtents, extentsVouch } from "../../src/replication/extent-changes.ts";
import { mergeRanges } from "../../src/replication/ranges.ts";
import { tempDir } from "../helpers/env.ts";

const B = 4096;
const UNWRITTEN = 0x800;

/** Extents (four numbers each) of a file whose block b lies at `place[b]` (-1: a hole), `flags[b]` on it. */
function extentsOf(place: number[], flags: number[]): Float64Array {
  const out: number[] = [];
  for (let b = 0; b < place.length; b++) {
    if (place[b]! < 0) continue;
    const last = out.length - 4;
    // consecutive blocks at consecutive places with the same flags make one extent
    if (
      last >= 0 &&
      out[last]! + out[last + 2]! === b * B &&
      out[last + 1]! + out[last + 2]! === place[b]! * B &&
      out[last + 3] === flags[b]
    )
      out[last + 2]! += B;
    else out.push(b * B, place[b]! * B, B, flags[b]!);
  }
  return Float64Array.from(out);
}

test("the blocks whose place differs, and only those, are changed (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: -1, max: 40 }), fc.boolean()), { minLength: 1, maxLength: 60 }),
      fc.array(fc.tuple(fc.nat(59), fc.integer({ min: -1, max: 99 }), fc.boolean()), { maxLength: 12 }),
      fc.integer({ min: 0, max: B - 1 }),
      (blocks, writes, tail) => {
        const basePlace = blocks.map(([p]) => p);
        const baseFlags = blocks.map(([, u]) => (u ? UNWRITTEN : 0));
        const nowPlace = [...basePlace];
        const nowFlags = [...baseFlags];
        for (const [b, p, u] of writes) {
          if (b >= nowPlace.length) continue;
          nowPlace[b] = p < 0 ? -1 : 100 + p; // a write lands in new blocks; -1 punches a hole
          nowFlags[b] = u ? UNWRITTEN : 0;
        }
        // the disk's size need not be a whole number of blocks
        const size = blocks.length * B - (tail % B);
        // between clones an unwritten extent is always read; for a write journal (unwrittenSame), one
        // unwritten at the same place in both maps held zeros in both
        for (const unwrittenSame of [false, true]) {
          const got = changedByExtents(
            extentsOf(basePlace, baseFlags),
            extentsOf(nowPlace, nowFlags),
            size,
            unwrittenSame,
          );
          assert.ok(got !== null);
          const changed = new Set<number>();
          for (const [a, z] of got) for (let b = a; b < z; b++) changed.add(b);
          for (let b = 0; b < blocks.length; b++) {
            const same =
              (basePlace[b] === -1 && nowPlace[b] === -1) ||
              (basePlace[b] === nowPlace[b] &&
                (unwrittenSame ? baseFlags[b] === nowFlags[b] : baseFlags[b] === 0 && nowFlags[b] === 0));
            assert.equal(
              changed.has(b),
              !same,
              `block ${b}: ${basePlace[b]}/${baseFlags[b]} → ${nowPlace[b]}/${nowFlags[b]} (unwrittenSame ${unwrittenSame})`,
            );
          }
          // ranges ascending and merged
          for (let k = 1; k < got.length; k++) assert.ok(got[k]![0] > got[k - 1]![1]);
        }
      },
    ),
    { numRuns: 500 },
  );
});

test("sectors written on the file system's device are placed in the file by its extents (property)", () => {
  fc.assert(
    fc.property(
      // a file of up to 40 blocks at places 0-199 of the device (-1: a hole), possibly sharing places
      fc.array(fc.integer({ min: -1, max: 199 }), { minLength: 1, maxLength: 40 }),
      // writes on the device: [first sector, sectors]
      fc.array(fc.tuple(fc.nat(200 * 8), fc.integer({ min: 1, max: 40 })), { maxLength: 10 }),
      fc.integer({ min: 0, max: B - 1 }),
      (place, writes, tail) => {
        const size = place.length * B - (tail % B);
        const extents = extentsOf(
          place,
          place.map(() => 0),
        );
        const sectors = mergeRanges(writes.map(([s, n]) => [s, s + n]));
        const got = blocksAtSectors(extents, sectors, size);
        const hit = new Set<number>();
        for (const [a, z] of got) for (let b = a; b < z; b++) hit.add(b);
        for (let b = 0; b < place.length; b++) {
          const p = place[b]!;
          // (the last block's bytes past the file's size are none of the disk's)
          const inFile = Math.min(B, size - b * B);
          const written =
            p >= 0 && inFile > 0 && sectors.some(([s, e]) => s * 512 < p * B + inFile && e * 512 > p * B);
          assert.equal(hit.has(b), written, `block ${b} at place ${p}`);
        }
        for (let k = 1; k < got.length; k++) assert.ok(got[k]![0] > got[k - 1]![1]);
      },
    ),
    { numRuns: 500 },
  );
});

test("extents out of order or of no length conclude nothing, and a file's extents past its size are not read", () => {
  const e = Float64Array.from([B, 0, B, 0, 0, B, B, 0]);
  assert.equal(changedByExtents(e, new Float64Array(0), 2 * B), null);
  assert.equal(changedByExtents(Float64Array.from([0, 0, 0, 0]), new Float64Array(0), B), null);
  // data past the end (preallocated) differs, but only the first two blocks belong to the disk
  const base = Float64Array.from([0, 0, 4 * B, 0]);
  const now = Float64Array.from([0, 0, 2 * B, 0, 2 * B, 99 * B, 2 * B, 0]);
  assert.deepEqual(changedByExtents(base, now, 2 * B), []);
  assert.deepEqual(changedByExtents(base, now, 3 * B), [[2, 3]]);
  // extents smaller than a block, or starting inside one, round out to whole blocks
  assert.deepEqual(
    changedByExtents(
      Float64Array.from([0, 0, 8192, 0]),
      Float64Array.from([0, 0, 5000, 0, 5000, 50000, 3192, 0]),
      8192,
    ),
    [[1, 2]],
  );
});

test("extents are trusted only on XFS and btrfs, for two files of one file system", (t) => {
  if (native?.fileSystemType === undefined) {
    assert.notEqual(process.env.CI, "true", "the native addon is not built or not loaded");
    t.skip("the native addon is not built (node scripts/build-native.mjs)");
    return;
  }
  const { dir, cleanup } = tempDir("sb-extents-");
  t.after(cleanup);
  const file = path.join(dir, "f");
  writeFileSync(file, "x");
  const fd = openSync(file, "r");
  try {
    const type = native.fileSystemType(fd);
    const cow = type === 0x58465342 || type === 0x9123683e;
    assert.equal(extentsVouch(fd, fd), cow, `file system type 0x${type.toString(16)}`);
  } finally {
    closeSync(fd);
  }
  // /proc is no file system with extents, and not the same one as the temp folder
  const proc = openSync("/proc/self/status", "r");
  const tmp = openSync(file, "r");
  try {
    assert.equal(extentsVouch(proc, proc), false);
    assert.equal(extentsVouch(tmp, proc), false);
  } finally {
    closeSync(proc);
    closeSync(tmp);
  }
});

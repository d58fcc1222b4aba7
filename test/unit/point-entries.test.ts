// A full copy of a big disk keeps its entries in a scratch file instead of memory: the manifest must
// list exactly what it would have listed from memory, whatever the order passes add blocks in.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { ZERO_HASH } from "../../src/datastore/hash.ts";
import type { EntrySource } from "../../src/datastore/manifest.ts";
import { PointEntries } from "../../src/replication/point-entries.ts";
import { tempDir } from "../helpers/env.ts";

const palette = [ZERO_HASH, randomBytes(32), randomBytes(32), randomBytes(32)];

function listed(src: EntrySource): [number, string][] {
  const out: [number, string][] = [];
  for (const c of src.chunks()) {
    c.blocks.forEach((b, i) => {
      out.push([b, c.hashes.subarray(i * 32, i * 32 + 32).toString("hex")]);
    });
  }
  assert.equal(out.length, src.count);
  return out;
}

/**
 * What a manifest must list: the latest hash of each block added (v = -1: the block's entry taken back,
 * as a resync does for a block the parent has), zeros dropped where a base skips them.
 */
function expected(adds: [number, number][], base: boolean): [number, string][] {
  const latest = new Map<number, number>();
  for (const [b, v] of adds) {
    if (v < 0) latest.delete(b);
    else if (base && !latest.has(b) && v === 0) continue;
    else latest.set(b, v);
  }
  return [...latest.entries()]
    .filter(([, v]) => !(base && v === 0))
    .sort((x, y) => x[0] - y[0])
    .map(([b, v]) => [b, palette[v]!.toString("hex")]);
}

test("entries in a scratch file list what entries in memory list (property)", () => {
  const { dir, cleanup } = tempDir("sb-entries-");
  try {
    // blocks in runs (as a pass adds them) and scattered, some twice (a frozen re-read), some taken
    // back (a resync's blocks as the parent had them: a run's every `drop`-th block)
    const add = fc.tuple(
      // block 0 often: a wrong listing shows as a block 0 listed twice
      fc.oneof(
        { arbitrary: fc.constant(0), weight: 1 },
        { arbitrary: fc.integer({ min: 0, max: 99_999 }), weight: 4 },
      ),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 4 }),
    );
    fc.assert(
      fc.property(
        fc.array(add, { maxLength: 30 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 400 }),
        // a small disk too: past 1/16 of its blocks seen, memory lists them by walking the disk
        fc.constantFrom(100_000, 600),
        (runs, base, inMemory, blocks) => {
          const adds: [number, number][] = [];
          for (const [start, len, v, drop] of runs) {
            const from = start % blocks;
            for (let b = from; b < Math.min(blocks, from + len); b++)
              adds.push([b, drop > 0 && b % (drop + 1) === 0 ? -1 : (b * 7 + v) % 4]);
          }
          const a = new PointEntries(blocks, base, dir, Number.MAX_SAFE_INTEGER);
          const s = new PointEntries(blocks, base, dir, inMemory);
          try {
            for (const [b, v] of adds) {
              for (const e of [a, s]) {
                if (v < 0) e.drop(b);
                else e.add(b, palette[v]!, 0);
              }
            }
            const has = new Set<number>();
            const accepted = adds.filter(([b, v]) => {
              if (v < 0) {
                has.delete(b);
                return false;
              }
              const skip = base && !has.has(b) && v === 0;
              if (!skip) has.add(b);
              return !skip;
            }).length;
            assert.equal(s.spilled, accepted > inMemory);
            const want = expected(adds, base);
            assert.deepEqual(listed(a.source(base)), want);
            assert.deepEqual(listed(s.source(base)), want);
          } finally {
            a.close();
            s.close();
          }
        },
      ),
      { numRuns: 300 },
    );
    // the scratch files were unlinked at once: nothing is left in the folder
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    cleanup();
  }
});

test("a spilled disk's entries come back a window at a time, across a disk of 2^31 blocks", () => {
  const { dir, cleanup } = tempDir("sb-entries-");
  const blocks = 2 ** 31; // 8 TiB: the scratch file is a hole but where blocks have entries
  const e = new PointEntries(blocks, true, dir, 0);
  try {
    const picks = [0, 1, 2, 40_000, 2 ** 20, 2 ** 31 - 1];
    for (const b of picks) e.add(b, palette[1]!, 0);
    e.add(5, ZERO_HASH, 0); // a zero block without an earlier entry: not in a base
    e.add(2, ZERO_HASH, 0); // a block that became zero keeps its (zero) entry, which a base then drops
    const src = e.source(true);
    assert.deepEqual(
      listed(src).map(([b]) => b),
      picks.filter((b) => b !== 2),
    );
    // a second walk gives the same entries
    assert.deepEqual(listed(src), listed(src));
    assert.deepEqual(
      listed(e.source(false)).map(([b]) => b),
      picks,
    );
  } finally {
    e.close();
    cleanup();
  }
});

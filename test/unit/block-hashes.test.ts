import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import {
  allBlockHashes,
  applyBlockHashes,
  closeBlockHashes,
  openBlockHashes,
  RECORD_BYTES,
  readUnitHashes,
  UNIT_BLOCKS,
  unitAlignedCuts,
  unitOf,
  writeUnitHashes,
} from "../../src/replication/block-hashes.ts";
import type { DiskInfo } from "../../src/replication/disk-source.ts";
import type { ScanJob } from "../../src/replication/scan.ts";
import { shard } from "../../src/replication/scanner.ts";
import { rng } from "../helpers/images.ts";

const dir = mkdtempSync(path.join(tmpdir(), "switchback-block-hashes-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Ascending, disjoint block ranges over `blocks` blocks: runs of 1-40 blocks, gaps of 0-40. */
function randomRanges(next: () => number, blocks: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = Math.floor(next() * 40); a < blocks; ) {
    const b = Math.min(blocks, a + 1 + Math.floor(next() * 40));
    out.push([a, b]);
    a = b + Math.floor(next() * 41);
  }
  return out;
}

function blocksOf(ranges: readonly (readonly [number, number])[]): number[] {
  return ranges.flatMap(([a, b]) => Array.from({ length: b - a }, (_, k) => a + k));
}

/** No unit has blocks in two of `pieces`, which together are `ranges` in order. */
function checkCuts(ranges: [number, number][], pieces: [number, number][][]): void {
  assert.deepEqual(blocksOf(pieces.flat()), blocksOf(ranges), "the pieces are the ranges, in order");
  const owner = new Map<number, number>();
  pieces.forEach((p, i) => {
    for (const b of blocksOf(p)) {
      const had = owner.get(unitOf(b));
      assert.ok(had === undefined || had === i, `unit ${unitOf(b)} is in pieces ${had} and ${i}`);
      owner.set(unitOf(b), i);
    }
  });
}

test("block ranges are cut between units only, about as often as asked", () => {
  const next = rng(11);
  for (let round = 0; round < 50; round++) {
    const ranges = randomRanges(next, 5000);
    const per = 1 + Math.floor(next() * 300);
    const pieces = unitAlignedCuts(ranges, per);
    checkCuts(ranges, pieces);
    for (const p of pieces.slice(0, -1)) {
      const n = blocksOf(p).length;
      // at least `per`, and at most the unit under way beyond it
      assert.ok(n >= per && n < per + UNIT_BLOCKS, `a piece of ${n} blocks for ${per}`);
    }
  }
  // a first piece of `first` blocks, each next one twice the one before, up to `per`
  for (let round = 0; round < 30; round++) {
    const ranges = randomRanges(next, 5000);
    const per = 64 + Math.floor(next() * 300);
    const first = 1 + Math.floor(next() * 40);
    const pieces = unitAlignedCuts(ranges, per, first);
    checkCuts(ranges, pieces);
    pieces.slice(0, -1).forEach((p, i) => {
      const want = Math.min(per, first * 2 ** i);
      const n = blocksOf(p).length;
      assert.ok(n >= want && n < want + UNIT_BLOCKS, `piece ${i}: ${n} blocks for ${want}`);
    });
  }
  // a range that ends inside a unit the next range goes on with stays with it
  assert.deepEqual(
    unitAlignedCuts(
      [
        [0, 3],
        [5, 8],
        [20, 21],
      ],
      3,
    ),
    [
      [
        [0, 3],
        [5, 8],
      ],
      [[20, 21]],
    ],
  );
});

test("shards of a journal's blocks never share a unit (they run at once, each writing its units' hashes)", () => {
  const next = rng(12);
  const info = { path: "/dev/null", sizeBytes: 5000 * 4096, sectorSize: 512 } as DiskInfo;
  for (let round = 0; round < 30; round++) {
    const ranges = randomRanges(next, 5000);
    const job = { disk: 0, info, blocks: true, ranges } as unknown as ScanJob;
    const shards = shard([job], 2 + Math.floor(next() * 6));
    checkCuts(
      ranges,
      shards.map((s) => s.flatMap((j) => j.ranges)),
    );
  }
});

test("a point's block hashes: the last point's until written, written ones whole, applied to a hash file", () => {
  const blocks = 5 * UNIT_BLOCKS + 3; // a partial last unit
  const header = 16;
  const section = Buffer.from(randomBytes(blocks * 8));
  const units = Buffer.from("units that follow the block hashes");
  const file = path.join(dir, "disk.hashes");
  writeFileSync(file, Buffer.concat([Buffer.alloc(header), section, units]));
  const fd = openSync(file, "r+");
  try {
    const h = openBlockHashes(dir, blocks, { fd, at: header });
    assert.deepEqual(
      readdirSync(dir).filter((f) => f !== "disk.hashes"),
      [],
      "the scratch file has no name",
    );
    const rec = new Uint8Array(RECORD_BYTES);
    assert.ok(readUnitHashes(h, 5, rec));
    assert.deepEqual(Buffer.from(rec.subarray(0, 24)), section.subarray(5 * RECORD_BYTES));
    assert.ok(
      rec.subarray(24).every((x) => x === 0),
      "slots past the disk read as 0",
    );

    // units 1 and 5 rewritten: read back from this point's, everything else still the last point's
    const one = randomBytes(RECORD_BYTES);
    const five = Buffer.concat([randomBytes(24), Buffer.alloc(RECORD_BYTES - 24)]);
    writeUnitHashes(h, 1, one, 1);
    writeUnitHashes(h, 5, five, 1);
    assert.ok(readUnitHashes(h, 1, rec));
    assert.deepEqual(Buffer.from(rec), one);
    const expect = Buffer.from(section);
    one.copy(expect, RECORD_BYTES);
    five.copy(expect, 5 * RECORD_BYTES, 0, 24);
    assert.deepEqual(Buffer.from(allBlockHashes(h).buffer, 0, blocks * 8), expect);

    // applied: the section takes them, the unit hashes after it are untouched
    const hashFile = { fd, at: header };
    assert.equal(applyBlockHashes(h, hashFile, hashFile), 1, "one page of records");
    assert.deepEqual(readFileSync(file), Buffer.concat([Buffer.alloc(header), expect, units]));
    closeBlockHashes(h);

    // without a last point: nothing known until written
    const fresh = openBlockHashes(dir, blocks, null);
    assert.equal(readUnitHashes(fresh, 0, rec), false);
    closeBlockHashes(fresh);
  } finally {
    closeSync(fd);
  }
});

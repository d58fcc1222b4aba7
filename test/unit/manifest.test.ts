import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import { DiskMap, mergeEntries } from "../../src/datastore/disk-map.ts";
import { ZERO_HASH } from "../../src/datastore/hash.ts";
import {
  type DiskEntries,
  decodeManifest,
  encodeManifest,
  type PointManifest,
} from "../../src/datastore/manifest.ts";
import type { DiskUuid, ItemName, PointId } from "../../src/domain/ids.ts";

function manifest(blocks: number[], hashes: Buffer): PointManifest {
  return {
    header: {
      version: 1,
      item: "web1" as ItemName,
      id: "20261126T034512123Z-a1b2c3" as PointId,
      parent: null,
      createdAt: "2026-11-26T03:45:12.123Z",
      consistency: "crash",
      warnings: [],
      disks: [
        {
          uuid: "3ec03427-08e5-4314-944f-f9308ae7691a" as DiskUuid,
          sizeBytes: 1 << 30,
          sectorSize: 512,
          blockSize: 4096,
          entries: 0,
        },
      ],
      stats: {},
    },
    disks: [{ blocks: Float64Array.from(blocks), hashes }],
  };
}

test("a manifest round-trips and a flipped byte anywhere is detected", () => {
  const m = manifest([1, 5, 9, 262143], randomBytes(4 * 32));
  const buf = Buffer.concat(encodeManifest(m));
  const back = decodeManifest("m", buf);
  assert.deepEqual(back.header.disks[0]!.entries, 4);
  assert.deepEqual([...back.disks[0]!.blocks], [1, 5, 9, 262143]);
  assert.ok(back.disks[0]!.hashes.equals(m.disks[0]!.hashes));
  for (const at of [0, 10, 40, buf.length - 100, buf.length - 1]) {
    const bad = Buffer.from(buf);
    bad[at]! ^= 0x40;
    assert.throws(
      () => decodeManifest("m", bad),
      (e: Error & { code?: string }) => e.code === "DATASTORE_CORRUPT",
    );
  }
});

test("manifest entries must be in order and inside the disk", () => {
  assert.throws(() => encodeManifest(manifest([5, 1], randomBytes(64))), /sorted/);
  const m = manifest([1 << 20], randomBytes(32)); // block beyond a 1 GiB disk
  assert.throws(() => decodeManifest("m", Buffer.concat(encodeManifest(m))), /out of order/);
});

// A delta chain applied in order equals the disk; merging adjacent deltas does not change what the chain means.
test("merging deltas is equivalent to applying them in order (property)", () => {
  const N = 64;
  const delta = fc
    .uniqueArray(fc.integer({ min: 0, max: N - 1 }), { maxLength: 20 })
    .chain((blocks) =>
      fc.tuple(
        fc.constant([...blocks].sort((a, b) => a - b)),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: blocks.length, maxLength: blocks.length }),
      ),
    );
  const palette = [ZERO_HASH, randomBytes(32), randomBytes(32), randomBytes(32)];
  const toEntries = ([blocks, vals]: [number[], number[]]): DiskEntries => ({
    blocks: Float64Array.from(blocks),
    hashes: Buffer.concat(vals.map((v) => palette[v]!)),
  });
  fc.assert(
    fc.property(fc.array(delta, { minLength: 1, maxLength: 5 }), (deltas) => {
      const es = deltas.map(toEntries);
      const a = new DiskMap(N);
      for (const e of es) a.apply(e);
      const b = new DiskMap(N);
      let merged = es[0]!;
      for (const e of es.slice(1)) merged = mergeEntries(merged, e);
      b.apply(merged);
      for (let i = 0; i < N; i++) {
        const ha = a.hashOf(i);
        const hb = b.hashOf(i);
        assert.equal(ha === undefined, hb === undefined);
        if (ha && hb) assert.ok(ha.equals(hb));
      }
    }),
  );
});

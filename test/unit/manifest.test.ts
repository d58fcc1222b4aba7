import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import { DiskMap, mergeEntries } from "../../src/datastore/disk-map.ts";
import { POINT_MAGIC } from "../../src/datastore/format.ts";
import { hashParts, ZERO_HASH } from "../../src/datastore/hash.ts";
import {
  type DiskEntries,
  decodeManifest,
  type EntrySource,
  encodeManifest,
  HEADER_MAX_BYTES,
  ManifestCollector,
  ManifestParser,
  manifestParts,
  manifestSize,
  PART_ENTRIES,
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

/** `e`'s entries as a source that gives them in chunks of the sizes in `cuts` (cycled). */
function chunked(e: DiskEntries, cuts: number[]): EntrySource {
  return {
    count: e.blocks.length,
    *chunks() {
      for (let at = 0, k = 0; at < e.blocks.length; k++) {
        const n = Math.max(1, cuts[k % cuts.length]!);
        yield {
          blocks: e.blocks.subarray(at, at + n),
          hashes: e.hashes.subarray(at * 32, (at + n) * 32),
        };
        at += n;
      }
    },
  };
}

function twoDisks(n0: number, n1: number): PointManifest {
  const m = manifest([], Buffer.alloc(0));
  m.header.disks[0]!.sizeBytes = 2 ** 36;
  m.header.disks.push({ ...m.header.disks[0]!, uuid: "5b1e0b44-55c4-4f6c-9f49-0d7f0f7a8a10" as DiskUuid });
  const entries = (n: number, step: number): DiskEntries => ({
    blocks: Float64Array.from({ length: n }, (_, i) => i * step + 1),
    hashes: randomBytes(n * 32),
  });
  m.disks = [entries(n0, 3), entries(n1, 2)];
  return m;
}

/** Feeds `buf` to a collector in pieces of the sizes in `cuts` (cycled). */
function collect(buf: Buffer, cuts: number[]): PointManifest {
  const c = new ManifestCollector("m", buf.length);
  for (let at = 0, k = 0; at < buf.length; k++) {
    const n = Math.max(1, cuts[k % cuts.length]!);
    c.push(buf.subarray(at, at + n));
    at += n;
  }
  return c.end();
}

// Big manifests are written from chunks and read in pieces: neither may change a byte or an entry.
test("a manifest written from chunks and read in pieces of any size is the same (property)", () => {
  const m = twoDisks(700, 300);
  const whole = Buffer.concat(encodeManifest(m));
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 50_000 }), { minLength: 1, maxLength: 6 }),
      (entryCuts, byteCuts) => {
        const src = { header: m.header, disks: m.disks.map((d) => chunked(d, entryCuts)) };
        const parts = [...manifestParts(src)];
        const buf = Buffer.concat(parts);
        assert.ok(buf.equals(whole));
        assert.equal(manifestSize(src), buf.length);
        const back = collect(buf, byteCuts);
        for (const [i, d] of m.disks.entries()) {
          assert.deepEqual([...back.disks[i]!.blocks], [...d.blocks]);
          assert.ok(back.disks[i]!.hashes.equals(d.hashes));
        }
      },
    ),
    { numRuns: 200 },
  );
});

test("a manifest is written a part at a time and parsed a chunk at a time", () => {
  const n = PART_ENTRIES * 2 + 5;
  const m = twoDisks(n, 3);
  const parts = [...manifestParts({ header: m.header, disks: m.disks.map((d) => chunked(d, [n])) })];
  // prefix, header, three parts of disk 0, one of disk 1, checksum: never the whole body at once
  assert.deepEqual(
    parts.map((p) => p.length),
    [12, parts[1]!.length, PART_ENTRIES * 40, PART_ENTRIES * 40, 5 * 40, 3 * 40, 32],
  );
  const buf = Buffer.concat(parts);
  const p = new ManifestParser("m", buf.length);
  const sizes = p.push(buf).map((c) => [c.disk, c.entries.blocks.length]);
  assert.deepEqual(sizes, [
    [0, PART_ENTRIES],
    [0, PART_ENTRIES],
    [0, 5],
    [1, 3],
  ]);
  assert.equal(p.end().disks[0]!.entries, n);
});

test("a source that gives other than its count of entries is refused", () => {
  const m = twoDisks(10, 3);
  const src = (count: number) => ({
    header: m.header,
    disks: [{ count, chunks: () => [m.disks[0]!] }, chunked(m.disks[1]!, [1])],
  });
  assert.throws(() => [...manifestParts(src(9))], /more/);
  assert.throws(() => [...manifestParts(src(11))], /was to have 11 entries, its chunks gave 10/);
});

test("a damaged manifest read in pieces is reported as damaged, a wrong one by what is wrong", () => {
  const m = twoDisks(50, 20);
  const buf = Buffer.concat(encodeManifest(m));
  for (let at = 0; at < buf.length; at += 37) {
    const bad = Buffer.from(buf);
    bad[at]! ^= 0x01;
    assert.throws(
      () => collect(bad, [7, 1000, 3]),
      (e: Error & { code?: string }) => e.code === "DATASTORE_CORRUPT" && /checksum|magic/.test(e.message),
      `byte ${at}`,
    );
  }
  // truncated: the header's counts say more than the file holds
  const short = Buffer.concat([buf.subarray(0, buf.length - 72), buf.subarray(buf.length - 32)]);
  assert.throws(() => collect(short, [100]), /checksum/);
  // well formed but out of order, with a checksum that matches: named as such
  const swapped = twoDisks(50, 20);
  swapped.disks[0]!.blocks[3] = swapped.disks[0]!.blocks[2]!;
  const parts = encodeManifestUnchecked(swapped);
  assert.throws(() => collect(parts, [41, 9]), /disk .* entry 3 is out of order/);
});

/** Encodes without the writer's order check: what a buggy or hostile writer could produce. */
function encodeManifestUnchecked(m: PointManifest): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      ...m.header,
      disks: m.header.disks.map((d, i) => ({ ...d, entries: m.disks[i]!.blocks.length })),
    }),
  );
  const prefix = Buffer.alloc(12);
  POINT_MAGIC.copy(prefix);
  prefix.writeUInt32LE(json.length, 8);
  const bodies = m.disks.map((d) => {
    const b = Buffer.alloc(d.blocks.length * 40);
    d.blocks.forEach((x, i) => {
      b.writeBigUInt64LE(BigInt(x), i * 40);
      d.hashes.copy(b, i * 40 + 8, i * 32, i * 32 + 32);
    });
    return b;
  });
  const all = Buffer.concat([prefix, json, ...bodies]);
  return Buffer.concat([all, hashParts([all])]);
}

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

// A server reads a staged manifest's pieces until its header is in: damage to the prefix must make the
// parser fail at once, not wait for (and make its caller keep) the rest of a file of any size.
test("a damaged prefix fails the parser at once, before the rest of the file comes", () => {
  const size = 2 ** 40; // as announced: the bytes never need to exist
  const prefix = (magic: Buffer, headerLength: number): Buffer => {
    const b = Buffer.alloc(12);
    magic.copy(b);
    b.writeUInt32LE(headerLength, 8);
    return b;
  };
  const bad = new ManifestParser("m", size);
  bad.push(prefix(Buffer.from("SBPOINT\x02", "latin1"), 100));
  assert.equal(bad.failed, true, "bad magic");
  const long = new ManifestParser("m", size);
  long.push(prefix(POINT_MAGIC, HEADER_MAX_BYTES + 1));
  assert.equal(long.failed, true, "a header longer than any point's");
  const fine = new ManifestParser("m", size);
  fine.push(prefix(POINT_MAGIC, 3000));
  assert.equal(fine.failed, false);
  assert.equal(fine.header, null, "waiting for the header's bytes");
});

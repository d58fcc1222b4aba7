// A resync (an agent state lost, or a machine that comes back from the other site) compares the disk
// with its parent point's block digests, fetched a window at a time: the point lists exactly the
// blocks that differ (data changed, data turned to zeros, zeros turned to data), and only blocks the
// parent does not have at the same place are asked about (`missing`).
import assert from "node:assert/strict";
import { closeSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { checkDatastore } from "../../src/datastore/check.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { DIGEST_BYTES, DigestFile } from "../../src/datastore/digests.ts";
import { HASH_BYTES } from "../../src/datastore/hash.ts";
import { rebuildIndex } from "../../src/datastore/rebuild-index.ts";
import { parseItemName, parsePointId } from "../../src/domain/ids.ts";
import { ParentDigests } from "../../src/replication/parent-digests.ts";
import { replicateOnce } from "../../src/replication/replicate.ts";
import { LocalSink } from "../../src/replication/sink.ts";
import { decodeDigests, encodeDigests } from "../../src/replication/wire.ts";
import { tempDir } from "../helpers/env.ts";
import { makeImage, randomBuffer, rng, textBuffer } from "../helpers/images.ts";

const item = parseItemName("web1");
const BLOCK = 4096;

/** A LocalSink that counts the hashes asked about and the digests fetched. */
class CountingSink extends LocalSink {
  asked = 0;
  digestBlocks = 0;
  override missing(hashes: Buffer): Promise<boolean[]> {
    this.asked += hashes.length / HASH_BYTES;
    return super.missing(hashes);
  }
  override digests(...a: Parameters<LocalSink["digests"]>): Promise<Buffer> {
    this.digestBlocks += a[4];
    return super.digests(...a);
  }
}

describe("resync against the parent's block digests", () => {
  const { dir, cleanup } = tempDir("sb-resync-");
  const img = path.join(dir, "disk.img");
  const dsDir = path.join(dir, "ds");
  const MIB = 48;
  const point = async (state: string, sink?: (ds: Datastore) => LocalSink) => {
    const ds = await Datastore.open(dsDir);
    const s = sink?.(ds) ?? new LocalSink(ds, undefined, dir);
    try {
      return {
        r: await replicateOnce({
          item,
          disks: [img],
          stateDir: state,
          sink: s,
          consistency: "crash",
          snapshot: "none",
        }),
        s,
      };
    } finally {
      await ds.close();
    }
  };

  test("lists exactly the blocks that differ, asks only about new data, and restores the disk", async (t) => {
    t.after(cleanup);
    makeImage(img, MIB, 7);
    await Datastore.init(dsDir);
    await point(path.join(dir, "state"));
    const before = readFileSync(img);
    // data changed, data zeroed, zeros written with data, and blocks written again with what they held
    const next = rng(99);
    const fd = openSync(img, "r+");
    const isZero = (b: number) => before.subarray(b * BLOCK, (b + 1) * BLOCK).every((x) => x === 0);
    const blocks = before.length / BLOCK;
    const pick = (want: (b: number) => boolean, n: number): number[] => {
      const out = new Set<number>();
      while (out.size < n) {
        const b = Math.floor(next() * blocks);
        if (want(b)) out.add(b);
      }
      return [...out];
    };
    const changed = pick((b) => !isZero(b), 40);
    const zeroed = pick((b) => !isZero(b) && !changed.includes(b), 15);
    const filled = pick(isZero, 25);
    const same = pick((b) => !changed.includes(b) && !zeroed.includes(b), 30);
    try {
      for (const b of [...changed, ...filled]) writeSync(fd, randomBuffer(BLOCK, next), 0, BLOCK, b * BLOCK);
      for (const b of zeroed) writeSync(fd, Buffer.alloc(BLOCK), 0, BLOCK, b * BLOCK);
      for (const b of same) writeSync(fd, before, b * BLOCK, BLOCK, b * BLOCK);
    } finally {
      closeSync(fd);
    }

    let sink: CountingSink | undefined;
    const { r } = await point(path.join(dir, "lost-state"), (ds) => {
      sink = new CountingSink(ds, undefined, dir);
      return sink;
    });
    assert.equal(r.mode, "resync");
    const differ = [...changed, ...zeroed, ...filled].sort((a, b) => a - b);
    assert.equal(r.changedBlocks, differ.length);
    const ds = await Datastore.open(dsDir);
    try {
      const m = await ds.readPoint(item, parsePointId(r.pointId));
      assert.deepEqual(
        [...m.disks[0]!.blocks],
        differ,
        "the point lists the blocks that differ, and no other",
      );
      // only the new data was asked about: neither the parent's blocks nor zeros
      assert.equal(sink!.asked, changed.length + filled.length);
      assert.equal(sink!.digestBlocks, blocks, "every block's digest was fetched once");

      // the point restores the disk as it is now
      const { map } = await ds.resolveDisk(item, parsePointId(r.pointId), 0);
      const now = readFileSync(img);
      for (let b = 0; b < blocks; b++) {
        const zero = now.subarray(b * BLOCK, (b + 1) * BLOCK).every((x) => x === 0);
        assert.equal(map.hashOf(b) === undefined, zero, `block ${b}`);
      }

      // the digests of each point are its map's addresses, cut to 16 bytes (a chain of two here)
      for (const id of await ds.pointIds(item)) {
        const f = await DigestFile.build(ds, item, id, 0, dir);
        try {
          const { map: pm } = await ds.resolveDisk(item, id, 0);
          const d = await f.read(0, f.blockCount);
          for (let b = 0; b < f.blockCount; b++) {
            const want = pm.hashOf(b)?.subarray(0, DIGEST_BYTES) ?? Buffer.alloc(DIGEST_BYTES);
            assert.ok(
              d.subarray(b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES).equals(want),
              `point ${id} block ${b}`,
            );
          }
          assert.ok((await f.read(17, 3)).equals(d.subarray(17 * DIGEST_BYTES, 20 * DIGEST_BYTES)));
          await assert.rejects(f.read(f.blockCount - 1, 2), /not within the disk/);
        } finally {
          f.close();
        }
      }
    } finally {
      await ds.close();
    }
    rmSync(path.join(dir, "lost-state"), { recursive: true });
  });

  test("compresses only the blocks it ships, in worker threads' passes too, and restores the disk", async (t) => {
    const { dir: d3, cleanup: c3 } = tempDir("sb-resync-zstd-");
    t.after(c3);
    const image = path.join(d3, "disk.img");
    const store = path.join(d3, "ds");
    const MB = 1024 * 1024;
    // 136 MiB, mostly a hole: big enough for worker threads (128 MiB and more), quick to read
    const next = rng(5);
    let fd = openSync(image, "w");
    try {
      writeSync(fd, textBuffer(8 * MB, next), 0, 8 * MB, 0);
      writeSync(fd, textBuffer(8 * MB, next), 0, 8 * MB, 64 * MB);
      writeSync(fd, randomBuffer(4 * MB, next), 0, 4 * MB, 100 * MB);
      writeSync(fd, Buffer.alloc(BLOCK), 0, BLOCK, 136 * MB - BLOCK);
    } finally {
      closeSync(fd);
    }
    await Datastore.init(store);
    const run = async (state: string) => {
      const ds = await Datastore.open(store);
      try {
        return await replicateOnce({
          item,
          disks: [image],
          stateDir: state,
          sink: new LocalSink(ds, undefined, d3),
          consistency: "crash",
          snapshot: "none",
          workers: 2,
        });
      } finally {
        await ds.close();
      }
    };
    const full = await run(path.join(d3, "state"));
    assert.ok(
      full.bytesCompressed >= 16 * MB && full.bytesCompressed < 17 * MB,
      `a full copy compresses its text (${full.bytesCompressed} bytes)`,
    );
    // 64 blocks of new text in a run, 10 random blocks over the random stretch
    const textRun = textBuffer(64 * BLOCK, next);
    fd = openSync(image, "r+");
    try {
      writeSync(fd, textRun, 0, textRun.length, 65 * MB);
      for (let i = 0; i < 10; i++)
        writeSync(fd, randomBuffer(BLOCK, next), 0, BLOCK, 100 * MB + i * 7 * BLOCK);
    } finally {
      closeSync(fd);
    }
    const r = await run(path.join(d3, "lost-state"));
    assert.equal(r.mode, "resync");
    assert.equal(r.changedBlocks, 74);
    // only the changed text went through zstd, not the 16 MiB of text the parent has
    assert.equal(r.bytesCompressed, 64 * BLOCK);
    assert.ok(
      r.bytesSent < 32 * BLOCK + 10 * BLOCK + 8192,
      `the changed text was sent compressed (${r.bytesSent} bytes)`,
    );
    const ds = await Datastore.open(store);
    try {
      assert.deepEqual((await checkDatastore(ds, { readData: true })).problems, []);
      const { map } = await ds.resolveDisk(item, parsePointId(r.pointId), 0);
      const disk = readFileSync(image);
      for (let b = 0; b < map.blockCount; b++) {
        const h = map.hashOf(b);
        const want = disk.subarray(b * BLOCK, (b + 1) * BLOCK);
        if (h === undefined)
          assert.ok(
            want.every((x) => x === 0),
            `block ${b} is zeros`,
          );
        else assert.ok((await ds.readBlock(h)).equals(want), `block ${b}`);
      }
    } finally {
      await ds.close();
    }
  });

  test("a resync sends again the blocks of its parent that the datastore lost, and the parent is whole again", async (t) => {
    const { dir: d2, cleanup: c2 } = tempDir("sb-resync-lost-");
    t.after(c2);
    const image = path.join(d2, "disk.img");
    const store = path.join(d2, "ds");
    makeImage(image, 8, 3);
    await Datastore.init(store);
    const run = async (state: string) => {
      const ds = await Datastore.open(store);
      try {
        const sink = new LocalSink(ds, undefined, d2);
        return await replicateOnce({
          item,
          disks: [image],
          stateDir: state,
          sink,
          consistency: "crash",
          snapshot: "none",
        });
      } finally {
        await ds.close();
      }
    };
    const first = await run(path.join(d2, "state"));
    // a pack lost (its index files rebuilt from the packs left): the point names blocks nobody holds
    let ds = await Datastore.open(store);
    const packsDir = path.join(store, "packs");
    const lost = readdirSync(packsDir).flatMap((p) =>
      readdirSync(path.join(packsDir, p)).map((f) => path.join(packsDir, p, f)),
    )[0]!;
    rmSync(lost);
    await rebuildIndex(ds);
    const damaged = await checkDatastore(ds, { readData: false });
    assert.equal(damaged.ok, false, "the point names blocks the datastore lost");
    await ds.close();

    const r = await run(path.join(d2, "lost-state"));
    assert.equal(r.mode, "resync");
    assert.ok(
      r.changedBlocks > 0 && r.bytesSent > 0,
      `the lost blocks were sent again (${r.changedBlocks} blocks, ${r.bytesSent} bytes)`,
    );
    ds = await Datastore.open(store);
    try {
      const healed = await checkDatastore(ds, { readData: true });
      assert.deepEqual(healed.problems, []);
      // the first point reads whole again: its blocks are content-addressed
      const { map } = await ds.resolveDisk(item, parsePointId(first.pointId), 0);
      const disk = readFileSync(image);
      for (let b = 0; b < map.blockCount; b++) {
        const h = map.hashOf(b);
        if (h === undefined) continue;
        assert.ok((await ds.readBlock(h)).equals(disk.subarray(b * BLOCK, (b + 1) * BLOCK)), `block ${b}`);
      }
    } finally {
      await ds.close();
    }
  });

  test("blocks scattered over a disk fetch only the windows they fall in, once while they are kept", async () => {
    const W = 1024;
    const blocks = 40 * W;
    const parent = Buffer.alloc(blocks * DIGEST_BYTES);
    const next = rng(3);
    for (const b of [5, 3 * W + 1, 9 * W, 39 * W + 7])
      randomBuffer(DIGEST_BYTES, next).copy(parent, b * DIGEST_BYTES);
    const fetched: number[] = [];
    const digests = new ParentDigests(
      async (from, count) => {
        fetched.push(from / W);
        return parent.subarray(from * DIGEST_BYTES, (from + count) * DIGEST_BYTES);
      },
      blocks,
      W,
    );
    const ask = [5, 6, 3 * W + 1, 9 * W, 39 * W + 7];
    const hashes = Buffer.alloc(ask.length * HASH_BYTES);
    ask.forEach((b, i) => {
      parent.copy(hashes, i * HASH_BYTES, b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES);
    });
    hashes[3 * HASH_BYTES + 20] = 1; // past the digest: still the same block as far as 128 bits tell
    hashes.writeUInt8(hashes.readUInt8(4 * HASH_BYTES) ^ 1, 4 * HASH_BYTES); // a changed block
    const same = await digests.same(Float64Array.from(ask), hashes);
    assert.deepEqual([...same], [1, 1, 1, 1, 0]);
    assert.deepEqual(fetched, [0, 3, 9, 39], "only the windows the blocks fall in");
    await digests.same(Float64Array.from([7, 9 * W + 3]), Buffer.alloc(2 * HASH_BYTES));
    assert.deepEqual(fetched, [0, 3, 9, 39], "kept windows are not fetched again");
    await assert.rejects(
      digests.same(Float64Array.from([blocks]), Buffer.alloc(HASH_BYTES)),
      /block 40960 of 40960/,
    );
  });

  test("digests cross the wire as a bitmap and the non-zero ones, and a wrong answer is refused", () => {
    const d = Buffer.alloc(70 * DIGEST_BYTES);
    const next = rng(5);
    for (const b of [0, 9, 63, 64, 69]) randomBuffer(DIGEST_BYTES, next).copy(d, b * DIGEST_BYTES);
    const wire = encodeDigests(1000, d);
    assert.equal(wire.length, 20 + 9 + 5 * DIGEST_BYTES);
    assert.ok(decodeDigests(wire, 1000, 70).equals(d));
    assert.throws(() => decodeDigests(wire, 1001, 70), /instead of \[1001, 1071\)/);
    assert.throws(
      () => decodeDigests(wire.subarray(0, wire.length - 1), 1000, 70),
      /do not match its bitmap/,
    );
    assert.throws(() => decodeDigests(Buffer.from("nonsense, not digests"), 1000, 70), /bad magic/);
  });
});

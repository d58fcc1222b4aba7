// A point's disk read a window of blocks at a time (DiskWindows, what a restore maps) must say for
// every block what the whole map of the disk says (resolveDisk): chains of a base and deltas over two
// disks, zeros among the entries, a base too big to be kept in memory (read as the windows pass), any
// window sizes. And a restore through small windows writes the same bytes as one through a single
// window: full, delta by reading the target, delta against a base point.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import fc from "fast-check";
import { Datastore } from "../../src/datastore/datastore.ts";
import { DiskWindows } from "../../src/datastore/disk-windows.ts";
import { BLOCK_SIZE } from "../../src/datastore/format.ts";
import { blockHash, HASH_BYTES, ZERO_HASH } from "../../src/datastore/hash.ts";
import { type DiskEntries, MANIFEST_PIECE_BYTES } from "../../src/datastore/manifest.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { type ItemName, newPointId, type PointId } from "../../src/domain/ids.ts";
import { native } from "../../src/platform/native.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { tempDir } from "../helpers/env.ts";
import { commitEntries } from "../helpers/points.ts";

const { dir: root, cleanup } = tempDir("sb-disk-windows-");
after(cleanup);

const item = "web1" as ItemName;
let made = 0;

/** Commits a chain of points; `entries[p][d]` are point p's entries of disk d (sorted, unique blocks). */
async function chain(ds: Datastore, blocks: number[], entries: DiskEntries[][]): Promise<PointId[]> {
  const ids: PointId[] = [];
  let clock = Date.parse("2026-11-27T00:00:00Z");
  for (const disks of entries) {
    clock += 1000;
    const id = newPointId(new Date(clock), randomBytes(3));
    await commitEntries(ds, {
      item,
      id,
      parent: ids[ids.length - 1] ?? null,
      createdAt: new Date(clock),
      disks: blocks.map((n, d) => ({ blocks: n, entries: disks[d]! })),
    });
    ids.push(id);
  }
  return ids;
}

/** Entries for the blocks `bs` (deduplicated, sorted), each hash from `hashOf`. */
function entriesOf(bs: number[], hashOf: (b: number) => Buffer): DiskEntries {
  const sorted = [...new Set(bs)].sort((a, b) => a - b);
  return { blocks: Float64Array.from(sorted), hashes: Buffer.concat(sorted.map(hashOf)) };
}

test("windows of a point's disk say what its whole map says, whatever the window sizes", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 2, maxLength: 2 }),
      fc.array(
        fc.array(fc.record({ b: fc.nat(399), zero: fc.boolean(), h: fc.nat(30) }), { maxLength: 60 }),
        { minLength: 2, maxLength: 10 },
      ),
      fc.array(fc.integer({ min: 1, max: 150 }), { minLength: 1, maxLength: 8 }),
      async (blocks, points, sizes) => {
        const ds = await Datastore.init(path.join(root, `p-${made++}`));
        const hashes = Array.from({ length: 31 }, () => randomBytes(HASH_BYTES));
        // point p's entries: disk 0 gets the drawn ones, disk 1 every third of them
        const entries = points.map((es) =>
          blocks.map((n, d) =>
            entriesOf(
              es.filter((e, i) => e.b < n && (d === 0 || i % 3 === 0)).map((e) => e.b),
              (b) => {
                const e = es.find((x) => x.b === b)!;
                return e.zero ? ZERO_HASH : hashes[e.h]!;
              },
            ),
          ),
        );
        const ids = await chain(ds, blocks, entries);
        for (const id of [ids[ids.length - 1]!, ids[0]!]) {
          for (const d of [0, 1]) {
            const whole = (await ds.resolveDisk(item, id, d)).map;
            const w = await DiskWindows.open(ds, item, id, d);
            let at = 0;
            for (let k = 0; at < w.blockCount; k++) {
              const to = Math.min(w.blockCount, at + sizes[k % sizes.length]!);
              const m = await w.window(at, to);
              for (let b = at; b < to; b++)
                assert.deepEqual(m.hashOf(b), whole.hashOf(b), `disk ${d} block ${b}`);
              at = to;
            }
            await w.close();
          }
        }
        await ds.close();
      },
    ),
    { numRuns: 40 },
  );
});

test("a base too big to keep in memory is read as the windows pass, and agrees with the whole map", async () => {
  const ds = await Datastore.init(path.join(root, "big"));
  const n = 150_000;
  const base = entriesOf(
    Array.from({ length: n }, (_, b) => b).filter((b) => b % 5 !== 0),
    (b) => (b % 7 === 0 ? ZERO_HASH : Buffer.alloc(HASH_BYTES, (b % 251) + 1)),
  );
  const delta = entriesOf([3, 5, 77_777, 149_999], () => Buffer.alloc(HASH_BYTES, 0xee));
  const ids = await chain(
    ds,
    [n, 10],
    [
      [base, entriesOf([1], () => ZERO_HASH)],
      [delta, entriesOf([], () => ZERO_HASH)],
    ],
  );
  assert.ok((await ds.pointSize(item, ids[0]!)) > MANIFEST_PIECE_BYTES, "the base is bigger than one piece");
  for (const [d, count] of [
    [0, n],
    [1, 10],
  ] as const) {
    const whole = (await ds.resolveDisk(item, ids[1]!, d)).map;
    const w = await DiskWindows.open(ds, item, ids[1]!, d);
    for (let at = 0; at < count; at += 20_000) {
      const to = Math.min(count, at + 20_000);
      const m = await w.window(at, to);
      for (let b = at; b < to; b++) assert.deepEqual(m.hashOf(b), whole.hashOf(b), `disk ${d} block ${b}`);
    }
  }
  await ds.close();
});

test("a restore through small windows writes what one through a single window does: full, delta, delta against a base", async () => {
  const dir = path.join(root, "restore");
  const ds = await Datastore.init(path.join(dir, "ds"));
  const n = 300;
  const pool = Array.from({ length: 40 }, () => randomBytes(BLOCK_SIZE));
  const hashes = pool.map((b) => blockHash(b));
  const w = ds.writer();
  await w.add(makeFrame(Buffer.concat(hashes.slice(0, 32)), Buffer.concat(pool.slice(0, 32))));
  await w.add(makeFrame(Buffer.concat(hashes.slice(32)), Buffer.concat(pool.slice(32))));
  await w.flush();
  const pick = (b: number, salt: number) =>
    (b * 7 + salt) % 41 === 40 ? ZERO_HASH : hashes[(b * 7 + salt) % 41]!;
  const ids = await chain(
    ds,
    [n],
    [
      [
        entriesOf(
          Array.from({ length: n }, (_, b) => b).filter((b) => b % 4 !== 1),
          (b) => pick(b, 0),
        ),
      ],
      [entriesOf([0, 1, 2, 99, 100, 101, 250, 299], (b) => pick(b, 3))],
      [entriesOf([1, 2, 3, 150, 298], (b) => pick(b, 5))],
    ],
  );
  const restore = async (
    to: string,
    point: PointId,
    windowBlocks?: number,
    delta = false,
    base?: PointId,
  ) => {
    await restoreDisk(ds, { item, point, disk: 0, to, delta, base, windowBlocks });
    return readFileSync(to);
  };
  const one = await restore(path.join(dir, "one.img"), ids[2]!);
  for (const size of [1, 7, 64, 299]) {
    assert.ok(
      (await restore(path.join(dir, `full-${size}.img`), ids[2]!, size)).equals(one),
      `full, windows of ${size}`,
    );
    // delta by reading the target: from the first point's disk, and from a disk of other bytes
    const from0 = path.join(dir, `delta-${size}.img`);
    await restore(from0, ids[0]!);
    assert.ok((await restore(from0, ids[2]!, size, true)).equals(one), `delta, windows of ${size}`);
    const noise = path.join(dir, `noise-${size}.img`);
    writeFileSync(noise, randomBytes(n * BLOCK_SIZE));
    assert.ok(
      (await restore(noise, ids[2]!, size, true)).equals(one),
      `delta over noise, windows of ${size}`,
    );
    // delta against a base: the target holds the first point
    const based = path.join(dir, `based-${size}.img`);
    await restore(based, ids[0]!);
    assert.ok(
      (await restore(based, ids[2]!, size, true, ids[0]!)).equals(one),
      `delta against a base, windows of ${size}`,
    );
  }
  await ds.close();
});

test("the same restores through small windows without the native addon", {
  skip: native === null ? "the addon is not built: the test above already ran without it" : false,
}, () => {
  const r = spawnSync(
    process.execPath,
    ["--test", "--test-name-pattern=a restore through small windows", import.meta.filename],
    // (without the runner's NODE_TEST_CONTEXT: the child reports as a run of its own)
    { env: { ...process.env, NODE_TEST_CONTEXT: undefined, SWITCHBACK_NATIVE: "0" }, encoding: "utf8" },
  );
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /pass 1/);
});

test("a block that reads back other than written fails the restore, in whichever window it is", async () => {
  const dir = path.join(root, "verify");
  const ds = await Datastore.init(path.join(dir, "ds"));
  const pool = Array.from({ length: 8 }, () => randomBytes(BLOCK_SIZE));
  const hashes = pool.map((b) => blockHash(b));
  const w = ds.writer();
  await w.add(makeFrame(Buffer.concat(hashes), Buffer.concat(pool)));
  await w.flush();
  const n = 100;
  const [id] = await chain(
    ds,
    [n],
    [
      [
        entriesOf(
          Array.from({ length: n }, (_, b) => b).filter((b) => b % 3 !== 0),
          (b) => hashes[b % 8]!,
        ),
      ],
    ],
  );
  for (const [window, bad] of [
    [16, 40], // a data block of the third window
    [16, 99], // a zero block of the last
    [1000, 5], // one window
  ] as const) {
    const to = path.join(dir, `t-${window}-${bad}.img`);
    let damaged = false;
    await assert.rejects(
      restoreDisk(ds, {
        item,
        point: id!,
        disk: 0,
        to,
        delta: false,
        windowBlocks: window,
        beforeCheck: (from, end) => {
          if (bad < from || bad >= end) return;
          // the disk fails: what it returns is not what was written
          const fd = openSync(to, "r+");
          writeSync(fd, Buffer.from("not what was written"), 0, 20, bad * BLOCK_SIZE + 7);
          closeSync(fd);
          damaged = true;
        },
      }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, "RESTORE_VERIFY_FAILED");
        assert.match(err.message, new RegExp(`1 block\\(s\\) differ .*first at byte ${bad * BLOCK_SIZE}\\)`));
        return true;
      },
    );
    assert.ok(damaged);
  }
  await ds.close();
});

test("the addon refuses a block range whose byte offsets do not fit in 64 bits", {
  skip: native?.checkFingerprints === undefined ? "the native addon is not built" : false,
}, async () => {
  const file = path.join(root, "small.img");
  writeFileSync(file, Buffer.alloc(32768, 1));
  const fd = openSync(file, "r");
  try {
    const huge = 2 ** 52;
    assert.throws(
      () =>
        native!.checkFingerprints(
          fd,
          0,
          32768,
          512,
          false,
          huge,
          huge + 1,
          1n,
          32768,
          new Uint8Array(1),
          new BigUint64Array(1),
          huge,
        ),
      TypeError,
    );
  } finally {
    closeSync(fd);
  }
});

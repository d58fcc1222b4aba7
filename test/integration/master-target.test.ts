// Original-location reprotect and failback on real image files and a real datastore: the master
// target seeds its site's datastore from the disk still there, the recovered copy resyncs against
// the seed by comparison (only the blocks that differ are shipped), and the point is applied back
// onto the home disk writing only the blocks that differ.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { applyPoint, seedPoint } from "../../src/appliance/master-target.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { SwitchbackError } from "../../src/domain/errors.ts";
import { parseItemName } from "../../src/domain/ids.ts";
import { replicateOnce } from "../../src/replication/replicate.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { LocalSink } from "../../src/replication/sink.ts";
import { tempDir } from "../helpers/env.ts";
import { makeImage, scatter } from "../helpers/images.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const BLOCK = 4096;

function differingBlocks(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let off = 0; off < a.length; off += BLOCK) {
    if (!a.subarray(off, off + BLOCK).equals(b.subarray(off, off + BLOCK))) n++;
  }
  return n;
}

describe("master target: seed, resync against the seed, apply", () => {
  const { dir, cleanup } = tempDir("sb-master-target-");
  const dsB = path.join(dir, "datastore-B");
  const home = path.join(dir, "home-disk.img");
  const recovered = path.join(dir, "recovered-copy.img");
  const item = parseItemName("web1");
  const uuid = randomUUID();
  let seedId = "";
  let resyncId = "";
  let changed: number[] = [];

  before(async () => {
    makeImage(home, SIZE / MiB, 21);
    await (await Datastore.init(dsB)).close();
  });
  after(cleanup);

  test("seed: a full point of the disk at the site, under the item's disk uuid", async () => {
    const t = performance.now();
    const s = await seedPoint({ datastore: dsB, item, disks: [{ path: home, uuid }], stateDir: dir });
    console.log(
      `seed of ${SIZE / MiB} MiB: ${Math.round(performance.now() - t)} ms, stored ${s.bytesStored} bytes`,
    );
    assert.equal(s.mode, "full");
    assert.equal(s.parent, null);
    assert.equal(s.bytesRead, SIZE);
    seedId = s.pointId;
    const ds = await Datastore.open(dsB);
    try {
      const h = await ds.readPointHeader(item, s.pointId);
      assert.equal(h.disks[0]!.uuid, uuid);
      const out = path.join(dir, "seed-restored.img");
      await restoreDisk(ds, { item, point: s.pointId, disk: 0, to: out, delta: false });
      assert.ok(readFileSync(out).equals(readFileSync(home)));
    } finally {
      await ds.close();
    }
  });

  test("the recovered copy resyncs against the seed with a fresh agent state: it ships about the changed bytes", async () => {
    copyFileSync(home, recovered);
    changed = scatter(recovered, SIZE, SIZE / BLOCK / 100, 9); // 1 % of the blocks, scattered
    const ds = await Datastore.open(dsB);
    try {
      const t = performance.now();
      const r = await replicateOnce({
        item,
        disks: [recovered],
        stateDir: path.join(dir, "fresh-agent-state"),
        sink: new LocalSink(ds),
        consistency: "crash",
        snapshot: "none",
      });
      console.log(
        `resync: read ${r.bytesRead}, sent ${r.bytesSent} for ${changed.length * BLOCK} changed bytes in ${Math.round(performance.now() - t)} ms`,
      );
      assert.equal(r.mode, "resync");
      assert.equal(r.parent, seedId);
      assert.equal(r.disks[0]!.uuid, uuid, "the copy is recognised as the same disk");
      assert.equal(r.changedBlocks, changed.length);
      const changedBytes = changed.length * BLOCK;
      // random 4 KiB blocks do not compress: what is shipped is the changed blocks and their hashes
      assert.ok(
        r.bytesSent >= changedBytes * 0.9 && r.bytesSent <= changedBytes * 1.1,
        `sent ${r.bytesSent} for ${changedBytes} changed bytes of a ${SIZE}-byte disk`,
      );
      resyncId = r.pointId;
    } finally {
      await ds.close();
    }
  });

  test("apply the resynced point onto the home disk: only the changed blocks are written", async () => {
    const before = readFileSync(home);
    assert.equal(differingBlocks(before, readFileSync(recovered)), changed.length);
    const r = await applyPoint({ datastore: dsB, item, point: resyncId, disks: [{ path: home, uuid }] });
    assert.equal(r.pointId, resyncId);
    assert.equal(r.blocksWritten, changed.length);
    assert.equal(r.bytesWritten, changed.length * BLOCK);
    assert.ok(
      readFileSync(home).equals(readFileSync(recovered)),
      "home disk is byte-identical to the recovered copy",
    );
    const again = await applyPoint({ datastore: dsB, item, point: "latest", disks: [{ path: home, uuid }] });
    assert.equal(again.blocksWritten, 0);
  });

  test("a second seed is a child of the latest point holding only what differs, zeroed blocks included", async () => {
    const before = readFileSync(home);
    scatter(home, SIZE, 10, 33);
    const buf = readFileSync(home);
    buf.fill(0, 70 * BLOCK, 80 * BLOCK); // blocks of text (the image's second 256 KiB) become zero
    writeFileSync(home, buf);
    const expected = differingBlocks(before, buf);
    const s = await seedPoint({ datastore: dsB, item, disks: [{ path: home, uuid }] });
    assert.equal(s.mode, "resync");
    assert.equal(s.parent, resyncId);
    assert.equal(s.blocks, expected);
    const ds = await Datastore.open(dsB);
    try {
      const out = path.join(dir, "second-seed.img");
      await restoreDisk(ds, { item, point: "latest", disk: 0, to: out, delta: false });
      assert.ok(readFileSync(out).equals(buf));
    } finally {
      await ds.close();
    }
  });

  test("a disk of another item is refused, and nothing is committed", async () => {
    const ds = await Datastore.open(dsB);
    const count = (await ds.pointIds(item)).length;
    await ds.close();
    await assert.rejects(
      seedPoint({ datastore: dsB, item, disks: [{ path: home, uuid: randomUUID() }] }),
      (err: unknown) => err instanceof SwitchbackError && err.code === "SEED_DISKS_MISMATCH",
    );
    const ds2 = await Datastore.open(dsB);
    assert.equal((await ds2.pointIds(item)).length, count);
    await ds2.close();
  });
});

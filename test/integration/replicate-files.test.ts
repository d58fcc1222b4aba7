// A long-running agent takes point after point in one process: every file a point opens (the last
// point's hash file, under its lock, and the scratch file of the point's block hashes) must be closed
// when the point ends, committed or failed, or the agent runs out of descriptors and keeps a lock
// that turns every later update in place into a whole rewrite.
import assert from "node:assert/strict";
import { closeSync, openSync, readdirSync, readlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Datastore } from "../../src/datastore/datastore.ts";
import type { ManifestSource } from "../../src/datastore/manifest.ts";
import { parseItemName } from "../../src/domain/ids.ts";
import { replicateOnce } from "../../src/replication/replicate.ts";
import { LocalSink } from "../../src/replication/sink.ts";
import { tempDir } from "../helpers/env.ts";
import { makeImage, randomBuffer, rng } from "../helpers/images.ts";

const item = parseItemName("web1");

/** What this process has open under `dir`. */
function openUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // closed while listed (the listing's own descriptor)
    }
  }
  return out;
}

for (const spill of [false, true]) {
  const how = spill ? ", their entries in scratch files," : "";
  test(`points${how} committed or failed, leave no file of the agent state open`, async () => {
    const { dir, cleanup } = tempDir("sb-files-");
    try {
      const images = [path.join(dir, "a.img"), path.join(dir, "b.img")];
      makeImage(images[0]!, 8, 1);
      makeImage(images[1]!, 8, 2);
      const dsDir = path.join(dir, "ds");
      await (await Datastore.init(dsDir)).close();
      const ds = await Datastore.open(dsDir);
      const stateDir = path.join(dir, "state");
      const change = (seed: number): void => {
        const fd = openSync(images[seed % 2]!, "r+");
        writeSync(fd, randomBuffer(4096, rng(seed)), 0, 4096, (seed * 7919 * 4096) % (8 * 1024 * 1024));
        closeSync(fd);
      };
      try {
        const point = (sink = new LocalSink(ds)) =>
          replicateOnce({
            item,
            disks: images,
            stateDir,
            sink,
            consistency: "crash",
            snapshot: "none",
            // a full point of these disks has ~1,000 entries each, an incremental 1
            ...(spill ? { entriesInMemory: 0 } : {}),
          });
        assert.equal((await point()).mode, "full");
        for (let i = 1; i <= 3; i++) {
          change(i);
          const r = await point();
          assert.equal(r.mode, "incremental");
          assert.deepEqual(openUnder(stateDir), [], `after point ${i + 1}`);
        }
        // a point that fails at its commit: its hashes are released all the same
        change(9);
        const failing = new LocalSink(ds);
        failing.commit = async (_m: ManifestSource) => {
          throw new Error("the datastore went away");
        };
        await assert.rejects(point(failing), /the datastore went away/);
        assert.deepEqual(openUnder(stateDir), [], "after a failed point");
        // and the next point is still incremental: the failed one changed nothing it relies on
        change(10);
        assert.equal((await point()).mode, "incremental");
        assert.deepEqual(openUnder(stateDir), []);
      } finally {
        await ds.close();
      }
    } finally {
      cleanup();
    }
  });
}

// A full copy of a big disk writes an index file every so often: a copy that fails before its
// commit has stored most of what it read, and the retry does not store it again.
test("a full copy that fails at its commit leaves what it stored indexed: the retry stores nothing twice", async () => {
  const { dir, cleanup } = tempDir("sb-files-");
  try {
    const image = path.join(dir, "a.img");
    makeImage(image, 64, 3); // ~32 MiB to store: four 8 MiB packs
    const dsDir = path.join(dir, "ds");
    await (await Datastore.init(dsDir)).close();
    const ds = await Datastore.open(dsDir);
    const stateDir = path.join(dir, "state");
    try {
      const point = (sink: LocalSink) =>
        replicateOnce({ item, disks: [image], stateDir, sink, consistency: "crash", snapshot: "none" });
      // an index file after every pack
      const failing = new LocalSink(ds, 1);
      failing.commit = async (_m: ManifestSource) => {
        throw new Error("the machine rebooted");
      };
      await assert.rejects(point(failing), /the machine rebooted/);
      const retry = new LocalSink(ds);
      const r = await point(retry);
      assert.equal(r.mode, "full");
      // what a full copy stores, into a datastore of its own
      const otherDir = path.join(dir, "other");
      await (await Datastore.init(otherDir)).close();
      const other = await Datastore.open(otherDir);
      const whole = new LocalSink(other);
      try {
        await replicateOnce({
          item,
          disks: [image],
          stateDir: path.join(dir, "other-state"),
          sink: whole,
          consistency: "crash",
          snapshot: "none",
        });
      } finally {
        await other.close();
      }
      // only what the failed copy had not yet written into an indexed pack (its last pack or so) is stored again
      assert.ok(
        retry.bytesStored < whole.bytesStored / 3,
        `the retry stored ${retry.bytesStored} bytes, a whole copy ${whole.bytesStored}`,
      );
    } finally {
      await ds.close();
    }
  } finally {
    cleanup();
  }
});

// A full copy of a big disk keeps its point's entries in a scratch file, not in memory. Held here to
// the in-memory path through real points: the same manifests for a base, an incremental and a resync,
// and restores that are the disk.
import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Datastore } from "../../src/datastore/datastore.ts";
import type { PointManifest } from "../../src/datastore/manifest.ts";
import { type PointId, parseItemName } from "../../src/domain/ids.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { tempDir } from "../helpers/env.ts";
import { makeImage, randomBuffer, rng, scatter } from "../helpers/images.ts";
import { imagePoint } from "../helpers/points.ts";

const item = parseItemName("web1");

function entriesOf(m: PointManifest): string[] {
  return m.disks.map((d) => `${[...d.blocks].join(",")}|${d.hashes.toString("hex")}`);
}

test("points whose entries went to a scratch file list what points from memory list", async () => {
  const { dir, cleanup } = tempDir("sb-spill-");
  try {
    const image = path.join(dir, "disk.img");
    makeImage(image, 24, 5); // 6,144 blocks, a third zeros
    const sites = ["memory", "scratch"].map((name) => ({
      ds: path.join(dir, `ds-${name}`),
      state: path.join(dir, `state-${name}`),
      // 100 entries in memory: a full point spills, an incremental of 40 blocks does not
      more: name === "scratch" ? { entriesInMemory: 100 } : {},
    }));
    for (const s of sites) await (await Datastore.init(s.ds)).close();
    const pointBoth = async (): Promise<string[][]> => {
      const out: string[][] = [];
      for (const s of sites) {
        const r = await imagePoint(image, s.ds, s.state, true, item, s.more);
        const d = await Datastore.open(s.ds);
        try {
          out.push(entriesOf(await d.readPoint(item, r.pointId)));
          const to = path.join(dir, `restored-${r.pointId}.img`);
          await restoreDisk(d, { item, point: r.pointId as PointId, disk: 0, to, delta: false });
          assert.ok(readFileSync(to).equals(readFileSync(image)), `restore of ${r.mode} point ${r.pointId}`);
          rmSync(to);
        } finally {
          await d.close();
        }
      }
      return out;
    };
    const zero = (block: number) => {
      const fd = openSync(image, "r+");
      writeSync(fd, Buffer.alloc(4096), 0, 4096, block * 4096);
      closeSync(fd);
    };

    const [m0, s0] = await pointBoth();
    assert.ok(m0![0]!.split("|")[0]!.split(",").length > 3000, "the base lists the data blocks");
    assert.deepEqual(s0, m0);

    scatter(image, 24 * 1024 * 1024, 40, 9);
    zero(700); // a data block becomes zero: the delta lists it as ZERO
    const [m1, s1] = await pointBoth();
    assert.deepEqual(s1, m1);

    // the agent state lost: a resync reads everything and lists only what differs from the parent
    for (const s of sites) rmSync(s.state, { recursive: true });
    const next = rng(3);
    const fd = openSync(image, "r+");
    for (const b of [10, 2000, 6000]) writeSync(fd, randomBuffer(4096, next), 0, 4096, b * 4096);
    closeSync(fd);
    const [m2, s2] = await pointBoth();
    assert.deepEqual(s2, m2);
    assert.equal(m2![0]!.split("|")[0], "10,2000,6000");
  } finally {
    cleanup();
  }
});

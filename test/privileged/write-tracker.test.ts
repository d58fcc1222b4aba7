// The write tracker's promise, checked directly: every 64 KiB unit whose content at the freeze differs
// from what a read after start() saw is in collect()'s ranges, including the units the file system
// writes only while it freezes (dirty pages never fsynced). Both for a block device and for the image
// file behind a loop device.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { xxh64 } from "@node-rs/xxhash";
import { DiskReader, inspectDisk } from "../../src/replication/disk-source.ts";
import { Freezer } from "../../src/replication/freeze.ts";
import { UNIT_BYTES, unitCount } from "../../src/replication/scan.ts";
import {
  findTracefs,
  removeStaleInstances,
  TracefsWriteTracker,
} from "../../src/replication/write-tracker.ts";
import { privilegedSkipReason } from "../helpers/env.ts";
import { acknowledged, Scratch, startWriter, until } from "../helpers/privileged.ts";

const skip = privilegedSkipReason();

function unitHashes(p: string): bigint[] {
  const info = inspectDisk(p);
  const r = new DiskReader(info, UNIT_BYTES);
  try {
    return Array.from({ length: unitCount(info.sizeBytes) }, (_, u) =>
      xxh64(r.read(u * UNIT_BYTES, UNIT_BYTES)),
    );
  } finally {
    r.close();
  }
}

for (const target of ["block device", "image file"] as const) {
  test(`tracker ranges cover every unit written after start, freeze-time flushes included (${target})`, {
    skip,
  }, async (t) => {
    const s = new Scratch();
    t.after(() => s.cleanup());
    const { image, dev, mnt } = s.ext4("vol", 128);
    const disk = target === "block device" ? dev : image;
    const ack = s.path("ack.log");
    const writer = startWriter([path.join(mnt, "records")], ack);
    t.after(() => writer.stop());
    await until(() => acknowledged(ack) >= 10, 20_000, "the writer's first records");

    const info = inspectDisk(disk);
    const tracker = TracefsWriteTracker.start([info]);
    let ranges: ([number, number][] | null)[];
    let before: bigint[];
    let after: bigint[];
    try {
      before = unitHashes(disk); // the "pre-copy", while the writer goes on
      // dirty pages that only the freeze will write out
      for (let i = 0; i < 8; i++) writeFileSync(path.join(mnt, `dirty-${i}`), randomBytes(300 * 1024));
      await new Promise((r) => setTimeout(r, 200));
      const freezer = new Freezer([mnt]);
      freezer.freeze();
      try {
        ranges = await tracker.collect();
        after = unitHashes(disk);
      } finally {
        freezer.thaw();
      }
      assert.deepEqual(tracker.warnings, []);
    } finally {
      await tracker.stop();
      await writer.stop();
    }
    const r = ranges[0];
    assert.ok(r !== null && r !== undefined, "the tracker vouches for the disk");
    const tracked = new Set<number>();
    for (const [a, b] of r) for (let u = a; u < b; u++) tracked.add(u);
    const changed = before.flatMap((h, u) => (h !== after[u] ? [u] : []));
    const missed = changed.filter((u) => !tracked.has(u));
    console.log(
      `${target}: ${changed.length} unit(s) changed after the pre-copy read, ${tracked.size} tracked, ${missed.length} missed`,
    );
    assert.ok(changed.length >= 8 * 4, "the dirty files changed units");
    assert.deepEqual(missed, [], "units changed but not tracked");
  });
}

test("the tracker leaves no tracefs instance behind", { skip }, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const { dev } = s.ext4("vol", 32);
  const tracefs = findTracefs()!;
  removeStaleInstances(tracefs);
  const mine = () =>
    readdirSync(path.join(tracefs, "instances")).filter((n) => n.startsWith(`switchback-${process.pid}-`));
  const tracker = TracefsWriteTracker.start([inspectDisk(dev)]);
  assert.equal(mine().length, 1);
  await tracker.collect();
  await tracker.stop();
  assert.deepEqual(mine(), []);
});

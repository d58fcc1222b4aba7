// The reflink path: disk image files on XFS are snapshot by FICLONE clones (all at one instant, with
// the file systems inside them frozen for just the clone), then read at leisure.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { cliJson, privilegedSkipReason, restorePoint } from "../helpers/env.ts";
import {
  acknowledged,
  countRecords,
  inspectRestored,
  Scratch,
  startWriter,
  until,
} from "../helpers/privileged.ts";

const skip = privilegedSkipReason(["losetup", "mkfs.ext4", "mkfs.xfs", "mount", "fsfreeze", "e2fsck"]);

interface Rep {
  pointId: string;
  snapshot: string;
  maxFreezeMs: number;
  warnings: string[];
}

test("reflink: image files on XFS, mounted ext4 inside, under an fsyncing writer", { skip }, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const xfsDev = s.attach(s.image("xfs.img", 600));
  s.mkfs(xfsDev, "xfs");
  const xfs = s.mount(xfsDev, "xfs");
  // the machine's disk: an image file on XFS, attached and mounted
  const vm = path.join(xfs, "vm-disk0.img");
  writeFileSync(vm, "");
  truncateSync(vm, 128 * 1024 * 1024);
  const vmDev = s.attach(vm);
  s.mkfs(vmDev);
  const inner = s.mount(vmDev, "inner");
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const ack = s.path("ack.log");
  const writer = startWriter([path.join(inner, "records")], ack);
  t.after(() => writer.stop());
  await until(() => acknowledged(ack) >= 20, 20_000, "the writer's first records");

  const points: { r: Rep; ackBefore: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const ackBefore = acknowledged(ack);
    const r = await cliJson<Rep>([
      "replicate-once",
      "--datastore",
      ds,
      "--item",
      "vm1",
      "--disk",
      vm,
      "--snapshot",
      "reflink",
      "--state",
      s.path("state"),
    ]);
    points.push({ r, ackBefore });
  }
  await writer.stop();
  assert.deepEqual(
    readdirSync(xfs).filter((n) => n.includes("switchback")),
    [],
    "no clone is left behind",
  );
  for (const [i, { r, ackBefore }] of points.entries()) {
    assert.equal(r.snapshot, "reflink");
    const img = s.path(`restored-${i}.img`);
    await restorePoint({ datastore: ds, item: "vm1", point: r.pointId, disk: 0, out: img });
    const k = inspectRestored(s, img, (m) => countRecords(readFileSync(path.join(m, "records"))));
    console.log(
      `reflink point ${i}: records 1..${k}, acknowledged before ${ackBefore}, maxFreezeMs ${r.maxFreezeMs} (freeze + clone)`,
    );
    assert.ok(k >= ackBefore, `point ${i} holds 1..${k}, ${ackBefore} were acknowledged before`);
  }
});

test("reflink: an unmounted image file on XFS is cloned by default (auto) and restored byte for byte", {
  skip,
}, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const xfsDev = s.attach(s.image("xfs.img", 300));
  s.mkfs(xfsDev, "xfs");
  const xfs = s.mount(xfsDev, "xfs");
  const disk = path.join(xfs, "raw.img");
  const content = Buffer.concat([randomBytes(8 * 1024 * 1024), Buffer.alloc(8 * 1024 * 1024)]);
  writeFileSync(disk, content);
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const r = await cliJson<Rep>([
    "replicate-once",
    "--datastore",
    ds,
    "--item",
    "raw1",
    "--disk",
    disk,
    "--state",
    s.path("state"),
  ]);
  assert.equal(r.snapshot, "reflink");
  const out = s.path("out.img");
  await restorePoint({ datastore: ds, item: "raw1", point: r.pointId, disk: 0, out });
  assert.ok(readFileSync(out).equals(content), "restored image equals the source");
  assert.deepEqual(
    readdirSync(xfs).filter((n) => n.includes("switchback")),
    [],
  );
});

// The reflink path: disk image files on XFS are snapshot by FICLONE clones (all at one instant, with
// the file systems inside them frozen for just the clone), then read at leisure.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { extentsVouch } from "../../src/replication/extent-changes.ts";
import { cliJson, privilegedSkipReason, restorePoint } from "../helpers/env.ts";
import {
  acknowledged,
  countRecords,
  inspectRestored,
  Scratch,
  startWriter,
  until,
} from "../helpers/privileged.ts";

const skip = privilegedSkipReason([
  "losetup",
  "mkfs.ext4",
  "mkfs.xfs",
  "mount",
  "fsfreeze",
  "e2fsck",
  "fallocate",
]);

/** A scratch folder (removed after the test) with an XFS file system of `mib` MiB mounted in it. */
function onXfs(t: { after(fn: () => void): void }, mib: number): { s: Scratch; xfs: string } {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const dev = s.attach(s.image("xfs.img", mib));
  s.mkfs(dev, "xfs");
  return { s, xfs: s.mount(dev, "xfs") };
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: "pipe" });
}

interface Rep {
  pointId: string;
  snapshot: string;
  maxFreezeMs: number;
  warnings: string[];
  extentDisks: number;
  bytesRead: number;
  changedBlocks: number;
  mode: string;
  disks: { uuid: string }[];
}

test("reflink: image files on XFS, mounted ext4 inside, under an fsyncing writer", { skip }, async (t) => {
  const { s, xfs } = onXfs(t, 600);
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
    [`.vm-disk0.img.switchback-base-${points[2]!.r.pointId}-${points[2]!.r.disks[0]!.uuid}`],
    "only the last point's clone is kept (the next point compares extents with it)",
  );
  assert.deepEqual(
    points.map(({ r }) => r.extentDisks),
    [0, 1, 1],
    "the points after the first read only what moved since the clone before",
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
  const { s, xfs } = onXfs(t, 300);
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
    [`.raw.img.switchback-base-${r.pointId}-${r.disks[0]!.uuid}`],
  );
});

test("reflink: the next point reads only the blocks whose extents moved since the last point's clone", {
  skip,
}, async (t) => {
  const { s, xfs } = onXfs(t, 400);
  const disk = path.join(xfs, "raw.img");
  const MiB = 1024 * 1024;
  writeFileSync(disk, Buffer.concat([randomBytes(48 * MiB), Buffer.alloc(16 * MiB)]));
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const point = (snapshot = "reflink") =>
    cliJson<Rep>([
      "replicate-once",
      ...["--datastore", ds, "--item", "raw1", "--disk", disk],
      ...["--snapshot", snapshot, "--state", s.path("state")],
    ]);
  const restored = async (r: Rep) => {
    const out = s.path(`out-${r.pointId}.img`);
    await restorePoint({ datastore: ds, item: "raw1", point: r.pointId, disk: 0, out });
    return readFileSync(out);
  };
  const first = await point();
  assert.equal(first.mode, "full");

  // written with new data, written with what they held, zeroed, punched out, zero-ranged, and data
  // written into the zeros; then a block written twice
  const before = readFileSync(disk);
  const fd = openSync(disk, "r+");
  const B = 4096;
  const changed = new Set<number>();
  try {
    for (const b of [3, 700, 701, 5000, 11_999]) {
      writeSync(fd, randomBytes(B), 0, B, b * B);
      changed.add(b);
    }
    for (const b of [40, 41, 9000]) writeSync(fd, before, b * B, B, b * B); // the same bytes again
    writeSync(fd, Buffer.alloc(B), 0, B, 77 * B);
    changed.add(77);
    for (const b of [14_000, 15_000]) {
      writeSync(fd, randomBytes(B), 0, B, b * B);
      changed.add(b);
    }
    writeSync(fd, randomBytes(B), 0, B, 3 * B);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  run("fallocate", ["--punch-hole", "--offset", String(200 * B), "--length", String(2 * B), disk]);
  run("fallocate", ["--zero-range", "--offset", String(300 * B), "--length", String(B), disk]);
  for (const b of [200, 201, 300]) changed.add(b);

  const second = await point();
  assert.equal(second.mode, "incremental");
  assert.equal(second.extentDisks, 1);
  assert.equal(second.changedBlocks, changed.size, "exactly the blocks whose bytes differ are entries");
  assert.ok(
    second.bytesRead <= 64 * B,
    `read ${second.bytesRead} bytes for ${changed.size} changed blocks (not the 64 MiB)`,
  );
  assert.ok((await restored(second)).equals(readFileSync(disk)), "the point restores the disk as it is");

  // the kept clone gone: the next point reads the disk whole, and is as right
  for (const n of readdirSync(xfs)) if (n.includes("switchback-base")) rmSync(path.join(xfs, n));
  writeFileSync(disk, randomBytes(B), { flag: "r+" });
  const third = await point();
  assert.equal(third.extentDisks, 0);
  assert.ok(third.bytesRead >= 64 * MiB);
  assert.equal(third.changedBlocks, 1);
  assert.ok((await restored(third)).equals(readFileSync(disk)));
  // a point taken otherwise drops the kept clone (it would only hold old blocks)
  await point("none");
  assert.deepEqual(
    readdirSync(xfs).filter((n) => n.includes("switchback")),
    [],
  );
});

test("reflink: a kept clone serves only the disk it was taken of (two images of one size, given in the other order)", {
  skip,
}, async (t) => {
  const { s, xfs } = onXfs(t, 300);
  const a = path.join(xfs, "a.img");
  const b = path.join(xfs, "b.img");
  writeFileSync(a, randomBytes(16 * 1024 * 1024));
  writeFileSync(b, randomBytes(16 * 1024 * 1024));
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const point = (disks: string[]) =>
    cliJson<Rep>([
      "replicate-once",
      ...["--datastore", ds, "--item", "two", "--snapshot", "reflink", "--state", s.path("state")],
      ...disks.flatMap((d) => ["--disk", d]),
    ]);
  await point([a, b]);
  const fd = openSync(a, "r");
  try {
    assert.ok(extentsVouch(fd, fd), "XFS extents are trusted");
  } finally {
    closeSync(fd);
  }
  const swapped = await point([b, a]);
  assert.equal(swapped.extentDisks, 0, "neither image has a kept clone taken as the disk it now is");
  for (const [disk, img] of [b, a].entries()) {
    const out = s.path(`out-${disk}.img`);
    await restorePoint({ datastore: ds, item: "two", point: swapped.pointId, disk, out });
    assert.ok(readFileSync(out).equals(readFileSync(img)), `disk ${disk} restores as ${path.basename(img)}`);
  }
});

test("reflink: two items replicating one image keep their own clones and leave each other's alone", {
  skip,
}, async (t) => {
  const { s, xfs } = onXfs(t, 300);
  const disk = path.join(xfs, "shared.img");
  writeFileSync(disk, randomBytes(16 * 1024 * 1024));
  const point = async (item: string) => {
    const ds = s.path(`ds-${item}`);
    if (!existsSync(ds)) await cliJson(["datastore", "init", "--path", ds]);
    const r = await cliJson<Rep>([
      "replicate-once",
      ...["--datastore", ds, "--item", item, "--disk", disk],
      ...["--snapshot", "reflink", "--state", s.path(`state-${item}`)],
    ]);
    return { r, ds };
  };
  // a clone a crashed point of this image left long ago, of an older version (no uuid): swept
  const ancient = path.join(xfs, ".shared.img.switchback-20200101T000000000Z-abcdef");
  writeFileSync(ancient, "x");
  utimesSync(ancient, new Date("2020-01-01"), new Date("2020-01-01"));
  await point("one");
  await point("two");
  assert.ok(!existsSync(ancient), "a clone nobody wrote for a week is removed");
  writeFileSync(disk, randomBytes(4096), { flag: "r+" });
  for (const item of ["one", "two"]) {
    const { r, ds } = await point(item);
    assert.equal(r.extentDisks, 1, `${item} found its own kept clone`);
    assert.equal(r.changedBlocks, 1);
    const out = s.path(`out-${item}.img`);
    await restorePoint({ datastore: ds, item, point: r.pointId, disk: 0, out });
    assert.ok(readFileSync(out).equals(readFileSync(disk)));
  }
  assert.equal(readdirSync(xfs).filter((n) => n.includes("switchback-base")).length, 2);
});

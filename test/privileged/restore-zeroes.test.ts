// A full restore onto a block device must leave the device's old content nowhere: every zero block of
// the point is zeroed. The device zeroes them itself where it can (BLKZEROOUT through the addon; a
// loop device hands it to its file), and writes them where it cannot (without the addon). Either way
// the device must read back as the disk, and the check must have read the zeros back.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import { test } from "node:test";
import { cliJson, privilegedSkipReason } from "../helpers/env.ts";
import { makeImage } from "../helpers/images.ts";
import { Scratch } from "../helpers/privileged.ts";

const skip = privilegedSkipReason(["losetup"]);

interface Restored {
  verified: boolean;
  blocksWritten: number;
  zeroBlocksWritten: number;
  zeroBlocksByDevice: number;
}

function deviceBytes(dev: string, n: number): Buffer {
  const fd = openSync(dev, "r");
  try {
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, 0);
    return b;
  } finally {
    closeSync(fd);
  }
}

for (const addon of [true, false]) {
  const how = addon ? "zeroed by the device" : "written (no addon)";
  test(`a full and a delta restore onto a block device full of old data: zero blocks ${how}`, {
    skip,
  }, async (t) => {
    const s = new Scratch();
    t.after(() => s.cleanup());
    const env = addon ? {} : { ...process.env, SWITCHBACK_NATIVE: "0" };
    const disk = s.path("disk.img");
    makeImage(disk, 24, 7); // 256 KiB stretches of zeros, text and random data in turn
    const ds = s.path("ds");
    await cliJson(["datastore", "init", "--path", ds]);
    const point = () =>
      cliJson(
        [
          "replicate-once",
          "--datastore",
          ds,
          "--item",
          "z",
          "--disk",
          disk,
          "--state",
          s.path("state"),
        ].concat(["--snapshot", "none"]),
        { env },
      );
    await point();
    const backing = s.path("target.img");
    writeFileSync(backing, Buffer.alloc(24 * 1024 * 1024, 0xa5)); // the device's old content
    const dev = s.attach(backing);
    const restore = (delta: boolean) =>
      cliJson<Restored>(
        ["restore", "--datastore", ds, "--item", "z", "--point", "latest", "--disk", "0", "--to", dev].concat(
          delta ? ["--delta"] : [],
        ),
        { env },
      );
    const full = await restore(false);
    assert.equal(full.verified, true);
    assert.equal(full.zeroBlocksWritten, 2048, "a third of 6,144 blocks are zero");
    assert.equal(full.zeroBlocksByDevice, addon ? full.zeroBlocksWritten : 0);
    assert.ok(deviceBytes(dev, 24 * 1024 * 1024).equals(readFileSync(disk)), "the device is the disk");

    // data blocks become zero: a delta restore zeroes just those
    const fd = openSync(disk, "r+");
    writeSync(fd, Buffer.alloc(3 * 4096), 0, 3 * 4096, 300 * 1024);
    closeSync(fd);
    await point();
    const delta = await restore(true);
    assert.equal(delta.verified, true);
    assert.equal(delta.zeroBlocksWritten, 3);
    assert.equal(delta.zeroBlocksByDevice, addon ? 3 : 0);
    assert.ok(deviceBytes(dev, 24 * 1024 * 1024).equals(readFileSync(disk)), "the device is the disk again");
  });
}

// A device of 4 KiB sectors and a disk whose size is not a multiple of them: the device zeroes whole
// sectors only, so the last zero run's part of a sector is written, and every run before and the
// whole sectors of that one are still the device's to zero.
test("a disk of an odd size onto a device of 4 KiB sectors: the device zeroes the whole sectors", {
  skip: skip || (process.env.SWITCHBACK_NATIVE === "0" ? "the addon is off" : undefined),
}, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const disk = s.path("odd.img");
  const size = 8 * 1024 * 1024 + 512;
  const content = Buffer.alloc(size); // zero but for a stretch of data in the middle
  content.fill(0x3c, 2 * 1024 * 1024, 3 * 1024 * 1024);
  writeFileSync(disk, content);
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  await cliJson(
    ["replicate-once", "--datastore", ds, "--item", "odd", "--disk", disk, "--state", s.path("state")].concat(
      ["--snapshot", "none"],
    ),
  );
  const backing = s.path("target.img");
  writeFileSync(backing, Buffer.alloc(16 * 1024 * 1024, 0xa5));
  const dev = execFileSync("losetup", ["-f", "--show", "--sector-size", "4096", backing]).toString().trim();
  t.after(() => execFileSync("losetup", ["-d", dev]));
  const r = await cliJson<Restored>([
    "restore",
    "--datastore",
    ds,
    "--item",
    "odd",
    "--point",
    "latest",
    "--disk",
    "0",
    "--to",
    dev,
  ]);
  assert.equal(r.verified, true);
  // 2,049 blocks, the last one 512 bytes long; 256 of data
  assert.equal(r.zeroBlocksWritten, 2049 - 256);
  assert.equal(r.zeroBlocksByDevice, r.zeroBlocksWritten - 1, "all but the last, partial block");
  assert.ok(deviceBytes(dev, size).equals(content));
});

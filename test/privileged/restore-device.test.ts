// Restoring onto a block device bigger than the disk, with a disk whose size is not a multiple of
// 4 KiB: the bytes past the disk's end are not the disk's and must not fail the check or be rewritten.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { cliJson, privilegedSkipReason } from "../helpers/env.ts";
import { Scratch } from "../helpers/privileged.ts";

const skip = privilegedSkipReason(["losetup"]);

test("full and delta restore onto a bigger block device, disk size not a multiple of 4 KiB", {
  skip,
}, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const disk = s.path("odd.img");
  const content = randomBytes(1024 * 1024 + 512);
  writeFileSync(disk, content);
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  await cliJson([
    "replicate-once",
    "--datastore",
    ds,
    "--item",
    "odd",
    "--disk",
    disk,
    "--state",
    s.path("state"),
    "--snapshot",
    "none",
  ]);
  const backing = s.path("target.img");
  writeFileSync(backing, Buffer.alloc(8 * 1024 * 1024, 0xff));
  const dev = s.attach(backing);
  const full = await cliJson<{ verified: boolean }>([
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
  assert.equal(full.verified, true);
  const again = await cliJson<{ verified: boolean; blocksWritten: number }>([
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
    "--delta",
  ]);
  assert.equal(again.verified, true);
  assert.equal(again.blocksWritten, 0, "nothing differs");
  const fd = openSync(dev, "r");
  const back = Buffer.alloc(content.length + 16);
  readSync(fd, back, 0, back.length, 0);
  closeSync(fd);
  assert.ok(back.subarray(0, content.length).equals(content), "the disk's bytes");
});

// A loop device is read through its backing file only when the loop driver's own record (device
// number and inode) names that very file: the addon's LOOP_GET_STATUS64 and losetup must agree.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { test } from "node:test";
import { native } from "../../src/platform/native.ts";
import { inspectDisk, loopRecord } from "../../src/replication/disk-source.ts";
import { privilegedSkipReason } from "../helpers/env.ts";
import { Scratch } from "../helpers/privileged.ts";

const skip = privilegedSkipReason();

test("a loop device's backing record: the addon's ioctl and losetup agree, and the backing file is found", {
  skip,
}, (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const image = s.image("disk", 16);
  const dev = s.attach(image);
  const st = statSync(image);
  const viaLosetup = loopRecord(dev, null);
  assert.ok(viaLosetup !== null, "losetup knows the device's backing file");
  assert.equal(viaLosetup[0], String(st.ino));
  if (native !== null) assert.deepEqual(loopRecord(dev), viaLosetup);
  const info = inspectDisk(dev);
  assert.equal(info.backing?.file, image);
  assert.equal(info.backing?.ino, st.ino);
  // a device that is not a loop device has no such record
  assert.equal(loopRecord("/dev/null"), null);
});

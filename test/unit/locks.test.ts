import assert from "node:assert/strict";
import { existsSync, readFileSync, statfsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { onLocalFileSystem } from "../../src/platform/files.ts";
import { native } from "../../src/platform/native.ts";
import { releasePidLock, takeLock, tryPidLock } from "../../src/platform/process.ts";
import { tempDir } from "../helpers/env.ts";

test("a pid lock is created whole, refused while its holder lives, taken over from a dead one, released only by its holder", () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = path.join(dir, "x.lock");
    assert.equal(tryPidLock(f), true);
    assert.equal(readFileSync(f, "utf8"), String(process.pid));
    assert.equal(tryPidLock(f), false, "held by a live process (this one)");
    releasePidLock(f);
    assert.ok(!existsSync(f));
    writeFileSync(f, "999999999"); // a holder that is gone
    assert.equal(tryPidLock(f), true);
    assert.equal(readFileSync(f, "utf8"), String(process.pid));
    releasePidLock(f);
    writeFileSync(f, String(process.ppid)); // another live process's
    assert.equal(tryPidLock(f), false);
    releasePidLock(f);
    assert.ok(existsSync(f), "not ours: left alone");
    writeFileSync(f, ""); // damaged: no pid in it
    assert.equal(tryPidLock(f), true);
    releasePidLock(f);
  } finally {
    cleanup();
  }
});

test("takeLock excludes a second holder until the first releases it", () => {
  const { dir, cleanup } = tempDir();
  try {
    const f = path.join(dir, "y.lock");
    const a = takeLock(f);
    assert.ok(a !== null);
    assert.equal(takeLock(f), null, native === null ? "pid lock" : "flock through another open file");
    a.release();
    const b = takeLock(f);
    assert.ok(b !== null);
    b.release();
    b.release(); // twice is harmless
  } finally {
    cleanup();
  }
});

test("only the machine's own file systems count as local (lock markers go without fsync there)", () => {
  assert.equal(onLocalFileSystem("/proc"), false, "procfs");
  assert.equal(onLocalFileSystem("/no/such/folder"), false, "cannot be told: not local");
  const { dir, cleanup } = tempDir();
  try {
    // ext4, tmpfs, XFS and Btrfs (the temp folders of the machines this runs on) are local
    const type = Number(statfsSync(dir).type);
    if ([0xef53, 0x01021994, 0x58465342, 0x9123683e].includes(type))
      assert.equal(onLocalFileSystem(dir), true);
  } finally {
    cleanup();
  }
});

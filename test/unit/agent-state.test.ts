import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type { ItemName, PointId } from "../../src/domain/ids.ts";
import { native } from "../../src/platform/native.ts";
import { takeLock } from "../../src/platform/process.ts";
import { AgentState, type DiskHashes } from "../../src/replication/agent-state.ts";
import type { DiskInfo } from "../../src/replication/disk-source.ts";
import { tempDir } from "../helpers/env.ts";

const SIZE = 64 * 1024 * 1024; // 16,384 blocks and 1,024 units: 139 kB of hashes
const disk = { kind: "file", path: "/dev/null", sizeBytes: SIZE, sectorSize: 512 } as DiskInfo;

function randomHashes(): DiskHashes {
  const h = { block: new BigUint64Array(16384), unit: new BigUint64Array(1024) };
  Buffer.from(h.block.buffer).set(randomBytes(h.block.byteLength));
  Buffer.from(h.unit.buffer).set(randomBytes(h.unit.byteLength));
  return h;
}

function same(a: DiskHashes | null, b: DiskHashes): boolean {
  return (
    a !== null &&
    Buffer.from(a.block.buffer).equals(Buffer.from(b.block.buffer)) &&
    Buffer.from(a.unit.buffer).equals(Buffer.from(b.unit.buffer))
  );
}

test("a point's hashes update the file in place, changed pages only; a torn update is never trusted", (t) => {
  if (native === null) {
    // without flock(2) the file is always written whole: AgentState's other tests cover that
    assert.notEqual(process.env.CI, "true", "the native addon is not loaded");
    t.skip("in-place updates need the native addon's flock");
    return;
  }
  const { dir, cleanup } = tempDir();
  try {
    const state = AgentState.enable(dir, "web1" as ItemName, [disk]);
    const file = path.join(dir, `${state.machine.disks[0]!.uuid}.hashes`);
    const h = randomHashes();
    state.commit("p1" as PointId, "ds", [h]);
    const inode = statSync(file).ino;
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));

    // three hashes change, on three pages (block 5, block 9,000, unit 3): three pages are written
    h.block[5] = 1n;
    h.block[9000] = 2n;
    h.unit[3] = 3n;
    state.commit("p2" as PointId, "ds", [h]);
    assert.equal(statSync(file).ino, inode, "updated in place");
    assert.equal(state.pagesWritten, 3);
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));

    // nothing changed: no page written, the tag moves on
    state.commit("p3" as PointId, "ds", [h]);
    assert.equal(state.pagesWritten, 3);
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));

    // a crash in the middle of an update leaves the "updating" tag: no point trusts the file
    const torn = readFileSync(file);
    Buffer.from("updating", "latin1").copy(torn, 8);
    writeFileSync(file, torn);
    assert.equal(AgentState.load(dir)!.loadHashes(0), null);
    // ... and the next commit writes the file whole (it is not the last point's), correctly
    h.block[1] = 7n;
    state.commit("p4" as PointId, "ds", [h]);
    assert.notEqual(statSync(file).ino, inode, "written anew");
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));

    // another updater holds the lock (here through another open file): this one writes anew instead
    // of interleaving its pages with the other's
    const other = takeLock(path.join(dir, "hashes.lock"))!;
    const before = statSync(file).ino;
    h.unit[1000] = 9n;
    state.commit("p5" as PointId, "ds", [h]);
    other.release();
    assert.notEqual(statSync(file).ino, before);
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));
    // and once it is free, in place again
    const inode5 = statSync(file).ino;
    h.unit[0] = 1n;
    state.commit("p6" as PointId, "ds", [h]);
    assert.equal(statSync(file).ino, inode5);
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));
  } finally {
    cleanup();
  }
});

test("hashes written whole (no addon, or a first point) read back, and a file of another point is not trusted", () => {
  const { dir, cleanup } = tempDir();
  try {
    const state = AgentState.enable(dir, "web1" as ItemName, [disk]);
    const h = randomHashes();
    state.commit("p1" as PointId, "ds", [h]);
    assert.ok(same(AgentState.load(dir)!.loadHashes(0), h));
    // machine.json names a point the hash file does not describe (a crash between the two writes)
    const m = JSON.parse(readFileSync(path.join(dir, "machine.json"), "utf8"));
    writeFileSync(path.join(dir, "machine.json"), JSON.stringify({ ...m, lastPointId: "p2" }));
    assert.equal(AgentState.load(dir)!.loadHashes(0), null);
  } finally {
    cleanup();
  }
});

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type { ItemName, PointId } from "../../src/domain/ids.ts";
import { native } from "../../src/platform/native.ts";
import { AgentState, type DiskHashes } from "../../src/replication/agent-state.ts";
import { RECORD_BYTES, writeUnitHashes } from "../../src/replication/block-hashes.ts";
import type { DiskInfo } from "../../src/replication/disk-source.ts";
import { tempDir } from "../helpers/env.ts";

const SIZE = 64 * 1024 * 1024; // 16,384 blocks and 1,024 units: 139 kB of hashes
const disk = { kind: "file", path: "/dev/null", sizeBytes: SIZE, sectorSize: 512 } as DiskInfo;

const BLOCKS = 16384;
const UNITS = 1024;

/** What a point's passes leave: every unit's hashes and every unit's record of block hashes, random. */
function fill(h: DiskHashes): Buffer {
  const records = randomBytes(UNITS * RECORD_BYTES);
  writeUnitHashes(h.blocks, 0, records, UNITS);
  Buffer.from(h.unit.buffer).set(randomBytes(h.unit.byteLength));
  return records;
}

/** Block b's hash becomes v in the records (`expect`) and in what the point wrote. */
function setBlock(h: DiskHashes, expect: Buffer, b: number, v: bigint): void {
  expect.writeBigUInt64LE(v, b * 8);
  const u = Math.floor(b / 16);
  writeUnitHashes(h.blocks, u, expect.subarray(u * RECORD_BYTES, (u + 1) * RECORD_BYTES), 1);
}

/** Whether the state's committed hashes are `records` and `units`. */
function holds(state: AgentState, records: Buffer, units: BigUint64Array): boolean {
  const again = AgentState.load(state.dir)!;
  const blocks = again.readBlockHashes(0);
  const h = again.loadHashes(0);
  if (blocks === null || h === null) return false;
  try {
    return (
      Buffer.from(blocks.buffer).equals(records) &&
      Buffer.from(h.unit.buffer).equals(Buffer.from(units.buffer))
    );
  } finally {
    again.release(h);
  }
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
    let h = state.freshHashes(0);
    const records = fill(h);
    const units = h.unit.slice();
    state.commit("p1" as PointId, "ds", [h]);
    const inode = statSync(file).ino;
    assert.ok(holds(state, records, units));

    // three hashes change, on three pages (block 5, block 9,000, unit 3): three pages are written
    h = state.loadHashes(0)!;
    setBlock(h, records, 5, 1n);
    setBlock(h, records, 9000, 2n);
    h.unit[3] = 3n;
    units[3] = 3n;
    state.commit("p2" as PointId, "ds", [h]);
    assert.equal(statSync(file).ino, inode, "updated in place");
    assert.equal(state.pagesWritten, 3);
    assert.ok(holds(state, records, units));

    // nothing changed: no page written, the tag moves on
    state.commit("p3" as PointId, "ds", [state.loadHashes(0)!]);
    assert.equal(state.pagesWritten, 3);
    assert.ok(holds(state, records, units));

    // a crash in the middle of an update leaves the "updating" tag: no point trusts the file
    const torn = readFileSync(file);
    Buffer.from("updating", "latin1").copy(torn, 8);
    writeFileSync(file, torn);
    assert.equal(AgentState.load(dir)!.loadHashes(0), null);
    // ... so the next point hashes the disk whole, and its commit writes the file anew, correctly
    h = state.freshHashes(0);
    const records4 = fill(h);
    const units4 = h.unit.slice();
    state.commit("p4" as PointId, "ds", [h]);
    assert.notEqual(statSync(file).ino, inode, "written anew");
    assert.ok(holds(state, records4, units4));

    // another process is reading the file (a point of its own under way: a shared lock on it): this
    // one writes anew instead of changing what the other reads, which keeps reading the old file
    const inode4 = statSync(file).ino;
    const other = openSync(file, "r");
    assert.ok(native.flock(other, false));
    h = state.loadHashes(0)!;
    setBlock(h, records4, 16383, 9n);
    state.commit("p5" as PointId, "ds", [h]);
    assert.notEqual(statSync(file).ino, inode4);
    assert.ok(holds(state, records4, units4));
    const seen = Buffer.alloc(8);
    readSync(other, seen, 0, 8, 16 + 16383 * 8);
    assert.notEqual(seen.readBigUInt64LE(), 9n, "the other reader's file is unchanged");
    closeSync(other);
    // and once nobody else reads it, in place again
    const inode5 = statSync(file).ino;
    h = state.loadHashes(0)!;
    h.unit[0] = 1n;
    units4[0] = 1n;
    state.commit("p6" as PointId, "ds", [h]);
    assert.equal(statSync(file).ino, inode5);
    assert.ok(holds(state, records4, units4));
  } finally {
    cleanup();
  }
});

test("hashes written whole (no addon, or a first point) read back, and a file of another point is not trusted", () => {
  const { dir, cleanup } = tempDir();
  try {
    const state = AgentState.enable(dir, "web1" as ItemName, [disk]);
    const h = state.freshHashes(0);
    const records = fill(h);
    const units = h.unit.slice();
    state.commit("p1" as PointId, "ds", [h]);
    assert.ok(holds(state, records, units));
    // machine.json names a point the hash file does not describe (a crash between the two writes)
    const m = JSON.parse(readFileSync(path.join(dir, "machine.json"), "utf8"));
    writeFileSync(path.join(dir, "machine.json"), JSON.stringify({ ...m, lastPointId: "p2" }));
    assert.equal(AgentState.load(dir)!.loadHashes(0), null);
  } finally {
    cleanup();
  }
});

test("units no pass wrote keep the last point's block hashes, and without a last point read as unknown", () => {
  const { dir, cleanup } = tempDir();
  try {
    const state = AgentState.enable(dir, "web1" as ItemName, [disk]);
    // a first point whose passes wrote only units 0-9 (never so in practice): the rest read as zeros
    let h = state.freshHashes(0);
    const some = randomBytes(10 * RECORD_BYTES);
    writeUnitHashes(h.blocks, 0, some, 10);
    state.commit("p1" as PointId, "ds", [h]);
    const expect = Buffer.concat([some, Buffer.alloc((UNITS - 10) * RECORD_BYTES)]);
    assert.ok(holds(state, expect, new BigUint64Array(UNITS)));
    // the next writes unit 500 only: everything else is the last point's
    h = state.loadHashes(0)!;
    setBlock(h, expect, 500 * 16 + 3, 42n);
    state.commit("p2" as PointId, "ds", [h]);
    assert.ok(holds(state, expect, new BigUint64Array(UNITS)));
    assert.equal(BLOCKS * 8, expect.length);
  } finally {
    cleanup();
  }
});

test("a hash file changed under a point (another process, no lock) is never tagged with that point", () => {
  const { dir, cleanup } = tempDir();
  try {
    const state = AgentState.enable(dir, "web1" as ItemName, [disk]);
    const file = path.join(dir, `${state.machine.disks[0]!.uuid}.hashes`);
    const h0 = state.freshHashes(0);
    const records = fill(h0);
    const units = h0.unit.slice();
    state.commit("p1" as PointId, "ds", [h0]);

    // this point loads the hashes of p1; another process, without the addon's locks, then starts an
    // update in place (its first step: the "updating" tag)
    const h = state.loadHashes(0)!;
    assert.ok(state.stillAsLoaded(h));
    const other = openSync(file, "r+");
    writeSync(other, Buffer.from("updating", "latin1"), 0, 8, 8);
    closeSync(other);
    assert.equal(state.stillAsLoaded(h), false, "the change is seen through the file this point read");
    setBlock(h, records, 7, 5n);
    state.commit("p2" as PointId, "ds", [h]);
    // no file says p2: the next point resyncs rather than trusting what it cannot
    assert.equal(AgentState.load(dir)!.loadHashes(0), null);
    assert.ok(!holds(state, records, units));
  } finally {
    cleanup();
  }
});

test("what a dead process left in the agent state (a hash file half written anew) is swept at load", () => {
  const { dir, cleanup } = tempDir();
  try {
    const state = AgentState.enable(dir, "web1" as ItemName, [disk]);
    const uuid = state.machine.disks[0]!.uuid;
    // pid 2^22 + 1 is above Linux's pid_max: nobody holds it
    const dead = path.join(dir, `${uuid}.hashes.tmp-4194305-0a1b2c3d`);
    const live = path.join(dir, `${uuid}.hashes.tmp-${process.pid}-0a1b2c3d`);
    writeFileSync(dead, "half");
    writeFileSync(live, "in progress");
    AgentState.load(dir);
    assert.equal(existsSync(dead), false);
    assert.equal(existsSync(live), true, "a live process's file is its own");
  } finally {
    cleanup();
  }
});

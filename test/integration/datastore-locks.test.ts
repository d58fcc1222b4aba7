// Datastore locks: readers and writers share, prune and GC are exclusive, a reader waits a while
// for an exclusive holder, and a lock left by a dead process does not block anyone.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Datastore } from "../../src/datastore/datastore.ts";
import { tempDir } from "../helpers/env.ts";

test("shared locks coexist; an exclusive one is refused at once while a shared one is held", async () => {
  const { dir, cleanup } = tempDir();
  const ds = await Datastore.init(path.join(dir, "ds"));
  try {
    const a = await ds.lock("shared", "replication a");
    const b = await ds.lock("shared", "replication b");
    const t = Date.now();
    await assert.rejects(ds.lock("exclusive", "gc"), (e: Error & { code?: string }) => {
      assert.equal(e.code, "DATASTORE_LOCKED");
      assert.match(e.message, /in use by replication a \(pid \d+ on .+\)/);
      return true;
    });
    assert.ok(Date.now() - t < 1000, "no waiting for shared holders");
    await a.release();
    await b.release();
    const x = await ds.lock("exclusive", "gc");
    await x.release();
  } finally {
    await ds.close();
    cleanup();
  }
});

test("a shared locker waits for prune or gc to finish", async () => {
  const { dir, cleanup } = tempDir();
  const ds = await Datastore.init(path.join(dir, "ds"));
  try {
    const x = await ds.lock("exclusive", "prune web1");
    setTimeout(() => void x.release(), 600);
    const t = Date.now();
    const s = await ds.lock("shared", "check");
    assert.ok(Date.now() - t >= 500, "it waited");
    await s.release();
    const x2 = await ds.lock("exclusive", "gc");
    await assert.rejects(ds.lock("shared", "check", { waitMs: 300 }), /in use by gc/);
    await x2.release();
  } finally {
    await ds.close();
    cleanup();
  }
});

test("a lock left by a process that is gone is removed by the next locker", async () => {
  const { dir, cleanup } = tempDir();
  const ds = await Datastore.init(path.join(dir, "ds"));
  try {
    // pid 2^22 + 1 is above the kernel's pid_max default: no such process
    mkdirSync(path.join(dir, "ds", "locks"), { recursive: true });
    writeFileSync(
      path.join(dir, "ds", "locks", "stale.json"),
      JSON.stringify({
        kind: "exclusive",
        purpose: "gc",
        pid: 4194305,
        host: hostname(),
        createdAt: new Date().toISOString(),
      }),
    );
    const l = await ds.lock("exclusive", "prune");
    await l.release();
  } finally {
    await ds.close();
    cleanup();
  }
});

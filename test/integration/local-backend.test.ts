// The local backend against a real folder: atomic writes, listing hides temporaries, and reads of an
// object replaced under the same name see the new bytes (prune replaces manifests in place).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { LocalBackend } from "../../src/datastore/local/local-backend.ts";
import { tempDir } from "../helpers/env.ts";

test("a replaced object reads back new bytes, also through ranged reads", async () => {
  const { dir, cleanup } = tempDir();
  const be = new LocalBackend(dir);
  try {
    await be.write("points/web1/p.point", Buffer.from("first version, longer than the second"));
    assert.equal((await be.readRange("points/web1/p.point", 0, 5)).toString(), "first");
    await be.write("points/web1/p.point", Buffer.from("second"));
    assert.equal((await be.readRange("points/web1/p.point", 0, 6)).toString(), "second");
    await be.write("packs/ab/abc.pack", Buffer.from("pack bytes"));
    assert.equal((await be.readRange("packs/ab/abc.pack", 5, 5)).toString(), "bytes");
    await assert.rejects(be.readRange("packs/ab/abc.pack", 5, 50), /short read/);
  } finally {
    await be.close();
    cleanup();
  }
});

test("listing hides interrupted writes; removing is idempotent", async () => {
  const { dir, cleanup } = tempDir();
  const be = new LocalBackend(dir);
  try {
    await be.write("index/a.idx", Buffer.from("a"));
    writeFileSync(path.join(dir, "index", "b.idx.tmp-123456"), "half");
    assert.deepEqual(await be.list("index"), ["a.idx"]);
    assert.deepEqual(await be.listTemporary(""), ["index/b.idx.tmp-123456"]);
    await be.remove("index/a.idx");
    await be.remove("index/a.idx");
    assert.deepEqual(await be.list("index"), []);
    assert.deepEqual(await be.list("nothing-here"), []);
  } finally {
    await be.close();
    cleanup();
  }
});

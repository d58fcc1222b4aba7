// A datastore's block index keeps the records of its index files as views of the files (mapped by the
// native addon): the page cache's pages, not the process's own memory. Loaded, and grown by
// writeIndexFile, it answers exactly as an index read into memory (SWITCHBACK_MAP_INDEX=0) does, also
// once gc has removed the files it maps.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Datastore } from "../../src/datastore/datastore.ts";
import { BLOCK_SIZE } from "../../src/datastore/format.ts";
import { blockHash } from "../../src/datastore/hash.ts";
import { LocalBackend, MAP_LIMIT, mappedViews } from "../../src/datastore/local/local-backend.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { native } from "../../src/platform/native.ts";
import { tempDir } from "../helpers/env.ts";

/** blocks per index file: enough for it to be mapped (256 KiB and more; smaller ones are read) */
const BLOCKS = 6000;

const { dir: root, cleanup } = tempDir("sb-index-view-");
after(cleanup);

/** Index files this process maps, by name. */
function mapped(ds: string): string[] {
  const idx = path.join(ds, "index");
  return [
    ...new Set(
      readFileSync("/proc/self/maps", "utf8")
        .split("\n")
        .map((l) => l.split(/\s+/).slice(5).join(" "))
        .filter((f) => f.startsWith(`${idx}/`))
        .map((f) => path.basename(f)),
    ),
  ].sort();
}

async function store(ds: Datastore, blocks: number): Promise<Buffer> {
  const raw = randomBytes(blocks * BLOCK_SIZE);
  const hashes = Buffer.concat(
    Array.from({ length: blocks }, (_, i) => blockHash(raw.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))),
  );
  const w = ds.writer();
  for (let i = 0; i < blocks; i += 32)
    await w.add(
      makeFrame(hashes.subarray(i * 32, (i + 32) * 32), raw.subarray(i * BLOCK_SIZE, (i + 32) * BLOCK_SIZE)),
    );
  await w.flush();
  return hashes;
}

test("the index maps its files, loaded and as they are written, and answers as one read into memory", {
  skip: native?.mapFile === undefined ? "the native addon is not built (npm run build:native)" : false,
}, async () => {
  const dir = path.join(root, "ds");
  /** a datastore whose index is read into memory */
  const reading = async () => {
    process.env.SWITCHBACK_MAP_INDEX = "0";
    try {
      return await Datastore.open(dir);
    } finally {
      delete process.env.SWITCHBACK_MAP_INDEX;
    }
  };
  await (await Datastore.init(dir)).close();
  const w = await reading();
  const first = await store(w, BLOCKS);
  await w.close();
  assert.deepEqual(mapped(dir), [], "read into memory: nothing mapped");

  const ds = await Datastore.open(dir);
  const idx = await ds.index();
  assert.deepEqual(mapped(dir), [...ds.indexFiles].sort(), "loaded: every index file is mapped");
  const second = await store(ds, BLOCKS); // writeIndexFile while the index is loaded
  assert.equal(ds.indexFiles.size, 2);
  assert.deepEqual(mapped(dir), [...ds.indexFiles].sort(), "written: the new file is mapped too");

  const all = Buffer.concat([first, second]);
  const absent = randomBytes(32 * 50);
  const other = await reading();
  const read = await other.index();
  for (let at = 0; at < all.length; at += 32) assert.deepEqual(idx.get(all, at), read.get(all, at));
  for (let at = 0; at < absent.length; at += 32) assert.equal(idx.has(absent, at), false);
  assert.equal(idx.size, 2 * BLOCKS);
  assert.equal(read.size, 2 * BLOCKS);
  await other.close();

  // gc (no point refers to anything) removes every index file; what maps them still reads them
  const { collectGarbage } = await import("../../src/datastore/gc.ts");
  await collectGarbage(ds);
  for (let at = 0; at < all.length; at += 32) assert.ok(idx.get(all, at) !== undefined);
  await ds.close();
});

test("mapped views are counted for as long as the index keeps any part of them", {
  skip: native?.mapFile === undefined ? "the native addon is not built (npm run build:native)" : false,
}, async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const dir = path.join(root, "count");
  const ds = await Datastore.init(dir);
  const idx = await ds.index();
  const settle = async () => {
    for (let k = 0; k < 5; k++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await settle(); // (views of the tests before this one that are garbage now)
  const before = mappedViews();
  for (let i = 0; i < 4; i++) await store(ds, BLOCKS);
  assert.equal(mappedViews() - before, 4);
  // the Buffers view() returned are gone, the index's subarrays of them are not
  await settle();
  assert.equal(mappedViews() - before, 4, "still mapped, still counted");
  assert.equal(idx.size, 4 * BLOCKS);
  await ds.close();
});

test("views asked for many at once stay within the limit of mapped views", {
  skip: native?.mapFile === undefined ? "the native addon is not built (npm run build:native)" : false,
}, async () => {
  const dir = path.join(root, "limit");
  mkdirSync(path.join(dir, "index"), { recursive: true });
  const files = Array.from({ length: 12 }, (_, i) => {
    const bytes = Buffer.alloc(256 * 1024 + i, i + 1);
    writeFileSync(path.join(dir, "index", `${i}.idx`), bytes);
    return bytes;
  });
  const be = new LocalBackend(dir);
  const saved = MAP_LIMIT.views;
  const before = mappedViews();
  MAP_LIMIT.views = before + 3;
  try {
    // (as an index load asks for them: all at once)
    const views = await Promise.all(files.map((_, i) => be.view(`index/${i}.idx`)));
    for (const [i, v] of views.entries()) assert.ok(v.equals(files[i]!), `file ${i}`);
    assert.equal(mappedViews() - before, 3, "three mapped, the rest read");
  } finally {
    MAP_LIMIT.views = saved;
    await be.close();
  }
});

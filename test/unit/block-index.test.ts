import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { BlockIndex, decodeIndexFile, encodeIndexFile } from "../../src/datastore/block-index.ts";
import { COMPRESSION_ZSTD, ENTRY_BYTES } from "../../src/datastore/format.ts";
import { writeEntry } from "../../src/datastore/pack.ts";

test("block index finds every hash it was given and none it was not, across growth", () => {
  const idx = new BlockIndex(16);
  const hashes = randomBytes(32 * 50_000);
  for (let i = 0; i < 50_000; i++) {
    idx.add(hashes, i * 32, {
      packId: `p${i % 7}`,
      frameOffset: i,
      frameLength: i * 2,
      slot: i % 32,
      frameBlocks: 32,
      compression: COMPRESSION_ZSTD,
    });
  }
  assert.equal(idx.size, 50_000);
  for (let i = 0; i < 50_000; i += 997) {
    const loc = idx.get(hashes, i * 32);
    assert.deepEqual(loc, {
      packId: `p${i % 7}`,
      frameOffset: i,
      frameLength: i * 2,
      slot: i % 32,
      frameBlocks: 32,
      compression: 1,
    });
  }
  const other = randomBytes(32 * 1000);
  for (let i = 0; i < 1000; i++) assert.equal(idx.has(other, i * 32), false);
});

test("a second add of the same hash keeps the first location", () => {
  const idx = new BlockIndex();
  const h = randomBytes(32);
  const loc = {
    packId: "a",
    frameOffset: 1,
    frameLength: 2,
    slot: 3,
    frameBlocks: 4,
    compression: 0 as const,
  };
  assert.equal(idx.add(h, 0, loc), true);
  assert.equal(idx.add(h, 0, { ...loc, packId: "b" }), false);
  assert.equal(idx.get(h)?.packId, "a");
});

test("hashes that share their first four bytes are told apart", () => {
  const idx = new BlockIndex();
  const a = randomBytes(32);
  const b = Buffer.from(a);
  b[31]! ^= 1;
  idx.add(a, 0, { packId: "a", frameOffset: 0, frameLength: 0, slot: 0, frameBlocks: 1, compression: 0 });
  assert.equal(idx.has(b), false);
  idx.add(b, 0, { packId: "b", frameOffset: 0, frameLength: 0, slot: 0, frameBlocks: 1, compression: 0 });
  assert.equal(idx.get(a)?.packId, "a");
  assert.equal(idx.get(b)?.packId, "b");
});

test("index files round-trip and are named by their content", () => {
  const entries = Buffer.alloc(3 * ENTRY_BYTES);
  for (let i = 0; i < 3; i++) {
    writeEntry(entries, i * ENTRY_BYTES, randomBytes(32), 0, {
      frameOffset: 8 + i,
      frameLength: 100,
      slot: i,
      frameBlocks: 3,
      compression: 1,
    });
  }
  const packId = randomBytes(32).toString("hex");
  const { id, parts } = encodeIndexFile([{ packId, entries }]);
  const back = decodeIndexFile(`${id}.idx`, Buffer.concat(parts));
  assert.equal(back.length, 1);
  assert.equal(back[0]!.packId, packId);
  assert.ok(back[0]!.entries.equals(entries));
  assert.throws(() => decodeIndexFile("x.idx", Buffer.concat(parts).subarray(0, 50)), /truncated/);
});

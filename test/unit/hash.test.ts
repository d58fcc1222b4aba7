import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { Blake3Hasher } from "@napi-rs/blake-hash";
import { blockHash, blockHashInto, HASH_BYTES, hashParts } from "../../src/datastore/hash.ts";

test("blockHash and blockHashInto give BLAKE3-256 of the bytes", () => {
  // the BLAKE3 paper's test vector for the empty input
  assert.equal(
    blockHash(Buffer.alloc(0)).toString("hex"),
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
  );
  const out = Buffer.alloc(3 * HASH_BYTES, 0xee);
  for (let i = 0; i < 200; i++) {
    const data = randomBytes(i === 0 ? 4096 : 1 + ((i * 977) % 9000));
    const want = new Blake3Hasher().update(data).digestBuffer();
    assert.deepEqual(blockHash(data), want);
    assert.deepEqual(hashParts([data.subarray(0, 7), data.subarray(7)]), want);
    blockHashInto(data, out, HASH_BYTES);
    assert.deepEqual(out.subarray(HASH_BYTES, 2 * HASH_BYTES), want);
  }
  // nothing around the hash is touched
  assert.ok(out.subarray(0, HASH_BYTES).every((b) => b === 0xee));
  assert.ok(out.subarray(2 * HASH_BYTES).every((b) => b === 0xee));
});

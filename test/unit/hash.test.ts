import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { Blake3Hasher } from "@napi-rs/blake-hash";
import { xxh64 as npmXxh64 } from "@node-rs/xxhash";
import { BLOCK_SIZE } from "../../src/datastore/format.ts";
import {
  blockHash,
  blockHashInto,
  HASH_BYTES,
  hashBlocks,
  hashParts,
  PartsHash,
} from "../../src/datastore/hash.ts";
import { NATIVE_ADDON_PATH, native, xxh64 } from "../../src/platform/native.ts";

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

test("the native addon hashes many 4 KiB blocks as BLAKE3-256 of each", (t) => {
  if (native === null) {
    // CI builds it (./dev test runs scripts/build-native.mjs): there its absence is a failure
    assert.notEqual(
      process.env.CI,
      "true",
      `the native addon is not built or not loaded: ${NATIVE_ADDON_PATH}`,
    );
    t.skip(
      "the native addon is not built (node scripts/build-native.mjs); the block-by-block path is tested above",
    );
    return;
  }
  assert.ok([1, 4, 8, 16].includes(native.simdDegree()));
  // counts around every SIMD width and the addon's 64-block rounds; zeros, one repeated byte, random
  for (const count of [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 63, 64, 65, 128, 200]) {
    const data = randomBytes(count * BLOCK_SIZE);
    data.fill(0, 0, BLOCK_SIZE);
    if (count > 2) data.fill(0xab, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE);
    const out = Buffer.alloc((count + 2) * HASH_BYTES, 0xee);
    native.hashBlocks(data, out, HASH_BYTES);
    for (let i = 0; i < count; i++) {
      const want = new Blake3Hasher()
        .update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))
        .digestBuffer();
      assert.deepEqual(
        out.subarray((i + 1) * HASH_BYTES, (i + 2) * HASH_BYTES),
        want,
        `block ${i} of ${count}`,
      );
    }
    assert.ok(out.subarray(0, HASH_BYTES).every((b) => b === 0xee));
    assert.ok(out.subarray((count + 1) * HASH_BYTES).every((b) => b === 0xee));
    assert.deepEqual(hashBlocks(data), out.subarray(HASH_BYTES, (count + 1) * HASH_BYTES));
  }
  // a view into a bigger buffer (as scan and check pass them), then bad arguments
  const big = randomBytes(10 * BLOCK_SIZE);
  const view = big.subarray(3 * BLOCK_SIZE, 8 * BLOCK_SIZE);
  assert.deepEqual(
    hashBlocks(view).subarray(0, HASH_BYTES),
    blockHash(big.subarray(3 * BLOCK_SIZE, 4 * BLOCK_SIZE)),
  );
  assert.throws(() => native!.hashBlocks(Buffer.alloc(100), Buffer.alloc(32), 0), /whole 4 KiB blocks/);
  assert.throws(() => native!.hashBlocks(Buffer.alloc(2 * BLOCK_SIZE), Buffer.alloc(63), 0), /no room/);
  assert.throws(() => native!.hashBlocks(Buffer.alloc(BLOCK_SIZE), Buffer.alloc(64), 40), /no room/);
  assert.throws(() => native!.hashBlocks(Buffer.alloc(BLOCK_SIZE), Buffer.alloc(64), -1), /non-negative/);
});

test("the addon's BLAKE3 by parts and its XXH64 give what the npm bindings give", (t) => {
  if (native?.blake3Init === undefined) {
    assert.notEqual(
      process.env.CI,
      "true",
      `the native addon is not built or not loaded: ${NATIVE_ADDON_PATH}`,
    );
    t.skip("the native addon is not built (node scripts/build-native.mjs)");
    return;
  }
  const data = randomBytes(300_000);
  const want = new Blake3Hasher().update(data).digestBuffer();
  // split at every kind of place: inside a 64-byte block, at a 1 KiB chunk, past several chunks
  for (const cuts of [[0], [1], [63, 64, 65], [1024, 2048], [1000, 70_000, 299_999], [300_000]]) {
    const h = new PartsHash();
    let from = 0;
    for (const c of cuts) {
      h.update(data.subarray(from, c));
      from = c;
    }
    h.update(data.subarray(from));
    const out = Buffer.alloc(40, 0xee);
    assert.deepEqual(h.digest(out, 4).subarray(4, 36), want, `cut at ${cuts.join(", ")}`);
    assert.ok(out.subarray(0, 4).every((b) => b === 0xee) && out.subarray(36).every((b) => b === 0xee));
    // a digest does not end the state: more bytes go on from where it was
    h.update(Buffer.from("more"));
    assert.deepEqual(h.digest(), new Blake3Hasher().update(data).update(Buffer.from("more")).digestBuffer());
  }
  assert.deepEqual(
    blockHash(data.subarray(0, BLOCK_SIZE)),
    new Blake3Hasher().update(data.subarray(0, BLOCK_SIZE)).digestBuffer(),
  );
  // a state that is short or not aligned is refused, never written past
  const bytes = native.blake3StateBytes!;
  assert.throws(() => native!.blake3Init!(Buffer.alloc(bytes - 1)), /aligned Uint8Array of blake3StateBytes/);
  assert.throws(() => native!.blake3Init!(Buffer.alloc(bytes + 8).subarray(1)), /aligned/);
  assert.throws(() => native!.blake3Digest!(Buffer.alloc(bytes), Buffer.alloc(31)), /at least 32 bytes/);
  for (const n of [0, 1, 4096, 65_537]) {
    const d = data.subarray(0, n);
    assert.equal(
      xxh64(d, 0x1234_5678_9abc_def0n),
      npmXxh64(d, 0x1234_5678_9abc_def0n),
      `xxh64 of ${n} bytes`,
    );
  }
});

test("the addon's zstd frames read back through node:zlib and the other way round, and misfits are told apart", (t) => {
  if (native === null || !native.zstdAvailable()) {
    assert.notEqual(process.env.CI, "true", "the native addon's zstd is not available");
    t.skip("the native addon or Node's exported zstd is not there; node:zlib does the work");
    return;
  }
  const text = Buffer.from("the quick brown fox jumps over the lazy dog 0123456789\n".repeat(2400)).subarray(
    0,
    128 * 1024,
  );
  const dst = Buffer.alloc(text.length);
  const n = native.zstdCompress(text, dst, 1);
  assert.ok(n > 0 && n < text.length / 10);
  assert.deepEqual(zstdDecompressSync(dst.subarray(0, n)), text);
  const z = zstdCompressSync(text);
  const back = Buffer.alloc(text.length);
  assert.equal(native.zstdDecompress(z, back), text.length);
  assert.deepEqual(back, text);
  // random bytes do not fit in less than their size: -1, not an error
  assert.equal(native.zstdCompress(randomBytes(64 * 1024), Buffer.alloc(60 * 1024), 1), -1);
  assert.throws(
    () => native!.zstdDecompress(Buffer.from("not a zstd frame at all"), back),
    /Unknown frame descriptor/,
  );
  assert.throws(() => native!.zstdDecompress(z, Buffer.alloc(1000)), /too small/);
});

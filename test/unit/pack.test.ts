import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { constants as zc, zstdCompressSync } from "node:zlib";
import {
  BLOCK_SIZE,
  COMPRESSION_NONE,
  COMPRESSION_ZSTD,
  ENTRY_BYTES,
  FRAME_MAX_BLOCKS,
} from "../../src/datastore/format.ts";
import { blockHash, HASH_BYTES, hashParts } from "../../src/datastore/hash.ts";
import {
  looksIncompressible,
  makeFrame,
  openFrame,
  PackBuilder,
  parsePackTrailer,
  readEntry,
} from "../../src/datastore/pack.ts";

const WORDS =
  "the of and to in is was for on that with as by at from his her which or be an are this had not but".split(
    " ",
  );

function text(bytes: number, seed: number): Buffer {
  let s = seed;
  let out = "";
  while (out.length < bytes) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    out += `${WORDS[s % WORDS.length]}${s % 11 === 0 ? ".\n" : " "}`;
  }
  return Buffer.from(out.slice(0, bytes), "latin1");
}

function hashesOf(raw: Buffer): Buffer {
  const n = raw.length / BLOCK_SIZE;
  const out = Buffer.alloc(n * HASH_BYTES);
  for (let s = 0; s < n; s++)
    blockHash(raw.subarray(s * BLOCK_SIZE, (s + 1) * BLOCK_SIZE)).copy(out, s * HASH_BYTES);
  return out;
}

/** Whether zstd -1 saves 1/16 of `raw`: the rule makeFrame applies when it compresses. */
function zstdSaves(raw: Buffer): boolean {
  const z = zstdCompressSync(raw, { params: { [zc.ZSTD_c_compressionLevel]: 1 } });
  return z.length < raw.length - (raw.length >> 4);
}

const FRAME = FRAME_MAX_BLOCKS * BLOCK_SIZE;

/** Frames of every kind the sample must judge: name → raw bytes. */
function frames(): [string, Buffer][] {
  const random = () => randomBytes(FRAME);
  const blocks = (f: (slot: number) => Buffer) =>
    Buffer.concat(Array.from({ length: FRAME_MAX_BLOCKS }, (_, s) => f(s)));
  const zerosWithNoise = (every: number) => {
    const b = Buffer.alloc(FRAME);
    const noise = randomBytes(FRAME);
    for (let i = 0; i < FRAME; i += every) b[i] = noise[i]!;
    return b;
  };
  const tailZeros = (keep: number) =>
    blocks(() => Buffer.concat([randomBytes(keep), Buffer.alloc(BLOCK_SIZE - keep)]));
  const base64 = () => Buffer.from(randomBytes((FRAME * 3) / 4).toString("base64"), "latin1");
  const counter = () => Buffer.from(Array.from({ length: FRAME }, (_, i) => i & 0xff));
  const uniformOver = (values: number) => {
    const out = Buffer.alloc(FRAME);
    for (let n = 0; n < FRAME; )
      for (const v of randomBytes(FRAME)) if (v < values && n < FRAME) out[n++] = v;
    return out;
  };
  const oneRandom = randomBytes(BLOCK_SIZE);
  let previous = oneRandom;
  const twice = (s: number) => {
    if (s % 2 === 0) previous = randomBytes(BLOCK_SIZE);
    return previous;
  };
  return [
    ["text", text(FRAME, 1)],
    ["random", random()],
    ["random, one block", randomBytes(BLOCK_SIZE)],
    ["text, one block", text(BLOCK_SIZE, 2)],
    ["random first block, then text", Buffer.concat([randomBytes(BLOCK_SIZE), text(FRAME - BLOCK_SIZE, 3)])],
    ["text first block, then random", Buffer.concat([text(BLOCK_SIZE, 4), randomBytes(FRAME - BLOCK_SIZE)])],
    [
      "half text, half random blocks",
      blocks((s) => (s % 2 === 0 ? text(BLOCK_SIZE, s) : randomBytes(BLOCK_SIZE))),
    ],
    [
      "3 text blocks in random",
      blocks((s) => (s % 10 === 0 ? text(BLOCK_SIZE, s) : randomBytes(BLOCK_SIZE))),
    ],
    ["zeros with a noise byte every 16", zerosWithNoise(16)],
    ["zeros with a noise byte every 2", zerosWithNoise(2)],
    ["random blocks ending in 1/8 zeros", tailZeros(BLOCK_SIZE - 512)],
    ["random blocks ending in 1/4 zeros", tailZeros(BLOCK_SIZE - 1024)],
    ["one random block repeated", blocks(() => oneRandom)],
    ["random, every block twice", blocks(twice)],
    ["counter bytes 0..255", counter()],
    ["base64 of random bytes", base64()],
    ["bytes uniform over 240 values", uniformOver(240)],
    ["bytes uniform over 128 values", uniformOver(128)],
  ];
}

test("a frame that zstd shrinks by 1/16 is compressed; one judged incompressible is kept raw", () => {
  for (const [name, raw] of frames()) {
    const hashes = hashesOf(raw);
    const f = makeFrame(hashes, raw);
    const saves = zstdSaves(raw);
    if (saves)
      assert.equal(f.compression, COMPRESSION_ZSTD, `${name}: zstd saves 1/16 but the frame was kept raw`);
    else
      assert.equal(
        f.compression,
        COMPRESSION_NONE,
        `${name}: zstd does not save 1/16, yet the frame is compressed`,
      );
    assert.deepEqual(
      openFrame(f.payload, f.compression, f.blocks, name),
      raw,
      `${name}: the frame gives back its blocks`,
    );
  }
});

test("the sample judges random bytes incompressible and text, zeros with noise and mixtures not", () => {
  const cases = new Map(frames());
  const judged = (name: string) => {
    const raw = cases.get(name)!;
    return looksIncompressible(raw, hashesOf(raw));
  };
  for (const name of [
    "random",
    "random, one block",
    "bytes uniform over 240 values",
    "text first block, then random",
  ]) {
    assert.equal(judged(name), true, name);
  }
  for (const name of [
    "text",
    "text, one block",
    "random first block, then text",
    "half text, half random blocks",
    "3 text blocks in random",
    "zeros with a noise byte every 16",
    "zeros with a noise byte every 2",
    "random blocks ending in 1/8 zeros",
    "one random block repeated",
    "random, every block twice",
    "counter bytes 0..255",
    "base64 of random bytes",
    "bytes uniform over 128 values",
  ]) {
    assert.equal(judged(name), false, name);
  }
});

test("random frames are judged incompressible every time (no false alarm in 2,000 frames)", () => {
  for (let i = 0; i < 2000; i++) {
    const raw = randomBytes(FRAME);
    assert.equal(looksIncompressible(raw, hashesOf(raw)), true);
  }
});

test("a pack is named by the BLAKE3 of all its bytes, and its trailer locates every block kept", async () => {
  const b = new PackBuilder();
  const frames = [text(FRAME, 9), randomBytes(3 * BLOCK_SIZE), text(BLOCK_SIZE, 10)].map((raw) =>
    makeFrame(hashesOf(raw), raw),
  );
  b.add(frames[0]!);
  b.add(frames[1]!, [true, false, true]);
  b.add(frames[2]!);
  const { id, parts, entries, size } = await b.finish();
  const bytes = Buffer.concat(parts);
  assert.equal(bytes.length, size);
  assert.equal(id, hashParts([bytes]).toString("hex"));
  assert.deepEqual((await b.finish()).id, id, "finish twice gives the same pack");
  const t = parsePackTrailer(id, bytes, size);
  assert.equal(t.count, FRAME_MAX_BLOCKS + 2 + 1);
  assert.deepEqual(t.entries, entries);
  const slots = [];
  for (let i = 0; i < t.count; i++) {
    const { hash, loc } = readEntry(t.entries, i * ENTRY_BYTES);
    const payload = bytes.subarray(loc.frameOffset, loc.frameOffset + loc.frameLength);
    const raw = openFrame(payload, loc.compression, loc.frameBlocks, "test");
    assert.deepEqual(blockHash(raw.subarray(loc.slot * BLOCK_SIZE, (loc.slot + 1) * BLOCK_SIZE)), hash);
    slots.push(loc.slot);
  }
  assert.deepEqual(slots.slice(FRAME_MAX_BLOCKS), [0, 2, 0], "the block not kept has no entry");
  assert.throws(() => b.add(frames[2]!));
});

test("a pack builder's buffer is reused for the next pack, and grows for a trailer bigger than its room", async () => {
  // many blocks that compress to almost nothing: 1,200 frames of 32 blocks a pack, ~1.8 MB of trailer entries
  const block = Buffer.alloc(BLOCK_SIZE);
  const frames = Array.from({ length: 2400 }, (_, i) => {
    const raw = Buffer.alloc(FRAME);
    for (let s = 0; s < FRAME_MAX_BLOCKS; s++) {
      block.fill(0);
      block.writeUInt32LE(i * FRAME_MAX_BLOCKS + s + 1, 0); // every block distinct, all but 4 bytes zero
      block.copy(raw, s * BLOCK_SIZE);
    }
    return makeFrame(hashesOf(raw), raw);
  });
  for (let round = 0; round < 2; round++) {
    const b = new PackBuilder();
    for (const f of frames.slice(round * 1200, round * 1200 + 1200)) b.add(f);
    const { id, parts, size, release } = await b.finish();
    assert.equal(parts.length, 1);
    const bytes = Buffer.from(parts[0]!); // a copy: the builder's buffer goes back to the pool below
    assert.equal(bytes.length, size);
    assert.equal(id, hashParts([bytes]).toString("hex"));
    const t = parsePackTrailer(id, bytes, size);
    assert.equal(t.count, 1200 * FRAME_MAX_BLOCKS);
    const { hash, loc } = readEntry(t.entries, (t.count - 1) * ENTRY_BYTES);
    const raw = openFrame(
      bytes.subarray(loc.frameOffset, loc.frameOffset + loc.frameLength),
      loc.compression,
      loc.frameBlocks,
      "test",
    );
    assert.deepEqual(blockHash(raw.subarray(loc.slot * BLOCK_SIZE, (loc.slot + 1) * BLOCK_SIZE)), hash);
    release();
  }
});

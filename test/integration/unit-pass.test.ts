// The native passes (unit-pass.ts, the addon's unitChanges and checkFingerprints) against the
// JavaScript ones: from the same agent state and the same changed image, both must find the same
// changed blocks and record the same points; after a restore, both must find the same bad blocks.
import assert from "node:assert/strict";
import { closeSync, cpSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { xxh64 } from "@node-rs/xxhash";
import { Datastore } from "../../src/datastore/datastore.ts";
import { blockLooksRandom, openFrame } from "../../src/datastore/pack.ts";
import { parseItemName } from "../../src/domain/ids.ts";
import { native } from "../../src/platform/native.ts";
import { AgentState, type DiskHashes } from "../../src/replication/agent-state.ts";
import { allBlockHashes, closeBlockHashes, openBlockHashes } from "../../src/replication/block-hashes.ts";
import {
  checkExpected,
  compareRange,
  FINGERPRINT,
  fingerprints,
  MUST_BE_ZERO,
} from "../../src/replication/compare.ts";
import { inspectDisk } from "../../src/replication/disk-source.ts";
import { type Batch, type ScanJob, scanRanges, unpackGroup } from "../../src/replication/scan.ts";
import { changedBlocks, nativeBlockBatches, nativeUnitPass } from "../../src/replication/unit-pass.ts";
import { tempDir } from "../helpers/env.ts";
import { makeImage, randomBuffer, rng, scatter, textBuffer } from "../helpers/images.ts";
import { imagePoint } from "../helpers/points.ts";

const skip = nativeUnitPass() ? false : "the native addon is not built (npm run build:native)";
const item = parseItemName("web1");
const BLOCK = 4096;

test("the addon's XXH64 is @node-rs/xxhash's", { skip }, () => {
  const next = rng(5);
  for (const n of [0, 1, 31, 4096, 65536]) {
    const b = randomBuffer(n + (4 - (n % 4 || 4)), next).subarray(0, n);
    for (const seed of [0n, 7n, 0xfedcba9876543210n]) assert.equal(native!.xxh64(b, seed), xxh64(b, seed));
  }
});

test("native and JavaScript comparing passes find the same changes and record the same points", {
  skip,
}, async () => {
  const { dir, cleanup } = tempDir("sb-unit-pass-");
  try {
    // 24 MiB and 12 KiB: the last unit is partial (its blocks past the end do not exist)
    const size = 24 * 1024 * 1024 + 3 * BLOCK;
    const image = path.join(dir, "disk.img");
    makeImage(image, 24, 3);
    const fd = openSync(image, "r+");
    try {
      writeSync(fd, randomBuffer(3 * BLOCK, rng(4)), 0, 3 * BLOCK, 24 * 1024 * 1024);
    } finally {
      closeSync(fd);
    }
    const ds0 = path.join(dir, "ds");
    const st0 = path.join(dir, "state");
    await (await Datastore.init(ds0)).close();
    const point = (ds: string, state: string, nativePass: boolean) =>
      imagePoint(image, ds, state, nativePass, item);
    const first = await point(ds0, st0, false);
    assert.equal(first.mode, "full");

    // changes: scattered blocks, a whole unit, a block of random data turned to zeros, and a block in
    // the partial last unit
    const changed = new Set(scatter(image, 24 * 1024 * 1024, 60, 8));
    const f = openSync(image, "r+");
    try {
      writeSync(f, randomBuffer(16 * BLOCK, rng(9)), 0, 16 * BLOCK, 64 * 16 * BLOCK);
      for (let b = 64 * 16; b < 65 * 16; b++) changed.add(b);
      writeSync(f, Buffer.alloc(BLOCK), 0, BLOCK, 150 * BLOCK); // in the third 256 KiB stretch: random
      changed.add(150);
      writeSync(f, randomBuffer(BLOCK, rng(10)), 0, BLOCK, size - BLOCK);
      changed.add(size / BLOCK - 1);
    } finally {
      closeSync(f);
    }

    const results = [];
    for (const nativePass of [true, false]) {
      const ds = path.join(dir, `ds-${nativePass}`);
      const st = path.join(dir, `state-${nativePass}`);
      cpSync(ds0, ds, { recursive: true });
      cpSync(st0, st, { recursive: true });
      const r = await point(ds, st, nativePass);
      assert.equal(r.mode, "incremental");
      const d = await Datastore.open(ds);
      const m = await d.readPoint(item, r.pointId);
      await d.close();
      const state = AgentState.load(path.join(st))!;
      results.push({ r, m, blocks: state.readBlockHashes(0) });
    }
    const [n, j] = results;
    assert.equal(n!.r.changedBlocks, j!.r.changedBlocks);
    assert.deepEqual(
      [...n!.m.disks[0]!.blocks],
      [...j!.m.disks[0]!.blocks],
      "the same blocks in both points",
    );
    assert.ok(n!.m.disks[0]!.hashes.equals(j!.m.disks[0]!.hashes), "with the same hashes");
    assert.deepEqual(n!.blocks, j!.blocks, "and the same block hashes in the agent state");
    for (const b of changed) assert.ok(n!.m.disks[0]!.blocks.includes(b), `block ${b} is in the point`);
    // the native pass read the disk whole once, then the changed blocks again
    assert.equal(n!.r.bytesRead, size + n!.r.changedBlocks * BLOCK);

    // nothing changed since: both passes find nothing
    for (const nativePass of [true, false]) {
      const r = await point(
        path.join(dir, `ds-${nativePass}`),
        path.join(dir, `state-${nativePass}`),
        nativePass,
      );
      assert.equal(r.changedBlocks, 0, `nothing changed (${nativePass ? "native" : "JavaScript"})`);
    }
  } finally {
    cleanup();
  }
});

test("a disk shorter than its state says is refused by name, and nothing is left running", {
  skip,
}, async () => {
  const { dir, cleanup } = tempDir("sb-unit-pass-");
  try {
    const image = path.join(dir, "disk.img");
    makeImage(image, 8, 1);
    const info = inspectDisk(image);
    const hashes = (bytes: number) => ({
      blocks: openBlockHashes(dir, bytes / BLOCK, null),
      unit: new BigUint64Array(bytes / 65536),
      loaded: null,
    });
    const all = await changedBlocks(info, [[0, 128]], 7n, hashes(info.sizeBytes), 2, () => {});
    assert.equal(all.length > 0, true, "every block differs when there are no hashes");
    // the image shrinks behind the pass's back: the read comes up short
    const shorter = { ...info, sizeBytes: info.sizeBytes * 2 };
    await assert.rejects(
      changedBlocks(shorter, [[0, 256]], 7n, hashes(shorter.sizeBytes), 2, () => {}),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, "DISK_SHRUNK");
        assert.match(err.message, /disk\.img ended at byte/);
        return true;
      },
    );
  } finally {
    cleanup();
  }
});

test("the check after a restore finds the same bad blocks natively as in JavaScript", { skip }, async () => {
  const { dir, cleanup } = tempDir("sb-check-");
  try {
    const image = path.join(dir, "target.img");
    makeImage(image, 8, 6);
    // the point's disk ends 1 KiB into the last block the target has: the rest must read as zeros
    const pointBytes = 8 * 1024 * 1024 - 3 * 1024;
    const blocks = Math.ceil(pointBytes / BLOCK);
    const seed = 0x1234n;
    const expect = fingerprints(blocks, seed);
    const content = readFileSync(image);
    for (let b = 0; b < blocks; b++) {
      const block = Buffer.alloc(BLOCK);
      content.copy(block, 0, b * BLOCK, Math.min((b + 1) * BLOCK, pointBytes));
      if (b % 7 === 3) continue; // skipped
      if (block.every((x) => x === 0)) expect.kind[b] = MUST_BE_ZERO;
      else {
        expect.kind[b] = FINGERPRINT;
        expect.fp[b] = xxh64(block, seed);
      }
    }
    // damage: a fingerprinted block, a block that must be zero, a skipped one (not reported) and the
    // part of the last block past the point's end (not the disk's: not reported)
    const fd = openSync(image, "r+");
    try {
      const fpBlock = expect.kind.indexOf(FINGERPRINT, 100);
      const zeroBlock = expect.kind.indexOf(MUST_BE_ZERO, 100);
      writeSync(fd, Buffer.from("damage"), 0, 6, fpBlock * BLOCK + 100);
      writeSync(fd, Buffer.from("damage"), 0, 6, zeroBlock * BLOCK + 4000);
      writeSync(fd, Buffer.from("damage"), 0, 6, 3 * BLOCK + 5);
      writeSync(fd, Buffer.from("damage"), 0, 6, pointBytes + 10);
      const info = inspectDisk(image);
      const none = { refs: new Uint32Array(0), arena: new Uint8Array(0) };
      const js = compareRange({
        info,
        sizeBytes: pointBytes,
        from: 0,
        to: blocks,
        first: 0,
        ...none,
        expect,
      });
      const nat = await checkExpected(info, pointBytes, expect);
      assert.deepEqual([...js], [Math.min(fpBlock, zeroBlock), Math.max(fpBlock, zeroBlock)]);
      assert.deepEqual(nat, js);
    } finally {
      closeSync(fd);
    }
  } finally {
    cleanup();
  }
});

test("a journal's pass in the addon makes the batches scanRanges makes", { skip }, async () => {
  const { dir, cleanup } = tempDir("sb-block-pass-");
  try {
    const image = path.join(dir, "disk.img");
    makeImage(image, 12, 7); // zeros, text and random stretches: zero, compressible and raw frames
    const info = inspectDisk(image);
    const blocks = info.sizeBytes / BLOCK;
    const units = Math.ceil(blocks / 16);
    const seed = 99n;
    // the previous hashes (a hash file's block section): right for every third block, so those are
    // no candidates
    const content = readFileSync(image);
    const prev = new BigUint64Array(blocks);
    for (let b = 0; b < blocks; b += 3) prev[b] = xxh64(content.subarray(b * BLOCK, (b + 1) * BLOCK), seed);
    const prevFile = path.join(dir, "prev.hashes");
    writeFileSync(prevFile, Buffer.concat([Buffer.alloc(16), Buffer.from(prev.buffer)]));
    const prevFd = openSync(prevFile, "r");
    const ranges: [number, number][] = [
      [0, 700],
      [900, 901],
      [1000, 2600], // more than one call, and more than one frame of every kind
      [blocks - 5, blocks],
    ];
    const job = (h: DiskHashes): ScanJob => ({
      disk: 0,
      info,
      seed,
      ranges,
      blocks: true,
      hashes: h.blocks,
      compare: true,
      prevUnit: null,
      nextUnit: h.unit,
    });
    const fresh = (): DiskHashes => ({
      blocks: openBlockHashes(dir, blocks, { fd: prevFd, at: 16 }),
      unit: new BigUint64Array(new SharedArrayBuffer(units * 8)).fill(7n),
      loaded: null,
    });
    const a = fresh();
    const js: Batch[] = [];
    scanRanges(job(a), (g) => js.push(...unpackGroup(g)));
    const b = fresh();
    const nat: Batch[] = [];
    for await (const x of nativeBlockBatches(job(b), 2)) nat.push(x);
    // the same entries, hashes and data, whatever the batch boundaries
    const flat = (bs: Batch[]) => ({
      blocks: bs.flatMap((x) => [...x.blocks]),
      hashes: Buffer.concat(bs.map((x) => x.hashes)),
      data: Buffer.concat(
        bs
          .filter((x) => x.dataBlocks > 0)
          .map((x) => openFrame(x.payload, x.compression, x.dataBlocks, "test")),
      ),
      read: bs.reduce((s, x) => s + x.bytesRead, 0),
    });
    const fj = flat(js);
    const fn = flat(nat);
    assert.ok(fj.blocks.length > 1500, `${fj.blocks.length} candidates`);
    assert.deepEqual(fn.blocks, fj.blocks);
    assert.ok(fn.hashes.equals(fj.hashes), "the same BLAKE3 (and zeros) per entry");
    assert.ok(fn.data.equals(fj.data), "the same data in the frames");
    assert.equal(fn.read, fj.read);
    const recorded = allBlockHashes(a.blocks);
    assert.deepEqual(allBlockHashes(b.blocks), recorded, "the same hashes recorded");
    for (const [from, to] of ranges)
      for (let k = from; k < to; k++)
        assert.equal(recorded[k], xxh64(content.subarray(k * BLOCK, (k + 1) * BLOCK), seed), `block ${k}`);
    assert.equal(recorded[701], prev[701], "a block no range has keeps the last point's hash");
    assert.deepEqual(b.unit, a.unit, "the same units marked unknown");
    assert.ok(
      nat.some((x) => x.compression === 1) && nat.some((x) => x.dataBlocks > 0 && x.compression === 0),
    );
    closeBlockHashes(a.blocks);
    closeBlockHashes(b.blocks);
    closeSync(prevFd);
  } finally {
    cleanup();
  }
});

test("the addon's journal pass judges each block by makeFrame's sample, as the JavaScript one does", {
  skip: nativeUnitPass() && native!.blockPassRandom === true ? false : "the native addon is not built",
}, async () => {
  const { dir, cleanup } = tempDir("sb-block-random-");
  try {
    // blocks on both sides of the sample's bounds: random, text, bytes uniform over 100 to 255 values
    // (140 and 185 distinct sampled values are where it turns), random with a zero tail or a run
    const next = rng(11);
    const blocks: Buffer[] = [];
    for (let v = 100; v <= 256; v += 4) {
      for (let k = 0; k < 4; k++) {
        const b = randomBuffer(BLOCK, next);
        for (let i = 0; i < BLOCK; i++) b[i] = b[i]! % v;
        blocks.push(b);
      }
    }
    for (let k = 0; k < 40; k++) blocks.push(randomBuffer(BLOCK, next), textBuffer(BLOCK, next));
    for (const tail of [64, 256, 512, 600]) {
      const b = randomBuffer(BLOCK, next);
      b.fill(0, BLOCK - tail);
      blocks.push(b);
      const r = randomBuffer(BLOCK, next);
      r.fill(7, 1000, 1000 + tail);
      blocks.push(r);
    }
    const image = path.join(dir, "disk.img");
    writeFileSync(image, Buffer.concat(blocks));
    const info = inspectDisk(image);
    const n = blocks.length;
    const hashes = openBlockHashes(dir, n, null);
    const out = {
      entries: new Float64Array(n),
      zero: new Uint8Array(n),
      data: Buffer.alloc(n * BLOCK),
      b3: Buffer.alloc(n * 32),
      random: new Uint8Array(n).fill(9),
    };
    const fd = openSync(image, "r");
    try {
      const r = await native!.blockPass(
        fd,
        0,
        info.sizeBytes,
        info.sectorSize,
        false,
        0,
        n,
        5n,
        Float64Array.of(0, n),
        false,
        new BigUint64Array(Math.ceil(n / 16)),
        hashes.prevFd,
        hashes.prevAt,
        hashes.nextFd,
        hashes.written,
        out.entries,
        out.zero,
        out.data,
        out.b3,
        out.random,
      );
      assert.equal(r.dataBlocks, n);
      let random = 0;
      for (let i = 0; i < n; i++) {
        const js = blockLooksRandom(out.data, i * BLOCK, out.b3[i * 32]!);
        assert.equal(out.random[i], js ? 1 : 0, `block ${i}`);
        random += out.random[i]!;
      }
      assert.ok(
        random > 40 && random < n - 60,
        `${random} of ${n} blocks look random: both kinds are tested`,
      );
    } finally {
      closeSync(fd);
      closeBlockHashes(hashes);
    }
  } finally {
    cleanup();
  }
});

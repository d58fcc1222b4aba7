import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { xxh64 } from "@node-rs/xxhash";
import { BLOCK_SIZE, FRAME_MAX_BLOCKS } from "../../src/datastore/format.ts";
import { blockHash, HASH_BYTES, ZERO_HASH } from "../../src/datastore/hash.ts";
import { openFrame } from "../../src/datastore/pack.ts";
import {
  allBlockHashes,
  type BlockHashes,
  closeBlockHashes,
  openBlockHashes,
} from "../../src/replication/block-hashes.ts";
import { inspectDisk } from "../../src/replication/disk-source.ts";
import {
  type Batch,
  blockCount,
  type ScanJob,
  scanRanges,
  UNIT_BLOCKS,
  UNIT_BYTES,
  UNIT_UNKNOWN,
  unitCount,
  unpackGroup,
} from "../../src/replication/scan.ts";
import { scan } from "../../src/replication/scanner.ts";

const dir = mkdtempSync(path.join(tmpdir(), "switchback-scan-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Block i's content: zeros, text, random or a copy of an earlier block, by a fixed pattern. */
function content(i: number, copies: Map<number, Buffer>): Buffer | null {
  const kind = Math.floor(i / 37) % 4;
  if (kind === 0) return null;
  if (kind === 1) return Buffer.from(`block ${i} `.repeat(BLOCK_SIZE).slice(0, BLOCK_SIZE), "latin1");
  if (kind === 2 || i % 5 !== 0) {
    const b = randomBytes(BLOCK_SIZE);
    copies.set(i, b);
    return b;
  }
  return copies.get(i - 1) ?? Buffer.alloc(BLOCK_SIZE, 1); // a duplicate of the block before
}

/** Writes an image of `bytes` (the last block may be short); returns every block's content (null: zeros). */
function writeImage(file: string, bytes: number, dataBlocks = blockCount(bytes)): (Buffer | null)[] {
  const copies = new Map<number, Buffer>();
  const blocks: (Buffer | null)[] = [];
  const fd = openSync(file, "w");
  try {
    for (let i = 0; i < blockCount(bytes); i++) {
      const c = i < dataBlocks ? content(i, copies) : null;
      const len = Math.min(BLOCK_SIZE, bytes - i * BLOCK_SIZE);
      const b = c === null ? null : Buffer.concat([c.subarray(0, len), Buffer.alloc(BLOCK_SIZE - len)]);
      blocks.push(b);
      if (b !== null) writeSync(fd, b, 0, len, i * BLOCK_SIZE);
    }
    if (blocks[blocks.length - 1] === null) writeSync(fd, Buffer.alloc(1), 0, 1, bytes - 1);
  } finally {
    closeSync(fd);
  }
  return blocks;
}

const opened: BlockHashes[] = [];
after(() => {
  for (const h of opened) closeBlockHashes(h);
});

/**
 * A pass over the whole of `file`: after `prev`, it compares with the hashes `prev` computed and
 * updates them in place, as replicate does within a point.
 */
function job(file: string, prev: ScanJob | null): ScanJob {
  const info = inspectDisk(file);
  const fresh = (): BlockHashes => {
    const h = openBlockHashes(dir, blockCount(info.sizeBytes), null);
    opened.push(h);
    return h;
  };
  return {
    disk: 0,
    info,
    seed: 42n,
    ranges: [[0, unitCount(info.sizeBytes)]],
    hashes: prev?.hashes ?? fresh(),
    compare: prev !== null,
    prevUnit: prev?.nextUnit ?? null,
    nextUnit: prev?.nextUnit ?? new BigUint64Array(unitCount(info.sizeBytes)),
  };
}

/** Every block hash `j` holds. */
function blockHashes(j: ScanJob): BigUint64Array {
  return allBlockHashes(j.hashes);
}

function scanAll(j: ScanJob): Batch[] {
  const out: Batch[] = [];
  scanRanges(j, (g) => out.push(...unpackGroup(g)));
  return out;
}

/** Checks that the batches list exactly `expected` blocks, with their hashes and frames, and read `bytes`. */
function checkBatches(batches: Batch[], blocks: (Buffer | null)[], expected: number[], bytes: number): void {
  const listed: number[] = [];
  let read = 0;
  for (const b of batches) {
    read += b.bytesRead;
    assert.ok(b.dataBlocks <= FRAME_MAX_BLOCKS);
    const data: Buffer[] = [];
    for (let i = 0; i < b.blocks.length; i++) {
      const n = b.blocks[i]!;
      listed.push(n);
      const c = blocks[n]!;
      const h = b.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
      if (c === null) assert.deepEqual(h, ZERO_HASH, `block ${n} is zeros`);
      else {
        assert.deepEqual(h, blockHash(c), `block ${n}'s hash`);
        assert.deepEqual(b.dataHashes.subarray(data.length * HASH_BYTES, (data.length + 1) * HASH_BYTES), h);
        data.push(c);
      }
    }
    assert.equal(b.dataBlocks, data.length);
    if (data.length > 0) {
      // equals, not deepEqual: a diff of two 128 KiB buffers takes minutes to print
      const frame = openFrame(b.payload, b.compression, b.dataBlocks, "test");
      assert.ok(
        frame.equals(Buffer.concat(data)),
        `the frame of the batch from block ${b.blocks[0]} holds its blocks`,
      );
    } else assert.equal(b.payload.length, 0);
  }
  assert.equal(listed.length, expected.length, "as many blocks listed as expected");
  assert.ok(
    listed.every((n, i) => n === expected[i]),
    "the blocks listed are the ones expected, ascending",
  );
  assert.equal(read, bytes);
}

test("a full pass lists every block with its hash, its data in frames, and reads the disk once", () => {
  const file = path.join(dir, "full.img");
  const bytes = 9 * 1024 * 1024 + 3 * BLOCK_SIZE + 512; // the last block is short
  const blocks = writeImage(file, bytes);
  const j = job(file, null);
  const batches = scanAll(j);
  checkBatches(
    batches,
    blocks,
    blocks.map((_, i) => i),
    bytes,
  );
  assert.ok(
    batches.some((b) => b.compression === 1) && batches.some((b) => b.compression === 0 && b.dataBlocks > 0),
  ); // the agent state: keyed xxh64 of every 64 KiB unit and 4 KiB block, the disk's tail read as zeros
  const disk = Buffer.concat([readFileSync(file), Buffer.alloc(unitCount(bytes) * UNIT_BYTES - bytes)]);
  for (let u = 0; u < unitCount(bytes); u++) {
    assert.equal(
      j.nextUnit[u],
      xxh64(disk.subarray(u * UNIT_BYTES, (u + 1) * UNIT_BYTES), j.seed),
      `unit ${u}`,
    );
  }
  const hashes = blockHashes(j);
  for (let b = 0; b < blockCount(bytes); b++) {
    assert.equal(hashes[b], xxh64(disk.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE), j.seed), `block ${b}`);
  }
  assert.ok(
    blocks.slice(0, UNIT_BLOCKS).every((c) => c === null),
    "the image begins with a zero unit",
  );
});

test("an incremental pass lists exactly the blocks that changed", () => {
  const file = path.join(dir, "incr.img");
  const bytes = 6 * 1024 * 1024;
  const blocks = writeImage(file, bytes);
  const first = job(file, null);
  scanAll(first);
  // new content for some blocks: zeros to data, text to zeros, data to other data, the last block
  const changes = new Map<number, Buffer | null>(
    [0, 1, 17, 300, 301, 302, 1000, blocks.length - 1].map((n) => [n, randomBytes(BLOCK_SIZE)]),
  );
  changes.set(37, null);
  const fd = openSync(file, "r+");
  for (const [n, c] of changes) {
    writeSync(fd, c ?? Buffer.alloc(BLOCK_SIZE), 0, BLOCK_SIZE, n * BLOCK_SIZE);
    blocks[n] = c;
  }
  closeSync(fd);
  const second = job(file, first);
  checkBatches(
    scanAll(second),
    blocks,
    [...changes.keys()].sort((a, b) => a - b),
    bytes,
  );
});

test("worker threads list the same blocks, hashes and data as one thread", async () => {
  const file = path.join(dir, "big.img");
  const bytes = 160 * 1024 * 1024; // past the size below which the scanner stays on this thread
  const blocks = writeImage(file, bytes, 4096);
  const threaded: Batch[] = [];
  for await (const b of scan([job(file, null)], 2)) threaded.push(b);
  // shards end batches at other places than one thread does: compare what the batches hold
  threaded.sort((a, b) => (a.blocks[0] ?? -1) - (b.blocks[0] ?? -1));
  checkBatches(
    threaded,
    blocks,
    blocks.map((_, i) => i),
    bytes,
  );
});

test("a journal's pass reads only the blocks it is given, and the next hashing pass still sees every change", () => {
  const file = path.join(dir, "journal.img");
  const bytes = 4 * 1024 * 1024;
  const blocks = writeImage(file, bytes);
  const first = job(file, null);
  scanAll(first);
  const write = (n: number, c: Buffer | null): void => {
    const fd = openSync(file, "r+");
    writeSync(fd, c ?? Buffer.alloc(BLOCK_SIZE), 0, BLOCK_SIZE, n * BLOCK_SIZE);
    closeSync(fd);
    blocks[n] = c;
  };
  // written since the last point: 5, 6 (same content as before), 40, 700; the journal gives 5-8 and 40, 700
  write(5, randomBytes(BLOCK_SIZE));
  write(6, blocks[6] === null ? null : Buffer.from(blocks[6]!));
  const was40 = blocks[40] ?? null;
  write(40, randomBytes(BLOCK_SIZE));
  write(700, null);
  const journaled: ScanJob = {
    ...job(file, first),
    ranges: [
      [5, 9],
      [40, 41],
      [700, 701],
    ],
    blocks: true,
  };
  checkBatches(scanAll(journaled), blocks, [5, 40, 700], 6 * BLOCK_SIZE);
  for (const u of [0, 2, 43])
    assert.equal(first.nextUnit[u], UNIT_UNKNOWN, `unit ${u} was read block by block`);
  assert.equal(blockHashes(first)[40], xxh64(blocks[40]!, 42n));

  // writes the journal never told of (e.g. after it was lost): the next hashing pass finds them, and
  // nothing else. Block 40 goes back to what it held at the first pass, so its unit's content hash is
  // the one that pass stored: only UNIT_UNKNOWN keeps that unit from being skipped
  write(1001, randomBytes(BLOCK_SIZE));
  write(40, was40);
  const hashing = job(file, first);
  checkBatches(scanAll(hashing), blocks, [40, 1001], bytes);
  const disk = readFileSync(file);
  for (const u of [0, 2, 43, 62]) {
    assert.equal(
      first.nextUnit[u],
      xxh64(disk.subarray(u * UNIT_BYTES, (u + 1) * UNIT_BYTES), 42n),
      `unit ${u}`,
    );
  }
});

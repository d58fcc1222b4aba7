// The block index as a datastore uses it: loaded from index files (kept as read, tables built in bulk),
// then grown by writeIndexFile (addRecords) and a writer's pending blocks (add), against a plain Map.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import fc from "fast-check";
import {
  BlockIndex,
  decodeIndexFile,
  encodeIndexFile,
  NO_LOCATION,
} from "../../src/datastore/block-index.ts";
import { ENTRY_BYTES } from "../../src/datastore/format.ts";
import { type BlockLocation, writeEntry } from "../../src/datastore/pack.ts";
import { SwitchbackError } from "../../src/domain/errors.ts";
import { native } from "../../src/platform/native.ts";

function loc(packId: string, n: number): BlockLocation {
  return {
    packId,
    frameOffset: 8 + n * 1000,
    frameLength: 100 + (n % 977),
    slot: n % 32,
    frameBlocks: 32,
    compression: (n % 2) as 0 | 1,
  };
}

function records(hashes: readonly Buffer[], first: number): Buffer {
  const out = Buffer.alloc(hashes.length * ENTRY_BYTES);
  hashes.forEach((h, i) => {
    writeEntry(out, i * ENTRY_BYTES, h, 0, loc("", first + i));
  });
  return out;
}

function indexFile(sections: { packId: string; entries: Buffer }[]): { name: string; buf: Buffer } {
  const { id, parts } = encodeIndexFile(sections);
  return { name: `${id}.idx`, buf: Buffer.concat(parts) };
}

const pack = (n: number) => n.toString(16).padStart(64, "0");

/** Hashes that often share their first 4 bytes (so full keys must be compared) and sometimes repeat. */
function hashPool(n: number): Buffer[] {
  const pool: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const h = randomBytes(32);
    if (i % 3 === 1) pool[i - 1]!.copy(h, 0, 0, 4);
    pool.push(h);
  }
  return pool;
}

function assertSame(idx: BlockIndex, model: Map<string, BlockLocation>, pool: readonly Buffer[]): void {
  assert.equal(idx.size, model.size);
  for (const h of pool) {
    const want = model.get(h.toString("hex"));
    assert.equal(idx.has(h), want !== undefined);
    assert.deepEqual(idx.get(h), want);
  }
  const seen = new Map<string, BlockLocation>();
  idx.forEach((h, l) => {
    const k = h.toString("hex");
    assert.equal(seen.has(k), false, `forEach visits ${k} twice`);
    seen.set(k, l);
  });
  assert.deepEqual(seen, model);
}

test("an index loaded from files, then added to (records, whole index files, blocks one by one), answers as a map that keeps each block's first location", () => {
  const section = fc.record({
    pack: fc.nat(5),
    blocks: fc.array(fc.nat(199), { maxLength: 40 }),
  });
  fc.assert(
    fc.property(
      fc.array(fc.array(section, { maxLength: 4 }), { maxLength: 4 }),
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant("records" as const), s: section }),
          fc.record({ kind: fc.constant("file" as const), f: fc.array(section, { maxLength: 4 }) }),
          fc.record({ kind: fc.constant("add" as const), block: fc.nat(199), pack: fc.nat(5) }),
        ),
        { maxLength: 30 },
      ),
      (files, later) => {
        const pool = hashPool(200);
        const model = new Map<string, BlockLocation>();
        let n = 0;
        const entries = (s: { pack: number; blocks: number[] }) => {
          const e = records(
            s.blocks.map((b) => pool[b]!),
            n,
          );
          s.blocks.forEach((b, i) => {
            const k = pool[b]!.toString("hex");
            if (!model.has(k)) model.set(k, loc(pack(s.pack), n + i));
          });
          n += s.blocks.length;
          return { packId: pack(s.pack), entries: e };
        };
        const idx = BlockIndex.fromIndexFiles(files.map((f) => indexFile(f.map(entries))));
        assertSame(idx, model, pool);
        for (const op of later) {
          if (op.kind === "records") {
            const { packId, entries: e } = entries(op.s);
            idx.addRecords(packId, e);
          } else if (op.kind === "file") {
            const { name, buf } = indexFile(op.f.map(entries));
            idx.addIndexFile(name, buf);
          } else {
            const k = pool[op.block]!.toString("hex");
            const l = loc(`p${op.pack}`, n++);
            assert.equal(idx.add(pool[op.block]!, 0, l), !model.has(k));
            if (!model.has(k)) model.set(k, l);
          }
        }
        assertSame(idx, model, pool);
      },
    ),
    { numRuns: 200 },
  );
});

test("many blocks added one by one to a loaded index (its tables rebuilt on the way) are all found", () => {
  const pool = hashPool(3000);
  const file = indexFile([{ packId: pack(1), entries: records(pool, 0) }]);
  const idx = BlockIndex.fromIndexFiles([file]);
  const added = randomBytes(32 * 200_000);
  for (let i = 0; i < 200_000; i++) assert.equal(idx.add(added, i * 32, loc(`p${i % 3}`, i)), true);
  // a block already indexed is not added again, nor one added before
  assert.equal(idx.add(pool[7]!, 0, NO_LOCATION), false);
  assert.equal(idx.add(added, 5 * 32, NO_LOCATION), false);
  assert.equal(idx.size, 203_000);
  for (let i = 0; i < 200_000; i += 101) assert.deepEqual(idx.get(added, i * 32), loc(`p${i % 3}`, i));
  for (let i = 0; i < 3000; i += 7) assert.deepEqual(idx.get(pool[i]!), loc(pack(1), i));
  let visited = 0;
  idx.forEach(() => {
    visited++;
  });
  assert.equal(visited, 203_000);
  const others = randomBytes(32 * 1000);
  for (let i = 0; i < 1000; i++) assert.equal(idx.has(others, i * 32), false);
});

test("many sections added to a loaded index (its tables rebuilt on the way) are each counted once", () => {
  const pool = hashPool(1000);
  const idx = BlockIndex.fromIndexFiles([indexFile([{ packId: pack(1), entries: records(pool, 0) }])]);
  const added: Buffer[] = [];
  for (let s = 0; s < 100; s++) {
    const hashes: Buffer[] = Array.from({ length: 2000 }, () => randomBytes(32));
    // each section repeats a block of the loaded file and one of the section before
    hashes[0] = pool[s]!;
    if (s > 0) hashes[1] = added[added.length - 1]!;
    idx.addRecords(pack(100 + s), records(hashes, 0));
    added.push(...hashes.slice(s > 0 ? 2 : 1));
  }
  assert.equal(idx.size, 1000 + added.length);
  let visited = 0;
  idx.forEach(() => {
    visited++;
  });
  assert.equal(visited, idx.size);
  for (let i = 0; i < 1000; i += 9) assert.equal(idx.get(pool[i]!)?.packId, pack(1));
  for (let i = 0; i < added.length; i += 97) assert.equal(idx.has(added[i]!), true);
});

test("a full copy's index file added at once to a loaded index: each block counted once, the first location kept", () => {
  const pool = hashPool(1000);
  const idx = BlockIndex.fromIndexFiles([indexFile([{ packId: pack(1), entries: records(pool, 0) }])]);
  idx.add(pool[999]!, 0, loc("pending", 0)); // already indexed: not added
  const extra = randomBytes(32);
  idx.add(extra, 0, loc("p", 7));
  const fresh: Buffer[] = Array.from({ length: 80_000 }, () => randomBytes(32));
  const sections = [];
  for (let s = 0; s < 40; s++) {
    const hashes = fresh.slice(s * 2000, (s + 1) * 2000);
    sections.push({ packId: pack(100 + s), entries: records([pool[s]!, extra, ...hashes, hashes[0]!], 0) });
  }
  idx.addSections(sections);
  assert.equal(idx.size, 1000 + 1 + fresh.length);
  let visited = 0;
  idx.forEach(() => {
    visited++;
  });
  assert.equal(visited, idx.size);
  assert.deepEqual(idx.get(pool[3]!), loc(pack(1), 3));
  assert.deepEqual(idx.get(extra), loc("p", 7));
  for (let i = 0; i < fresh.length; i += 89)
    assert.equal(idx.get(fresh[i]!)?.packId, pack(100 + Math.floor(i / 2000)));
});

test("a record with an unknown compression is refused with its pack and byte, and nothing of it is indexed", () => {
  const pool = hashPool(4);
  const bad = records(pool, 0);
  bad[2 * ENTRY_BYTES + 44] = 7;
  const message = `pack ${pack(9)}: entry at byte ${2 * ENTRY_BYTES} has unknown compression 7`;
  const refused = (err: unknown) =>
    err instanceof SwitchbackError && err.code === "DATASTORE_CORRUPT" && err.message.includes(message);

  assert.throws(() => BlockIndex.fromIndexFiles([indexFile([{ packId: pack(9), entries: bad }])]), refused);

  const idx = BlockIndex.fromIndexFiles([]);
  assert.throws(() => idx.addRecords(pack(9), bad), refused);
  assert.equal(idx.size, 0);
  assert.equal(idx.has(pool[0]!), false);
});

test("records given to addRecords are copied: the caller may reuse its buffer", () => {
  const pool = hashPool(2);
  const e = records(pool, 0);
  const idx = new BlockIndex();
  idx.addRecords(pack(1), e);
  e.fill(0);
  assert.deepEqual(idx.get(pool[1]!), loc(pack(1), 1));
});

test("a damaged index file is refused with the messages it always had", () => {
  const f = indexFile([{ packId: pack(1), entries: records(hashPool(3), 0) }]);
  assert.throws(
    () => BlockIndex.fromIndexFiles([{ name: "x.idx", buf: f.buf.subarray(0, f.buf.length - 1) }]),
    /index file x\.idx: section for pack 0+1 is truncated/,
  );
  assert.throws(
    () => BlockIndex.fromIndexFiles([{ name: "y.idx", buf: Buffer.from("not an index") }]),
    /index file y\.idx: not an index file \(bad magic\)/,
  );
  assert.deepEqual(decodeIndexFile(f.name, f.buf)[0]!.packId, pack(1));
});

test("an index whose table is built on the thread pool (load) finds what one built here finds", {
  skip: typeof native?.bucketTable === "function" ? false : "the native addon is not built",
}, async () => {
  for (const n of [0, 1, 9, 5000, 70_000]) {
    const pool = hashPool(n);
    // three files, blocks repeated within and across them (the first copy is the one found)
    const files = [0, 1, 2].map((f) =>
      indexFile([
        { packId: pack(10 * f + 1), entries: records(pool.slice(0, Math.ceil(n / 2)), f * n) },
        {
          packId: pack(10 * f + 2),
          entries: records(
            pool.filter((_, i) => i % (f + 2) === 0),
            f * n + 7,
          ),
        },
      ]),
    );
    const here = BlockIndex.fromIndexFiles(files);
    const there = await BlockIndex.load(files);
    assert.equal(there.size, here.size, `${n}: size`);
    assert.equal(there.records, here.records, `${n}: records`);
    for (const h of [...pool, ...hashPool(50)])
      assert.deepEqual(there.get(h), here.get(h), `${n}: a block's location`);
    // it grows as the other does
    const more = hashPool(100);
    there.addRecords(pack(99), records(more, 0));
    for (const h of more) assert.deepEqual(there.get(h)?.packId, pack(99));
  }
  const pool = hashPool(4);
  const bad = records(pool, 0);
  bad[2 * ENTRY_BYTES + 44] = 7;
  await assert.rejects(
    BlockIndex.load([
      indexFile([
        { packId: pack(1), entries: records(hashPool(3), 0) },
        { packId: pack(9), entries: bad },
      ]),
    ]),
    (err: unknown) =>
      err instanceof SwitchbackError &&
      err.message.includes(`pack ${pack(9)}: entry at byte ${2 * ENTRY_BYTES} has unknown compression 7`),
  );
});

// gc against a model of what it must keep, on real datastores built by random scripts: blocks stored
// more than once (in several packs), packs that no index file names (a writer killed between its packs
// and its index), index files that name the same pack twice, points that come and go, gc run in the
// middle and at the end. Afterwards every block of every point reads back as it was written, `check
// --read-data` finds nothing wrong, no pack is left that holds no live block, and a second gc has
// nothing to do.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { after, test } from "node:test";
import fc from "fast-check";
import { decodeIndexFile } from "../../src/datastore/block-index.ts";
import { checkDatastore } from "../../src/datastore/check.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { BLOCK_SIZE, ENTRY_BYTES, paths } from "../../src/datastore/format.ts";
import { collectGarbage, type GcResult, REPACK_BELOW } from "../../src/datastore/gc.ts";
import { blockHash, HASH_BYTES, ZERO_HASH } from "../../src/datastore/hash.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { type ItemName, newPointId, type PointId } from "../../src/domain/ids.ts";
import { tempDir } from "../helpers/env.ts";
import { commitEntries } from "../helpers/points.ts";

const { dir: root, cleanup } = tempDir("sb-gc-model-");
after(cleanup);

const POOL = 160;
const pool = Array.from({ length: POOL }, () => randomBytes(BLOCK_SIZE));
const hashes = pool.map((b) => blockHash(b));
const byHash = new Map(hashes.map((h, i) => [h.toString("hex"), i]));

type Op =
  | { kind: "write"; blocks: number[]; dropIndex: boolean }
  | { kind: "copyIndex" }
  | { kind: "point"; blocks: number[]; zeros: number; all: boolean }
  | { kind: "drop"; which: number }
  | { kind: "gc" };

const blockSet = fc.uniqueArray(fc.nat(POOL - 1), { minLength: 1, maxLength: 70 });
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("write" as const), blocks: blockSet, dropIndex: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("copyIndex" as const) }) },
  {
    weight: 3,
    // all: every block stored so far (packs full of live blocks, and their copies, are the hard case)
    arbitrary: fc.record({
      kind: fc.constant("point" as const),
      blocks: blockSet,
      zeros: fc.nat(3),
      all: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("drop" as const), which: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("gc" as const) }) },
);

let runs = 0;

async function script(ops: Op[]): Promise<void> {
  const dir = path.join(root, `ds-${runs++}`);
  const ds = await Datastore.init(dir);
  const item = "web1" as ItemName;
  /** blocks in some pack (indexed or not), by pool number */
  const stored = new Set<number>();
  const points = new Map<PointId, number[]>();
  let clock = Date.parse("2026-11-27T00:00:00Z");
  const live = () => new Set([...points.values()].flat());

  const gc = async (): Promise<GcResult> => {
    const r = await collectGarbage(ds);
    assert.equal(r.liveBlocks, live().size, "liveBlocks: the distinct blocks the points name");
    return r;
  };

  for (const o of ops) {
    if (o.kind === "write") {
      // copy: blocks already stored are written again, into another pack
      const w = ds.writer({ copy: true });
      const before = new Set(await ds.backend.list("index"));
      for (let i = 0; i < o.blocks.length; i += 32) {
        const part = o.blocks.slice(i, i + 32);
        await w.add(
          makeFrame(Buffer.concat(part.map((b) => hashes[b]!)), Buffer.concat(part.map((b) => pool[b]!))),
        );
      }
      await w.flush();
      for (const b of o.blocks) stored.add(b);
      if (o.dropIndex) {
        // a writer killed between its packs and its index file
        for (const n of await ds.backend.list("index"))
          if (!before.has(n)) await ds.backend.remove(`index/${n}`);
        await ds.reloadIndex();
      }
    } else if (o.kind === "copyIndex") {
      const names = await ds.backend.list("index");
      if (names.length === 0) continue;
      const sections = decodeIndexFile(names[0]!, await ds.backend.read(`index/${names[0]}`)).map((s) => ({
        packId: s.packId,
        // (another file: its records in another order)
        entries: Buffer.concat(
          Array.from({ length: s.entries.length / ENTRY_BYTES }, (_, k) =>
            s.entries.subarray(s.entries.length - (k + 1) * ENTRY_BYTES, s.entries.length - k * ENTRY_BYTES),
          ),
        ),
      }));
      await ds.writeIndexFile(sections);
    } else if (o.kind === "point") {
      const blocks = o.all ? [...stored].sort((x, y) => x - y) : o.blocks.filter((b) => stored.has(b));
      if (blocks.length === 0) continue;
      clock += 1000;
      const id = newPointId(new Date(clock), randomBytes(3));
      const n = blocks.length + o.zeros;
      const entryHashes = Buffer.concat([
        ...blocks.map((b) => hashes[b]!),
        ...Array(o.zeros).fill(ZERO_HASH),
      ]);
      await commitEntries(ds, {
        item,
        id,
        parent: null,
        createdAt: new Date(clock),
        disks: [
          {
            blocks: n,
            entries: { blocks: Float64Array.from({ length: n }, (_, i) => i), hashes: entryHashes },
          },
        ],
      });
      points.set(id, blocks);
    } else if (o.kind === "drop") {
      const ids = [...points.keys()];
      if (ids.length === 0) continue;
      const id = ids[o.which % ids.length]!;
      await ds.removePoint(item, id);
      points.delete(id);
    } else {
      await gc();
      // what no point named may be gone now (a block that shared a kept pack may stay: not relied on)
      const keep = live();
      for (const b of stored) if (!keep.has(b)) stored.delete(b);
    }
  }

  await gc();
  const again = await gc();
  assert.deepEqual(
    {
      packsDeleted: again.packsDeleted,
      packsRewritten: again.packsRewritten,
      blocksCopied: again.blocksCopied,
      bytesFreed: again.bytesFreed,
    },
    { packsDeleted: 0, packsRewritten: 0, blocksCopied: 0, bytesFreed: 0 },
    "a second gc has nothing to do",
  );

  // every block of every point reads back as written
  await ds.reloadIndex();
  for (const b of live()) assert.ok((await ds.readBlock(hashes[b]!)).equals(pool[b]!), `block ${b}`);
  const c = await checkDatastore(ds, { readData: true });
  assert.deepEqual(c.problems, []);
  assert.deepEqual(c.unindexedPacks, []);
  // no pack is kept whose records are mostly dead or copies of blocks a pack before it holds (packs
  // in name order, as gc decides): at least REPACK_BELOW of each are live blocks first found there
  const alive = live();
  const byPack = new Map<string, Buffer>();
  for (const n of await ds.backend.list("index"))
    for (const s of decodeIndexFile(n, await ds.backend.read(`index/${n}`))) byPack.set(s.packId, s.entries);
  const seen = new Set<number>();
  for (const packId of [...byPack.keys()].sort()) {
    const e = byPack.get(packId)!;
    let first = 0;
    for (let at = 0; at < e.length; at += ENTRY_BYTES) {
      const b = byHash.get(e.toString("hex", at, at + HASH_BYTES));
      if (b !== undefined && alive.has(b) && !seen.has(b)) first++;
      if (b !== undefined) seen.add(b);
    }
    const total = e.length / ENTRY_BYTES;
    assert.ok(
      first >= total * REPACK_BELOW,
      `pack ${packId}: ${first} of its ${total} blocks are live and held by no pack before it`,
    );
  }
  const onDisk = await ds.packsOnDisk();
  for (const id of onDisk.keys()) assert.ok(await ds.backend.exists(paths.pack(id)));
  await ds.close();
}

test("gc keeps every block a point names, frees packs no point needs, and has nothing left to do after", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), (ops) => script(ops)),
    { numRuns: 60 },
  );
});

test("gc refuses, changing nothing, when a point names a block that no pack holds", async () => {
  const dir = path.join(root, "lost");
  const ds = await Datastore.init(dir);
  const w = ds.writer();
  await w.add(makeFrame(Buffer.concat(hashes.slice(0, 4)), Buffer.concat(pool.slice(0, 4))));
  await w.flush();
  const nowhere = randomBytes(HASH_BYTES);
  await commitEntries(ds, {
    item: "web1" as ItemName,
    id: newPointId(new Date(), randomBytes(3)),
    parent: null,
    createdAt: new Date(),
    disks: [
      { blocks: 2, entries: { blocks: Float64Array.of(0, 1), hashes: Buffer.concat([hashes[0]!, nowhere]) } },
    ],
  });
  const before = [await ds.backend.list("index"), [...(await ds.packsOnDisk()).keys()]];
  await assert.rejects(collectGarbage(ds), (err: Error & { code?: string }) => {
    assert.equal(err.code, "GC_WOULD_LOSE_DATA");
    assert.match(
      err.message,
      new RegExp(`name 1 block\\(s\\) that no pack holds \\(first ${nowhere.toString("hex")}\\)`),
    );
    return true;
  });
  assert.deepEqual([await ds.backend.list("index"), [...(await ds.packsOnDisk()).keys()]], before);
  await ds.close();
});

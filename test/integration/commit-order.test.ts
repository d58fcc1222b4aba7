// A point's commit overlaps its writes but not what they make visible: the manifest and the index
// file are written while the last packs still are, and each appears only once what it names is
// durable (packs, then the index file, then the manifest). A pack that cannot be written leaves no
// index file, no point and no temporary file behind.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { ObjectData, WriteOptions } from "../../src/datastore/backend.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { BLOCK_SIZE, FRAME_MAX_BLOCKS, PACK_TARGET_BYTES } from "../../src/datastore/format.ts";
import { hashBlocks } from "../../src/datastore/hash.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { parseItemName } from "../../src/domain/ids.ts";
import { replicateOnce } from "../../src/replication/replicate.ts";
import { LocalSink } from "../../src/replication/sink.ts";
import { cliJson, tempDir } from "../helpers/env.ts";
import { makeImage } from "../helpers/images.ts";

const item = parseItemName("web1");

function kindOf(name: string): string {
  return name.split("/")[0]!;
}

/** Records when each object's write starts and when it becomes visible; packs are slowed down (or fail). */
function watch(
  ds: Datastore,
  o: { packDelayMs: number | ((k: number) => number); failPacks?: boolean; failAppends?: boolean },
): string[] {
  let packs = 0;
  /** the delay of the k-th pack begun (its order in the writer) */
  const delay = (k = packs++) => (typeof o.packDelayMs === "number" ? o.packDelayMs : o.packDelayMs(k));
  const events: string[] = [];
  const backend = ds.backend;
  const write = backend.write.bind(backend);
  Object.assign(backend, {
    write: async (name: string, data: ObjectData, w: WriteOptions = {}) => {
      const kind = kindOf(name);
      events.push(`start ${kind}`);
      if (kind === "packs") {
        await sleep(delay());
        if (o.failPacks === true) throw new Error("the pack's disk is gone");
      }
      const publish = w.publish ?? ((make) => make());
      return write(name, data, {
        ...w,
        publish: (make) =>
          publish(async () => {
            await make();
            events.push(`visible ${kind}`);
          }),
      });
    },
  });
  // packs written as they fill: their last step is slowed down (or fails), and they are seen when it is done
  const begin = backend.begin?.bind(backend);
  if (begin !== undefined) {
    Object.assign(backend, {
      begin: async (folder: string) => {
        events.push("start packs");
        const k = packs++;
        const s = await begin(folder);
        return {
          append: async (data: Buffer) => {
            if (o.failAppends === true) throw new Error("the pack's disk is gone");
            return s.append(data);
          },
          abort: () => s.abort(),
          finish: async (name: string, tail: Buffer) => {
            await sleep(delay(k));
            if (o.failPacks === true) {
              await s.abort();
              throw new Error("the pack's disk is gone");
            }
            await s.finish(name, tail);
            events.push("visible packs");
          },
        };
      },
    });
  }
  return events;
}

function point(ds: Datastore, image: string, state: string) {
  return replicateOnce({
    item,
    disks: [image],
    stateDir: state,
    sink: new LocalSink(ds),
    consistency: "crash",
    snapshot: "none",
  });
}

test("the manifest and index are written beside the last packs, and seen only after them", async () => {
  const { dir, cleanup } = tempDir("sb-commit-order-");
  try {
    const image = path.join(dir, "disk.img");
    makeImage(image, 24, 3); // ~16 MiB of data: more than one pack
    await cliJson(["datastore", "init", "--path", path.join(dir, "ds")]);
    const ds = await Datastore.open(path.join(dir, "ds"));
    try {
      const events = watch(ds, { packDelayMs: 300 });
      await point(ds, image, path.join(dir, "state"));
      const seen = events.filter((e) => e.startsWith("visible") && e !== "visible locks");
      const packs = seen.filter((e) => e === "visible packs").length;
      assert.ok(packs >= 2, `${packs} packs`);
      assert.deepEqual(
        seen.slice(packs),
        ["visible index", "visible points"],
        "packs, then the index, then the point",
      );
      assert.ok(
        events.indexOf("start points") < events.lastIndexOf("visible packs"),
        "the manifest was written while a pack still was",
      );
      assert.ok(events.indexOf("start index") < events.lastIndexOf("visible packs"));
      assert.equal((await ds.pointIds(item)).length, 1);
    } finally {
      await ds.close();
    }
  } finally {
    cleanup();
  }
});

for (const [how, delayMs, failAppends] of [
  ["at its end, after 200 ms", 200, false],
  ["at its end", 0, false],
  ["as it fills", 0, true],
] as const)
  test(`a pack that cannot be written (${how}) leaves no index file, no point and no temporary file`, async () => {
    const { dir, cleanup } = tempDir("sb-commit-fail-");
    try {
      const image = path.join(dir, "disk.img");
      makeImage(image, 8, 4);
      await cliJson(["datastore", "init", "--path", path.join(dir, "ds")]);
      const ds = await Datastore.open(path.join(dir, "ds"));
      try {
        // (at once: it fails before the index file waits for it, which must not crash the process)
        const events = watch(ds, { packDelayMs: delayMs, failPacks: true, failAppends });
        await assert.rejects(point(ds, image, path.join(dir, "state")), /the pack's disk is gone/);
        assert.ok(events.includes("start points"), "the manifest was being written when the pack failed");
        assert.deepEqual(await ds.pointIds(item), []);
        for (const sub of ["index", "points", "packs"]) {
          const at = path.join(dir, "ds", sub);
          const left = existsSync(at)
            ? readdirSync(at, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
            : [];
          assert.deepEqual(
            left.map((e) => e.name),
            [],
            `${sub}/ holds nothing`,
          );
        }
      } finally {
        await ds.close();
      }
    } finally {
      cleanup();
    }
  });

test("a flush while a pack waits for room indexes the packs before it only once they are durable", async () => {
  const { dir, cleanup } = tempDir("sb-commit-race-");
  try {
    await cliJson(["datastore", "init", "--path", path.join(dir, "ds")]);
    const ds = await Datastore.open(path.join(dir, "ds"));
    try {
      // the first pack is slow to become durable, the second less so (but still being written when
      // the third is sealed), the third quick
      const events = watch(ds, { packDelayMs: (k) => [1200, 400][k] ?? 20 });
      const w = ds.writer();
      const frame = () => {
        const raw = randomBytes(FRAME_MAX_BLOCKS * BLOCK_SIZE);
        return makeFrame(hashBlocks(raw), raw);
      };
      const perPack = PACK_TARGET_BYTES / (FRAME_MAX_BLOCKS * BLOCK_SIZE);
      // two packs sealed and being written, and all but one frame of a third
      for (let i = 0; i < 3 * perPack - 1; i++) await w.add(frame());
      // the frame that seals the third waits for room (two packs in flight) while a flush comes
      const adding = w.add(frame());
      await sleep(100); // (its seal is waiting for room by now)
      await Promise.all([adding, w.flush()]);
      await w.flush();
      assert.equal(w.packsWritten, 3);
      const seen = events.filter((e) => e.startsWith("visible") && e !== "visible locks");
      const firstIndex = seen.indexOf("visible index");
      assert.ok(firstIndex >= 2, `an index file appeared after ${firstIndex} packs: ${seen.join(", ")}`);
      assert.ok(
        seen.slice(0, firstIndex).every((e) => e === "visible packs"),
        "every pack the first index names was durable first",
      );
    } finally {
      await ds.close();
    }
  } finally {
    cleanup();
  }
});

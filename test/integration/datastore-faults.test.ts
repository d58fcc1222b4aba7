// Faults caused for real: bytes flipped in the store, and kill -9 of prune and GC at every step
// boundary and at random moments. Afterwards every point that exists must restore byte for byte.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { checkDatastore } from "../../src/datastore/check.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import type { ItemName } from "../../src/domain/ids.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { CLI, cli, cliJson, tempDir } from "../helpers/env.ts";
import { makeImage, rng, scatter } from "../helpers/images.ts";

const MiB = 1024 * 1024;

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

function flip(file: string, at: number): void {
  const b = readFileSync(file);
  const i = at < 0 ? b.length + at : at;
  b[i]! ^= 0x20;
  writeFileSync(file, b);
}

describe("datastore faults", () => {
  const { dir, cleanup } = tempDir();
  const pristine = path.join(dir, "pristine");
  const img = path.join(dir, "disk.img");
  const expected = new Map<string, Buffer>();
  after(cleanup);

  // five points; later ones overwrite much of the disk, so pruning the early ones leaves dead data
  before(async () => {
    makeImage(img, 16, 21);
    await cliJson(["datastore", "init", "--path", pristine]);
    for (let i = 0; i < 5; i++) {
      if (i > 0) scatter(img, 16 * MiB, i === 1 ? 1800 : 300, 100 + i);
      const r = await cliJson<{ pointId: string }>([
        "replicate-once",
        "--datastore",
        pristine,
        "--item",
        "db1",
        "--disk",
        img,
        "--state",
        path.join(dir, "state"),
        "--snapshot",
        "none",
      ]);
      expected.set(r.pointId, readFileSync(img));
    }
  });

  const copy = (name: string) => {
    const d = path.join(dir, name);
    rmSync(d, { recursive: true, force: true });
    cpSync(pristine, d, { recursive: true });
    return d;
  };

  /**
   * Every point that exists restores to exactly what the disk held when it was taken, and check is
   * clean. In-process (the faults themselves hit real processes): spawning a CLI per point is slow.
   */
  async function assertWhole(dsDir: string, label: string): Promise<string[]> {
    const ds = await Datastore.open(dsDir);
    try {
      const c = await checkDatastore(ds, { readData: true });
      assert.deepEqual(c.problems, [], `${label}: check`);
      const ids = await ds.pointIds("db1" as ItemName);
      assert.ok(ids.length > 0, `${label}: no points left`);
      for (const id of ids) {
        const out = path.join(dir, "restore.img");
        rmSync(out, { force: true });
        await restoreDisk(ds, { item: "db1" as ItemName, point: id, disk: 0, to: out, delta: false });
        assert.ok(readFileSync(out).equals(expected.get(id)!), `${label}: point ${id} differs`);
      }
      return ids;
    } finally {
      await ds.close();
    }
  }

  test("check finds a flipped byte in a pack's data, a pack trailer, an index file and a manifest, by name", async () => {
    const cases: {
      name: string;
      pick: (ds: string) => string;
      at: number;
      readData: boolean;
      expect: (f: string) => RegExp;
    }[] = [
      {
        name: "pack data",
        pick: (ds) => files(path.join(ds, "packs"))[0]!,
        at: 4000,
        readData: true,
        expect: (f) => new RegExp(`pack ${path.basename(f, ".pack")}`),
      },
      {
        name: "pack trailer",
        pick: (ds) => files(path.join(ds, "packs"))[0]!,
        at: -20,
        readData: false,
        expect: (f) => new RegExp(`pack ${path.basename(f, ".pack")}`),
      },
      {
        name: "index",
        pick: (ds) => files(path.join(ds, "index"))[0]!,
        at: 100,
        readData: false,
        expect: (f) => new RegExp(`index ${path.basename(f)}`),
      },
      {
        name: "manifest",
        pick: (ds) => files(path.join(ds, "points"))[2]!,
        at: -40,
        readData: false,
        expect: (f) => new RegExp(`point db1/${path.basename(f, ".point")}`),
      },
    ];
    for (const c of cases) {
      const ds = copy(`corrupt-${c.name.replace(" ", "-")}`);
      const f = c.pick(ds);
      flip(f, c.at);
      const r = await cli(["datastore", "check", "--datastore", ds, ...(c.readData ? ["--read-data"] : [])]);
      assert.equal(r.code, 1, `${c.name}: check must fail`);
      assert.match(r.stdout, c.expect(f), `${c.name}: ${r.stdout}`);
    }
  });

  test("check without --read-data passes a flipped data byte, with it the block is named; restore refuses the block", async () => {
    const ds = copy("corrupt-block");
    const pack = files(path.join(ds, "packs")).sort()[0]!;
    flip(pack, 200);
    const quick = await cli(["datastore", "check", "--datastore", ds]);
    assert.equal(quick.code, 0, quick.stdout);
    const deep = await cli(["datastore", "check", "--datastore", ds, "--read-data"]);
    assert.equal(deep.code, 1);
    assert.match(deep.stdout, /pack [0-9a-f]{64}: contents do not match/);
    assert.match(deep.stdout, /(block [0-9a-f]{64}|frame @\d+)/);
    // some point reads that block; its restore must fail loudly rather than write wrong data
    let refused = 0;
    for (const id of expected.keys()) {
      const r = await cli([
        "restore",
        "--datastore",
        ds,
        "--item",
        "db1",
        "--point",
        id,
        "--disk",
        "0",
        "--to",
        path.join(dir, `bad-${id}.img`),
      ]);
      if (r.code !== 0) {
        refused++;
        assert.match(r.stderr, /DATASTORE_CORRUPT/);
      }
    }
    assert.ok(refused > 0);
  });

  test("check reports a missing pack by name", async () => {
    const ds = copy("missing-pack");
    const pack = files(path.join(ds, "packs"))[0]!;
    unlinkSync(pack);
    const r = await cli(["datastore", "check", "--datastore", ds]);
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      new RegExp(`pack ${path.basename(pack, ".pack")}: is named by the index but missing`),
    );
  });

  test("the index can be rebuilt from the packs alone", async () => {
    const ds = copy("rebuild");
    rmSync(path.join(ds, "index"), { recursive: true });
    const broken = await cli(["datastore", "check", "--datastore", ds]);
    assert.equal(broken.code, 1, "points reference blocks no index names");
    const r = await cliJson<{ packs: number; blocks: number; damagedPacks: string[] }>([
      "datastore",
      "rebuild-index",
      "--datastore",
      ds,
      "--read-data",
    ]);
    assert.ok(r.packs > 0 && r.blocks > 0);
    assert.deepEqual(r.damagedPacks, []);
    await assertWhole(ds, "after rebuild-index");
  });

  test("a write cut short (a file-size limit, like a full disk) fails the point and commits nothing", async () => {
    const ds = copy("short-write");
    const before = await cliJson<{ id: string }[]>(["points", "list", "--datastore", ds, "--item", "db1"]);
    const big = path.join(dir, "big.img");
    makeImage(big, 48, 5);
    // 4 MiB per file: every 8 MiB pack write stops short (SIGXFSZ ignored, so write() returns short)
    const r = spawnSync(
      "sh",
      [
        "-c",
        `trap '' XFSZ; ulimit -f 4096; exec "$0" "$@"`,
        process.execPath,
        CLI,
        "replicate-once",
        "--datastore",
        ds,
        "--item",
        "big1",
        "--disk",
        big,
        "--state",
        path.join(dir, "state-short"),
        "--snapshot",
        "none",
      ],
      { encoding: "utf8" },
    );
    assert.notEqual(r.status, 0, "the point must fail");
    assert.match(r.stderr, /switchback: .*(too large|no space)/i);
    const after = await cliJson<{ id: string }[]>(["points", "list", "--datastore", ds, "--item", "big1"]);
    assert.deepEqual(after, [], "no point committed");
    assert.deepEqual(
      await cliJson<{ id: string }[]>(["points", "list", "--datastore", ds, "--item", "db1"]),
      before,
    );
    await assertWhole(ds, "after a short write");
  });

  test("prune keeps the newest points whole and gc frees the data only dropped points used", async () => {
    const ds = copy("prune");
    const before = files(ds).length;
    const r = await cliJson<{
      deleted: string[];
      kept: string[];
      gc: { bytesFreed: number; packsRewritten: number };
    }>(["datastore", "prune", "--datastore", ds, "--item", "db1", "--keep-within", "1ms"]);
    assert.equal(r.kept.length, 1);
    assert.equal(r.deleted.length, 4);
    assert.ok(r.gc.bytesFreed > 0, "gc freed something");
    assert.deepEqual(await assertWhole(ds, "after prune"), r.kept);
    assert.ok(files(ds).length <= before);
  });

  test("kill -9 of prune after every step leaves every existing point whole, and a rerun finishes", async () => {
    for (let n = 1; n <= 5; n++) {
      const ds = copy(`kill-prune-${n}`);
      const r = await cli(
        ["datastore", "prune", "--datastore", ds, "--item", "db1", "--keep-within", "1ms", "--no-gc"],
        {
          env: { SWITCHBACK_FAULT_KILL_AT: `prune:${n}` },
        },
      );
      assert.notEqual(r.code, 0, `prune killed at step ${n}`);
      await assertWhole(ds, `prune killed at step ${n}`);
      const again = await cliJson<{ kept: string[] }>([
        "datastore",
        "prune",
        "--datastore",
        ds,
        "--item",
        "db1",
        "--keep-within",
        "1ms",
      ]);
      assert.deepEqual(await assertWhole(ds, `prune rerun after step ${n}`), again.kept);
      rmSync(ds, { recursive: true, force: true });
    }
  });

  test("kill -9 of gc after every step leaves every point whole, and a rerun frees the rest", async () => {
    const base = copy("gc-base");
    await cliJson([
      "datastore",
      "prune",
      "--datastore",
      base,
      "--item",
      "db1",
      "--keep-within",
      "1ms",
      "--no-gc",
    ]);
    let killed = 0;
    for (let n = 1; n <= 40; n++) {
      const ds = path.join(dir, `kill-gc-${n}`);
      cpSync(base, ds, { recursive: true });
      const r = await cli(["datastore", "gc", "--datastore", ds], {
        env: { SWITCHBACK_FAULT_KILL_AT: `gc:${n}` },
      });
      await assertWhole(ds, `gc killed at step ${n}`);
      const again = await cliJson<{ packsDeleted: number }>(["datastore", "gc", "--datastore", ds]);
      await assertWhole(ds, `gc rerun after step ${n}`);
      rmSync(ds, { recursive: true, force: true });
      if (r.code === 0) break; // gc finished before step n: every boundary was covered
      killed++;
      assert.ok(again.packsDeleted >= 0);
    }
    assert.ok(killed >= 4, `gc was killed at ${killed} step boundaries`);
  });

  test("kill -9 of prune+gc at random moments leaves every point whole", async () => {
    const next = rng(99);
    for (let round = 0; round < 5; round++) {
      const ds = copy(`random-kill-${round}`);
      const child = spawn(
        process.execPath,
        [CLI, "datastore", "prune", "--datastore", ds, "--item", "db1", "--keep-within", "1ms"],
        {
          stdio: "ignore",
        },
      );
      const closed = new Promise((r) => child.once("close", r)); // listen now: it may end before the kill
      const delay = 100 + Math.floor(next() * 400); // node start-up is ~100 ms here
      await new Promise((r) => setTimeout(r, delay));
      child.kill("SIGKILL");
      await closed;
      await assertWhole(ds, `random kill after ${delay} ms`);
      await cliJson(["datastore", "prune", "--datastore", ds, "--item", "db1", "--keep-within", "1ms"]);
      await assertWhole(ds, `rerun after random kill at ${delay} ms`);
      rmSync(ds, { recursive: true, force: true });
    }
  });
});

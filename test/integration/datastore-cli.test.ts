// The data-plane command line end to end, as an operator runs it: real files, the CLI as a process.
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { cli, cliJson, tempDir } from "../helpers/env.ts";
import { makeImage, scatter } from "../helpers/images.ts";

interface Rep {
  pointId: string;
  mode: string;
  bytesRead: number;
  bytesSent: number;
  changedBlocks: number;
  blockSize: number;
  durationMs: number;
  maxFreezeMs: number;
  bytesStored: number;
}

describe("replicate-once, points list, restore", () => {
  const { dir, cleanup } = tempDir();
  const ds = path.join(dir, "ds");
  const state = path.join(dir, "state");
  const img = path.join(dir, "disk0.img");
  const img2 = path.join(dir, "disk1.img");
  const MiB = 1024 * 1024;
  const rep = (extra: string[] = []) =>
    cliJson<Rep>([
      "replicate-once",
      "--datastore",
      ds,
      "--item",
      "web1",
      "--disk",
      img,
      "--disk",
      img2,
      "--state",
      state,
      "--snapshot",
      "none",
      ...extra,
    ]);

  const restore = <T = Record<string, unknown>>(
    point: string,
    disk: string,
    to: string,
    extra: string[] = [],
  ) =>
    cliJson<T>([
      "restore",
      "--datastore",
      ds,
      "--item",
      "web1",
      "--point",
      point,
      "--disk",
      disk,
      "--to",
      to,
      ...extra,
    ]);

  before(async () => {
    makeImage(img, 24, 7);
    makeImage(img2, 8, 8);
    await cliJson(["datastore", "init", "--path", ds]);
  });
  after(cleanup);

  test("the first point is a full copy and restores byte for byte, all disks", async () => {
    const r = await rep();
    assert.equal(r.mode, "full");
    assert.equal(r.blockSize, 4096);
    assert.equal(r.bytesRead, 32 * MiB);
    for (const k of ["pointId", "bytesSent", "changedBlocks", "durationMs", "maxFreezeMs"])
      assert.ok(k in r, k);
    // a third of each image is zeros: they are not stored
    assert.ok(r.bytesStored < 32 * MiB * 0.72, `stored ${r.bytesStored}`);
    // what was sent is what was stored, but for the packs' trailers (48 bytes a block) and headers
    assert.ok(
      r.bytesSent <= r.bytesStored && r.bytesSent > r.bytesStored * 0.97,
      `sent ${r.bytesSent}, stored ${r.bytesStored}`,
    );
    for (const [n, src] of [img, img2].entries()) {
      const out = path.join(dir, `full${n}.img`);
      const res = await restore<{ verified: boolean }>(r.pointId, String(n), out);
      assert.equal(res.verified, true);
      assert.ok(readFileSync(out).equals(readFileSync(src)), `disk ${n} restored identical`);
    }
  });

  test("scattered 4 KiB writes ship about the changed bytes, not megabytes", async () => {
    const changed = scatter(img, 24 * MiB, 61, 3); // 1 % of 6144 blocks
    const r = await rep();
    assert.equal(r.mode, "incremental");
    assert.equal(r.changedBlocks, changed.length);
    assert.ok(
      r.bytesSent <= changed.length * 4096 * 1.2,
      `sent ${r.bytesSent} for ${changed.length * 4096} changed bytes`,
    );
    const out = path.join(dir, "inc.img");
    await restore("latest", "0", out);
    assert.ok(readFileSync(out).equals(readFileSync(img)));
  });

  test("an unchanged machine makes an empty point; zero-filled blocks are recorded, not stored", async () => {
    const r0 = await rep();
    assert.equal(r0.changedBlocks, 0);
    assert.equal(r0.bytesSent, 0);
    const fd = readFileSync(img);
    fd.fill(0, 4096 * 70, 4096 * 80); // blocks 70..79 (text) become zero
    writeFileSync(img, fd);
    const r = await rep();
    assert.equal(r.changedBlocks, 10);
    assert.equal(r.bytesSent, 0);
    const out = path.join(dir, "zero.img");
    await restore("latest", "0", out);
    assert.ok(readFileSync(out).equals(readFileSync(img)));
  });

  test("points list shows every point oldest first", async () => {
    const list = await cliJson<{ id: string; consistency: string }[]>([
      "points",
      "list",
      "--datastore",
      ds,
      "--item",
      "web1",
    ]);
    assert.equal(list.length, 4);
    assert.deepEqual(
      list.map((p) => p.id),
      [...list.map((p) => p.id)].sort(),
    );
    const human = await cli(["points", "list", "--datastore", ds, "--item", "web1"]);
    assert.match(human.stdout, /CONSISTENCY/);
  });

  test("a delta restore writes only the blocks that differ, and an old point still restores", async () => {
    const list = await cliJson<{ id: string }[]>(["points", "list", "--datastore", ds, "--item", "web1"]);
    const first = list[0]!.id;
    const target = path.join(dir, "delta.img");
    await restore(first, "0", target);
    const old = readFileSync(target);
    const r = await restore<{ blocksWritten: number; verified: boolean; mode: string }>(
      "latest",
      "0",
      target,
      ["--delta"],
    );
    assert.equal(r.mode, "delta");
    assert.equal(r.verified, true);
    assert.ok(readFileSync(target).equals(readFileSync(img)));
    let differing = 0;
    const now = readFileSync(img);
    for (let b = 0; b < now.length / 4096; b++)
      if (!now.subarray(b * 4096, (b + 1) * 4096).equals(old.subarray(b * 4096, (b + 1) * 4096))) differing++;
    assert.equal(r.blocksWritten, differing);
  });

  test("a lost agent state resyncs by comparison, without shipping the disk again", async () => {
    rmSync(state, { recursive: true });
    scatter(img, 24 * MiB, 5, 11);
    const r = await rep();
    assert.equal(r.mode, "resync");
    assert.ok(r.bytesSent <= 5 * 4096 * 1.2, `resync sent ${r.bytesSent}`);
    assert.equal(r.changedBlocks, 5);
    const out = path.join(dir, "resync.img");
    await restore("latest", "0", out);
    assert.ok(readFileSync(out).equals(readFileSync(img)));
  });

  test("errors name what was wrong and exit non-zero", async () => {
    const cases: [string[], RegExp][] = [
      [
        [
          "replicate-once",
          "--datastore",
          ds,
          "--item",
          "web1",
          "--disk",
          path.join(dir, "nope.img"),
          "--state",
          state,
        ],
        /disk .*nope\.img does not exist/,
      ],
      [
        ["replicate-once", "--datastore", path.join(dir, "notads"), "--item", "x", "--disk", img],
        /is not a datastore/,
      ],
      [
        [
          "restore",
          "--datastore",
          ds,
          "--item",
          "web1",
          "--point",
          "20200101T000000000Z-abcdef",
          "--disk",
          "0",
          "--to",
          path.join(dir, "x.img"),
        ],
        /recovery point 20200101T000000000Z-abcdef of item web1 does not exist/,
      ],
      [
        [
          "restore",
          "--datastore",
          ds,
          "--item",
          "web1",
          "--point",
          "yesterday",
          "--disk",
          "0",
          "--to",
          path.join(dir, "x.img"),
        ],
        /recovery point id "yesterday" is not valid/,
      ],
      [
        [
          "restore",
          "--datastore",
          ds,
          "--item",
          "web1",
          "--point",
          "latest",
          "--disk",
          "5",
          "--to",
          path.join(dir, "x.img"),
        ],
        /disk 5 does not exist/,
      ],
      [
        [
          "restore",
          "--datastore",
          ds,
          "--item",
          "nobody",
          "--point",
          "latest",
          "--disk",
          "0",
          "--to",
          path.join(dir, "x.img"),
        ],
        /item nobody has no recovery points/,
      ],
      [
        ["replicate-once", "--datastore", ds, "--item", "web1", "--disk", img, "--state", state],
        /enabled with 2 disk\(s\)/,
      ],
      [
        ["datastore", "prune", "--datastore", ds, "--item", "web1", "--keep-within", "3 days"],
        /--keep-within "3 days" is not a duration/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 1, `${args.join(" ")}: exit ${r.code} ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, "one sentence");
    }
    const grown = path.join(dir, "grown.img");
    copyFileSync(img2, grown);
    truncateSync(grown, statSync(img2).size + 1024 * 1024);
    const r = await cli([
      "replicate-once",
      "--datastore",
      ds,
      "--item",
      "web1",
      "--disk",
      img,
      "--disk",
      grown,
      "--state",
      state,
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /disk 1 .* is now \d+ bytes but was \d+ at enable time/);
  });
});

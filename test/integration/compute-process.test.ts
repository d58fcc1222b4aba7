// The `process` compute provider on real components: a real datastore with two recovery points of a
// disk image, real image files, real `sh` process groups, and a provider in another Node process that
// exits (a vault restart) while the machine it started runs on.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  constants as fsc,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { newIdentity, readIdentityLabel, writeIdentityLabel } from "../../src/agent/identity.ts";
import { sparseCopy } from "../../src/compute/images.ts";
import { processAlive } from "../../src/compute/process/proc.ts";
import { ProcessProvider } from "../../src/compute/process/process-provider.ts";
import type { DiskSpec } from "../../src/compute/provider.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { SwitchbackError } from "../../src/domain/errors.ts";
import { parseItemName } from "../../src/domain/ids.ts";
import { replicateOnce } from "../../src/replication/replicate.ts";
import { LocalSink } from "../../src/replication/sink.ts";
import { ROOT, tempDir } from "../helpers/env.ts";
import { makeImage, scatter } from "../helpers/images.ts";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const BLOCK = 4096;

function differingBlocks(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let off = 0; off < a.length; off += BLOCK) {
    if (!a.subarray(off, off + BLOCK).equals(b.subarray(off, off + BLOCK))) n++;
  }
  return n;
}

function nonZeroBytes(a: Buffer): number {
  const zero = Buffer.alloc(BLOCK);
  let n = 0;
  for (let off = 0; off < a.length; off += BLOCK) if (!a.subarray(off, off + BLOCK).equals(zero)) n += BLOCK;
  return n;
}

function allocated(p: string): number {
  return statSync(p).blocks * 512;
}

function code(err: unknown): string {
  return err instanceof SwitchbackError ? err.code : String(err);
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether this file system clones with reflinks (btrfs, XFS) or the provider falls back to a sparse copy (ext4, tmpfs). */
function reflinkSupported(dir: string): boolean {
  const a = path.join(dir, ".probe-src");
  const b = path.join(dir, ".probe-dst");
  writeFileSync(a, "x");
  try {
    copyFileSync(a, b, fsc.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(a, { force: true });
    rmSync(b, { force: true });
  }
}

describe("process compute provider", () => {
  const { dir, cleanup } = tempDir("sb-compute-");
  const dsDir = path.join(dir, "datastore");
  const root = path.join(dir, "sites", "recovery", "machines");
  const img = path.join(dir, "source.img");
  const atA = path.join(dir, "source-at-A.img");
  const atB = path.join(dir, "source-at-B.img");
  const item = parseItemName("web1");
  const identity = newIdentity("web1", 1);
  const provider = new ProcessProvider({ root, env: { SWITCHBACK_VAULT: "http://127.0.0.1:9" } });
  let pointA = "";
  let pointB = "";
  let diskUuid = "";
  const reflink = reflinkSupported(dir);
  const pointDisk = (point: string): DiskSpec => ({
    from: "point",
    datastore: dsDir,
    item,
    point,
    diskUuid,
    sizeBytes: SIZE,
  });

  before(async () => {
    makeImage(img, SIZE / MiB, 11); // its first 256 KiB are zeros: block 0 is free for the label
    writeIdentityLabel(img, identity);
    const ds = await Datastore.init(dsDir);
    try {
      const point = async () =>
        replicateOnce({
          item,
          disks: [img],
          stateDir: path.join(dir, "agent-state"),
          sink: new LocalSink(ds),
          consistency: "crash",
          snapshot: "none",
        });
      const a = await point();
      copyFileSync(img, atA);
      scatter(img, SIZE, 40, 5);
      const b = await point();
      copyFileSync(img, atB);
      pointA = a.pointId;
      pointB = b.pointId;
      diskUuid = a.disks[0]!.uuid;
    } finally {
      await ds.close();
    }
    console.log(`clones on ${dir}: ${reflink ? "reflink" : "sparse copy (no reflink on this file system)"}`);
  });
  after(async () => {
    // a failed test must not leave `sleep 1000` process groups behind
    for (const id of ["vm-run", "vm-stubborn", "vm-restart", "vm-resume"]) {
      await provider.stop(id, { timeoutMs: 500 }).catch(() => {});
    }
    cleanup();
  });

  test("create from a point: byte-identical, sparse where the source is zero, identity label reads back", async () => {
    const fractions: number[] = [];
    const info = await provider.create(
      { id: "vm-a", name: "web1", disks: [pointDisk(pointA)], bootCommand: null },
      (f) => fractions.push(f),
    );
    assert.equal(info.state, "stopped");
    assert.equal(info.folder, path.join(root, "vm-a"));
    const disk = info.disks[0]!;
    assert.equal(disk, path.join(root, "vm-a", "disk-0.img"));
    const want = readFileSync(atA);
    assert.ok(readFileSync(disk).equals(want), "materialized disk equals the source at point A");
    const used = allocated(disk);
    assert.ok(
      used <= nonZeroBytes(want) + 64 * 1024,
      `allocated ${used} bytes for ${nonZeroBytes(want)} non-zero bytes: zero blocks were written`,
    );
    assert.ok(used < SIZE * 0.8, `allocated ${used} of ${SIZE}`);
    assert.deepEqual(readIdentityLabel(disk), identity);
    assert.equal(fractions[fractions.length - 1], 1);

    // idempotent: the same spec again returns the instance and leaves its disk alone
    const ino = statSync(disk).ino;
    const again = await provider.create({
      id: "vm-a",
      name: "web1",
      disks: [pointDisk(pointA)],
      bootCommand: null,
    });
    assert.deepEqual(again.disks, info.disks);
    assert.equal(statSync(disk).ino, ino);
    await assert.rejects(
      provider.create({ id: "vm-a", name: "web1", disks: [pointDisk(pointB)], bootCommand: null }),
      (err: unknown) => code(err) === "INSTANCE_EXISTS",
    );
  });

  test("changePoint writes only the blocks that differ and leaves the disk byte-identical", async () => {
    const a = readFileSync(atA);
    const b = readFileSync(atB);
    const differ = differingBlocks(a, b);
    assert.ok(differ > 30 && differ <= 40, `${differ} blocks differ between the points`);
    const disk = path.join(root, "vm-a", "disk-0.img");
    const r = await provider.changePoint("vm-a", { datastore: dsDir, item, point: pointB });
    assert.equal(r.blocksWritten, differ);
    assert.equal(r.bytesWritten, differ * BLOCK);
    assert.ok(readFileSync(disk).equals(b));
    const back = await provider.changePoint("vm-a", { datastore: dsDir, item, point: "latest" });
    assert.equal(back.blocksWritten, 0, "already at the latest point: nothing to write");
    const toA = await provider.changePoint("vm-a", { datastore: dsDir, item, point: pointA });
    assert.equal(toA.blocksWritten, differ);
    assert.ok(readFileSync(disk).equals(a));
    assert.deepEqual(readIdentityLabel(disk), identity, "the label survives a change of point");
  });

  test("changePoint from a base point writes the difference without reading the disks, only while they are untouched", async () => {
    const a = readFileSync(atA);
    const b = readFileSync(atB);
    const differ = differingBlocks(a, b);
    // disks adopted as they are at point A (a master target's seed read them at `at`)
    const seeded = path.join(dir, "seeded-A.img");
    copyFileSync(atA, seeded);
    await provider.create({
      id: "vm-base",
      name: "web1",
      disks: [{ from: "adopt", path: seeded }],
      bootCommand: "exit 0",
    });
    const at = new Date().toISOString();
    const base = { point: pointA, at, diskUuids: [diskUuid] };
    // a lie the base path would believe: block 5 changed behind its back; the base path does not read
    // the disk, so the block stays (proof that it wrote only the difference of the two points' maps)
    const fd = openSync(seeded, "r+");
    writeSync(fd, Buffer.alloc(BLOCK, 7), 0, BLOCK, 5 * BLOCK);
    closeSync(fd);
    const r = await provider.changePoint("vm-base", { datastore: dsDir, item, point: pointB, base });
    assert.equal(r.blocksWritten, differ, "only the blocks where B differs from A");
    const now = readFileSync(seeded);
    assert.ok(now.subarray(5 * BLOCK, 6 * BLOCK).equals(Buffer.alloc(BLOCK, 7)), "the disk was not read");
    // rewritten since the base: the same base is not trusted again; the disks are compared whole
    const again = await provider.changePoint("vm-base", { datastore: dsDir, item, point: pointB, base });
    assert.ok(readFileSync(seeded).equals(b), "compared whole: block 5 is put right");
    assert.equal(again.blocksWritten, 1, "the one block changed behind its back");
    // a machine that ran after the base: compared whole too
    copyFileSync(atA, seeded);
    const later = { point: pointA, at: new Date().toISOString(), diskUuids: [diskUuid] };
    await provider.start("vm-base");
    await new Promise((res) => setTimeout(res, 300));
    const fd2 = openSync(seeded, "r+");
    writeSync(fd2, Buffer.alloc(BLOCK, 9), 0, BLOCK, 6 * BLOCK);
    closeSync(fd2);
    const ran = await provider.changePoint("vm-base", { datastore: dsDir, item, point: pointB, base: later });
    assert.ok(readFileSync(seeded).equals(b), "a machine that ran since is compared whole");
    assert.ok(ran.blocksWritten >= differ);
    await provider.delete("vm-base");
  });

  test(`clone of an image file (${reflink ? "reflink" : "sparse copy fallback"})`, async () => {
    const info = await provider.create({
      id: "vm-clone",
      name: "web1",
      disks: [{ from: "clone", path: atB }],
      bootCommand: null,
    });
    const disk = info.disks[0]!;
    assert.ok(readFileSync(disk).equals(readFileSync(atB)));
    const rec = JSON.parse(readFileSync(path.join(info.folder, "instance.json"), "utf8"));
    assert.equal(rec.disks[0].method, reflink ? "reflink" : "sparse-copy");
    if (!reflink)
      assert.ok(allocated(disk) <= nonZeroBytes(readFileSync(atB)) + 64 * 1024, "the copy is sparse");
    // the fallback itself, whatever this file system does
    const copy = path.join(dir, "sparse-copy.img");
    const r = await sparseCopy(atB, copy, SIZE);
    assert.ok(readFileSync(copy).equals(readFileSync(atB)));
    assert.equal(r.bytesWritten, nonZeroBytes(readFileSync(atB)));
    assert.ok(allocated(copy) <= r.bytesWritten + 64 * 1024);
    await provider.delete("vm-clone");
  });

  test("start runs the boot command with its environment; stop on TERM is graceful", async () => {
    const adopted = path.join(dir, "adopted.img");
    copyFileSync(atA, adopted);
    const info = await provider.create({
      id: "vm-run",
      name: "web1",
      disks: [
        { from: "adopt", path: adopted },
        { from: "blank", sizeBytes: MiB },
      ],
      bootCommand: `echo booted; env | grep -E '^(SWITCHBACK_|FROM_SPEC)' | sort > "$SWITCHBACK_MACHINE_DIR/env.txt"; exec sleep 1000`,
      env: { FROM_SPEC: "yes" },
    });
    assert.deepEqual(info.disks, [adopted, path.join(root, "vm-run", "disk-1.img")]);
    assert.equal(statSync(info.disks[1]!).size, MiB);
    assert.equal(allocated(info.disks[1]!), 0, "a blank disk is a hole");
    const started = await provider.start("vm-run");
    assert.equal(started.state, "running");
    assert.ok(started.pid !== null && processAlive(started.pid));
    const envFile = path.join(info.folder, "env.txt");
    await waitFor(
      () => existsSync(envFile) && readFileSync(envFile, "utf8").includes("SWITCHBACK_VAULT"),
      5000,
      "env.txt",
    );
    const env = Object.fromEntries(
      readFileSync(envFile, "utf8")
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    assert.deepEqual(env, {
      FROM_SPEC: "yes",
      SWITCHBACK_DISKS: `${adopted}:${info.disks[1]}`,
      SWITCHBACK_DISK_0: adopted,
      SWITCHBACK_DISK_1: info.disks[1],
      SWITCHBACK_INSTANCE: "vm-run",
      SWITCHBACK_MACHINE_DIR: info.folder,
      SWITCHBACK_VAULT: "http://127.0.0.1:9",
    });
    const again = await provider.start("vm-run");
    assert.equal(again.pid, started.pid, "start of a running instance is a no-op");
    assert.equal((await provider.status("vm-run"))?.state, "running");
    await assert.rejects(
      provider.changePoint("vm-run", { datastore: dsDir, item, point: pointB }),
      (err: unknown) => code(err) === "INSTANCE_RUNNING",
    );
    const t = performance.now();
    const s = await provider.stop("vm-run", { timeoutMs: 5000 });
    assert.deepEqual(s, { graceful: true, wasRunning: true });
    assert.ok(performance.now() - t < 2000, "a graceful stop does not wait for the timeout");
    assert.equal(processAlive(started.pid!), false);
    const st = await provider.status("vm-run");
    assert.equal(st?.state, "stopped");
    assert.equal(st?.pid, null);
    assert.deepEqual(await provider.stop("vm-run"), { graceful: true, wasRunning: false });
    assert.match(readFileSync(path.join(info.folder, "console.log"), "utf8"), /booted/);
  });

  test("a boot command that ends by itself: stopped, with its exit code", async () => {
    await provider.create({
      id: "vm-exits",
      name: "short",
      disks: [{ from: "blank", sizeBytes: MiB }],
      bootCommand: "echo bye; exit 3",
    });
    await provider.start("vm-exits");
    let st = await provider.status("vm-exits");
    const deadline = Date.now() + 5000;
    while (st?.exitCode === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      st = await provider.status("vm-exits");
    }
    assert.equal(st?.state, "stopped");
    assert.equal(st?.exitCode, 3);
    assert.deepEqual(await provider.stop("vm-exits"), { graceful: true, wasRunning: false });
    await assert.rejects(provider.start("no/such"), (err: unknown) => code(err) === "INVALID_INSTANCE_ID");
    await assert.rejects(provider.start("no-such"), (err: unknown) => code(err) === "INSTANCE_NOT_FOUND");
    await provider.delete("vm-exits");
  });

  test("a boot command that ignores TERM is killed after the timeout, with its children", async () => {
    await provider.create({
      id: "vm-stubborn",
      name: "stubborn",
      disks: [{ from: "blank", sizeBytes: MiB }],
      bootCommand: `trap '' TERM; sleep 1000 & echo $! > "$SWITCHBACK_MACHINE_DIR/child.pid"; wait`,
    });
    const info = await provider.start("vm-stubborn");
    const childFile = path.join(info.folder, "child.pid");
    await waitFor(
      () => existsSync(childFile) && readFileSync(childFile, "utf8").trim() !== "",
      5000,
      "child.pid",
    );
    const child = Number(readFileSync(childFile, "utf8").trim());
    assert.ok(processAlive(child));
    const t = performance.now();
    const s = await provider.stop("vm-stubborn", { timeoutMs: 600 });
    const took = performance.now() - t;
    assert.deepEqual(s, { graceful: false, wasRunning: true });
    assert.ok(took >= 550, `stopped after ${Math.round(took)} ms, before the timeout`);
    assert.equal(processAlive(info.pid!), false, "the boot command is gone");
    assert.equal(processAlive(child), false, "its child in the same process group is gone");
    await provider.delete("vm-stubborn");
  });

  test("after a vault restart, a new provider sees the running instance and stops it", async () => {
    await provider.create({
      id: "vm-restart",
      name: "web1",
      disks: [{ from: "blank", sizeBytes: MiB }],
      bootCommand: "exec sleep 1000",
    });
    // another Node process starts it and exits: nobody holds a handle to the machine any more
    const script = `
      import { ProcessProvider } from ${JSON.stringify(path.join(ROOT, "src/compute/process/process-provider.ts"))};
      const p = new ProcessProvider({ root: ${JSON.stringify(root)} });
      const info = await p.start("vm-restart");
      console.log(JSON.stringify(info));
    `;
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn(process.execPath, ["--input-type=module", "-e", script], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let s = "";
      c.stdout.on("data", (d: Buffer) => {
        s += d.toString();
      });
      c.on("error", reject);
      c.on("close", (code) => (code === 0 ? resolve(s) : reject(new Error(`vault process exited ${code}`))));
    });
    const started = JSON.parse(out) as { pid: number; state: string };
    assert.equal(started.state, "running");
    const fresh = new ProcessProvider({ root });
    const st = await fresh.status("vm-restart");
    assert.equal(st?.state, "running");
    assert.equal(st?.pid, started.pid);
    assert.deepEqual(await fresh.stop("vm-restart", { timeoutMs: 5000 }), {
      graceful: true,
      wasRunning: true,
    });
    assert.equal((await provider.status("vm-restart"))?.state, "stopped");
  });

  test("an interrupted create resumes without remaking the disks it finished; latest means the point at the first try", async () => {
    const later = path.join(dir, "appears-later.img");
    const spec = {
      id: "vm-resume",
      name: "web1",
      disks: [pointDisk(pointB), { from: "clone" as const, path: later }, pointDisk("latest")],
      bootCommand: "exec sleep 1000",
    };
    await assert.rejects(provider.create(spec), (err: unknown) => code(err) === "DISK_NOT_FOUND");
    await assert.rejects(provider.start("vm-resume"), (err: unknown) => code(err) === "INSTANCE_NOT_READY");
    const disk0 = path.join(root, "vm-resume", "disk-0.img");
    const ino = statSync(disk0).ino;
    copyFileSync(atA, later);
    // a newer point arrives meanwhile: disk 2 still comes from the point that was latest at the first try
    const ds = await Datastore.open(dsDir);
    try {
      scatter(img, SIZE, 5, 77);
      await replicateOnce({
        item,
        disks: [img],
        stateDir: path.join(dir, "agent-state"),
        sink: new LocalSink(ds),
        consistency: "crash",
        snapshot: "none",
      });
    } finally {
      await ds.close();
    }
    const info = await provider.create(spec);
    assert.equal(statSync(disk0).ino, ino, "disk 0 was not made again");
    assert.ok(readFileSync(disk0).equals(readFileSync(atB)));
    assert.ok(readFileSync(info.disks[1]!).equals(readFileSync(atA)));
    assert.ok(
      readFileSync(info.disks[2]!).equals(readFileSync(atB)),
      "latest was resolved once, at the first try",
    );
  });

  test("delete stops and removes the folder, is idempotent; keepDisks keeps the images", async () => {
    await provider.start("vm-resume");
    await provider.delete("vm-resume", { timeoutMs: 5000 });
    assert.equal(existsSync(path.join(root, "vm-resume")), false);
    assert.equal(await provider.status("vm-resume"), null);
    await provider.delete("vm-resume");
    await provider.delete("never-existed");

    const adopted = path.join(dir, "adopted.img");
    await provider.delete("vm-run");
    assert.ok(existsSync(adopted), "an adopted disk is never deleted");
    assert.equal(existsSync(path.join(root, "vm-run")), false);

    const disk = path.join(root, "vm-a", "disk-0.img");
    await provider.delete("vm-a", { keepDisks: true });
    assert.equal(await provider.status("vm-a"), null);
    assert.ok(readFileSync(disk).equals(readFileSync(atA)), "the kept disk is intact");
    assert.deepEqual(readdirSync(path.join(root, "vm-a")), ["disk-0.img"], "only the disk images stay");
    await assert.rejects(
      provider.create({ id: "vm-a", name: "web1", disks: [pointDisk(pointB)], bootCommand: null }),
      (err: unknown) => code(err) === "INSTANCE_DISK_EXISTS",
    );
    const adoptedAgain = await provider.create({
      id: "vm-a",
      name: "web1",
      disks: [{ from: "adopt", path: disk }],
      bootCommand: null,
    });
    assert.deepEqual(adoptedAgain.disks, [disk]);
    await provider.delete("vm-a");
    assert.ok(existsSync(disk), "adopted, so kept");
    // deleting an instance that is gone removes the disks it left (disable forgets kept disks)
    await provider.delete("vm-a");
    assert.equal(existsSync(path.join(root, "vm-a")), false, "kept disks removed");
    await provider.delete("vm-a");
  });
});

// The write journal for image files (src/replication/journal.ts, docs/consistency.md): an image
// file on ext4 or XFS is traced through the device of the file system that holds it, and its
// extents place those writes in the file. Every way of changing the file that we can cause here
// must reach the next point: written and fsynced, written and left dirty, O_DIRECT, through a loop
// device that carries the file, into a hole, a hole punched, a range zeroed, space preallocated,
// the file replaced. After each, the latest point restored equals the file byte for byte, and the
// point read only about what changed. Where the journal cannot vouch (a file system on no single
// block device, data journalled first), the point reads the file whole and says why.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { test } from "node:test";
import { Datastore } from "../../src/datastore/datastore.ts";
import type { ItemName } from "../../src/domain/ids.ts";
import { changeJournalFactory } from "../../src/replication/journal.ts";
import { type ReplicateResult, replicateOnce } from "../../src/replication/replicate.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { LocalSink } from "../../src/replication/sink.ts";
import { findTracefs } from "../../src/replication/write-tracker.ts";
import { privilegedSkipReason } from "../helpers/env.ts";
import { journalStore, Scratch, sh } from "../helpers/privileged.ts";

const skip =
  privilegedSkipReason(["losetup", "mkfs.ext4", "mount", "fallocate", "dd"]) ||
  (findTracefs() === null ? "needs tracefs" : false);
const xfsSkip = skip || privilegedSkipReason(["mkfs.xfs"]);
const MIB = 1024 * 1024;
const BLOCK = 4096;
const item = "file-journal" as ItemName;

interface Rig {
  s: Scratch;
  file: string;
  point: () => Promise<ReplicateResult>;
  /** the latest point restored equals the file as it is now */
  assertLatestEqualsFile: (what: string) => Promise<void>;
}

/**
 * An image file of `mib` MiB inside a new file system of type `fs` on a loop device: random data
 * up to `dataMib`, a hole after it. Its datastore and agent state live outside that file system.
 */
async function rig(
  t: { after: (f: () => void | Promise<void>) => void },
  fs: "ext4" | "xfs",
  o: { mib?: number; dataMib?: number; mountOptions?: string; defaultOptions?: string } = {},
): Promise<Rig> {
  const mib = o.mib ?? 32;
  const s = new Scratch("sb-file-journal-");
  const image = s.image("fs.img", 320);
  const dev = s.attach(image);
  s.mkfs(dev, fs);
  // options the super block makes the default, which mountinfo then leaves out
  if (o.defaultOptions !== undefined) sh("tune2fs", ["-o", o.defaultOptions, dev]);
  let mnt: string;
  if (o.mountOptions === undefined) mnt = s.mount(dev, "mnt");
  else {
    // (Scratch.mount takes no options; unmounted by cleanup all the same, lazily at worst)
    mnt = s.path("mnt");
    sh("mkdir", ["-p", mnt]);
    sh("mount", ["-o", o.mountOptions, dev, mnt]);
    t.after(() => {
      spawnSync("umount", [mnt]);
    });
  }
  const file = `${mnt}/disk.img`;
  const fd = openSync(file, "w");
  try {
    writeSync(fd, randomBytes((o.dataMib ?? mib - 8) * MIB));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  sh("truncate", ["-s", `${mib}M`, file]);
  const { ds, state } = await journalStore(t, s);
  return {
    s,
    file,
    point: () =>
      replicateOnce({
        item,
        disks: [file],
        stateDir: state,
        sink: new LocalSink(ds),
        consistency: "crash",
        snapshot: "none",
        journal: changeJournalFactory("tracefs"),
      }),
    assertLatestEqualsFile: async (what) => {
      const out = s.path("restored.img");
      await restoreDisk(ds, { item, point: "latest", disk: 0, to: out, delta: false });
      assert.ok(
        readFileSync(out).equals(readFileSync(file)),
        `the latest point equals the file after ${what}`,
      );
    },
  };
}

/** Random 4 KiB blocks written at `blocks`, fsynced or left in the page cache. */
function pwrite(file: string, blocks: number[], fsync: boolean): void {
  const fd = openSync(file, "r+");
  try {
    for (const b of blocks) writeSync(fd, randomBytes(BLOCK), 0, BLOCK, b * BLOCK);
    if (fsync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** `n` distinct block numbers below `below`, at least `from`. */
function pick(n: number, below: number, from = 0): number[] {
  const s = new Set<number>();
  while (s.size < n) s.add(from + Math.floor(Math.random() * (below - from)));
  return [...s];
}

/** One incremental point that the journal narrowed down, read little, and equals the file. */
async function journaled(r: Rig, what: string, maxBlocksRead: number): Promise<ReplicateResult> {
  const p = await r.point();
  assert.equal(p.mode, "incremental", what);
  assert.deepEqual(p.warnings, [], what);
  assert.equal(p.journaledDisks, 1, `${what}: the journal vouched`);
  assert.ok(
    p.bytesRead <= maxBlocksRead * BLOCK,
    `${what}: read ${p.bytesRead} bytes, at most ${maxBlocksRead} blocks expected`,
  );
  await r.assertLatestEqualsFile(what);
  return p;
}

test("an image file on ext4 is journaled through its file system's device: every way of writing it reaches the next point", {
  skip,
}, async (t) => {
  const r = await rig(t, "ext4");
  const blocks = (32 * MIB) / BLOCK;
  const dataBlocks = (24 * MIB) / BLOCK;
  const first = await r.point();
  assert.equal(first.journaledDisks, 0, "the first point arms the journal and reads the file whole");
  assert.equal(first.bytesRead >= 32 * MIB, true);
  const quiet = await journaled(r, "nothing written", 0);
  assert.equal(quiet.bytesRead, 0);

  const fsynced = pick(40, dataBlocks);
  pwrite(r.file, fsynced, true);
  const p1 = await journaled(r, "pwrite + fsync", 40);
  assert.equal(p1.changedBlocks, 40);
  assert.equal(p1.bytesRead, 40 * BLOCK, "exactly the written blocks are read");

  // left dirty: the point writes the file's dirty pages out before it drains the trace
  pwrite(r.file, pick(25, dataBlocks), false);
  const p2 = await journaled(r, "pwrite left in the page cache", 25);
  assert.equal(p2.changedBlocks, 25);

  // O_DIRECT, past the page cache
  for (const b of pick(5, dataBlocks))
    sh("dd", [
      "if=/dev/urandom",
      `of=${r.file}`,
      "bs=4096",
      `seek=${b}`,
      "count=1",
      "oflag=direct",
      "conv=notrunc",
      "status=none",
    ]);
  const p3 = await journaled(r, "O_DIRECT writes", 5);
  assert.equal(p3.changedBlocks, 5);

  // through a loop device that carries the file
  const loop = r.s.attach(r.file);
  for (const b of pick(6, dataBlocks))
    sh("dd", [
      "if=/dev/urandom",
      `of=${loop}`,
      "bs=4096",
      `seek=${b}`,
      "count=1",
      "oflag=direct",
      "status=none",
    ]);
  r.s.detach(loop);
  const p4 = await journaled(r, "writes through a loop device on the file", 6);
  assert.equal(p4.changedBlocks, 6);

  // into the hole: new extents
  pwrite(r.file, pick(10, blocks, dataBlocks), true);
  await journaled(r, "writes into the hole", 10 + 64);

  // a hole punched and a range zeroed: no data written, the extents change
  sh("fallocate", ["-p", "-o", String(100 * BLOCK), "-l", String(16 * BLOCK), r.file]);
  await journaled(r, "a hole punched", 16);
  sh("fallocate", ["-z", "-o", String(300 * BLOCK), "-l", String(64 * BLOCK), r.file]);
  await journaled(r, "a range zeroed", 64);

  // space preallocated in the hole (unwritten extents read as zeros): read once, then no more
  sh("fallocate", ["-o", String(26 * MIB), "-l", String(2 * MIB), r.file]);
  await journaled(r, "space preallocated", (2 * MIB) / BLOCK);
  const after = await journaled(r, "nothing written after the preallocation", 0);
  assert.equal(after.bytesRead, 0, "unwritten extents at the same place are not read again");
  pwrite(r.file, pick(3, (28 * MIB) / BLOCK, (26 * MIB) / BLOCK), true);
  await journaled(r, "writes into the preallocated space", 3);

  // several of them at once, left dirty
  pwrite(r.file, pick(30, dataBlocks), false);
  sh("fallocate", ["-p", "-o", String(2 * MIB), "-l", String(MIB), r.file]);
  pwrite(r.file, pick(4, blocks, dataBlocks), false);
  await journaled(r, "writes, a punch and writes into the hole together", 30 + 256 + 4 + 64);

  // the file replaced by another (a new inode): read whole once, journaled again after
  const copy = `${r.file}.new`;
  writeFileSync(copy, readFileSync(r.file));
  pwrite(copy, [7], true);
  renameSync(copy, r.file);
  const replaced = await r.point();
  assert.equal(replaced.journaledDisks, 0, "another file: read whole");
  assert.match(replaced.warnings.join("\n"), /changed since write journal/);
  await r.assertLatestEqualsFile("the file replaced");
  pwrite(r.file, pick(2, dataBlocks), true);
  await journaled(r, "writes to the new file", 2);
});

test("an image file on XFS is journaled the same way", { skip: xfsSkip }, async (t) => {
  const r = await rig(t, "xfs");
  const dataBlocks = (24 * MIB) / BLOCK;
  await r.point();
  await journaled(r, "nothing written", 0);
  pwrite(r.file, pick(20, dataBlocks), true);
  assert.equal((await journaled(r, "pwrite + fsync", 20)).changedBlocks, 20);
  pwrite(r.file, pick(20, dataBlocks), false);
  await journaled(r, "pwrite left in the page cache", 20);
  sh("fallocate", ["-p", "-o", String(200 * BLOCK), "-l", String(8 * BLOCK), r.file]);
  await journaled(r, "a hole punched", 8);
  sh("fallocate", ["-o", String(25 * MIB), "-l", String(MIB), r.file]);
  await journaled(r, "space preallocated", MIB / BLOCK);
  await journaled(r, "nothing written after the preallocation", 0);
});

test("where the journal cannot vouch for an image file, the point reads it whole and says why", {
  skip,
}, async (t) => {
  // data journalled first (data=journal): a write reaches its place only at a later checkpoint
  const dj = await rig(t, "ext4", { mountOptions: "data=journal" });
  await dj.point();
  pwrite(dj.file, [1, 2, 3], true);
  const p = await dj.point();
  assert.equal(p.journaledDisks, 0);
  assert.ok(p.bytesRead >= 32 * MIB, "read whole");
  assert.match(p.warnings.join("\n"), /no write journal: .*mounted with data=journal/);
  await dj.assertLatestEqualsFile("writes under data=journal");
  // the same as the super block's default: not in mountinfo, still refused
  const dd = await rig(t, "ext4", { defaultOptions: "journal_data" });
  await dd.point();
  pwrite(dd.file, [4, 5], true);
  const q0 = await dd.point();
  assert.equal(q0.journaledDisks, 0);
  assert.match(q0.warnings.join("\n"), /no write journal: .*mounted with data=journal/);
  await dd.assertLatestEqualsFile("writes under data=journal by default");

  // a file system on no block device (tmpfs)
  const s = new Scratch("sb-file-journal-tmpfs-");
  const ds = await Datastore.init(s.path("ds"));
  t.after(async () => {
    await ds.close();
    spawnSync("umount", [s.path("tmp")]);
    s.cleanup();
  });
  sh("mkdir", ["-p", s.path("tmp")]);
  sh("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", s.path("tmp")]);
  const file = s.path("tmp", "disk.img");
  writeFileSync(file, randomBytes(8 * MIB));
  const take = () =>
    replicateOnce({
      item,
      disks: [file],
      stateDir: s.path("state"),
      sink: new LocalSink(ds),
      consistency: "crash",
      snapshot: "none",
      journal: changeJournalFactory("tracefs"),
    });
  await take();
  const q = await take();
  assert.equal(q.journaledDisks, 0);
  assert.match(
    q.warnings.join("\n"),
    /no write journal: the file system that holds .* is not on one block device/,
  );
});

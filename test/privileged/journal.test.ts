// The write journal between points (src/replication/journal.ts) on a real loop device: a point reads
// only what was written since the last one and still equals the disk; a point that fails leaves what
// it drained for the next; whatever breaks the chain (the instance gone, an event disabled, another
// device) makes a point read the whole disk and stay correct; strays are swept.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmdirSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Datastore } from "../../src/datastore/datastore.ts";
import type { ItemName } from "../../src/domain/ids.ts";
import { takeLock } from "../../src/platform/process.ts";
import { inspectDisk } from "../../src/replication/disk-source.ts";
import {
  type ChangeJournalFactory,
  changeJournalFactory,
  journalPending,
  removeJournal,
  sweepJournals,
} from "../../src/replication/journal.ts";
import { type ReplicateResult, replicateOnce } from "../../src/replication/replicate.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { LocalSink, type PointSink } from "../../src/replication/sink.ts";
import { nativeUnitPass } from "../../src/replication/unit-pass.ts";
import { findTracefs } from "../../src/replication/write-tracker.ts";
import { privilegedSkipReason } from "../helpers/env.ts";
import { journalStore, Scratch } from "../helpers/privileged.ts";
import { killChildren, spawnCli, startServer } from "../helpers/processes.ts";

/** What a point that reads a disk whole reads: with the addon, the disk, then its changed blocks again (unit-pass.ts). */
function wholeRead(size: number, changedBlocks: number): number {
  return nativeUnitPass() ? size + changedBlocks * 4096 : size;
}

const skip = privilegedSkipReason(["losetup"]) || (findTracefs() === null ? "needs tracefs" : false);
const MIB = 1024 * 1024;
const item = "journal" as ItemName;

interface Rig {
  s: Scratch;
  ds: Datastore;
  image: string;
  dev: string;
  state: string;
  point: (sink?: PointSink) => Promise<ReplicateResult>;
  /** writes `n` random 4 KiB blocks through the device at random places, fsynced; returns their numbers */
  write: (n: number) => number[];
  /** the latest point restored equals what the device holds now */
  assertLatestEqualsDisk: () => Promise<void>;
}

/** A crash-consistent point of `disks` (snapshot none) with the write journal required. */
function takePoint(
  ds: Datastore,
  disks: string[],
  stateDir: string,
  sink?: PointSink,
  name: ItemName = item,
  maxAgeMs?: number,
): Promise<ReplicateResult> {
  return replicateOnce({
    item: name,
    disks,
    stateDir,
    sink: sink ?? new LocalSink(ds),
    consistency: "crash",
    snapshot: "none",
    journal: changeJournalFactory("tracefs", maxAgeMs),
  });
}

async function rig(t: { after: (f: () => void | Promise<void>) => void }, mib = 64): Promise<Rig> {
  const s = new Scratch("sb-journal-");
  const image = s.image("disk.img", mib);
  writeFileSync(image, randomBytes(mib * MIB)); // every block holds data, none is zero
  const dev = s.attach(image);
  const { ds, state } = await journalStore(t, s);
  const blocks = (mib * MIB) / 4096;
  return {
    s,
    ds,
    image,
    dev,
    state,
    point: (sink) => takePoint(ds, [dev], state, sink),
    write: (n) => {
      const fd = openSync(dev, "r+");
      const picked = new Set<number>();
      while (picked.size < n) picked.add(Math.floor(Math.random() * blocks));
      try {
        for (const b of picked) writeSync(fd, randomBytes(4096), 0, 4096, b * 4096);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      return [...picked];
    },
    assertLatestEqualsDisk: async () => {
      const out = s.path("restored.img");
      await restoreDisk(ds, { item, point: "latest", disk: 0, to: out, delta: false });
      assert.ok(readFileSync(out).equals(readFileSync(image)), "the latest point equals the disk");
    },
  };
}

function journalFile(state: string): {
  instance: string;
  coversSince: string | null;
  pendingBytes: number;
} {
  return JSON.parse(readFileSync(path.join(state, "journal.json"), "utf8"));
}

test("after the first point, a point reads only the units written since the last one", {
  skip,
}, async (t) => {
  const r = await rig(t);
  const first = await r.point();
  assert.equal(first.mode, "full");
  assert.equal(first.journaledDisks, 0, "the first point arms the journal and reads everything");
  assert.equal(first.bytesRead, 64 * MIB);

  const written = r.write(20);
  const second = await r.point();
  assert.equal(second.mode, "incremental");
  assert.equal(second.journaledDisks, 1);
  assert.equal(second.changedBlocks, 20);
  assert.equal(second.bytesRead, 20 * 4096, "only the written blocks are read");
  assert.deepEqual(second.warnings, []);
  await r.assertLatestEqualsDisk();
  assert.equal(written.length, 20);

  const quiet = await r.point();
  assert.equal(quiet.journaledDisks, 1);
  assert.equal(quiet.bytesRead, 0, "nothing written, nothing read");
  assert.equal(quiet.changedBlocks, 0);
  assert.equal(journalFile(r.state).coversSince, quiet.pointId);
});

test("a point that fails keeps what it drained for the next one", { skip }, async (t) => {
  const r = await rig(t);
  await r.point();
  const before = r.write(12);
  await assert.rejects(r.point(commitFails(r.ds)), /went away/);
  const pending = journalPending(r.state, 1)![0]!;
  assert.ok(pending.length > 0, "the drained blocks wait in journal.pending");
  const since = r.write(5);
  const next = await r.point();
  assert.equal(next.journaledDisks, 1);
  assert.equal(
    next.changedBlocks,
    new Set([...before, ...since]).size,
    "the failed point's blocks and those since",
  );
  await r.assertLatestEqualsDisk();
  assert.deepEqual(journalPending(r.state, 1), [[]]);
});

test("a journal that cannot vouch makes the point read the whole disk, and a new one is armed", {
  skip,
}, async (t) => {
  const tracefs = findTracefs()!;
  const r = await rig(t);
  await r.point();

  // the instance removed behind the agent's back
  rmdirSync(path.join(tracefs, "instances", journalFile(r.state).instance));
  r.write(7);
  const gone = await r.point();
  assert.equal(gone.journaledDisks, 0);
  assert.equal(gone.bytesRead, wholeRead(64 * MIB, 7));
  assert.equal(gone.changedBlocks, 7);
  assert.match(gone.warnings.join("\n"), /was gone; the disks are read whole/);
  await r.assertLatestEqualsDisk();

  // an event switched off: writes may have gone unrecorded
  const { instance } = journalFile(r.state);
  writeFileSync(
    path.join(tracefs, "instances", instance, "events", "block", "block_bio_queue", "enable"),
    "0",
  );
  r.write(3);
  const off = await r.point();
  assert.equal(off.journaledDisks, 0);
  assert.equal(off.changedBlocks, 3);
  assert.match(off.warnings.join("\n"), /lost track of writes/);
  assert.ok(!existsSync(path.join(tracefs, "instances", instance)), "the broken instance is removed");
  await r.assertLatestEqualsDisk();

  // the disk now on another loop device: the journal watched the old one
  r.s.detach(r.dev);
  const again = r.s.attach(r.image);
  const moved = await takePoint(r.ds, [again], r.state);
  assert.equal(moved.journaledDisks, 0, "another device: read whole");
  assert.match(moved.warnings.join("\n"), /devices of the disks changed/);
  const back = await takePoint(r.ds, [again], r.state);
  assert.equal(back.journaledDisks, 1, "and journaled again from then on");
});

test("journal instances nobody owns are swept", { skip }, async (t) => {
  const tracefs = findTracefs()!;
  const stray = path.join(tracefs, "instances", "switchback-journal-0123456789ab");
  const r = await rig(t);
  await r.point();
  if (!existsSync(stray)) mkdirSync(stray); // an instance no journal file names
  const { instance } = journalFile(r.state);
  const removed = sweepJournals();
  assert.ok(removed.includes("switchback-journal-0123456789ab"));
  assert.ok(!removed.includes(instance), "the rig's own journal is kept");
  assert.ok(existsSync(path.join(tracefs, "instances", instance)));
  // (image files have their own journal, through their file system: file-journal.test.ts)
});

test("one point at a time per agent state; a second loop device on the backing file, or a damaged file, means no journal", {
  skip,
}, async (t) => {
  const r = await rig(t);
  await r.point();

  // someone else holds the state's journal lock (taken here through another open file, which a
  // flock(2) lock treats as another holder): this point reads whole and leaves the journal be
  const lock = path.join(r.state, "journal.lock");
  const other = takeLock(lock);
  assert.ok(other !== null);
  const { instance } = journalFile(r.state);
  r.write(4);
  const locked = await r.point();
  other.release();
  assert.equal(locked.journaledDisks, 0);
  assert.match(locked.warnings.join("\n"), /another process .* is taking a point/);
  assert.equal(journalFile(r.state).instance, instance, "the journal was not touched");
  // a lock file left by a process that is gone is taken over
  writeFileSync(lock, "999999999");
  r.write(4);
  const after = await r.point();
  assert.deepEqual(after.warnings, []);
  assert.equal(after.journaledDisks, 0, "the locked point did not advance the journal: re-armed");
  const probe = takeLock(lock);
  assert.ok(probe !== null, "released after the point");
  probe.release();
  const again = await r.point();
  assert.equal(again.journaledDisks, 1);

  // a journal.json of the wrong shape: re-armed, nothing thrown
  writeFileSync(
    path.join(r.state, "journal.json"),
    JSON.stringify({ ...journalFile(r.state), pendingBytes: "many" }),
  );
  r.write(2);
  const damaged = await r.point();
  assert.equal(damaged.journaledDisks, 0);
  assert.equal(damaged.changedBlocks, 2);
  await r.assertLatestEqualsDisk();

  // a pending file cut short (what a point drained is in it): the journal cannot vouch
  r.write(2);
  await assert.rejects(r.point(commitFails(r.ds)), /went away/);
  const { pendingBytes } = journalFile(r.state);
  assert.ok(pendingBytes > 40, "the failed point's drain is pending");
  truncateSync(path.join(r.state, "journal.pending"), pendingBytes - 16);
  const cut = await r.point();
  assert.equal(cut.journaledDisks, 0);
  assert.match(cut.warnings.join("\n"), /cannot read its journal.pending/);
  assert.equal(cut.changedBlocks, 2);
  await r.assertLatestEqualsDisk();

  // another loop device on the same backing file: its writes would reach the file unseen
  const second = r.s.attach(r.image);
  r.write(3);
  const shared = await r.point();
  assert.equal(shared.journaledDisks, 0);
  assert.match(shared.warnings.join("\n"), new RegExp(`loop device ${second} shares the backing file`));
  await r.assertLatestEqualsDisk();
});

test("a journal is trusted for a day at most: then one point reads the disks whole and arms a new one", {
  skip,
}, async (t) => {
  const r = await rig(t);
  await r.point();
  r.write(6);
  const { instance } = journalFile(r.state);
  await new Promise((res) => setTimeout(res, 5));
  const check = await takePoint(r.ds, [r.dev], r.state, undefined, item, 1); // "a day" is 1 ms here
  assert.equal(check.journaledDisks, 0);
  assert.equal(check.bytesRead, wholeRead(64 * MIB, 6));
  assert.equal(check.changedBlocks, 6);
  assert.match(check.warnings.join("\n"), /is older than 0 h: the disks are read whole once, as a check/);
  assert.notEqual(journalFile(r.state).instance, instance, "a new journal");
  r.write(2);
  const next = await r.point();
  assert.equal(next.journaledDisks, 1);
  assert.equal(next.changedBlocks, 2);
  await r.assertLatestEqualsDisk();
});

test("between points, absorb drains a filling trace buffer into the journal file, so more writes than the buffer holds still reach the next point", {
  skip,
}, async (t) => {
  // a trace buffer of 16 KiB per CPU holds a few hundred events; 1,200 writes in bursts are more
  const small = (r: Rig, absorb: boolean) => async (): Promise<ReplicateResult> => {
    const journal = changeJournalFactory("tracefs", undefined, 16)!;
    const p = await takePointWith(r, journal);
    const blocks = new Set<number>();
    for (let burst = 0; burst < 12; burst++) {
      for (const b of r.write(100)) blocks.add(b);
      if (absorb) {
        const j = await journal(r.state, [inspectDisk(r.dev)]);
        assert.equal(await j!.absorb!(), null);
      }
    }
    const next = await takePointWith(r, journal);
    assert.equal(next.parent, p.pointId);
    assert.equal(next.changedBlocks, blocks.size);
    await r.assertLatestEqualsDisk();
    return next;
  };
  const without = await small(await rig(t), false)();
  assert.equal(without.journaledDisks, 0, "the buffer overflowed: read whole");
  assert.match(without.warnings.join("\n"), /lost track of writes .*lost \d+ event/);

  const r = await rig(t);
  const absorbed = await small(r, true)();
  assert.equal(absorbed.journaledDisks, 1, "absorbed in time: the journal vouches");
  assert.deepEqual(absorbed.warnings, []);
  assert.ok(absorbed.bytesRead <= 1200 * 4096);

  // below a quarter full, absorb leaves the trace and the file alone
  const before = readFileSync(path.join(r.state, "journal.json"), "utf8");
  r.write(1);
  const j = await changeJournalFactory("tracefs")!(r.state, [inspectDisk(r.dev)]);
  assert.equal(await j!.absorb!(), null);
  assert.equal(readFileSync(path.join(r.state, "journal.json"), "utf8"), before);
});

/** A first point (arming) or the next one, with the given journal factory. */
function takePointWith(r: Rig, journal: ChangeJournalFactory): Promise<ReplicateResult> {
  return replicateOnce({
    item,
    disks: [r.dev],
    stateDir: r.state,
    sink: new LocalSink(r.ds),
    consistency: "crash",
    snapshot: "none",
    journal,
  });
}

test("the agent daemon drains a filling journal between points: points far apart, more writes than the trace buffer holds, still journaled", {
  skip,
}, async (t) => {
  const s = new Scratch("sb-journal-agent-");
  const image = s.image("disk.img", 64);
  writeFileSync(image, randomBytes(64 * MIB));
  const dev = s.attach(image);
  const dsPath = s.path("ds");
  await (await Datastore.init(dsPath)).close();
  const token = "journal-agent-token-0123456789";
  writeFileSync(s.path("token"), token);
  writeFileSync(
    s.path("tokens.json"),
    JSON.stringify({ version: 1, agents: [{ name: "a", token, items: [item] }] }),
  );
  t.after(() => {
    killChildren();
    removeJournal(s.path("state", item));
    s.cleanup();
  });
  const server = await startServer(dsPath, s.path("tokens.json"));
  const agent = spawnCli([
    "agent",
    ...["--server", server.url, "--token-file", s.path("token"), "--item", item],
    ...["--disk", dev, "--state", s.path("state"), "--snapshot", "none"],
    ...["--crash-every", "12s", "--journal-buffer", "16K"],
  ]);
  const committed = (l: string) => l.includes('"msg":"point committed"');
  const first = await agent.waitForLine(committed, 60_000, "the first point");
  // 800 writes over 8 s: ~80 kB of trace events, where two CPUs' buffers hold 32 KiB
  const written = new Set<number>();
  const fd = openSync(dev, "r+");
  try {
    for (let burst = 0; burst < 16; burst++) {
      for (let k = 0; k < 50; k++) {
        const b = Math.floor(Math.random() * 16384);
        writeSync(fd, randomBytes(4096), 0, 4096, b * 4096);
        written.add(b);
      }
      fsyncSync(fd);
      await new Promise((res) => setTimeout(res, 500));
    }
  } finally {
    closeSync(fd);
  }
  const second = JSON.parse(
    await agent.waitForLine((l) => committed(l) && l !== first, 30_000, "the second point"),
  ) as { journaledDisks: number; changedBlocks: number; bytesRead: number; warnings: string[] };
  assert.deepEqual(second.warnings, []);
  assert.equal(second.journaledDisks, 1, "the journal vouched: the daemon drained it between points");
  assert.equal(second.changedBlocks, written.size);
  assert.ok(second.bytesRead <= written.size * 4096);
  assert.ok(!agent.lines.some((l) => l.includes('"msg":"write journal')), agent.lines.join("\n"));
  agent.child.kill("SIGKILL");
  server.child.kill("SIGKILL");
  await Promise.all([agent.exited, server.exited]);
  const ds = await Datastore.open(dsPath);
  try {
    const out = s.path("restored.img");
    await restoreDisk(ds, { item, point: "latest", disk: 0, to: out, delta: false });
    assert.ok(readFileSync(out).equals(readFileSync(image)), "the latest point equals the disk");
  } finally {
    await ds.close();
  }
});

/** A sink that does everything a point needs but commit it. */
function commitFails(ds: Datastore): PointSink {
  const s = new LocalSink(ds);
  return {
    target: s.target,
    latestPoint: (i) => s.latestPoint(i),
    digests: (i, p, d, from, count) => s.digests(i, p, d, from, count),
    missing: (h) => s.missing(h),
    send: (f, k) => s.send(f, k),
    commit: async () => {
      throw new Error("the process server went away");
    },
    close: () => s.close(),
  };
}

test("a point whose pass outlasts the trace buffer drains it while it runs, and keeps what it drained after its own drain for the next point", {
  skip,
}, async (t) => {
  const r = await rig(t);
  // a pass of ~6 s (each batch's question answered after 200 ms) while another process writes 800
  // blocks over ~4 s: ~80 kB of trace events; with 64 KiB per CPU the point's drains (at a quarter
  // full, every second) keep up with room to spare on a loaded machine (16 KiB did not always), and
  // what they drained must be pending after the commit
  const journal = changeJournalFactory("tracefs", undefined, 64)!;
  const local = new LocalSink(r.ds);
  const slow: PointSink = {
    target: local.target,
    latestPoint: (i) => local.latestPoint(i),
    digests: (i, p, d, from, count) => local.digests(i, p, d, from, count),
    missing: async (h) => {
      await new Promise((res) => setTimeout(res, 200));
      return local.missing(h);
    },
    send: (f, k) => local.send(f, k),
    commit: (m) => local.commit(m),
    close: () => local.close(),
  };
  const writer = spawn(process.execPath, [
    "-e",
    `const fs = require("node:fs"), { randomBytes } = require("node:crypto");
     const fd = fs.openSync(${JSON.stringify(r.dev)}, "r+");
     for (let burst = 0; burst < 16; burst++) {
       for (let k = 0; k < 50; k++) fs.writeSync(fd, randomBytes(4096), 0, 4096, Math.floor(Math.random() * 16384) * 4096);
       fs.fsyncSync(fd);
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
     }`,
  ]);
  const wrote = new Promise<number | null>((res) => writer.on("exit", res));
  const first = await replicateOnce({
    item,
    disks: [r.dev],
    stateDir: r.state,
    sink: slow,
    consistency: "crash",
    snapshot: "none",
    journal,
  });
  assert.equal(await wrote, 0, "the writer finished");
  assert.ok(first.durationMs > 4500, `the pass outlasted the writer (${first.durationMs} ms)`);
  assert.deepEqual(first.warnings, []);
  assert.ok(
    (journalPending(r.state, 1)![0] ?? []).length > 0,
    "what was drained during the point is pending",
  );
  const next = await takePointWith(r, journal);
  assert.deepEqual(next.warnings, []);
  assert.equal(next.journaledDisks, 1, "the journal vouched: drained while the long point ran");
  await r.assertLatestEqualsDisk();
});

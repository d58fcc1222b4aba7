// The SQLite workload of the end-to-end DR test (scripts/sql-workload.ts) as a real process on a real
// file system: it acknowledges only committed rows, survives kill -9 at random moments with its
// manifest intact and carries on after the highest row it finds, keeps drill acks apart, and its
// check catches a flipped byte, a lost file, a bad row and a gap.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { test } from "node:test";
import { checkWorkload, readAcks, type WorkloadStatus } from "../../scripts/sql-workload.ts";
import { ROOT, tempDir } from "../helpers/env.ts";

const SCRIPT = path.join(ROOT, "scripts/sql-workload.ts");

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Running {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

function start(env: Record<string, string>): Running {
  const child = spawn(process.execPath, [SCRIPT], {
    env: { ...process.env, WORKLOAD_EVERY_MS: "5", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, output: () => output };
}

async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function status(port: number): Promise<WorkloadStatus> {
  const r = await fetch(`http://127.0.0.1:${port}/status`);
  assert.equal(r.status, 200);
  return (await r.json()) as WorkloadStatus;
}

/** The files of the tree that are not temporaries, relative to the root. */
function treeFiles(root: string): string[] {
  return (readdirSync(path.join(root, "files"), { recursive: true }) as string[])
    .filter((f) => f.endsWith(".txt") && !path.basename(f).startsWith("."))
    .map((f) => path.join("files", f));
}

/** A root, an ack log and a port; kills whatever is still running when the test ends. */
async function setup(t: { after: (fn: () => void) => void }) {
  const tmp = tempDir("sb-sql-workload-");
  const root = path.join(tmp.dir, "data");
  mkdirSync(root);
  const ack = path.join(tmp.dir, "acks.log");
  const port = await freePort();
  const running: Running[] = [];
  t.after(() => {
    for (const r of running)
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL");
    tmp.cleanup();
  });
  const run = (env: Record<string, string> = {}) => {
    const r = start({ WORKLOAD_ROOT: root, WORKLOAD_ACK: ack, WORKLOAD_LISTEN: `127.0.0.1:${port}`, ...env });
    running.push(r);
    return r;
  };
  return { root, ack, port, run };
}

test("runs, acknowledges committed rows, answers /status and stops on SIGTERM", async (t) => {
  const { root, ack, port, run } = await setup(t);
  const w = run({ SWITCHBACK_SITE: "east", SWITCHBACK_INSTANCE: "i-1" });
  await waitFor("50 acks", () => readAcks(ack).length >= 50);

  const health = await fetch(`http://127.0.0.1:${port}/health`);
  assert.equal(health.status, 200);
  assert.equal(await health.text(), "ok");
  assert.equal((await fetch(`http://127.0.0.1:${port}/nothing`)).status, 404);
  const s = await status(port);
  assert.equal(s.check.ok, true, JSON.stringify(s.check));
  assert.equal(s.bootCheck.ok, true, "an empty database checks ok");
  assert.deepEqual(
    [s.site, s.instance, s.drill, s.listen, s.bootMaxSeq],
    ["east", "i-1", false, `127.0.0.1:${port}`, 0],
  );
  assert.ok(s.maxSeq >= 50 && s.rows === s.maxSeq);

  const stopAt = Date.now();
  w.child.kill("SIGTERM");
  const end = await w.exited;
  assert.deepEqual(end, { code: 0, signal: null }, w.output());
  assert.ok(Date.now() - stopAt < 2000, `stopped in ${Date.now() - stopAt} ms`);
  assert.match(w.output(), /started root=.* listen=127\.0\.0\.1:\d+ bootMaxSeq=0/);
  assert.match(w.output(), /stopped \(SIGTERM\)/);

  const acks = readAcks(ack);
  const c = checkWorkload(root);
  assert.equal(c.ok, true, JSON.stringify(c));
  assert.ok((c.maxSeq ?? 0) >= (acks.at(-1)?.seq ?? Infinity));
  assert.deepEqual(
    acks.map((a) => a.seq),
    acks.map((_, i) => i + 1),
    "one ack per seq, in order",
  );
  assert.ok(acks.every((a) => a.site === "east" && a.instance === "i-1" && a.atMs !== null));
  // a rewrite deletes the file it replaced once committed: the tree holds exactly the manifest
  const tree = treeFiles(root);
  assert.equal(tree.length, c.manifestEntries);
  assert.ok(
    tree.some((f) => /\.v\d+\.txt$/.test(f)),
    "every 10th seq rewrites an older file as a new version",
  );
});

test("kill -9 at random moments: the copy left behind checks ok and the service carries on after it", async (t) => {
  const { root, ack, port, run } = await setup(t);
  let checkedMax = 0;
  for (let round = 0; round < 5; round++) {
    const w = run({ SWITCHBACK_INSTANCE: `i-${round}` });
    await waitFor("the service to answer", () => w.output().includes("started"));
    const s = await status(port);
    assert.equal(s.bootMaxSeq, checkedMax, `round ${round}: continues after the highest row it found`);
    assert.equal(s.bootCheck.ok, true, JSON.stringify(s.bootCheck));
    const before = readAcks(ack).length;
    await waitFor("more acks", () => readAcks(ack).length >= before + 12);
    await new Promise((r) => setTimeout(r, Math.random() * 40));
    w.child.kill("SIGKILL");
    assert.equal((await w.exited).signal, "SIGKILL");

    const c = checkWorkload(root);
    assert.equal(c.ok, true, `round ${round}: ${JSON.stringify(c)}`);
    assert.ok(c.maxSeq !== null && c.maxSeq > checkedMax, "it wrote rows after the restart, unbroken");
    const acks = readAcks(ack);
    assert.ok(
      acks.every((a) => a.seq <= (c.maxSeq as number)),
      "every acknowledged row is in the database",
    );
    assert.ok(
      acks.every((a, i) => i === 0 || a.seq > (acks[i - 1] as { seq: number }).seq),
      "acks only go up",
    );
    checkedMax = c.maxSeq;
  }
  const last = run();
  await waitFor("the service to answer", () => last.output().includes("started"));
  assert.equal((await status(port)).bootMaxSeq, checkedMax);
  last.child.kill("SIGTERM");
  assert.equal((await last.exited).code, 0);
});

test("a drill copy (SWITCHBACK_DRILL=1) acknowledges to <ack>.drill only", async (t) => {
  const { ack, port, run } = await setup(t);
  const w = run({ SWITCHBACK_DRILL: "1" });
  await waitFor("drill acks", () => readAcks(`${ack}.drill`).length >= 5);
  assert.equal((await status(port)).drill, true);
  w.child.kill("SIGTERM");
  assert.equal((await w.exited).code, 0);
  assert.equal(existsSync(ack), false, "the production log is untouched");
});

test("without WORKLOAD_ROOT, or with one that is not there, it refuses to start and names it", () => {
  const env: NodeJS.ProcessEnv = { ...process.env, WORKLOAD_ACK: "/tmp/sb-sql-workload-never.log" };
  delete env.WORKLOAD_ROOT;
  const unset = spawnSync(process.execPath, [SCRIPT], { env, encoding: "utf8", timeout: 10_000 });
  assert.notEqual(unset.status, 0);
  assert.match(unset.stderr, /WORKLOAD_ROOT/);
  const missing = spawnSync(process.execPath, [SCRIPT], {
    env: { ...env, WORKLOAD_ROOT: "/nonexistent/sb-data" },
    encoding: "utf8",
    timeout: 10_000,
  });
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /WORKLOAD_ROOT "\/nonexistent\/sb-data"/);
});

test("the check catches a flipped byte, a lost file, a bad row and a gap", async (t) => {
  const { root, ack, run } = await setup(t);
  const w = run();
  await waitFor("30 acks", () => readAcks(ack).length >= 30);
  w.child.kill("SIGTERM");
  assert.equal((await w.exited).code, 0);
  const cli = () =>
    spawnSync(process.execPath, [SCRIPT, "check", root], { encoding: "utf8", timeout: 10_000 });
  assert.equal(cli().status, 0);

  const db = new DatabaseSync(path.join(root, "app.db"));
  const [flipped, lost] = db
    .prepare("SELECT path FROM files ORDER BY seq DESC LIMIT 2")
    .all()
    .map((r) => r["path"] as string) as [string, string];
  db.prepare("UPDATE rows SET payload = 'tampered' WHERE seq = 3").run();
  db.prepare("DELETE FROM rows WHERE seq = 5").run();
  db.close();
  const f = path.join(root, flipped);
  const bytes = readFileSync(f);
  bytes[100] = (bytes[100] as number) ^ 1;
  writeFileSync(f, bytes);
  rmSync(path.join(root, lost));

  const c = checkWorkload(root);
  assert.equal(c.integrity, "ok");
  assert.deepEqual(c.manifestMismatched, [flipped]);
  assert.deepEqual(c.manifestMissing, [lost]);
  assert.equal(c.badChecksums, 1);
  assert.equal(c.unbroken, false);
  assert.equal(c.ok, false);
  const r = cli();
  assert.equal(r.status, 1);
  assert.equal(JSON.parse(r.stdout).ok, false);
  assert.equal(checkWorkload(path.join(root, "nothing-here")).ok, false, "no database is not ok");
});

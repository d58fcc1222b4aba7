// App-consistent points with real hooks on a real frozen ext4, hook failures and time limits, and the
// freeze watchdog: kill -9 of replicate-once while file systems are frozen leaves them thawed within
// the watchdog time.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { removeStaleInstances } from "../../src/replication/write-tracker.ts";
import { CLI, cliJson, privilegedSkipReason } from "../helpers/env.ts";
import { inspectRestored, Scratch } from "../helpers/privileged.ts";

const skip = privilegedSkipReason(["losetup", "mkfs.ext4", "mount", "fsfreeze", "e2fsck"]);

interface Rep {
  pointId: string;
  consistency: string;
  snapshot: string;
  warnings: string[];
  maxFreezeMs: number;
  durationMs: number;
  hooks: { phase: string; hook: string; ok: boolean; detail: string }[];
}

function hook(file: string, body: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
}

test("hooks: app-consistent point, failing hook, hook past its time limit", { skip }, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  const { dev, mnt } = s.ext4("app", 64);
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const rep = (extra: string[]) =>
    cliJson<Rep>([
      "replicate-once",
      "--datastore",
      ds,
      "--item",
      "app1",
      "--disk",
      dev,
      "--state",
      s.path("state"),
      ...extra,
    ]);

  // quiesce: the pre hook leaves a marker (flushed), the post hook removes it
  const good = s.path("hooks-good");
  const marker = path.join(mnt, "quiesced");
  hook(
    path.join(good, "pre-snapshot"),
    `echo "$SWITCHBACK_POINT_ID $SWITCHBACK_HOOK_PHASE" > ${marker} && sync -f ${marker}`,
  );
  hook(path.join(good, "post-snapshot.d", "10-resume"), `rm -f ${marker}`);
  const app = await rep(["--consistency", "app", "--hooks", good]);
  assert.equal(app.consistency, "app");
  assert.equal(app.snapshot, "freeze");
  assert.deepEqual(app.warnings, []);
  assert.equal(existsSync(marker), false, "the post-snapshot hook ran");
  const img = s.path("app.img");
  await cliJson([
    "restore",
    "--datastore",
    ds,
    "--item",
    "app1",
    "--point",
    app.pointId,
    "--disk",
    "0",
    "--to",
    img,
  ]);
  const inPoint = inspectRestored(s, img, (m) => readFileSync(path.join(m, "quiesced"), "utf8").trim());
  assert.equal(
    inPoint,
    `${app.pointId} pre-snapshot`,
    "the point was taken while the application was quiesced",
  );

  // a failing pre hook: the point is still taken, crash-consistent, with a warning naming the hook
  const bad = s.path("hooks-bad");
  hook(path.join(bad, "pre-snapshot.d", "10-flush-db"), 'echo "database refused to checkpoint" >&2; exit 3');
  const crash = await rep(["--consistency", "app", "--hooks", bad]);
  assert.equal(crash.consistency, "crash");
  assert.ok(
    crash.warnings.some((w) => w.includes("10-flush-db") && w.includes("database refused")),
    `warning names the hook: ${crash.warnings.join("; ")}`,
  );
  const list = await cliJson<{ id: string; consistency: string }[] | { points: { id: string }[] }>([
    "points",
    "list",
    "--datastore",
    ds,
    "--item",
    "app1",
  ]);
  assert.ok(JSON.stringify(list).includes(crash.pointId), "the point exists");

  // a hook past its time limit is killed (with its children) and yields a warning
  const slow = s.path("hooks-slow");
  hook(path.join(slow, "pre-snapshot"), `sleep 30 & sleep 30; touch ${path.join(mnt, "slow-finished")}`);
  const started = Date.now();
  const timed = await rep(["--consistency", "app", "--hooks", slow, "--hook-timeout", "1s"]);
  assert.ok(Date.now() - started < 15_000, "did not wait for the hook");
  assert.equal(timed.consistency, "crash");
  assert.ok(
    timed.warnings.some((w) => w.includes("pre-snapshot") && w.includes("did not finish within 1000 ms")),
    timed.warnings.join("; "),
  );
  assert.equal(existsSync(path.join(mnt, "slow-finished")), false);
});

test("freeze watchdog: kill -9 while frozen, the file system is thawed within the watchdog time", {
  skip,
}, async (t) => {
  const s = new Scratch();
  t.after(() => s.cleanup());
  t.after(() => removeStaleInstances()); // the killed process could not remove its tracefs instance
  const { dev, mnt } = s.ext4("wd", 64);
  const ds = s.path("ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const child = spawn(
    process.execPath,
    [
      CLI,
      "replicate-once",
      "--datastore",
      ds,
      "--item",
      "wd1",
      "--disk",
      dev,
      "--state",
      s.path("state"),
      "--json",
    ],
    {
      env: { ...process.env, SWITCHBACK_FAULT_PAUSE_FROZEN_MS: "120000" },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`never froze: ${stderr}`)), 30_000);
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes("fault injection: frozen")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const killedAt = Date.now();
  child.kill("SIGKILL");
  await closed;
  // a write to the file system blocks while it is frozen and goes through once the watchdog thaws it
  const probe = spawn("sh", [
    "-c",
    `echo probe > ${path.join(mnt, "probe")} && sync -f ${path.join(mnt, "probe")}`,
  ]);
  const wentThrough = await new Promise<boolean>((r) => {
    const limit = setTimeout(() => r(false), 20_000);
    probe.on("close", () => {
      clearTimeout(limit);
      r(true);
    });
  });
  if (!wentThrough) {
    spawnSync("fsfreeze", ["-u", mnt]); // let the probe and the clean-up finish
    assert.fail("the file system was still frozen 20 s after kill -9: the watchdog did not thaw it");
  }
  const thawedAfter = Date.now() - killedAt;
  console.log(
    `watchdog: write went through ${thawedAfter} ms after kill -9 (watchdog 10000 ms from the freeze)`,
  );
  assert.ok(
    thawedAfter > 1000,
    `the file system was frozen after the kill (write went through after ${thawedAfter} ms)`,
  );
  assert.ok(thawedAfter < 12_000, `thawed within the watchdog time (${thawedAfter} ms)`);
});

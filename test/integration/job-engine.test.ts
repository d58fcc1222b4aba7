// The durable job engine on a real SQLite file and a real PostgreSQL: steps in order with outputs,
// failure and retry, ITEM_BUSY, waitFor/signal across a restart, cancel rules, watch, and kill -9 of
// a real vault process resumed by another one after its lease expires.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Type } from "@sinclair/typebox";
import pino from "pino";
import { SwitchbackError } from "../../src/domain/errors.ts";
import { openDatabase, type VaultDb } from "../../src/vault/db/database.ts";
import { migrateToLatest } from "../../src/vault/db/migrations.ts";
import { JobEngine, type JobEngineOptions } from "../../src/vault/jobs/engine.ts";
import {
  defineJobKind,
  type JobEvent,
  type JobId,
  type JobState,
  type JobView,
  RetryableError,
} from "../../src/vault/jobs/types.ts";
import { appendKind } from "../fixtures/jobs/kinds.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { ROOT, tempDir } from "../helpers/env.ts";

const silent = pino({ level: "silent" });

/** How often each (job, step) ran in this process. */
const runs = new Map<string, number>();
function ran(jobId: string, step: string): number {
  const key = `${jobId}/${step}`;
  const n = (runs.get(key) ?? 0) + 1;
  runs.set(key, n);
  return n;
}
function count(jobId: string, step: string): number {
  return runs.get(`${jobId}/${step}`) ?? 0;
}

const chain = defineJobKind({
  kind: "chain",
  params: Type.Object({ n: Type.Integer() }),
  steps: () => [
    {
      name: "a",
      run: async (ctx) => {
        ran(ctx.jobId, "a");
        return { n: ctx.params.n };
      },
    },
    {
      name: "b",
      run: async (ctx) => {
        ran(ctx.jobId, "b");
        ctx.progress(0.5);
        ctx.log("info", "half way", { at: 0.5 });
        return (ctx.outputs["a"] as { n: number }).n + 1;
      },
    },
    {
      name: "c",
      run: async (ctx) => {
        ran(ctx.jobId, "c");
        return { sum: (ctx.outputs["b"] as number) + 1 };
      },
    },
  ],
});

/** Fails at step "middle" while failing.has(jobId), with a SwitchbackError or a plain Error. */
const failing = new Map<string, "switchback" | "plain">();
const flaky = defineJobKind({
  kind: "flaky",
  params: Type.Object({}),
  steps: () => [
    { name: "first", run: async (ctx) => ran(ctx.jobId, "first") },
    {
      name: "middle",
      run: async (ctx) => {
        ran(ctx.jobId, "middle");
        const how = failing.get(ctx.jobId);
        if (how === "switchback") throw new SwitchbackError("DISK_FULL", "datastore local-2 is full");
        if (how === "plain") throw new Error("socket hang up");
        return "ok";
      },
    },
    { name: "last", run: async (ctx) => ran(ctx.jobId, "last") },
  ],
});

const transient = defineJobKind({
  kind: "transient",
  params: Type.Object({ failures: Type.Integer() }),
  steps: () => [
    {
      name: "call",
      retries: 3,
      backoffMs: 10,
      run: async (ctx) => {
        if (ran(ctx.jobId, "call") <= ctx.params.failures) {
          throw new RetryableError("PEER_UNREACHABLE", "process server ps-1 did not answer");
        }
        return "answered";
      },
    },
  ],
});

const approval = defineJobKind({
  kind: "approval",
  params: Type.Object({ irreversibleFirst: Type.Boolean() }),
  steps: (p) => [
    { name: "prepare", irreversible: p.irreversibleFirst, run: async (ctx) => ran(ctx.jobId, "prepare") },
    {
      name: "approve",
      run: async (ctx) => {
        ran(ctx.jobId, "approve");
        return ctx.waitFor("go", "an operator must approve the failover");
      },
    },
    {
      name: "finish",
      run: async (ctx) => {
        ran(ctx.jobId, "finish");
        return ctx.outputs["approve"];
      },
    },
  ],
});

/** Step "block" runs until release.has(jobId) or the engine stops it. */
const release = new Set<string>();
const blocking = defineJobKind({
  kind: "blocking",
  params: Type.Object({}),
  steps: () => [
    {
      name: "block",
      run: async (ctx) => {
        ran(ctx.jobId, "block");
        while (!release.has(ctx.jobId)) await sleep(10, undefined, { signal: ctx.signal });
        return null;
      },
    },
    { name: "after", run: async (ctx) => ran(ctx.jobId, "after") },
  ],
});

const KINDS = [chain, flaky, transient, approval, blocking, appendKind];

async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function waitForState(engine: JobEngine, id: JobId, states: JobState[], ms = 10_000): Promise<JobView> {
  return waitUntil(
    `job ${id} to be ${states.join("/")}`,
    async () => {
      const j = await engine.get(id);
      return states.includes(j.state) ? j : undefined;
    },
    ms,
  );
}

function isCode(code: string) {
  return (e: unknown) => {
    assert.ok(e instanceof SwitchbackError, `expected SwitchbackError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

for (const d of databases) {
  describe(d.name, { skip: d.skip }, () => {
    let created: CreatedDatabase;
    let vdb: VaultDb;
    const engines: JobEngine[] = [];
    const engine = (owner: string, opts: Partial<JobEngineOptions> = {}) => {
      const e = new JobEngine({ vdb, owner, kinds: KINDS, leaseMs: 2000, pollMs: 50, log: silent, ...opts });
      engines.push(e);
      return e;
    };

    before(async () => {
      created = await d.create();
      vdb = await openDatabase(created.url);
      await migrateToLatest(vdb);
    });
    // a test that failed halfway leaves its engines running: stopped here, or they would take the next
    // tests' jobs from the shared database
    afterEach(async () => {
      for (const e of engines) await e.stop();
    });
    after(async () => {
      for (const e of engines) await e.stop();
      await vdb?.close();
      await created?.drop();
    });

    it("runs steps in order and passes each step's output on", async () => {
      const e = engine("v1");
      e.start();
      const job = await e.create("chain", { params: { n: 40 }, createdBy: "admin" });
      assert.equal(job.state, "queued");
      assert.deepEqual(
        job.steps.map((s) => [s.name, s.state]),
        [
          ["a", "pending"],
          ["b", "pending"],
          ["c", "pending"],
        ],
      );
      const done = await waitForState(e, job.id, ["succeeded", "failed"]);
      assert.equal(done.state, "succeeded", JSON.stringify(done.error));
      assert.equal(done.progress, 1);
      assert.deepEqual(
        done.steps.map((s) => s.output),
        [{ n: 40 }, 41, { sum: 42 }],
      );
      assert.ok(
        done.steps.every((s) => s.state === "succeeded" && s.attempts === 1 && s.durationMs !== null),
      );
      assert.ok(done.startedAt && done.finishedAt && done.durationMs !== null);
      const logs = await e.logs(done.id);
      assert.ok(
        logs.some((l) => l.message === "half way" && l.step === 1 && (l.data as { at: number }).at === 0.5),
      );
      assert.deepEqual(
        (await e.list({ state: "succeeded" })).map((j) => j.id),
        [job.id],
      );
      await e.stop();
    });

    it("refuses parameters that do not match the kind's schema, naming the field", async () => {
      const e = engine("v-params");
      await assert.rejects(e.create("chain", { params: { n: "forty" } }), (err: unknown) => {
        isCode("JOB_PARAMS_INVALID")(err);
        assert.match((err as Error).message, /params\.n/);
        return true;
      });
      await assert.rejects(e.create("no-such-kind", { params: {} }), isCode("JOB_KIND_UNKNOWN"));
    });

    it("fails the job with the step's code and message, runs no later step, and retries from the failed step", async () => {
      const finished: JobView[] = [];
      const e = engine("v-fail", { onFinished: (j) => void finished.push(j) });
      const job = await e.create("flaky", { params: {}, itemId: "item-fail" });
      failing.set(job.id, "switchback");
      e.start();
      const failed = await waitForState(e, job.id, ["failed", "succeeded"]);
      assert.equal(failed.state, "failed");
      assert.deepEqual(failed.error, { code: "DISK_FULL", message: "datastore local-2 is full" });
      assert.deepEqual(
        failed.steps.map((s) => s.state),
        ["succeeded", "failed", "pending"],
      );
      assert.equal(count(job.id, "last"), 0);
      assert.ok((await e.logs(job.id)).some((l) => l.level === "error" && /DISK_FULL/.test(l.message)));
      // the hook is told after the job's record is committed (which the wait above saw)
      for (let i = 0; i < 200 && finished.length === 0; i++) await sleep(25);
      assert.deepEqual(
        finished.map((j) => [j.id, j.state]),
        [[job.id, "failed"]],
      );

      await assert.rejects(e.retry("job-000000000000" as JobId), isCode("JOB_NOT_FOUND"));
      failing.set(job.id, "plain");
      await e.retry(job.id, "admin");
      const again = await waitForState(e, job.id, ["failed", "succeeded"]);
      assert.deepEqual(again.error, { code: "STEP_FAILED", message: "socket hang up" });

      failing.delete(job.id);
      await e.retry(job.id);
      const ok = await waitForState(e, job.id, ["succeeded", "failed"]);
      assert.equal(ok.state, "succeeded");
      assert.equal(count(job.id, "first"), 1);
      assert.equal(count(job.id, "middle"), 3);
      assert.equal(count(job.id, "last"), 1);
      assert.deepEqual(
        ok.steps.map((s) => s.attempts),
        [1, 3, 1],
      );
      await assert.rejects(e.retry(job.id), isCode("JOB_NOT_RETRYABLE"));
      await e.stop();
    });

    it("fails a job whose stored parameters no longer match its kind with DB_CORRUPT_ROW", async () => {
      const e = engine("v-corrupt");
      const job = await e.create("chain", { params: { n: 1 } });
      await vdb.db.updateTable("jobs").set({ params: '{"n":"one"}' }).where("id", "=", job.id).execute();
      e.start();
      const failed = await waitForState(e, job.id, ["failed", "succeeded"]);
      assert.equal(failed.error?.code, "DB_CORRUPT_ROW");
      assert.match(failed.error!.message, new RegExp(`jobs\\.params of row "${job.id}"`));
      assert.equal(count(job.id, "a"), 0);
      await e.stop();
    });

    it("retries a step on retryable errors up to its limit", async () => {
      const e = engine("v-transient");
      e.start();
      const ok = await e.create("transient", { params: { failures: 2 } });
      const okDone = await waitForState(e, ok.id, ["succeeded", "failed"]);
      assert.equal(okDone.state, "succeeded");
      assert.equal(okDone.steps[0]!.attempts, 3);
      const bad = await e.create("transient", { params: { failures: 10 } });
      const badDone = await waitForState(e, bad.id, ["succeeded", "failed"]);
      assert.equal(badDone.error?.code, "PEER_UNREACHABLE");
      assert.equal(badDone.steps[0]!.attempts, 4);
      await e.stop();
    });

    it("refuses a second unfinished job on one item with ITEM_BUSY naming the running job", async () => {
      const e = engine("v-busy");
      const first = await e.create("blocking", { params: {}, itemId: "item-busy" });
      await assert.rejects(e.create("chain", { params: { n: 1 }, itemId: "item-busy" }), (err: unknown) => {
        isCode("ITEM_BUSY")(err);
        assert.match((err as Error).message, new RegExp(`item-busy.*blocking job ${first.id}`));
        return true;
      });
      // other items and item-less jobs are not affected
      await e.create("chain", { params: { n: 1 }, itemId: "item-other" });
      await e.cancel(first.id);
      await e.create("chain", { params: { n: 1 }, itemId: "item-busy" });
    });

    it("parks a job on waitFor and resumes it on a signal, also in another engine after a restart", async () => {
      const e1 = engine("v-wait-1");
      e1.start();
      const job = await e1.create("approval", { params: { irreversibleFirst: false } });
      const waiting = await waitForState(e1, job.id, ["waiting"]);
      assert.equal(waiting.waitingFor, "go");
      assert.equal(waiting.lease, null);
      assert.equal(waiting.steps[1]!.state, "waiting");
      assert.ok(
        (await e1.logs(job.id)).some((l) =>
          /waiting for signal "go": an operator must approve/.test(l.message),
        ),
      );
      await e1.stop();

      // the signal is stored while no engine runs; a new engine (new owner) picks the job up
      const e2 = engine("v-wait-2");
      assert.equal(await e2.signal(job.id, "go", { approvedBy: "alice" }, "alice"), true);
      assert.equal(await e2.signal(job.id, "go", { approvedBy: "bob" }), false);
      e2.start();
      const done = await waitForState(e2, job.id, ["succeeded", "failed"]);
      assert.equal(done.state, "succeeded", JSON.stringify(done.error));
      assert.deepEqual(done.steps[2]!.output, { approvedBy: "alice" });
      assert.equal(count(job.id, "prepare"), 1);
      assert.equal(count(job.id, "approve"), 2);
      assert.equal(done.steps[1]!.attempts, 2);
      await assert.rejects(e2.signal(job.id, "go"), isCode("JOB_FINISHED"));

      // a signal sent before the step asks is found at once
      const early = await e2.create("approval", { params: { irreversibleFirst: false } });
      await e2.signal(early.id, "go", 7);
      assert.equal((await waitForState(e2, early.id, ["succeeded", "failed"])).steps[2]!.output, 7);
      await e2.stop();
    });

    it("cancels only before the first step or while waiting, never after an irreversible step", async () => {
      const e = engine("v-cancel");
      const queued = await e.create("chain", { params: { n: 1 }, itemId: "item-cancel" });
      const cancelled = await e.cancel(queued.id, "admin");
      assert.equal(cancelled.state, "cancelled");
      assert.ok(cancelled.steps.every((s) => s.state === "skipped"));
      await assert.rejects(e.cancel(queued.id), isCode("JOB_NOT_CANCELLABLE"));

      e.start();
      const running = await e.create("blocking", { params: {} });
      await waitUntil("block to start", async () => count(running.id, "block") > 0);
      await assert.rejects(e.cancel(running.id), (err: unknown) => {
        isCode("JOB_NOT_CANCELLABLE")(err);
        assert.match((err as Error).message, /running step "block"/);
        return true;
      });
      release.add(running.id);
      await waitForState(e, running.id, ["succeeded"]);

      const waiting = await e.create("approval", { params: { irreversibleFirst: false } });
      await waitForState(e, waiting.id, ["waiting"]);
      assert.equal((await e.cancel(waiting.id)).state, "cancelled");

      const pastNoReturn = await e.create("approval", { params: { irreversibleFirst: true } });
      await waitForState(e, pastNoReturn.id, ["waiting"]);
      await assert.rejects(e.cancel(pastNoReturn.id), (err: unknown) => {
        isCode("JOB_NOT_CANCELLABLE")(err);
        assert.match((err as Error).message, /"prepare" cannot be undone/);
        return true;
      });
      await e.signal(pastNoReturn.id, "go");
      assert.equal((await waitForState(e, pastNoReturn.id, ["succeeded", "failed"])).state, "succeeded");
      await e.stop();
    });

    it("gives a running job back on stop and resumes it at the step it was on", async () => {
      const e1 = engine("v-stop-1");
      e1.start();
      const job = await e1.create("blocking", { params: {} });
      await waitUntil("block to start", async () => count(job.id, "block") > 0);
      await e1.stop();
      const given = await e1.get(job.id);
      assert.equal(given.state, "queued");
      assert.equal(given.lease, null);
      assert.equal(given.steps[0]!.state, "pending");
      release.add(job.id);
      const e2 = engine("v-stop-2");
      e2.start();
      const done = await waitForState(e2, job.id, ["succeeded", "failed"]);
      assert.equal(done.state, "succeeded");
      assert.equal(count(job.id, "block"), 2);
      assert.ok((await e2.logs(job.id)).some((l) => l.message === 'resumed at step "block" by v-stop-2'));
      await e2.stop();
    });

    it("stops a step and records nothing more once another process holds the job's lease", async () => {
      const e = engine("v-fence", { leaseMs: 300 });
      e.start();
      const job = await e.create("blocking", { params: {} });
      await waitUntil("block to start", async () => count(job.id, "block") > 0);
      // another vault process takes the job over (as after a stall longer than the lease)
      const until = new Date(Date.now() + 60_000).toISOString();
      await vdb.db
        .updateTable("jobs")
        .set({ lease_owner: "thief", lease_until: until })
        .where("id", "=", job.id)
        .execute();
      await sleep(400); // more than one renewal period: the engine notices and aborts the step
      release.add(job.id);
      await sleep(200);
      const row = await e.get(job.id);
      assert.equal(row.state, "running");
      assert.deepEqual(row.lease, { owner: "thief", until });
      assert.equal(row.steps[0]!.state, "running");
      assert.equal(count(job.id, "after"), 0);
      await vdb.db
        .updateTable("jobs")
        .set({ state: "cancelled", finished_at: until })
        .where("id", "=", job.id)
        .execute();
      await e.stop();
    });

    it("gives a lane's kinds their own slots, so a waiting job never starves the others", async () => {
      const e = engine("lanes", {
        concurrency: 1,
        lanes: [{ name: "blockers", match: (k) => k === "blocking", concurrency: 1 }],
      });
      e.start();
      const blocker = await e.create("blocking", { params: {} });
      await waitUntil("the blocker runs", async () => count(blocker.id, "block") > 0);
      const second = await e.create("blocking", { params: {} });
      const other = await e.create("chain", { params: { n: 1 } });
      // the default slot runs the chain while the lane's one slot is held by the first blocker
      assert.equal((await waitForState(e, other.id, ["succeeded"])).state, "succeeded");
      assert.equal((await e.get(second.id)).state, "queued", "the lane is full: the second blocker waits");
      release.add(blocker.id);
      release.add(second.id);
      await waitForState(e, second.id, ["succeeded"]);
      await e.stop(); // later tests count on their own engines only
    });

    it("runs each job once when two engines share the queue", async () => {
      const a = engine("v-share-a", { concurrency: 2 });
      const b = engine("v-share-b", { concurrency: 2 });
      const jobs = await Promise.all(
        Array.from({ length: 8 }, (_, n) => a.create("chain", { params: { n } })),
      );
      a.start();
      b.start();
      for (const j of jobs)
        assert.equal((await waitForState(a, j.id, ["succeeded", "failed"])).state, "succeeded");
      for (const j of jobs) for (const s of ["a", "b", "c"]) assert.equal(count(j.id, s), 1, `${j.id}/${s}`);
      await a.stop();
      await b.stop();
    });

    it("watch yields step changes, log lines and the job's progress until it finishes", async () => {
      const runner = engine("v-watch");
      const watcher = engine("v-watch-reader"); // never started: reads the database like another process
      const job = await runner.create("chain", { params: { n: 1 } });
      const events: JobEvent[] = [];
      const watching = (async () => {
        for await (const ev of watcher.watch(job.id)) events.push(ev);
      })();
      runner.start();
      await watching;
      const jobEvents = events.filter((ev) => ev.type === "job").map((ev) => ev.job);
      assert.equal(jobEvents[0]!.state, "queued");
      assert.equal(jobEvents.at(-1)!.state, "succeeded");
      assert.equal(jobEvents.at(-1)!.progress, 1);
      const progress = jobEvents.map((j) => j.progress);
      assert.deepEqual(
        progress,
        [...progress].sort((x, y) => x - y),
        "progress never goes back",
      );
      assert.equal(events.at(-1)!.type, "job");
      const stepDone = events.filter((ev) => ev.type === "step" && ev.step.state === "succeeded");
      assert.deepEqual(
        stepDone.map((ev) => (ev.type === "step" ? ev.step.name : "")),
        ["a", "b", "c"],
      );
      const lines = events.flatMap((ev) => (ev.type === "log" ? [ev.log.message] : []));
      assert.ok(lines.includes("half way"));
      assert.ok(lines.at(-1)!.startsWith("succeeded"));
      assert.equal(
        new Set(events.flatMap((ev) => (ev.type === "log" ? [ev.log.id] : []))).size,
        lines.length,
      );
      await runner.stop();
    });

    it("kill -9 of the vault process: another process takes the job over after the lease and resumes at step 2", async () => {
      const tmp = tempDir("sb-jobs-");
      const children: ChildProcess[] = [];
      const runner = (owner: string) => {
        const child = spawn(
          process.execPath,
          [path.join(ROOT, "test/fixtures/jobs/runner.ts"), created.url, owner],
          {
            stdio: ["ignore", "pipe", "inherit"],
          },
        );
        children.push(child);
        return child;
      };
      try {
        const e = engine("v-test"); // not started: creates and reads only
        const job = await e.create("append3", { params: { dir: tmp.dir } });
        const trace = () => {
          try {
            return readFileSync(path.join(tmp.dir, "trace"), "utf8").split("\n").filter(Boolean);
          } catch {
            return [];
          }
        };
        const a = runner("vault-a");
        await waitUntil("step two to start in vault-a", async () => trace().includes("two"), 20_000);
        const exited = new Promise((r) => a.once("exit", r));
        a.kill("SIGKILL");
        await exited;
        const orphan = await e.get(job.id);
        assert.equal(orphan.state, "running");
        assert.equal(orphan.lease?.owner, "vault-a");
        assert.equal(orphan.steps[1]!.state, "running");

        const watched: JobEvent[] = [];
        const watching = (async () => {
          for await (const ev of e.watch(job.id)) watched.push(ev);
        })();
        const t0 = Date.now();
        const b = runner("vault-b");
        await waitUntil(
          "vault-b to run step two again",
          async () => trace().filter((s) => s === "two").length === 2,
          20_000,
        );
        const takeover = Date.now() - t0;
        writeFileSync(path.join(tmp.dir, "marker"), "");
        const done = await waitForState(e, job.id, ["succeeded", "failed"], 20_000);
        await watching;
        assert.equal(done.state, "succeeded", JSON.stringify(done.error));
        assert.deepEqual(trace(), ["one", "two", "two", "three"]);
        assert.deepEqual(
          done.steps.map((s) => s.attempts),
          [1, 2, 1],
        );
        assert.deepEqual(done.steps[2]!.output, { sawTwo: { after: { wrote: "one" } } });
        const logs = (await e.logs(job.id)).map((l) => l.message);
        assert.ok(logs.includes("started by vault-a"));
        assert.ok(logs.includes('resumed at step "two" by vault-b'));
        assert.equal(watched.at(-1)?.type, "job");
        // the lease is 1 s: vault-b cannot have taken over much later than that plus its start-up
        assert.ok(takeover < 10_000, `takeover took ${takeover} ms`);

        const bExit = new Promise((r) => b.once("exit", r));
        b.kill("SIGTERM");
        assert.equal(await bExit, 0);
      } finally {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
        tmp.cleanup();
      }
    });
  });
}

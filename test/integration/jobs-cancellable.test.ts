// A job's `cancellable` over real HTTP (GET /v1/jobs/{job}, GET /v1/jobs, the first event of
// /v1/jobs/{job}/events) says exactly whether POST /v1/jobs/{job}/cancel succeeds: queued and waiting
// jobs yes, running and finished ones no, and never once a step that cannot be undone has run (also
// for a job given back to the queue after that step, which the list decides from its steps alone).
// The vault runs a job engine with test kinds in place of its disaster-recovery runtime.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Type } from "@sinclair/typebox";
import pino from "pino";
import type { DrRuntime } from "../../src/vault/dr.ts";
import { JobEngine } from "../../src/vault/jobs/engine.ts";
import { defineJobKind, type JobId } from "../../src/vault/jobs/types.ts";
import { type RunningVault, startVault, type VaultService } from "../../src/vault/server.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { tempDir } from "../helpers/env.ts";
import { type Answer, apiOf } from "../helpers/vault.ts";

/** Step "block" runs until release.has(jobId) or the engine stops it. */
const release = new Set<string>();
const block = {
  name: "block",
  run: async (ctx: { jobId: string; signal: AbortSignal }) => {
    while (!release.has(ctx.jobId)) await sleep(10, undefined, { signal: ctx.signal });
    return null;
  },
};

/** "cut" (irreversible or not), then "block". */
const cutThenBlock = defineJobKind({
  kind: "cut-then-block",
  params: Type.Object({ irreversible: Type.Boolean() }),
  steps: (p) => [{ name: "cut", irreversible: p.irreversible, run: async () => ({ cut: true }) }, block],
});

/** "prepare" (irreversible or not), then a wait for signal "go". */
const approval = defineJobKind({
  kind: "approval",
  params: Type.Object({ irreversibleFirst: Type.Boolean() }),
  steps: (p) => [
    { name: "prepare", irreversible: p.irreversibleFirst, run: async () => null },
    { name: "approve", run: async (ctx) => ctx.waitFor("go", "an operator must approve") },
  ],
});

const quick = defineJobKind({
  kind: "quick",
  params: Type.Object({}),
  steps: () => [{ name: "only", run: async () => 1 }],
});

type Reply = Answer;

for (const d of databases) {
  describe(`a job's cancellable on ${d.name}`, { skip: d.skip }, () => {
    let db: CreatedDatabase;
    let tmp: { dir: string; cleanup: () => void };
    let vault: RunningVault;
    let engine: JobEngine;
    let admin = "";

    const api = (method: string, url: string): Promise<Reply> =>
      apiOf({ url: vault.url, token: admin })(method, url);

    /** The first event of the job's stream (the job as it is now). */
    async function firstEvent(id: string): Promise<Reply["body"]> {
      const ac = new AbortController();
      const r = await fetch(`${vault.url}/v1/jobs/${id}/events`, {
        headers: { authorization: `Bearer ${admin}` },
        signal: ac.signal,
      });
      assert.equal(r.status, 200);
      const reader = (r.body as ReadableStream<Uint8Array>).getReader();
      let text = "";
      while (!text.includes("\n\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      ac.abort();
      await reader.cancel().catch(() => {});
      return JSON.parse(text.slice(text.indexOf("data: ") + 6, text.indexOf("\n\n")));
    }

    async function waitFor(what: string, probe: () => Promise<boolean>): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (!(await probe())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(20);
      }
    }

    const state = async (id: string) => (await api("GET", `/v1/jobs/${id}`)).body;

    /**
     * Every view says `expected`, and the cancel does what they say: 200 and a cancelled job (that is
     * then no longer cancellable), or 409 JOB_NOT_CANCELLABLE with the job unchanged.
     */
    async function cancelAsOffered(id: string, expected: boolean, why: string): Promise<void> {
      const one = await api("GET", `/v1/jobs/${id}`);
      assert.equal(one.status, 200);
      assert.equal(one.body.cancellable, expected, `GET ${why}: ${one.body.state}`);
      const list = await api("GET", "/v1/jobs?limit=1000");
      const inList = list.body.find((j: { id: string }) => j.id === id);
      assert.equal(inList.cancellable, expected, `list ${why}`);
      assert.equal((await firstEvent(id)).job.cancellable, expected, `event ${why}`);
      const r = await api("POST", `/v1/jobs/${id}/cancel`);
      if (expected) {
        assert.equal(r.status, 200, `cancel ${why}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.state, "cancelled");
        assert.equal(r.body.cancellable, false, "a cancelled job cannot be cancelled again");
        assert.equal((await state(id)).cancellable, false);
      } else {
        assert.equal(r.status, 409, `cancel ${why}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, "JOB_NOT_CANCELLABLE");
        assert.equal((await state(id)).state, one.body.state, "a refused cancel changes nothing");
      }
    }

    before(async () => {
      db = await d.create();
      tmp = tempDir("sb-cancellable-");
      const jobs: VaultService = {
        name: "job engine with test kinds",
        async start(ctx) {
          engine = new JobEngine({
            vdb: ctx.vdb,
            owner: "cancellable-test",
            kinds: [cutThenBlock, approval, quick],
            leaseMs: 2000,
            pollMs: 50,
            log: pino({ level: "silent" }),
          });
          // started by the test, so a job can be seen queued first
          ctx.deps.dr = { engine } as unknown as DrRuntime;
          return { stop: () => engine.stop() };
        },
      };
      vault = await startVault({ data: tmp.dir, db: db.url, port: 0, log: false, services: [jobs] });
      admin = vault.adminToken ?? "";
      assert.ok(admin);
    });

    after(async () => {
      await vault?.close();
      await db?.drop();
      tmp?.cleanup();
    });

    it("offers cancel exactly when the vault would cancel, in every state", async () => {
      // queued, before the engine takes anything: yes
      const queued = await engine.create("quick", { params: {} });
      await cancelAsOffered(queued.id, true, "queued");

      const running = await engine.create("cut-then-block", { params: { irreversible: false } });
      const waiting = await engine.create("approval", { params: { irreversibleFirst: false } });
      const pastNoReturn = await engine.create("approval", { params: { irreversibleFirst: true } });
      const done = await engine.create("quick", { params: {} });
      engine.start();
      await waitFor("the jobs to run and wait", async () => {
        const s = await Promise.all([running, waiting, pastNoReturn, done].map((j) => state(j.id)));
        return (
          s[0].steps[1].state === "running" &&
          s[1].state === "waiting" &&
          s[2].state === "waiting" &&
          s[3].state === "succeeded"
        );
      });
      await cancelAsOffered(running.id, false, "running");
      await cancelAsOffered(waiting.id, true, "waiting");
      await cancelAsOffered(pastNoReturn.id, false, "waiting after an irreversible step");
      await cancelAsOffered(done.id, false, "succeeded");
      release.add(running.id);
      await waitFor("the running job to end", async () => (await state(running.id)).state === "succeeded");
      await cancelAsOffered(running.id, false, "succeeded after running");
    });

    it("decides a job given back to the queue by the steps it has run", async () => {
      const reversible = await engine.create("cut-then-block", { params: { irreversible: false } });
      const irreversible = await engine.create("cut-then-block", { params: { irreversible: true } });
      await waitFor("both jobs to block", async () => {
        const s = await Promise.all([reversible, irreversible].map((j) => state(j.id)));
        return s.every((j) => j.steps[1].state === "running");
      });
      // a stopping engine gives its running jobs back: queued again, their first step done
      await engine.stop();
      for (const j of [reversible, irreversible]) {
        const back = await state(j.id as JobId);
        assert.equal(back.state, "queued");
        assert.equal(back.steps[0].state, "succeeded");
      }
      await cancelAsOffered(reversible.id, true, "queued again after a step that can be undone");
      await cancelAsOffered(irreversible.id, false, "queued again after a step that cannot be undone");
    });
  });
}

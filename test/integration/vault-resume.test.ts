// kill -9 of the vault in the middle of a failover and of a reprotect, at the worst moments: a step
// that ran but was not recorded yet. Each restart resumes the job at the step it was on, and nothing
// is done twice: one generation step, one recovered machine, one seed, one derived policy; the data
// at the end is what it would have been without the kills.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { tempDir } from "../helpers/env.ts";
import {
  apiOf,
  createFastPolicy,
  defineMachine,
  finishedJob,
  type Json,
  killMachines,
  restorePoint,
  startVaultProcess,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

const MiB = 1024 * 1024;

describe("the vault resumes jobs after kill -9", { timeout: 600_000 }, () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: VaultProcess;
  let token = "";
  let port = 0;
  const data = () => path.join(tmp.dir, "data");

  async function restart(kill?: string): Promise<void> {
    vault = await startVaultProcess(data(), {
      token,
      args: port > 0 ? ["--port", String(port)] : [],
      env: { SWITCHBACK_JOB_LEASE_MS: "1500", SWITCHBACK_FAULT_KILL_STEP: kill ?? "" },
    });
    token = vault.token;
    port = Number(new URL(vault.url).port);
  }

  const api = <T = Json>(method: string, p: string, body?: unknown) => apiOf(vault)<T>(method, p, body);

  const finished = (id: string) => finishedJob(apiOf(vault), id);

  /** Starts an operation on a vault that will kill itself during it; waits for the kill. */
  async function startAndDie(op: string, body: unknown): Promise<string> {
    const r = await api("POST", `/v1/items/web1/${op}`, body);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const exit = await new Promise<string | null>((resolve) =>
      vault.child.once("exit", (_c, sig) => resolve(sig)),
    );
    assert.equal(exit, "SIGKILL", "the vault killed itself at the fault point");
    return r.body.job.id as string;
  }

  before(async () => {
    tmp = tempDir("sb-resume-");
    await restart();
    await createFastPolicy(api);
    await defineMachine(api, { name: "web1", ackLog: path.join(tmp.dir, "acks.log") });
    assert.equal((await api("POST", "/v1/machines/web1/start", {})).status, 200);
    await until(
      "the agent registers",
      async () => (await api("GET", "/v1/machines/web1")).body.disks.length === 2,
    );
    const prot = await api("POST", "/v1/items", { machine: "web1", to: "recovery", policy: "fast" });
    assert.equal(prot.status, 202);
    await until("protected", async () => (await api("GET", "/v1/items/web1")).body.phase === "protected");
  });

  after(async () => {
    await vault?.stop();
    if (tmp !== undefined) killMachines(data());
    tmp?.cleanup();
  });

  it("failover: killed after the point of no return and after making the disks, resumed twice", async (t) => {
    await vault.stop();
    await restart("failover:stop-replication:after");
    const jobId = await startAndDie("failover", { planned: true });
    await restart("failover:materialize:after");
    await new Promise<string | null>((resolve) => vault.child.once("exit", (_c, sig) => resolve(sig)));
    await restart();
    const job = await finished(jobId);
    assert.equal(job.state, "succeeded", JSON.stringify(job.error));
    const steps = Object.fromEntries(job.steps.map((s: Json) => [s.name, s.attempts]));
    t.diagnostic(`step attempts: ${JSON.stringify(steps)}`);
    assert.equal(steps.prepare, 1, "the drain and shutdown ran once");
    assert.equal(steps["stop-replication"], 2);
    assert.equal(steps.materialize, 2);
    const it = (await api("GET", "/v1/items/web1")).body;
    assert.equal(it.phase, "failed-over");
    assert.equal(it.generation, 2, "the generation moved once");
    const recovered = readdirSync(path.join(data(), "sites", "recovery", "machines"));
    assert.deepEqual(recovered, [it.failover.instanceId], "one recovered machine");
    // the point equals the stopped primary's disks
    const home = readdirSync(path.join(data(), "sites", "primary", "machines"))[0] as string;
    for (const disk of [0, 1]) {
      const out = path.join(tmp.dir, `fo-${disk}.img`);
      await restorePoint({
        datastore: path.join(data(), "sites", "recovery", "datastore"),
        item: it.id,
        point: it.failover.point,
        disk,
        out,
      });
      assert.ok(
        readFileSync(out).equals(
          readFileSync(path.join(data(), "sites", "primary", "machines", home, `disk-${disk}.img`)),
        ),
      );
    }
    const c = await api("POST", "/v1/items/web1/commit", {});
    assert.equal((await finished(c.body.job.id)).state, "succeeded");
  });

  it("reprotect: killed after the seed and after reversing, resumed twice", async (t) => {
    await vault.stop();
    await restart("reprotect:seed:after");
    const jobId = await startAndDie("reprotect", { location: "original" });
    await restart("reprotect:reverse:after");
    await new Promise<string | null>((resolve) => vault.child.once("exit", (_c, sig) => resolve(sig)));
    await restart();
    const job = await finished(jobId);
    assert.equal(job.state, "succeeded", JSON.stringify(job.error));
    const steps = Object.fromEntries(job.steps.map((s: Json) => [s.name, s.attempts]));
    t.diagnostic(`step attempts: ${JSON.stringify(steps)}`);
    assert.equal(steps.seed, 2);
    assert.equal(steps.reverse, 2);
    const it = (await api("GET", "/v1/items/web1")).body;
    assert.equal(it.phase, "protected");
    assert.equal(it.direction, "recovery → primary");
    const policies = (await api("GET", "/v1/policies")).body as Json[];
    assert.equal(policies.filter((p) => p.name === "fast-failback").length, 1, "one derived failback policy");
    const points = (await api("GET", "/v1/items/web1/points")).body as Json[];
    assert.ok(points.length >= 1);
    const shipped = job.steps.find((s: Json) => s.name === "initial-replication").output;
    assert.ok(shipped.bytesSent < (24 * MiB) / 4, `reprotect shipped ${shipped.bytesSent} bytes`);
  });
});

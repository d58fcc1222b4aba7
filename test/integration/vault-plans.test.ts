// Recovery plans on a real vault process with three machines booted by the `process` provider (a
// workload and the agent each): a plan of two groups (db, then app1 and app2) with a vault script
// after group 1, a manual action before group 2 on drills, a machine-script in the drill copies and a
// script on failback only; test failover (parks at the manual action until confirmed), cleanup,
// planned failover, commit, reprotect, failback, checking each item's phase and that groups ran in
// order; refusals of items counted per machine (the plan stops, or goes on with continueOnError).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { cli, ROOT, tempDir } from "../helpers/env.ts";
import {
  apiOf,
  type Json,
  killMachines,
  startVaultProcess,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

const MiB = 1024 * 1024;
const WORKLOAD = path.join(ROOT, "scripts/machine-workload.ts");
const MACHINES = ["db", "app1", "app2"];

function envFile(file: string): Record<string, string> {
  return Object.fromEntries(
    readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

describe("recovery plans through the vault", { timeout: 600_000 }, () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: VaultProcess;
  let token = "";
  let port = 0;
  const api = <T = Json>(method: string, p: string, body?: unknown) => apiOf(vault)<T>(method, p, body);
  const data = () => path.join(tmp.dir, "data");
  const marks = () => path.join(tmp.dir, "marks");
  const sb = (args: string[]) =>
    cli(args, { env: { SWITCHBACK_VAULT: vault.url, SWITCHBACK_TOKEN: vault.token } });

  async function finished(id: string, ms = 180_000): Promise<Json> {
    return until(
      `job ${id}`,
      async () => {
        const r = await api("GET", `/v1/jobs/${id}`);
        return ["succeeded", "failed", "cancelled"].includes(r.body.state) ? r.body : undefined;
      },
      ms,
    );
  }

  async function succeeded(id: string): Promise<Json> {
    const j = await finished(id);
    if (j.state !== "succeeded") {
      const logs = (await api("GET", `/v1/jobs/${id}/logs`)).body;
      assert.fail(
        `job ${j.kind} ${j.state}: ${JSON.stringify(j.error)}\n${JSON.stringify(logs, null, 1)}\n${vault.stderr().slice(-3000)}`,
      );
    }
    return j;
  }

  async function runPlan(plan: string, op: string, body: unknown = {}): Promise<Json> {
    const r = await api("POST", `/v1/plans/${plan}/${op}`, body);
    assert.equal(r.status, 202, `${op}: ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async function items(): Promise<Record<string, Json>> {
    const list = (await api("GET", "/v1/items")).body as Json[];
    return Object.fromEntries(list.map((i) => [i.name, i]));
  }

  const step = (job: Json, name: string): Json => {
    const s = job.steps.find((x: Json) => x.name === name);
    assert.ok(s, `job ${job.kind} has step ${name}: ${job.steps.map((x: Json) => x.name).join(", ")}`);
    return s;
  };

  /** The item jobs an items step started, read back from the vault. */
  async function children(job: Json, name: string): Promise<Json[]> {
    const out = step(job, name).output;
    return Promise.all(out.machines.map(async (m: Json) => (await api("GET", `/v1/jobs/${m.job}`)).body));
  }

  /** Every item's own job of group 1 finished before any of group 2 was created. */
  async function assertGroupOrder(job: Json): Promise<void> {
    const g1 = await children(job, "group-1-items");
    const g2 = await children(job, "group-2-items");
    assert.deepEqual(g1.map((j) => j.itemId).length, 1);
    assert.equal(g2.length, 2);
    const lastOf1 = Math.max(...g1.map((j) => Date.parse(j.finishedAt)));
    const firstOf2 = Math.min(...g2.map((j) => Date.parse(j.createdAt)));
    assert.ok(lastOf1 <= firstOf2, `group 1 finished (${lastOf1}) before group 2 started (${firstOf2})`);
    for (const j of [...g1, ...g2]) assert.equal(j.state, "succeeded", `${j.kind} of ${j.itemId}`);
    assert.ok(
      Date.parse(step(job, "group-1-items").finishedAt) <= Date.parse(step(job, "group-2-items").startedAt),
    );
  }

  async function assertPhases(phase: string, direction: string): Promise<void> {
    const all = await items();
    for (const m of MACHINES) {
      assert.equal(all[m].phase, phase, `${m} is ${phase}`);
      assert.equal(all[m].direction, direction, `${m} replicates ${direction}`);
    }
  }

  /** Starts the vault (again: same port and token, so the machines' agents find it), maybe set to kill itself. */
  async function restart(kill?: string): Promise<void> {
    vault = await startVaultProcess(data(), {
      token,
      args: port > 0 ? ["--port", String(port)] : [],
      env: { SWITCHBACK_JOB_LEASE_MS: "1500", SWITCHBACK_FAULT_KILL_STEP: kill ?? "" },
    });
    token = vault.token;
    port = Number(new URL(vault.url).port);
  }

  before(async () => {
    tmp = tempDir("sb-plans-");
    mkdirSync(marks());
    await restart();
    const p = await api("POST", "/v1/policies", {
      name: "fast",
      rpoThreshold: "1m",
      retention: "1h",
      appConsistentEvery: "0",
      crashConsistentEvery: "1s",
    });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    for (const name of MACHINES) {
      const ack = path.join(tmp.dir, `${name}.acks`);
      const boot = `WORKLOAD_EVERY_MS=100 WORKLOAD_ACK=${ack} ${process.execPath} ${WORKLOAD} & exec $SWITCHBACK_CLI agent`;
      const m = await api("POST", "/v1/machines", {
        name,
        site: "primary",
        bootCommand: boot,
        disks: [{ sizeBytes: 4 * MiB }, { sizeBytes: 8 * MiB }],
      });
      assert.equal(m.status, 201, JSON.stringify(m.body));
      assert.equal((await api("POST", `/v1/machines/${name}/start`, {})).status, 200);
    }
    for (const name of MACHINES) {
      await until(`${name} registers with its disks`, async () => {
        const r = await api("GET", `/v1/machines/${name}`);
        return r.body.lastHeartbeatAt !== null && r.body.disks.length === 2;
      });
      const prot = await api("POST", "/v1/items", { machine: name, to: "recovery", policy: "fast" });
      assert.equal(prot.status, 202, JSON.stringify(prot.body));
    }
    await until("every item is protected", async () => {
      const all = await items();
      return MACHINES.every((m) => all[m]?.phase === "protected" && all[m]?.latestPoint !== null);
    });
  });

  after(async () => {
    await vault?.stop();
    if (tmp !== undefined) killMachines(data());
    if (process.env.KEEP_TMP === undefined) tmp?.cleanup();
    else console.log("kept", tmp?.dir);
  });

  it("refuses bad definitions naming the field, and changes nothing", async () => {
    const cases: [string, string, unknown, number, string, RegExp][] = [
      [
        "POST",
        "/v1/plans",
        { name: "x", groups: [{ items: ["db", "nope"] }] },
        400,
        "PLAN_ITEM_INVALID",
        /groups\[0\]\.items\[1\]: replicated item "nope"/,
      ],
      [
        "POST",
        "/v1/plans",
        { name: "x", groups: [{ items: ["db"] }, { items: ["app1", "db"] }] },
        400,
        "PLAN_ITEM_INVALID",
        /groups\[1\]\.items\[1\]: item db is in group 1/,
      ],
      [
        "POST",
        "/v1/plans",
        { name: "x", groups: [{ items: [] }] },
        400,
        "PLAN_GROUP_INVALID",
        /groups\[0\]\.items: group 1 has no items/,
      ],
      [
        "POST",
        "/v1/plans",
        { name: "x", groups: [{ items: ["db"], pre: [{ kind: "reboot", run: "x" }] }] },
        400,
        "PLAN_ACTION_INVALID",
        /groups\[0\]\.pre\[0\]: kind "reboot"/,
      ],
      [
        "POST",
        "/v1/plans",
        { name: "x", groups: [{ items: ["db"], post: [{ kind: "manual" }] }] },
        400,
        "PLAN_ACTION_INVALID",
        /needs "message"/,
      ],
      ["POST", "/v1/plans", { name: "x", colour: "red" }, 400, "INVALID_REQUEST", /colour/],
      ["POST", "/v1/plans/nope/failover", {}, 404, "PLAN_NOT_FOUND", /nope/],
    ];
    for (const [method, url, body, status, code, detail] of cases) {
      const r = await api(method, url, body);
      assert.equal(r.status, status, `${method} ${url} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, code);
      assert.match(r.body.detail, detail);
    }
    assert.deepEqual((await api("GET", "/v1/plans")).body, []);
  });

  it("builds a plan from the CLI: groups, actions, show", async () => {
    const c = await sb(["plans", "create", "dc", "--group", "db", "--group", "app1,app2"]);
    assert.equal(c.code, 0, c.stderr);
    const mark = marks();
    const adds: string[][] = [
      [
        "--group",
        "1",
        "--when",
        "post",
        "--kind",
        "script",
        "--run",
        `env | grep ^SWITCHBACK_ > ${mark}/g1-$SWITCHBACK_OPERATION.env`,
      ],
      [
        "--group",
        "2",
        "--when",
        "pre",
        "--kind",
        "manual",
        "--message",
        "check the database answers",
        "--on",
        "test-failover",
      ],
      [
        "--group",
        "2",
        "--when",
        "post",
        "--kind",
        "machine-script",
        "--on",
        "test-failover",
        "--run",
        `env | grep ^SWITCHBACK_ > ${mark}/ms-$SWITCHBACK_ITEM.env; pwd > ${mark}/ms-$SWITCHBACK_ITEM.pwd`,
      ],
      [
        "--group",
        "2",
        "--when",
        "post",
        "--kind",
        "script",
        "--on",
        "failback",
        "--run",
        `echo "$SWITCHBACK_ITEMS" > ${mark}/failback-g2`,
      ],
    ];
    for (const a of adds) {
      const r = await sb(["plans", "add-action", "dc", ...a]);
      assert.equal(r.code, 0, r.stderr);
    }
    const bad = await sb([
      "plans",
      "add-action",
      "dc",
      "--group",
      "3",
      "--when",
      "pre",
      "--kind",
      "manual",
      "--message",
      "m",
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no group 3.*\[PLAN_GROUP_NOT_FOUND\]/);
    const shown = JSON.parse((await sb(["plans", "show", "dc", "--json"])).stdout);
    assert.deepEqual(
      shown.groups.map((g: Json) => g.items.map((i: Json) => i.name)),
      [["db"], ["app1", "app2"]],
    );
    assert.deepEqual(
      shown.groups[1].pre.map((a: Json) => [a.kind, a.on]),
      [["manual", ["test-failover"]]],
    );
    assert.deepEqual(shown.groups[0].post[0].on, ["failover", "test-failover"]);
    assert.equal(shown.lastRun, null);
    const text = await sb(["plans", "show", "dc"]);
    assert.match(text.stdout, /group 2\n.*pre +1 +manual "check the database answers" on test-failover/);
    assert.match(text.stdout, /item +app1 +protected, primary → recovery/);
    const list = await sb(["plans", "list"]);
    assert.match(list.stdout, /^dc +2 +db,app1,app2 +never run$/m);
  });

  it("stops at the first refused machine, or goes on with continueOnError", async (t) => {
    // failback of items that replicate away from home: refused per machine
    const stop = await runPlan("dc", "failback");
    const j = await finished(stop.job.id);
    assert.equal(j.state, "failed");
    assert.equal(j.error.code, "PLAN_MACHINES_FAILED");
    assert.match(
      j.error.message,
      /group 1: 1 of 1 machine failed — db refused \(FAILBACK_ITEM_AWAY_FROM_HOME: the item replicates primary → recovery, away from its home site primary/,
    );
    assert.equal(step(j, "group-1-items").state, "failed");
    assert.equal(step(j, "group-2-items").state, "pending", "group 2 never started");
    const shown = (await api("GET", "/v1/plans/dc")).body;
    assert.equal(shown.lastRun.jobId, j.id);
    assert.equal(shown.lastRun.error.code, "PLAN_MACHINES_FAILED");
    for (const m of ["app1", "app2"]) {
      const jobs = (await api("GET", `/v1/jobs?item=${m}`)).body as Json[];
      assert.ok(!jobs.some((x) => x.kind === "failover"), `${m} was not touched`);
    }
    assert.equal(existsSync(path.join(marks(), "failback-g2")), false);

    const loose = await api("POST", "/v1/plans", {
      name: "dc-loose",
      continueOnError: true,
      groups: [{ items: ["db"] }, { items: ["app1", "app2"] }],
    });
    assert.equal(loose.status, 201, JSON.stringify(loose.body));
    const go = await succeeded((await runPlan("dc-loose", "failback")).job.id);
    const g2 = step(go, "group-2-items").output.machines as Json[];
    assert.deepEqual(
      g2.map((m) => [m.item, m.state, m.job, m.error.code, m.phase]),
      [
        ["app1", "refused", null, "FAILBACK_ITEM_AWAY_FROM_HOME", "protected"],
        ["app2", "refused", null, "FAILBACK_ITEM_AWAY_FROM_HOME", "protected"],
      ],
    );
    const summary = step(go, "summary").output;
    assert.equal(summary.machines, 3);
    assert.equal(summary.succeeded, 0);
    assert.deepEqual(
      summary.failed.map((f: Json) => [f.item, f.group]),
      [
        ["db", 1],
        ["app1", 2],
        ["app2", 2],
      ],
    );

    // a vault script that fails or overruns its time limit stops the plan with its stderr
    const broken = await api("POST", "/v1/plans", {
      name: "broken",
      groups: [
        {
          items: ["db"],
          pre: [
            { kind: "script", run: "echo starting; echo 'db not ready' >&2; exit 3", on: ["failback"] },
            { kind: "script", run: "sleep 30", timeoutSeconds: 1, on: ["test-failover"] },
          ],
        },
      ],
    });
    assert.equal(broken.status, 201, JSON.stringify(broken.body));
    const failed = await finished((await runPlan("broken", "failback")).job.id);
    assert.equal(failed.error.code, "PLAN_SCRIPT_FAILED");
    assert.match(failed.error.message, /group 1 pre action 1 \(script .*\) exited with 3: db not ready/);
    assert.equal(step(failed, "group-1-items").state, "pending");
    const t0 = Date.now();
    const slow = await finished((await runPlan("broken", "test-failover")).job.id);
    assert.equal(slow.error.code, "PLAN_SCRIPT_TIMEOUT");
    assert.match(slow.error.message, /was killed after its time limit of 1 s/);
    assert.ok(Date.now() - t0 < 10_000, "the time limit holds");
    assert.equal((await items()).db.drill, null, "nothing was drilled");
    t.diagnostic("refusals: plan dc stopped after group 1; dc-loose went on and reported 3 refused machines");
  });

  it("a dry run says what each machine would do, group by group, and starts nothing", async () => {
    const jobsBefore = (await api("GET", "/v1/jobs?limit=1000")).body.length;
    const drill = await api("POST", "/v1/plans/dc/test-failover?dryRun=true", {});
    assert.equal(drill.status, 202, JSON.stringify(drill.body));
    assert.equal(drill.body.job, null);
    assert.deepEqual(
      drill.body.machines.map((m: Json) => [m.group, m.item, m.operation, m.refused]),
      [
        [1, "db", "test-failover", null],
        [2, "app1", "test-failover", null],
        [2, "app2", "test-failover", null],
      ],
    );
    for (const m of drill.body.machines) {
      assert.equal(m.decision.direction, "primary → recovery");
      assert.match(m.decision.consequences.join(" "), /starts a copy of the machine at recovery/);
    }
    // the same refusal the job would meet: a failback of items that replicate away from home
    const back = await api("POST", "/v1/plans/dc/failback?dryRun=true", {});
    assert.equal(back.status, 202);
    assert.deepEqual(
      back.body.machines.map((m: Json) => m.refused?.code),
      ["FAILBACK_ITEM_AWAY_FROM_HOME", "FAILBACK_ITEM_AWAY_FROM_HOME", "FAILBACK_ITEM_AWAY_FROM_HOME"],
    );
    // and from the CLI
    const text = await sb(["plans", "failover", "dc", "--planned", "--dry-run"]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^plan dc failover \(dry run\): 3 of 3 machines would run$/m);
    assert.match(
      text.stdout,
      /^ {2}group 2 {2}app1: failover primary → recovery \(cannot be cancelled once started\)$/m,
    );
    assert.equal((await api("GET", "/v1/jobs?limit=1000")).body.length, jobsBefore, "nothing started");
  });

  it("drills the plan: waits at the manual action until confirmed, then group 2 with its machine-script", async (t) => {
    const t0 = Date.now();
    // started from the CLI, which follows the job group by group and says what it waits for
    const following = sb(["plans", "test-failover", "dc", "--wait"]);
    const id = await until("the plan's job", async () => {
      const run = (await api("GET", "/v1/plans/dc")).body.lastRun;
      return run?.operation === "test-failover" ? (run.jobId as string) : undefined;
    });
    assert.deepEqual(
      (await api("GET", `/v1/jobs/${id}`)).body.steps.map((x: Json) => x.name),
      ["group-1-items", "group-1-post-1", "group-2-pre-1", "group-2-items", "group-2-post-1", "summary"],
    );
    const parked = await until("the plan waits at the manual action", async () => {
      const j = (await api("GET", `/v1/jobs/${id}`)).body;
      assert.notEqual(j.state, "failed", JSON.stringify(j.error));
      return j.state === "waiting" ? j : undefined;
    });
    assert.equal(parked.waitingFor, "confirm-group-2-pre-1");
    assert.equal(step(parked, "group-1-items").state, "succeeded");
    assert.equal(step(parked, "group-1-post-1").state, "succeeded");
    assert.equal(step(parked, "group-2-items").state, "pending");
    const now = await items();
    assert.ok(now.db.drill !== null, "db's drill copy runs");
    assert.equal(now.app1.drill, null, "app1 has not started");
    assert.equal(now.app2.drill, null, "app2 has not started");
    const env = envFile(path.join(marks(), "g1-test-failover.env"));
    assert.deepEqual(
      [env.SWITCHBACK_PLAN, env.SWITCHBACK_OPERATION, env.SWITCHBACK_GROUP, env.SWITCHBACK_ITEMS],
      ["dc", "test-failover", "1", "db"],
    );
    const waiting = (await api("GET", "/v1/plans/dc")).body.lastRun.waiting;
    assert.deepEqual(waiting, { step: "group-2-pre-1", group: 2, message: "check the database answers" });

    // one job per plan at a time; the plan cannot change under its job
    const busy = await api("POST", "/v1/plans/dc/failover", {});
    assert.equal(busy.status, 409);
    assert.equal(busy.body.code, "PLAN_BUSY");
    const change = await api("POST", "/v1/plans/dc/groups", { items: ["app1"] });
    assert.equal(change.body.code, "PLAN_BUSY");

    // still waiting after a while: nothing moves without the operator
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await api("GET", `/v1/jobs/${id}`)).body.state, "waiting");
    // a confirmation of another action than the one the job waits at is refused (no slipping on)
    const stale = await api("POST", "/v1/plans/dc/confirm", { step: "group-3-pre-1" });
    assert.equal(stale.status, 409, JSON.stringify(stale.body));
    assert.equal(stale.body.code, "PLAN_CONFIRM_STALE");
    const ok = await api("POST", "/v1/plans/dc/confirm", { step: "group-2-pre-1" });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body, {
      job: id,
      step: "group-2-pre-1",
      message: "check the database answers",
      accepted: true,
    });
    const j = await succeeded(id);
    const out = await following;
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stdout,
      /group 1: items started\n {2}db: succeeded \(job-\w+\), now protected\ngroup 1: items done\ngroup 1: post action 1: script, done\ngroup 2: pre action 1: waiting for an operator: check the database answers\n {2}confirm with 'switchback plans confirm dc'\n/,
    );
    assert.match(
      out.stdout,
      /group 2: post action 1: machine-script, done\nsummary: 3 of 3 machines succeeded\n/,
    );
    await assertGroupOrder(j);
    const confirmedAt = Date.parse(step(j, "group-2-pre-1").finishedAt);
    for (const c of await children(j, "group-2-items")) {
      assert.ok(Date.parse(c.createdAt) >= confirmedAt, "group 2 started after the confirmation");
    }
    const all = await items();
    for (const m of MACHINES) assert.ok(all[m].drill !== null, `${m} has a drill copy`);
    // the machine-script ran in each drill copy, with that copy's environment and folder
    for (const m of ["app1", "app2"]) {
      const e = envFile(path.join(marks(), `ms-${m}.env`));
      const copy = all[m].drill.instanceId as string;
      const folder = path.join(data(), "sites", "recovery", "machines", copy);
      assert.equal(e.SWITCHBACK_ITEM, m);
      assert.equal(e.SWITCHBACK_INSTANCE, copy);
      assert.equal(e.SWITCHBACK_SITE, "recovery");
      assert.equal(e.SWITCHBACK_GROUP, "2");
      assert.equal(e.SWITCHBACK_DISKS, `${folder}/disk-0.img:${folder}/disk-1.img`);
      assert.equal(readFileSync(path.join(marks(), `ms-${m}.pwd`), "utf8").trim(), folder);
    }
    const again = await sb(["plans", "confirm", "dc"]);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /no running job, so there is nothing to confirm.*\[PLAN_CONFIRM_NOT_ALLOWED\]/,
    );
    t.diagnostic(`plan test failover of 3 machines in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  it("cleans the drill up from the CLI, following the job", async () => {
    const r = await sb(["plans", "test-failover-cleanup", "dc", "--notes", "drill ok", "--wait"]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /all groups: items started/);
    for (const m of MACHINES)
      assert.match(r.stdout, new RegExp(`  ${m}: succeeded \\(job-\\w+\\), now protected`));
    assert.match(r.stdout, /summary: 3 of 3 machines succeeded/);
    assert.match(r.stdout, /job job-\w+ \(plan-test-failover-cleanup\) succeeded/);
    const all = await items();
    for (const m of MACHINES) assert.equal(all[m].drill, null, `${m}'s drill copy is gone`);
    // the jobs list filters by kind on the vault
    const cleanups = (await api("GET", "/v1/jobs?kind=test-failover-cleanup&limit=1000")).body as Json[];
    assert.equal(cleanups.length, MACHINES.length, "one cleanup job per machine");
    assert.ok(cleanups.every((j) => j.kind === "test-failover-cleanup"));
    const planJobs = (await api("GET", "/v1/jobs?kind=plan-test-failover-cleanup")).body as Json[];
    assert.deepEqual(
      planJobs.map((j) => j.kind),
      ["plan-test-failover-cleanup"],
    );
  });

  it("fails over (planned), commits, reprotects and fails back, group by group", async (t) => {
    const times: string[] = [];
    const timed = async (op: string, body: unknown = {}) => {
      const t0 = Date.now();
      const j = await succeeded((await runPlan("dc", op, body)).job.id);
      times.push(`${op} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      return j;
    };
    const fo = await timed("failover", { planned: true });
    await assertGroupOrder(fo);
    await assertPhases("failed-over", "primary → recovery");
    for (const c of [...(await children(fo, "group-1-items")), ...(await children(fo, "group-2-items"))]) {
      assert.equal(c.kind, "failover");
      assert.equal(c.params.planned, true, "planned goes to every item");
    }
    const env = envFile(path.join(marks(), "g1-failover.env"));
    assert.equal(env.SWITCHBACK_OPERATION, "failover");
    const all = await items();
    for (const m of MACHINES)
      assert.equal(all[m].failover.sourceShutdown.outcome, "shut down after a final point");

    // commit on a vault that kills itself after the items step ran, before it was recorded: the
    // resumed step finds the commits it started (they succeeded) instead of starting new ones
    await vault.stop();
    await restart("plan-commit:all-groups-items:after");
    const t0 = Date.now();
    const started = await runPlan("dc", "commit");
    const sig = await new Promise<string | null>((resolve) =>
      vault.child.once("exit", (_c, s) => resolve(s)),
    );
    assert.equal(sig, "SIGKILL", "the vault killed itself at the fault point");
    await restart();
    const commit = await succeeded(started.job.id);
    times.push(`commit (with kill -9 and restart) ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(step(commit, "all-groups-items").attempts, 2, "the items step ran again after the restart");
    for (const m of MACHINES) {
      const jobs = ((await api("GET", `/v1/jobs?item=${m}`)).body as Json[]).filter(
        (x) => x.kind === "commit",
      );
      assert.equal(jobs.length, 1, `${m} was committed once`);
      assert.equal(jobs[0].createdBy, `plan dc (${started.job.id})`);
    }
    assert.deepEqual(
      commit.steps.map((s: Json) => s.name),
      ["all-groups-items", "summary"],
    );
    await assertPhases("failover-committed", "primary → recovery");

    const rp = await timed("reprotect");
    await assertGroupOrder(rp);
    await assertPhases("protected", "recovery → primary");

    const fb = await timed("failback", { planned: true });
    await assertGroupOrder(fb);
    await assertPhases("failed-over", "recovery → primary");
    assert.equal(readFileSync(path.join(marks(), "failback-g2"), "utf8").trim(), "app1,app2");
    assert.ok(!existsSync(path.join(marks(), "g1-failback.env")), "failover actions do not run on failback");
    assert.deepEqual(step(fb, "summary").output.failed, []);
    t.diagnostic(`plan operations: ${times.join(", ")}`);
  });
});

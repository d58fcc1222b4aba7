// The operator's command line over a real vault process: a machine booted by the `process` provider
// (workload + agent), then protect, items, points, drill and cleanup, planned failover, commit,
// reprotect and the jobs commands, each as a real `switchback` process. Checks what an operator
// relies on: the decision in words before a job starts, --wait's exit status and step lines, a
// refusal as one sentence with its code (exit 1), a usage error (exit 2), --dry-run starting nothing.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, type CliResult, cli, tempDir } from "../helpers/env.ts";
import {
  apiOf,
  createFastPolicy,
  defineMachine,
  type Json,
  killMachines,
  startVaultProcess,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

const MiB = 1024 * 1024;
const JOB_ID = /job-[0-9a-z]{12}/;

describe("the lifecycle from the command line", { timeout: 300_000 }, () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: VaultProcess;
  let env: NodeJS.ProcessEnv;
  const data = () => path.join(tmp.dir, "data");

  const sb = (...args: string[]): Promise<CliResult> => cli(args, { env });
  async function ok(...args: string[]): Promise<string> {
    const r = await sb(...args);
    assert.equal(r.code, 0, `switchback ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }
  const json = async (...args: string[]): Promise<Json> => JSON.parse(await ok(...args, "--json"));
  const item = () => json("items", "show", "web1");
  const jobCount = async () => (await json("jobs", "list", "--limit", "1000")).length as number;

  before(async () => {
    tmp = tempDir("sb-ops-cli-");
    vault = await startVaultProcess(data());
    env = { SWITCHBACK_VAULT: vault.url, SWITCHBACK_TOKEN: vault.token };
    const api = apiOf(vault);
    await createFastPolicy(api);
    await defineMachine(api, { name: "web1", ackLog: path.join(tmp.dir, "acks.log") });
  });

  after(async () => {
    await vault?.stop();
    if (tmp !== undefined) killMachines(data());
    if (process.env.KEEP_TMP === undefined) tmp?.cleanup();
    else console.log("kept", tmp?.dir);
  });

  it("protects a machine and shows the item, its health and its points", async () => {
    assert.match(await ok("machines", "start", "web1"), /^started machine web1 \(instance \S+\)$/m);
    await until("the agent's first heartbeat with its disks", async () => {
      const m = await json("machines", "show", "web1");
      return m.lastHeartbeatAt !== null && m.disks.length === 2;
    });

    const prot = await ok(
      "protect",
      "web1",
      "--to",
      "recovery",
      "--policy",
      "fast",
      "--target-ip",
      "10.20.0.15",
      "--test-network",
      "drill-net",
      "--wait",
    );
    assert.match(prot, /^protecting web1: primary → recovery, policy fast, .*\(item item-\S+\)$/m);
    assert.match(prot, /^started job job-\S+ \(enable\)$/m);
    assert.match(prot, /^ {2}\[1\/2\] configure succeeded \(.+\)$/m, "one line per finished step");
    assert.match(prot, /^job job-\S+ \(enable\) succeeded/m);
    await until("initial replication", async () => (await item()).phase === "protected");

    const list = await json("items", "list");
    assert.deepEqual(
      list.map((i: Json) => [i.name, i.phase, i.direction]),
      [["web1", "protected", "primary → recovery"]],
    );
    assert.equal((await json("items", "list", "--phase", "failed-over")).length, 0);
    const table = (await ok("items", "list")).split("\n");
    assert.match(table[0]!, /^NAME +PHASE +DIRECTION +RPO \/ THRESHOLD +LATEST POINT +REPLICATION +JOB$/);
    assert.match(table[1]!, /^web1 +protected +primary → recovery +\S+ \/ 1m healthy +\S+ ago +- +-$/);

    const shown = await item();
    assert.equal(shown.targetSettings.ip, "10.20.0.15");
    assert.equal(shown.targetSettings.testNetwork, "drill-net");
    const human = await ok("items", "show", "web1");
    assert.match(human, /^direction: +primary → recovery$/m);
    assert.match(human, /^allowed operations: +test-failover, failover, disable$/m);
    assert.match(human, /^ {2}hostname: +\S+$/m, "the machine summary");
    assert.match(human, /^ {2}latest: +\d{8}T\d{6}/m, "the latest point");
    assert.match(human, /^ {2}ip: +10\.20\.0\.15$/m);
    assert.match(human, /^[0-9a-f-]{36} +os +8\.0 MiB$/m, "disk roles with sizes");

    const dataDisk = Object.entries(shown.targetSettings.diskRoles).find(([, r]) => r === "data")![0];
    const upd = await json(
      "items",
      "update",
      "web1",
      "--cpus",
      "2",
      "--memory",
      "512M",
      "--disk-role",
      `${dataDisk}=data`,
    );
    assert.equal(upd.targetSettings.cpus, 2);
    assert.equal(upd.targetSettings.memoryBytes, 512 * MiB);

    const points = await json("points", "list", "web1");
    assert.ok(points.length >= 1);
    assert.deepEqual(Object.keys(points[0]).sort(), ["ageSeconds", "consistency", "createdAt", "id"]);
    assert.match(await ok("points", "list", "web1"), /^ID +CREATED +AGE +CONSISTENCY$/m);
  });

  it("runs a drill and cleans it up, with --wait's step lines and --json's final job", async () => {
    const bad = await sb("test-failover", "web1", "--point", "yesterday");
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /^switchback: recovery point "yesterday" is not valid; .* \[POINT_REQUEST_INVALID\]\n$/,
    );

    const drill = await ok("test-failover", "web1", "--point", "latest-processed", "--wait");
    assert.match(drill, /^test failover of web1: primary → recovery$/m);
    // the item's own test network, named
    assert.match(drill, /on test network drill-net; replication goes on$/m);
    assert.match(drill, /^ {2}\[\d\/\d\] select-point succeeded/m);
    assert.match(drill, /^job job-\S+ \(test-failover\) succeeded/m);
    assert.notEqual((await item()).drill, null);

    // without --wait the job id comes at once; `jobs watch` follows it
    const cleanup = await json("test-failover-cleanup", "web1", "--notes", "drill ok: records present");
    assert.match(cleanup.job.id, JOB_ID);
    const done = await json("jobs", "watch", cleanup.job.id);
    assert.equal(done.state, "succeeded");
    assert.ok(done.steps.some((s: Json) => s.output?.notes === "drill ok: records present"));
    assert.equal((await item()).drill, null);
  });

  it("shows a failover's decision with --dry-run and starts nothing", async () => {
    const before = await jobCount();
    const dry = await ok("failover", "web1", "--planned", "--dry-run");
    assert.match(dry, /^failover of web1: primary → recovery$/m);
    assert.match(dry, /replication primary → recovery stops before the failover begins/);
    assert.match(dry, /^ {2}! the failover cannot be cancelled once replication has stopped$/m);
    assert.match(dry, /^dry run: nothing was started$/m);
    assert.doesNotMatch(dry, JOB_ID);
    assert.equal(await jobCount(), before);
    assert.equal((await item()).phase, "protected");
  });

  it("fails over (planned), refuses what the state does not allow, commits and reprotects", async () => {
    const fo = await ok("failover", "web1", "--planned", "--wait");
    assert.match(fo, /^started job job-\S+ \(failover\)$/m);
    assert.match(fo, /^ {2}\[3\/\d\] stop-replication succeeded/m);
    assert.match(fo, /^job job-\S+ \(failover\) succeeded/m);
    const failedOver = await item();
    assert.equal(failedOver.phase, "failed-over");
    assert.equal(failedOver.failover.sourceShutdown.outcome, "shut down after a final point");

    const again = await sb("failover", "web1");
    assert.equal(again.code, 1);
    assert.equal(again.stdout, "");
    assert.equal(
      again.stderr,
      "switchback: failover needs a protected item, but the item is failed-over (primary → recovery) [OPERATION_NOT_ALLOWED]\n",
    );
    const usage = await sb("failover", "web1", "--no-such-option");
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /unknown option '--no-such-option'/);

    const commit = await ok("commit", "web1", "--wait");
    assert.match(commit, /^commit failover of web1: primary → recovery$/m);
    assert.match(commit, /^ {2}! the commit failover cannot be cancelled once it has started$/m);
    const twice = await sb("commit", "web1", "--wait");
    assert.equal(twice.code, 1);
    assert.match(
      twice.stderr,
      /^switchback: commit needs a failed-over item, .* \[OPERATION_NOT_ALLOWED\]\n$/,
    );
    assert.equal((await item()).phase, "failover-committed");
    assert.match(await ok("points", "list", "web1"), /^item web1 has no recovery points at its target$/m);

    const rp = await json("reprotect", "web1", "--location", "original", "--wait");
    assert.equal(rp.state, "succeeded");
    assert.equal(rp.kind, "reprotect");
    const back = await item();
    assert.equal(back.direction, "recovery → primary");
    assert.equal(back.phase, "protected");
  });

  it("lists and shows jobs, their steps and logs", async (t) => {
    const jobs = await json("jobs", "list", "--item", "web1");
    assert.deepEqual(
      jobs.map((j: Json) => j.kind),
      ["reprotect", "commit", "failover", "test-failover-cleanup", "test-failover", "enable"],
    );
    assert.ok(jobs.every((j: Json) => j.state === "succeeded"));
    assert.equal((await json("jobs", "list", "--state", "failed")).length, 0);
    const failover = jobs.find((j: Json) => j.kind === "failover");
    const shown = await json("jobs", "show", failover.id);
    assert.deepEqual(
      shown.steps.map((s: Json) => s.state),
      shown.steps.map(() => "succeeded"),
    );
    const human = await ok("jobs", "show", failover.id);
    assert.match(human, /^state: +succeeded$/m);
    assert.match(human, /^# +STEP +STATE +TRIES +TOOK +OUTPUT$/m);
    assert.match(human, /^2 +select-point +succeeded +1 +\S+ +point=\d{8}T/m);
    const table = await ok("jobs", "list");
    assert.match(table, /^JOB +KIND +ITEM +STATE +PROGRESS +CREATED +TOOK +ERROR$/m);
    assert.match(await ok("jobs", "logs", failover.id), /info/);

    // on a terminal the follower draws one progress line, redrawn in place
    if (spawnSync("sh", ["-c", "command -v script"]).status === 0) {
      const tty = spawnSync(
        "script",
        ["-qec", `"${process.execPath}" "${CLI}" jobs watch ${failover.id}`, "/dev/null"],
        {
          env: { ...process.env, ...env },
          encoding: "utf8",
        },
      );
      assert.equal(tty.status, 0, tty.stdout);
      const redraw = "\r\u001b[K"; // carriage return, then erase to the end of the line
      assert.ok(tty.stdout.includes(`${redraw}[${"#".repeat(24)}] 100%  6/6 complete  `), tty.stdout);
      assert.match(tty.stdout, /^job job-\S+ \(failover\) succeeded in /m);
    } else t.diagnostic("no `script` here: the terminal progress line is not checked");

    const cancel = await sb("jobs", "cancel", failover.id);
    assert.equal(cancel.code, 1, "a finished job cannot be cancelled");
    assert.match(cancel.stderr, /^switchback: .* \[[A-Z_]+\]\n$/);
    const badId = await sb("jobs", "show", "nope");
    assert.equal(badId.code, 1);
    assert.match(badId.stderr, /\[INVALID_JOB_ID\]\n$/);
  });

  it("--wait keeps following by polling when the event stream drops", async () => {
    // a proxy in front of the vault that cuts every event stream after its first event
    const upstream = new URL(vault.url);
    let cut = 0;
    const proxy = createServer((req, res) => {
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: req.url,
          method: req.method,
          headers: req.headers,
        },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          if (!req.url?.endsWith("/events")) return ur.pipe(res);
          ur.once("data", (chunk: Buffer) => {
            res.write(chunk);
            cut++;
            ur.destroy();
            res.socket?.destroy();
          });
        },
      );
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    try {
      const via = { ...env, SWITCHBACK_VAULT: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` };
      const r = await cli(["test-failover", "web1", "--wait"], { env: via });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(cut, 1, "the stream was cut once");
      assert.match(r.stdout, /^ {2}\[5\/5\] start succeeded/m);
      assert.match(r.stdout, /^job job-\S+ \(test-failover\) succeeded in /m);
    } finally {
      await new Promise<void>((r) => proxy.close(() => r()));
    }
    assert.match(await ok("test-failover-cleanup", "web1", "--wait"), /\(test-failover-cleanup\) succeeded/);
  });

  it("stops the machine through its site's provider", async () => {
    assert.match(await ok("machines", "stop", "web1"), /^stopped machine web1/m);
    const m = await json("machines", "show", "web1");
    assert.notEqual(m.powerState, "running");
  });
});

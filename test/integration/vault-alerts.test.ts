// Alerts and metrics on a real vault (in-process, 500 ms heartbeats) on SQLite and PostgreSQL, with a
// webhook receiver on loopback. Conditions are caused for real: an agent that stops heartbeating, a
// machine booted by the `process` provider that is stopped while protected with a tight policy, a job
// that fails; the receiver refuses the first attempts of a delivery. /metrics is scraped and parsed.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readdirSync, readSync, rmSync, writeSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { alertsService } from "../../src/vault/alerts/evaluator.ts";
import { drService } from "../../src/vault/dr.ts";
import { inProcessApplianceHeartbeat, type RunningVault, startVault } from "../../src/vault/server.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { cli, tempDir } from "../helpers/env.ts";
import { apiOf, defineMachine, type Json, killMachines, until } from "../helpers/vault.ts";

const MiB = 1024 * 1024;

interface Delivery {
  event: "raised" | "cleared";
  alert: Json;
}

/** A webhook receiver on loopback: records what it accepted, answers 500 while `failing`. */
async function receiver() {
  const accepted: Delivery[] = [];
  let refused = 0;
  const state = { failing: false };
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      if (state.failing) {
        refused++;
        res.writeHead(500).end("not now");
        return;
      }
      accepted.push(JSON.parse(body) as Delivery);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/switchback?secret=s3cret`,
    accepted,
    refused: () => refused,
    state,
    of: (kind: string, event?: string) =>
      accepted.filter((d) => d.alert.kind === kind && (event === undefined || d.event === event)),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus' text format strictly enough to catch a malformed line. */
function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g))
      labels[l[1]!] = l[2]!;
    const value = m[4] === "+Inf" ? Number.POSITIVE_INFINITY : Number(m[4]);
    assert.ok(!Number.isNaN(value), `a number: ${line}`);
    const base = m[1]!.replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(m[1]!) || types.has(base), `${m[1]} has a TYPE line`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples };
}

function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

for (const d of databases) {
  describe(`alerts and metrics on ${d.name}`, { skip: d.skip, timeout: 180_000 }, () => {
    let db: CreatedDatabase;
    let tmp: { dir: string; cleanup: () => void };
    let vault: RunningVault;
    let hook: Awaited<ReturnType<typeof receiver>>;
    let api: ReturnType<typeof apiOf>;
    const data = () => path.join(tmp.dir, "data");

    const alerts = async (q = ""): Promise<Json[]> => {
      const r = await api("GET", `/v1/alerts${q}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };
    const openAlert = async (kind: string, subject: string) =>
      (await alerts(`?open=true&kind=${kind}`)).find((a) => a.subject === subject);

    before(async () => {
      db = await d.create();
      tmp = tempDir("sb-alerts-");
      hook = await receiver();
      vault = await startVault({
        data: data(),
        db: db.url,
        port: 0,
        log: false,
        heartbeatIntervalMs: 500,
        alertWebhook: hook.url,
        services: [
          inProcessApplianceHeartbeat,
          drService(),
          alertsService({ evaluateEveryMs: 200, webhook: { backoffMs: 300, pollMs: 100 } }),
        ],
      });
      api = apiOf({ url: vault.url, token: vault.adminToken as string });
    });

    after(async () => {
      await vault?.close();
      if (tmp !== undefined) killMachines(data());
      await hook?.close();
      await db?.drop();
      tmp?.cleanup();
    });

    it("stores the webhook from --alert-webhook and changes it with PUT, refusing what is not http(s)", async () => {
      assert.deepEqual((await api("GET", "/v1/settings/alert-webhook")).body, { url: hook.url });
      const bad = await api("PUT", "/v1/settings/alert-webhook", { url: "ftp://example.com/x" });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, "INVALID_REQUEST");
      const off = await api("PUT", "/v1/settings/alert-webhook", { url: null });
      assert.deepEqual(off.body, { url: null });
      const on = await api("PUT", "/v1/settings/alert-webhook", { url: hook.url });
      assert.deepEqual(on.body, { url: hook.url });
    });

    it("an agent that stops heartbeating is lost, the webhook gets it after refusing it, and it clears when the agent is back", async () => {
      const enrol = await api("POST", "/v1/enrol-tokens", {});
      assert.equal(enrol.status, 201, JSON.stringify(enrol.body));
      const machineId = randomUUID();
      const reg = await fetch(`${vault.url}/v1/agent/register`, {
        method: "POST",
        headers: { authorization: `Bearer ${enrol.body.token}`, "content-type": "application/json" },
        body: JSON.stringify({ machineId, name: "db1", site: "primary" }),
      });
      assert.equal(reg.status, 200);
      const agent = apiOf({ url: vault.url, token: ((await reg.json()) as Json).agentToken });
      const heartbeat = {
        machineId,
        hostname: "db1",
        os: "Linux",
        cpus: 2,
        memoryBytes: 1 << 30,
        disks: [{ uuid: randomUUID(), path: "/dev/vda", sizeBytes: 64 * MiB, sectorSize: 512 }],
        nics: [],
      };
      const loop = { beating: true, done: false };
      const beats = (async () => {
        while (!loop.done) {
          if (loop.beating) assert.equal((await agent("POST", "/v1/agent/heartbeat", heartbeat)).status, 200);
          await new Promise((r) => setTimeout(r, 150));
        }
      })();
      try {
        await until("the agent's disks are known", async () => {
          const r = (await api("GET", "/v1/machines/db1")).body;
          return r.disks?.length === 1;
        });
        // an item that replicates from it: only then does a silent agent matter
        const prot = await api("POST", "/v1/items", { machine: "db1", to: "recovery", policy: "default" });
        assert.equal(prot.status, 202, JSON.stringify(prot.body));
        await until("the item replicates", async () => {
          const it = (await api("GET", "/v1/items/db1")).body;
          return it.phase === "initial-replication";
        });
        const subject = `machine:${machineId}`;
        await new Promise((r) => setTimeout(r, 1000));
        assert.equal(await openAlert("agent-lost", subject), undefined, "no alert while it heartbeats");

        hook.state.failing = true;
        loop.beating = false;
        const raised = await until("agent-lost raised", () => openAlert("agent-lost", subject), 15_000);
        assert.equal(raised.severity, "critical");
        assert.match(raised.message, /machine db1: its agent has not reported for .* item db1 replicates/);
        const failing = await until(
          "a failed delivery recorded",
          async () => {
            const a = (await api("GET", `/v1/alerts/${raised.id}`)).body;
            return hook.refused() >= 2 && /^attempt \d+ .*HTTP 500/.test(a.delivery.error ?? "")
              ? a
              : undefined;
          },
          15_000,
        );
        assert.equal(failing.delivery.deliveredAt, null);
        assert.doesNotMatch(failing.delivery.error, /s3cret/, "the webhook's secret stays out of the error");
        hook.state.failing = false;
        await until(
          "delivered after the retries",
          async () => hook.of("agent-lost", "raised").length === 1,
          15_000,
        );
        const delivered = (await api("GET", `/v1/alerts/${raised.id}`)).body;
        assert.ok(delivered.delivery.deliveredAt !== null);
        assert.equal(delivered.delivery.error, null);
        assert.equal(hook.of("agent-lost", "raised")[0]!.alert.id, raised.id);

        loop.beating = true;
        await until("agent-lost cleared", async () => {
          const a = (await api("GET", `/v1/alerts/${raised.id}`)).body;
          return a.open === false ? a : undefined;
        });
        await until("the clear delivered", async () => hook.of("agent-lost", "cleared").length === 1, 15_000);
        const cleared = hook.of("agent-lost", "cleared")[0]!.alert;
        assert.equal(cleared.id, raised.id);
        assert.equal(cleared.open, false);
        assert.ok(cleared.clearedAt > cleared.raisedAt);
        assert.equal(hook.of("agent-lost", "raised").length, 1, "raised once");
        assert.equal((await alerts("?kind=agent-lost")).length, 1, "one alert for the whole episode");

        // the item goes, and so does anything it could alert about
        assert.equal((await api("POST", "/v1/items/db1/disable", {})).status, 202);
      } finally {
        loop.done = true;
        await beats;
      }
    });

    it("a protected machine that stops breaches its RPO and stalls; started again, both clear", async (t) => {
      const p = await api("POST", "/v1/policies", {
        name: "tight",
        rpoThreshold: "5s",
        retention: "1h",
        appConsistentEvery: "0",
        crashConsistentEvery: "1s",
      });
      assert.equal(p.status, 201, JSON.stringify(p.body));
      await defineMachine(api, {
        name: "web1",
        ackLog: path.join(tmp.dir, "acks.log"),
        osMiB: 4,
        dataMiB: 4,
      });
      assert.equal((await api("POST", "/v1/machines/web1/start", {})).status, 200);
      await until("the agent reports its disks", async () => {
        const r = (await api("GET", "/v1/machines/web1")).body;
        return r.lastHeartbeatAt !== null && r.disks.length === 2;
      });
      const prot = await api("POST", "/v1/items", { machine: "web1", to: "recovery", policy: "tight" });
      assert.equal(prot.status, 202, JSON.stringify(prot.body));
      const item = await until("protected", async () => {
        const it = (await api("GET", "/v1/items/web1")).body;
        return it.phase === "protected" ? it : undefined;
      });
      const subject = `item:${item.id}`;
      await until("the enable job finished", async () => {
        const j = (await api("GET", `/v1/jobs/${prot.body.job.id}`)).body;
        return j.state === "succeeded";
      });
      const jobs: Json[] = (await api("GET", "/v1/jobs?limit=1000")).body;
      const enabled = jobs.filter((j) => j.kind === "enable" && j.state === "succeeded").length;

      // while it replicates: metrics with a small RPO, and no alert about it
      const scrape = await fetch(`${vault.url}/metrics`, {
        headers: { authorization: `Bearer ${vault.adminToken}` },
      });
      assert.equal(scrape.status, 200);
      assert.match(scrape.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const { types, samples } = parsePrometheus(await scrape.text());
      const labels = { item: "web1", direction: "primary->recovery" };
      const rpoNow = sample(samples, "switchback_item_rpo_seconds", labels);
      assert.ok(rpoNow !== undefined && rpoNow >= 0 && rpoNow < 5, `RPO ${rpoNow} s under the threshold`);
      assert.equal(sample(samples, "switchback_item_rpo_threshold_seconds", labels), 5);
      assert.equal(sample(samples, "switchback_replication_backlog_bytes", { item: "web1" }), 0);
      assert.ok(
        (sample(samples, "switchback_replication_throughput_bytes_per_second", { item: "web1" }) ?? -1) >= 0,
      );
      assert.equal(sample(samples, "switchback_jobs_total", { kind: "enable", state: "succeeded" }), enabled);
      assert.equal(types.get("switchback_job_duration_seconds"), "histogram");
      assert.equal(sample(samples, "switchback_job_duration_seconds_count", { kind: "enable" }), enabled);
      assert.equal(
        sample(samples, "switchback_job_duration_seconds_bucket", { kind: "enable", le: "+Inf" }),
        enabled,
      );
      assert.ok((sample(samples, "switchback_agents", { liveness: "online" }) ?? 0) >= 1);
      assert.equal(sample(samples, "switchback_alerts_open", { kind: "rpo-breach" }), 0);
      assert.equal(sample(samples, "switchback_alerts_open", { kind: "appliance-lost" }), 0);
      assert.equal(await openAlert("rpo-breach", subject), undefined);

      // the machine stops: its points stop coming
      const stoppedAt = Date.now();
      assert.equal((await api("POST", "/v1/machines/web1/stop", {})).status, 200);
      const breach = await until("rpo-breach raised", () => openAlert("rpo-breach", subject), 20_000);
      const stalled = await until(
        "replication-stalled raised",
        () => openAlert("replication-stalled", subject),
        20_000,
      );
      t.diagnostic(
        `rpo-breach ${Date.parse(breach.raisedAt) - stoppedAt} ms and replication-stalled ${Date.parse(stalled.raisedAt) - stoppedAt} ms after the stop`,
      );
      assert.match(
        breach.message,
        /item web1 \(primary → recovery\): RPO [\d.]+s is over its policy's threshold of 5s/,
      );
      assert.equal(stalled.severity, "warning");
      await until(
        "both delivered",
        async () =>
          hook.of("rpo-breach", "raised").some((x) => x.alert.id === breach.id) &&
          hook.of("replication-stalled", "raised").some((x) => x.alert.id === stalled.id),
      );
      const during = parsePrometheus(
        await (
          await fetch(`${vault.url}/metrics`, { headers: { authorization: `Bearer ${vault.adminToken}` } })
        ).text(),
      ).samples;
      assert.ok((sample(during, "switchback_item_rpo_seconds", labels) ?? 0) > 5, "the RPO shows the breach");
      assert.equal(sample(during, "switchback_alerts_open", { kind: "rpo-breach" }), 1);

      // started again: replication resumes and both clear
      assert.equal((await api("POST", "/v1/machines/web1/start", {})).status, 200);
      for (const a of [breach, stalled]) {
        await until(
          `${a.kind} cleared`,
          async () => (await api("GET", `/v1/alerts/${a.id}`)).body.open === false,
          60_000,
        );
      }
      await until(
        "the clears delivered",
        async () =>
          hook.of("rpo-breach", "cleared").some((x) => x.alert.id === breach.id) &&
          hook.of("replication-stalled", "cleared").some((x) => x.alert.id === stalled.id),
      );
      assert.equal((await alerts(`?kind=rpo-breach&subject=${subject}`)).length, 1);
    });

    it("a job that fails raises job-failed once, also when its retry fails again", async () => {
      // a real fault: every pack at the recovery site has a flipped byte and the site's replicas are
      // lost, so making the drill's disks from a point fails the block check (a point request no
      // point answers is refused up front)
      rmSync(path.join(data(), "sites", "recovery", "replicas"), { recursive: true, force: true });
      const packs = path.join(data(), "sites", "recovery", "datastore", "packs");
      for (const dir of readdirSync(packs)) {
        for (const f of readdirSync(path.join(packs, dir))) {
          const fd = openSync(path.join(packs, dir, f), "r+");
          const b = Buffer.alloc(1);
          readSync(fd, b, 0, 1, 64);
          b[0] = (b[0] as number) ^ 0xff;
          writeSync(fd, b, 0, 1, 64);
          closeSync(fd);
        }
      }
      const r = await api("POST", "/v1/items/web1/test-failover", { point: "latest-processed" });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const jobId = r.body.job.id as string;
      const waitFailed = () =>
        until("the job fails", async () => {
          const j = (await api("GET", `/v1/jobs/${jobId}`)).body;
          return j.state === "failed" ? j : undefined;
        });
      const job = await waitFailed();
      const raised = await until("job-failed raised", () => openAlert("job-failed", `job:${jobId}`), 10_000);
      assert.match(
        raised.message,
        new RegExp(`job ${jobId} \\(test-failover of item web1\\) failed: ${job.error.code}`),
      );
      await until("delivered", async () => hook.of("job-failed", "raised").length === 1, 10_000);

      assert.equal((await api("POST", `/v1/jobs/${jobId}/retry`, {})).status, 200);
      await waitFailed();
      await new Promise((res) => setTimeout(res, 1000)); // a few evaluation rounds
      const all = await alerts(`?subject=job:${jobId}`);
      assert.equal(all.length, 1, "one alert for the job");
      assert.equal(all[0].open, true);
      assert.equal(hook.of("job-failed").length, 1, "one event sent");
      const { samples } = parsePrometheus(
        await (
          await fetch(`${vault.url}/metrics`, { headers: { authorization: `Bearer ${vault.adminToken}` } })
        ).text(),
      );
      assert.equal(sample(samples, "switchback_jobs_total", { kind: "test-failover", state: "failed" }), 1);
      assert.equal(sample(samples, "switchback_alerts_open", { kind: "job-failed" }), 1);

      // the CLI lists it
      const env = { SWITCHBACK_VAULT: vault.url, SWITCHBACK_TOKEN: vault.adminToken as string };
      const list = await cli(["alerts", "list", "--open", "--kind", "job-failed", "--json"], { env });
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(
        (JSON.parse(list.stdout) as Json[]).map((a) => a.id),
        [raised.id],
      );
      const table = await cli(["alerts", "--open"], { env });
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^ALERT +KIND +SEVERITY +STATE +RAISED +WEBHOOK +MESSAGE$/m);
      assert.match(
        table.stdout,
        new RegExp(`${raised.id} +job-failed +critical +open .* delivered +job ${jobId}`),
      );
    });

    it("/metrics refuses a request without a valid token", async () => {
      for (const headers of [{}, { authorization: "Bearer nope" }] as Record<string, string>[]) {
        const r = await fetch(`${vault.url}/metrics`, { headers });
        assert.equal(r.status, 401);
        assert.equal(((await r.json()) as Json).code, "UNAUTHENTICATED");
      }
    });
  });
}

// The end-to-end test of issue 5: two real sites on this host (`switchback lab`), a vault, an
// appliance per site inside the site's network namespace, and a privileged machine (its own network
// and mount namespaces, ext4 root and data disks on loop devices) running a SQLite-backed service
// that acknowledges every commit to a log outside the machine. The whole cycle runs on it: drill on
// the test network, planned failover with the source shut down, commit, reprotect (counting what it
// ships), failback onto the primary's own disks, commit, reprotect again; then a cut link during
// steady replication (RPO alert, heals by itself) and the primary site lost (unplanned failover from
// the points already there, the old primary fenced when it comes back, reprotect the only way back).
// At every recovered copy: integrity_check ok, an unbroken sequence, every row acknowledged before the
// point was cut, the file tree matches its manifest, the service answers on its configured address.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Ack, readAcks } from "../../scripts/sql-workload.ts";
import { loopsRelease, netnsDelete } from "../../src/compute/process/netns.ts";
import { privilegedSkipReason, tempDir } from "../helpers/env.ts";
import { Scratch } from "../helpers/privileged.ts";
import {
  addressIn,
  defineSqlMachine,
  fetchJsonIn,
  SERVICE_PORT,
  startTwoSites,
  TWO_SITES_TOOLS,
  type TwoSites,
} from "../helpers/two-sites.ts";
import { type Json, succeededJob, until } from "../helpers/vault.ts";

const skip = privilegedSkipReason(["mkfs.xfs", ...TWO_SITES_TOOLS]);
const PUBLIC_PORT = 18080;

describe("two sites on one host: the whole DR cycle on a privileged machine", {
  timeout: 600_000,
  skip,
}, () => {
  let tmp: { dir: string; cleanup: () => void };
  let scratch: Scratch | undefined;
  let two: TwoSites;
  const ack = () => path.join(tmp.dir, "acks.log");
  const api = (method: string, p: string, body?: unknown) => two.api(method, p, body);

  const job = (id: string, ms?: number) =>
    succeededJob(two.api, id, { ...(ms !== undefined ? { ms } : {}), context: () => two.context() });

  async function operate(op: string, body: unknown = {}): Promise<Json> {
    const r = await api("POST", `/v1/items/db1/${op}`, body);
    assert.equal(r.status, 202, `${op}: ${JSON.stringify(r.body)}`);
    return job(r.body.job.id);
  }

  async function item(): Promise<Json> {
    const r = await api("GET", "/v1/items/db1");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  }

  /** The service's /status at `ip` (from `netns`, or the host), once it answers. */
  const service = (what: string, netns: string | null, ip: string, port = SERVICE_PORT, ms = 60_000) =>
    until(what, async () => fetchJsonIn(netns, `http://${ip}:${port}/status`) ?? undefined, ms);

  /** The checks every recovered copy passes; `mustHave`: the highest seq acknowledged before its point. */
  function checkCopy(what: string, s: Json, mustHave: number): void {
    assert.equal(
      s.bootCheck.integrity,
      "ok",
      `${what}: integrity_check at boot: ${JSON.stringify(s.bootCheck)}`,
    );
    assert.equal(s.bootCheck.unbroken, true, `${what}: rows form an unbroken sequence at boot`);
    assert.equal(s.bootCheck.badChecksums, 0, `${what}: no row has a bad checksum`);
    assert.deepEqual(s.bootCheck.manifestMissing, [], `${what}: every file of the manifest is there`);
    assert.deepEqual(s.bootCheck.manifestMismatched, [], `${what}: every file matches its manifest`);
    assert.ok(
      s.bootMaxSeq >= mustHave,
      `${what}: the copy holds row ${s.bootMaxSeq}, every acknowledged row up to ${mustHave} must be there`,
    );
    assert.equal(s.check.ok, true, `${what}: the service's own check now: ${JSON.stringify(s.check)}`);
  }

  /** The highest seq the production machine acknowledged before `isoTime`. */
  function ackedBefore(isoTime: string): number {
    const t = Date.parse(isoTime);
    const prod = readAcks(ack()).filter((a) => a.atMs !== null && a.atMs < t);
    return prod.length === 0 ? 0 : Math.max(...prod.map((a) => a.seq));
  }

  /** The highest seq acknowledged (by the copy at `site` only, when given). */
  const lastAck = (site?: string) => {
    const a = readAcks(ack()).filter((x) => site === undefined || x.site === site);
    return a.length === 0 ? 0 : (a[a.length - 1] as Ack).seq;
  };

  async function pointHeader(point: string): Promise<Json> {
    const r = await api("GET", "/v1/items/db1/points");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const p = (r.body as Json[]).find((x) => x.id === point);
    assert.ok(p !== undefined, `point ${point} is listed`);
    return p;
  }

  let EAST_IP: string;
  let WEST_IP: string;

  before(async () => {
    tmp = tempDir("sb-two-sites-");
    // the sites' folders on XFS: replicas are cloned by reflink (copy-on-write), as on a real appliance
    scratch = new Scratch("sb-two-sites-xfs-");
    const dev = scratch.attach(scratch.image("sites.img", 16 * 1024));
    scratch.mkfs(dev, "xfs");
    const data = path.join(scratch.mount(dev, "mnt"), "data");
    two = await startTwoSites({ lab: "sbe", data });
    EAST_IP = addressIn(two.sites[0], 10);
    WEST_IP = addressIn(two.sites[1], 20);
    // a point every second, RPO alert past 6 s
    const p = await two.api("POST", "/v1/policies", {
      name: "tight",
      rpoThreshold: "6s",
      retention: "1h",
      appConsistentEvery: "0",
      crashConsistentEvery: "1s",
    });
    assert.equal(p.status, 201, JSON.stringify(p.body));
  });

  after(async () => {
    await two?.stop();
    scratch?.cleanup();
    if (process.env.KEEP_TMP === undefined) tmp?.cleanup();
    else console.log("kept", tmp?.dir);
  });

  it("drill, failover, commit, reprotect, failback, commit, reprotect", async (t) => {
    const t0 = Date.now();
    const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    const [east, west] = two.sites;

    await defineSqlMachine(two.api, { name: "db1", site: "east", ackLog: ack(), ip: EAST_IP });
    const started = await api("POST", "/v1/machines/db1/start", {});
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const homeInstance = started.body.instanceId as string;
    const first = await service("the service at east answers", null, EAST_IP);
    assert.equal(first.site, "east");
    await until("the agent registers from its own namespace", async () => {
      const r = await api("GET", "/v1/machines/db1");
      return r.body.lastHeartbeatAt !== null && r.body.disks.length === 2 && r.body.site === "east";
    });
    mark("machine db1 runs at east on its own network and disks");

    const prot = await api("POST", "/v1/items", {
      machine: "db1",
      to: "west",
      policy: "tight",
      targetSettings: {
        ip: WEST_IP,
        subnet: west.subnet,
        publicPort: PUBLIC_PORT,
        servicePort: SERVICE_PORT,
      },
    });
    assert.equal(prot.status, 202, JSON.stringify(prot.body));
    await job(prot.body.job.id);
    await until(
      "initial replication",
      async () => ((await item()).phase === "protected" ? true : undefined),
      120_000,
    );
    await until("a few points at west", async () => (await item()).pointCount >= 3);
    mark("protected east → west");

    // drill on the test network: the copy takes the production address there and clashes with nothing
    const beforeDrill = await item();
    const drillJob = await operate("test-failover", { point: "latest-processed" });
    const drillPoint = drillJob.steps.find((s: Json) => s.name === "select-point").output.point as string;
    const drillHeader = await pointHeader(drillPoint);
    const drilled = await service("the drill copy answers on the test network", west.testNetns, WEST_IP);
    assert.equal(drilled.drill, true);
    checkCopy("drill copy", drilled, ackedBefore(drillHeader.createdAt));
    assert.equal(
      fetchJsonIn(null, `http://${WEST_IP}:${SERVICE_PORT}/status`, 1),
      null,
      "nothing answers at the production address",
    );
    await until("replication goes on during the drill", async () => {
      const it = await item();
      return it.latestPoint.id > beforeDrill.latestPoint.id ? it : undefined;
    });
    const drillInstance = (await item()).drill.instanceId as string;
    const made = (id: string) =>
      (
        JSON.parse(
          readFileSync(path.join(two.data, "sites", "west", "machines", id, "instance.json"), "utf8"),
        ).disks as { method: string }[]
      ).map((d) => d.method);
    const drillMade = made(drillInstance);
    assert.ok(
      drillMade.every((m) => m === "reflink"),
      `the drill copy's disks are copy-on-write clones of west's replica, not restores: ${drillMade}`,
    );
    const cleanup = await operate("test-failover-cleanup", { notes: "drill: integrity ok" });
    assert.equal(cleanup.steps[1].output.notes, "drill: integrity ok");
    assert.equal(
      existsSync(`/run/netns/${west.testNetns}.${drillInstance}`),
      false,
      "the drill copy's namespace is gone",
    );
    assert.equal(fetchJsonIn(west.testNetns, `http://${WEST_IP}:${SERVICE_PORT}/status`, 1), null);
    mark(`drill from ${drillPoint} and cleanup`);

    // planned failover: the source shuts down, the last point is drained, the copy boots at west
    const foStart = Date.now();
    const fo = await operate("failover", { planned: true });
    const atWest = await service("the recovered service answers at west", null, WEST_IP);
    const rto = (Date.now() - foStart) / 1000;
    const failedOver = await item();
    t.diagnostic(`failover job: ${JSON.stringify(fo.steps.map((s: Json) => [s.name, s.output]))}`);
    assert.equal(failedOver.phase, "failed-over");
    assert.equal(failedOver.failover.sourceShutdown.outcome, "shut down after a final point");
    assert.equal(fetchJsonIn(null, `http://${EAST_IP}:${SERVICE_PORT}/status`, 1), null, "east is shut down");
    const ackedAtFailover = lastAck("east");
    checkCopy("failover copy", atWest, ackedAtFailover);
    assert.equal(atWest.bootMaxSeq, ackedAtFailover, "a planned failover loses nothing");
    assert.equal(atWest.site, "west");
    const viaEdge = await service("the public port at west's edge", null, west.edgeAddress, PUBLIC_PORT);
    assert.equal(viaEdge.instance, atWest.instance);
    mark(
      `planned failover: the service answered at ${WEST_IP} after ${rto.toFixed(1)} s; rows up to ${ackedAtFailover}`,
    );
    const westInstance = fo.steps.find((s: Json) => s.name === "materialize").output.instanceId as string;
    t.diagnostic(
      `drill disks made by ${drillMade.join(", ")}; failover disks by ${made(westInstance).join(", ")}`,
    );

    await operate("commit");
    await until("the recovered machine writes", async () => lastAck() > ackedAtFailover + 100);

    // reprotect to the original location: only the blocks that differ cross the link
    const rp = await operate("reprotect", { location: "original" });
    const shipped = rp.steps.find((s: Json) => s.name === "initial-replication").output;
    assert.notEqual(shipped.mode, "full", "reprotect compares with the disks left at east, no full copy");
    const total = (64 + 128) * 1024 * 1024;
    assert.ok(shipped.bytesSent < total / 8, `reprotect shipped ${shipped.bytesSent} of ${total} bytes`);
    mark(
      `reprotect west → east (${shipped.mode}): ${shipped.bytesSent} bytes for ${shipped.changedBlocks} changed blocks of ${total / 4096}`,
    );

    // failback: the west copy shuts down, east boots from its own disks brought up to date
    const fb = await operate("failover", { planned: true });
    const mat = fb.steps.find((s: Json) => s.name === "materialize").output;
    assert.equal(mat.mode, "delta", "failback writes onto east's own disks");
    assert.equal(mat.instanceId, homeInstance, "the primary machine itself boots again");
    const back = await service("the service answers at east again", null, EAST_IP);
    const ackedAtFailback = lastAck("west");
    checkCopy("failback", back, ackedAtFailback);
    assert.equal(back.bootMaxSeq, ackedAtFailback, "a planned failback loses nothing");
    mark(`failback wrote ${mat.blocksWritten} blocks onto east's disks`);

    await operate("commit");
    assert.equal(
      fetchJsonIn(null, `http://${WEST_IP}:${SERVICE_PORT}/status`, 1),
      null,
      "the west copy is gone",
    );
    const westFolder = path.join(two.data, "sites", "west", "machines", westInstance);
    assert.equal(existsSync(path.join(westFolder, "instance.json")), false, "the west machine is removed");

    await until("east writes again", async () => lastAck() > ackedAtFailback + 100);
    const rp2 = await operate("reprotect", { location: "original" });
    const shipped2 = rp2.steps.find((s: Json) => s.name === "initial-replication").output;
    assert.ok(
      shipped2.bytesSent < total / 8,
      `second reprotect shipped ${shipped2.bytesSent} of ${total} bytes`,
    );
    mark(
      `reprotect east → west: ${shipped2.bytesSent} bytes for ${shipped2.changedBlocks} changed blocks (no full resync)`,
    );
    const final = await item();
    assert.equal(final.direction, "east → west");
    assert.equal(final.phase, "protected");
    void east;
  });

  it("a cut link raises the RPO alert and heals; a lost site fails over from the points at hand", async (t) => {
    const t0 = Date.now();
    const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    const [east, west] = two.sites;
    const subject = `item:${(await item()).id}`;
    const openAlert = async (kind: string) =>
      ((await api("GET", `/v1/alerts?open=true&kind=${kind}`)).body as Json[]).find(
        (a) => a.subject === subject,
      );
    const homeInstance = (await api("GET", "/v1/machines/db1")).body.instanceId as string;

    // the link between the sites is cut during steady replication: the RPO alert fires
    assert.equal(await openAlert("rpo-breach"), undefined, "no RPO alert while replication is steady");
    await two.cut("inter-site");
    const cutAt = Date.now();
    await new Promise((r) => setTimeout(r, 2000)); // a point committing as the link went may land
    const lastBeforeCut = (await item()).latestPoint.id as string;
    const breach = await until("rpo-breach raised", () => openAlert("rpo-breach"), 60_000);
    mark(
      `link cut: rpo-breach raised ${((Date.parse(breach.raisedAt) - cutAt) / 1000).toFixed(1)} s after the cut`,
    );
    assert.equal((await item()).latestPoint.id, lastBeforeCut, "no point crosses a cut link");
    // …and heals by itself when the link comes back, without a full resync
    await two.restore("inter-site");
    const healed = await until(
      "a point after the link came back",
      async () => {
        const it = await item();
        return it.latestPoint.id > lastBeforeCut ? it : undefined;
      },
      90_000,
    );
    await until(
      "rpo-breach resolved",
      async () => ((await openAlert("rpo-breach")) === undefined ? true : undefined),
      30_000,
    );
    const healedPoint = await pointHeader(healed.latestPoint.id);
    t.diagnostic(
      `healed point: ${JSON.stringify(healedPoint)} report ${JSON.stringify(healed.lastPointReport)}`,
    );
    const report = healed.lastPointReport;
    const total = (64 + 128) * 1024 * 1024;
    assert.ok(
      report !== null && report.bytesSent < total / 8,
      `the first point after the cut shipped ${report?.bytesSent} bytes, no full resync`,
    );
    mark(`link restored: replication resumed (${report.mode}, ${report.bytesSent} bytes), alert resolved`);

    // the east site is lost: unplanned failover from the points already at west
    await until("a few points after the heal", async () => (await item()).pointCount >= 3);
    await two.cut("site:east");
    const lostAt = new Date().toISOString();
    const foStart = Date.now();
    const fo = await operate("failover", { point: "latest-processed", shutdownSource: true });
    const copy = await service("the service answers at west", null, WEST_IP);
    const rto = (Date.now() - foStart) / 1000;
    const failedOver = await item();
    const point = failedOver.failover.point as string;
    const header = await pointHeader(point).catch(() => null);
    const pointAt =
      header?.createdAt ?? fo.steps.find((s: Json) => s.name === "select-point").output.createdAt;
    assert.ok(pointAt <= lostAt, "the point was already at west when the site was lost");
    assert.notEqual(failedOver.failover.sourceShutdown.outcome, "shut down after a final point");
    assert.equal(failedOver.failover.sourceShutdown.requested, true);
    t.diagnostic(`source shutdown: ${JSON.stringify(failedOver.failover.sourceShutdown)}`);
    t.diagnostic(
      `unplanned failover steps: ${fo.steps.map((s: Json) => `${s.name} ${((Date.parse(s.finishedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1)} s`).join(", ")}`,
    );
    checkCopy("unplanned failover copy", copy, ackedBefore(pointAt));
    mark(
      `east lost: unplanned failover to ${point} answered after ${rto.toFixed(1)} s; RPO ${((Date.parse(lostAt) - Date.parse(pointAt)) / 1000).toFixed(1)} s`,
    );

    // east comes back with its old machine still running: it must not write over west
    const oldRec = JSON.parse(
      readFileSync(path.join(two.data, "sites", "east", "machines", homeInstance, "instance.json"), "utf8"),
    );
    assert.doesNotThrow(() => process.kill(-oldRec.run.pid, 0), "the old primary still runs at east");
    await two.restore("site:east");
    const pointsAfter = ((await api("GET", "/v1/items/db1/points")).body as Json[]).length;
    await new Promise((r) => setTimeout(r, 4000));
    const points = (await api("GET", "/v1/items/db1/points")).body as Json[];
    assert.equal(points.length, pointsAfter, "no point of the old primary lands at west");
    assert.equal((await item()).phase, "failed-over");
    const westNow = await service("west still answers", null, WEST_IP);
    assert.ok(westNow.maxSeq >= copy.maxSeq, "west goes on with its own rows");
    await operate("commit");
    const refused = await api("POST", "/v1/items/db1/reprotect", { location: "original" });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.code, "REPROTECT_OLD_MACHINE_RUNNING");
    mark("east back: the old primary is fenced; reprotect refused while it runs");

    // the old machine is gone for good (shut down, its disks lost): reprotect to an alternate location
    process.kill(-oldRec.run.pid, "SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
    const oldFolder = path.join(two.data, "sites", "east", "machines", homeInstance);
    // what the kernel still holds of it goes first (a file system it froze for a point, maybe), then its disks
    for (const d of oldRec.disks as { path: string }[]) await loopsRelease(d.path);
    if (oldRec.attach?.netns) await netnsDelete(oldRec.attach.netns);
    rmSync(oldFolder, { recursive: true, force: true });
    const gone = await until("reprotect to the original location refused: its disks are gone", async () => {
      const r = await api("POST", "/v1/items/db1/reprotect", { location: "original" });
      return r.status === 409 && r.body.code === "REPROTECT_ORIGINAL_DISKS_GONE" ? r : undefined;
    });
    assert.match(gone.body.detail, /alternate/);
    const rpAlt = await operate("reprotect", { location: "alternate" });
    const altShipped = rpAlt.steps.find((s: Json) => s.name === "initial-replication").output;
    mark(`reprotect west → east (alternate): ${altShipped.bytesSent} bytes (${altShipped.mode})`);
    const ackedAtFailback = lastAck("west");
    const fb = await operate("failover", { planned: true });
    const mat = fb.steps.find((s: Json) => s.name === "materialize").output;
    assert.notEqual(mat.instanceId, homeInstance, "a new machine at east, on new disks");
    const back = await service("the service answers at east on new disks", null, EAST_IP);
    checkCopy("failback to new disks", back, Math.max(ackedAtFailback, lastAck("west")));
    assert.equal(back.site, "east");
    await operate("commit");
    const again = await operate("reprotect", { location: "original" });
    const shipped = again.steps.find((s: Json) => s.name === "initial-replication").output;
    mark(`failback onto new disks, commit, reprotect east → west: ${shipped.bytesSent} bytes`);
    assert.equal((await item()).phase, "protected");
    void east;
    void west;
  });

  it("a recovery plan of three machines in two groups: drill, cleanup, failover, commit, reprotect, failback", async (t) => {
    const t0 = Date.now();
    const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    const [east, west] = two.sites;
    const names = ["pdb", "app1", "app2"];
    const host = (n: string) => 30 + names.indexOf(n);
    for (const name of names) {
      await defineSqlMachine(two.api, {
        name,
        site: "east",
        ackLog: path.join(tmp.dir, `${name}.acks`),
        ip: addressIn(east, host(name)),
        rootMiB: 32,
        dataMiB: 48,
        everyMs: 100,
      });
      assert.equal((await api("POST", `/v1/machines/${name}/start`, {})).status, 200);
    }
    for (const name of names) {
      await until(
        `${name} registers`,
        async () => (await api("GET", `/v1/machines/${name}`)).body.disks.length === 2,
      );
      const prot = await api("POST", "/v1/items", {
        machine: name,
        to: "west",
        policy: "tight",
        targetSettings: { ip: addressIn(west, host(name)) },
      });
      assert.equal(prot.status, 202, JSON.stringify(prot.body));
    }
    const phases = async () =>
      Object.fromEntries(
        ((await api("GET", "/v1/items")).body as Json[])
          .filter((i) => names.includes(i.name))
          .map((i) => [i.name, i]),
      ) as Record<string, Json>;
    await until(
      "the three machines are protected",
      async () => {
        const all = await phases();
        return names.every((n) => all[n]?.phase === "protected" && all[n]?.latestPoint !== null);
      },
      120_000,
    );
    mark("three machines protected east → west");

    // the database first; a vault script checks it answers (on the test network in a drill) before
    // an operator confirms group 2
    const marks = path.join(tmp.dir, "plan-marks");
    const dbWest = addressIn(west, host("pdb"));
    const check =
      `ns=; [ "$SWITCHBACK_OPERATION" = test-failover ] && ns=${west.testNetns}; ` +
      `if [ "$SWITCHBACK_OPERATION" = failback ]; then ip=${addressIn(east, host("pdb"))}; else ip=${dbWest}; fi; ` +
      `for i in $(seq 1 50); do if [ -n "$ns" ]; then nsenter --net=/run/netns/$ns curl -sf -m 2 http://$ip:${SERVICE_PORT}/health && break; ` +
      `else curl -sf -m 2 http://$ip:${SERVICE_PORT}/health && break; fi; sleep 0.2; done; ` +
      `mkdir -p ${marks} && echo "$SWITCHBACK_OPERATION $ip" >> ${marks}/db-checked`;
    const plan = await api("POST", "/v1/plans", {
      name: "shop",
      groups: [
        {
          items: ["pdb"],
          post: [
            { kind: "script", run: check, timeoutSeconds: 30, on: ["test-failover", "failover", "failback"] },
          ],
        },
        {
          items: ["app1", "app2"],
          pre: [{ kind: "manual", message: "start the apps?", on: ["test-failover", "failover"] }],
        },
      ],
    });
    assert.equal(plan.status, 201, JSON.stringify(plan.body));

    const runPlan = async (op: string, body: unknown = {}): Promise<Json> => {
      const r = await api("POST", `/v1/plans/shop/${op}`, body);
      assert.equal(r.status, 202, `${op}: ${JSON.stringify(r.body)}`);
      const id = r.body.job.id as string;
      for (;;) {
        const j = await until(
          `plan ${op}`,
          async () => {
            const x = (await api("GET", `/v1/jobs/${id}`)).body;
            return ["succeeded", "failed", "cancelled", "waiting"].includes(x.state) ? x : undefined;
          },
          180_000,
        );
        if (j.state === "waiting") {
          const step = j.waitingFor.replace(/^confirm-/, "");
          const ok = await api("POST", "/v1/plans/shop/confirm", { step });
          assert.equal(ok.status, 200, JSON.stringify(ok.body));
          continue;
        }
        if (j.state !== "succeeded") {
          const logs = (await api("GET", `/v1/jobs/${id}/logs`)).body;
          const locks = ["east", "west"].flatMap((site) => {
            const dir = path.join(two.data, "sites", site, "datastore", "locks");
            return existsSync(dir)
              ? readdirSync(dir).map((f) => `${site}: ${readFileSync(path.join(dir, f), "utf8")}`)
              : [];
          });
          const pids = [...two.appliances].map(([n, a]) => `${n}=${a.child.pid}`).join(" ");
          assert.fail(
            `plan ${op} ${j.state}: ${JSON.stringify(j.error)}\nlocks: ${locks.join("\n")}\nappliances ${pids}, vault ${two.vault.child.pid}\n${JSON.stringify(logs).slice(-3000)}\n${two.context()}`,
          );
        }
        return j;
      }
    };
    const allAre = async (phase: string, direction: string) => {
      const all = await phases();
      for (const n of names) {
        assert.equal(all[n].phase, phase, `${n} is ${phase}`);
        assert.equal(all[n].direction, direction, `${n} replicates ${direction}`);
      }
      return all;
    };
    const answers = (netns: string | null, site: typeof east, n: string) =>
      service(`${n} answers`, netns, addressIn(site, host(n)));

    await runPlan("test-failover");
    const drilled = await phases();
    for (const n of names) {
      assert.ok(drilled[n].drill !== null, `${n} has a drill copy`);
      const s = await answers(west.testNetns, west, n);
      assert.equal(s.drill, true);
      assert.equal(s.bootCheck.ok, true, `${n}'s drill copy is sound`);
    }
    mark("plan drill: three copies on the test network");
    await runPlan("test-failover-cleanup", { notes: "plan drill ok" });
    for (const n of names) assert.equal((await phases())[n].drill, null);
    mark("plan drill cleaned up");

    await runPlan("failover", { planned: true });
    await allAre("failed-over", "east → west");
    for (const n of names) {
      const s = await answers(null, west, n);
      const acked = readAcks(path.join(tmp.dir, `${n}.acks`)).filter((a) => a.site === "east");
      checkCopy(
        `${n} after the plan's failover`,
        s,
        acked.length === 0 ? 0 : (acked[acked.length - 1] as Ack).seq,
      );
    }
    mark("plan failover: three services answer at west, nothing acknowledged is lost");
    await runPlan("commit");
    await allAre("failover-committed", "east → west");
    await runPlan("reprotect");
    await until(
      "reprotected",
      async () => {
        const all = await phases();
        return names.every((n) => all[n].phase === "protected") ? all : undefined;
      },
      120_000,
    );
    await allAre("protected", "west → east");
    mark("plan commit and reprotect");
    await runPlan("failback", { planned: true });
    await allAre("failed-over", "west → east");
    for (const n of names) {
      const s = await answers(null, east, n);
      assert.equal(s.site, "east");
      assert.equal(s.bootCheck.ok, true, `${n} after failback`);
    }
    const checked = readFileSync(path.join(marks, "db-checked"), "utf8").trim().split("\n");
    assert.deepEqual(
      checked.map((l) => l.split(" ")[0]),
      ["test-failover", "failover", "failback"],
    );
    mark("plan failback: three services answer at east; the vault script checked the database each time");
  });
});

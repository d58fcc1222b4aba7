// A site whose appliance is its own process: a vault process, a site `dr2` created with `switchback
// sites create` and served by a real `switchback appliance` process (no in-process appliance there),
// and a machine at primary protected to dr2. Kill -9 of the appliance mid-replication (the agent
// retries, the appliance restarts, replication goes on without a full resync); then the whole cycle
// through the remote appliance: drill, cleanup, planned failover (the point equals the stopped
// primary's disks byte for byte), commit, reprotect (ships far less than the disks), failback, commit;
// then the appliance lost: appliance-lost alert, reprotect towards dr2 refused with
// REPROTECT_APPLIANCE_UNREACHABLE; restarted: the reprotect goes through without a full resync.
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { cli, tempDir } from "../helpers/env.ts";
import {
  type ApplianceProcess,
  acks,
  apiOf,
  createFastPolicy,
  defineMachine,
  type Json,
  killMachines,
  prefixOf,
  restorePoint,
  startApplianceProcess,
  startVaultProcess,
  succeededJob,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

const MiB = 1024 * 1024;
const TOTAL = 24 * MiB; // the machine's two disks

for (const db of databases)
  describe(`a site served by a separate appliance process on ${db.name}`, {
    timeout: 600_000,
    skip: db.skip,
  }, () => {
    let tmp: { dir: string; cleanup: () => void };
    let created: CreatedDatabase | undefined;
    let vault: VaultProcess;
    let appliance: ApplianceProcess | undefined;
    let applianceToken: string;
    const noReplicas = db.name === "postgres";
    let api: ReturnType<typeof apiOf>;
    const data = () => path.join(tmp.dir, "data");
    const ack = () => path.join(tmp.dir, "acks.log");
    // the appliance's folders: beside the vault's sites, so that killMachines finds its machines too
    const dr2Datastore = () => path.join(data(), "sites", "dr2", "datastore");
    const dr2Machines = () => path.join(data(), "sites", "dr2", "machines");

    const env = () => ({ SWITCHBACK_VAULT: vault.url, SWITCHBACK_TOKEN: vault.token });

    /** The vault, on the port it had (machines and the appliance were told its URL); retention every second. */
    async function startVault(): Promise<VaultProcess> {
      const port = vault === undefined ? 0 : Number(new URL(vault.url).port);
      return startVaultProcess(data(), {
        args: ["--db", (created as CreatedDatabase).url, ...(port > 0 ? ["--port", String(port)] : [])],
        ...(vault !== undefined ? { token: vault.token } : {}),
        env: { SWITCHBACK_RETENTION_EVERY_MS: "1000" },
      });
    }

    async function startAppliance(): Promise<ApplianceProcess> {
      appliance = await startApplianceProcess({
        vault: vault.url,
        token: applianceToken,
        name: "dr2-appliance",
        site: "dr2",
        datastore: dr2Datastore(),
        // one database's run keeps replicas at dr2 (the default), the other none
        ...(noReplicas ? { args: ["--no-replicas"] } : {}),
      });
      return appliance;
    }

    const job = (id: string, ms?: number) =>
      succeededJob(api, id, {
        ...(ms !== undefined ? { ms } : {}),
        context: () =>
          `vault: ${vault.stderr().slice(-3000)}\nappliance: ${appliance?.stderr().slice(-3000)}`,
      });

    async function operate(op: string, body: unknown = {}): Promise<Json> {
      const r = await api("POST", `/v1/items/web1/${op}`, body);
      assert.equal(r.status, 202, `${op}: ${JSON.stringify(r.body)}`);
      return job(r.body.job.id);
    }

    async function item(): Promise<Json> {
      const r = await api("GET", "/v1/items/web1");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    }

    const restoreAt = async (datastore: string, point: string, disk: number) =>
      restorePoint({
        datastore,
        item: (await item()).id,
        point,
        disk,
        out: path.join(tmp.dir, `restore-${path.basename(path.dirname(datastore))}-${point}-${disk}.img`),
      });

    async function applianceLiveness(): Promise<string> {
      return (await api("GET", "/v1/appliances/dr2-appliance")).body.health.liveness;
    }

    before(async () => {
      tmp = tempDir("sb-appliance-");
      created = await db.create();
      vault = await startVault();
      api = apiOf(vault);
      await createFastPolicy(api);
      const site = await cli(["sites", "create", "dr2"], { env: env() });
      assert.equal(site.code, 0, site.stderr);
      const token = await cli(["appliances", "token", "--name", "dr2-appliance"], { env: env() });
      assert.equal(token.code, 0, token.stderr);
      applianceToken = token.stdout.trim();
    });

    after(async () => {
      await appliance?.stop();
      await vault?.stop();
      if (tmp !== undefined) killMachines(data());
      await created?.drop();
      if (process.env.KEEP_TMP === undefined) tmp?.cleanup();
      else console.log("kept", tmp?.dir);
    });

    it("registers, survives kill -9 mid-replication, and runs the whole cycle through it", async (t) => {
      const started = Date.now();
      const mark = (what: string) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
      await startAppliance();
      const app = (await api("GET", "/v1/appliances/dr2-appliance")).body;
      assert.equal(app.kind, "remote");
      assert.equal(app.site, "dr2");
      assert.deepEqual(app.roles, ["process-server", "master-target"]);
      assert.equal(app.controlUrl, appliance!.controlUrl);
      const ds = (await api("GET", "/v1/datastores?site=dr2")).body as Json[];
      assert.equal(ds.length, 1);
      assert.equal(ds[0].location, dr2Datastore());
      assert.equal(ds[0].applianceId, app.id);
      // only the vault may call the appliance's control API
      const anon = await fetch(new URL("/v1/site", appliance!.controlUrl));
      assert.equal(anon.status, 401);
      const withAdmin = await fetch(new URL("/v1/site", appliance!.controlUrl), {
        headers: { authorization: `Bearer ${vault.token}` },
      });
      assert.equal(withAdmin.status, 401);
      // a second appliance cannot take the site, nor can one register at a site served in-process
      const other = await api("POST", "/v1/appliances/register", {
        name: "intruder",
        site: "recovery",
        roles: ["process-server"],
        controlUrl: "http://127.0.0.1:1",
        controlSecret: "x".repeat(40),
        datastores: [{ location: path.join(tmp.dir, "elsewhere") }],
      });
      assert.equal(other.status, 409);
      assert.equal(other.body.code, "APPLIANCE_SITE_IN_PROCESS");
      mark("appliance registered");

      // a machine at primary (in-process appliance) protected to dr2 (the remote one)
      await defineMachine(api, { name: "web1", ackLog: ack() });
      const m = await api("POST", "/v1/machines/web1/start", {});
      assert.equal(m.status, 200, JSON.stringify(m.body));
      const homeInstance = m.body.instanceId as string;
      await until("the agent's first heartbeat with its disks", async () => {
        const r = await api("GET", "/v1/machines/web1");
        return r.body.lastHeartbeatAt !== null && r.body.disks.length === 2 && r.body.site === "primary";
      });
      const prot = await api("POST", "/v1/items", { machine: "web1", to: "dr2", policy: "fast" });
      assert.equal(prot.status, 202, JSON.stringify(prot.body));
      await job(prot.body.job.id);
      const protectedItem = await until("initial replication to dr2", async () => {
        const it = await item();
        return it.phase === "protected" ? it : undefined;
      });
      assert.equal(protectedItem.direction, "primary → dr2");
      assert.equal(protectedItem.processServer, "dr2-appliance");
      mark("protected primary → dr2");

      // kill -9 of the appliance while the agent replicates every second: the agent retries, the
      // appliance comes back (new ports: agents are told), replication resumes without a full resync
      await until("a few points at dr2", async () => (await item()).pointCount >= 3);
      await appliance!.kill9();
      const beforeKill = await item();
      mark("appliance killed");
      await new Promise((r) => setTimeout(r, 2000));
      const down = await item(); // the item still shows, from what the vault recorded
      assert.equal(down.pointCount, -1, "points cannot be counted while the appliance is down");
      assert.equal(
        down.latestPoint.id,
        beforeKill.latestPoint.id,
        "no point lands while the appliance is down",
      );
      await startAppliance();
      mark("appliance restarted");
      const resumed = await until(
        "a point after the restart, reported by the agent",
        async () => {
          const it = await item();
          return it.latestPoint.id > beforeKill.latestPoint.id &&
            it.lastPointReport?.pointId === it.latestPoint.id
            ? it
            : undefined;
        },
        60_000,
      );
      assert.equal(resumed.lastPointReport.mode, "incremental", "no resync after the appliance's restart");
      assert.ok(
        resumed.lastPointReport.bytesSent < TOTAL / 4,
        `the first point after the restart shipped ${resumed.lastPointReport.bytesSent} bytes`,
      );
      const agentLog = readFileSync(
        path.join(data(), "sites", "primary", "machines", homeInstance, "console.log"),
        "utf8",
      );
      assert.match(
        agentLog,
        /retrying a call to the process server/,
        "the agent retried while the appliance was down",
      );
      const dsCheck = await cli(["datastore", "check", "--datastore", dr2Datastore()]);
      assert.equal(
        dsCheck.code,
        0,
        `the datastore checks whole after kill -9: ${dsCheck.stdout}${dsCheck.stderr}`,
      );
      mark(
        `replication resumed: ${resumed.lastPointReport.bytesSent} bytes in the first point after the restart`,
      );

      // kill -9 of the vault: the appliance goes on serving, the restarted vault finds it registered
      const beforeVaultKill = await item();
      await vault.kill9();
      const retentionErrors = vault
        .stderr()
        .split("\n")
        .filter((l) => l.includes("retention at a datastore failed"))
        // `datastore check` above held the datastore a moment: retention waits for the next round
        .filter((l) => !l.includes("is in use by check"));
      assert.deepEqual(retentionErrors, [], "retention through the remote appliance ran without errors");
      await new Promise((r) => setTimeout(r, 1000));
      vault = await startVault();
      api = apiOf(vault);
      await until(
        "points again after the vault's restart",
        async () => (await item()).latestPoint.id > beforeVaultKill.latestPoint.id,
        30_000,
      );
      // the restarted vault judges the appliance by heartbeats: the next one marks it online
      await until("the appliance online again", async () => (await applianceLiveness()) === "online", 15_000);
      mark("vault killed and restarted: replication to dr2 goes on");

      // drill at dr2 through the remote provider; replication goes on
      const drillJob = await operate("test-failover", { point: "latest-processed" });
      const drillPoint = drillJob.steps.find((s: Json) => s.name === "select-point").output.point;
      const drill = (await item()).drill;
      assert.ok(drill !== null && drill.site !== undefined);
      const drillDisk = path.join(dr2Machines(), drill.instanceId, "disk-1.img");
      const made = (
        JSON.parse(readFileSync(path.join(dr2Machines(), drill.instanceId, "instance.json"), "utf8"))
          .disks as { method: string }[]
      ).map((d) => d.method);
      assert.ok(
        made.every((m) => (noReplicas ? m === "restore" : m === "reflink" || m === "sparse-copy")),
        `the drill's disks are ${noReplicas ? "restored from the datastore" : "clones of dr2's replica"}: ${made}`,
      );
      assert.equal(existsSync(path.join(data(), "sites", "dr2", "replicas")), !noReplicas);
      const atPoint = prefixOf(await restoreAt(dr2Datastore(), drillPoint, 1));
      assert.ok(atPoint >= 1, "the drill point holds the workload's records");
      assert.ok(prefixOf(drillDisk) >= atPoint, "the drill copy at dr2 holds every record of its point");
      const cleanup = await operate("test-failover-cleanup", { notes: "drill at dr2 ok" });
      assert.equal(cleanup.steps[1].output.notes, "drill at dr2 ok");
      assert.equal(existsSync(path.dirname(drillDisk)), false, "the drill copy and its disks are gone");
      mark("drill and cleanup at dr2");

      // planned failover to dr2: the final point equals the stopped primary's disks, byte for byte
      const fo = await operate("failover", { planned: true });
      const failedOver = await item();
      assert.equal(failedOver.phase, "failed-over");
      assert.equal(failedOver.generation, 2);
      assert.equal(failedOver.failover.sourceShutdown.outcome, "shut down after a final point");
      const point = failedOver.failover.point as string;
      const ackedAtFailover = acks(ack());
      const homeDir = path.join(data(), "sites", "primary", "machines", homeInstance);
      for (const disk of [0, 1]) {
        const restored = await restoreAt(dr2Datastore(), point, disk);
        assert.ok(
          readFileSync(restored).equals(readFileSync(path.join(homeDir, `disk-${disk}.img`))),
          `disk ${disk} of the failover point equals the primary's`,
        );
      }
      const recDir = path.join(dr2Machines(), fo.steps[3].output.instanceId);
      assert.ok(
        prefixOf(path.join(recDir, "disk-1.img")) >= (ackedAtFailover[ackedAtFailover.length - 1] ?? 0),
        "every acknowledged record is on the machine at dr2",
      );
      mark("failed over to dr2");

      await operate("commit");
      assert.equal((await item()).phase, "failover-committed");
      assert.deepEqual((await api("GET", "/v1/items/web1/points")).body, []);

      // reprotect dr2 → primary: the machine at dr2 replicates to primary's in-process appliance
      await until("the machine at dr2 writes", async () => acks(ack()).length > ackedAtFailover.length + 50);
      const rp = await operate("reprotect", { location: "original" });
      const shipped = rp.steps.find((s: Json) => s.name === "initial-replication").output;
      assert.equal(shipped.mode, "resync");
      assert.ok(
        shipped.bytesSent > 0 && shipped.bytesSent < TOTAL / 4,
        `reprotect shipped ${shipped.bytesSent}`,
      );
      assert.equal((await item()).direction, "dr2 → primary");
      mark(`reprotected dr2 → primary: ${shipped.bytesSent} bytes for ${shipped.changedBlocks} blocks`);

      // failback: the machine at dr2 stops after a final point; the primary boots from its own disks
      const fb = await operate("failover", { planned: true });
      const back = await item();
      assert.equal(back.phase, "failed-over");
      assert.equal(fb.steps[3].output.mode, "delta", "failback writes onto the primary's own disks");
      const ackedAtFailback = acks(ack());
      for (const disk of [0, 1]) {
        const restored = await restoreAt(
          path.join(data(), "sites", "primary", "datastore"),
          back.failover.point,
          disk,
        );
        assert.ok(
          readFileSync(restored).equals(readFileSync(path.join(recDir, `disk-${disk}.img`))),
          `disk ${disk} of the failback point equals the dr2 machine's`,
        );
      }
      assert.ok(
        prefixOf(path.join(homeDir, "disk-1.img")) >= (ackedAtFailback[ackedAtFailback.length - 1] ?? 0),
        "every record acknowledged at dr2 is on the primary's disks",
      );
      await operate("commit");
      assert.equal(existsSync(path.join(recDir, "instance.json")), false, "the machine at dr2 is removed");
      assert.ok(statSync(path.join(recDir, "disk-1.img")).size > 0, "its disks stay as the seed");
      mark("failed back and committed");

      // the appliance lost: an alert, and reprotect towards dr2 is refused by name
      await appliance!.kill9();
      const lost = await until(
        "the appliance-lost alert",
        async () =>
          ((await api("GET", "/v1/alerts?open=true&kind=appliance-lost")).body as Json[]).find(
            (a) => a.subject === `appliance:${app.id}`,
          ),
        30_000,
      );
      assert.equal(lost.severity, "critical");
      assert.equal(await applianceLiveness(), "lost");
      const refused = await api("POST", "/v1/items/web1/reprotect", { location: "original" });
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.code, "REPROTECT_APPLIANCE_UNREACHABLE");
      assert.match(refused.body.detail, /dr2-appliance/);
      mark("appliance lost: alert raised, reprotect refused");

      // back: the alert clears, reprotect primary → dr2 seeds dr2 from the kept disks, no full resync
      await until("the primary writes again", async () => acks(ack()).length > ackedAtFailback.length + 50);
      await startAppliance();
      await until(
        "the appliance-lost alert clears",
        async () => (await api("GET", `/v1/alerts/${lost.id}`)).body.open === false,
        30_000,
      );
      const rp2 = await operate("reprotect", { location: "original" });
      const shipped2 = rp2.steps.find((s: Json) => s.name === "initial-replication").output;
      assert.ok(shipped2.bytesSent < TOTAL / 4, `second reprotect shipped ${shipped2.bytesSent}`);
      const final = await item();
      assert.equal(final.direction, "primary → dr2");
      assert.equal(final.phase, "protected");
      assert.equal(final.generation, 3);
      mark(`reprotected primary → dr2: ${shipped2.bytesSent} bytes for ${shipped2.changedBlocks} blocks`);
    });
  });

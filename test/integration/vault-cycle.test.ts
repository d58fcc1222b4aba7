// The whole cycle on real processes and image files: a vault process with its in-process appliances,
// a machine booted by the `process` provider (a workload writing numbered, fdatasynced records and the
// agent), enable → initial replication → drill → cleanup → planned failover with shutdown → commit →
// reprotect → failback → commit → reprotect, checking the data at each step and what reprotect ships.
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { tempDir } from "../helpers/env.ts";
import {
  acks,
  apiOf,
  createFastPolicy,
  defineMachine,
  type Json,
  killMachines,
  prefixOf,
  restorePoint,
  startVaultProcess,
  succeededJob,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

const MiB = 1024 * 1024;

for (const db of databases)
  describe(`the whole DR cycle through the vault on ${db.name}`, { timeout: 600_000, skip: db.skip }, () => {
    let tmp: { dir: string; cleanup: () => void };
    let created: CreatedDatabase | undefined;
    let vault: VaultProcess;
    let api: ReturnType<typeof apiOf>;
    const data = () => path.join(tmp.dir, "data");
    const ack = () => path.join(tmp.dir, "acks.log");

    const job = (id: string, ms?: number) =>
      succeededJob(api, id, {
        ...(ms !== undefined ? { ms } : {}),
        context: () => vault.stderr().slice(-3000),
      });

    async function operate(op: string, body: unknown = {}): Promise<Json> {
      const r = await api("POST", `/v1/items/web1/${op}`, body);
      assert.equal(r.status, 202, `${op}: ${JSON.stringify(r.body)}`);
      return job(r.body.job.id);
    }

    async function item(): Promise<Json> {
      return (await api("GET", "/v1/items/web1")).body;
    }

    /** Restores a point with the data-plane CLI into an image and returns its path. */
    const restoreAt = async (site: string, point: string, disk: number) =>
      restorePoint({
        datastore: path.join(data(), "sites", site, "datastore"),
        item: (await item()).id,
        point,
        disk,
        out: path.join(tmp.dir, `restore-${site}-${point}-${disk}.img`),
      });

    before(async () => {
      tmp = tempDir("sb-cycle-");
      created = await db.create();
      vault = await startVaultProcess(data(), { args: ["--db", created.url] });
      api = apiOf(vault);
      await createFastPolicy(api);
    });

    after(async () => {
      await vault?.stop();
      if (tmp !== undefined) killMachines(data());
      await created?.drop();
      if (process.env.KEEP_TMP === undefined) tmp?.cleanup();
      else console.log("kept", tmp?.dir);
    });

    it("runs drill, failover, commit, reprotect, failback, commit, reprotect on real data", async (t) => {
      // a machine at the primary site: OS disk and data disk, a workload and the agent
      await defineMachine(api, { name: "web1", ackLog: ack() });
      const started = await api("POST", "/v1/machines/web1/start", {});
      assert.equal(started.status, 200, JSON.stringify(started.body));
      const homeInstance = started.body.instanceId as string;
      await until("the agent's first heartbeat with its disks", async () => {
        const r = await api("GET", "/v1/machines/web1");
        return r.body.lastHeartbeatAt !== null && r.body.disks.length === 2 && r.body.site === "primary";
      });

      // enable
      const prot = await api("POST", "/v1/items", { machine: "web1", to: "recovery", policy: "fast" });
      assert.equal(prot.status, 202, JSON.stringify(prot.body));
      await job(prot.body.job.id);
      const protectedItem = await until("initial replication", async () => {
        const it = await item();
        return it.phase === "protected" ? it : undefined;
      });
      assert.equal(protectedItem.direction, "primary → recovery");
      assert.deepEqual(protectedItem.allowedOperations, ["test-failover", "failover", "disable"]);

      // drill: a copy at the recovery site from the latest processed point; replication goes on. The
      // dry run names the point it resolved, and starting with that id uses exactly it
      const beforeDrill = await item();
      const drillPreview = await api("POST", "/v1/items/web1/test-failover?dryRun=true", {
        point: "latest-processed",
      });
      assert.equal(drillPreview.status, 202, JSON.stringify(drillPreview.body));
      const resolved = drillPreview.body.decision.point;
      assert.ok(resolved !== undefined, "the dry run names the point");
      assert.ok(
        ((await api("GET", "/v1/items/web1/points")).body as Json[]).some((p) => p.id === resolved.id),
        "a held point",
      );
      assert.equal(typeof resolved.createdAt, "string");
      assert.ok(resolved.ageSeconds >= 0);
      assert.ok(resolved.consistency === "crash" || resolved.consistency === "app");
      const drillJob = await operate("test-failover", { point: resolved.id });
      const drillPoint = drillJob.steps.find((s: Json) => s.name === "select-point").output.point;
      assert.equal(drillPoint, resolved.id, "the drill used the point the dry run named");
      // the drill copy started from the point: its records are an unbroken prefix at least as long as the point's
      const drillPointDisk = await restoreAt("recovery", drillPoint, 1);
      const drill = (await item()).drill;
      assert.ok(drill !== null, "the drill is recorded");
      const drillDisk = path.join(data(), "sites", "recovery", "machines", drill.instanceId, "disk-1.img");
      const atPoint = prefixOf(drillPointDisk);
      assert.ok(atPoint >= 1, "the drill point holds the workload's records");
      assert.ok(prefixOf(drillDisk) >= atPoint, "the drill copy holds every record of its point");
      await until("replication goes on during the drill", async () => {
        const it = await item();
        return it.latestPoint.id > beforeDrill.latestPoint.id ? it : undefined;
      });
      const cleanup = await operate("test-failover-cleanup", { notes: "drill ok: records present" });
      assert.equal(cleanup.steps[1].output.notes, "drill ok: records present");
      assert.equal(existsSync(path.dirname(drillDisk)), false, "the drill copy and its disks are gone");
      assert.equal((await item()).drill, null);

      // planned failover with shutdown: services stop, a final point is taken, nothing is lost
      const preview = await api("POST", "/v1/items/web1/failover?dryRun=true", { planned: true });
      assert.equal(preview.status, 202);
      assert.equal(preview.body.job, null);
      assert.equal(preview.body.decision.irreversible, true);
      assert.match(preview.body.decision.consequences.join(" "), /cannot be cancelled/);
      assert.equal(preview.body.decision.drain, true);
      assert.equal(preview.body.decision.point, undefined, "latest is cut when it starts: no point yet");
      const fo = await operate("failover", { planned: true });
      const failedOver = await item();
      assert.equal(failedOver.phase, "failed-over");
      assert.equal(failedOver.generation, 2);
      assert.equal(failedOver.failover.sourceShutdown.outcome, "shut down after a final point");
      const point = failedOver.failover.point as string;
      const ackedAtFailover = acks(ack());
      const homeDir = path.join(data(), "sites", "primary", "machines", homeInstance);
      // the final point equals the stopped primary's disks, byte for byte
      for (const disk of [0, 1]) {
        const restored = await restoreAt("recovery", point, disk);
        assert.ok(
          readFileSync(restored).equals(readFileSync(path.join(homeDir, `disk-${disk}.img`))),
          `disk ${disk} of the failover point equals the primary's`,
        );
      }
      const lastAck = ackedAtFailover[ackedAtFailover.length - 1] ?? 0;
      assert.ok(lastAck > 0);
      const recDir = path.join(data(), "sites", "recovery", "machines", fo.steps[3].output.instanceId);
      assert.ok(
        prefixOf(path.join(recDir, "disk-1.img")) >= lastAck,
        "every acknowledged record is at the recovery site",
      );

      // commit: the recovery points go
      await operate("commit");
      assert.equal((await item()).phase, "failover-committed");
      assert.deepEqual((await api("GET", "/v1/items/web1/points")).body, []);

      // the recovered machine keeps writing; reprotect ships only what differs from the primary's disks
      await until(
        "the recovered machine writes",
        async () => acks(ack()).length > ackedAtFailover.length + 50,
      );
      assert.equal((await item()).disksAtReturnSite, true, "the primary's disks are still there");
      const rp = await operate("reprotect", { location: "original" });
      const shipped = rp.steps.find((s: Json) => s.name === "initial-replication").output;
      const total = 24 * MiB;
      assert.equal(shipped.mode, "resync");
      // when the resync point began, how long it took and what it read, from its own header
      assert.ok(Date.parse(shipped.createdAt) > 0 && shipped.durationMs > 0 && shipped.bytesRead > 0);
      assert.ok(
        shipped.bytesSent > 0 && shipped.bytesSent < total / 4,
        `reprotect shipped ${shipped.bytesSent} bytes of ${total}`,
      );
      t.diagnostic(
        `reprotect recovery → primary: ${shipped.bytesSent} bytes shipped for ${shipped.changedBlocks} changed blocks of ${total / 4096} (${acks(ack()).length - ackedAtFailover.length} records written since failover)`,
      );
      const reverse = await item();
      assert.equal(reverse.health.resyncRequired, false, "the resync is done once its point landed");
      assert.equal(reverse.direction, "recovery → primary");
      assert.equal(reverse.phase, "protected");

      // failback (planned): the recovery machine stops after a final point; the primary boots from its own disks
      const fb = await operate("failover", { planned: true });
      const back = await item();
      assert.equal(back.phase, "failed-over");
      assert.equal(back.direction, "recovery → primary");
      assert.equal(fb.steps[3].output.mode, "delta", "failback writes onto the primary's own disks");
      const ackedAtFailback = acks(ack());
      const fbPoint = back.failover.point as string;
      for (const disk of [0, 1]) {
        const restored = await restoreAt("primary", fbPoint, disk);
        assert.ok(
          readFileSync(restored).equals(readFileSync(path.join(recDir, `disk-${disk}.img`))),
          `disk ${disk} of the failback point equals the recovery machine's`,
        );
      }
      assert.ok(
        prefixOf(path.join(homeDir, "disk-1.img")) >= (ackedAtFailback[ackedAtFailback.length - 1] ?? 0),
        "every record acknowledged at the recovery site is on the primary's disks",
      );

      // commit the failback: the recovery-site machine is removed (its disks kept for the next reprotect)
      await operate("commit");
      assert.equal(existsSync(path.join(recDir, "instance.json")), false, "the recovery machine is removed");
      assert.ok(statSync(path.join(recDir, "disk-1.img")).size > 0, "its disks stay as the seed");

      // reprotect primary → recovery again: no full resync
      await until("the primary writes again", async () => acks(ack()).length > ackedAtFailback.length + 50);
      const rp2 = await operate("reprotect", { location: "original" });
      const shipped2 = rp2.steps.find((s: Json) => s.name === "initial-replication").output;
      assert.ok(
        shipped2.bytesSent < total / 4,
        `second reprotect shipped ${shipped2.bytesSent} bytes of ${total}`,
      );
      t.diagnostic(
        `reprotect primary → recovery: ${shipped2.bytesSent} bytes shipped for ${shipped2.changedBlocks} changed blocks; failback wrote ${fb.steps[3].output.blocksWritten} blocks onto the primary's disks`,
      );
      const final = await item();
      assert.equal(final.direction, "primary → recovery");
      assert.equal(final.phase, "protected");
      assert.equal(final.generation, 3);

      // a drill on a test network of its own: recorded with the drill and given to the copy; the
      // production network is refused as a test network before anything starts
      assert.equal(
        (await api("PATCH", "/v1/items/web1", { network: "prod", testNetwork: "lab" })).status,
        200,
      );
      const onProd = await api("POST", "/v1/items/web1/test-failover?dryRun=true", { testNetwork: "prod" });
      assert.equal(onProd.status, 409);
      assert.equal(onProd.body.code, "DRILL_ON_PRODUCTION_NETWORK");
      const other = await api("POST", "/v1/items/web1/test-failover?dryRun=true", { testNetwork: "lab-b" });
      assert.equal(other.status, 202, JSON.stringify(other.body));
      assert.match(other.body.decision.consequences.join(" "), /on test network lab-b/);
      await operate("test-failover", { testNetwork: "lab-b" });
      const drill2 = (await item()).drill;
      assert.equal(drill2.network, "lab-b");
      const spec = JSON.parse(
        readFileSync(
          path.join(data(), "sites", "recovery", "machines", drill2.instanceId, "instance.json"),
          "utf8",
        ),
      ).spec;
      assert.equal(spec.env.SWITCHBACK_NETWORK, "lab-b", "the drill copy runs on the chosen test network");
      await operate("test-failover-cleanup", { notes: "drill on lab-b" });
    });
  });

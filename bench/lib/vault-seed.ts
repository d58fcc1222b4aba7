// Fills a bootstrapped vault database with N replicated items the way a running vault would have
// written them, straight through the Kysely db (no API, no job engine), in a few transactions: per
// item one machine with two disks and its agent token, the item in a mixed phase with its last points,
// target settings and, where the phase has one, its failover or drill record and the instance it
// made; and 10 finished jobs with their steps and the log lines the engine writes. JSON columns are
// checked against the vault's own schemas before they are written, so the vault reads them back.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import type { Insertable, Kysely } from "kysely";
import type { ItemState } from "../../src/domain/lifecycle.ts";
import type { VaultDatabase } from "../../src/vault/db/schema.ts";
import { newId } from "../../src/vault/ids.ts";
import {
  type DrillRecord,
  DrillRecordSchema,
  type FailoverRecord,
  FailoverRecordSchema,
  ItemStateSchema,
  type TargetSettings,
  TargetSettingsSchema,
} from "../../src/vault/items.ts";

export const JOBS_PER_ITEM = 10;

/** The mix of phases, as fractions of the items (the rest are protected primary → recovery). */
export const PHASE_MIX = {
  initialReplication: 0.08,
  failedOver: 0.04,
  /** protected recovery → primary after a failover, commit and reprotect (generation 2) */
  reversed: 0.03,
  /** protected, with a drill copy running */
  drill: 0.02,
  /** protected, but its last point is 20–60 min old (an RPO breach against the 15 min policy) */
  rpoBreach: 0.01,
};

export interface SeededVault {
  items: { id: string; name: string; phase: string }[];
  jobIds: string[];
  rows: Record<string, number>;
}

/** A small seeded PRNG (mulberry32): the same N and seed give the same mix and the same picks. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
function jobId(): string {
  let s = "";
  for (const b of randomBytes(12)) s += ALPHABET[b & 31];
  return `job-${s}`;
}

/** A point id as the datastore makes them: UTC time to the millisecond, then random hex. */
function pointId(atMs: number): string {
  const t = new Date(atMs).toISOString().replace(/[-:.]/g, "");
  return `${t.slice(0, 15)}${t.slice(15, 18)}Z-${randomBytes(3).toString("hex")}`;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * What an agent in initial replication reports (machines.replication): `fraction` of `totalBytes`
 * done at `rate` bytes/s, with the last minute's progress samples every 15 s.
 */
export function initialReplicationReport(
  now: number,
  totalBytes: number,
  rate: number,
  fraction: number,
): string {
  const done = Math.floor(fraction * totalBytes);
  const samples = Array.from({ length: 5 }, (_, k) => ({
    at: iso(now - (4 - k) * 15_000),
    bytesDone: Math.max(0, Math.floor(done - (4 - k) * 15 * rate)),
  }));
  return JSON.stringify({
    bytesDone: done,
    bytesTotal: totalBytes,
    bytesPerSecond: rate,
    at: iso(now),
    samples,
  });
}
const GiB = 1024 ** 3;

function checked<T>(schema: Parameters<typeof Value.Check>[0], value: T, what: string): string {
  if (!Value.Check(schema, value)) {
    const e = Value.Errors(schema, value).First();
    throw new Error(`seed: ${what} does not pass the vault's schema at ${e?.path}: ${e?.message}`);
  }
  return JSON.stringify(value);
}

type Tables = {
  [K in keyof VaultDatabase]: Insertable<VaultDatabase[K]>;
};

/** Inserts rows in statements that stay under both databases' bound-parameter limits. */
async function insertAll<K extends keyof VaultDatabase & string>(
  db: Kysely<VaultDatabase>,
  table: K,
  rows: Tables[K][],
): Promise<void> {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0] as object).length;
  const per = Math.max(1, Math.floor(30_000 / columns));
  for (let i = 0; i < rows.length; i += per) {
    // biome-ignore lint/suspicious/noExplicitAny: one helper for every table
    const chunk = rows.slice(i, i + per) as any;
    await db.insertInto(table).values(chunk).execute();
  }
}

interface StepPlan {
  name: string;
  output: (ctx: JobCtx) => unknown;
  /** an info line the step logs besides the engine's "done in" */
  says?: (ctx: JobCtx) => string;
}

interface JobCtx {
  jobId: string;
  item: string;
  point: string;
  from: string;
  to: string;
  toId: string;
}

const KINDS: Record<string, { params: (c: JobCtx) => unknown; steps: StepPlan[] }> = {
  enable: {
    params: () => ({}),
    steps: [
      {
        name: "configure",
        output: () => ({ configuredAt: iso(Date.now()) }),
        says: (c) =>
          `replication ${c.from} → ${c.to} configured; initial replication starts with the agent's next heartbeat`,
      },
      { name: "await-agent", output: () => ({ agentSeenAt: iso(Date.now()) }) },
    ],
  },
  "test-failover": {
    params: () => ({ point: "latest-processed", drain: false }),
    steps: [
      { name: "drain", output: () => ({ point: null }) },
      { name: "select-point", output: (c) => ({ point: c.point }) },
      {
        name: "record",
        output: (c) => ({
          point: c.point,
          instanceId: `drill-${c.jobId.slice(4)}`,
          site: c.toId,
          jobId: c.jobId,
        }),
      },
      {
        name: "materialize",
        output: (c) => ({ instanceId: `drill-${c.jobId.slice(4)}`, disks: 2, blocksWritten: 0 }),
      },
      {
        name: "start",
        output: (c) => ({
          instanceId: `drill-${c.jobId.slice(4)}`,
          pid: 40_000 + (c.jobId.charCodeAt(5) % 999),
        }),
        says: (c) => `drill copy started at ${c.to} on the test network (instance drill-${c.jobId.slice(4)})`,
      },
    ],
  },
  "test-failover-cleanup": {
    params: () => ({ notes: "quarterly drill: services answered, data checked by the application team" }),
    steps: [
      { name: "remove-copy", output: (c) => ({ removed: `drill-${c.jobId.slice(4)}` }) },
      {
        name: "record",
        output: () => ({ notes: "quarterly drill: services answered, data checked by the application team" }),
      },
    ],
  },
  failover: {
    params: () => ({ point: "latest", shutdownSource: true, planned: true, drain: true }),
    steps: [
      {
        name: "prepare",
        output: (c) => ({
          drainedPoint: c.point,
          sourceShutdown: { requested: true, outcome: "shut down after a final point" },
        }),
      },
      {
        name: "stop-replication",
        output: () => ({ generation: 2 }),
        says: () => "replication stopped; generation 2 from now on",
      },
      { name: "select-point", output: (c) => ({ point: c.point }) },
      {
        name: "materialize",
        output: (c) => ({ instanceId: `failover-${c.jobId.slice(4)}`, disks: 2, blocksWritten: 1_310_720 }),
      },
      { name: "start", output: (c) => ({ instanceId: `failover-${c.jobId.slice(4)}` }) },
      { name: "complete", output: (c) => ({ point: c.point }) },
    ],
  },
  commit: {
    params: () => ({}),
    steps: [
      { name: "remove-machine-left", output: () => ({ removed: null }) },
      { name: "delete-points", output: () => ({ deleted: 412 }) },
      { name: "record", output: () => ({ committedAt: iso(Date.now()) }) },
    ],
  },
  reprotect: {
    params: () => ({ location: "original" }),
    steps: [
      { name: "check", output: () => ({ location: "original" }) },
      { name: "seed", output: (c) => ({ pointId: c.point, bytesRead: 42 * GiB }) },
      { name: "reverse", output: () => ({ generation: 2 }) },
      { name: "replicate", output: () => ({}) },
      { name: "initial-replication", output: (c) => ({ firstPoint: c.point }) },
    ],
  },
};

type Phase = "protected" | "initial-replication" | "failed-over" | "reversed" | "drill" | "rpo-breach";

interface Failure {
  at: number;
  code: string;
  message: (c: JobCtx) => string;
}

/** A drill with `latest` whose agent did not deliver the point in time: the job's own refusal. */
const DRAIN_FAILED: Failure = {
  at: 0,
  code: "DRILL_DRAIN_FAILED",
  message: (c) =>
    `the machine at ${c.from} did not deliver a point now (no answer); retry, or drill with --point latest-processed`,
};

/** A drill whose disks could not be made: the target datastore was full for a while. */
const MATERIALIZE_FAILED: Failure = {
  at: 3,
  code: "DATASTORE_FULL",
  message: (c) => `datastore ${c.to}-local has 1.2 GB free, the copy needs 104 GB; free space and retry`,
};

interface PlannedJob {
  kind: string;
  fail: Failure | null;
}

/** The item's 10 jobs, oldest first: enable, drills, and what brought it to its phase. */
function historyOf(phase: Phase): PlannedJob[] {
  const ok = (kind: string): PlannedJob => ({ kind, fail: null });
  const drills = (pairs: number) =>
    Array.from({ length: pairs }, () => [ok("test-failover"), ok("test-failover-cleanup")]).flat();
  switch (phase) {
    case "failed-over":
      return [ok("enable"), ...drills(4), ok("failover")];
    case "reversed":
      return [ok("enable"), ...drills(3), ok("failover"), ok("commit"), ok("reprotect")];
    case "drill":
      return [ok("enable"), ...drills(4), ok("test-failover")];
    case "protected":
    case "rpo-breach":
    case "initial-replication":
      return [ok("enable"), { kind: "test-failover", fail: DRAIN_FAILED }, ...drills(4)];
  }
}

/**
 * Seeds `n` items into a database that `bootstrap` has set up (sites primary and recovery, their
 * appliances and datastores, the default policy). Times are relative to `nowMs`.
 */
export async function seedVault(
  db: Kysely<VaultDatabase>,
  o: { n: number; seed: number; nowMs: number },
): Promise<SeededVault> {
  const rand = prng(o.seed);
  const between = (a: number, b: number) => a + rand() * (b - a);
  const int = (a: number, b: number) => Math.floor(between(a, b + 1));
  const sites = new Map(
    (await db.selectFrom("sites").select(["id", "name"]).execute()).map((s) => [s.name, s.id]),
  );
  const primary = sites.get("primary");
  const recovery = sites.get("recovery");
  if (primary === undefined || recovery === undefined)
    throw new Error("seed: the vault has no primary and recovery sites");
  const apps = await db.selectFrom("appliances").select(["id", "site_id"]).execute();
  const stores = await db.selectFrom("datastores").select(["id", "site_id"]).execute();
  const policy = await db
    .selectFrom("policies")
    .select("id")
    .where("name", "=", "default")
    .executeTakeFirstOrThrow();
  const at = (rows: { id: string; site_id: string }[], site: string) => {
    const r = rows.find((x) => x.site_id === site);
    if (r === undefined) throw new Error(`seed: site ${site} has no appliance or datastore`);
    return r.id;
  };
  const siteName = (id: string) => (id === primary ? "primary" : "recovery");
  const now = o.nowMs;
  const width = String(o.n).length;

  const machines: Tables["machines"][] = [];
  const items: Tables["items"][] = [];
  const instances: Tables["instances"][] = [];
  const tokens: Tables["tokens"][] = [];
  const jobPlans: {
    itemId: string;
    ctx: Omit<JobCtx, "jobId">;
    kinds: PlannedJob[];
    failoverJob: string | null;
    drillJob: string | null;
  }[] = [];
  const out: SeededVault = { items: [], jobIds: [], rows: {} };

  for (let i = 0; i < o.n; i++) {
    const x = rand();
    const m = PHASE_MIX;
    const phase: Phase =
      x < m.initialReplication
        ? "initial-replication"
        : x < m.initialReplication + m.failedOver
          ? "failed-over"
          : x < m.initialReplication + m.failedOver + m.reversed
            ? "reversed"
            : x < m.initialReplication + m.failedOver + m.reversed + m.drill
              ? "drill"
              : x < m.initialReplication + m.failedOver + m.reversed + m.drill + m.rpoBreach
                ? "rpo-breach"
                : "protected";
    const name = `${["web", "db", "app", "cache", "mq"][i % 5]}-${String(i + 1).padStart(width, "0")}`;
    const machineId = randomUUID();
    const itemId = newId("item");
    const createdMs = now - between(30, 90) * 86_400_000;
    const disks = [
      { uuid: randomUUID(), path: "/dev/vda", sizeBytes: 40 * GiB, sectorSize: 512, role: "os" },
      {
        uuid: randomUUID(),
        path: "/dev/vdb",
        sizeBytes: int(1, 8) * 64 * GiB,
        sectorSize: 512,
        role: "data",
      },
    ];
    const totalBytes = disks[0]!.sizeBytes + disks[1]!.sizeBytes;
    const reversed = phase === "reversed";
    const source = reversed ? recovery : primary;
    const target = reversed ? primary : recovery;
    // where the machine runs now: the recovered copy after a failover
    const runsAt = phase === "failed-over" ? recovery : source;
    const octet = (i % 250) + 2;
    const subnet = 10 + Math.floor(i / 250);

    let replication: string | null = null;
    if (phase === "initial-replication") {
      replication = initialReplicationReport(now, totalBytes, between(40, 200) * 1e6, between(0.05, 0.95));
    } else if (phase !== "failed-over") {
      const sent = int(2, 200) * 1e6;
      replication = JSON.stringify({
        bytesDone: sent,
        bytesTotal: sent,
        bytesPerSecond: between(40, 200) * 1e6,
        at: iso(now - between(0, 240_000)),
        samples: [{ at: iso(now - between(0, 240_000)), bytesDone: sent }],
      });
    }
    machines.push({
      id: machineId,
      name,
      site_id: runsAt,
      instance_id: null,
      hostname: `${name}.corp.example`,
      os: i % 3 === 0 ? "Ubuntu 24.04.1 LTS" : "Debian GNU/Linux 12 (bookworm)",
      cpus: [2, 4, 8, 16][i % 4]!,
      memory_bytes: [4, 8, 16, 32][i % 4]! * GiB,
      disks: JSON.stringify(disks),
      nics: JSON.stringify([
        {
          name: "eth0",
          mac: `52:54:00:${randomBytes(3).toString("hex").match(/../g)!.join(":")}`,
          addresses: [`10.${subnet % 256}.0.${octet}/24`],
        },
      ]),
      boot_command: null,
      power_state: "running",
      last_heartbeat_at: iso(now - between(0, 10_000)),
      replication,
      created_at: iso(createdMs),
      updated_at: iso(now - between(0, 10_000)),
    });
    tokens.push({
      id: newId("token"),
      name: `agent of ${name}`,
      role: "agent",
      sha256: createHash("sha256").update(randomBytes(32)).digest("hex"),
      machine_id: machineId,
      created_at: iso(createdMs),
      last_used_at: iso(now - between(0, 10_000)),
    });

    // the last points: none yet during initial replication
    const lastAgo = phase === "rpo-breach" ? between(20, 60) * 60_000 : between(5_000, 300_000);
    const lastMs = now - lastAgo;
    const appMs = lastMs - between(0, 4 * 3_600_000);
    const hasPoints = phase !== "initial-replication";
    const lastPoint = hasPoints ? pointId(lastMs) : null;
    const appPoint = hasPoints ? (rand() < 0.1 ? lastPoint : pointId(appMs)) : null;
    const settings: TargetSettings = {
      targetName: `${name}-dr`,
      cpus: [2, 4, 8, 16][i % 4]!,
      memoryBytes: [4, 8, 16, 32][i % 4]! * GiB,
      network: "dr-prod",
      subnet: `10.${(subnet + 100) % 256}.0.0/24`,
      ip: `10.${(subnet + 100) % 256}.0.${octet}`,
      testNetwork: "dr-test",
      diskRoles: { [disks[0]!.uuid]: "os", [disks[1]!.uuid]: "data" },
    };
    const jobCount = JOBS_PER_ITEM;
    const kinds = historyOf(phase);
    if (kinds.length !== jobCount) throw new Error(`seed: history of ${phase} has ${kinds.length} jobs`);
    let failover: FailoverRecord | null = null;
    let drill: DrillRecord | null = null;
    let failoverJob: string | null = null;
    let drillJob: string | null = null;
    if (phase === "failed-over") {
      failoverJob = jobId();
      failover = {
        point: lastPoint!,
        instanceId: `failover-${failoverJob.slice(4)}`,
        site: recovery,
        jobId: failoverJob,
        sourceShutdown: { requested: true, outcome: "shut down after a final point" },
      };
    }
    if (phase === "drill") {
      drillJob = jobId();
      drill = { point: appPoint!, instanceId: `drill-${drillJob.slice(4)}`, site: target, jobId: drillJob };
    }
    const state: ItemState = {
      phase:
        phase === "initial-replication"
          ? "initial-replication"
          : phase === "failed-over"
            ? "failed-over"
            : "protected",
      home: primary,
      source,
      target,
      generation: phase === "failed-over" || reversed ? 2 : 1,
      failoverPoint: (failover?.point ?? null) as ItemState["failoverPoint"],
      drill:
        drill === null
          ? null
          : { point: drill.point as never, startedAtMs: now - between(600_000, 7_200_000) },
    };
    const lastReport = hasPoints
      ? JSON.stringify({
          item: name,
          pointId: lastPoint,
          mode: "incremental",
          consistency: lastPoint === appPoint ? "app" : "crash",
          bytesRead: int(1, 40) * 64 * 1024 ** 2,
          bytesSent: int(1, 200) * 1e6,
          changedBlocks: int(100, 50_000),
          durationMs: int(300, 20_000),
          maxFreezeMs: lastPoint === appPoint ? int(50, 900) : 0,
          warnings: [],
        })
      : null;
    items.push({
      id: itemId,
      name,
      machine_id: machineId,
      home_site_id: primary,
      source_site_id: source,
      target_site_id: target,
      policy_id: policy.id,
      process_server_id: at(apps, target),
      master_target_id: at(apps, target),
      datastore_id: at(stores, target),
      state: checked(ItemStateSchema, state, `item ${name}'s state`),
      generation: state.generation,
      target_settings: checked(TargetSettingsSchema, settings, `item ${name}'s target settings`),
      failover: failover === null ? null : checked(FailoverRecordSchema, failover, `item ${name}'s failover`),
      drill: drill === null ? null : checked(DrillRecordSchema, drill, `item ${name}'s drill`),
      last_point_id: lastPoint,
      last_point_at: hasPoints ? iso(lastMs) : null,
      last_app_point_id: appPoint,
      last_app_point_at: hasPoints ? (appPoint === lastPoint ? iso(lastMs) : iso(appMs)) : null,
      resync_required: 0,
      seed_point_id: reversed ? pointId(now - 20 * 86_400_000) : null,
      last_point_report: lastReport,
      version: int(20, 4000),
      created_at: iso(createdMs),
      updated_at: iso(hasPoints ? lastMs : now - between(0, 60_000)),
    });
    if (failover !== null) {
      instances.push({
        id: failover.instanceId,
        item_id: itemId,
        machine_id: machineId,
        site_id: recovery,
        purpose: "failover",
        provider: "process",
        provider_state: JSON.stringify({
          disks: [`/srv/recovery/${name}/disk0.img`, `/srv/recovery/${name}/disk1.img`],
        }),
        created_at: iso(now - between(600_000, 3_600_000)),
        deleted_at: null,
      });
    }
    if (drill !== null) {
      instances.push({
        id: drill.instanceId,
        item_id: itemId,
        machine_id: machineId,
        site_id: target,
        purpose: "drill",
        provider: "process",
        provider_state: JSON.stringify({
          disks: [`/srv/recovery/${name}/drill0.img`, `/srv/recovery/${name}/drill1.img`],
        }),
        created_at: iso(now - between(600_000, 3_600_000)),
        deleted_at: null,
      });
    }
    jobPlans.push({
      itemId,
      ctx: {
        item: name,
        point: lastPoint ?? pointId(now - 86_400_000),
        from: siteName(source),
        to: siteName(target),
        toId: target,
      },
      kinds,
      failoverJob,
      drillJob,
    });
    out.items.push({ id: itemId, name, phase });
  }

  await db.transaction().execute(async (trx) => {
    await insertAll(trx, "machines", machines);
    await insertAll(trx, "tokens", tokens);
    await insertAll(trx, "items", items);
    await insertAll(trx, "instances", instances);
  });
  out.rows = {
    machines: machines.length,
    items: items.length,
    instances: instances.length,
    tokens: tokens.length,
  };

  // Job history: 10 finished jobs per item over the last 30 days, oldest first, as the engine
  // records them; committed per 2,000 items so a transaction stays a few tens of MB.
  let jobs = 0;
  let steps = 0;
  let logs = 0;
  const PER_TX = 2000;
  for (let start = 0; start < jobPlans.length; start += PER_TX) {
    const jobRows: Tables["jobs"][] = [];
    const stepRows: Tables["job_steps"][] = [];
    const logRows: Tables["job_logs"][] = [];
    for (const p of jobPlans.slice(start, start + PER_TX)) {
      let t = now - between(25, 30) * 86_400_000;
      p.kinds.forEach((planned, k) => {
        const kind = planned.kind;
        const last = k === p.kinds.length - 1;
        const id =
          last && kind === "failover" && p.failoverJob
            ? p.failoverJob
            : last && p.drillJob
              ? p.drillJob
              : jobId();
        const def = KINDS[kind]!;
        const c: JobCtx = { ...p.ctx, jobId: id };
        // besides the planned failures, a few drills fail at materialize; the operator ran the next one
        const failure =
          planned.fail ?? (kind === "test-failover" && !last && rand() < 0.03 ? MATERIALIZE_FAILED : null);
        const fails = failure !== null;
        const failAt = failure?.at ?? -1;
        const created = t;
        let st = created + between(100, 600);
        const started = st;
        logRows.push({
          job_id: id,
          at: iso(created),
          level: "info",
          step: null,
          message: "created by admin",
          data: null,
        });
        def.steps.forEach((s, idx) => {
          const ran = failAt < 0 || idx <= failAt;
          const took = ran ? between(80, s.name === "materialize" || s.name === "seed" ? 90_000 : 4_000) : 0;
          const state = !ran ? "pending" : idx === failAt ? "failed" : "succeeded";
          stepRows.push({
            job_id: id,
            idx,
            name: s.name,
            state,
            output: state === "succeeded" ? JSON.stringify(s.output(c)) : null,
            started_at: ran ? iso(st) : null,
            finished_at: ran ? iso(st + took) : null,
            attempts: ran ? 1 : 0,
          });
          if (state === "succeeded") {
            if (s.says)
              logRows.push({
                job_id: id,
                at: iso(st + took - 1),
                level: "info",
                step: idx,
                message: s.says(c),
                data: null,
              });
            logRows.push({
              job_id: id,
              at: iso(st + took),
              level: "info",
              step: idx,
              message: `step "${s.name}" done in ${(took / 1000).toFixed(took < 10_000 ? 2 : 1)} s`,
              data: null,
            });
          }
          st += took;
        });
        const finished = st;
        const errorCode = failure?.code ?? null;
        const errorMessage = failure?.message(c) ?? null;
        logRows.push({
          job_id: id,
          at: iso(finished),
          level: fails ? "error" : "info",
          step: fails ? failAt : null,
          message: fails
            ? `step "${def.steps[failAt]!.name}" failed: ${errorCode}: ${errorMessage}`
            : `succeeded in ${((finished - started) / 1000).toFixed(1)} s`,
          data: null,
        });
        jobRows.push({
          id,
          kind,
          item_id: p.itemId,
          plan_id: null,
          state: fails ? "failed" : "succeeded",
          waiting_for: null,
          params: JSON.stringify(def.params(c)),
          step: fails ? failAt : def.steps.length,
          progress: fails ? failAt / def.steps.length : 1,
          error_code: errorCode,
          error_message: errorMessage,
          lease_owner: null,
          lease_until: null,
          created_by: "admin",
          created_at: iso(created),
          started_at: iso(started),
          finished_at: iso(finished),
        });
        out.jobIds.push(id);
        // the next job a day or three later, the last ones within the last week
        t = finished + between(0.5, 2.5) * 86_400_000;
      });
    }
    await db.transaction().execute(async (trx) => {
      await insertAll(trx, "jobs", jobRows);
      await insertAll(trx, "job_steps", stepRows);
      await insertAll(trx, "job_logs", logRows);
    });
    jobs += jobRows.length;
    steps += stepRows.length;
    logs += logRows.length;
  }
  out.rows = { ...out.rows, jobs, job_steps: steps, job_logs: logs };
  return out;
}

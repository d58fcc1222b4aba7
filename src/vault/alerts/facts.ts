// What the vault observes for alerts and metrics, read from the database into the plain facts of the
// alerts core (src/domain/alerts.ts): items with their policy and the agent's progress samples,
// machines with the items that replicate from them, appliances, and the jobs that failed. A row that
// does not parse is reported through `problem` and left out; it never stops the other alerts.
import type { Kysely } from "kysely";
import type { AlertFacts, ItemFacts, JobFacts, MachineFacts } from "../../domain/alerts.ts";
import type { ProgressSample } from "../../domain/health.ts";
import type { VaultDatabase } from "../db/schema.ts";
import { parseItemRow } from "../items.ts";

export interface ItemObservation extends ItemFacts {
  machineId: string;
  /** the agent's last report of the copy under way (bytes of the current pass) */
  copy: { bytesDone: number; bytesTotal: number; bytesPerSecond: number; at: Date } | null;
  resyncRequired: boolean;
}

export interface Observation {
  facts: AlertFacts;
  items: ItemObservation[];
}

interface ReplicationReport {
  bytesDone: number;
  bytesTotal: number;
  bytesPerSecond: number;
  at: string;
  samples?: { at: string; bytesDone: number }[];
}

function parseReport(text: string | null): ReplicationReport | null {
  if (text === null) return null;
  const v = JSON.parse(text) as ReplicationReport;
  if (typeof v.bytesDone !== "number" || typeof v.bytesTotal !== "number" || typeof v.at !== "string") {
    throw new Error("machines.replication does not have bytesDone, bytesTotal and at");
  }
  return v;
}

const date = (s: string | null) => (s === null ? null : new Date(s));

/**
 * Reads everything the alerts core judges. `jobIds` adds jobs besides the failed ones (those with an
 * open job-failed alert), so that a retried job's alert is judged on the job's state now.
 */
export async function observe(
  db: Kysely<VaultDatabase>,
  o: {
    now: Date;
    heartbeatIntervalMs: number;
    jobIds?: readonly string[];
    problem?: (what: string, err: unknown) => void;
  },
): Promise<Observation> {
  const problem = o.problem ?? (() => {});
  const sites = new Map(
    (await db.selectFrom("sites").select(["id", "name"]).execute()).map((s) => [s.id, s.name]),
  );
  const siteName = (id: string) => sites.get(id) ?? id;
  const policies = new Map((await db.selectFrom("policies").selectAll().execute()).map((p) => [p.id, p]));
  const machineRows = await db.selectFrom("machines").selectAll().execute();
  const reports = new Map<string, ReplicationReport | null>();
  for (const m of machineRows) {
    try {
      reports.set(m.id, parseReport(m.replication));
    } catch (err) {
      problem(`machine ${m.name}'s replication report`, err);
      reports.set(m.id, null);
    }
  }

  const items: ItemObservation[] = [];
  for (const row of await db.selectFrom("items").selectAll().execute()) {
    let phase: ItemFacts["phase"];
    let direction: string;
    try {
      const it = parseItemRow(row);
      phase = it.state.phase;
      direction = `${siteName(it.state.source)} → ${siteName(it.state.target)}`;
    } catch (err) {
      problem(`item ${row.name}`, err);
      continue;
    }
    const policy = policies.get(row.policy_id);
    const rep = reports.get(row.machine_id) ?? null;
    const samples: ProgressSample[] = (rep?.samples ?? []).map((s) => ({
      at: new Date(s.at),
      bytesDone: s.bytesDone,
    }));
    items.push({
      id: row.id,
      name: row.name,
      phase,
      direction,
      since: new Date(row.updated_at),
      lastPointAt: date(row.last_point_at),
      rpoThresholdSeconds: policy?.rpo_threshold_s ?? 0,
      crashEverySeconds: policy?.crash_consistent_every_s ?? 0,
      progress: samples,
      machineId: row.machine_id,
      copy:
        rep === null
          ? null
          : {
              bytesDone: rep.bytesDone,
              bytesTotal: rep.bytesTotal,
              bytesPerSecond: rep.bytesPerSecond,
              at: new Date(rep.at),
            },
      resyncRequired: row.resync_required === 1,
    });
  }

  // items by machine, once: a scan of every item per machine is 10^8 comparisons at 10,000 of each
  const replicatingOf = new Map<string, ItemFacts[]>();
  for (const it of items) {
    if (it.phase !== "protected" && it.phase !== "initial-replication") continue;
    const list = replicatingOf.get(it.machineId) ?? [];
    list.push(it);
    replicatingOf.set(it.machineId, list);
  }
  const machines: MachineFacts[] = machineRows.map((m) => {
    const replicating = replicatingOf.get(m.id) ?? [];
    const since = Math.min(...replicating.map((it) => it.since.getTime()), Date.parse(m.created_at));
    return {
      id: m.id,
      name: m.name,
      lastHeartbeatAt: date(m.last_heartbeat_at),
      replicatingItems: replicating.map((it) => it.name),
      watchedSince: new Date(Number.isFinite(since) ? since : o.now.getTime()),
    };
  });

  const appliances = (await db.selectFrom("appliances").selectAll().execute()).map((a) => ({
    id: a.id,
    name: a.name,
    site: siteName(a.site_id),
    lastHeartbeatAt: date(a.last_heartbeat_at),
    createdAt: new Date(a.created_at),
  }));

  const jobs = await readJobFacts(db, { failed: true, ids: o.jobIds ?? [] });
  return {
    facts: {
      now: o.now,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      complete: true,
      items,
      machines,
      appliances,
      jobs,
    },
    items,
  };
}

const JOB_STATES: readonly JobFacts["state"][] = [
  "queued",
  "running",
  "waiting",
  "succeeded",
  "failed",
  "cancelled",
];

/** The failed jobs (with `failed`) and the jobs named, as the alerts core sees them. */
export async function readJobFacts(
  db: Kysely<VaultDatabase>,
  o: { failed: boolean; ids: readonly string[] },
): Promise<JobFacts[]> {
  if (!o.failed && o.ids.length === 0) return [];
  const rows = await db
    .selectFrom("jobs")
    .leftJoin("items", "items.id", "jobs.item_id")
    .select([
      "jobs.id",
      "jobs.kind",
      "jobs.state",
      "jobs.error_code",
      "jobs.error_message",
      "jobs.item_id",
      "jobs.plan_id",
      "jobs.created_at",
      "items.name as item_name",
    ])
    .where((eb) => {
      const any = [];
      if (o.failed) any.push(eb("jobs.state", "=", "failed"));
      if (o.ids.length > 0) any.push(eb("jobs.id", "in", [...o.ids]));
      return eb.or(any);
    })
    .execute();
  // a failed job whose operation was done by a later job of the same kind (an operation run again
  // instead of the job retried, a plan retry that starts new item jobs) is behind us
  const failed = rows.filter((r) => r.state === "failed");
  const later = new Map<string, string>();
  if (failed.length > 0) {
    const done = await db
      .selectFrom("jobs")
      .select(["id", "kind", "item_id", "plan_id", "created_at"])
      .where("state", "=", "succeeded")
      .where("kind", "in", [...new Set(failed.map((r) => r.kind))])
      .execute();
    const byKey = new Map<string, { id: string; created_at: string }[]>();
    for (const d of done) {
      const key = `${d.kind}|${d.item_id ?? ""}|${d.plan_id ?? ""}`;
      byKey.set(key, [...(byKey.get(key) ?? []), d]);
    }
    for (const f of failed) {
      const key = `${f.kind}|${f.item_id ?? ""}|${f.plan_id ?? ""}`;
      const newer = (byKey.get(key) ?? []).find((d) => d.created_at > f.created_at);
      if (newer !== undefined && (f.item_id !== null || f.plan_id !== null)) later.set(f.id, newer.id);
    }
  }
  return rows
    .filter((r) => (JOB_STATES as readonly string[]).includes(r.state))
    .map((r) => ({
      id: r.id,
      kind: r.kind,
      state: r.state as JobFacts["state"],
      itemName: r.item_name,
      error: r.error_code === null ? null : { code: r.error_code, message: r.error_message ?? "" },
      supersededBy: later.get(r.id) ?? null,
    }));
}

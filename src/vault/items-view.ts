// What the API shows of a replicated item: its lifecycle state in words, direction by site names,
// health (RPO against the policy, initial replication progress), its latest points of each kind,
// the operations it allows now, and the job running on it.
import { type Static, Type } from "@sinclair/typebox";
import { replicationProgress, rpo } from "../domain/health.ts";
import {
  allowedOperations,
  OPERATIONS,
  type OperationFacts,
  type OperationName,
} from "../domain/lifecycle.ts";
import { readJsonOrNull } from "./db/json.ts";
import type { MachineRow } from "./db/schema.ts";
import { DrillRecordSchema, FailoverRecordSchema, type LoadedItem, TargetSettingsSchema } from "./items.ts";
import type { OpsContext } from "./operations/context.ts";
import { isUnreachable, itemPoints } from "./operations/context.ts";
import { allowed } from "./operations/index.ts";

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const PointViewSchema = Type.Object({
  id: Type.String(),
  createdAt: Type.String(),
  consistency: Type.Union([Type.Literal("crash"), Type.Literal("app")]),
  ageSeconds: Type.Number(),
});

export const ItemViewSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  machineId: Type.String(),
  phase: Type.String(),
  /** "primary → recovery" */
  direction: Type.String(),
  home: Type.String(),
  source: Type.String(),
  target: Type.String(),
  generation: Type.Integer(),
  policy: Type.String(),
  processServer: Type.String(),
  datastore: Type.String(),
  targetSettings: TargetSettingsSchema,
  health: Type.Object({
    rpoSeconds: Type.Union([Type.Number(), Type.Null()]),
    rpoThresholdSeconds: Type.Number(),
    rpoStatus: Type.String(),
    initialReplication: Type.Union([
      Type.Object({
        percent: Type.Number(),
        bytesDone: Type.Number(),
        bytesTotal: Type.Number(),
        bytesPerSecond: Type.Number(),
        etaSeconds: Type.Union([Type.Number(), Type.Null()]),
      }),
      Type.Null(),
    ]),
    resyncRequired: Type.Boolean(),
  }),
  latestPoint: Type.Union([PointViewSchema, Type.Null()]),
  latestAppConsistentPoint: Type.Union([PointViewSchema, Type.Null()]),
  /** points held at the target (-1 in lists: counted only by `items show`) */
  pointCount: Type.Integer(),
  lastPointReport: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  drill: Type.Union([DrillRecordSchema, Type.Null()]),
  failover: Type.Union([FailoverRecordSchema, Type.Null()]),
  allowedOperations: Type.Array(Type.Union(OPERATIONS.map((o) => Type.Literal(o)))),
  activeJob: Type.Union([
    Type.Object({ id: Type.String(), kind: Type.String(), state: Type.String() }),
    Type.Null(),
  ]),
  seedPointId: Nullable(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type ItemView = Static<typeof ItemViewSchema>;

/** What a batch of item views shares: the inventory read once, not once per item. */
interface Lookups {
  sites: Map<string, string>;
  policies: Map<string, { name: string; rpo_threshold_s: number }>;
  appliances: Map<string, string>;
  datastores: Map<string, string>;
  machines: Map<string, MachineRow>;
  jobs: Map<string, { id: string; kind: string; state: string }>;
  /** machine id → site ids where it left disks (a stopped machine or kept disks) */
  disksAt: Map<string, Set<string>>;
}

async function lookups(ctx: OpsContext, items: readonly LoadedItem[]): Promise<Lookups> {
  const db = ctx.db;
  const machineIds = [...new Set(items.map((i) => i.row.machine_id))];
  const itemIds = items.map((i) => i.row.id);
  const inChunks = async <T>(ids: string[], q: (chunk: string[]) => Promise<T[]>): Promise<T[]> => {
    const out: T[] = [];
    // bound the IN list: SQLite allows 32,766 parameters, PostgreSQL 65,535
    for (let i = 0; i < ids.length; i += 5000) out.push(...(await q(ids.slice(i, i + 5000))));
    return out;
  };
  const machines = await inChunks(machineIds, (c) =>
    db.selectFrom("machines").selectAll().where("id", "in", c).execute(),
  );
  const jobs = await inChunks(itemIds, (c) =>
    db
      .selectFrom("jobs")
      .select(["id", "kind", "state", "item_id"])
      .where("item_id", "in", c)
      .where("finished_at", "is", null)
      .execute(),
  );
  const instances = await inChunks(machineIds, (c) =>
    db
      .selectFrom("instances")
      .select(["machine_id", "site_id", "provider_state"])
      .where("machine_id", "in", c)
      .where("deleted_at", "is", null)
      .where("purpose", "in", ["production", "seed"])
      .execute(),
  );
  const disksAt = new Map<string, Set<string>>();
  for (const r of instances) {
    if (r.machine_id === null || !r.provider_state.includes('"disks":["')) continue;
    const set = disksAt.get(r.machine_id) ?? new Set<string>();
    set.add(r.site_id);
    disksAt.set(r.machine_id, set);
  }
  return {
    sites: new Map(
      (await db.selectFrom("sites").select(["id", "name"]).execute()).map((x) => [x.id, x.name]),
    ),
    policies: new Map(
      (await db.selectFrom("policies").select(["id", "name", "rpo_threshold_s"]).execute()).map((x) => [
        x.id,
        x,
      ]),
    ),
    appliances: new Map(
      (await db.selectFrom("appliances").select(["id", "name"]).execute()).map((x) => [x.id, x.name]),
    ),
    datastores: new Map(
      (await db.selectFrom("datastores").select(["id", "name"]).execute()).map((x) => [x.id, x.name]),
    ),
    machines: new Map(machines.map((m) => [m.id, m])),
    jobs: new Map(jobs.map((j) => [j.item_id as string, { id: j.id, kind: j.kind, state: j.state }])),
    disksAt,
  };
}

/**
 * The facts of the lifecycle core from what the vault recorded, without asking providers or
 * datastores (for lists of thousands of items): machines by their agents' heartbeats. `items show`
 * and every operation use the full facts (gatherFacts).
 */
function recordedFacts(ctx: OpsContext, it: LoadedItem, l: Lookups): OperationFacts {
  const m = l.machines.get(it.row.machine_id);
  const online =
    m?.last_heartbeat_at != null &&
    ctx.now().getTime() - Date.parse(m.last_heartbeat_at) < 3 * ctx.heartbeatIntervalMs;
  const at = (site: string) => (m?.site_id === site ? (online ? "running" : "unreachable") : "stopped");
  const s = it.state;
  return {
    pointCount: it.row.last_point_id === null ? 0 : 1,
    sourceMachine: at(s.source),
    recoveredMachine:
      it.failover === null ? "none" : at(it.failover.site) === "running" ? "running" : "stopped",
    disksAtReturnSite: l.disksAt.get(it.row.machine_id)?.has(s.source) ?? false,
  };
}

/** Views of many items (the list): a fixed number of queries whatever their number. */
export async function itemViews(ctx: OpsContext, items: readonly LoadedItem[]): Promise<ItemView[]> {
  const l = await lookups(ctx, items);
  return items.map((it) => build(ctx, it, l, null, allowedOperations(it.state, recordedFacts(ctx, it, l))));
}

/** One item in full: its points counted at the datastore, the operations from the full facts. */
export async function itemView(
  ctx: OpsContext,
  it: LoadedItem,
  o: { points?: boolean } = {},
): Promise<ItemView> {
  const l = await lookups(ctx, [it]);
  try {
    const points = o.points ? (await itemPoints(ctx, it)).length : null;
    return build(ctx, it, l, points, await allowed(ctx, it));
  } catch (err) {
    // a remote appliance out of reach: show the item from what the vault recorded
    if (!isUnreachable(err)) throw err;
    return build(ctx, it, l, null, allowedOperations(it.state, recordedFacts(ctx, it, l)));
  }
}

function build(
  ctx: OpsContext,
  it: LoadedItem,
  l: Lookups,
  pointCount: number | null,
  allowedOps: OperationName[],
): ItemView {
  const now = ctx.now();
  const name = (id: string) => l.sites.get(id) ?? id;
  const policy = l.policies.get(it.row.policy_id);
  const machine = l.machines.get(it.row.machine_id);
  const job = l.jobs.get(it.row.id);
  const s = it.state;
  const threshold = policy?.rpo_threshold_s ?? 0;
  const replicating = s.phase === "protected" || s.phase === "initial-replication";
  const r = rpo({
    now,
    lastPointAt: it.row.last_point_at === null ? null : new Date(it.row.last_point_at),
    since: new Date(it.row.updated_at),
    thresholdSeconds: threshold,
  });
  let initial: ItemView["health"]["initialReplication"] = null;
  if (s.phase === "initial-replication" && machine?.replication) {
    const rep = JSON.parse(machine.replication) as {
      bytesTotal: number;
      bytesPerSecond: number;
      samples?: { at: string; bytesDone: number }[];
    };
    const p = replicationProgress({
      now,
      bytesTotal: rep.bytesTotal,
      samples: (rep.samples ?? []).map((x) => ({ at: new Date(x.at), bytesDone: x.bytesDone })),
      reportedBytesPerSecond: rep.bytesPerSecond,
    });
    initial = {
      percent: p.percent,
      bytesDone: p.bytesDone,
      bytesTotal: p.bytesTotal,
      bytesPerSecond: p.bytesPerSecond,
      etaSeconds: p.etaSeconds,
    };
  }
  const pointView = (id: string | null, at: string | null, consistency: "crash" | "app") =>
    id === null || at === null
      ? null
      : { id, createdAt: at, consistency, ageSeconds: Math.max(0, (now.getTime() - Date.parse(at)) / 1000) };
  return {
    id: it.row.id,
    name: it.row.name,
    machineId: it.row.machine_id,
    phase: s.phase,
    direction: `${name(s.source)} → ${name(s.target)}`,
    home: name(s.home),
    source: name(s.source),
    target: name(s.target),
    generation: s.generation,
    policy: policy?.name ?? it.row.policy_id,
    processServer: l.appliances.get(it.row.process_server_id) ?? it.row.process_server_id,
    datastore: l.datastores.get(it.row.datastore_id) ?? it.row.datastore_id,
    targetSettings: it.settings,
    health: {
      rpoSeconds: replicating ? r.rpoSeconds : null,
      rpoThresholdSeconds: threshold,
      rpoStatus: replicating ? r.status : "n/a",
      initialReplication: initial,
      resyncRequired: it.row.resync_required === 1,
    },
    latestPoint: pointView(
      it.row.last_point_id,
      it.row.last_point_at,
      it.row.last_point_id !== null && it.row.last_point_id === it.row.last_app_point_id ? "app" : "crash",
    ),
    latestAppConsistentPoint: pointView(it.row.last_app_point_id, it.row.last_app_point_at, "app"),
    pointCount: pointCount ?? -1,
    lastPointReport: readJsonOrNull(Type.Record(Type.String(), Type.Unknown()), it.row.last_point_report, {
      table: "items",
      column: "last_point_report",
      id: it.row.id,
    }),
    drill: it.drill,
    failover: it.failover,
    allowedOperations: job === undefined ? allowedOps : [],
    activeJob: job ?? null,
    seedPointId: it.row.seed_point_id,
    createdAt: it.row.created_at,
    updatedAt: it.row.updated_at,
  };
}

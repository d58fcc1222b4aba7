// What the API shows of a replicated item: its lifecycle state in words, direction by site names,
// health (RPO against the policy, initial replication progress), its latest points of each kind,
// the operations it allows now, and the job running on it.
import { type Static, Type } from "@sinclair/typebox";
import { replicationProgress, rpo } from "../domain/health.ts";
import { OPERATIONS } from "../domain/lifecycle.ts";
import { readJsonOrNull } from "./db/json.ts";
import { DrillRecordSchema, FailoverRecordSchema, type LoadedItem, TargetSettingsSchema } from "./items.ts";
import type { OpsContext } from "./operations/context.ts";
import { itemPoints } from "./operations/context.ts";
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

export async function itemView(
  ctx: OpsContext,
  it: LoadedItem,
  o: { points?: boolean } = {},
): Promise<ItemView> {
  const db = ctx.db;
  const now = ctx.now();
  const sites = new Map(
    (await db.selectFrom("sites").select(["id", "name"]).execute()).map((s) => [s.id, s.name]),
  );
  const name = (id: string) => sites.get(id) ?? id;
  const policy = await db
    .selectFrom("policies")
    .selectAll()
    .where("id", "=", it.row.policy_id)
    .executeTakeFirst();
  const ps = await db
    .selectFrom("appliances")
    .select("name")
    .where("id", "=", it.row.process_server_id)
    .executeTakeFirst();
  const ds = await db
    .selectFrom("datastores")
    .select("name")
    .where("id", "=", it.row.datastore_id)
    .executeTakeFirst();
  const machine = await db
    .selectFrom("machines")
    .selectAll()
    .where("id", "=", it.row.machine_id)
    .executeTakeFirst();
  const job = await db
    .selectFrom("jobs")
    .select(["id", "kind", "state"])
    .where("item_id", "=", it.row.id)
    .where("finished_at", "is", null)
    .executeTakeFirst();
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
  const points = o.points ? await itemPoints(ctx, it) : null;
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
    processServer: ps?.name ?? it.row.process_server_id,
    datastore: ds?.name ?? it.row.datastore_id,
    targetSettings: it.settings,
    health: {
      rpoSeconds: replicating ? r.rpoSeconds : null,
      rpoThresholdSeconds: threshold,
      rpoStatus: replicating ? r.status : "n/a",
      initialReplication: initial,
      resyncRequired: it.row.resync_required === 1,
    },
    latestPoint: pointView(it.row.last_point_id, it.row.last_point_at, "crash"),
    latestAppConsistentPoint: pointView(it.row.last_app_point_id, it.row.last_app_point_at, "app"),
    pointCount: points?.length ?? -1,
    lastPointReport: readJsonOrNull(Type.Record(Type.String(), Type.Unknown()), it.row.last_point_report, {
      table: "items",
      column: "last_point_report",
      id: it.row.id,
    }),
    drill: it.drill,
    failover: it.failover,
    allowedOperations: job === undefined ? await allowed(ctx, it) : [],
    activeJob: job ?? null,
    seedPointId: it.row.seed_point_id,
    createdAt: it.row.created_at,
    updatedAt: it.row.updated_at,
  };
}

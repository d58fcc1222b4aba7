// What the API shows of a replicated item: its lifecycle state in words, direction by site names,
// health (RPO against the policy, initial replication progress), its latest points of each kind,
// the operations it allows now, and the job running on it.
import { type Static, Type } from "@sinclair/typebox";
import { type RpoStatus, replicationProgress, rpo } from "../domain/health.ts";
import {
  allowedOperations,
  OPERATIONS,
  type OperationFacts,
  PHASES,
  type Phase,
} from "../domain/lifecycle.ts";
import { readJson, readJsonOrNull } from "./db/json.ts";
import type { MachineRow } from "./db/schema.ts";
import { toAppliance } from "./inventory/appliances.ts";
import {
  DrillRecordSchema,
  FailoverRecordSchema,
  ItemStateSchema,
  type LoadedItem,
  parseItemRow,
  TargetSettingsSchema,
} from "./items.ts";
import type { OpsContext } from "./operations/context.ts";
import { gatherFacts, isUnreachable, itemPoints } from "./operations/context.ts";

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

/**
 * An item's health in one word, from what its view says (health.rpoStatus, initialReplication): the
 * filter values of the list and the keys of its counts. Every item has exactly one.
 *  - ok, warning, critical: a protected item's rpoStatus (healthy below 80 % of its policy's
 *    threshold, warning up to it, critical over it: src/domain/health.ts);
 *  - initial: in initial replication, whatever its rpoStatus (measured from when protection started
 *    or the item last changed): its progress is what tells, and the replication-stalled alert
 *    watches it;
 *  - n/a: not replicating (enabling, failing over, failed over, committed, reprotecting, disabled),
 *    rpoStatus "n/a"; also a protected item whose RPO cannot be measured (rpoStatus "unknown": no
 *    point and no time to count from, which the vault never records).
 */
export const HEALTH_SUMMARIES = ["ok", "warning", "critical", "initial", "n/a"] as const;
export type HealthSummary = (typeof HEALTH_SUMMARIES)[number];

export interface ItemHealth {
  rpoSeconds: number | null;
  rpoStatus: RpoStatus | "n/a";
  summary: HealthSummary;
}

/** The RPO figures of an item's view; the list's filters and counts use this same function. */
export function itemHealth(o: {
  now: Date;
  phase: Phase;
  lastPointAt: string | null;
  /** when the item last changed: the RPO counts from it before the first point */
  updatedAt: string;
  thresholdSeconds: number;
}): ItemHealth {
  if (o.phase !== "protected" && o.phase !== "initial-replication") {
    return { rpoSeconds: null, rpoStatus: "n/a", summary: "n/a" };
  }
  const r = rpo({
    now: o.now,
    lastPointAt: o.lastPointAt === null ? null : new Date(o.lastPointAt),
    since: new Date(o.updatedAt),
    thresholdSeconds: o.thresholdSeconds,
  });
  let summary: HealthSummary;
  if (o.phase === "initial-replication") summary = "initial";
  else if (r.status === "healthy") summary = "ok";
  else if (r.status === "unknown") summary = "n/a";
  else summary = r.status;
  return { rpoSeconds: r.rpoSeconds, rpoStatus: r.status, summary };
}

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
    summary: Type.Union(
      HEALTH_SUMMARIES.map((h) => Type.Literal(h)),
      {
        description:
          "what the list filters by (health=): ok, warning, critical (rpoStatus of a protected item), initial (initial replication: its progress, not an RPO, tells), n/a (not replicating)",
      },
    ),
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
  disksAtReturnSite: Type.Boolean({
    description:
      "the machine's disks are still at the item's source site: after a committed failover, the site a reprotect returns to, so it can go to the original location (false: only alternate). From the vault's records in lists, checked at the site for one item",
  }),
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
  return items.map((it) => build(ctx, it, l, null, recordedFacts(ctx, it, l)));
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
    return build(ctx, it, l, points, await gatherFacts(ctx, it));
  } catch (err) {
    // a remote appliance out of reach: show the item from what the vault recorded
    if (!isUnreachable(err)) throw err;
    return build(ctx, it, l, null, recordedFacts(ctx, it, l));
  }
}

function build(
  ctx: OpsContext,
  it: LoadedItem,
  l: Lookups,
  pointCount: number | null,
  facts: OperationFacts,
): ItemView {
  const allowedOps = allowedOperations(it.state, facts);
  const now = ctx.now();
  const name = (id: string) => l.sites.get(id) ?? id;
  const policy = l.policies.get(it.row.policy_id);
  const machine = l.machines.get(it.row.machine_id);
  const job = l.jobs.get(it.row.id);
  const s = it.state;
  const threshold = policy?.rpo_threshold_s ?? 0;
  const h = itemHealth({
    now,
    phase: s.phase,
    lastPointAt: it.row.last_point_at,
    updatedAt: it.row.updated_at,
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
      rpoSeconds: h.rpoSeconds,
      rpoThresholdSeconds: threshold,
      rpoStatus: h.rpoStatus,
      summary: h.summary,
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
    disksAtReturnSite: facts.disksAtReturnSite,
    activeJob: job ?? null,
    seedPointId: it.row.seed_point_id,
    createdAt: it.row.created_at,
    updatedAt: it.row.updated_at,
  };
}

// ---- the list by pages (GET /v1/items-page) and the overview (GET /v1/overview) ----

export const ITEM_SORTS = ["name", "rpo", "phase"] as const;
export type ItemSort = (typeof ITEM_SORTS)[number];

const countsOf = <K extends string>(keys: readonly K[]) =>
  Type.Object(
    Object.fromEntries(keys.map((k) => [k, Type.Integer()])) as Record<K, ReturnType<typeof Type.Integer>>,
  );

const itemCountsSchema = (description: string) =>
  Type.Object(
    {
      all: Type.Integer(),
      byHealth: countsOf(HEALTH_SUMMARIES),
      byPhase: countsOf(PHASES),
    },
    { description },
  );
export const ItemCountsSchema = itemCountsSchema(
  "every item, by health summary and by phase (all keys present)",
);
export type ItemCounts = Static<typeof ItemCountsSchema>;

export const ItemPageSchema = Type.Object({
  items: Type.Array(ItemViewSchema),
  total: Type.Integer({ description: "the items that match the filters (all pages)" }),
  counts: itemCountsSchema("every item, unfiltered (the numbers of the filter chips)"),
});
export type ItemPage = Static<typeof ItemPageSchema>;

export interface ItemPageQuery {
  limit: number;
  offset: number;
  /** a substring of the item's name or its machine's name, either case */
  search?: string;
  phase?: Phase;
  health?: HealthSummary;
  /** a site id: items replicating from or to it */
  site?: string;
  sort: ItemSort;
}

/** What filtering, sorting and counting need of an item: one narrow query for all of them. */
interface ItemSummary {
  id: string;
  name: string;
  machineName: string;
  phase: Phase;
  source: string;
  target: string;
  health: ItemHealth;
}

async function itemSummaries(ctx: OpsContext, now: Date): Promise<ItemSummary[]> {
  const rows = await ctx.db
    .selectFrom("items")
    .leftJoin("machines", "machines.id", "items.machine_id")
    .leftJoin("policies", "policies.id", "items.policy_id")
    .select([
      "items.id",
      "items.name",
      "items.state",
      "items.last_point_at",
      "items.updated_at",
      "items.source_site_id",
      "items.target_site_id",
      "machines.name as machine_name",
      "policies.rpo_threshold_s",
    ])
    .execute();
  const phases = new Set<string>(PHASES);
  return rows.map((r) => {
    // only the phase is needed here: a plain parse (a third of a full check's cost at 10,000
    // items); a state that does not parse or has no known phase gets the full check's error
    let phase: Phase | undefined;
    try {
      const p = (JSON.parse(r.state) as { phase?: unknown } | null)?.phase;
      if (typeof p === "string" && phases.has(p)) phase = p as Phase;
    } catch {}
    phase ??= readJson(ItemStateSchema, r.state, { table: "items", column: "state", id: r.id }).phase;
    return {
      id: r.id,
      name: r.name,
      machineName: r.machine_name ?? "",
      phase,
      source: r.source_site_id,
      target: r.target_site_id,
      health: itemHealth({
        now,
        phase,
        lastPointAt: r.last_point_at,
        updatedAt: r.updated_at,
        thresholdSeconds: r.rpo_threshold_s ?? 0,
      }),
    };
  });
}

function countItems(items: readonly ItemSummary[]): ItemCounts {
  const byHealth = Object.fromEntries(HEALTH_SUMMARIES.map((h) => [h, 0])) as Record<HealthSummary, number>;
  const byPhase = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<Phase, number>;
  for (const it of items) {
    byHealth[it.health.summary]++;
    byPhase[it.phase]++;
  }
  return { all: items.length, byHealth, byPhase };
}

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const SORTS: Record<ItemSort, (a: ItemSummary, b: ItemSummary) => number> = {
  name: (a, b) => byText(a.name, b.name),
  // the oldest newest point first; items without an RPO (not replicating) last
  rpo: (a, b) => (b.health.rpoSeconds ?? -1) - (a.health.rpoSeconds ?? -1) || byText(a.name, b.name),
  // in lifecycle order (enabling … disabled)
  phase: (a, b) => PHASES.indexOf(a.phase) - PHASES.indexOf(b.phase) || byText(a.name, b.name),
};

/**
 * One page of the list: filters, sort and counts over a narrow read of every item (one query), then
 * full views of the page's items only (a fixed number of queries, whatever the page's size).
 */
export async function itemPage(ctx: OpsContext, q: ItemPageQuery): Promise<ItemPage> {
  const all = await itemSummaries(ctx, ctx.now());
  const needle = q.search?.toLowerCase();
  const matching = all.filter(
    (it) =>
      (q.phase === undefined || it.phase === q.phase) &&
      (q.health === undefined || it.health.summary === q.health) &&
      (q.site === undefined || it.source === q.site || it.target === q.site) &&
      (needle === undefined ||
        it.name.toLowerCase().includes(needle) ||
        it.machineName.toLowerCase().includes(needle)),
  );
  matching.sort(SORTS[q.sort]);
  const ids = matching.slice(q.offset, q.offset + q.limit).map((it) => it.id);
  const rows =
    ids.length === 0 ? [] : await ctx.db.selectFrom("items").selectAll().where("id", "in", ids).execute();
  const byId = new Map(rows.map((r) => [r.id, r]));
  // an item removed between the two reads is left out of the page
  const page = ids.flatMap((id) => {
    const r = byId.get(id);
    return r === undefined ? [] : [parseItemRow(r)];
  });
  return { items: await itemViews(ctx, page), total: matching.length, counts: countItems(all) };
}

const livenessSchema = (description: string) =>
  Type.Union([Type.Literal("online"), Type.Literal("lost"), Type.Literal("unknown")], { description });

export const OverviewSchema = Type.Object({
  at: Type.String({ description: "the vault's time the figures are for" }),
  sites: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      liveness: livenessSchema(
        "the worst of its appliances' (lost, then unknown, then online); unknown for a site without one",
      ),
      appliances: Type.Array(
        Type.Object({
          id: Type.String(),
          name: Type.String(),
          kind: Type.String(),
          liveness: livenessSchema("as GET /v1/appliances judges it: lost after 3 missed heartbeats"),
          lastHeartbeatAt: Type.Union([Type.String(), Type.Null()]),
          silentForSeconds: Type.Union([Type.Number(), Type.Null()], {
            description: "seconds since its last heartbeat (null: never heard from)",
          }),
        }),
      ),
    }),
  ),
  items: ItemCountsSchema,
  alerts: Type.Object({
    open: Type.Integer({ description: "alerts not cleared" }),
    bySeverity: Type.Record(Type.String(), Type.Integer()),
  }),
  jobs: Type.Object({
    unfinished: Type.Integer({ description: "queued, running or waiting" }),
    running: Type.Integer(),
    waiting: Type.Integer({ description: "waiting for a signal (an approval, an answer)" }),
    queued: Type.Integer(),
  }),
});
export type Overview = Static<typeof OverviewSchema>;

const LIVENESS_ORDER = ["lost", "unknown", "online"] as const;

/** The portal's header: sites and their appliances' liveness, item counts, open alerts, jobs. */
export async function overview(ctx: OpsContext): Promise<Overview> {
  const now = ctx.now();
  const db = ctx.db;
  const sites = await db.selectFrom("sites").select(["id", "name"]).orderBy("name").execute();
  const appliances = await db.selectFrom("appliances").selectAll().orderBy("name").execute();
  const items = await itemSummaries(ctx, now);
  const alerts = await db
    .selectFrom("alerts")
    .select(["severity", (eb) => eb.fn.countAll<number>().as("n")])
    .where("cleared_at", "is", null)
    .groupBy("severity")
    .execute();
  const jobs = await db
    .selectFrom("jobs")
    .select(["state", (eb) => eb.fn.countAll<number>().as("n")])
    .where("finished_at", "is", null)
    .groupBy("state")
    .execute();
  const clock = { now, heartbeatIntervalMs: ctx.heartbeatIntervalMs };
  const names = new Map(sites.map((x) => [x.id, x.name]));
  const views = appliances.map((r) => {
    const a = toAppliance(r, names.get(r.site_id) ?? r.site_id, clock);
    const heard = r.last_heartbeat_at === null ? null : Date.parse(r.last_heartbeat_at);
    return {
      siteId: r.site_id,
      view: {
        id: a.id,
        name: a.name,
        kind: a.kind,
        liveness: a.health.liveness,
        lastHeartbeatAt: a.lastHeartbeatAt,
        silentForSeconds: heard === null ? null : Math.max(0, (now.getTime() - heard) / 1000),
      },
    };
  });
  const bySeverity: Record<string, number> = {};
  for (const a of alerts) bySeverity[a.severity] = Number(a.n);
  const jobCount = (state: string) => Number(jobs.find((j) => j.state === state)?.n ?? 0);
  return {
    at: now.toISOString(),
    sites: sites.map((site) => {
      const own = views.filter((v) => v.siteId === site.id).map((v) => v.view);
      const liveness = LIVENESS_ORDER.find((l) => own.some((a) => a.liveness === l)) ?? ("unknown" as const);
      return { id: site.id, name: site.name, liveness, appliances: own };
    }),
    items: countItems(items),
    alerts: { open: alerts.reduce((n, a) => n + Number(a.n), 0), bySeverity },
    jobs: {
      unfinished: jobs.reduce((n, j) => n + Number(j.n), 0),
      running: jobCount("running"),
      waiting: jobCount("waiting"),
      queued: jobCount("queued"),
    },
  };
}

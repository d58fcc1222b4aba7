// /v1/items: replicated items, their recovery points, and the lifecycle operations on them. Every
// operation answers 202 with the job it started and the decision in words (direction, whether it can
// be cancelled, what it will do), or a 409 problem naming why it is refused; `dryRun` only decides.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { SwitchbackError } from "../../../domain/errors.ts";
import { PHASES, type Phase } from "../../../domain/lifecycle.ts";
import type { DrRuntime } from "../../dr.ts";
import { getSiteRow } from "../../inventory/sites.ts";
import { loadItem, parseItemRow, TargetSettingsSchema, updateItem } from "../../items.ts";
import {
  HEALTH_SUMMARIES,
  type HealthSummary,
  ITEM_SORTS,
  ItemPageSchema,
  type ItemSort,
  ItemViewSchema,
  itemPage,
  itemView,
  itemViews,
  OverviewSchema,
  overview,
  PointViewSchema,
} from "../../items-view.ts";
import { startMachine, stopMachine } from "../../machine-power.ts";
import { itemPoints } from "../../operations/context.ts";
import { type OperationRequest, preview, protect, startOperation } from "../../operations/index.ts";
import {
  bucketSecondsFor,
  itemRpoHistory,
  RPO_HISTORY_KEEP_HOURS,
  RPO_HISTORY_MAX_HOURS,
  RpoHistorySchema,
} from "../../rpo-history.ts";
import { principalOf } from "../auth.ts";
import type { VaultDeps } from "../deps.ts";
import { route } from "../route.ts";
import { RefSchema } from "../schemas.ts";

const DecisionSchema = Type.Object({
  op: Type.String(),
  label: Type.String(),
  direction: Type.String(),
  drain: Type.Boolean(),
  shutdownSource: Type.Boolean(),
  irreversible: Type.Boolean({ description: "once started, the operation cannot be cancelled" }),
  consequences: Type.Array(Type.String()),
  point: Type.Optional(
    Type.Object(
      {
        id: Type.String(),
        createdAt: Type.String(),
        consistency: Type.Union([Type.Literal("crash"), Type.Literal("app")]),
        ageSeconds: Type.Number(),
      },
      {
        description:
          "the held recovery point the operation will use, resolved from the request: present for test-failover, change-point and a failover that does not drain first; absent for `latest` (the point is cut when the job drains) and a resumed failover. Send its id to start with exactly this point.",
      },
    ),
  ),
});

const JobRefSchema = Type.Object({ id: Type.String(), kind: Type.String(), state: Type.String() });

const StartedSchema = Type.Object({
  job: Type.Union([JobRefSchema, Type.Null()], { description: "null for a dry run" }),
  decision: DecisionSchema,
});

const PointText = Type.String({
  minLength: 1,
  maxLength: 64,
  description: "latest, latest-processed, latest-app-consistent, a point id or an ISO 8601 time",
});
const DryRun = Type.Object({ dryRun: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
const ItemParams = Type.Object({ item: RefSchema });

/** A string that is one of `values`: one enum, so a 400 says "must be equal to one of the allowed values: …". */
const OneOf = <T extends string>(values: readonly T[], what: string) =>
  Type.Unsafe<T>({ type: "string", enum: [...values], description: `${what}: ${values.join(", ")}` });

const ItemsPageQuery = Type.Object(
  {
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 500, default: 100, description: "items per page, 1 to 500" }),
    ),
    offset: Type.Optional(
      Type.Integer({ minimum: 0, default: 0, description: "how many matching items to skip" }),
    ),
    search: Type.Optional(
      Type.String({
        maxLength: 64,
        description: "a part of the item's name or its machine's name, in either case",
      }),
    ),
    phase: Type.Optional(OneOf<Phase>(PHASES, "the lifecycle phase")),
    health: Type.Optional(OneOf<HealthSummary>(HEALTH_SUMMARIES, "the item's health.summary")),
    site: Type.Optional(
      Type.String({
        pattern: "^[A-Za-z0-9._-]{1,128}$",
        description: "a site's id or name: items replicating from or to it",
      }),
    ),
    sort: Type.Optional(
      OneOf<ItemSort>(
        ITEM_SORTS,
        "name (default), rpo (the largest RPO first, items without one last) or phase (lifecycle order)",
      ),
    ),
  },
  { additionalProperties: false },
);

const OPERATION_BODIES = {
  "test-failover": Type.Object(
    {
      point: Type.Optional(PointText),
      testNetwork: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 64,
          description: "the isolated network for this drill (default: the item's targetSettings.testNetwork)",
        }),
      ),
    },
    { additionalProperties: false },
  ),
  "test-failover-cleanup": Type.Object(
    { notes: Type.Optional(Type.String({ maxLength: 4000 })) },
    { additionalProperties: false },
  ),
  failover: Type.Object(
    {
      point: Type.Optional(PointText),
      shutdownSource: Type.Optional(Type.Boolean()),
      planned: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  ),
  "change-point": Type.Object({ point: PointText }, { additionalProperties: false }),
  commit: Type.Object({}, { additionalProperties: false }),
  reprotect: Type.Object(
    {
      location: Type.Optional(Type.Union([Type.Literal("original"), Type.Literal("alternate")])),
      processServer: Type.Optional(RefSchema),
      masterTarget: Type.Optional(RefSchema),
      datastore: Type.Optional(RefSchema),
    },
    { additionalProperties: false },
  ),
  disable: Type.Object({}, { additionalProperties: false }),
} as const;

const SUMMARIES: Record<keyof typeof OPERATION_BODIES, string> = {
  "test-failover":
    "Start a drill: a copy of the machine at the target, on its test network; replication goes on",
  "test-failover-cleanup": "Remove the drill copy and its disks, with notes",
  failover:
    "Fail over (or fail back) to a recovery point; replication stops first and the failover cannot be cancelled after that",
  "change-point": "Before commit: move the failed-over machine to another recovery point",
  commit:
    "Make the failover final (deletes the item's recovery points; after a failback, removes the machine left)",
  reprotect: "Replicate the machine back from where it runs now (original or alternate location)",
  disable: "Stop protecting the machine and delete its recovery points",
};

function dr(deps: VaultDeps): DrRuntime {
  if (deps.dr === undefined) {
    throw new SwitchbackError(
      "VAULT_STARTING",
      "the vault's disaster-recovery runtime is not running yet; retry in a moment",
    );
  }
  return deps.dr;
}

function toRequest(op: keyof typeof OPERATION_BODIES, b: Record<string, unknown>): OperationRequest {
  switch (op) {
    case "test-failover":
      return {
        op,
        point: (b.point as string | undefined) ?? "latest-processed",
        testNetwork: b.testNetwork as string | undefined,
      };
    case "test-failover-cleanup":
      return { op, notes: (b.notes as string | undefined) ?? "" };
    case "failover":
      return {
        op,
        point: (b.point as string | undefined) ?? "latest",
        shutdownSource: (b.shutdownSource as boolean | undefined) ?? false,
        planned: (b.planned as boolean | undefined) ?? false,
      };
    case "change-point":
      return { op, point: b.point as string };
    case "reprotect":
      return {
        op,
        location: (b.location as "original" | "alternate" | undefined) ?? "original",
        processServer: b.processServer as string | undefined,
        masterTarget: b.masterTarget as string | undefined,
        datastore: b.datastore as string | undefined,
      };
    case "commit":
    case "disable":
      return { op };
  }
}

export function itemsRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const db = deps.vdb.db;
  route(app, {
    method: "GET",
    url: "/v1/items",
    operationId: "listItems",
    tags: ["items"],
    summary: "List the replicated items with state, direction, health and the operations they allow",
    query: Type.Object(
      {
        phase: Type.Optional(Type.String({ maxLength: 32 })),
        search: Type.Optional(Type.String({ maxLength: 64 })),
      },
      { additionalProperties: false },
    ),
    response: Type.Array(ItemViewSchema),
    handler: async (req) => {
      const { ops } = dr(deps);
      let q = db.selectFrom("items").selectAll().orderBy("name");
      if (req.query.search !== undefined) q = q.where("name", "like", `%${req.query.search}%`);
      let items = (await q.execute()).map(parseItemRow);
      if (req.query.phase !== undefined) items = items.filter((it) => it.state.phase === req.query.phase);
      return itemViews(ops, items);
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/items-page",
    operationId: "listItemsPage",
    tags: ["items"],
    summary:
      "One page of the replicated items, filtered and sorted, with the total and the counts by health and phase",
    description:
      "Filters combine (all must hold); `total` counts the items that match them, `counts` every item " +
      "(unfiltered). Only the page's items are read in full, so a page costs the same at 10,000 items " +
      "as at 10. `health` is the item's health.summary: ok, warning and critical are a protected " +
      "item's rpoStatus, initial an item in initial replication, n/a one that does not replicate.",
    query: ItemsPageQuery,
    response: ItemPageSchema,
    problems: [404],
    handler: async (req) => {
      const { ops } = dr(deps);
      const q = req.query;
      return itemPage(ops, {
        limit: q.limit ?? 100,
        offset: q.offset ?? 0,
        sort: q.sort ?? "name",
        ...(q.search !== undefined && q.search !== "" ? { search: q.search } : {}),
        ...(q.phase !== undefined ? { phase: q.phase } : {}),
        ...(q.health !== undefined ? { health: q.health } : {}),
        ...(q.site !== undefined ? { site: (await getSiteRow(db, q.site)).id } : {}),
      });
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/overview",
    operationId: "getOverview",
    tags: ["overview"],
    summary: "Sites with their appliances' liveness, items by health and phase, open alerts, unfinished jobs",
    description: "For the portal's header: a fixed number of queries, whatever the number of items.",
    response: OverviewSchema,
    handler: async () => overview(dr(deps).ops),
  });
  route(app, {
    method: "GET",
    url: "/v1/items/:item/rpo-history",
    operationId: "getItemRpoHistory",
    tags: ["items"],
    summary: "The item's RPO over the last hours, the worst in each bucket, for a chart",
    description:
      `Buckets of 1 minute up to 5 h, 2 min up to 10 h, 5 min up to 25 h (288 for 24 h), 10 min up to 50 h, 15 min beyond: ` +
      `at most 300. A bucket's value is the worst RPO in it: the larger of the RPO just before each ` +
      `commit of a point in it and the bucket's end (now for the last) minus the newest point known ` +
      `by then, so a time without commits shows the RPO growing. Null before the item's first point ` +
      `and before the history kept (${RPO_HISTORY_KEEP_HOURS} h). While the item does not replicate ` +
      `(any phase but protected and initial-replication) every bucket is null and replicating is ` +
      `false: its RPO is not measured. The history is recorded from commits, not from the points, so ` +
      `retention does not change it.`,
    params: ItemParams,
    query: Type.Object(
      {
        hours: Type.Optional(
          Type.Integer({
            minimum: 1,
            maximum: RPO_HISTORY_MAX_HOURS,
            default: 24,
            description: `how far back, 1 to ${RPO_HISTORY_MAX_HOURS} (default 24; bucket ${bucketSecondsFor(24)} s)`,
          }),
        ),
      },
      { additionalProperties: false },
    ),
    response: RpoHistorySchema,
    problems: [404],
    handler: async (req) =>
      itemRpoHistory(db, await loadItem(db, req.params.item), {
        now: deps.now(),
        hours: req.query.hours ?? 24,
      }),
  });
  route(app, {
    method: "GET",
    url: "/v1/items/:item",
    operationId: "getItem",
    tags: ["items"],
    summary: "Show an item: machine, direction, health, latest points of each kind, target settings",
    params: ItemParams,
    response: ItemViewSchema,
    problems: [404],
    handler: async (req) => itemView(dr(deps).ops, await loadItem(db, req.params.item), { points: true }),
  });
  route(app, {
    method: "POST",
    url: "/v1/items",
    operationId: "protectMachine",
    tags: ["items"],
    summary: "Enable replication of a machine to a site with a policy (starts the enable job)",
    body: Type.Object(
      {
        machine: RefSchema,
        to: RefSchema,
        policy: Type.Optional(RefSchema),
        processServer: Type.Optional(RefSchema),
        datastore: Type.Optional(RefSchema),
        targetSettings: Type.Optional(TargetSettingsSchema),
      },
      { additionalProperties: false },
    ),
    status: 202,
    response: Type.Object({ item: ItemViewSchema, job: JobRefSchema }),
    problems: [404, 409],
    handler: async (req) => {
      const { ops, engine } = dr(deps);
      const r = await protect(
        ops,
        engine,
        {
          machine: req.body.machine,
          to: req.body.to,
          policy: req.body.policy ?? "default",
          processServer: req.body.processServer,
          datastore: req.body.datastore,
          targetSettings: req.body.targetSettings,
        },
        principalOf(req).name,
      );
      return {
        item: await itemView(ops, r.item),
        job: { id: r.job.id, kind: r.job.kind, state: r.job.state },
      };
    },
  });
  route(app, {
    method: "PATCH",
    url: "/v1/items/:item",
    operationId: "updateItem",
    tags: ["items"],
    summary:
      "Change the target settings (name, size, network, IP, test network, disk roles) before a failover",
    params: ItemParams,
    body: TargetSettingsSchema,
    response: ItemViewSchema,
    problems: [404, 409],
    handler: async (req) => {
      const { ops } = dr(deps);
      const it = await loadItem(db, req.params.item);
      if (it.state.phase === "failing-over" || it.state.phase === "failed-over") {
        throw new SwitchbackError(
          "ITEM_SETTINGS_LOCKED",
          `item ${it.row.name} is ${it.state.phase}; target settings apply to the next failover, change them after commit`,
        );
      }
      const roles = req.body.diskRoles;
      if (roles !== undefined) {
        const known = Object.keys(it.settings.diskRoles ?? {});
        const unknown = Object.keys(roles).filter((u) => !known.includes(u));
        if (unknown.length > 0) {
          throw new SwitchbackError(
            "INVALID_REQUEST",
            `body/diskRoles: disk ${unknown[0]} is not a disk of item ${it.row.name} (its disks: ${known.join(", ")})`,
          );
        }
      }
      const settings = {
        ...it.settings,
        ...req.body,
        ...(roles !== undefined ? { diskRoles: { ...it.settings.diskRoles, ...roles } } : {}),
      };
      await updateItem(db, it.row.id, it.row.version, { targetSettings: settings }, deps.now());
      return itemView(ops, await loadItem(db, it.row.id));
    },
  });
  route(app, {
    method: "GET",
    url: "/v1/items/:item/points",
    operationId: "listItemPoints",
    tags: ["items"],
    summary: "The item's recovery points at its target, newest first",
    params: ItemParams,
    response: Type.Array(PointViewSchema),
    problems: [404],
    handler: async (req) => {
      const it = await loadItem(db, req.params.item);
      const now = deps.now().getTime();
      return (await itemPoints(dr(deps).ops, it))
        .map((p) => ({
          id: p.id,
          createdAt: new Date(p.createdAtMs).toISOString(),
          consistency: p.consistency,
          ageSeconds: Math.max(0, (now - p.createdAtMs) / 1000),
        }))
        .reverse();
    },
  });
  for (const op of Object.keys(OPERATION_BODIES) as (keyof typeof OPERATION_BODIES)[]) {
    route(app, {
      method: "POST",
      url: `/v1/items/:item/${op}`,
      operationId: `item_${op.replaceAll("-", "_")}`,
      tags: ["operations"],
      summary: SUMMARIES[op],
      params: ItemParams,
      query: DryRun,
      body: OPERATION_BODIES[op],
      status: 202,
      response: StartedSchema,
      problems: [404, 409],
      handler: async (req) => {
        const { ops, engine } = dr(deps);
        const r = toRequest(op, (req.body ?? {}) as Record<string, unknown>);
        if (req.query.dryRun) {
          const { decision } = await preview(ops, req.params.item, r);
          return { job: null, decision };
        }
        const { job, decision } = await startOperation(
          ops,
          engine,
          req.params.item,
          r,
          principalOf(req).name,
        );
        return { job: { id: job.id, kind: job.kind, state: job.state }, decision };
      },
    });
  }
  for (const verb of ["start", "stop"] as const) {
    route(app, {
      method: "POST",
      url: `/v1/machines/:machine/${verb}`,
      operationId: `${verb}Machine`,
      tags: ["machines"],
      summary:
        verb === "start"
          ? "Boot a machine the vault defined (its disks are made on the first start)"
          : "Shut a machine the vault runs down (gracefully, then by force)",
      params: Type.Object({ machine: RefSchema }),
      response: Type.Object({ instanceId: Type.String() }, { additionalProperties: true }),
      problems: [404, 409],
      handler: async (req) =>
        verb === "start"
          ? startMachine(dr(deps).ops, req.params.machine)
          : stopMachine(dr(deps).ops, req.params.machine),
    });
  }
}

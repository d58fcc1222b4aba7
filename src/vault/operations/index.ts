// Starting operations on replicated items: the facts are gathered, the lifecycle core decides (a
// named refusal stops it here, before any job exists), and the operation's durable job is created.
// Enable (protect) creates the item first.
import { Type } from "@sinclair/typebox";
import { SwitchbackError } from "../../domain/errors.ts";
import {
  allowedOperations,
  type Decision,
  decide,
  initialState,
  type Operation,
  type OperationName,
} from "../../domain/lifecycle.ts";
import { formatPointRequest, parsePointRequest, selectPoint } from "../../domain/point-selection.ts";
import { isRefusal, orThrow } from "../../domain/refusal.ts";
import { checkReprotect } from "../../domain/reprotect.ts";
import { isUniqueViolation } from "../db/migrations.ts";
import { newId } from "../ids.ts";
import { getMachineRow } from "../inventory/machines.ts";
import { getPolicyRow } from "../inventory/policies.ts";
import { getSiteRow } from "../inventory/sites.ts";
import { applyItemEvent, type LoadedItem, loadItem, type TargetSettings } from "../items.ts";
import type { JobEngine } from "../jobs/engine.ts";
import { defineJobKind, type JobKind, type JobView } from "../jobs/types.ts";
import { commitKind, disableKind } from "./commit.ts";
import {
  chooseAppliance,
  chooseDatastore,
  gatherFacts,
  itemPoints,
  machineOf,
  type OpsContext,
  siteName,
  sleep,
} from "./context.ts";
import { testFailoverCleanupKind, testFailoverKind } from "./drill.ts";
import { changePointKind, failoverKind } from "./failover.ts";
import { type ReprotectRequest, reprotectFacts, reprotectKind } from "./reprotect.ts";

export function enableKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "enable",
    params: Type.Object({}),
    steps: () => [
      {
        name: "configure",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          if (it.state.phase === "enabling") {
            await applyItemEvent(ctx.db, it.row.id, { e: "replication-configured" }, ctx.now());
          }
          await ctx.replication.refresh();
          c.log(
            "info",
            `replication ${it.state.source} → ${it.state.target} configured; initial replication starts with the agent's next heartbeat`,
          );
          return { configuredAt: ctx.now().toISOString() };
        },
      },
      {
        name: "await-agent",
        run: async (c) => {
          const { configuredAt } = c.outputs.configure as { configuredAt: string };
          const it = await loadItem(ctx.db, c.itemId as string);
          const deadline = Date.now() + 3 * ctx.heartbeatIntervalMs;
          while (Date.now() < deadline) {
            const m = await machineOf(ctx, it);
            if (m.last_heartbeat_at !== null && m.last_heartbeat_at >= configuredAt) {
              return { agentSeenAt: m.last_heartbeat_at };
            }
            await sleep(250, c.signal);
          }
          c.log("warn", "the machine's agent has not reported since; replication starts when it does");
          return { agentSeenAt: null };
        },
      },
    ],
  });
}

/** Every job kind of replicated items. */
export function itemJobKinds(ctx: OpsContext): JobKind[] {
  return [
    enableKind(ctx),
    testFailoverKind(ctx),
    testFailoverCleanupKind(ctx),
    failoverKind(ctx),
    changePointKind(ctx),
    commitKind(ctx),
    reprotectKind(ctx),
    disableKind(ctx),
  ];
}

export interface ProtectRequest {
  machine: string;
  to: string;
  policy: string;
  processServer?: string | undefined;
  datastore?: string | undefined;
  targetSettings?: TargetSettings | undefined;
}

/** Enables replication of a machine: creates the item and its enable job. */
export async function protect(
  ctx: OpsContext,
  engine: JobEngine,
  r: ProtectRequest,
  by: string | null,
): Promise<{ item: LoadedItem; job: JobView }> {
  const db = ctx.db;
  const machine = await getMachineRow(db, r.machine);
  if (machine.site_id === null) {
    throw new SwitchbackError(
      "PROTECT_MACHINE_NOT_REPORTED",
      `machine ${machine.name} has not said where it runs yet; start it (or its agent) so that it registers`,
    );
  }
  const disks = JSON.parse(machine.disks) as { uuid: string; sizeBytes: number; role?: string }[];
  if (disks.length === 0) {
    throw new SwitchbackError(
      "PROTECT_MACHINE_NO_DISKS",
      `machine ${machine.name} has reported no disks yet; wait for its agent's first heartbeat`,
    );
  }
  const target = await getSiteRow(db, r.to);
  if (target.id === machine.site_id) {
    throw new SwitchbackError(
      "PROTECT_SAME_SITE",
      `machine ${machine.name} runs at ${target.name} already; protect it to another site`,
    );
  }
  const existing = await db
    .selectFrom("items")
    .select(["id", "name", "state"])
    .where("machine_id", "=", machine.id)
    .execute();
  const live = existing.find((e) => !e.state.includes('"phase":"disabled"'));
  if (live !== undefined) {
    throw new SwitchbackError(
      "ITEM_EXISTS",
      `machine ${machine.name} is protected already by item ${live.name}; see 'switchback items show ${live.name}'`,
    );
  }
  const policy = await getPolicyRow(db, r.policy);
  const pick = async (ref: string | undefined, role: string) => {
    const a = await chooseAppliance(db, ref, target.id, role);
    if (a === undefined) {
      throw new SwitchbackError(
        "PROTECT_APPLIANCE_NOT_FOUND",
        ref !== undefined
          ? `appliance ${JSON.stringify(ref)} does not exist; see 'switchback appliances list'`
          : `site ${target.name} has no appliance with the ${role} role`,
      );
    }
    if (a.site_id !== target.id) {
      throw new SwitchbackError(
        "PROTECT_APPLIANCE_WRONG_SITE",
        `appliance ${a.name} is not at ${target.name}; choose one of ${target.name}'s`,
      );
    }
    return a;
  };
  const ps = await pick(r.processServer, "process-server");
  const mt = (await chooseAppliance(db, undefined, target.id, "master-target")) ?? null;
  const ds = await chooseDatastore(db, r.datastore, target.id);
  if (ds === undefined || ds.site_id !== target.id) {
    throw new SwitchbackError(
      "PROTECT_DATASTORE_NOT_FOUND",
      r.datastore !== undefined
        ? `datastore ${JSON.stringify(r.datastore)} is not a datastore at ${target.name}; see 'switchback datastores list'`
        : `site ${target.name} has no datastore; create one with 'switchback datastores create'`,
    );
  }
  const id = newId("item");
  const now = ctx.now().toISOString();
  const settings: TargetSettings = {
    targetName: machine.name,
    diskRoles: Object.fromEntries(
      disks.map((d, i) => [d.uuid, (d.role as "os" | "data") ?? (i === 0 ? "os" : "data")]),
    ),
    ...r.targetSettings,
  };
  try {
    await db
      .insertInto("items")
      .values({
        id,
        name: machine.name,
        machine_id: machine.id,
        home_site_id: machine.site_id,
        source_site_id: machine.site_id,
        target_site_id: target.id,
        policy_id: policy.id,
        process_server_id: ps.id,
        master_target_id: mt?.id ?? null,
        datastore_id: ds.id,
        state: JSON.stringify(initialState(machine.site_id, target.id)),
        generation: 1,
        target_settings: JSON.stringify(settings),
        failover: null,
        drill: null,
        last_point_id: null,
        last_point_at: null,
        last_app_point_id: null,
        last_app_point_at: null,
        resync_required: 0,
        seed_point_id: null,
        last_point_report: null,
        version: 1,
        created_at: now,
        updated_at: now,
      })
      .execute();
  } catch (err) {
    if (isUniqueViolation(err)) {
      throw new SwitchbackError(
        "ITEM_EXISTS",
        `an item named ${machine.name} exists already (a disabled one?); see 'switchback items list'`,
      );
    }
    throw err;
  }
  const job = await engine.create("enable", { itemId: id, params: {}, createdBy: by });
  return { item: await loadItem(db, id), job };
}

export type OperationRequest =
  | { op: "test-failover"; point: string; testNetwork?: string | undefined }
  | { op: "test-failover-cleanup"; notes: string }
  | { op: "failover"; point: string; shutdownSource: boolean; planned: boolean }
  | { op: "change-point"; point: string }
  | { op: "commit" }
  | ({ op: "reprotect" } & ReprotectRequest)
  | { op: "disable" };

function toOperation(r: OperationRequest): Operation {
  switch (r.op) {
    case "test-failover":
      return { op: r.op, point: orThrow(parsePointRequest(r.point)) };
    case "failover":
      return {
        op: r.op,
        point: orThrow(parsePointRequest(r.point)),
        shutdownSource: r.shutdownSource,
        planned: r.planned,
      };
    case "change-point":
      return { op: r.op, point: orThrow(parsePointRequest(r.point)) };
    case "test-failover-cleanup":
      return { op: r.op, notes: r.notes };
    case "commit":
    case "disable":
      return { op: r.op };
    case "reprotect":
      return { op: r.op, location: r.location };
  }
}

/** The held point an operation will use, when the vault can name it before it starts. */
export interface ResolvedPoint {
  id: string;
  createdAt: string;
  consistency: "crash" | "app";
  ageSeconds: number;
}

/**
 * The core's decision, and the point it resolved: present when the operation takes a point that is
 * held already (test-failover, change-point, a failover that does not drain first). Absent for
 * `latest` (the point is cut when the job drains) and when a failover is resumed (its first job
 * chose the point).
 */
export type PreviewDecision = Decision & { point?: ResolvedPoint };

/** What the operation would do, or the named refusals; nothing starts. */
export async function preview(
  ctx: OpsContext,
  itemRef: string,
  r: OperationRequest,
): Promise<{ item: LoadedItem; decision: PreviewDecision }> {
  const it = await loadItem(ctx.db, itemRef);
  let op = toOperation(r);
  // a drill joins the network it asks for, or the item's own test network
  const drillNetwork = r.op === "test-failover" ? (r.testNetwork ?? it.settings.testNetwork) : undefined;
  if (op.op === "test-failover" && drillNetwork !== undefined) op = { ...op, network: drillNetwork };
  // the core compares sites and writes them into its sentences: give it their names (unique)
  const named = {
    ...it.state,
    home: siteName(ctx, it.state.home),
    source: siteName(ctx, it.state.source),
    target: siteName(ctx, it.state.target),
  };
  const d = decide(named, op, await gatherFacts(ctx, it));
  if (isRefusal(d)) throw new SwitchbackError(d.code, d.message);
  // a point request no held point answers is refused now, not by a job half-way through
  let point: ResolvedPoint | undefined;
  if ((op.op === "failover" || op.op === "test-failover" || op.op === "change-point") && !d.drain) {
    const req = op.point.kind === "latest" ? ({ kind: "latest-processed" } as const) : op.point;
    const p = orThrow(selectPoint(await itemPoints(ctx, it), req));
    if (it.state.phase !== "failing-over") {
      point = {
        id: p.id,
        createdAt: new Date(p.createdAtMs).toISOString(),
        consistency: p.consistency,
        ageSeconds: Math.max(0, (ctx.now().getTime() - p.createdAtMs) / 1000),
      };
    }
  }
  if (drillNetwork !== undefined && drillNetwork === it.settings.network) {
    throw new SwitchbackError(
      "DRILL_ON_PRODUCTION_NETWORK",
      `test network ${drillNetwork} is the item's production network; a drill copy there would clash with the running machine, so choose an isolated network`,
    );
  }
  if (r.op === "reprotect") {
    const refusals = checkReprotect((await reprotectFacts(ctx, it, r)).facts);
    if (refusals.length > 0) {
      throw new SwitchbackError(refusals[0]!.code, refusals.map((x) => x.message).join("; "));
    }
  }
  return { item: it, decision: point === undefined ? d : { ...d, point } };
}

/** Decides, then creates the operation's job. */
export async function startOperation(
  ctx: OpsContext,
  engine: JobEngine,
  itemRef: string,
  r: OperationRequest,
  by: string | null,
): Promise<{ job: JobView; decision: PreviewDecision }> {
  const { item, decision } = await preview(ctx, itemRef, r);
  const params = paramsOf(r, decision);
  let job: JobView;
  try {
    job = await engine.create(r.op, { itemId: item.row.id, params, createdBy: by });
  } catch (err) {
    // the engine names items by id; the operator typed the name
    if (err instanceof SwitchbackError && err.code === "ITEM_BUSY") {
      throw new SwitchbackError("ITEM_BUSY", err.message.replaceAll(item.row.id, item.row.name));
    }
    throw err;
  }
  return { job, decision };
}

function paramsOf(r: OperationRequest, d: Decision): Record<string, unknown> {
  switch (r.op) {
    case "test-failover":
      return {
        point: formatPointRequest(orThrow(parsePointRequest(r.point))),
        drain: d.drain,
        ...(r.testNetwork !== undefined ? { testNetwork: r.testNetwork } : {}),
      };
    case "failover":
      return {
        point: formatPointRequest(orThrow(parsePointRequest(r.point))),
        shutdownSource: d.shutdownSource,
        planned: r.planned,
        drain: d.drain,
      };
    case "change-point":
      return { point: r.point };
    case "test-failover-cleanup":
      return { notes: r.notes };
    case "reprotect": {
      const { op: _op, ...rest } = r;
      return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
    }
    case "commit":
    case "disable":
      return {};
  }
}

/** The operations the item allows now (the portal offers only these). */
export async function allowed(ctx: OpsContext, it: LoadedItem): Promise<OperationName[]> {
  return allowedOperations(it.state, await gatherFacts(ctx, it));
}

/**
 * A failed item job is retried only while the lifecycle core still allows its operation on the item
 * as it is now: an old commit retried after a reprotect would otherwise delete the new direction's
 * points. A drill is retried only while it is still the item's drill.
 */
export async function checkRetry(ctx: OpsContext, job: JobView): Promise<void> {
  if (job.itemId === null) return;
  const p = (job.params ?? {}) as Record<string, unknown>;
  let r: OperationRequest;
  switch (job.kind) {
    case "failover":
      r = {
        op: "failover",
        point: String(p.point),
        shutdownSource: p.shutdownSource === true,
        planned: p.planned === true,
      };
      break;
    case "change-point":
      r = { op: "change-point", point: String(p.point) };
      break;
    case "commit":
    case "disable":
      r = { op: job.kind };
      break;
    case "reprotect":
      r = {
        op: "reprotect",
        location: p.location === "alternate" ? "alternate" : "original",
        processServer: p.processServer as string | undefined,
        masterTarget: p.masterTarget as string | undefined,
        datastore: p.datastore as string | undefined,
      };
      break;
    case "test-failover-cleanup":
      r = { op: "test-failover-cleanup", notes: String(p.notes ?? "") };
      break;
    case "test-failover": {
      const it = await loadItem(ctx.db, job.itemId);
      if (it.drill !== null && it.drill.jobId !== job.id) {
        throw new SwitchbackError(
          "JOB_RETRY_REFUSED",
          `job ${job.id} is not item ${it.row.name}'s drill any more; start a new test failover`,
        );
      }
      return;
    }
    default:
      return;
  }
  try {
    await preview(ctx, job.itemId, r);
  } catch (err) {
    if (!(err instanceof SwitchbackError)) throw err;
    throw new SwitchbackError(
      "JOB_RETRY_REFUSED",
      `job ${job.id} (${job.kind}) cannot be retried on the item as it is now: ${err.message} [${err.code}]; start a new operation if one is needed`,
    );
  }
}

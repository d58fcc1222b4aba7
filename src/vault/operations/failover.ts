// Failover (and failback: a failover towards the home site) and change of recovery point.
// Steps, in order; everything before `stop-replication` can be retried or abandoned without effect,
// everything from it on cannot be cancelled (the generation has moved: the old copy is fenced):
//   prepare           drain (take the latest point) and/or shut the source down, best effort
//   select-point      which point the request means, among the points at the target
//   stop-replication  the point of no return: generation + 1, replication stops
//   materialize       the machine's disks at the target hold that point (delta onto disks it left there)
//   start             boot it
//   complete          record the failover: point, instance, what became of the source
import { Type } from "@sinclair/typebox";
import { DIRECTORY_LEASE_MS } from "../../appliance/directory.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import { parsePointRequest, selectPoint } from "../../domain/point-selection.ts";
import { orThrow } from "../../domain/refusal.ts";
import { applyItemEvent, type FailoverRecord, type LoadedItem, loadItem } from "../items.ts";
import { defineJobKind, type StepContext } from "../jobs/types.ts";
import {
  instanceIdFor,
  instancesAt,
  itemPoints,
  machineOf,
  type OpsContext,
  siteName,
  siteRuntime,
  sleep,
} from "./context.ts";
import { materialize } from "./materialize.ts";

const FailoverParams = Type.Object({
  point: Type.String(),
  shutdownSource: Type.Boolean(),
  planned: Type.Boolean(),
  drain: Type.Boolean(),
});

const DRAIN_TIMEOUT_MS = 300_000;
const SHUTDOWN_TIMEOUT_MS = 120_000;

interface Prepared {
  drainedPoint: string | null;
  sourceShutdown: FailoverRecord["sourceShutdown"];
}

export function failoverKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "failover",
    params: FailoverParams,
    steps: () => [
      {
        name: "prepare",
        run: async (c): Promise<Prepared> => prepare(ctx, c),
      },
      {
        name: "select-point",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const prepared = c.outputs.prepare as Prepared;
          // chosen before the point of no return: a request no point answers stops here, with
          // replication still running and nothing changed
          const request = prepared.drainedPoint !== null ? prepared.drainedPoint : c.params.point;
          const p = orThrow(selectPoint(await itemPoints(ctx, it), orThrow(parsePointRequest(request))));
          c.log(
            "info",
            `recovery point ${p.id} (${p.consistency}-consistent, ${new Date(p.createdAtMs).toISOString()})`,
          );
          return {
            point: p.id,
            consistency: p.consistency,
            createdAt: new Date(p.createdAtMs).toISOString(),
          };
        },
      },
      {
        name: "stop-replication",
        irreversible: true,
        run: async (c) => {
          const before = await loadItem(ctx.db, c.itemId as string);
          const it = await applyItemEvent(ctx.db, c.itemId as string, { e: "failover-started" }, ctx.now());
          const untold = await ctx.replication.refreshSites();
          // only the appliance that received the item's stream (the old target's) could still accept a
          // point of the old generation; the source site's never did (a lost source site is not waited for)
          const held = await ctx.db
            .selectFrom("datastores")
            .select("site_id")
            .where("id", "=", before.row.datastore_id)
            .executeTakeFirst();
          const receiving = held?.site_id ?? before.state.target;
          if (untold.includes(receiving)) {
            // it did not hear of the new generation: it fences everything once its directory is older
            // than the lease, so wait that out before using any point
            c.log(
              "warn",
              `the appliance of ${siteName(ctx, receiving)} could not be told that replication stopped; waiting ${DIRECTORY_LEASE_MS / 1000} s for its directory to expire`,
            );
            await sleep(DIRECTORY_LEASE_MS + 1000, c.signal);
          } else if (untold.length > 0) {
            c.log(
              "warn",
              `could not tell ${untold.map((s) => siteName(ctx, s)).join(", ")} that replication stopped; it receives nothing of this item, and hears of it when it comes back`,
            );
          }
          c.log("info", `replication stopped; generation ${it.state.generation} from now on`, {
            direction: `${siteName(ctx, it.state.source)} → ${siteName(ctx, it.state.target)}`,
          });
          return { generation: it.state.generation };
        },
      },
      {
        name: "materialize",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          ownFailover(it, c.jobId);
          const { point } = c.outputs["select-point"] as { point: string };
          const m = await materialize(
            ctx,
            it,
            {
              siteId: it.state.target,
              datastoreId: it.row.datastore_id,
              point,
              newId: instanceIdFor("inst", c.jobId),
              purpose: "production",
              reuse: true,
            },
            (f) => c.progress(f),
          );
          c.log(
            "info",
            m.mode === "delta"
              ? `disks at ${siteName(ctx, it.state.target)} brought to ${point}: ${m.blocksWritten} blocks written`
              : `new disks at ${siteName(ctx, it.state.target)} made from ${point}`,
          );
          return m;
        },
      },
      {
        name: "start",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          ownFailover(it, c.jobId);
          const { instanceId } = c.outputs.materialize as { instanceId: string };
          const info = await siteRuntime(ctx, it.state.target).provider.start(instanceId);
          c.log(
            "info",
            `machine started at ${siteName(ctx, it.state.target)} (instance ${instanceId}, pid ${info.pid})`,
          );
          return { instanceId, pid: info.pid };
        },
      },
      {
        name: "complete",
        run: async (c) => {
          ownFailover(await loadItem(ctx.db, c.itemId as string), c.jobId);
          const prepared = c.outputs.prepare as Prepared;
          const { point } = c.outputs["select-point"] as { point: string };
          const { instanceId } = c.outputs.materialize as { instanceId: string };
          const it = await applyItemEvent(
            ctx.db,
            c.itemId as string,
            { e: "failover-completed", point: point as never },
            ctx.now(),
            (cur) => ({
              failover: {
                point,
                instanceId,
                site: cur.state.target,
                jobId: c.jobId,
                sourceShutdown: prepared.sourceShutdown,
              },
            }),
          );
          // the vault knows where the production copy runs now
          await ctx.db
            .updateTable("machines")
            .set({ site_id: it.state.target, instance_id: instanceId, updated_at: ctx.now().toISOString() })
            .where("id", "=", it.row.machine_id)
            .execute();
          return { point, instanceId, site: it.state.target, sourceShutdown: prepared.sourceShutdown };
        },
      },
    ],
  });
}

/** Drain and shutdown, before the point of no return. */
async function prepare(
  ctx: OpsContext,
  c: StepContext<{ point: string; shutdownSource: boolean; planned: boolean; drain: boolean }>,
): Promise<Prepared> {
  const it = await loadItem(ctx.db, c.itemId as string);
  if (it.state.phase === "failing-over") {
    // resumed by a new job after the point of no return: nothing to prepare any more; what the job
    // that started the failover prepared (its drained point, what became of the source) still holds
    const earlier = await ctx.db
      .selectFrom("job_steps")
      .innerJoin("jobs", "jobs.id", "job_steps.job_id")
      .select(["job_steps.output"])
      .where("jobs.item_id", "=", it.row.id)
      .where("jobs.kind", "=", "failover")
      .where("jobs.id", "!=", c.jobId)
      .where("job_steps.name", "=", "prepare")
      .where("job_steps.state", "=", "succeeded")
      .orderBy("jobs.created_at", "desc")
      .executeTakeFirst();
    if (earlier?.output) return JSON.parse(earlier.output) as Prepared;
    return {
      drainedPoint: null,
      sourceShutdown: { requested: c.params.shutdownSource, outcome: "unknown (the failover was resumed)" },
    };
  }
  const machine = await machineOf(ctx, it);
  const p = c.params;
  const source = it.state.source;
  const label = it.state.target === it.state.home ? "failback" : "failover";
  if (p.drain) {
    const kind = p.shutdownSource ? "shutdown" : "point-now";
    const id = await ctx.replication.command(
      machine.id,
      source,
      kind,
      { finalPoint: true },
      c.jobId,
      `cmd-${c.jobId}-drain`,
    );
    c.log(
      "info",
      p.shutdownSource
        ? `asked the machine at ${siteName(ctx, source)} to stop its services, take a final point and shut down`
        : `asked the machine at ${siteName(ctx, source)} for a point now (drain)`,
    );
    const heard = agentHeard(ctx, machine.id);
    const r = await ctx.replication.awaitCommand(id, DRAIN_TIMEOUT_MS, c.signal, heard);
    if (r === null || !r.ok || r.pointId === undefined) {
      await ctx.replication.cancelCommand(id);
      const why =
        r !== null
          ? (r.error ?? "no point")
          : (await heard())
            ? `no answer in ${DRAIN_TIMEOUT_MS / 1000} s`
            : "its agent has gone silent: the site is unreachable";
      throw new SwitchbackError(
        "FAILOVER_DRAIN_FAILED",
        `the machine at ${siteName(ctx, source)} did not deliver its latest point (${why}); nothing was failed over and replication goes on${p.shutdownSource ? " (the machine may have stopped its services already: check it)" : ""}; retry, or run the ${label} with --point latest-processed`,
      );
    }
    c.log("info", `drained: point ${r.pointId}`);
    return {
      drainedPoint: r.pointId,
      sourceShutdown: p.shutdownSource
        ? { requested: true, outcome: "shut down after a final point" }
        : { requested: false, outcome: "left running (fenced)" },
    };
  }
  if (!p.shutdownSource) {
    return { drainedPoint: null, sourceShutdown: { requested: false, outcome: "left running (fenced)" } };
  }
  // best effort: ask the agent; where the vault runs the machine itself, stop it there too
  const id = await ctx.replication.command(
    machine.id,
    source,
    "shutdown",
    { finalPoint: false },
    c.jobId,
    `cmd-${c.jobId}-shutdown`,
  );
  const heard = agentHeard(ctx, machine.id);
  const r = await ctx.replication.awaitCommand(id, SHUTDOWN_TIMEOUT_MS, c.signal, heard);
  let outcome = r?.ok ? "shut down by its agent" : "";
  let detail =
    r !== null
      ? r.ok
        ? undefined
        : r.error
      : (await heard())
        ? `the agent did not answer in ${SHUTDOWN_TIMEOUT_MS / 1000} s`
        : "its agent has gone silent (no heartbeat for 3 intervals): the site is unreachable";
  const site = ctx.sites.get(source);
  const inst = (await instancesAt(ctx, machine.id, source, ["production"]))[0];
  if (site !== undefined && inst !== undefined && !r?.ok && !(await site.ping())) {
    detail = `${detail ?? ""}; the appliance of ${siteName(ctx, source)} does not answer either`;
  } else if (site !== undefined && inst !== undefined) {
    try {
      const s = await site.provider.stop(inst.id);
      if (!r?.ok)
        outcome = s.wasRunning
          ? s.graceful
            ? "stopped by the site's compute provider"
            : "forced off by the site's compute provider"
          : "was not running";
    } catch (err) {
      detail = `${detail ?? ""}; stopping it at ${siteName(ctx, source)} failed: ${(err as Error).message}`;
    }
  }
  // a command without an answer ends with the step: it must never reach this machine later (after a
  // failback the same instance is the production machine again)
  if (!r?.ok) await ctx.replication.cancelCommand(id);
  if (outcome === "") outcome = "could not be shut down (fenced instead)";
  c.log(
    outcome.startsWith("could not") ? "warn" : "info",
    `source machine: ${outcome}`,
    detail !== undefined ? { detail } : undefined,
  );
  return {
    drainedPoint: null,
    sourceShutdown: { requested: true, outcome, ...(detail !== undefined ? { detail } : {}) },
  };
}

/**
 * Whether the machine's agent is still heard from: a heartbeat within 3 intervals (counted from when
 * this was first asked, so an agent between two heartbeats is given its time).
 */
function agentHeard(ctx: OpsContext, machineId: string): () => Promise<boolean> {
  const since = Date.now();
  return async () => {
    const m = await ctx.db
      .selectFrom("machines")
      .select("last_heartbeat_at")
      .where("id", "=", machineId)
      .executeTakeFirst();
    const last = m?.last_heartbeat_at ? Date.parse(m.last_heartbeat_at) : 0;
    return Date.now() - Math.max(last, since) < 3 * ctx.heartbeatIntervalMs + 1000;
  };
}

export function changePointKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "change-point",
    params: Type.Object({ point: Type.String() }),
    steps: () => [
      {
        name: "select-point",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const req = orThrow(parsePointRequest(c.params.point));
          // replication is stopped: "latest" can only mean the newest point held
          const p = orThrow(
            selectPoint(
              await itemPoints(ctx, it),
              req.kind === "latest" ? { kind: "latest-processed" } : req,
            ),
          );
          return { point: p.id };
        },
      },
      {
        name: "rewrite",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const { point } = c.outputs["select-point"] as { point: string };
          const f = it.failover;
          if (f === null)
            throw new SwitchbackError(
              "ITEM_NOT_FAILED_OVER",
              `item ${it.row.name} has no failover to change`,
            );
          const site = siteRuntime(ctx, f.site);
          await site.provider.stop(f.instanceId);
          const r = await site.provider.changePoint(f.instanceId, {
            datastore: it.row.datastore_id,
            item: it.row.id,
            point,
          });
          c.log(
            "info",
            `disks rewritten to ${point}: ${r.blocksWritten} blocks (${r.bytesWritten} bytes) differed`,
          );
          return r;
        },
      },
      {
        name: "start",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const f = it.failover as FailoverRecord;
          await siteRuntime(ctx, f.site).provider.start(f.instanceId);
          return { instanceId: f.instanceId };
        },
      },
      {
        name: "record",
        run: async (c) => {
          const { point } = c.outputs["select-point"] as { point: string };
          await applyItemEvent(
            ctx.db,
            c.itemId as string,
            { e: "point-changed", point: point as never },
            ctx.now(),
            (cur) => ({
              failover: cur.failover === null ? null : { ...cur.failover, point },
            }),
          );
          return { point };
        },
      },
    ],
  });
}

/**
 * Steps after the point of no return act only for the failover under way: a retried old job (its
 * item has since been committed, failed over again, reprotected) must not rewrite or start anything.
 */
function ownFailover(it: LoadedItem, jobId: string): void {
  const s = it.state;
  if (s.phase === "failing-over") return;
  if (s.phase === "failed-over" && it.failover?.jobId === jobId) return;
  throw new SwitchbackError(
    "FAILOVER_SUPERSEDED",
    `item ${it.row.name} is ${s.phase}${it.failover ? ` (by job ${it.failover.jobId})` : ""}; this failover job no longer applies, start a new operation instead of retrying it`,
  );
}

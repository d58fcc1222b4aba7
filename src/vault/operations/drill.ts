// Test failover (drill) and its cleanup. A drill starts a copy of the machine at the target from a
// point, on the test network, while replication goes on untouched; the copy's agent stays idle
// (SWITCHBACK_DRILL=1), so it never registers as the machine. Cleanup removes every artefact.
import { Type } from "@sinclair/typebox";
import { SwitchbackError } from "../../domain/errors.ts";
import { parsePointRequest, selectPoint } from "../../domain/point-selection.ts";
import { orThrow } from "../../domain/refusal.ts";
import { applyItemEvent, type DrillRecord, type LoadedItem, loadItem } from "../items.ts";
import { defineJobKind } from "../jobs/types.ts";
import {
  instanceIdFor,
  itemPoints,
  machineOf,
  markInstance,
  type OpsContext,
  siteName,
  siteRuntime,
} from "./context.ts";
import { materialize } from "./materialize.ts";

const DRAIN_TIMEOUT_MS = 300_000;

export function testFailoverKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "test-failover",
    params: Type.Object({
      point: Type.String(),
      drain: Type.Boolean(),
      testNetwork: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    }),
    steps: () => [
      {
        name: "drain",
        run: async (c) => {
          if (!c.params.drain) return { point: null };
          const it = await loadItem(ctx.db, c.itemId as string);
          const machine = await machineOf(ctx, it);
          const id = await ctx.replication.command(
            machine.id,
            it.state.source,
            "point-now",
            {},
            c.jobId,
            `cmd-${c.jobId}-drain`,
          );
          const r = await ctx.replication.awaitCommand(id, DRAIN_TIMEOUT_MS, c.signal);
          if (r === null || !r.ok || r.pointId === undefined) {
            await ctx.replication.cancelCommand(id);
            throw new SwitchbackError(
              "DRILL_DRAIN_FAILED",
              `the machine at ${siteName(ctx, it.state.source)} did not deliver a point now (${r === null ? "no answer" : (r.error ?? "no point")}); retry, or drill with --point latest-processed`,
            );
          }
          return { point: r.pointId };
        },
      },
      {
        name: "select-point",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const drained = (c.outputs.drain as { point: string | null }).point;
          const p = orThrow(
            selectPoint(await itemPoints(ctx, it), orThrow(parsePointRequest(drained ?? c.params.point))),
          );
          return { point: p.id };
        },
      },
      {
        name: "record",
        run: async (c) => {
          // recorded before anything is made, so that cleanup finds whatever a failure leaves
          const { point } = c.outputs["select-point"] as { point: string };
          const instanceId = instanceIdFor("drill", c.jobId);
          const cur = await loadItem(ctx.db, c.itemId as string);
          if (cur.drill?.instanceId === instanceId) return cur.drill;
          const drill: DrillRecord = {
            point,
            instanceId,
            site: cur.state.target,
            jobId: c.jobId,
            ...(c.params.testNetwork !== undefined ? { network: c.params.testNetwork } : {}),
          };
          await applyItemEvent(
            ctx.db,
            c.itemId as string,
            { e: "drill-started", point: point as never, atMs: ctx.now().getTime() },
            ctx.now(),
            () => ({ drill }),
          );
          return drill;
        },
      },
      {
        name: "materialize",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const drill = c.outputs.record as DrillRecord;
          ownDrill(it, drill);
          return materialize(
            ctx,
            it,
            {
              siteId: drill.site,
              datastoreId: it.row.datastore_id,
              point: drill.point,
              newId: drill.instanceId,
              purpose: "drill",
              reuse: false,
              testNetwork: drill.network,
            },
            (f) => c.progress(f),
          );
        },
      },
      {
        name: "start",
        run: async (c) => {
          const drill = c.outputs.record as DrillRecord;
          ownDrill(await loadItem(ctx.db, c.itemId as string), drill);
          const info = await siteRuntime(ctx, drill.site).provider.start(drill.instanceId);
          c.log(
            "info",
            `drill copy started at ${siteName(ctx, drill.site)} on ${drill.network !== undefined ? `test network ${drill.network}` : "the test network"} (instance ${drill.instanceId})`,
          );
          return { instanceId: drill.instanceId, pid: info.pid };
        },
      },
    ],
  });
}

export function testFailoverCleanupKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "test-failover-cleanup",
    params: Type.Object({ notes: Type.String({ maxLength: 4000 }) }),
    steps: () => [
      {
        name: "remove-copy",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          if (it.drill === null) return { removed: null };
          await siteRuntime(ctx, it.drill.site).provider.delete(it.drill.instanceId);
          await markInstance(ctx, it.drill.instanceId, { deleted: true });
          c.log(
            "info",
            `drill copy ${it.drill.instanceId} at ${siteName(ctx, it.drill.site)} stopped and deleted with its disks`,
          );
          return { removed: it.drill.instanceId };
        },
      },
      {
        name: "record",
        run: async (c) => {
          await applyItemEvent(ctx.db, c.itemId as string, { e: "drill-cleaned" }, ctx.now(), () => ({
            drill: null,
          }));
          if (c.params.notes.length > 0) c.log("info", `notes: ${c.params.notes}`, { notes: c.params.notes });
          return { notes: c.params.notes };
        },
      },
    ],
  });
}

/** A drill step acts only while its drill is the item's (not after a cleanup, when an old job is retried). */
function ownDrill(it: LoadedItem, drill: DrillRecord): void {
  if (it.drill?.instanceId === drill.instanceId) return;
  throw new SwitchbackError(
    "DRILL_NOT_ACTIVE",
    `the drill this job started on item ${it.row.name} was cleaned up; start a new test failover instead of retrying this one`,
  );
}

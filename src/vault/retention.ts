// Retention by each item's policy: every few minutes, for each replicating item, prune its points at
// its target datastore (keep the window, the app-consistent points at their frequency, the newest
// always) and collect the garbage, in the process server's exclusive section. Items that are failing
// over, failed over or reprotecting are left alone: their points are what a failover or a change of
// point may still need.
import type { Logger } from "pino";
import { collectGarbage } from "../datastore/gc.ts";
import { prune } from "../datastore/prune.ts";
import type { ItemName } from "../domain/ids.ts";
import { parseItemRow } from "./items.ts";
import type { OpsContext } from "./operations/context.ts";

export interface RetentionRun {
  items: number;
  pruned: number;
  bytesFreed: number;
}

export async function applyRetention(ctx: OpsContext, now: Date): Promise<RetentionRun> {
  const rows = await ctx.db.selectFrom("items").selectAll().execute();
  const policies = new Map((await ctx.db.selectFrom("policies").selectAll().execute()).map((p) => [p.id, p]));
  const run: RetentionRun = { items: 0, pruned: 0, bytesFreed: 0 };
  // by datastore: one exclusive section and one GC per datastore
  const byDatastore = new Map<string, { site: string; items: { id: string; policyId: string }[] }>();
  for (const row of rows) {
    const it = parseItemRow(row);
    if (it.state.phase !== "protected" && it.state.phase !== "initial-replication") continue;
    const e = byDatastore.get(row.datastore_id) ?? { site: it.state.target, items: [] };
    e.items.push({ id: row.id, policyId: row.policy_id });
    byDatastore.set(row.datastore_id, e);
  }
  for (const [datastoreId, e] of byDatastore) {
    const site = ctx.sites.get(e.site);
    const d = site?.datastores.get(datastoreId);
    if (d === undefined) continue;
    await d.server.exclusive("retention", async () => {
      let pruned = 0;
      const held = new Set<string>(await d.ds.items());
      for (const item of e.items) {
        const p = policies.get(item.policyId);
        if (p === undefined || !held.has(item.id)) continue;
        const r = await prune(
          d.ds,
          item.id as ItemName,
          {
            keepWithinMs: p.retention_s * 1000,
            ...(p.app_consistent_every_s > 0 ? { appEveryMs: p.app_consistent_every_s * 1000 } : {}),
            crashEveryMs: p.crash_consistent_every_s * 1000,
          },
          { now },
        );
        pruned += r.deleted.length;
        run.items++;
      }
      if (pruned > 0) run.bytesFreed += (await collectGarbage(d.ds)).bytesFreed;
      run.pruned += pruned;
    });
  }
  return run;
}

/** Runs applyRetention every `everyMs`; returns the stop function. */
export function startRetention(ctx: OpsContext, everyMs: number, log: Logger): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    applyRetention(ctx, ctx.now())
      .then((r) => {
        if (r.pruned > 0) log.info(r, "retention pruned recovery points");
      })
      .catch((err: unknown) => log.error({ err }, "retention failed"))
      .finally(() => {
        running = false;
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

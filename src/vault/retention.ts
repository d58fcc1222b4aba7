// Retention by each item's policy: every few minutes, for each replicating item, prune its points at
// its target datastore (keep the window, the app-consistent points at their frequency, the newest
// always) and collect the garbage, in the process server's exclusive section: the site's appliance
// does it (in-process or remote). Items that are failing over, failed over or reprotecting, items
// with a drill or a job under way are left alone: their points are what those may still need.
import type { Logger } from "pino";
import { parseItemRow } from "./items.ts";
import { isUnreachable, type OpsContext } from "./operations/context.ts";

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
  // an item with a job under way (a drill or failover choosing or using a point) or a drill copy
  // running is left for the next pass: its points may be what that job is about to read
  const busy = new Set(
    (await ctx.db.selectFrom("jobs").select("item_id").where("finished_at", "is", null).execute()).map(
      (j) => j.item_id,
    ),
  );
  for (const row of rows) {
    const it = parseItemRow(row);
    if (it.state.phase !== "protected" && it.state.phase !== "initial-replication") continue;
    if (it.drill !== null || busy.has(row.id)) continue;
    const e = byDatastore.get(row.datastore_id) ?? { site: it.state.target, items: [] };
    e.items.push({ id: row.id, policyId: row.policy_id });
    byDatastore.set(row.datastore_id, e);
  }
  for (const [datastoreId, e] of byDatastore) {
    const site = ctx.sites.get(e.site);
    if (site === undefined || !site.serves(datastoreId)) continue;
    const requests = e.items.flatMap((item) => {
      const p = policies.get(item.policyId);
      if (p === undefined) return [];
      const policy = {
        keepWithinMs: p.retention_s * 1000,
        ...(p.app_consistent_every_s > 0 ? { appEveryMs: p.app_consistent_every_s * 1000 } : {}),
        crashEveryMs: p.crash_consistent_every_s * 1000,
      };
      return [{ item: item.id, policy }];
    });
    // the site prunes and collects with the datastore to itself (the process server's exclusive section)
    let r: Awaited<ReturnType<typeof site.retention>>;
    try {
      r = await site.retention(datastoreId, requests, now);
    } catch (err) {
      // one site's appliance out of reach must not keep the others' points from being pruned
      if (isUnreachable(err)) {
        // an appliance out of reach raises its own alert (appliance lost); retention waits for it
        ctx.log.warn(
          { site: site.name, datastore: datastoreId },
          "retention skipped: the appliance does not answer",
        );
      } else if ((err as { code?: string }).code === "DATASTORE_LOCKED") {
        // another process holds the datastore (a restore, a check, a stale lock being cleared): the
        // next round prunes what this one could not
        ctx.log.info(
          { site: site.name, datastore: datastoreId, detail: (err as Error).message },
          "retention deferred: the datastore is busy",
        );
      } else {
        ctx.log.error({ err, site: site.name, datastore: datastoreId }, "retention at a datastore failed");
      }
      continue;
    }
    run.items += r.items;
    run.pruned += r.pruned;
    run.bytesFreed += r.bytesFreed;
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

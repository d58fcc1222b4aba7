// Commit: makes a failover final. After a failover away from home the item's recovery points at the
// target are deleted (the machine runs there now; the home disks stay for reprotect). After a failback
// the machine at the site it left is removed, its disks kept as that site's seed for the next
// reprotect, and the reverse direction's points are deleted. Disable stops protection for good: the
// item is forgotten (its jobs stay as history), so the machine can be protected again.
import { Type } from "@sinclair/typebox";
import { applyItemEvent, loadItem } from "../items.ts";
import { defineJobKind } from "../jobs/types.ts";
import { instancesAt, markInstance, type OpsContext, siteName, siteRuntime } from "./context.ts";

export function commitKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "commit",
    params: Type.Object({}),
    steps: () => [
      {
        name: "remove-machine-left",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          if (it.state.phase !== "failed-over" || it.state.target !== it.state.home) return { removed: [] };
          // failback: the copy at the site it left (the recovery site) goes, its disks stay as seed
          const site = siteRuntime(ctx, it.state.source);
          const removed: string[] = [];
          for (const inst of await instancesAt(ctx, it.row.machine_id, it.state.source, ["production"])) {
            await site.provider.delete(inst.id, { keepDisks: true });
            await markInstance(ctx, inst.id, { purpose: "seed" });
            removed.push(inst.id);
          }
          c.log(
            "info",
            `removed the machine at ${siteName(ctx, it.state.source)}; its disks are kept for the next reprotect`,
            {
              instances: removed,
            },
          );
          return { removed };
        },
      },
      {
        name: "delete-points",
        irreversible: true,
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          if (it.state.phase === "failover-committed") return { deleted: 0 };
          const deleted = await siteRuntime(ctx, it.state.target).deletePoints(
            it.row.datastore_id,
            it.row.id,
          );
          c.log("info", `deleted ${deleted.length} recovery points at ${siteName(ctx, it.state.target)}`);
          return { deleted: deleted.length };
        },
      },
      {
        name: "record",
        run: async (c) => {
          const it = await applyItemEvent(ctx.db, c.itemId as string, { e: "committed" }, ctx.now(), () => ({
            lastPoint: null,
            seedPointId: null,
          }));
          return { phase: it.state.phase };
        },
      },
    ],
  });
}

export function disableKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "disable",
    params: Type.Object({}),
    steps: () => [
      {
        name: "stop-replication",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const before = { target: it.state.target, datastore: it.row.datastore_id };
          if (it.state.phase !== "disabled") {
            await applyItemEvent(ctx.db, it.row.id, { e: "disabled" }, ctx.now());
            await ctx.replication.refresh();
          }
          return before;
        },
      },
      {
        name: "delete-points",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          const { target, datastore } = c.outputs["stop-replication"] as {
            target: string;
            datastore: string;
          };
          const site = ctx.sites.get(target);
          const deleted = site === undefined ? [] : await site.deletePoints(datastore, it.row.id);
          // kept disks of removed machines at the target were only there for this item's reprotect
          for (const inst of await instancesAt(ctx, it.row.machine_id, target, ["seed"])) {
            await site?.provider.delete(inst.id);
            await markInstance(ctx, inst.id, { deleted: true });
          }
          c.log(
            "info",
            `replication stopped; deleted ${deleted.length} recovery points at ${siteName(ctx, target)}`,
          );
          return { deleted: deleted.length };
        },
      },
      {
        name: "forget",
        run: async (c) => {
          // the item goes; its jobs stay as history, the machine stays in the inventory
          const r = await ctx.db
            .deleteFrom("items")
            .where("id", "=", c.itemId as string)
            .executeTakeFirst();
          await ctx.replication.refresh();
          return { forgotten: Number(r.numDeletedRows) === 1 };
        },
      },
    ],
  });
}

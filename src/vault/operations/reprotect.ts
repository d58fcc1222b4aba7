// Reprotect: after a committed failover, replicate the machine from where it runs now back to the
// site it came from. Original location: the master target there first seeds that site's datastore
// with a point of the disks the machine left (read locally, nothing crosses the link), so the agent's
// first point is a resync that ships only the blocks that differ. Alternate location: a full copy
// into the chosen datastore; failback then makes new disks from it.
import { Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import { checkReprotect, type ReprotectFacts } from "../../domain/reprotect.ts";
import type { VaultDatabase } from "../db/schema.ts";
import { ensureReversePolicy } from "../inventory/policies.ts";
import { applyItemEvent, type LoadedItem, loadItem } from "../items.ts";
import { defineJobKind } from "../jobs/types.ts";
import {
  chooseAppliance,
  chooseDatastore,
  disksLeftAt,
  instancesAt,
  isUnreachable,
  machineOf,
  type OpsContext,
  siteName,
  siteRuntime,
  sleep,
} from "./context.ts";

/** How long a freshly booted machine's agent may take to report before reprotect refuses. */
const AGENT_BOOT_GRACE_MS = 60_000;

export const ReprotectParams = Type.Object({
  location: Type.Union([Type.Literal("original"), Type.Literal("alternate")]),
  processServer: Type.Optional(Type.String()),
  masterTarget: Type.Optional(Type.String()),
  datastore: Type.Optional(Type.String()),
});
export type ReprotectRequest = {
  location: "original" | "alternate";
  processServer?: string | undefined;
  masterTarget?: string | undefined;
  datastore?: string | undefined;
};

interface Chosen {
  processServerId: string;
  masterTargetId: string;
  datastoreId: string;
}

/** The appliances and datastore at the site replication returns to: given, or the site's own. */
async function choose(
  db: Kysely<VaultDatabase>,
  returnSite: string,
  returnSiteName: string,
  r: ReprotectRequest,
): Promise<{
  chosen: Chosen;
  names: { ps: string; mt: string; ds: string };
  sites: { ps: string; mt: string; ds: string };
}> {
  const appliance = async (ref: string | undefined, role: string) => {
    const row = await chooseAppliance(db, ref, returnSite, role);
    if (row === undefined) {
      throw new SwitchbackError(
        "REPROTECT_APPLIANCE_NOT_FOUND",
        ref !== undefined
          ? `appliance ${JSON.stringify(ref)} does not exist; see 'switchback appliances list'`
          : `site ${returnSiteName} has no appliance with the ${role} role; add one or name it`,
      );
    }
    return row;
  };
  const ps = await appliance(r.processServer, "process-server");
  const mt = await appliance(r.masterTarget, "master-target");
  const ds = await chooseDatastore(db, r.datastore, returnSite);
  if (ds === undefined) {
    throw new SwitchbackError(
      "REPROTECT_DATASTORE_NOT_FOUND",
      r.datastore !== undefined
        ? `datastore ${JSON.stringify(r.datastore)} does not exist; see 'switchback datastores list'`
        : `site ${returnSiteName} has no datastore; create one with 'switchback datastores create'`,
    );
  }
  return {
    chosen: { processServerId: ps.id, masterTargetId: mt.id, datastoreId: ds.id },
    names: { ps: ps.name, mt: mt.name, ds: ds.name },
    sites: { ps: ps.site_id, mt: mt.site_id, ds: ds.site_id },
  };
}

/** Everything reprotect checks, gathered from the inventory and the site runtimes. */
export async function reprotectFacts(
  ctx: OpsContext,
  it: LoadedItem,
  r: ReprotectRequest,
): Promise<{
  facts: ReprotectFacts;
  chosen: Chosen;
  returnSiteId: string;
  runningSiteId: string;
  /** the machine's instance runs but its agent has not reported yet (it is booting) */
  agentBooting: boolean;
}> {
  // before reprotect starts the machine runs at `target` and returns to `source`; resuming, swapped
  const resuming = it.state.phase === "reprotecting";
  const runningSite = resuming ? it.state.source : it.state.target;
  const returnSite = resuming ? it.state.target : it.state.source;
  const machine = await machineOf(ctx, it);
  // the checks compare sites and name them in their sentences: by name throughout
  const nm = (id: string) => siteName(ctx, id);
  const { chosen, names, sites } = await choose(ctx.db, returnSite, siteName(ctx, returnSite), r);
  const alive = (at: string | null) =>
    at !== null && ctx.now().getTime() - Date.parse(at) < 3 * ctx.heartbeatIntervalMs;
  const apps = await ctx.db
    .selectFrom("appliances")
    .selectAll()
    .where("id", "in", [chosen.processServerId, chosen.masterTargetId])
    .execute();
  const app = (id: string) => apps.find((a) => a.id === id);
  const runtime = ctx.sites.get(returnSite);
  // the site's appliance answers now (a remote one may be lost although its last heartbeat is recent)
  const answers = runtime !== undefined && (await runtime.ping());
  const servesDatastore = answers && runtime.serves(chosen.datastoreId);
  const drills = await ctx.db
    .selectFrom("instances")
    .select("id")
    .where("site_id", "=", returnSite)
    .where("purpose", "=", "drill")
    .where("deleted_at", "is", null)
    .execute();
  const running = (await instancesAt(ctx, machine.id, runningSite, ["production"]))[0];
  const runningInfo =
    running === undefined
      ? null
      : await ctx.sites
          .get(runningSite)
          ?.provider.status(running.id)
          .catch((err: unknown) => {
            if (isUnreachable(err)) return null;
            throw err;
          });
  const reporting = alive(machine.last_heartbeat_at) && machine.site_id !== null;
  const agentBooting =
    !reporting &&
    runningInfo?.state === "running" &&
    runningInfo.startedAt !== null &&
    ctx.now().getTime() - Date.parse(runningInfo.startedAt) < AGENT_BOOT_GRACE_MS;
  const disks = JSON.parse(machine.disks) as { uuid: string; sizeBytes: number }[];
  const osFamily = (os: string | null) => (os === null ? null : (os.split(" ")[0] ?? null));
  const facts: ReprotectFacts = {
    item: it.row.name,
    runningSite: nm(runningSite),
    returnSite: nm(returnSite),
    location: r.location,
    machine: {
      known: true,
      reportingFrom: reporting
        ? nm(machine.site_id as string)
        : agentBooting
          ? nm(runningSite) // its instance runs and started moments ago: the check step waits for it
          : null,
      running: running === undefined ? alive(machine.last_heartbeat_at) : runningInfo?.state === "running",
      os: osFamily(machine.os),
      diskUuids: disks.map((d) => d.uuid),
      sizeBytes: disks.reduce((s, d) => s + d.sizeBytes, 0),
    },
    processServer: {
      name: names.ps,
      site: nm(sites.ps),
      reachable: answers && alive(app(chosen.processServerId)?.last_heartbeat_at ?? null),
    },
    masterTarget: {
      name: names.mt,
      site: nm(sites.mt),
      reachable: answers && alive(app(chosen.masterTargetId)?.last_heartbeat_at ?? null),
      // the in-process master target serves Linux machines and has no disks of its own
      os: "linux",
      diskUuids: [],
      drillArtefacts: drills.map((d) => d.id),
    },
    datastore: {
      name: names.ds,
      site: nm(sites.ds),
      reachable: servesDatastore,
      freeBytes: servesDatastore ? await runtime.freeBytes(chosen.datastoreId) : null,
    },
    // when the appliance cannot say, the disks are not known to be gone: its refusal says why
    disksAtReturnSite: answers ? (await disksLeftAt(ctx, machine.id, returnSite)) !== null : true,
    // replication groups (multi-machine consistency) are not built yet: every item is its own group
    group: [],
  };
  return { facts, chosen, returnSiteId: returnSite, runningSiteId: runningSite, agentBooting };
}

export function reprotectKind(ctx: OpsContext) {
  return defineJobKind({
    kind: "reprotect",
    params: ReprotectParams,
    steps: () => [
      {
        name: "check",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          let r = await reprotectFacts(ctx, it, c.params);
          // a machine booted moments ago (by the failover) may not have reported yet: give it time
          const deadline = Date.now() + AGENT_BOOT_GRACE_MS;
          while (r.agentBooting && Date.now() < deadline) {
            await sleep(250, c.signal);
            r = await reprotectFacts(ctx, it, c.params);
          }
          const { facts, chosen, returnSiteId, runningSiteId } = r;
          if (r.agentBooting) facts.machine.reportingFrom = null;
          const refusals = checkReprotect(facts);
          if (refusals.length > 0) {
            throw new SwitchbackError(refusals[0]!.code, refusals.map((x) => x.message).join("; "));
          }
          return { chosen, returnSite: returnSiteId, runningSite: runningSiteId };
        },
      },
      {
        name: "seed",
        run: async (c) => {
          const { chosen, returnSite } = c.outputs.check as { chosen: Chosen; returnSite: string };
          if (c.params.location === "alternate") return { seed: null };
          const it = await loadItem(ctx.db, c.itemId as string);
          if (it.row.seed_point_id !== null) return { seed: it.row.seed_point_id };
          // before the direction is reversed the returning site holds no point of the item (commit
          // deleted them): one found now is this step's own seed, committed just before a kill -9
          const held = await siteRuntime(ctx, returnSite).points(chosen.datastoreId, it.row.id);
          const earlier = held[held.length - 1];
          if (earlier !== undefined) {
            await applyItemEvent(ctx.db, it.row.id, null, ctx.now(), () => ({ seedPointId: earlier.id }));
            c.log("info", `adopted the seed point ${earlier.id} taken before a restart`);
            return { seed: earlier.id };
          }
          const machine = await machineOf(ctx, it);
          const left = await disksLeftAt(ctx, machine.id, returnSite);
          if (left === null) {
            throw new SwitchbackError(
              "REPROTECT_ORIGINAL_DISKS_GONE",
              `the machine's disks at ${siteName(ctx, returnSite)} are gone; reprotect to an alternate location (--location alternate)`,
            );
          }
          const uuids = (JSON.parse(machine.disks) as { uuid: string }[]).map((d) => d.uuid);
          const disks = left.disks.map((p, i) => ({ path: p, uuid: uuids[i] as string }));
          const started = Date.now();
          const r = await siteRuntime(ctx, returnSite).seed(chosen.datastoreId, it.row.id, disks);
          c.log(
            "info",
            `seeded ${siteName(ctx, returnSite)} from the disks there: point ${r.pointId}, ${r.bytesRead} bytes read locally in ${Date.now() - started} ms`,
          );
          await applyItemEvent(ctx.db, it.row.id, null, ctx.now(), () => ({ seedPointId: r.pointId }));
          return { seed: r.pointId, bytesRead: r.bytesRead };
        },
      },
      {
        name: "reverse",
        run: async (c) => {
          const { chosen } = c.outputs.check as { chosen: Chosen };
          const cur = await loadItem(ctx.db, c.itemId as string);
          if (cur.state.phase === "reprotecting")
            return { direction: `${siteName(ctx, cur.state.source)} → ${siteName(ctx, cur.state.target)}` };
          const policy = await ensureReversePolicy(ctx.db, cur.row.policy_id, ctx.now());
          const it = await applyItemEvent(ctx.db, cur.row.id, { e: "reprotect-started" }, ctx.now(), () => ({
            policyId: policy.id,
            processServerId: chosen.processServerId,
            masterTargetId: chosen.masterTargetId,
            datastoreId: chosen.datastoreId,
            failover: null,
          }));
          c.log(
            "info",
            `direction is now ${siteName(ctx, it.state.source)} → ${siteName(ctx, it.state.target)}, policy ${policy.name}`,
          );
          return {
            direction: `${siteName(ctx, it.state.source)} → ${siteName(ctx, it.state.target)}`,
            policy: policy.name,
          };
        },
      },
      {
        name: "replicate",
        run: async (c) => {
          const it = await loadItem(ctx.db, c.itemId as string);
          if (it.state.phase === "reprotecting") {
            // the first point of the new direction compares every block with what the target holds
            await applyItemEvent(ctx.db, it.row.id, { e: "reprotect-completed" }, ctx.now(), () => ({
              resyncRequired: true,
            }));
          }
          await ctx.replication.refresh();
          return { generation: it.state.generation, at: ctx.now().toISOString() };
        },
      },
      {
        name: "initial-replication",
        run: async (c) => {
          // done when the first point of the new direction lands: that point is the resync (its parent
          // is the seed) or, without a seed, the full copy; what it shipped is in its own header's
          // stats (the agent's last report may already be a later point)
          const since = (c.outputs.replicate as { at?: string } | undefined)?.at ?? "";
          for (;;) {
            const it = await loadItem(ctx.db, c.itemId as string);
            if (it.state.phase === "protected") {
              const seed = it.row.seed_point_id;
              const points = await siteRuntime(ctx, it.state.target).points(it.row.datastore_id, it.row.id);
              const first = points.find((p) =>
                seed !== null ? p.parent === seed : p.parent === null && p.createdAt >= since,
              );
              const point = first ?? points[points.length - 1];
              const out = {
                point: point?.id ?? it.row.last_point_id,
                mode:
                  point === undefined
                    ? null
                    : point.parent === null
                      ? "full"
                      : point.parent === seed
                        ? "resync"
                        : "incremental",
                bytesSent: point?.stats.bytesSent ?? null,
                changedBlocks: point?.stats.changedBlocks ?? null,
                // when the point began and how long it took: the rest of the step is the agent
                // learning its new target and the vault learning of the point
                createdAt: point?.createdAt ?? null,
                bytesRead: point?.stats.bytesRead ?? null,
                durationMs: point?.stats.durationMs ?? null,
              };
              c.log(
                "info",
                `first point ${out.point} of ${siteName(ctx, it.state.source)} → ${siteName(ctx, it.state.target)} landed (${out.mode}: ${out.bytesSent} bytes for ${out.changedBlocks} changed blocks)`,
                out,
              );
              return out;
            }
            if (it.state.phase !== "initial-replication") {
              throw new SwitchbackError(
                "REPROTECT_INTERRUPTED",
                `the item left initial replication (now ${it.state.phase})`,
              );
            }
            const m = await ctx.db
              .selectFrom("machines")
              .select("replication")
              .where("id", "=", it.row.machine_id)
              .executeTakeFirst();
            if (m?.replication) {
              const p = JSON.parse(m.replication) as { bytesDone: number; bytesTotal: number };
              if (p.bytesTotal > 0) c.progress(Math.min(0.99, p.bytesDone / p.bytesTotal));
            }
            await sleep(500, c.signal);
          }
        },
      },
    ],
  });
}

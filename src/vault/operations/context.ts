// What every operation's steps use: the database, the site runtimes (one per site with an appliance,
// in-process or remote, behind one interface), the replication service, and the facts the lifecycle
// core decides on (gathered here, decided in src/domain).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { InstanceInfo } from "../../compute/provider.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import type { MachinePresence, OperationFacts } from "../../domain/lifecycle.ts";
import type { PointSummary } from "../../domain/retention.ts";
import type { ApplianceRow, DatastoreRow, InstanceRow, MachineRow, VaultDatabase } from "../db/schema.ts";
import type { LoadedItem } from "../items.ts";
import type { ReplicationService } from "../replication.ts";
import type { SiteRuntime } from "../site.ts";

export interface OpsContext {
  db: Kysely<VaultDatabase>;
  sites: Map<string, SiteRuntime>;
  replication: ReplicationService;
  now(): Date;
  log: Logger;
  heartbeatIntervalMs: number;
}

/** A site's name for people (log lines, refusals); its id when the vault has no runtime for it. */
export function siteName(ctx: OpsContext, siteId: string): string {
  return ctx.sites.get(siteId)?.name ?? siteId;
}

export function siteRuntime(ctx: OpsContext, siteId: string): SiteRuntime {
  const s = ctx.sites.get(siteId);
  if (s === undefined) {
    throw new SwitchbackError(
      "SITE_NOT_SERVED",
      `site ${siteName(ctx, siteId)} has no appliance that this vault reaches (none in-process, none registered); start its appliance ('switchback appliance') or check the site`,
    );
  }
  return s;
}

/** True for the error of an appliance the vault cannot reach now (a remote site's). */
export function isUnreachable(err: unknown): boolean {
  return err instanceof SwitchbackError && err.code.endsWith("_UNREACHABLE");
}

/** The item's recovery points at its target datastore, without the reprotect seed, oldest first. */
export async function itemPoints(ctx: OpsContext, it: LoadedItem): Promise<PointSummary[]> {
  const site = ctx.sites.get(it.state.target);
  if (site === undefined || !site.serves(it.row.datastore_id)) return [];
  const headers = await site.points(it.row.datastore_id, it.row.id);
  return headers
    .filter((h) => h.id !== it.row.seed_point_id)
    .map((h) => ({ id: h.id, createdAtMs: Date.parse(h.createdAt), consistency: h.consistency }));
}

export async function machineOf(ctx: OpsContext, it: LoadedItem): Promise<MachineRow> {
  const m = await ctx.db
    .selectFrom("machines")
    .selectAll()
    .where("id", "=", it.row.machine_id)
    .executeTakeFirst();
  if (m === undefined) {
    throw new SwitchbackError(
      "MACHINE_NOT_FOUND",
      `the machine of item ${it.row.name} is no longer in the inventory; start its agent so it registers`,
    );
  }
  return m;
}

/** The machine's live instances at a site (newest first), of the given purposes. */
export async function instancesAt(
  ctx: OpsContext,
  machineId: string,
  siteId: string,
  purposes: readonly string[],
): Promise<InstanceRow[]> {
  return ctx.db
    .selectFrom("instances")
    .selectAll()
    .where("machine_id", "=", machineId)
    .where("site_id", "=", siteId)
    .where("deleted_at", "is", null)
    .where("purpose", "in", [...purposes])
    .orderBy("created_at", "desc")
    .execute();
}

export interface InstanceRecordState {
  /** disk image paths in order (kept disks of a removed machine: the seed) */
  disks: string[];
}

export async function recordInstance(
  ctx: OpsContext,
  row: Omit<InstanceRow, "created_at" | "deleted_at" | "provider_state"> & { disks: string[] },
): Promise<void> {
  const existing = await ctx.db
    .selectFrom("instances")
    .select("id")
    .where("id", "=", row.id)
    .executeTakeFirst();
  const state = JSON.stringify({ disks: row.disks } satisfies InstanceRecordState);
  if (existing !== undefined) {
    await ctx.db
      .updateTable("instances")
      .set({ purpose: row.purpose, provider_state: state, deleted_at: null })
      .where("id", "=", row.id)
      .execute();
    return;
  }
  await ctx.db
    .insertInto("instances")
    .values({
      id: row.id,
      item_id: row.item_id,
      machine_id: row.machine_id,
      site_id: row.site_id,
      purpose: row.purpose,
      provider: row.provider,
      provider_state: state,
      created_at: ctx.now().toISOString(),
      deleted_at: null,
    })
    .execute();
}

export function instanceDisks(row: InstanceRow): string[] {
  try {
    return (JSON.parse(row.provider_state) as InstanceRecordState).disks ?? [];
  } catch {
    return [];
  }
}

export async function markInstance(
  ctx: OpsContext,
  id: string,
  set: { purpose?: string; deleted?: boolean; disks?: string[] },
): Promise<void> {
  await ctx.db
    .updateTable("instances")
    .set({
      ...(set.purpose !== undefined ? { purpose: set.purpose } : {}),
      ...(set.deleted ? { deleted_at: ctx.now().toISOString() } : {}),
      ...(set.disks !== undefined ? { provider_state: JSON.stringify({ disks: set.disks }) } : {}),
    })
    .where("id", "=", id)
    .execute();
}

/** A stable instance id for a job's step, so a resumed step finds what it made before. */
export function instanceIdFor(prefix: string, jobId: string): string {
  return `${prefix}-${jobId.replace(/^job-/, "")}`;
}

export function newInstanceId(prefix = "inst"): string {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

/** How the copy of the machine at a site is: by its instance (ours), else by its agent's heartbeats. */
export async function presenceAt(
  ctx: OpsContext,
  machine: MachineRow,
  siteId: string,
): Promise<MachinePresence> {
  const site = ctx.sites.get(siteId);
  const rows = await instancesAt(ctx, machine.id, siteId, ["production"]);
  if (rows.length > 0) {
    if (site === undefined) return "unreachable";
    try {
      const info = await site.provider.status(rows[0]!.id);
      return info === null ? "gone" : info.state;
    } catch (err) {
      if (isUnreachable(err)) return "unreachable";
      throw err;
    }
  }
  // a machine the vault does not run: its copy at this site speaks with a token registered there
  const tokens = await ctx.db
    .selectFrom("tokens")
    .select("last_used_at")
    .where("machine_id", "=", machine.id)
    .where("role", "=", "agent")
    .where("site_id", "=", siteId)
    // copies a provider runs are judged by their instance (above): a stopped one's last heartbeat
    // is only moments old
    .where("instance_id", "is", null)
    .execute();
  const alive = (at: string | null) =>
    at !== null && ctx.now().getTime() - Date.parse(at) < 3 * ctx.heartbeatIntervalMs;
  // a copy that speaks from here runs here, whatever the machine's row says (an old copy back after
  // a failover); a silent one tells nothing more than the row does
  if (tokens.some((t) => alive(t.last_used_at))) return "running";
  if (machine.site_id === siteId) {
    return alive(machine.last_heartbeat_at) ? "running" : "unreachable";
  }
  return "gone";
}

export async function recoveredStatus(ctx: OpsContext, it: LoadedItem): Promise<InstanceInfo | null> {
  if (it.failover === null) return null;
  const site = ctx.sites.get(it.failover.site);
  return site === undefined ? null : site.provider.status(it.failover.instanceId);
}

/**
 * The disks the machine left at a site: a stopped production instance, or kept disks (seed). The site
 * says whether they still exist; throws *_UNREACHABLE when its appliance does not answer.
 */
export async function disksLeftAt(
  ctx: OpsContext,
  machineId: string,
  siteId: string,
): Promise<{ instance: InstanceRow; disks: string[] } | null> {
  const rows = await instancesAt(ctx, machineId, siteId, ["production", "seed"]);
  const site = ctx.sites.get(siteId);
  for (const r of rows) {
    const disks = instanceDisks(r);
    if (disks.length === 0) continue;
    // the record is not enough: the images must still be there (a lost site, a deleted folder)
    const present = site === undefined ? disks.every((d) => existsSync(d)) : await site.disksPresent(disks);
    if (present) return { instance: r, disks };
  }
  return null;
}

/** disksLeftAt as a fact: when the site's appliance cannot say, they are not known to be gone. */
async function disksKnownAt(ctx: OpsContext, machineId: string, siteId: string): Promise<boolean> {
  try {
    return (await disksLeftAt(ctx, machineId, siteId)) !== null;
  } catch (err) {
    if (isUnreachable(err)) return true; // reprotect's checks name the unreachable appliance
    throw err;
  }
}

export async function gatherFacts(ctx: OpsContext, it: LoadedItem): Promise<OperationFacts> {
  const machine = await machineOf(ctx, it);
  const s = it.state;
  // in parallel: a lost site costs one wait, not one per question
  const [points, sourceMachine, disksAtReturnSite] = await Promise.all([
    itemPoints(ctx, it),
    presenceAt(ctx, machine, s.source),
    disksKnownAt(ctx, machine.id, s.source),
  ]);
  let recovered: OperationFacts["recoveredMachine"] = "none";
  if (s.phase === "failing-over" || s.phase === "failed-over" || s.phase === "failover-committed") {
    try {
      const info = await recoveredStatus(ctx, it);
      recovered = info === null ? "gone" : info.state;
    } catch (err) {
      if (!isUnreachable(err)) throw err;
      recovered = "unreachable";
    }
  }
  return {
    pointCount: points.length,
    sourceMachine,
    recoveredMachine: recovered,
    disksAtReturnSite,
  };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

/** The appliance a request names (id or name), or else the first of `siteId`'s with `role`. */
export async function chooseAppliance(
  db: Kysely<VaultDatabase>,
  ref: string | undefined,
  siteId: string,
  role: string,
): Promise<ApplianceRow | undefined> {
  const q = db.selectFrom("appliances").selectAll();
  if (ref !== undefined)
    return q.where((eb) => eb.or([eb("id", "=", ref), eb("name", "=", ref)])).executeTakeFirst();
  return (await q.where("site_id", "=", siteId).orderBy("created_at").execute()).find((a) =>
    a.roles.includes(role),
  );
}

/** The datastore a request names (id or name), or else `siteId`'s first. */
export async function chooseDatastore(
  db: Kysely<VaultDatabase>,
  ref: string | undefined,
  siteId: string,
): Promise<DatastoreRow | undefined> {
  const q = db.selectFrom("datastores").selectAll();
  if (ref !== undefined)
    return q.where((eb) => eb.or([eb("id", "=", ref), eb("name", "=", ref)])).executeTakeFirst();
  return q.where("site_id", "=", siteId).orderBy("created_at").executeTakeFirst();
}

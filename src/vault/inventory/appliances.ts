// Appliances: each site's data-plane services. "in-process" ones run inside the vault (embedded
// default, created by bootstrap); "remote" ones are separate `switchback appliance` processes that
// the vault learns about by create and that report with heartbeats. Liveness comes from heartbeats.
import { Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import { liveness } from "../../domain/health.ts";
import { readJson } from "../db/json.ts";
import type { ApplianceRow, VaultDatabase } from "../db/schema.ts";
import {
  type Appliance,
  type ApplianceRole,
  ApplianceRoleSchema,
  type CreateAppliance,
} from "../http/schemas.ts";
import { newId } from "../ids.ts";
import { checkName, dateOrNull, findByRef, insertUnique, notFound } from "./common.ts";
import { getSiteRow, siteNames } from "./sites.ts";

/** What liveness needs: the vault's now and how often things heartbeat. */
export interface HealthClock {
  now: Date;
  heartbeatIntervalMs: number;
}

const RolesSchema = Type.Array(ApplianceRoleSchema);

export function toAppliance(r: ApplianceRow, siteName: string, clock: HealthClock): Appliance {
  return {
    id: r.id,
    name: r.name,
    siteId: r.site_id,
    site: siteName,
    roles: readJson(RolesSchema, r.roles, { table: "appliances", column: "roles", id: r.id }),
    url: r.url,
    kind: r.kind === "remote" ? "remote" : "in-process",
    lastHeartbeatAt: r.last_heartbeat_at,
    createdAt: r.created_at,
    health: {
      liveness: liveness(clock.now, dateOrNull(r.last_heartbeat_at), clock.heartbeatIntervalMs).state,
    },
  };
}

export async function listAppliances(
  db: Kysely<VaultDatabase>,
  clock: HealthClock,
  filter: { site?: string } = {},
): Promise<Appliance[]> {
  let q = db.selectFrom("appliances").selectAll();
  if (filter.site !== undefined) q = q.where("site_id", "=", (await getSiteRow(db, filter.site)).id);
  const rows = await q.orderBy("created_at").orderBy("name").execute();
  const names = await siteNames(db);
  return rows.map((r) => toAppliance(r, names.get(r.site_id) ?? r.site_id, clock));
}

export async function getApplianceRow(db: Kysely<VaultDatabase>, ref: string): Promise<ApplianceRow> {
  const r = await findByRef(db, "appliances", ref);
  if (r === undefined) throw notFound("appliance", ref, "switchback appliances list");
  return r;
}

export async function getAppliance(
  db: Kysely<VaultDatabase>,
  ref: string,
  clock: HealthClock,
): Promise<Appliance> {
  const r = await getApplianceRow(db, ref);
  const site = await getSiteRow(db, r.site_id);
  return toAppliance(r, site.name, clock);
}

async function insertAppliance(
  db: Kysely<VaultDatabase>,
  o: {
    name: string;
    siteId: string;
    roles: readonly ApplianceRole[];
    url: string | null;
    kind: "in-process" | "remote";
  },
  now: Date,
): Promise<ApplianceRow> {
  checkName("appliance", o.name);
  const row: ApplianceRow = {
    id: newId("appliance"),
    name: o.name,
    site_id: o.siteId,
    roles: JSON.stringify([...o.roles]),
    url: o.url,
    kind: o.kind,
    last_heartbeat_at: null,
    created_at: now.toISOString(),
  };
  await insertUnique("appliance", o.name, () => db.insertInto("appliances").values(row).execute());
  return row;
}

/** Registers a separate appliance process; it is "unknown" until its first heartbeat. */
export async function createRemoteAppliance(
  db: Kysely<VaultDatabase>,
  input: CreateAppliance,
  clock: HealthClock,
): Promise<Appliance> {
  const site = await getSiteRow(db, input.site);
  const row = await insertAppliance(
    db,
    { name: input.name, siteId: site.id, roles: input.roles, url: input.url, kind: "remote" },
    clock.now,
  );
  return toAppliance(row, site.name, clock);
}

/** The appliance that runs inside the vault process for a site (bootstrap creates one per site). */
export async function createInProcessAppliance(
  db: Kysely<VaultDatabase>,
  o: { name: string; siteId: string; roles: readonly ApplianceRole[] },
  now: Date,
): Promise<ApplianceRow> {
  return insertAppliance(db, { ...o, url: null, kind: "in-process" }, now);
}

/** Records that the appliance is alive (and, when given, where agents reach it now). */
export async function heartbeatAppliance(
  db: Kysely<VaultDatabase>,
  ref: string,
  o: { now: Date; url?: string | null },
): Promise<void> {
  const r = await getApplianceRow(db, ref);
  await db
    .updateTable("appliances")
    .set({
      last_heartbeat_at: o.now.toISOString(),
      ...(o.url !== undefined ? { url: o.url } : {}),
    })
    .where("id", "=", r.id)
    .execute();
}

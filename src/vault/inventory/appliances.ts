// Appliances: each site's data-plane services. "in-process" ones run inside the vault (embedded
// default, created by bootstrap); "remote" ones are separate `switchback appliance` processes that
// register themselves (or are created, then register) and report with heartbeats. Liveness comes
// from heartbeats. A site is served by one appliance for now: in-process, or one registered remote.
import path from "node:path";
import { Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import { liveness } from "../../domain/health.ts";
import { readJson } from "../db/json.ts";
import type { ApplianceRow, VaultDatabase } from "../db/schema.ts";
import {
  type Appliance,
  type ApplianceRole,
  ApplianceRoleSchema,
  type CreateAppliance,
  type RegisterAppliance,
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
    controlUrl: r.control_url,
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
    control_url: null,
    control_secret: null,
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
  o: {
    now: Date;
    url?: string | null;
    /** a remote appliance's figures of the datastores it serves */
    datastores?: { id: string; capacityBytes: number; usedBytes: number }[];
  },
): Promise<ApplianceRow> {
  const r = await getApplianceRow(db, ref);
  await db
    .updateTable("appliances")
    .set({
      last_heartbeat_at: o.now.toISOString(),
      ...(o.url !== undefined ? { url: o.url } : {}),
    })
    .where("id", "=", r.id)
    .execute();
  for (const d of o.datastores ?? []) {
    await db
      .updateTable("datastores")
      .set({ capacity_bytes: d.capacityBytes, used_bytes: d.usedBytes, last_seen_at: o.now.toISOString() })
      .where("id", "=", d.id)
      .where("appliance_id", "=", r.id)
      .execute();
  }
  return r;
}

/**
 * A `switchback appliance` process registers at every start: its control API and the secret the vault
 * presents there, its roles, and its datastores (found by location at the site, or added). The site
 * must not be served by another appliance: an in-process one, or another registered remote one.
 */
export async function registerRemoteAppliance(
  db: Kysely<VaultDatabase>,
  input: RegisterAppliance,
  clock: HealthClock,
): Promise<{ appliance: Appliance; datastores: { id: string; name: string; location: string }[] }> {
  checkName("appliance", input.name);
  const site = await getSiteRow(db, input.site);
  for (const d of input.datastores) {
    if (!path.isAbsolute(d.location)) {
      throw new SwitchbackError(
        "INVALID_REQUEST",
        `field "datastores": ${JSON.stringify(d.location)} is not an absolute path; give the datastore's folder on the appliance's host`,
      );
    }
  }
  const now = clock.now.toISOString();
  return db.transaction().execute(async (trx) => {
    const others = await trx
      .selectFrom("appliances")
      .selectAll()
      .where("site_id", "=", site.id)
      .where("name", "!=", input.name)
      .execute();
    const inProcess = others.find((a) => a.kind === "in-process");
    if (inProcess !== undefined) {
      throw new SwitchbackError(
        "APPLIANCE_SITE_IN_PROCESS",
        `site ${site.name} is served by the vault's in-process appliance ${inProcess.name}; register the appliance at a site of its own ('switchback sites create')`,
      );
    }
    const registered = others.find((a) => a.control_url !== null);
    if (registered !== undefined) {
      throw new SwitchbackError(
        "APPLIANCE_SITE_SERVED",
        `site ${site.name} is served by appliance ${registered.name} already; one appliance per site for now: stop it, or give this one its name`,
      );
    }
    let row = await trx
      .selectFrom("appliances")
      .selectAll()
      .where("name", "=", input.name)
      .executeTakeFirst();
    if (row !== undefined && (row.kind !== "remote" || row.site_id !== site.id)) {
      throw new SwitchbackError(
        "APPLIANCE_EXISTS",
        `appliance ${input.name} exists already as ${row.kind === "remote" ? "a remote appliance" : "an in-process appliance"} of another site; choose another --name`,
      );
    }
    const set = {
      roles: JSON.stringify([...input.roles]),
      control_url: input.controlUrl,
      control_secret: input.controlSecret,
      last_heartbeat_at: now,
    };
    if (row === undefined) {
      row = {
        id: newId("appliance"),
        name: input.name,
        site_id: site.id,
        url: null,
        kind: "remote",
        created_at: now,
        ...set,
      };
      await insertUnique("appliance", input.name, () => trx.insertInto("appliances").values(row!).execute());
    } else {
      await trx.updateTable("appliances").set(set).where("id", "=", row.id).execute();
      row = { ...row, ...set };
    }
    const datastores: { id: string; name: string; location: string }[] = [];
    for (const d of input.datastores) {
      const location = path.resolve(d.location);
      const ds = await trx.selectFrom("datastores").selectAll().where("location", "=", location).execute();
      const here = ds.find((x) => x.site_id === site.id);
      if (here === undefined && ds.length > 0) {
        throw new SwitchbackError(
          "DATASTORE_LOCATION_IN_USE",
          `${location} is datastore ${ds[0]!.name} of another site; give the appliance its own datastore folder`,
        );
      }
      if (here !== undefined) {
        if (here.appliance_id !== row.id) {
          await trx
            .updateTable("datastores")
            .set({ appliance_id: row.id })
            .where("id", "=", here.id)
            .execute();
        }
        datastores.push({ id: here.id, name: here.name, location });
        continue;
      }
      const taken = new Set((await trx.selectFrom("datastores").select("name").execute()).map((x) => x.name));
      let name = `${input.name}-local`;
      for (let n = 2; taken.has(name); n++) name = `${input.name}-local-${n}`;
      const id = newId("datastore");
      await trx
        .insertInto("datastores")
        .values({
          id,
          name,
          site_id: site.id,
          kind: "local",
          location,
          capacity_bytes: null,
          used_bytes: null,
          last_seen_at: null,
          created_at: now,
          appliance_id: row.id,
        })
        .execute();
      datastores.push({ id, name, location });
    }
    return { appliance: toAppliance(row, site.name, clock), datastores };
  });
}

// Datastores: where a site keeps replica data and recovery points. A local one is a folder on the
// vault's host in the datastore format (docs/format.md); creating it initialises the folder (or adopts
// one that already holds a datastore). Capacity and used bytes are those of the file system holding
// it (statfs), refreshed whenever a datastore is read, so a list always shows the current figures.
import { statfs } from "node:fs/promises";
import path from "node:path";
import type { Kysely } from "kysely";
import { initLocalDatastoreFolder } from "../../datastore/local/init-folder.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import type { DatastoreRow, VaultDatabase } from "../db/schema.ts";
import type { CreateDatastore, DatastoreInfo } from "../http/schemas.ts";
import { newId } from "../ids.ts";
import { checkName, exists, findByRef, insertUnique, notFound } from "./common.ts";
import { getSiteRow, siteNames } from "./sites.ts";

function toDatastore(r: DatastoreRow, siteName: string, reachable: boolean): DatastoreInfo {
  return {
    id: r.id,
    name: r.name,
    siteId: r.site_id,
    site: siteName,
    kind: "local",
    location: r.location,
    capacityBytes: r.capacity_bytes === null ? null : Number(r.capacity_bytes),
    usedBytes: r.used_bytes === null ? null : Number(r.used_bytes),
    lastSeenAt: r.last_seen_at,
    createdAt: r.created_at,
    applianceId: r.appliance_id,
    health: { reachable },
  };
}

interface Space {
  capacityBytes: number;
  usedBytes: number;
}

async function spaceOf(location: string): Promise<Space> {
  const s = await statfs(location);
  return { capacityBytes: s.blocks * s.bsize, usedBytes: (s.blocks - s.bfree) * s.bsize };
}

/** Reads the datastore's file system and stores the figures; keeps the old ones when it cannot. */
async function refresh(
  db: Kysely<VaultDatabase>,
  r: DatastoreRow,
  now: Date,
): Promise<[DatastoreRow, boolean]> {
  // a remote appliance's datastore is on its host: its figures come with the appliance's heartbeats
  if (r.appliance_id !== null) return [r, r.last_seen_at !== null];
  let space: Space;
  try {
    space = await spaceOf(r.location);
  } catch {
    return [r, false];
  }
  const updated: DatastoreRow = {
    ...r,
    capacity_bytes: space.capacityBytes,
    used_bytes: space.usedBytes,
    last_seen_at: now.toISOString(),
  };
  await db
    .updateTable("datastores")
    .set({
      capacity_bytes: space.capacityBytes,
      used_bytes: space.usedBytes,
      last_seen_at: updated.last_seen_at,
    })
    .where("id", "=", r.id)
    .execute();
  return [updated, true];
}

export async function listDatastores(
  db: Kysely<VaultDatabase>,
  now: Date,
  filter: { site?: string } = {},
): Promise<DatastoreInfo[]> {
  let q = db.selectFrom("datastores").selectAll();
  if (filter.site !== undefined) q = q.where("site_id", "=", (await getSiteRow(db, filter.site)).id);
  const rows = await q.orderBy("created_at").orderBy("name").execute();
  const names = await siteNames(db);
  const out: DatastoreInfo[] = [];
  for (const r of rows) {
    const [fresh, reachable] = await refresh(db, r, now);
    out.push(toDatastore(fresh, names.get(r.site_id) ?? r.site_id, reachable));
  }
  return out;
}

export async function getDatastoreRow(db: Kysely<VaultDatabase>, ref: string): Promise<DatastoreRow> {
  const r = await findByRef(db, "datastores", ref);
  if (r === undefined) throw notFound("datastore", ref, "switchback datastores list");
  return r;
}

export async function getDatastore(
  db: Kysely<VaultDatabase>,
  ref: string,
  now: Date,
): Promise<DatastoreInfo> {
  const r = await getDatastoreRow(db, ref);
  const site = await getSiteRow(db, r.site_id);
  const [fresh, reachable] = await refresh(db, r, now);
  return toDatastore(fresh, site.name, reachable);
}

export async function createLocalDatastore(
  db: Kysely<VaultDatabase>,
  input: CreateDatastore,
  now: Date,
): Promise<DatastoreInfo> {
  checkName("datastore", input.name);
  if (!path.isAbsolute(input.path)) {
    throw new SwitchbackError(
      "INVALID_REQUEST",
      `field "path": ${JSON.stringify(input.path)} is not an absolute path; a local datastore's path is on the vault's host`,
    );
  }
  const location = path.resolve(input.path);
  const site = await getSiteRow(db, input.site);
  // refuse before touching the disk, so a refused create leaves no folder behind
  if (await db.selectFrom("datastores").select("id").where("name", "=", input.name).executeTakeFirst())
    throw exists("datastore", input.name);
  const other = await db
    .selectFrom("datastores")
    .select("name")
    .where("location", "=", location)
    .executeTakeFirst();
  if (other !== undefined) {
    throw new SwitchbackError(
      "DATASTORE_LOCATION_IN_USE",
      `${location} is already datastore ${JSON.stringify(other.name)}; two datastores cannot share a folder`,
    );
  }
  try {
    await initLocalDatastoreFolder(location);
  } catch (err) {
    if (err instanceof SwitchbackError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new SwitchbackError(
      "DATASTORE_UNREACHABLE",
      `cannot create a datastore at ${location}: ${e.code ?? e.message}; check that the vault's user may write there`,
      { cause: err },
    );
  }
  return insertDatastoreRow(db, { name: input.name, siteId: site.id, siteName: site.name, location }, now);
}

/** The row of an initialised local datastore folder (bootstrap uses it directly). */
export async function insertDatastoreRow(
  db: Kysely<VaultDatabase>,
  o: { name: string; siteId: string; siteName: string; location: string },
  now: Date,
): Promise<DatastoreInfo> {
  const space = await spaceOf(o.location);
  const row: DatastoreRow = {
    id: newId("datastore"),
    name: o.name,
    site_id: o.siteId,
    kind: "local",
    location: o.location,
    capacity_bytes: space.capacityBytes,
    used_bytes: space.usedBytes,
    last_seen_at: now.toISOString(),
    created_at: now.toISOString(),
    appliance_id: null,
  };
  await insertUnique("datastore", o.name, () => db.insertInto("datastores").values(row).execute());
  return toDatastore(row, o.siteName, true);
}

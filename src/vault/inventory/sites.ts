// Sites: the locations machines run at and fail over between ("primary", "recovery"). Symmetric: after
// a failover the roles swap, so nothing here says which one is the source.
import type { Kysely } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import type { SiteRow, VaultDatabase } from "../db/schema.ts";
import type { CreateSite, Site } from "../http/schemas.ts";
import { newId } from "../ids.ts";
import { checkName, findByRef, insertUnique, notFound } from "./common.ts";

export function toSite(r: SiteRow): Site {
  return { id: r.id, name: r.name, subnet: r.subnet, createdAt: r.created_at };
}

function checkSubnet(subnet: string): void {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(subnet);
  const ok = m?.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
  if (!ok) {
    throw new SwitchbackError(
      "INVALID_REQUEST",
      `field "subnet": ${JSON.stringify(subnet)} is not an IPv4 subnet; write it in CIDR notation, e.g. 10.10.0.0/24`,
    );
  }
}

export async function createSite(db: Kysely<VaultDatabase>, input: CreateSite, now: Date): Promise<Site> {
  checkName("site", input.name);
  if (input.subnet !== undefined) checkSubnet(input.subnet);
  const row: SiteRow = {
    id: newId("site"),
    name: input.name,
    subnet: input.subnet ?? null,
    created_at: now.toISOString(),
  };
  await insertUnique("site", input.name, () => db.insertInto("sites").values(row).execute());
  return toSite(row);
}

export async function listSites(db: Kysely<VaultDatabase>): Promise<Site[]> {
  const rows = await db.selectFrom("sites").selectAll().orderBy("created_at").orderBy("name").execute();
  return rows.map(toSite);
}

/** The site with this id, or else this name; null when neither. */
export async function findSiteRow(db: Kysely<VaultDatabase>, ref: string): Promise<SiteRow | null> {
  return (await findByRef(db, "sites", ref)) ?? null;
}

export async function getSiteRow(db: Kysely<VaultDatabase>, ref: string): Promise<SiteRow> {
  const r = await findSiteRow(db, ref);
  if (r === null) throw notFound("site", ref, "switchback sites list");
  return r;
}

export async function getSite(db: Kysely<VaultDatabase>, ref: string): Promise<Site> {
  return toSite(await getSiteRow(db, ref));
}

/** id → name of every site, for responses that show both. */
export async function siteNames(db: Kysely<VaultDatabase>): Promise<Map<string, string>> {
  const rows = await db.selectFrom("sites").select(["id", "name"]).execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}

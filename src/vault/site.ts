// The vault's side of its sites' appliances. A site with an in-process appliance (the embedded
// default) gets a LocalSite in this process, over the site's local datastores; its process servers
// keep their ports across vault restarts (stored in `settings`), so agents keep reaching them. A site
// whose appliance is a `switchback appliance` process gets a RemoteSite (remote-site.ts). Operations
// see both through the one SiteRuntime interface (src/appliance/site-runtime.ts).
import path from "node:path";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { LocalSite } from "../appliance/local-site.ts";
import type { Authenticate } from "../appliance/process-server.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import type { ItemName } from "../domain/ids.ts";
import type { VaultDatabase } from "./db/schema.ts";

export type { SiteRuntime } from "../appliance/site-runtime.ts";

export interface StartLocalSiteOptions {
  db: Kysely<VaultDatabase>;
  data: string;
  siteId: string;
  siteName: string;
  /** the vault's URL and an enrol token, given to every machine the provider boots */
  machineEnv: Record<string, string>;
  authenticate: Authenticate;
  onCommit: (datastoreId: string, item: ItemName, header: PointHeader) => void;
  log: Logger;
}

/** The in-process appliance of a site: its local datastores' process servers, master target, provider. */
export async function startLocalSite(o: StartLocalSiteOptions): Promise<LocalSite> {
  const db = o.db;
  const rows = await db
    .selectFrom("datastores")
    .selectAll()
    .where("site_id", "=", o.siteId)
    .where("kind", "=", "local")
    .where("appliance_id", "is", null)
    .execute();
  const site = await LocalSite.start({
    siteId: o.siteId,
    siteName: o.siteName,
    datastores: rows.map((r) => ({ id: r.id, name: r.name, dir: r.location })),
    machinesRoot: path.join(o.data, "sites", o.siteName, "machines"),
    machineEnv: o.machineEnv,
    authenticate: o.authenticate,
    onCommit: o.onCommit,
    log: o.log,
    portFor: (id) => processServerPort(db, id),
    portChosen: (id, port) => rememberProcessServerPort(db, id, port),
  });
  try {
    // the site's in-process appliance is reached at its first process server
    const first = site.datastores()[0];
    if (first !== undefined) {
      await db
        .updateTable("appliances")
        .set({ url: first.url })
        .where("site_id", "=", o.siteId)
        .where("kind", "=", "in-process")
        .execute();
    }
  } catch (err) {
    await site.stop();
    throw err;
  }
  return site;
}

const portKey = (datastoreId: string) => `process-server.port.${datastoreId}`;

/**
 * The port a datastore's process server listened on last time (0: none yet), in-process or remote:
 * given again, agents keep reaching it across restarts of the vault or of the appliance.
 */
export async function processServerPort(db: Kysely<VaultDatabase>, datastoreId: string): Promise<number> {
  const saved = await db
    .selectFrom("settings")
    .select("value")
    .where("key", "=", portKey(datastoreId))
    .executeTakeFirst();
  return saved === undefined ? 0 : Number(saved.value);
}

export async function rememberProcessServerPort(
  db: Kysely<VaultDatabase>,
  datastoreId: string,
  port: number,
): Promise<void> {
  if ((await processServerPort(db, datastoreId)) === port) return;
  await db.deleteFrom("settings").where("key", "=", portKey(datastoreId)).execute();
  await db
    .insertInto("settings")
    .values({ key: portKey(datastoreId), value: String(port) })
    .execute();
}

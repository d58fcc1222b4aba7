// First start of a vault: the embedded topology of docs/vault.md. Sites "primary" and "recovery";
// per site one in-process appliance with both roles and one local datastore at
// DATA/sites/<site>/datastore; the "default" policy; an admin token, returned once in clear and
// stored only as its SHA-256. Idempotent: a settings row marks it done, and everything runs in one
// transaction that starts by inserting that row, so two vault processes starting together on one
// PostgreSQL bootstrap once (the second waits on the row, then finds it taken).
import path from "node:path";
import type { Kysely } from "kysely";
import { initLocalDatastoreFolder } from "../datastore/local/init-folder.ts";
import type { VaultDb } from "./db/database.ts";
import { isUniqueViolation } from "./db/migrations.ts";
import type { VaultDatabase } from "./db/schema.ts";
import { createInProcessAppliance } from "./inventory/appliances.ts";
import { insertDatastoreRow } from "./inventory/datastores.ts";
import { createPolicy } from "./inventory/policies.ts";
import { createSite } from "./inventory/sites.ts";
import { createToken } from "./inventory/tokens.ts";

export const BOOTSTRAP_SETTING = "bootstrap.completed_at";
export const BOOTSTRAP_SITES = ["primary", "recovery"] as const;
export const DEFAULT_POLICY = {
  name: "default",
  rpoThreshold: "15m",
  retention: "72h",
  appConsistentEvery: "4h",
  crashConsistentEvery: "5m",
};

export const applianceName = (site: string) => `${site}-appliance`;
export const datastoreName = (site: string) => `${site}-local`;
export const siteDatastoreDir = (data: string, site: string) => path.join(data, "sites", site, "datastore");

export interface BootstrapResult {
  /** true when this call did the first start */
  bootstrapped: boolean;
  /** the admin token in clear, on the first start only: print it, it is not stored */
  adminToken: string | null;
}

export async function bootstrap(vdb: VaultDb, o: { data: string; now: Date }): Promise<BootstrapResult> {
  const done = await vdb.db
    .selectFrom("settings")
    .select("value")
    .where("key", "=", BOOTSTRAP_SETTING)
    .executeTakeFirst();
  if (done !== undefined) return { bootstrapped: false, adminToken: null };
  // the folders first: they cannot roll back with the transaction, and adopting them is idempotent
  for (const site of BOOTSTRAP_SITES)
    await initLocalDatastoreFolder(path.resolve(siteDatastoreDir(o.data, site)));
  try {
    return await vdb.db.transaction().execute((trx) => firstStart(trx, o));
  } catch (err) {
    if (isUniqueViolation(err)) {
      const now = await vdb.db
        .selectFrom("settings")
        .select("value")
        .where("key", "=", BOOTSTRAP_SETTING)
        .executeTakeFirst();
      // another vault process bootstrapped meanwhile
      if (now !== undefined) return { bootstrapped: false, adminToken: null };
    }
    throw err;
  }
}

async function firstStart(
  db: Kysely<VaultDatabase>,
  o: { data: string; now: Date },
): Promise<BootstrapResult> {
  await db.insertInto("settings").values({ key: BOOTSTRAP_SETTING, value: o.now.toISOString() }).execute();
  for (const name of BOOTSTRAP_SITES) {
    const site = await createSite(db, { name }, o.now);
    await createInProcessAppliance(
      db,
      { name: applianceName(name), siteId: site.id, roles: ["process-server", "master-target"] },
      o.now,
    );
    await insertDatastoreRow(
      db,
      {
        name: datastoreName(name),
        siteId: site.id,
        siteName: name,
        location: path.resolve(siteDatastoreDir(o.data, name)),
      },
      o.now,
    );
  }
  await createPolicy(db, DEFAULT_POLICY, o.now);
  const admin = await createToken(db, { role: "admin", name: "admin", now: o.now });
  return { bootstrapped: true, adminToken: admin.token };
}

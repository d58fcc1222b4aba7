// A site's runtime on the embedded defaults: for each local datastore of the site, an in-process
// process server (the data plane's, on its own loopback port, authenticated and fenced by the vault),
// the master-target role (seed and apply, run locally against the same datastore), and the site's
// `process` compute provider. The vault reaches them directly; agents reach the process servers.
import path from "node:path";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { applyPoint, seedPoint } from "../appliance/master-target.ts";
import { type Authenticate, ProcessServer } from "../appliance/process-server.ts";
import { ProcessProvider } from "../compute/process/process-provider.ts";
import type { ComputeProvider } from "../compute/provider.ts";
import { Datastore } from "../datastore/datastore.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { deleteItemPoints } from "../datastore/prune.ts";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import type { VaultDatabase } from "./db/schema.ts";

export interface DatastoreRuntime {
  id: string;
  name: string;
  dir: string;
  ds: Datastore;
  server: ProcessServer;
  url: string;
}

export interface SiteRuntimeOptions {
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

export class SiteRuntime {
  readonly id: string;
  readonly name: string;
  readonly provider: ComputeProvider;
  readonly datastores = new Map<string, DatastoreRuntime>();
  readonly #o: SiteRuntimeOptions;

  private constructor(o: SiteRuntimeOptions) {
    this.#o = o;
    this.id = o.siteId;
    this.name = o.siteName;
    this.provider = new ProcessProvider({
      root: path.join(o.data, "sites", o.siteName, "machines"),
      env: { ...o.machineEnv, SWITCHBACK_SITE: o.siteName },
    });
  }

  static async start(o: SiteRuntimeOptions): Promise<SiteRuntime> {
    const site = new SiteRuntime(o);
    try {
      const rows = await o.db
        .selectFrom("datastores")
        .selectAll()
        .where("site_id", "=", o.siteId)
        .where("kind", "=", "local")
        .execute();
      for (const r of rows) await site.#startDatastore(r.id, r.name, r.location);
      // the site's in-process appliance is reached at its first process server
      const first = [...site.datastores.values()][0];
      if (first !== undefined) {
        await o.db
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

  async #startDatastore(id: string, name: string, dir: string): Promise<void> {
    const ds = await Datastore.open(dir);
    // the same port as last time, so that agents keep reaching it across vault restarts
    const key = `process-server.port.${id}`;
    const db = this.#o.db;
    const saved = await db.selectFrom("settings").select("value").where("key", "=", key).executeTakeFirst();
    const make = (port: number) =>
      new ProcessServer({
        ds,
        authenticate: this.#o.authenticate,
        host: "127.0.0.1",
        port,
        onCommit: (item, header) => this.#o.onCommit(id, item, header),
      });
    let server = make(saved === undefined ? 0 : Number(saved.value));
    let url: string;
    try {
      url = await server.start();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
      this.#o.log.warn(
        { site: this.name, datastore: name, port: saved?.value },
        "the process server's port is taken; using another",
      );
      server = make(0);
      url = await server.start();
    }
    const port = new URL(url).port;
    if (saved?.value !== port) {
      await db.deleteFrom("settings").where("key", "=", key).execute();
      await db.insertInto("settings").values({ key, value: port }).execute();
    }
    this.#o.log.info({ site: this.name, datastore: name, url }, "process server listening");
    this.datastores.set(id, { id, name, dir, ds, server, url });
  }

  datastore(id: string): DatastoreRuntime {
    const d = this.datastores.get(id);
    if (d === undefined) {
      throw new SwitchbackError(
        "DATASTORE_NOT_SERVED",
        `datastore ${id} is not a local datastore of site ${this.name} that this vault serves`,
      );
    }
    return d;
  }

  /** The item's points in a datastore, oldest first. */
  async points(datastoreId: string, item: string): Promise<PointHeader[]> {
    const d = this.datastore(datastoreId);
    if (!(await d.ds.items()).includes(item as ItemName)) return [];
    return d.ds.listPoints(item as ItemName);
  }

  /** Master target: a point of stopped local disks into the datastore (original-location reprotect). */
  async seed(
    datastoreId: string,
    item: string,
    disks: { path: string; uuid: string }[],
  ): Promise<{ pointId: string; bytesRead: number }> {
    const d = this.datastore(datastoreId);
    return d.server.exclusive(`seed ${item}`, async () => {
      const r = await seedPoint({ datastore: d.dir, item, disks });
      await d.ds.reloadIndex();
      return { pointId: r.pointId, bytesRead: r.bytesRead };
    });
  }

  /** Master target: writes a point onto existing disks, only the blocks that differ. */
  async apply(
    datastoreId: string,
    item: string,
    point: string,
    disks: { path: string; uuid: string }[],
  ): Promise<{ blocksWritten: number; bytesWritten: number }> {
    const d = this.datastore(datastoreId);
    return applyPoint({ datastore: d.dir, item, point, disks });
  }

  /** Deletes every point of an item (commit, disable); blocks are freed by the next GC. */
  async deletePoints(datastoreId: string, item: string): Promise<PointId[]> {
    const d = this.datastore(datastoreId);
    return d.server.exclusive(`delete points of ${item}`, () => deleteItemPoints(d.ds, item as ItemName));
  }

  async stop(): Promise<void> {
    for (const d of this.datastores.values()) {
      await d.server
        .close()
        .catch((err: unknown) => this.#o.log.error({ err }, "process server close failed"));
      await d.ds.close();
    }
    this.datastores.clear();
  }
}

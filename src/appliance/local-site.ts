// A site's appliance roles in this process, over the site's local datastores: a process server per
// datastore (the data plane's, on its own port, authenticated and fenced by the replication
// directory), the master-target role (seed and apply, run here against the same datastore), retention
// in the process server's exclusive section, and the site's `process` compute provider. The vault runs
// one per site with an in-process appliance (src/vault/site.ts); `switchback appliance` runs one in
// its own process and serves it to the vault over its control API.

import { existsSync } from "node:fs";
import { statfs } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { type MachineIdentity, writeIdentityLabel } from "../agent/identity.ts";
import type { SiteNetworks } from "../compute/process/netns.ts";
import { IDENTITY_FILE, ProcessProvider } from "../compute/process/process-provider.ts";
import type { ComputeProvider } from "../compute/provider.ts";
import { Datastore } from "../datastore/datastore.ts";
import { collectGarbage } from "../datastore/gc.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { deleteItemPoints, prune } from "../datastore/prune.ts";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import { Gate } from "./gate.ts";
import { applyPoint, seedPoint } from "./master-target.ts";
import { type Authenticate, ProcessServer } from "./process-server.ts";
import { Replicas } from "./replicas.ts";
import { SiteProvider } from "./site-provider.ts";
import type {
  RetentionRequest,
  RetentionResult,
  SiteDatastore,
  SiteDisk,
  SiteRuntime,
} from "./site-runtime.ts";

interface ServedDatastore extends SiteDatastore {
  dir: string;
  ds: Datastore;
  server: ProcessServer;
}

export interface LocalSiteOptions {
  siteId: string;
  siteName: string;
  /** the local datastores it serves, by the vault's ids */
  datastores: { id: string; name: string; dir: string }[];
  /** the `process` provider's root: an instance's folder is <machinesRoot>/<instance id> */
  machinesRoot: string;
  /** given to every machine the provider boots (the vault's URL, an enrol token, the CLI) */
  machineEnv: Record<string, string>;
  authenticate: Authenticate;
  onCommit: (datastoreId: string, item: ItemName, header: PointHeader) => void;
  /** privileged machines on these networks (the provider's privileged mode); absent: unprivileged */
  networks?: SiteNetworks;
  /** keep replica images of the items whose points it receives (drills, failovers by copy-on-write); default true */
  replicas?: boolean;
  /** where the process servers listen (default 127.0.0.1) */
  host?: string;
  /** the port a datastore's process server had last time (agents keep reaching it); 0: any */
  portFor?: (datastoreId: string) => Promise<number>;
  /** told the port a process server listens on, to remember it */
  portChosen?: (datastoreId: string, port: number) => Promise<void>;
  log: Logger;
}

/**
 * How long the site's exclusive work waits for readers outside its gate (a restore from the CLI, a
 * reader whose lock is being cleared after it died) before it gives up with DATASTORE_LOCKED.
 */
const EXCLUSIVE_WAIT_MS = 60_000;

export class LocalSite implements SiteRuntime {
  readonly #seeding = new Map<string, Promise<{ pointId: string; bytesRead: number }>>();
  readonly id: string;
  readonly name: string;
  readonly kind = "in-process" as const;
  readonly provider: ComputeProvider;
  readonly #served = new Map<string, ServedDatastore>();
  readonly #o: LocalSiteOptions;
  readonly #machines: ProcessProvider;
  readonly #replicas: Replicas | null;
  /** the site's own readers of its datastores, and the work that needs one alone */
  readonly #gate = new Gate();

  private constructor(o: LocalSiteOptions) {
    this.#o = o;
    this.id = o.siteId;
    this.name = o.siteName;
    const replicas =
      o.replicas === false
        ? null
        : new Replicas({
            root: path.join(path.dirname(path.resolve(o.machinesRoot)), "replicas"),
            log: o.log,
            gate: this.#gate,
            datastoreOf: (dir) => [...this.#served.values()].find((d) => d.dir === dir)?.ds,
          });
    this.#replicas = replicas;
    const inner = new ProcessProvider({
      root: o.machinesRoot,
      ...(replicas !== null ? { pointCopy: (d, to) => replicas.copyDisk(d, to) } : {}),
      env: { ...o.machineEnv, SWITCHBACK_SITE: o.siteName },
      ...(o.networks !== undefined ? { networks: o.networks } : {}),
    });
    this.#machines = inner;
    this.provider = new SiteProvider(inner, o.siteName, (id) => this.#served.get(id)?.dir, this.#gate);
  }

  static async start(o: LocalSiteOptions): Promise<LocalSite> {
    const site = new LocalSite(o);
    try {
      for (const d of o.datastores) await site.#startDatastore(d.id, d.name, d.dir);
    } catch (err) {
      await site.stop();
      throw err;
    }
    return site;
  }

  async #startDatastore(id: string, name: string, dir: string): Promise<void> {
    const ds = await Datastore.open(dir);
    const host = this.#o.host ?? "127.0.0.1";
    const saved = (await this.#o.portFor?.(id)) ?? 0;
    const make = (port: number) =>
      new ProcessServer({
        ds,
        authenticate: this.#o.authenticate,
        host,
        port,
        onCommit: (item, header) => {
          this.#replicas?.committed(dir, item, header.id);
          this.#o.onCommit(id, item, header);
        },
      });
    let server = make(saved);
    let url: string;
    try {
      url = await server.start();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || saved === 0) {
        await ds.close();
        throw err;
      }
      this.#o.log.warn(
        { site: this.name, datastore: name, port: saved },
        "the process server's port is taken; using another",
      );
      server = make(0);
      url = await server.start();
    }
    const port = Number(new URL(url).port);
    if (port !== saved) await this.#o.portChosen?.(id, port);
    this.#o.log.info({ site: this.name, datastore: name, url }, "process server listening");
    this.#served.set(id, { id, name, url, dir, ds, server });
  }

  datastores(): SiteDatastore[] {
    return [...this.#served.values()].map((d) => ({ id: d.id, name: d.name, url: d.url }));
  }

  serves(datastoreId: string): boolean {
    return this.#served.has(datastoreId);
  }

  async ping(): Promise<boolean> {
    return true;
  }

  #datastore(id: string): ServedDatastore {
    const d = this.#served.get(id);
    if (d === undefined) {
      throw new SwitchbackError(
        "DATASTORE_NOT_SERVED",
        `datastore ${id} is not a local datastore of site ${this.name} that this appliance serves`,
      );
    }
    return d;
  }

  async points(datastoreId: string, item: string): Promise<PointHeader[]> {
    const d = this.#datastore(datastoreId);
    if (!(await d.ds.items()).includes(item as ItemName)) return [];
    return d.ds.listPoints(item as ItemName);
  }

  async pointHeader(datastoreId: string, item: string, point: string): Promise<PointHeader> {
    return this.#datastore(datastoreId).ds.readPointHeader(item as ItemName, point as PointId);
  }

  async seed(
    datastoreId: string,
    item: string,
    disks: SiteDisk[],
  ): Promise<{ pointId: string; bytesRead: number }> {
    const d = this.#datastore(datastoreId);
    // a seed asked for again while one of the item runs (a vault that restarted and resumed its
    // reprotect, the appliance still at work) gets that one's answer, not a second seed
    const key = `${datastoreId}/${item}`;
    const running = this.#seeding.get(key);
    if (running !== undefined) return running;
    const seed = this.#gate
      .exclusive(() =>
        d.server.exclusive(`seed ${item}`, async () => {
          const r = await seedPoint({ datastore: d.dir, item, disks });
          await d.ds.reloadIndex();
          return { pointId: r.pointId, bytesRead: r.bytesRead };
        }),
      )
      .finally(() => this.#seeding.delete(key));
    this.#seeding.set(key, seed);
    return seed;
  }

  async apply(
    datastoreId: string,
    item: string,
    point: string,
    disks: SiteDisk[],
  ): Promise<{ blocksWritten: number; bytesWritten: number }> {
    const d = this.#datastore(datastoreId);
    const r = await this.#gate.shared(() => applyPoint({ datastore: d.dir, item, point, disks }));
    return { blocksWritten: r.blocksWritten, bytesWritten: r.bytesWritten };
  }

  async deletePoints(datastoreId: string, item: string): Promise<string[]> {
    const d = this.#datastore(datastoreId);
    await this.#replicas?.drop(d.dir, item);
    return this.#gate.exclusive(() =>
      d.server.exclusive(`delete points of ${item}`, () =>
        deleteItemPoints(d.ds, item as ItemName, { lockWaitMs: EXCLUSIVE_WAIT_MS }),
      ),
    );
  }

  async retention(datastoreId: string, items: RetentionRequest[], now: Date): Promise<RetentionResult> {
    const d = this.#datastore(datastoreId);
    // retention comes back every few minutes: it does not hold the site's readers back for long
    return this.#gate.exclusive(() => this.#retention(d, items, now), { waitMs: EXCLUSIVE_WAIT_MS });
  }

  async #retention(d: ServedDatastore, items: RetentionRequest[], now: Date): Promise<RetentionResult> {
    return d.server.exclusive("retention", async () => {
      const run: RetentionResult = { items: 0, pruned: 0, bytesFreed: 0 };
      const held = new Set<string>(await d.ds.items());
      for (const it of items) {
        if (!held.has(it.item)) continue;
        const r = await prune(d.ds, it.item as ItemName, it.policy, { now, lockWaitMs: EXCLUSIVE_WAIT_MS });
        run.pruned += r.deleted.length;
        run.items++;
      }
      if (run.pruned > 0)
        run.bytesFreed = (await collectGarbage(d.ds, { lockWaitMs: EXCLUSIVE_WAIT_MS })).bytesFreed;
      return run;
    });
  }

  async freeBytes(datastoreId: string): Promise<number | null> {
    try {
      const st = await statfs(this.#datastore(datastoreId).dir);
      return st.bavail * st.bsize;
    } catch {
      return null;
    }
  }

  async disksPresent(paths: string[]): Promise<boolean> {
    return paths.length > 0 && paths.every((p) => existsSync(p));
  }

  async labelInstance(instanceId: string, identity: MachineIdentity): Promise<void> {
    if (this.#machines.privileged) {
      // a privileged machine's OS disk carries a file system from its first block: the identity is a file on it
      await this.#machines.writeRootFile(instanceId, IDENTITY_FILE, `${JSON.stringify(identity, null, 2)}\n`);
      return;
    }
    const info = await this.provider.status(instanceId);
    const os = info?.disks[0];
    if (os === undefined) {
      throw new SwitchbackError(
        "INSTANCE_NOT_FOUND",
        `instance ${instanceId} does not exist at site ${this.name}; create it first`,
      );
    }
    writeIdentityLabel(os, identity);
  }

  async stop(): Promise<void> {
    await this.#replicas?.idle();
    for (const d of this.#served.values()) {
      await d.server
        .close()
        .catch((err: unknown) => this.#o.log.error({ err }, "process server close failed"));
      await d.ds.close();
    }
    this.#served.clear();
  }
}

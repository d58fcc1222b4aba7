// `switchback appliance`: a site's appliance as its own process (docs/vault.md, "Appliances as their
// own processes"). It runs a LocalSite over its datastores (a process server per datastore, the
// master-target role, the site's `process` compute provider), serves it to the vault over the control
// API, and keeps in step with the vault:
//  - at every start it makes a new control secret and registers (POST /v1/appliances/register): its
//    control URL, the secret, its datastores, which the vault finds or adds by location;
//  - it heartbeats (where agents reach its first process server, its datastores' figures);
//  - its process servers authenticate and fence from its site's part of the replication directory,
//    fetched every second (GET /v1/appliances/{id}/directory) and pushed by the vault on every change;
//  - every point a process server commits is told to the vault (POST /v1/appliances/{id}/commits),
//    in order, retried until the vault has it.
// It keeps no state of its own beyond its datastores and its machines' folders: a restart registers
// again and the vault tells agents where its process servers listen now.
import { randomBytes } from "node:crypto";
import { statfs } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { SiteNetworks } from "../compute/process/netns.ts";
import { initLocalDatastoreFolder } from "../datastore/local/init-folder.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { callVault } from "../platform/vault-call.ts";
import { ControlApi } from "./control-api.ts";
import {
  authenticateFrom,
  DIRECTORY_LEASE_MS,
  emptyDirectory,
  fromSiteDirectory,
  type ReplicationDirectory,
  type SiteDirectory,
} from "./directory.ts";
import { LocalSite } from "./local-site.ts";

export interface ApplianceOptions {
  /** the vault's URL */
  vault: string;
  /** an appliance token (role appliance) or an admin token */
  token: string;
  name: string;
  /** the site's name or id */
  site: string;
  /** its datastores' folders (created or adopted) */
  datastores: string[];
  /** where the control API listens; the process servers listen on the same host */
  listen: { host: string; port: number };
  /** the `process` provider's root */
  machines: string;
  /** how machines run `switchback` (SWITCHBACK_CLI) */
  cli: string;
  /** privileged machines on the site's networks (`switchback lab up` writes the file) */
  networks?: SiteNetworks;
  /** keep replica images of the items whose points it receives (default true) */
  replicas?: boolean;
  jsonLogs?: boolean;
  log: Logger;
}

interface Registered {
  appliance: { id: string; siteId: string; site: string };
  datastores: { id: string; name: string; location: string; port: number }[];
  heartbeatIntervalSeconds: number;
  machineEnrolToken: string;
}

const DIRECTORY_EVERY_MS = 1000;

export class Appliance {
  readonly #o: ApplianceOptions;
  readonly #secret = randomBytes(32).toString("base64url");
  readonly #control: ControlApi;
  #site: LocalSite | null = null;
  #reg: Registered | null = null;
  #dir: ReplicationDirectory = emptyDirectory();
  /** when the vault last answered with the directory (a fetch or a push) */
  #dirFreshAt = 0;
  #dirAsOf = "";
  #commits: { datastore: string; item: string; point: PointHeader }[] = [];
  #flushing = false;
  #timers: NodeJS.Timeout[] = [];
  #stopping = false;
  controlUrl = "";

  constructor(o: ApplianceOptions) {
    this.#o = o;
    this.#control = new ControlApi({
      host: o.listen.host,
      port: o.listen.port,
      secret: this.#secret,
      name: o.name,
      site: () => this.#site,
      onDirectory: (d) => this.#takeDirectory(d),
      ...(o.jsonLogs !== undefined ? { jsonLogs: o.jsonLogs } : {}),
    });
  }

  get site(): LocalSite | null {
    return this.#site;
  }

  /** Registers, starts the site's services, and keeps reporting until stop(). */
  async start(): Promise<void> {
    const dirs = this.#o.datastores.map((d) => path.resolve(d));
    for (const d of dirs) await initLocalDatastoreFolder(d);
    this.controlUrl = await this.#control.start();
    try {
      const reg = await this.#registerUntilAnswered();
      await this.#fetchDirectory().catch((err: unknown) =>
        this.#o.log.warn({ error: (err as Error).message }, "fetching the replication directory failed"),
      );
      const site = await LocalSite.start({
        siteId: reg.appliance.siteId,
        siteName: reg.appliance.site,
        datastores: reg.datastores.map((d) => ({ id: d.id, name: d.name, dir: d.location })),
        machinesRoot: this.#o.machines,
        ...(this.#o.networks !== undefined ? { networks: this.#o.networks } : {}),
        ...(this.#o.replicas === false ? { replicas: false } : {}),
        machineEnv: {
          SWITCHBACK_VAULT: this.#o.vault,
          SWITCHBACK_ENROL_TOKEN: reg.machineEnrolToken,
          SWITCHBACK_CLI: this.#o.cli,
        },
        authenticate: authenticateFrom(
          () => this.#currentDirectory(),
          () => reg.appliance.siteId,
        ),
        onCommit: (datastore, item, point) => {
          this.#commits.push({ datastore, item, point });
          // now, and again every second until the vault has it (a failure here is retried then)
          this.#flushCommits().catch(() => {});
        },
        host: this.#o.listen.host,
        // the ports of last time, which the vault kept: agents keep reaching the process servers
        portFor: async (id) => reg.datastores.find((d) => d.id === id)?.port ?? 0,
        log: this.#o.log,
      });
      this.#site = site;
      // stopped while starting: stop() found nothing to close, so close what was just started
      if (this.#stopping)
        throw new SwitchbackError("APPLIANCE_STOPPED", "the appliance was stopped while it started");
    } catch (err) {
      await this.stop();
      throw err;
    }
    await this.#heartbeat().catch((err: unknown) =>
      this.#o.log.warn({ error: (err as Error).message }, "heartbeat failed"),
    );
    if (this.#stopping) {
      await this.stop();
      return;
    }
    const every = (ms: number, fn: () => Promise<void>, what: string) => {
      const t = setInterval(() => {
        fn().catch((err: unknown) =>
          this.#o.log.warn({ error: (err as Error).message, code: (err as SwitchbackError).code }, what),
        );
      }, ms);
      this.#timers.push(t);
    };
    every(
      Math.max(200, this.#reg!.heartbeatIntervalSeconds * 1000),
      () => this.#heartbeat(),
      "heartbeat failed",
    );
    every(DIRECTORY_EVERY_MS, () => this.#fetchDirectory(), "fetching the replication directory failed");
    every(1000, () => this.#flushCommits(), "telling the vault about points failed");
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.#control.close().catch(() => {});
    await this.#site?.stop();
    this.#site = null;
    await this.#flushCommits().catch(() => {});
  }

  async #registerUntilAnswered(): Promise<Registered> {
    let warned = false;
    for (;;) {
      try {
        return await this.#register();
      } catch (err) {
        const code = (err as SwitchbackError).code;
        // a refusal (wrong site, name taken, bad token) will not change by waiting
        if (code !== "VAULT_UNREACHABLE" && code !== "VAULT_STARTING") throw err;
        if (!warned) this.#o.log.warn({ error: (err as Error).message }, "waiting for the vault");
        warned = true;
        if (this.#stopping) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async #register(): Promise<Registered> {
    const reg = await this.#call<Registered>("POST", "/v1/appliances/register", {
      name: this.#o.name,
      site: this.#o.site,
      roles: ["process-server", "master-target"],
      controlUrl: this.controlUrl,
      controlSecret: this.#secret,
      datastores: this.#o.datastores.map((d) => ({ location: path.resolve(d) })),
    });
    this.#reg = reg;
    this.#o.log.info({ appliance: reg.appliance.id, site: reg.appliance.site }, "registered with the vault");
    return reg;
  }

  async #heartbeat(): Promise<void> {
    const reg = this.#reg;
    if (reg === null) return;
    const site = this.#site;
    const datastores: { id: string; capacityBytes: number; usedBytes: number }[] = [];
    for (const d of reg.datastores) {
      try {
        const s = await statfs(d.location);
        datastores.push({
          id: d.id,
          capacityBytes: s.blocks * s.bsize,
          usedBytes: (s.blocks - s.bfree) * s.bsize,
        });
      } catch {
        // unreadable now: the vault keeps the last figures
      }
    }
    const url = site?.datastores()[0]?.url;
    try {
      await this.#call("POST", `/v1/appliances/${reg.appliance.id}/heartbeat`, {
        ...(url !== undefined ? { url } : {}),
        datastores,
      });
    } catch (err) {
      // the vault forgot it (its row was removed): register again
      if ((err as SwitchbackError).code === "APPLIANCE_NOT_FOUND") await this.#register();
      else throw err;
    }
  }

  async #fetchDirectory(): Promise<void> {
    const reg = this.#reg;
    if (reg === null) return;
    this.#takeDirectory(
      await this.#call<SiteDirectory>("GET", `/v1/appliances/${reg.appliance.id}/directory`),
    );
  }

  /** Keeps the newest copy: a fetch answered after a newer push must not bring an older one back. */
  #takeDirectory(d: SiteDirectory): void {
    if (this.#reg !== null && d.site !== this.#reg.appliance.siteId) return;
    // the vault answered: whatever copy it sent, the directory is current as of now
    this.#dirFreshAt = Date.now();
    if (d.asOf < this.#dirAsOf) return;
    this.#dir = fromSiteDirectory(d);
    this.#dirAsOf = d.asOf;
  }

  /**
   * The directory the process servers authenticate with. Cut off from the vault for longer than the
   * lease, the appliance fails closed: every item is fenced (a failover may have moved a generation
   * it has not heard of), agents retry, nothing is lost.
   */
  #currentDirectory(): ReplicationDirectory {
    if (Date.now() - this.#dirFreshAt <= DIRECTORY_LEASE_MS) return this.#dir;
    const fenced = emptyDirectory();
    for (const [sha, agent] of this.#dir.tokens) fenced.tokens.set(sha, agent);
    for (const [machine, items] of this.#dir.grants) {
      fenced.grants.set(
        machine,
        new Map([...items].map(([item, g]) => [item, { ...g, replicating: false }])),
      );
    }
    return fenced;
  }

  async #flushCommits(): Promise<void> {
    const reg = this.#reg;
    if (this.#flushing || reg === null) return;
    this.#flushing = true;
    try {
      while (this.#commits.length > 0) {
        const c = this.#commits[0]!;
        try {
          await this.#call("POST", `/v1/appliances/${reg.appliance.id}/commits`, c);
        } catch (err) {
          const code = (err as SwitchbackError).code;
          if (code === "VAULT_UNREACHABLE" || code === "VAULT_STARTING" || code.startsWith("HTTP_5"))
            throw err;
          this.#o.log.error(
            { error: (err as Error).message, item: c.item },
            "the vault refused a committed point",
          );
        }
        this.#commits.shift();
      }
    } finally {
      this.#flushing = false;
    }
  }

  #call<T>(method: string, route: string, body?: unknown): Promise<T> {
    return callVault<T>(this.#o.vault, { method, route, token: this.#o.token, body });
  }
}

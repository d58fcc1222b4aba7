// A site whose appliance is a `switchback appliance` process: the vault's client of its control API
// (src/appliance/control-wire.ts), behind the same SiteRuntime interface as the in-process LocalSite,
// so operations do not care where the appliance runs. It presents the secret the appliance registered.
// An appliance that does not answer is APPLIANCE_UNREACHABLE (a refusal's fact, HTTP 503 to callers);
// a problem the appliance answers with is rethrown with its own code. Quick questions time out after
// a few seconds; work on disks (materialize, seed, retention) may take as long as the disks need.
import type { MachineIdentity } from "../agent/identity.ts";
import { controlRoutes, type SiteInfo } from "../appliance/control-wire.ts";
import type { SiteDirectory } from "../appliance/directory.ts";
import type {
  RetentionRequest,
  RetentionResult,
  SiteDatastore,
  SiteDisk,
  SiteRuntime,
} from "../appliance/site-runtime.ts";
import type { ComputeProvider, InstanceInfo, InstanceSpec, PointDiskSource } from "../compute/provider.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { SwitchbackError } from "../domain/errors.ts";

const QUICK_MS = 10_000;
/**
 * Questions an operation's decision asks (is the machine there, are its disks): answered in
 * milliseconds by an appliance that is up, so a lost site does not hold a failover request long
 */
const LOOK_MS = 3_000;
/** after a call that got no answer, calls fail at once for this long (unless it heartbeats) */
const DOWN_MS = 5_000;
const LONG_MS = 6 * 3600_000;

export interface RemoteSiteOptions {
  /** without a heartbeat for this long, calls fail at once (default 45 s) */
  lostAfterMs?: number;
  siteId: string;
  siteName: string;
  applianceId: string;
  applianceName: string;
  controlUrl: string;
  secret: string;
  /** the datastores of the site the vault knows the appliance serves (id, name) */
  datastores: { id: string; name: string }[];
}

export class RemoteSite implements SiteRuntime {
  readonly id: string;
  readonly name: string;
  readonly kind = "remote" as const;
  readonly provider: ComputeProvider;
  readonly applianceId: string;
  readonly applianceName: string;
  #controlUrl: string;
  #secret: string;
  #known: { id: string; name: string }[];
  #urls = new Map<string, string>();
  #providerKind = "process";
  /** when the appliance last heartbeated or answered (a start counts: it gets its grace) */
  #heardAt = Date.now();
  /** after a call found it unreachable: calls fail at once until then, unless it is heard from */
  #downUntil = 0;
  readonly #lostAfterMs: number;

  constructor(o: RemoteSiteOptions) {
    this.id = o.siteId;
    this.name = o.siteName;
    this.applianceId = o.applianceId;
    this.applianceName = o.applianceName;
    this.#controlUrl = o.controlUrl;
    this.#secret = o.secret;
    this.#known = o.datastores;
    this.#lostAfterMs = o.lostAfterMs ?? 45_000;
    this.provider = new RemoteProvider(this);
  }

  /** The appliance heartbeated: it is reachable (again). */
  heard(): void {
    this.#heardAt = Date.now();
    this.#downUntil = 0;
  }

  /**
   * Why a call would only wait for nothing: it did not answer a moment ago, and it has not
   * heartbeated for as long as the vault calls an appliance lost. null: worth trying.
   */
  #silence(): string | null {
    const now = Date.now();
    if (now < this.#downUntil) return "it did not answer a call a moment ago";
    if (now - this.#heardAt > this.#lostAfterMs)
      return `it has not reported for ${Math.round((now - this.#heardAt) / 1000)} s`;
    return null;
  }

  get controlUrl(): string {
    return this.#controlUrl;
  }

  get providerKind(): string {
    return this.#providerKind;
  }

  /** The appliance registered again (a restart): where it listens and its secret, its datastores. */
  update(o: { controlUrl: string; secret: string; datastores: { id: string; name: string }[] }): boolean {
    const changed = o.controlUrl !== this.#controlUrl || o.secret !== this.#secret;
    if (changed) {
      this.#urls.clear(); // its process servers listen anew: ask again
      this.heard(); // it just registered
    }
    this.#controlUrl = o.controlUrl;
    this.#secret = o.secret;
    this.#known = o.datastores;
    return changed;
  }

  /** Asks the appliance where its process servers listen; returns them. */
  async refreshInfo(timeoutMs = QUICK_MS): Promise<SiteDatastore[]> {
    const info = await this.call<SiteInfo>("GET", controlRoutes.site, undefined, timeoutMs);
    this.#providerKind = info.provider;
    this.#urls = new Map(info.datastores.map((d) => [d.id, d.url]));
    return this.datastores();
  }

  /** Pushes the site's part of the replication directory (the vault does after every change). */
  async pushDirectory(d: SiteDirectory): Promise<void> {
    await this.call("PUT", controlRoutes.directory, d, 3000);
  }

  datastores(): SiteDatastore[] {
    return this.#known.flatMap((d) => {
      const url = this.#urls.get(d.id);
      return url === undefined ? [] : [{ id: d.id, name: d.name, url }];
    });
  }

  serves(datastoreId: string): boolean {
    return this.#known.some((d) => d.id === datastoreId);
  }

  async ping(): Promise<boolean> {
    if (Date.now() - this.#heardAt > this.#lostAfterMs) return false;
    try {
      await this.refreshInfo(3000);
      return true;
    } catch {
      return false;
    }
  }

  async points(datastoreId: string, item: string): Promise<PointHeader[]> {
    const r = await this.call<{ points: PointHeader[] }>("GET", controlRoutes.points(datastoreId, item));
    return r.points;
  }

  pointHeader(datastoreId: string, item: string, point: string): Promise<PointHeader> {
    return this.call("GET", controlRoutes.point(datastoreId, item, point));
  }

  seed(
    datastoreId: string,
    item: string,
    disks: SiteDisk[],
  ): Promise<{ pointId: string; bytesRead: number }> {
    return this.call("POST", controlRoutes.seed(datastoreId, item), { disks }, LONG_MS);
  }

  apply(
    datastoreId: string,
    item: string,
    point: string,
    disks: SiteDisk[],
  ): Promise<{ blocksWritten: number; bytesWritten: number }> {
    return this.call("POST", controlRoutes.apply(datastoreId, item), { point, disks }, LONG_MS);
  }

  async deletePoints(datastoreId: string, item: string): Promise<string[]> {
    const r = await this.call<{ deleted: string[] }>(
      "DELETE",
      controlRoutes.points(datastoreId, item),
      undefined,
      LONG_MS,
    );
    return r.deleted;
  }

  retention(datastoreId: string, items: RetentionRequest[], now: Date): Promise<RetentionResult> {
    return this.call(
      "POST",
      controlRoutes.retention(datastoreId),
      { items, now: now.toISOString() },
      LONG_MS,
    );
  }

  async freeBytes(datastoreId: string): Promise<number | null> {
    return (await this.call<{ freeBytes: number | null }>("GET", controlRoutes.space(datastoreId))).freeBytes;
  }

  async disksPresent(paths: string[]): Promise<boolean> {
    return (await this.call<{ present: boolean }>("POST", controlRoutes.disksPresent, { paths }, LOOK_MS))
      .present;
  }

  async labelInstance(instanceId: string, identity: MachineIdentity): Promise<void> {
    await this.call("POST", controlRoutes.label(instanceId), { identity });
  }

  async stop(): Promise<void> {
    // nothing to stop: the appliance is its own process
  }

  /** One request to the control API; a problem document becomes a SwitchbackError with its code. */
  async call<T>(
    method: string,
    route: string,
    body?: unknown,
    timeoutMs = QUICK_MS,
    o: { look?: boolean } = {},
  ): Promise<T> {
    // a lost site is not waited for question after question (a failover's facts); calls that do
    // something always try: an appliance that was merely slow a moment ago must not fail them
    const silent = o.look === true ? this.#silence() : null;
    if (silent !== null) {
      throw new SwitchbackError(
        "APPLIANCE_UNREACHABLE",
        `appliance ${this.applianceName} of site ${this.name} is unreachable (${silent}); check that it runs ('switchback appliance') and that the vault reaches it`,
      );
    }
    let res: Response;
    try {
      res = await fetch(new URL(route, this.#controlUrl), {
        method,
        headers: {
          authorization: `Bearer ${this.#secret}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      this.#downUntil = Date.now() + DOWN_MS;
      throw new SwitchbackError(
        "APPLIANCE_UNREACHABLE",
        `appliance ${this.applianceName} of site ${this.name} at ${this.#controlUrl} did not answer (${(err as Error).message}); check that it runs ('switchback appliance') and that the vault reaches it`,
        { cause: err },
      );
    }
    this.#heardAt = Date.now();
    this.#downUntil = 0;
    const text = await res.text();
    if (!res.ok) {
      let p: { code?: string; detail?: string } = {};
      try {
        p = JSON.parse(text) as typeof p;
      } catch {
        // not a problem document
      }
      if (p.code === undefined || p.code === "APPLIANCE_STARTING" || res.status === 401) {
        // starting, restarted with another secret (it registers again), or not an appliance at all
        throw new SwitchbackError(
          "APPLIANCE_UNREACHABLE",
          `appliance ${this.applianceName} of site ${this.name} answered ${res.status} ${p.code ?? ""}: ${p.detail ?? text.slice(0, 200)}`,
        );
      }
      throw new SwitchbackError(p.code, p.detail ?? `appliance ${this.applianceName}: ${res.status}`);
    }
    return JSON.parse(text) as T;
  }
}

/** The site's compute provider, run by the appliance: each call is one request to its control API. */
class RemoteProvider implements ComputeProvider {
  readonly #site: RemoteSite;

  constructor(site: RemoteSite) {
    this.#site = site;
  }

  get kind(): string {
    return this.#site.providerKind;
  }

  create(spec: InstanceSpec, progress?: (fraction: number) => void): Promise<InstanceInfo> {
    return this.#site.call<InstanceInfo>("POST", controlRoutes.instances, { spec }, LONG_MS).then((info) => {
      progress?.(1);
      return info;
    });
  }

  start(id: string): Promise<InstanceInfo> {
    return this.#site.call("POST", controlRoutes.start(id), {}, 60_000);
  }

  stop(id: string, o: { timeoutMs?: number } = {}): Promise<{ graceful: boolean; wasRunning: boolean }> {
    // the appliance waits up to timeoutMs (30 s by default), then up to 10 s after SIGKILL
    return this.#site.call("POST", controlRoutes.stop(id), o, (o.timeoutMs ?? 30_000) + 30_000);
  }

  async status(id: string): Promise<InstanceInfo | null> {
    try {
      return await this.#site.call<InstanceInfo>("GET", controlRoutes.instance(id), undefined, LOOK_MS, {
        look: true,
      });
    } catch (err) {
      if (err instanceof SwitchbackError && err.code === "INSTANCE_NOT_FOUND") return null;
      throw err;
    }
  }

  changePoint(id: string, from: PointDiskSource): Promise<{ blocksWritten: number; bytesWritten: number }> {
    return this.#site.call("POST", controlRoutes.changePoint(id), from, LONG_MS);
  }

  async delete(id: string, o: { keepDisks?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const q = new URLSearchParams();
    if (o.keepDisks !== undefined) q.set("keepDisks", String(o.keepDisks));
    if (o.timeoutMs !== undefined) q.set("timeoutMs", String(o.timeoutMs));
    const qs = q.size > 0 ? `?${q}` : "";
    await this.#site.call(
      "DELETE",
      `${controlRoutes.instance(id)}${qs}`,
      undefined,
      (o.timeoutMs ?? 30_000) + 60_000,
    );
  }
}

// The vault's disaster-recovery runtime, started after the API listens: a site runtime per site with
// an appliance (a LocalSite for an in-process one, a RemoteSite for a registered `switchback
// appliance`, noticed when it registers or restarts), the replication directory, and the job engine
// with every item operation. It fills the API's seams (deps.dr, deps.assignmentFor) so the routes
// reach it.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import pino from "pino";
import { writeFileAtomic } from "../platform/files.ts";
import { jobFinishedAlerts } from "./alerts/evaluator.ts";
import { createToken } from "./inventory/tokens.ts";
import { JobEngine } from "./jobs/engine.ts";
import type { JobKind } from "./jobs/types.ts";
import type { OpsContext } from "./operations/context.ts";
import { itemJobKinds } from "./operations/index.ts";
import { planJobKinds } from "./plans/jobs.ts";
import { RemoteSite } from "./remote-site.ts";
import { ReplicationService } from "./replication.ts";
import { startRetention } from "./retention.ts";
import type { VaultContext, VaultService } from "./server.ts";
import { rememberProcessServerPort, type SiteRuntime, startLocalSite } from "./site.ts";

export interface DrRuntime {
  ops: OpsContext;
  engine: JobEngine;
  replication: ReplicationService;
  /** the environment every machine a provider of this vault boots gets */
  machineEnv: Record<string, string>;
  /** a remote appliance registered or reported: start or update its site's RemoteSite */
  appliancesChanged(): Promise<void>;
  /** a remote appliance of this site heartbeated: it is reachable again */
  heard(siteId: string): void;
}

/** The enrol token the vault gives the machines it boots, kept in its data folder (mode 0600). */
async function machineEnrolToken(ctx: VaultContext): Promise<string> {
  const file = path.join(ctx.data, "secrets", "machine-enrol-token");
  try {
    const t = readFileSync(file, "utf8").trim();
    if (t.length > 0) return t;
  } catch {
    // first start
  }
  const t = await createToken(ctx.vdb.db, {
    role: "enrol",
    name: "machines booted by this vault",
    machineId: null,
    now: ctx.deps.now(),
  });
  writeFileAtomic(file, `${t.token}\n`, 0o600);
  return t.token;
}

export interface DrServiceOptions {
  /** the command line machines run `switchback` with (default: this Node and this CLI) */
  cli?: string;
  /** job engine lease (tests shorten it to see takeover after kill -9) */
  leaseMs?: number;
  /** how often retention prunes every item by its policy (default 5 min) */
  retentionEveryMs?: number;
}

export function drService(o: DrServiceOptions = {}): VaultService {
  return {
    name: "disaster recovery runtime",
    async start(ctx) {
      const log = pino(
        { level: process.env.SWITCHBACK_LOG_LEVEL ?? "warn", base: { role: "vault" } },
        pino.destination(2),
      );
      const db = ctx.vdb.db;
      const replication = new ReplicationService({ db, log, now: ctx.deps.now });
      const cli = o.cli ?? `${process.execPath} ${path.resolve(import.meta.dirname, "../cli/main.mjs")}`;
      const machineEnv = {
        SWITCHBACK_VAULT: ctx.url,
        SWITCHBACK_ENROL_TOKEN: await machineEnrolToken(ctx),
        SWITCHBACK_CLI: cli,
      };
      const sites = new Map<string, SiteRuntime>();
      const stopAll = async () => {
        for (const s of sites.values()) await s.stop();
      };
      try {
        const rows = await db
          .selectFrom("sites")
          .innerJoin("appliances", "appliances.site_id", "sites.id")
          .select(["sites.id", "sites.name"])
          .where("appliances.kind", "=", "in-process")
          .distinct()
          .execute();
        for (const r of rows) {
          const site = await startLocalSite({
            db,
            data: ctx.data,
            siteId: r.id,
            siteName: r.name,
            machineEnv,
            authenticate: replication.authenticateFor(() => r.id),
            onCommit: (datastoreId, item, header) => {
              replication
                .pointCommitted(datastoreId, item, header)
                .catch((err: unknown) => log.error({ err, item }, "recording a committed point failed"));
            },
            log,
          });
          sites.set(r.id, site);
          for (const d of site.datastores()) replication.serverUrls.set(d.id, d.url);
        }
      } catch (err) {
        await stopAll();
        throw err;
      }
      await replication.start();
      const remote = remoteSites({
        db,
        sites,
        replication,
        log,
        // as the appliance-lost alert judges, but never under 10 s (a busy appliance may beat late)
        lostAfterMs: Math.max(3 * ctx.deps.heartbeatIntervalMs, 10_000),
      });
      await remote.sync().catch((err: unknown) => log.warn({ err }, "reaching the remote appliances failed"));
      const remoteTimer = setInterval(() => {
        remote.sync().catch((err: unknown) => log.warn({ err }, "reaching the remote appliances failed"));
      }, 2000);
      remoteTimer.unref();
      const ops: OpsContext = {
        db,
        sites,
        replication,
        now: ctx.deps.now,
        log,
        heartbeatIntervalMs: ctx.deps.heartbeatIntervalMs,
      };
      const leaseMs =
        o.leaseMs ??
        (process.env.SWITCHBACK_JOB_LEASE_MS ? Number(process.env.SWITCHBACK_JOB_LEASE_MS) : undefined);
      const engine = new JobEngine({
        vdb: ctx.vdb,
        owner: `${hostname()}:${process.pid}`,
        kinds: withFaults([...itemJobKinds(ops), ...planJobKinds(ops, () => engine)]),
        log,
        ...(leaseMs !== undefined ? { leaseMs } : {}),
        // plan jobs wait for the item jobs they start: their own slots, so they never starve them
        lanes: [{ name: "plans", match: (kind) => kind.startsWith("plan-"), concurrency: 8 }],
        onFinished: jobFinishedAlerts(ctx.vdb, ctx.deps),
      });
      engine.start();
      ctx.deps.dr = {
        ops,
        engine,
        replication,
        machineEnv,
        appliancesChanged: () => remote.sync(),
        heard: (siteId) => {
          const site = ops.sites.get(siteId);
          if (site instanceof RemoteSite) site.heard();
        },
      };
      ctx.deps.assignmentFor = (machineId, hb, tokenSite) =>
        replication.assignmentFor(
          machineId,
          {
            ...(hb?.instanceId !== undefined ? { instanceId: hb.instanceId } : {}),
            ...(tokenSite != null ? { tokenSite } : {}),
          },
          {
            ...(hb?.results !== undefined ? { results: hb.results } : {}),
            ...(hb?.lastPoint !== undefined ? { lastPoint: hb.lastPoint } : {}),
          },
        );
      const retentionEveryMs =
        o.retentionEveryMs ??
        (process.env.SWITCHBACK_RETENTION_EVERY_MS
          ? Number(process.env.SWITCHBACK_RETENTION_EVERY_MS)
          : 300_000);
      const stopRetention = startRetention(ops, retentionEveryMs, log);
      return {
        async stop() {
          clearInterval(remoteTimer);
          stopRetention();
          await engine.stop();
          replication.stop();
          await stopAll();
        },
      };
    },
  };
}

/**
 * The RemoteSites of the sites whose appliance is a registered `switchback appliance` (one per site:
 * registration refuses a second one, and a site with an in-process appliance). `sync` reads the
 * registered appliances: a new one gets its RemoteSite; one that registered again (a restart: new
 * control URL and secret, new process-server ports) is updated and asked where its process servers
 * listen, which is what agents are told. Each RemoteSite is pushed its part of the replication
 * directory whenever that part changed (and again after a failed push, at the next refresh).
 */
function remoteSites(o: {
  lostAfterMs: number;
  db: OpsContext["db"];
  sites: Map<string, SiteRuntime>;
  replication: ReplicationService;
  log: OpsContext["log"];
}) {
  const { db, sites, replication, log } = o;
  const known = new Map<string, { site: RemoteSite; pushed: string; unsubscribe: () => void }>();
  const push = async (siteId: string) => {
    const e = known.get(siteId);
    if (e === undefined) return;
    const d = replication.directoryFor(siteId);
    const key = JSON.stringify({ ...d, asOf: "" });
    if (key === e.pushed) return;
    await e.site.pushDirectory(d);
    e.pushed = key;
  };
  const learnUrls = async (site: RemoteSite) => {
    try {
      for (const d of await site.refreshInfo()) {
        replication.serverUrls.set(d.id, d.url);
        await rememberProcessServerPort(db, d.id, Number(new URL(d.url).port));
      }
    } catch (err) {
      log.debug({ err, site: site.name }, "the remote appliance does not answer yet");
    }
  };
  const once = async () => {
    const rows = await db
      .selectFrom("appliances")
      .innerJoin("sites", "sites.id", "appliances.site_id")
      .select([
        "appliances.id",
        "appliances.name",
        "appliances.site_id",
        "appliances.control_url",
        "appliances.control_secret",
        "sites.name as site_name",
      ])
      .where("appliances.kind", "=", "remote")
      .where("appliances.control_url", "is not", null)
      .execute();
    for (const r of rows) {
      if (r.control_url === null || r.control_secret === null) continue;
      const current = sites.get(r.site_id);
      if (current !== undefined && current.kind === "in-process") continue;
      const datastores = await db
        .selectFrom("datastores")
        .select(["id", "name"])
        .where("appliance_id", "=", r.id)
        .execute();
      let e = known.get(r.site_id);
      if (e !== undefined && e.site.applianceId !== r.id) {
        e.unsubscribe();
        known.delete(r.site_id);
        e = undefined;
      }
      if (e === undefined) {
        const site = new RemoteSite({
          lostAfterMs: o.lostAfterMs,
          siteId: r.site_id,
          siteName: r.site_name,
          applianceId: r.id,
          applianceName: r.name,
          controlUrl: r.control_url,
          secret: r.control_secret,
          datastores,
        });
        const siteId = r.site_id;
        e = { site, pushed: "", unsubscribe: replication.onRefresh(siteId, () => push(siteId)) };
        known.set(siteId, e);
        sites.set(siteId, site);
        log.info({ site: r.site_name, appliance: r.name, url: r.control_url }, "remote appliance");
      } else if (e.site.update({ controlUrl: r.control_url, secret: r.control_secret, datastores })) {
        // it restarted: it has no directory yet, and its process servers listen anew (on the ports the
        // vault gave it back, usually: agents keep the URL they have until they are told another)
        e.pushed = "";
        log.info(
          { site: r.site_name, appliance: r.name, url: r.control_url },
          "remote appliance registered again",
        );
      }
      if (e.site.datastores().length < datastores.length) {
        await learnUrls(e.site);
        await push(r.site_id).catch(() => {});
      }
    }
  };
  let chain: Promise<void> = Promise.resolve();
  return {
    /** one sync at a time, in order */
    sync(): Promise<void> {
      const next = chain.then(once, once);
      chain = next.catch(() => {});
      return next;
    },
  };
}

/**
 * Test-only fault injection (like SWITCHBACK_FAULT_KILL_AT in the data plane): with
 * SWITCHBACK_FAULT_KILL_STEP=<kind>:<step>:<before|after>, the vault kills itself with SIGKILL just
 * before a step runs, or just after it ran but before the engine recorded it: the moment a restart
 * must resume from without doing anything twice.
 */
function withFaults(kinds: JobKind[]): JobKind[] {
  const spec = process.env.SWITCHBACK_FAULT_KILL_STEP;
  if (spec === undefined || spec === "") return kinds;
  const [kind, step, when] = spec.split(":");
  return kinds.map((k) =>
    k.kind !== kind
      ? k
      : {
          ...k,
          steps: (params: unknown) =>
            k.steps(params).map((s) =>
              s.name !== step
                ? s
                : {
                    ...s,
                    run: async (c: Parameters<typeof s.run>[0]) => {
                      if (when === "before") process.kill(process.pid, "SIGKILL");
                      const out = await s.run(c);
                      if (when === "after") process.kill(process.pid, "SIGKILL");
                      return out;
                    },
                  },
            ),
        },
  );
}

// startVault: one running vault. Opens the database (default sqlite:DATA/vault.db), migrates,
// bootstraps on first start, builds the HTTP API, listens (127.0.0.1:8470 by default), then starts the
// vault's services in order — the extension point for what runs beside the API: per-site runtimes
// (in-process process servers, compute providers), the job engine, the scheduler. close() stops the
// services in reverse order, then the API, then the database.
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from "fastify";
import { SwitchbackError } from "../domain/errors.ts";
import { alertsService } from "./alerts/evaluator.ts";
import { parseWebhookUrl, setAlertWebhook } from "./alerts/store.ts";
import { bootstrap } from "./bootstrap.ts";
import { openDatabase, type VaultDb } from "./db/database.ts";
import { migrateToLatest } from "./db/migrations.ts";
import { drService } from "./dr.ts";
import { buildVaultApp, type VaultRoutes } from "./http/app.ts";
import { DEFAULT_HEARTBEAT_INTERVAL_MS, noAssignment, type VaultDeps } from "./http/deps.ts";
import { heartbeatAppliance } from "./inventory/appliances.ts";

export const DEFAULT_PORT = 8470;
export const DEFAULT_HOST = "127.0.0.1";

/** What a service gets when the vault starts it. */
export interface VaultContext {
  /** the folder of the embedded defaults (vault.db, sites/<site>/…) */
  data: string;
  vdb: VaultDb;
  /** where the API listens, e.g. http://127.0.0.1:8470 (machines and agents are told this) */
  url: string;
  log: FastifyBaseLogger;
  /**
   * The object the routes read their seams from. A service may fill them, e.g. the job engine sets
   * `deps.assignmentFor` so that heartbeats answer with real assignments.
   */
  deps: VaultDeps;
}

/** Something that runs beside the API for the vault's lifetime. */
export interface VaultService {
  name: string;
  /** starts it; the returned stop() is called at close, in reverse order of start */
  start(ctx: VaultContext): Promise<{ stop(): Promise<void> }>;
}

/**
 * Heartbeats the in-process appliances while the vault runs: they live in this process, so they are
 * alive exactly as long as it is. A site runtime that hosts a real process server replaces this with
 * heartbeats from the server itself (so a failed server shows as lost).
 */
export const inProcessApplianceHeartbeat: VaultService = {
  name: "in-process appliance heartbeat",
  async start(ctx) {
    const beat = async () => {
      const rows = await ctx.vdb.db
        .selectFrom("appliances")
        .select("id")
        .where("kind", "=", "in-process")
        .execute();
      for (const r of rows) await heartbeatAppliance(ctx.vdb.db, r.id, { now: ctx.deps.now() });
    };
    await beat();
    const timer = setInterval(() => {
      beat().catch((err: unknown) => ctx.log.error({ err }, "in-process appliance heartbeat failed"));
    }, ctx.deps.heartbeatIntervalMs);
    timer.unref();
    return { stop: async () => clearInterval(timer) };
  },
};

/** The services every vault runs, in start order. Site runtimes and the job engine go here. */
export const DEFAULT_SERVICES: readonly VaultService[] = [
  inProcessApplianceHeartbeat,
  drService(),
  alertsService(),
];

export interface StartVaultOptions {
  data: string;
  /** database URL (default sqlite:DATA/vault.db) */
  db?: string;
  host?: string;
  /** 0 picks a free port (tests) */
  port?: number;
  /** Fastify's logger option; default: warnings and errors as JSON lines on stderr */
  log?: FastifyServerOptions["logger"];
  heartbeatIntervalMs?: number;
  now?: () => Date;
  services?: readonly VaultService[];
  routes?: readonly VaultRoutes[];
  /** the built portal served at / (default portal/dist) */
  portalDir?: string;
  /** where alert events are POSTed (stored in the settings; it replaces the one stored before) */
  alertWebhook?: string;
}

export interface RunningVault {
  url: string;
  /** the admin token in clear, on the first start only */
  adminToken: string | null;
  vdb: VaultDb;
  app: FastifyInstance;
  /** the seams the routes read (the same object services get) */
  deps: VaultDeps;
  close(): Promise<void>;
}

export async function startVault(o: StartVaultOptions): Promise<RunningVault> {
  const data = path.resolve(o.data);
  // checked before the first start's bootstrap, whose admin token is shown only if the start succeeds
  const alertWebhook = o.alertWebhook === undefined ? undefined : parseWebhookUrl(o.alertWebhook);
  await mkdir(data, { recursive: true });
  const vdb = await openDatabase(o.db ?? `sqlite:${path.join(data, "vault.db")}`);
  const started: { name: string; stop(): Promise<void> }[] = [];
  let app: FastifyInstance | null = null;
  const close = async () => {
    for (const s of started.reverse()) {
      try {
        await s.stop();
      } catch (err) {
        app?.log.error({ err }, `stopping ${s.name} failed`);
      }
    }
    started.length = 0;
    await app?.close();
    await vdb.close();
  };
  try {
    await migrateToLatest(vdb);
    const now = o.now ?? (() => new Date());
    const deps: VaultDeps = {
      vdb,
      now,
      heartbeatIntervalMs: o.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      assignmentFor: noAssignment,
    };
    app = await buildVaultApp(deps, {
      logger: o.log ?? { level: "warn", stream: process.stderr },
      ...(o.routes !== undefined ? { routes: o.routes } : {}),
      ...(o.portalDir !== undefined ? { portalDir: o.portalDir } : {}),
    });
    const host = o.host ?? DEFAULT_HOST;
    try {
      await app.listen({ host, port: o.port ?? DEFAULT_PORT });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === "EADDRINUSE" || e.code === "EACCES" || e.code === "EADDRNOTAVAIL") {
        throw new SwitchbackError(
          "VAULT_LISTEN_FAILED",
          `the vault cannot listen on ${host}:${o.port ?? DEFAULT_PORT} (${e.code}); choose another --port or --host, or stop what uses it`,
          { cause: err },
        );
      }
      throw err;
    }
    // bootstrap once the port is ours: a first start that cannot listen must not use up the admin
    // token, which is printed only by the start that creates it
    const { adminToken } = await bootstrap(vdb, { data, now: now() });
    if (alertWebhook !== undefined) await setAlertWebhook(vdb.db, alertWebhook);
    const a = app.server.address() as AddressInfo;
    const url = `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
    const ctx: VaultContext = { data, vdb, url, log: app.log, deps };
    for (const s of o.services ?? DEFAULT_SERVICES) {
      const handle = await s.start(ctx);
      started.push({ name: s.name, stop: handle.stop });
    }
    let closing: Promise<void> | null = null;
    return { url, adminToken, vdb, app, deps, close: () => (closing ??= close()) };
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
}

// The alerts service: every few seconds it observes the vault (src/vault/alerts/facts.ts), asks the
// alerts core which alerts to raise and clear, and applies that in one transaction; then the webhook
// sender delivers the events. A job that finishes is judged at once through the job engine's
// onFinished hook (jobFinishedAlerts), so a failure is raised without waiting for the next round.
import pino, { type Logger } from "pino";
import { decideAlerts } from "../../domain/alerts.ts";
import type { VaultDb } from "../db/database.ts";
import type { JobView } from "../jobs/types.ts";
import type { VaultService } from "../server.ts";
import { observe, readJobFacts } from "./facts.ts";
import { type Applied, applyAlertDecision } from "./store.ts";
import { AlertWebhook, type WebhookOptions } from "./webhook.ts";

export interface AlertsServiceOptions {
  /** how often the vault is evaluated (default: the heartbeat interval, between 250 ms and 5 s) */
  evaluateEveryMs?: number;
  webhook?: WebhookOptions;
}

function logger(): Logger {
  return pino(
    { level: process.env.SWITCHBACK_LOG_LEVEL ?? "warn", base: { role: "vault", part: "alerts" } },
    pino.destination(2),
  );
}

function report(log: Logger, a: Applied): void {
  for (const r of a.raised)
    log.warn({ alert: r.id, kind: r.kind, subject: r.subject }, `alert raised: ${r.message}`);
  for (const c of a.cleared)
    log.info({ alert: c.row.id, kind: c.row.kind, subject: c.row.subject }, `alert cleared: ${c.reason}`);
}

/** One evaluation of everything: the periodic round. */
export async function evaluateAlerts(
  vdb: VaultDb,
  o: { now: () => Date; heartbeatIntervalMs: number; log?: Logger },
): Promise<Applied> {
  return applyAlertDecision(vdb, o.now, async (trx, open, now) => {
    const { facts } = await observe(trx, {
      now,
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      // a retried job's alert is judged on the job's state now
      jobIds: open.filter((a) => a.kind === "job-failed").map((a) => a.subject.slice("job:".length)),
      problem: (what, err) =>
        o.log?.error({ err }, `${what} cannot be read; alerts about it are not evaluated`),
    });
    return decideAlerts(facts, open);
  });
}

/** Judges one job that just finished: raises job-failed on a failure, clears it when a retry succeeded. */
export async function evaluateJob(
  vdb: VaultDb,
  o: { now: () => Date; heartbeatIntervalMs: number },
  jobId: string,
): Promise<Applied> {
  return applyAlertDecision(
    vdb,
    o.now,
    async (trx, open, now) => {
      const jobs = await readJobFacts(trx, { failed: false, ids: [jobId] });
      return decideAlerts(
        {
          now,
          heartbeatIntervalMs: o.heartbeatIntervalMs,
          complete: false,
          items: [],
          machines: [],
          appliances: [],
          jobs,
        },
        open,
      );
    },
    { subject: `job:${jobId}` },
  );
}

/** The job engine's onFinished hook (src/vault/dr.ts): a finished job's alert at once. */
export function jobFinishedAlerts(
  vdb: VaultDb,
  clock: { now: () => Date; heartbeatIntervalMs: number },
): (job: JobView) => Promise<void> {
  const log = logger();
  return async (job) => {
    if (job.state !== "failed" && job.state !== "succeeded" && job.state !== "cancelled") return;
    report(log, await evaluateJob(vdb, clock, job.id));
  };
}

export function alertsService(o: AlertsServiceOptions = {}): VaultService {
  return {
    name: "alerts",
    async start(ctx) {
      const log = logger();
      const every = o.evaluateEveryMs ?? Math.min(5000, Math.max(250, ctx.deps.heartbeatIntervalMs));
      const webhook = new AlertWebhook({ db: ctx.vdb.db, now: ctx.deps.now, log, ...o.webhook });
      webhook.start();
      let running: Promise<void> | null = null;
      const round = () => {
        if (running !== null) return; // the previous round is still going: skip this tick
        running = evaluateAlerts(ctx.vdb, {
          now: ctx.deps.now,
          heartbeatIntervalMs: ctx.deps.heartbeatIntervalMs,
          log,
        })
          .then((a) => {
            report(log, a);
            if (a.raised.length > 0 || a.cleared.length > 0) webhook.kick();
          })
          .catch((err: unknown) => log.error({ err }, "evaluating alerts failed"))
          .finally(() => {
            running = null;
          });
      };
      round();
      const timer = setInterval(round, every);
      timer.unref();
      return {
        async stop() {
          clearInterval(timer);
          await running;
          await webhook.stop();
        },
      };
    },
  };
}

// GET /metrics: the vault's figures in Prometheus' text format (prom-client), read from the database
// at each scrape, so every vault process of one database answers the same and a restart loses
// nothing. Per replicated item: RPO and its threshold, the bytes still to copy of an initial
// replication or resync, the agent's throughput; jobs by kind and state and their durations; open
// alerts by kind; agents by liveness. Like every route it needs a token (admin); Prometheus sends it
// with `authorization: {type: Bearer, credentials_file: …}` in its scrape config.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import { Gauge, Histogram, Registry } from "prom-client";
import { ALERT_KINDS } from "../domain/alerts.ts";
import { liveness, MISSED_HEARTBEATS_LOST, replicationProgress, rpo } from "../domain/health.ts";
import { observe } from "./alerts/facts.ts";
import type { VaultDatabase } from "./db/schema.ts";
import type { VaultDeps } from "./http/deps.ts";
import { route } from "./http/route.ts";

/** Buckets of job durations in seconds: from a quick commit to a long initial replication. */
export const JOB_DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];

const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";

/** "primary → recovery" as a label value that is easy to type in PromQL: "primary->recovery". */
function directionLabel(d: string): string {
  return d.replace(" → ", "->");
}

class VaultMetrics {
  readonly registry = new Registry();
  readonly #rpo: Gauge;
  readonly #threshold: Gauge;
  readonly #backlog: Gauge;
  readonly #throughput: Gauge;
  readonly #jobs: Gauge;
  readonly #durations: Histogram;
  readonly #alerts: Gauge;
  readonly #agents: Gauge;

  constructor() {
    const registers = [this.registry];
    this.#rpo = new Gauge({
      name: "switchback_item_rpo_seconds",
      help: "Age of the newest recovery point of a replicating item (before the first one: time since protection started)",
      labelNames: ["item", "direction"],
      registers,
    });
    this.#threshold = new Gauge({
      name: "switchback_item_rpo_threshold_seconds",
      help: "RPO alert threshold of the item's policy",
      labelNames: ["item", "direction"],
      registers,
    });
    this.#backlog = new Gauge({
      name: "switchback_replication_backlog_bytes",
      help: "Bytes still to copy in an initial replication or resync (0 once protected)",
      labelNames: ["item"],
      registers,
    });
    this.#throughput = new Gauge({
      name: "switchback_replication_throughput_bytes_per_second",
      help: "Rate of the copy under way as the agent reports it (0 when none is under way)",
      labelNames: ["item"],
      registers,
    });
    this.#jobs = new Gauge({
      name: "switchback_jobs_total",
      help: "Jobs stored, by kind and state (a gauge: a retried job moves from failed to succeeded)",
      labelNames: ["kind", "state"],
      registers,
    });
    this.#durations = new Histogram({
      name: "switchback_job_duration_seconds",
      help: "Time from start to finish of the jobs that succeeded or failed",
      labelNames: ["kind"],
      buckets: JOB_DURATION_BUCKETS,
      registers,
    });
    this.#alerts = new Gauge({
      name: "switchback_alerts_open",
      help: "Open alerts by kind",
      labelNames: ["kind"],
      registers,
    });
    this.#agents = new Gauge({
      name: "switchback_agents",
      help: "Machines by the liveness of their agent (unknown: never reported)",
      labelNames: ["liveness"],
      registers,
    });
  }

  /** Reads the figures; the caller renders them before the next refresh (scrapes are serialised). */
  async refresh(db: Kysely<VaultDatabase>, now: Date, heartbeatIntervalMs: number): Promise<void> {
    const { items } = await observe(db, { now, heartbeatIntervalMs });
    const jobCounts = await db
      .selectFrom("jobs")
      .select(["kind", "state", (eb) => eb.fn.countAll<number>().as("n")])
      .groupBy(["kind", "state"])
      .execute();
    const finished = await db
      .selectFrom("jobs")
      .select(["kind", "started_at", "finished_at"])
      .where("state", "in", ["succeeded", "failed"])
      .where("started_at", "is not", null)
      .where("finished_at", "is not", null)
      .execute();
    const alerts = await db
      .selectFrom("alerts")
      .select(["kind", (eb) => eb.fn.countAll<number>().as("n")])
      .where("cleared_at", "is", null)
      .groupBy("kind")
      .execute();
    const machines = await db.selectFrom("machines").select("last_heartbeat_at").execute();

    // everything read: now replace the figures in one synchronous go
    for (const m of [this.#rpo, this.#threshold, this.#backlog, this.#throughput, this.#jobs, this.#alerts])
      m.reset();
    this.#durations.reset();
    this.#agents.reset();
    for (const it of items) {
      if (it.phase !== "protected" && it.phase !== "initial-replication") continue;
      const labels = { item: it.name, direction: directionLabel(it.direction) };
      const r = rpo({
        now,
        lastPointAt: it.lastPointAt,
        since: it.since,
        thresholdSeconds: it.rpoThresholdSeconds,
      });
      if (r.rpoSeconds !== null) this.#rpo.set(labels, r.rpoSeconds);
      this.#threshold.set(labels, it.rpoThresholdSeconds);
      const copying = it.phase === "initial-replication" || it.resyncRequired;
      const c = it.copy;
      this.#backlog.set(
        { item: it.name },
        copying && c !== null ? Math.max(0, c.bytesTotal - c.bytesDone) : 0,
      );
      const fresh =
        c !== null &&
        c.bytesDone < c.bytesTotal &&
        now.getTime() - c.at.getTime() <= MISSED_HEARTBEATS_LOST * heartbeatIntervalMs;
      const rate = fresh
        ? replicationProgress({
            now,
            bytesTotal: c.bytesTotal,
            samples: it.progress,
            reportedBytesPerSecond: c.bytesPerSecond,
          }).bytesPerSecond
        : 0;
      this.#throughput.set({ item: it.name }, rate);
    }
    for (const j of jobCounts) this.#jobs.set({ kind: j.kind, state: j.state }, Number(j.n));
    for (const j of finished) {
      const s = (Date.parse(j.finished_at as string) - Date.parse(j.started_at as string)) / 1000;
      if (Number.isFinite(s)) this.#durations.observe({ kind: j.kind }, Math.max(0, s));
    }
    for (const k of ALERT_KINDS) this.#alerts.set({ kind: k }, 0);
    for (const a of alerts) this.#alerts.set({ kind: a.kind }, Number(a.n));
    const agents = { online: 0, lost: 0, unknown: 0 };
    for (const m of machines) {
      const at = m.last_heartbeat_at === null ? null : new Date(m.last_heartbeat_at);
      agents[liveness(now, at, heartbeatIntervalMs).state]++;
    }
    for (const [state, n] of Object.entries(agents)) this.#agents.set({ liveness: state }, n);
  }
}

const MetricsResponse = Type.Unsafe<string | unknown[]>({
  description:
    "the figures in Prometheus' text exposition format (or prom-client's JSON with Accept: application/json)",
  content: {
    "text/plain; version=0.0.4": { schema: { type: "string" } },
    "application/json": {
      schema: { type: "array", items: { type: "object", additionalProperties: true } },
    },
  },
});

export function metricsRoutes(app: FastifyInstance, deps: VaultDeps): void {
  const metrics = new VaultMetrics();
  // one scrape at a time: each renders the figures its own refresh set
  let last: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const p = last.then(f, f);
    last = p.catch(() => {});
    return p;
  };
  route(app, {
    method: "GET",
    url: "/metrics",
    operationId: "getMetrics",
    tags: ["metrics"],
    summary: "The vault's metrics for Prometheus (RPO, backlog, throughput, jobs, alerts, agents)",
    description:
      'Needs an admin bearer token like every route. Prometheus scrape config: `{job_name: switchback, metrics_path: /metrics, authorization: {type: Bearer, credentials_file: /etc/prometheus/switchback-token}, static_configs: [{targets: ["vault:8470"]}]}`.',
    response: MetricsResponse,
    handler: async (req, reply) =>
      serial(async () => {
        await metrics.refresh(deps.vdb.db, deps.now(), deps.heartbeatIntervalMs);
        const json = /\bapplication\/json\b/.test(req.headers.accept ?? "");
        if (json) {
          reply.type("application/json; charset=utf-8");
          return (await metrics.registry.getMetricsAsJSON()) as unknown[];
        }
        reply.type(PROMETHEUS_TEXT);
        return metrics.registry.metrics();
      }),
  });
}

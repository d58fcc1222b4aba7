// Health of what the vault watches, computed from plain data: liveness of agents and appliances from
// their last heartbeat, an item's RPO against its policy's threshold, and the progress of an initial
// replication from the agent's samples. Pure: `now` is always a parameter, there is no clock here.

/** How many heartbeat intervals may pass in silence before a machine or appliance counts as lost. */
export const MISSED_HEARTBEATS_LOST = 3;
/** An item's RPO turns from healthy to warning at this fraction of its policy's threshold. */
export const RPO_WARNING_RATIO = 0.8;

export type Liveness = "online" | "lost" | "unknown";

export interface LivenessReport {
  state: Liveness;
  /** milliseconds since the last heartbeat (null: never heard from) */
  silentForMs: number | null;
}

/**
 * Online while the last heartbeat is at most `missed` intervals old; lost after that; unknown when
 * nothing was ever heard (a machine that was defined but never ran its agent).
 */
export function liveness(
  now: Date,
  lastHeartbeatAt: Date | null,
  intervalMs: number,
  missed = MISSED_HEARTBEATS_LOST,
): LivenessReport {
  if (lastHeartbeatAt === null) return { state: "unknown", silentForMs: null };
  // a heartbeat stamped slightly in the future (clock skew between processes) counts as just now
  const silentForMs = Math.max(0, now.getTime() - lastHeartbeatAt.getTime());
  return { state: silentForMs > missed * intervalMs ? "lost" : "online", silentForMs };
}

export type RpoStatus = "healthy" | "warning" | "critical" | "unknown";

export interface RpoReport {
  /** seconds between now and the newest recovery point (null: no point and no start time) */
  rpoSeconds: number | null;
  status: RpoStatus;
}

/**
 * The RPO is the age of the newest recovery point. Before the first point it is measured from
 * `since` (when protection started), so an item that never produced a point still turns critical.
 * Healthy below 80 % of the threshold, warning up to the threshold, critical over it.
 */
export function rpo(o: {
  now: Date;
  lastPointAt: Date | null;
  since?: Date | null;
  thresholdSeconds: number;
}): RpoReport {
  const from = o.lastPointAt ?? o.since ?? null;
  if (from === null) return { rpoSeconds: null, status: "unknown" };
  const rpoSeconds = Math.max(0, (o.now.getTime() - from.getTime()) / 1000);
  let status: RpoStatus = "healthy";
  if (rpoSeconds > o.thresholdSeconds) status = "critical";
  else if (rpoSeconds >= o.thresholdSeconds * RPO_WARNING_RATIO) status = "warning";
  return { rpoSeconds, status };
}

export interface ProgressSample {
  at: Date;
  bytesDone: number;
}

export interface ProgressReport {
  bytesDone: number;
  bytesTotal: number;
  /** 0..100 */
  percent: number;
  /** measured from the samples; the agent's own figure when there is only one sample */
  bytesPerSecond: number;
  /** seconds until done at the current rate (null: no rate yet); 0 when done */
  etaSeconds: number | null;
  /** when the newest sample was taken */
  sampledAt: Date | null;
}

/** Samples older than this before the newest one do not count toward the throughput. */
export const THROUGHPUT_WINDOW_MS = 60_000;

/**
 * Progress of a copy from the agent's samples (any order). Throughput is the bytes done between the
 * oldest and the newest sample within the last minute of sampling, divided by the time between them;
 * a single sample falls back to the rate the agent reported. `now` makes the ETA count down between
 * samples: the time since the newest sample is assumed spent at the same rate.
 */
export function replicationProgress(o: {
  now: Date;
  bytesTotal: number;
  samples: readonly ProgressSample[];
  reportedBytesPerSecond?: number | null;
}): ProgressReport {
  const samples = [...o.samples].sort((a, b) => a.at.getTime() - b.at.getTime());
  const newest = samples[samples.length - 1];
  const bytesTotal = Math.max(0, o.bytesTotal);
  if (newest === undefined) {
    return {
      bytesDone: 0,
      bytesTotal,
      percent: bytesTotal === 0 ? 100 : 0,
      bytesPerSecond: 0,
      etaSeconds: bytesTotal === 0 ? 0 : null,
      sampledAt: null,
    };
  }
  const bytesDone = Math.min(Math.max(0, newest.bytesDone), bytesTotal);
  const windowStart = newest.at.getTime() - THROUGHPUT_WINDOW_MS;
  const oldest = samples.find((s) => s.at.getTime() >= windowStart)!;
  const spanS = (newest.at.getTime() - oldest.at.getTime()) / 1000;
  let bytesPerSecond =
    spanS > 0 ? Math.max(0, newest.bytesDone - oldest.bytesDone) / spanS : (o.reportedBytesPerSecond ?? 0);
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) bytesPerSecond = 0;
  const percent = bytesTotal === 0 ? 100 : (bytesDone / bytesTotal) * 100;
  const remaining = bytesTotal - bytesDone;
  let etaSeconds: number | null = null;
  if (remaining === 0) etaSeconds = 0;
  else if (bytesPerSecond > 0) {
    const sinceSampleS = Math.max(0, (o.now.getTime() - newest.at.getTime()) / 1000);
    etaSeconds = Math.max(0, remaining / bytesPerSecond - sinceSampleS);
  }
  return { bytesDone, bytesTotal, percent, bytesPerSecond, etaSeconds, sampledAt: newest.at };
}

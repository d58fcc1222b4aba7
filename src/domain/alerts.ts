// Which alerts to raise and which to clear, from what the vault observed and the alerts already open.
// Pure: the facts (with `now`) in, a decision out. Invariants the tests hold us to: at most one open
// alert per (kind, subject); deciding again on the decision's result raises and clears nothing
// (idempotent); an open alert whose condition is gone is cleared, one whose condition still holds or
// cannot be judged yet (a retried job still running) is left alone.
import { formatDuration } from "./duration.ts";
import { liveness, MISSED_HEARTBEATS_LOST, type ProgressSample, rpo } from "./health.ts";
import type { Phase } from "./lifecycle.ts";

export const ALERT_KINDS = [
  "rpo-breach",
  "replication-stalled",
  "agent-lost",
  "appliance-lost",
  "job-failed",
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export type AlertSeverity = "warning" | "critical";

/** What an alert is about: "item:<id>", "machine:<id>", "appliance:<id>" or "job:<id>". */
export type AlertSubject = `${"item" | "machine" | "appliance" | "job"}:${string}`;

/**
 * Replication counts as stalled after this many crash-consistent periods without progress or a new
 * point: one late point is normal (a long incremental), three in a row are not.
 */
export const STALLED_AFTER_PERIODS = 3;

export interface ItemFacts {
  id: string;
  name: string;
  phase: Phase;
  /** "primary → recovery" */
  direction: string;
  /** when the item entered its current state: before the first point, silence counts from here */
  since: Date;
  lastPointAt: Date | null;
  rpoThresholdSeconds: number;
  crashEverySeconds: number;
  /** the agent's samples of the copy under way (from its heartbeats), oldest first or any order */
  progress: readonly ProgressSample[];
}

export interface MachineFacts {
  id: string;
  name: string;
  lastHeartbeatAt: Date | null;
  /** names of the items that replicate from this machine now (agent-lost matters only then) */
  replicatingItems: readonly string[];
  /** since when the vault expects the agent to report: a silent agent is lost 3 intervals after */
  watchedSince: Date;
}

export interface ApplianceFacts {
  id: string;
  name: string;
  site: string;
  lastHeartbeatAt: Date | null;
  createdAt: Date;
}

export interface JobFacts {
  id: string;
  kind: string;
  state: "queued" | "running" | "waiting" | "succeeded" | "failed" | "cancelled";
  itemName: string | null;
  error: { code: string; message: string } | null;
  /** a later job of the same kind on the same item or plan that succeeded (the failure is behind us) */
  supersededBy?: string | null;
}

export interface AlertFacts {
  now: Date;
  /** how often agents and appliances report; 3 missed reports count as lost */
  heartbeatIntervalMs: number;
  /**
   * true when the facts name every subject the vault has (the periodic evaluation): an open alert
   * about a subject that is not there any more is cleared. false for a partial look (one job that
   * just finished): only the subjects named are judged.
   */
  complete: boolean;
  items: readonly ItemFacts[];
  machines: readonly MachineFacts[];
  appliances: readonly ApplianceFacts[];
  jobs: readonly JobFacts[];
}

export interface OpenAlert {
  id: string;
  kind: AlertKind;
  subject: string;
  /** ISO time; among duplicates the oldest is kept */
  raisedAt: string;
}

export interface AlertToRaise {
  kind: AlertKind;
  subject: AlertSubject;
  severity: AlertSeverity;
  message: string;
}

export interface AlertToClear {
  id: string;
  kind: AlertKind;
  subject: string;
  /** why, in words (for the log) */
  reason: string;
}

export interface AlertDecision {
  raise: AlertToRaise[];
  clear: AlertToClear[];
}

export const SEVERITY: Record<AlertKind, AlertSeverity> = {
  "rpo-breach": "critical",
  "replication-stalled": "warning",
  "agent-lost": "critical",
  "appliance-lost": "critical",
  "job-failed": "critical",
};

export function isAlertKind(s: string): s is AlertKind {
  return (ALERT_KINDS as readonly string[]).includes(s);
}

function isReplicating(phase: Phase): boolean {
  return phase === "protected" || phase === "initial-replication";
}

const key = (kind: string, subject: string) => `${kind} ${subject}`;
/** A duration for a message: tenths of a second under a minute (4.3s is over a 4s threshold, "4s" is not). */
function dur(ms: number): string {
  const v = Math.max(0, ms);
  if (v >= 60_000 || v === 0) return formatDuration(v);
  const s = Math.round(v / 100) / 10;
  return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
}

/**
 * When the agent last showed progress on the copy under way: the newest sample that moved forward
 * from the one before it, or the only sample of a copy that just started. Samples that repeat one
 * figure show no progress at all.
 */
export function lastProgressAt(samples: readonly ProgressSample[]): Date | null {
  const s = [...samples].sort((a, b) => a.at.getTime() - b.at.getTime());
  if (s.length === 1) return s[0]!.at;
  for (let i = s.length - 1; i >= 1; i--) if (s[i]!.bytesDone > s[i - 1]!.bytesDone) return s[i]!.at;
  return null;
}

/** How long an item may go without progress or a new point before its replication counts as stalled. */
export function stalledAfterMs(crashEverySeconds: number, heartbeatIntervalMs: number): number {
  // progress is seen only on heartbeats, so never less than the agent's own lost window
  return Math.max(
    STALLED_AFTER_PERIODS * crashEverySeconds * 1000,
    MISSED_HEARTBEATS_LOST * heartbeatIntervalMs,
  );
}

export type Judgement =
  | { type: "firing"; alert: AlertToRaise }
  | { type: "resolved"; reason: string }
  | { type: "undecided" };

export interface Judged {
  kind: AlertKind;
  subject: AlertSubject;
  j: Judgement;
}

function judgeItem(f: AlertFacts, it: ItemFacts): Judged[] {
  const subject: AlertSubject = `item:${it.id}`;
  const now = f.now.getTime();
  const out: Judged[] = [];
  const notReplicating: Judgement = { type: "resolved", reason: `the item is ${it.phase}, not replicating` };

  // RPO: judged once the item is protected (during initial replication there is no point to age yet;
  // a copy that does not move is what replication-stalled watches)
  if (it.phase !== "protected") out.push({ kind: "rpo-breach", subject, j: notReplicating });
  else {
    const r = rpo({
      now: f.now,
      lastPointAt: it.lastPointAt,
      since: it.since,
      thresholdSeconds: it.rpoThresholdSeconds,
    });
    const breached = r.rpoSeconds !== null && r.rpoSeconds > it.rpoThresholdSeconds;
    out.push({
      kind: "rpo-breach",
      subject,
      j: breached
        ? {
            type: "firing",
            alert: {
              kind: "rpo-breach",
              subject,
              severity: SEVERITY["rpo-breach"],
              message: `item ${it.name} (${it.direction}): RPO ${dur((r.rpoSeconds ?? 0) * 1000)} is over its policy's threshold of ${dur(it.rpoThresholdSeconds * 1000)}; ${it.lastPointAt === null ? "it has no recovery point" : `the newest recovery point is from ${it.lastPointAt.toISOString()}`}; check the machine's agent and the target's process server`,
            },
          }
        : { type: "resolved", reason: `RPO ${dur((r.rpoSeconds ?? 0) * 1000)} is within the threshold` },
    });
  }

  if (!isReplicating(it.phase)) out.push({ kind: "replication-stalled", subject, j: notReplicating });
  else {
    const progressAt = lastProgressAt(it.progress);
    const initial = it.phase === "initial-replication";
    // before the first point (initial replication) the copy's progress is all there is to go by
    const marks = [it.lastPointAt, progressAt, initial || it.lastPointAt === null ? it.since : null];
    const last = Math.max(...marks.map((d) => d?.getTime() ?? Number.NEGATIVE_INFINITY));
    const limit = stalledAfterMs(it.crashEverySeconds, f.heartbeatIntervalMs);
    const quietMs = now - last;
    out.push({
      kind: "replication-stalled",
      subject,
      j:
        quietMs > limit
          ? {
              type: "firing",
              alert: {
                kind: "replication-stalled",
                subject,
                severity: SEVERITY["replication-stalled"],
                message: initial
                  ? `item ${it.name} (${it.direction}): initial replication has made no progress for ${dur(quietMs)} (limit ${dur(limit)}); check that the machine runs and its agent reaches the target's process server`
                  : `item ${it.name} (${it.direction}): no replication progress and no new recovery point for ${dur(quietMs)}, more than ${STALLED_AFTER_PERIODS} × its crash-consistent frequency of ${dur(it.crashEverySeconds * 1000)}; check that the machine runs and its agent reaches the target's process server`,
              },
            }
          : { type: "resolved", reason: "replication made progress" },
    });
  }
  return out;
}

function judgeMachine(f: AlertFacts, m: MachineFacts): Judged {
  const subject: AlertSubject = `machine:${m.id}`;
  if (m.replicatingItems.length === 0) {
    return { kind: "agent-lost", subject, j: { type: "resolved", reason: "no item replicates from it" } };
  }
  const l = liveness(f.now, m.lastHeartbeatAt ?? m.watchedSince, f.heartbeatIntervalMs);
  if (l.state !== "lost") {
    return { kind: "agent-lost", subject, j: { type: "resolved", reason: "its agent reports again" } };
  }
  return {
    kind: "agent-lost",
    subject,
    j: {
      type: "firing",
      alert: {
        kind: "agent-lost",
        subject,
        severity: SEVERITY["agent-lost"],
        message: `machine ${m.name}: its agent has ${m.lastHeartbeatAt === null ? "never reported" : `not reported for ${dur(l.silentForMs ?? 0)}`} (${MISSED_HEARTBEATS_LOST} heartbeat intervals of ${dur(f.heartbeatIntervalMs)} are allowed) while ${m.replicatingItems.length === 1 ? `item ${m.replicatingItems[0]} replicates` : `items ${m.replicatingItems.join(", ")} replicate`} from it; check that the machine runs and its agent reaches the vault`,
      },
    },
  };
}

function judgeAppliance(f: AlertFacts, a: ApplianceFacts): Judged {
  const subject: AlertSubject = `appliance:${a.id}`;
  const l = liveness(f.now, a.lastHeartbeatAt ?? a.createdAt, f.heartbeatIntervalMs);
  if (l.state !== "lost") {
    return { kind: "appliance-lost", subject, j: { type: "resolved", reason: "it heartbeats again" } };
  }
  return {
    kind: "appliance-lost",
    subject,
    j: {
      type: "firing",
      alert: {
        kind: "appliance-lost",
        subject,
        severity: SEVERITY["appliance-lost"],
        message: `appliance ${a.name} at ${a.site}: ${a.lastHeartbeatAt === null ? "no heartbeat since it was added" : "no heartbeat"} for ${dur(l.silentForMs ?? 0)} (${MISSED_HEARTBEATS_LOST} intervals of ${dur(f.heartbeatIntervalMs)} are allowed); check that it runs and reaches the vault`,
      },
    },
  };
}

function judgeJob(j: JobFacts): Judged {
  const subject: AlertSubject = `job:${j.id}`;
  switch (j.state) {
    case "failed":
      if (j.supersededBy) {
        return {
          kind: "job-failed",
          subject,
          j: { type: "resolved", reason: `a later ${j.kind} job (${j.supersededBy}) succeeded` },
        };
      }
      return {
        kind: "job-failed",
        subject,
        j: {
          type: "firing",
          alert: {
            kind: "job-failed",
            subject,
            severity: SEVERITY["job-failed"],
            message: `job ${j.id} (${j.kind}${j.itemName === null ? "" : ` of item ${j.itemName}`}) failed${j.error === null ? "" : `: ${j.error.code}: ${j.error.message}`}; fix the cause and retry it ('switchback jobs retry ${j.id}')`,
          },
        },
      };
    case "succeeded":
      return {
        kind: "job-failed",
        subject,
        j: { type: "resolved", reason: "the job was retried and succeeded" },
      };
    case "cancelled":
      return { kind: "job-failed", subject, j: { type: "resolved", reason: "the job was cancelled" } };
    case "queued":
    case "running":
    case "waiting":
      // retried and not finished yet: the failure stands until the retry succeeds
      return { kind: "job-failed", subject, j: { type: "undecided" } };
    default: {
      const never: never = j.state;
      throw new Error(`unhandled job state ${String(never)}`);
    }
  }
}

/** Every condition the facts let us judge, one per (kind, subject). */
export function judge(f: AlertFacts): Judged[] {
  return [
    ...f.items.flatMap((it) => judgeItem(f, it)),
    ...f.machines.map((m) => judgeMachine(f, m)),
    ...f.appliances.map((a) => judgeAppliance(f, a)),
    ...f.jobs.map(judgeJob),
  ];
}

/** The alerts to raise and to clear, given the facts and the alerts open now. */
export function decideAlerts(f: AlertFacts, open: readonly OpenAlert[]): AlertDecision {
  const judged = new Map<string, Judged>();
  for (const x of judge(f)) if (!judged.has(key(x.kind, x.subject))) judged.set(key(x.kind, x.subject), x);

  const raise: AlertToRaise[] = [];
  const clear: AlertToClear[] = [];
  const kept = new Set<string>();
  // oldest first, so that of two open alerts for one condition (a race) the first raised survives
  const byAge = [...open].sort((a, b) =>
    a.raisedAt === b.raisedAt ? (a.id < b.id ? -1 : 1) : a.raisedAt < b.raisedAt ? -1 : 1,
  );
  for (const a of byAge) {
    const k = key(a.kind, a.subject);
    if (kept.has(k)) {
      clear.push({
        id: a.id,
        kind: a.kind,
        subject: a.subject,
        reason: "a duplicate of an older open alert",
      });
      continue;
    }
    const x = judged.get(k);
    if (x === undefined) {
      if (f.complete) {
        clear.push({ id: a.id, kind: a.kind, subject: a.subject, reason: "its subject is gone" });
      } else kept.add(k);
      continue;
    }
    if (x.j.type === "resolved") {
      clear.push({ id: a.id, kind: a.kind, subject: a.subject, reason: x.j.reason });
    } else kept.add(k);
  }
  for (const [k, x] of judged) if (x.j.type === "firing" && !kept.has(k)) raise.push(x.j.alert);
  return { raise, clear };
}

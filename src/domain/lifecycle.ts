// The lifecycle of a replicated item: which operation is allowed in which state and direction, and
// how the item's state moves as an operation's job reaches its milestones. Pure: state and facts in,
// a decision or a named refusal out. Invariants the property tests hold us to:
//  - there is always a copy of the machine: a machine's disks somewhere, or recovery points;
//  - at most one production copy of the machine runs and is accepted by replication (generation
//    fencing: the generation grows when a failover starts, before anything irreversible);
//  - a drill exists only while the item is protected, and never touches replication.
import type { PointId } from "./ids.ts";
import { assertNever, needsDrain, type PointRequest } from "./point-selection.ts";
import { type Refusal, refuse } from "./refusal.ts";

export type Phase =
  | "enabling"
  | "initial-replication"
  | "protected"
  | "failing-over"
  | "failed-over"
  | "failover-committed"
  | "reprotecting"
  | "disabled";

export const PHASES: readonly Phase[] = [
  "enabling",
  "initial-replication",
  "protected",
  "failing-over",
  "failed-over",
  "failover-committed",
  "reprotecting",
  "disabled",
];

export interface Drill {
  point: PointId;
  startedAtMs: number;
}

export interface ItemState {
  phase: Phase;
  /** the site the machine was first protected from; a failover towards it is a failback */
  home: string;
  /** replication direction: the machine runs at source and is copied to target */
  source: string;
  target: string;
  /** grows by one when a failover starts; replication is accepted only for the current one */
  generation: number;
  /** the point the item failed (or is failing) over to */
  failoverPoint: PointId | null;
  drill: Drill | null;
}

export type OperationName =
  | "test-failover"
  | "test-failover-cleanup"
  | "failover"
  | "change-point"
  | "commit"
  | "reprotect"
  | "disable";

export const OPERATIONS: readonly OperationName[] = [
  "test-failover",
  "test-failover-cleanup",
  "failover",
  "change-point",
  "commit",
  "reprotect",
  "disable",
];

export type Operation =
  | {
      op: "test-failover";
      point: PointRequest;
      /** the test network the copy joins, when the vault knows its name (named in the decision) */
      network?: string;
    }
  | { op: "test-failover-cleanup"; notes: string }
  | { op: "failover"; point: PointRequest; shutdownSource: boolean; planned: boolean }
  | { op: "change-point"; point: PointRequest }
  | { op: "commit" }
  | { op: "reprotect"; location: "original" | "alternate" }
  | { op: "disable" };

/** The machine as the vault last saw it at a site. */
export type MachinePresence = "running" | "stopped" | "unreachable" | "gone";

/** What the shell knows about the world when it asks. */
export interface OperationFacts {
  /** recovery points held at the target for the current generation */
  pointCount: number;
  /** the machine at the source site (the production copy while protected) */
  sourceMachine: MachinePresence;
  /** the recovered machine at the target site after a failover */
  recoveredMachine: MachinePresence | "none";
  /** the disks the machine left at the site a reprotect would return to are still there */
  disksAtReturnSite: boolean;
}

/** What an allowed operation will do, in words the API, CLI and portal show before it starts. */
export interface Decision {
  op: OperationName;
  /** "failover" or "failback" (a failover towards the home site) for the failover operation */
  label: string;
  /** "primary → recovery" */
  direction: string;
  /** drain the agent and cut a point before selecting (`latest`) */
  drain: boolean;
  /** try to shut the source machine down first (best effort) */
  shutdownSource: boolean;
  /** once started, the operation cannot be cancelled (replication stops first) */
  irreversible: boolean;
  /** one line per consequence an operator must accept */
  consequences: string[];
}

const NOTES_MAX = 4000;

export function isFailback(s: ItemState): boolean {
  return s.target === s.home;
}

export function directionOf(s: ItemState): string {
  return `${s.source} → ${s.target}`;
}

/** Decides whether `o` may start on an item in state `s`. */
export function decide(s: ItemState, o: Operation, f: OperationFacts): Decision | Refusal {
  const dir = directionOf(s);
  const base = { direction: dir, drain: false, shutdownSource: false, irreversible: false };
  switch (o.op) {
    case "test-failover": {
      if (s.phase !== "protected") return notIn(s, o.op, "a protected item");
      if (s.drill !== null) {
        return refuse(
          "DRILL_ALREADY_ACTIVE",
          `a test failover to point ${s.drill.point} is still running; clean it up first (test-failover-cleanup)`,
        );
      }
      if (f.pointCount === 0 && !needsDrain(o.point)) return noPoints();
      return {
        ...base,
        op: o.op,
        label: "test failover",
        drain: needsDrain(o.point),
        consequences: [
          `starts a copy of the machine at ${s.target} on ${o.network !== undefined ? `test network ${o.network}` : "its test network"}; replication goes on`,
        ],
      };
    }
    case "test-failover-cleanup": {
      if (s.drill === null) {
        return refuse("DRILL_NOT_ACTIVE", "the item has no test failover to clean up");
      }
      if (o.notes.length > NOTES_MAX) {
        return refuse(
          "NOTES_TOO_LONG",
          `notes are ${o.notes.length} characters; keep them under ${NOTES_MAX}`,
        );
      }
      return {
        ...base,
        op: o.op,
        label: "test failover cleanup",
        consequences: [`deletes the test copy of the machine at ${s.target} and its disks`],
      };
    }
    case "failover": {
      const label = isFailback(s) ? "failback" : "failover";
      // a failover that failed after it started is resumed by asking again
      if (s.phase === "failing-over") {
        return {
          ...base,
          op: o.op,
          label,
          irreversible: true,
          consequences: [`resumes the ${label} to ${s.target} where it stopped`],
        };
      }
      if (s.phase === "initial-replication") {
        return refuse(
          "FAILOVER_INITIAL_REPLICATION",
          `initial replication ${dir} has not finished; the item has no complete recovery point to ${label} to yet (see 'items show')`,
        );
      }
      if (s.phase !== "protected") return notIn(s, o.op, "a protected item");
      if (s.drill !== null) {
        return refuse(
          "FAILOVER_DRILL_ACTIVE",
          `a test failover to point ${s.drill.point} is still running; clean it up first (test-failover-cleanup)`,
        );
      }
      const sourceUp = f.sourceMachine === "running" || f.sourceMachine === "stopped";
      if (o.planned) {
        if (f.sourceMachine !== "running") {
          return refuse(
            "FAILOVER_PLANNED_SOURCE_NOT_RUNNING",
            `a planned ${label} drains the running machine at ${s.source}, which is ${f.sourceMachine}; run an unplanned ${label} with --point latest-processed`,
          );
        }
        if (o.point.kind !== "latest") {
          return refuse(
            "FAILOVER_PLANNED_POINT",
            `a planned ${label} always uses the latest point (drained, no data loss); leave out --point or run an unplanned ${label}`,
          );
        }
      }
      if (needsDrain(o.point) && f.sourceMachine !== "running") {
        return refuse(
          "FAILOVER_LATEST_SOURCE_NOT_RUNNING",
          `the latest point needs the machine at ${s.source} to drain its changes, but it is ${f.sourceMachine}; use --point latest-processed`,
        );
      }
      if (!needsDrain(o.point) && f.pointCount === 0) return noPoints();
      const shutdown = o.planned || o.shutdownSource;
      const consequences = [
        `replication ${dir} stops before the ${label} begins; once it has, the ${label} cannot be cancelled`,
        `the machine starts at ${s.target} from the chosen point`,
      ];
      if (shutdown) {
        consequences.push(
          sourceUp
            ? `the machine at ${s.source} is shut down first (best effort: the ${label} goes on if that fails)`
            : `the machine at ${s.source} is ${f.sourceMachine}; it cannot be shut down, and will be fenced if it comes back`,
        );
      } else {
        consequences.push(
          `the machine at ${s.source} is not shut down; replication from it is fenced from now on`,
        );
      }
      return {
        ...base,
        op: o.op,
        label,
        drain: needsDrain(o.point),
        shutdownSource: shutdown,
        irreversible: true,
        consequences,
      };
    }
    case "change-point": {
      if (s.phase !== "failed-over") return notIn(s, o.op, "a failed-over item before commit");
      if (f.pointCount === 0) return noPoints();
      return {
        ...base,
        op: o.op,
        label: "change recovery point",
        consequences: [
          `stops the machine at ${s.target}, rewrites only the blocks that differ, and starts it again`,
        ],
      };
    }
    case "commit": {
      if (s.phase !== "failed-over") return notIn(s, o.op, "a failed-over item");
      if (f.recoveredMachine !== "running") {
        return refuse(
          "COMMIT_RECOVERED_MACHINE_NOT_RUNNING",
          `the recovered machine at ${s.target} is ${f.recoveredMachine}; commit deletes what it could be rebuilt from, so start it (or change the point) first`,
        );
      }
      return {
        ...base,
        op: o.op,
        label: isFailback(s) ? "commit failback" : "commit failover",
        irreversible: true,
        consequences: isFailback(s)
          ? [
              `removes the machine at ${s.source} (its disks are kept for the next reprotect)`,
              `deletes the item's recovery points at ${s.target}`,
            ]
          : [`deletes the item's recovery points at ${s.target}; the point can no longer be changed`],
      };
    }
    case "reprotect": {
      if (s.phase === "reprotecting") {
        // resuming: source and target are already swapped; only the machine being copied matters
        if (f.sourceMachine !== "running") {
          return refuse(
            "REPROTECT_MACHINE_NOT_RUNNING",
            `the machine at ${s.source} is ${f.sourceMachine}; reprotect replicates a running machine, start it first`,
          );
        }
        return {
          ...base,
          op: o.op,
          label: "reprotect",
          consequences: [`resumes replication ${dir} where it stopped`],
        };
      }
      if (s.phase !== "failover-committed") return notIn(s, o.op, "an item whose failover is committed");
      // after a committed failover the machine runs at `target`; reprotect copies it back to `source`
      if (f.recoveredMachine !== "running") {
        return refuse(
          "REPROTECT_MACHINE_NOT_RUNNING",
          `the machine at ${s.target} is ${f.recoveredMachine}; reprotect replicates a running machine, start it first`,
        );
      }
      if (f.sourceMachine === "running") {
        return refuse(
          "REPROTECT_OLD_MACHINE_RUNNING",
          `the old copy of the machine still runs at ${s.source} (it could not be shut down during the failover); shut it down, then retry: its disks are what reprotect writes to`,
        );
      }
      if (f.sourceMachine === "unreachable") {
        return refuse(
          "REPROTECT_RETURN_SITE_UNREACHABLE",
          `the vault cannot reach ${s.source}; reprotect needs its appliances, check the link between the sites`,
        );
      }
      if (o.location === "original" && !f.disksAtReturnSite) {
        return refuse(
          "REPROTECT_ORIGINAL_DISKS_GONE",
          `the machine's disks at ${s.source} are gone; reprotect to an alternate location (--location alternate) to create new ones`,
        );
      }
      return {
        ...base,
        direction: `${s.target} → ${s.source}`,
        op: o.op,
        label: "reprotect",
        consequences: [
          o.location === "original"
            ? `replicates ${s.target} → ${s.source} onto the disks still at ${s.source}, shipping only the blocks that differ`
            : `replicates ${s.target} → ${s.source} into new disks (a full copy)`,
        ],
      };
    }
    case "disable": {
      if (s.drill !== null) {
        return refuse("DISABLE_DRILL_ACTIVE", "a test failover is still running; clean it up first");
      }
      if (s.phase === "failing-over" || s.phase === "failed-over") {
        return refuse(
          "DISABLE_FAILOVER_NOT_COMMITTED",
          "the item is failed over but not committed; commit it (or change the point) first",
        );
      }
      if (s.phase === "disabled") return refuse("ITEM_DISABLED", "the item is already disabled");
      const pointsAreLastCopy =
        (s.phase === "protected" ||
          s.phase === "initial-replication" ||
          s.phase === "enabling" ||
          s.phase === "reprotecting") &&
        (f.sourceMachine === "gone" || f.sourceMachine === "unreachable");
      if (pointsAreLastCopy) {
        // an unreachable machine may be gone: deleting the points could delete its last copy
        return refuse(
          "DISABLE_LAST_COPY",
          `the machine at ${s.source} is ${f.sourceMachine}, so the recovery points at ${s.target} may be its only copy; fail over first, or disable once the machine reports again`,
        );
      }
      return {
        ...base,
        op: o.op,
        label: "disable replication",
        consequences:
          s.phase === "failover-committed"
            ? [
                `the machine keeps running at ${s.target}, unprotected; the item is disabled and can no longer be reprotected`,
              ]
            : [`stops replication ${dir} and deletes the item's recovery points at ${s.target}`],
      };
    }
    default:
      return assertNever(o);
  }
}

/** Milestones an operation's job reports; each moves the state. */
export type LifecycleEvent =
  | { e: "replication-configured" }
  | { e: "point-arrived" }
  | { e: "drill-started"; point: PointId; atMs: number }
  | { e: "drill-cleaned" }
  | { e: "failover-started" }
  | { e: "failover-completed"; point: PointId }
  | { e: "point-changed"; point: PointId }
  | { e: "committed" }
  | { e: "reprotect-started" }
  | { e: "reprotect-completed" }
  | { e: "disabled" };

export function initialState(home: string, target: string): ItemState {
  return {
    phase: "enabling",
    home,
    source: home,
    target,
    generation: 1,
    failoverPoint: null,
    drill: null,
  };
}

/**
 * The state after an event. An event that does not fit the state is a bug in the shell, not an
 * operator's mistake, so it throws (the job fails with LIFECYCLE_EVENT_OUT_OF_ORDER).
 */
export function apply(s: ItemState, ev: LifecycleEvent): ItemState {
  const bad = (): never => {
    throw Object.assign(new Error(`lifecycle event ${ev.e} does not apply to phase ${s.phase}`), {
      code: "LIFECYCLE_EVENT_OUT_OF_ORDER",
    });
  };
  switch (ev.e) {
    case "replication-configured":
      if (s.phase === "enabling" || s.phase === "reprotecting") return { ...s, phase: "initial-replication" };
      if (s.phase === "initial-replication") return s;
      return bad();
    case "point-arrived":
      return s.phase === "initial-replication" ? { ...s, phase: "protected" } : s;
    case "drill-started":
      if (s.phase !== "protected" || (s.drill !== null && s.drill.point !== ev.point)) return bad();
      return { ...s, drill: { point: ev.point, startedAtMs: ev.atMs } };
    case "drill-cleaned":
      return { ...s, drill: null };
    case "failover-started":
      if (s.phase === "failing-over") return s; // resumed
      if (s.phase !== "protected") return bad();
      return { ...s, phase: "failing-over", generation: s.generation + 1 };
    case "failover-completed":
      if (s.phase !== "failing-over" && s.phase !== "failed-over") return bad();
      return { ...s, phase: "failed-over", failoverPoint: ev.point };
    case "point-changed":
      if (s.phase !== "failed-over") return bad();
      return { ...s, failoverPoint: ev.point };
    case "committed":
      if (s.phase === "failover-committed") return s;
      if (s.phase !== "failed-over") return bad();
      return { ...s, phase: "failover-committed", failoverPoint: null };
    case "reprotect-started":
      if (s.phase === "reprotecting") return s;
      if (s.phase !== "failover-committed") return bad();
      // the machine now runs at `target`: it becomes the source, and the old source the target
      return { ...s, phase: "reprotecting", source: s.target, target: s.source };
    case "reprotect-completed":
      if (s.phase !== "reprotecting") return bad();
      return { ...s, phase: "initial-replication" };
    case "disabled":
      return { ...s, phase: "disabled", drill: null };
    default:
      return assertNever(ev);
  }
}

/** Which operations are allowed now (the portal offers only these). */
export function allowedOperations(s: ItemState, f: OperationFacts): OperationName[] {
  const probe: Record<OperationName, Operation> = {
    "test-failover": { op: "test-failover", point: { kind: "latest-processed" } },
    "test-failover-cleanup": { op: "test-failover-cleanup", notes: "" },
    failover: { op: "failover", point: { kind: "latest-processed" }, shutdownSource: false, planned: false },
    "change-point": { op: "change-point", point: { kind: "latest-processed" } },
    commit: { op: "commit" },
    reprotect: { op: "reprotect", location: f.disksAtReturnSite ? "original" : "alternate" },
    disable: { op: "disable" },
  };
  return OPERATIONS.filter((n) => !("refused" in decide(s, probe[n], f)));
}

/** Checks the invariants of a state on its own (used by tests and when loading a row). */
export function stateProblems(s: ItemState): string[] {
  const p: string[] = [];
  if (s.source === s.target) p.push("source and target are the same site");
  if (s.home !== s.source && s.home !== s.target) p.push("home is neither source nor target");
  if (!Number.isInteger(s.generation) || s.generation < 1) p.push("generation is not a positive integer");
  if (s.drill !== null && s.phase !== "protected") p.push(`a drill exists in phase ${s.phase}`);
  if (s.phase === "failed-over" && s.failoverPoint === null) p.push("failed over without a failover point");
  if (s.phase !== "failed-over" && s.phase !== "failing-over" && s.failoverPoint !== null) {
    p.push(`failover point ${s.failoverPoint} in phase ${s.phase}`);
  }
  return p;
}

function notIn(s: ItemState, op: OperationName, needs: string): Refusal {
  return refuse(
    "OPERATION_NOT_ALLOWED",
    `${op} needs ${needs}, but the item is ${s.phase}${s.phase === "disabled" ? "" : ` (${directionOf(s)})`}`,
  );
}

function noPoints(): Refusal {
  return refuse(
    "POINT_NONE_AVAILABLE",
    "the item has no recovery point yet; wait for initial replication to finish (see 'items show')",
  );
}

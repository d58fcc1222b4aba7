// Which recovery point a request means. Pure: the points held at the target and a request in, one
// point or a named refusal out. `latest` is special: the caller must first drain what the agent and
// the process server still hold and cut a point, then select again with `latest-processed`.
import { isValidPointId, type PointId } from "./ids.ts";
import { type Refusal, refuse } from "./refusal.ts";
import type { PointSummary } from "./retention.ts";

export type PointRequest =
  | { kind: "latest" }
  | { kind: "latest-processed" }
  | { kind: "latest-app-consistent" }
  | { kind: "id"; id: PointId }
  | { kind: "time"; atMs: number };

export const POINT_REQUEST_HELP =
  "use latest, latest-processed, latest-app-consistent, a point id (see 'points list') or an ISO 8601 time";

/** Parses what an operator typed (`--point`). */
export function parsePointRequest(s: string): PointRequest | Refusal {
  const t = s.trim();
  if (t === "latest" || t === "latest-processed" || t === "latest-app-consistent") return { kind: t };
  if (isValidPointId(t)) return { kind: "id", id: t as PointId };
  // a time: only full ISO 8601 dates with a time zone, so "yesterday" or "12:00" are not guessed at
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(t)) {
    const atMs = Date.parse(t);
    if (!Number.isNaN(atMs)) return { kind: "time", atMs };
  }
  return refuse(
    "POINT_REQUEST_INVALID",
    `recovery point ${JSON.stringify(s)} is not valid; ${POINT_REQUEST_HELP}`,
  );
}

export function formatPointRequest(r: PointRequest): string {
  switch (r.kind) {
    case "latest":
    case "latest-processed":
    case "latest-app-consistent":
      return r.kind;
    case "id":
      return r.id;
    case "time":
      return new Date(r.atMs).toISOString();
    default:
      return assertNever(r);
  }
}

/** True when the request needs a drain (a fresh point cut from what is still in flight) first. */
export function needsDrain(r: PointRequest): boolean {
  return r.kind === "latest";
}

/**
 * The point a request means among `points` (any order). `latest` selects like `latest-processed`:
 * the caller drains first, so the newest processed point is then the latest.
 */
export function selectPoint(points: readonly PointSummary[], r: PointRequest): PointSummary | Refusal {
  if (points.length === 0) {
    return refuse(
      "POINT_NONE_AVAILABLE",
      "the item has no recovery point yet; wait for initial replication to finish (see 'items show')",
    );
  }
  const sorted = [...points].sort((a, b) => a.createdAtMs - b.createdAtMs || cmp(a.id, b.id));
  const newest = sorted[sorted.length - 1] as PointSummary;
  switch (r.kind) {
    case "latest":
    case "latest-processed":
      return newest;
    case "latest-app-consistent": {
      for (let i = sorted.length - 1; i >= 0; i--) {
        const p = sorted[i] as PointSummary;
        if (p.consistency === "app") return p;
      }
      return refuse(
        "POINT_NO_APP_CONSISTENT",
        `the item has no app-consistent recovery point among its ${sorted.length} points; use latest or latest-processed, or check the machine's pre-snapshot hooks`,
      );
    }
    case "id": {
      const p = sorted.find((x) => x.id === r.id);
      if (p !== undefined) return p;
      return refuse(
        "POINT_NOT_FOUND",
        `recovery point ${r.id} is not held for this item (it may have been pruned); the newest is ${newest.id} (see 'points list')`,
      );
    }
    case "time": {
      let best: PointSummary | null = null;
      for (const p of sorted) if (p.createdAtMs <= r.atMs) best = p;
      if (best !== null) return best;
      const oldest = sorted[0] as PointSummary;
      return refuse(
        "POINT_NONE_BEFORE_TIME",
        `no recovery point at or before ${new Date(r.atMs).toISOString()}; the oldest is ${oldest.id} (${new Date(oldest.createdAtMs).toISOString()})`,
      );
    }
    default:
      return assertNever(r);
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function assertNever(x: never): never {
  throw new Error(`unexpected value ${JSON.stringify(x)}`);
}

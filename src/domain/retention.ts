// Which recovery points a retention policy keeps. Pure: points and a clock in, a decision out.
//  - the newest point is always kept: pruning never removes the last copy of a machine;
//  - nothing older than keepWithin is kept (but the newest point);
//  - every point newer than keepAllWithin (default: keepWithin) is kept;
//  - between the two, the newest app-consistent point of each appEvery period and the newest point of
//    each crashEvery period are kept.
import type { PointId } from "./ids.ts";

export interface RetentionPolicy {
  keepWithinMs: number;
  keepAllWithinMs?: number | undefined;
  appEveryMs?: number | undefined;
  crashEveryMs?: number | undefined;
}

export interface PointSummary {
  id: PointId;
  createdAtMs: number;
  consistency: "crash" | "app";
}

export interface RetentionDecision {
  keep: PointId[];
  drop: PointId[];
  reasons: Record<string, string>;
}

export function selectRetained(
  points: readonly PointSummary[],
  p: RetentionPolicy,
  nowMs: number,
): RetentionDecision {
  const sorted = [...points].sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1));
  const reasons: Record<string, string> = {};
  const windowStart = nowMs - p.keepWithinMs;
  const allStart = nowMs - Math.min(p.keepAllWithinMs ?? p.keepWithinMs, p.keepWithinMs);
  const newestInBucket = (everyMs: number | undefined, filter: (x: PointSummary) => boolean, why: string) => {
    if (everyMs === undefined || everyMs <= 0) return;
    const seen = new Set<number>();
    for (let i = sorted.length - 1; i >= 0; i--) {
      const x = sorted[i]!;
      if (x.createdAtMs < windowStart || x.createdAtMs >= allStart || !filter(x)) continue;
      const bucket = Math.floor(x.createdAtMs / everyMs);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      reasons[x.id] ??= why;
    }
  };
  const last = sorted[sorted.length - 1];
  if (last !== undefined) reasons[last.id] = "newest point";
  for (const x of sorted)
    if (x.createdAtMs >= allStart && x.createdAtMs >= windowStart)
      reasons[x.id] ??= "within the keep-all window";
  newestInBucket(p.appEveryMs, (x) => x.consistency === "app", "newest app-consistent point of its period");
  newestInBucket(p.crashEveryMs, () => true, "newest point of its period");
  const keep = sorted.filter((x) => reasons[x.id] !== undefined).map((x) => x.id);
  const drop = sorted.filter((x) => reasons[x.id] === undefined).map((x) => x.id);
  return { keep, drop, reasons };
}

// The RPO history's buckets (src/vault/rpo-history.ts) against a model that follows the RPO through
// time commit by commit: every bucket's value is the worst RPO in it, whatever the bucket width and
// however the commits fall on minutes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  bucketSecondsFor,
  committedPointRow,
  type HistoryRow,
  rpoBuckets,
} from "../../src/vault/rpo-history.ts";

const iso = (ms: number) => new Date(ms).toISOString();

/** The rows the vault writes for these commits: one per minute, peaks and points merged by max. */
function rowsOf(commits: readonly { at: number; point: number }[]): HistoryRow[] {
  const rows = new Map<string, HistoryRow>();
  let previous: string | null = null;
  for (const c of commits) {
    const r = committedPointRow({
      pointAt: iso(c.point),
      previousPointAt: previous,
      committedAt: new Date(c.at),
    })!;
    const e = rows.get(r.minute);
    if (e === undefined) rows.set(r.minute, r);
    else {
      e.peak_rpo_s = Math.max(e.peak_rpo_s, r.peak_rpo_s);
      if (r.last_point_at > e.last_point_at) e.last_point_at = r.last_point_at;
    }
    previous = iso(c.point);
  }
  return [...rows.values()];
}

/** The worst RPO in [start, end]: just before each commit in it, and at its end; null if no point yet. */
function model(commits: readonly { at: number; point: number }[], start: number, end: number): number | null {
  let worst: number | null = null;
  let newest: number | null = null;
  for (const c of commits) {
    if (c.at >= end) break;
    if (c.at >= start) {
      const peak = (c.at - (newest ?? c.point)) / 1000;
      worst = worst === null ? peak : Math.max(worst, peak);
    }
    newest = newest === null ? c.point : Math.max(newest, c.point);
  }
  if (newest !== null) worst = Math.max(worst ?? 0, (end - newest) / 1000);
  return worst;
}

describe("rpo history", () => {
  it("picks the bucket width so that at most 300 come back", () => {
    const cases: [number, number][] = [
      [1, 60],
      [5, 60],
      [6, 120],
      [10, 120],
      [11, 300],
      [24, 300],
      [25, 300],
      [26, 600],
      [48, 600],
      [72, 900],
    ];
    for (const [hours, seconds] of cases) {
      assert.equal(bucketSecondsFor(hours), seconds, `${hours} h`);
      assert.ok((hours * 3600) / seconds <= 300);
    }
  });

  it("a bucket's value is the worst RPO in it (model: the RPO followed commit by commit)", () => {
    const now0 = Date.parse("2026-11-26T12:00:00.000Z");
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gap: fc.integer({ min: 1_000, max: 40 * 60_000 }),
            lag: fc.integer({ min: 0, max: 120_000 }),
          }),
          {
            minLength: 1,
            maxLength: 60,
          },
        ),
        fc.integer({ min: 1, max: 72 }),
        // now: a few seconds past the last commit, up to hours later (not on a minute)
        fc.integer({ min: 1, max: 6 * 3_600_000 }),
        (steps, hours, after) => {
          const commits: { at: number; point: number }[] = [];
          let t = now0 - 30 * 3_600_000;
          let lastPoint = -Infinity;
          for (const s of steps) {
            t += s.gap;
            // points are committed in the order they were taken
            const point = Math.max(lastPoint, t - s.lag);
            commits.push({ at: t, point });
            lastPoint = point;
          }
          let now = t + after;
          if (now % 60_000 === 0) now += 1;
          const got = rpoBuckets({
            now: new Date(now),
            hours,
            rows: rowsOf(commits),
            lastPointAt: iso(lastPoint),
          });
          const size = got.bucketSeconds * 1000;
          assert.ok(got.buckets.length <= 300);
          assert.equal(Date.parse(got.buckets.at(-1)!.at) + size > now, true, "the last bucket holds now");
          for (const b of got.buckets) {
            const start = Date.parse(b.at);
            const expected = model(commits, start, Math.min(start + size, now));
            assert.equal(b.rpoSeconds, expected, `bucket ${b.at} of ${hours} h at ${iso(now)}`);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("no point now: every bucket null, whatever the rows say (an old direction's)", () => {
    const now = new Date("2026-11-26T12:00:30.000Z");
    const rows = [
      { minute: "2026-11-26T11:50:00.000Z", peak_rpo_s: 300, last_point_at: "2026-11-26T11:49:00.000Z" },
    ];
    const r = rpoBuckets({ now, hours: 1, rows, lastPointAt: null });
    assert.equal(r.buckets.length, 60);
    assert.ok(r.buckets.every((b) => b.rpoSeconds === null));
  });

  it("a newest point no row recorded (committed before the history) counts from its own time", () => {
    const now = new Date("2026-11-26T12:00:30.000Z");
    const r = rpoBuckets({ now, hours: 1, rows: [], lastPointAt: "2026-11-26T11:30:00.000Z" });
    assert.equal(r.buckets.find((b) => b.at === "2026-11-26T11:29:00.000Z")!.rpoSeconds, null);
    assert.equal(r.buckets.find((b) => b.at === "2026-11-26T11:30:00.000Z")!.rpoSeconds, 60);
    assert.equal(r.buckets.at(-1)!.rpoSeconds, 30 * 60 + 30);
  });
});

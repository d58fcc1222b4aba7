import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { parseDuration } from "../../src/domain/duration.ts";
import type { PointId } from "../../src/domain/ids.ts";
import { type PointSummary, selectRetained } from "../../src/domain/retention.ts";

const H = 3_600_000;
const now = Date.parse("2026-11-26T12:00:00Z");

function pts(ageHours: number[], app: number[] = []): PointSummary[] {
  return ageHours.map((h, i) => ({
    id: `p${String(i).padStart(3, "0")}` as PointId,
    createdAtMs: now - h * H,
    consistency: app.includes(i) ? "app" : "crash",
  }));
}

test("points older than the window are dropped, newer ones kept", () => {
  const d = selectRetained(pts([100, 80, 71, 10, 0.5]), { keepWithinMs: 72 * H }, now);
  assert.deepEqual(d.drop, ["p000", "p001"]);
  assert.deepEqual(d.keep, ["p002", "p003", "p004"]);
});

test("the newest point is kept even when it is older than the window", () => {
  const d = selectRetained(pts([300, 200]), { keepWithinMs: 72 * H }, now);
  assert.deepEqual(d.keep, ["p001"]);
  assert.equal(d.reasons.p001, "newest point");
});

test("beyond keep-all, one app-consistent point per period is kept", () => {
  // ages 30.2, 30.1 (app), 29.9 (app), 5 (crash), 0.1
  const d = selectRetained(
    pts([30.2, 30.1, 29.9, 5, 0.1], [1, 2]),
    { keepWithinMs: 72 * H, keepAllWithinMs: 1 * H, appEveryMs: 24 * H },
    now,
  );
  const kept = d.keep as string[];
  assert.ok(kept.includes("p004"));
  assert.ok(!kept.includes("p000"));
  assert.ok(!kept.includes("p003"));
  // at least one of the two app points survives (two only if they straddle a period boundary)
  const appKept = kept.filter((id) => id === "p001" || id === "p002");
  assert.ok(appKept.length >= 1);
});

test("retention never drops the newest point and never keeps one outside the window but the newest (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ age: fc.double({ min: 0, max: 500, noNaN: true }), app: fc.boolean() }), {
        maxLength: 40,
      }),
      fc.double({ min: 0.01, max: 200, noNaN: true }),
      fc.option(fc.double({ min: 0, max: 200, noNaN: true })),
      fc.option(fc.double({ min: 0.1, max: 50, noNaN: true })),
      (raw, within, all, every) => {
        const points = raw.map((r, i) => ({
          id: `p${String(i).padStart(3, "0")}` as PointId,
          createdAtMs: now - r.age * H,
          consistency: r.app ? ("app" as const) : ("crash" as const),
        }));
        const d = selectRetained(
          points,
          {
            keepWithinMs: within * H,
            keepAllWithinMs: all === null ? undefined : all * H,
            appEveryMs: every === null ? undefined : every * H,
          },
          now,
        );
        assert.equal(d.keep.length + d.drop.length, points.length);
        if (points.length > 0) {
          const newest = [...points].sort(
            (a, b) => b.createdAtMs - a.createdAtMs || (a.id < b.id ? 1 : -1),
          )[0]!;
          assert.ok(d.keep.includes(newest.id), "newest kept");
          for (const id of d.keep) {
            const p = points.find((x) => x.id === id)!;
            assert.ok(id === newest.id || p.createdAtMs >= now - within * H, `${id} inside the window`);
          }
        }
      },
    ),
  );
});

test("durations parse as operators write them, and bad ones are named", () => {
  assert.equal(parseDuration("72h"), 72 * H);
  assert.equal(parseDuration("1h30m"), 90 * 60_000);
  assert.equal(parseDuration("500ms"), 500);
  assert.throws(
    () => parseDuration("72 hours", "--keep-within"),
    /--keep-within "72 hours" is not a duration/,
  );
  assert.throws(() => parseDuration(""), /not a duration/);
});

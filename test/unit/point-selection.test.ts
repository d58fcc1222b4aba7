import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { PointId } from "../../src/domain/ids.ts";
import { type PointRequest, parsePointRequest, selectPoint } from "../../src/domain/point-selection.ts";
import { isRefusal } from "../../src/domain/refusal.ts";
import type { PointSummary } from "../../src/domain/retention.ts";

const t0 = Date.parse("2026-11-26T12:00:00Z");
const pts: PointSummary[] = [
  { id: "20261126T120000000Z-000001" as PointId, createdAtMs: t0, consistency: "app" },
  { id: "20261126T121500000Z-000002" as PointId, createdAtMs: t0 + 15 * 60e3, consistency: "crash" },
  { id: "20261126T123000000Z-000003" as PointId, createdAtMs: t0 + 30 * 60e3, consistency: "crash" },
];

function sel(r: PointRequest, points = pts) {
  return selectPoint(points, r);
}

test("parsePointRequest reads the keywords, an id and an ISO time, and names what is wrong", () => {
  assert.deepEqual(parsePointRequest("latest"), { kind: "latest" });
  assert.deepEqual(parsePointRequest("latest-app-consistent"), { kind: "latest-app-consistent" });
  assert.deepEqual(parsePointRequest("20261126T121500000Z-000002"), {
    kind: "id",
    id: "20261126T121500000Z-000002",
  });
  assert.deepEqual(parsePointRequest("2026-11-26T12:20:00Z"), { kind: "time", atMs: t0 + 20 * 60e3 });
  for (const bad of ["newest", "12:00", "2026-11-26", "2026-11-26T25:00:00Z", ""]) {
    const r = parsePointRequest(bad);
    assert.ok(isRefusal(r), bad);
    assert.equal(r.code, "POINT_REQUEST_INVALID");
    assert.match(r.message, /latest-processed/);
  }
});

test("each request selects the point it means", () => {
  assert.equal((sel({ kind: "latest-processed" }) as PointSummary).id, pts[2]?.id);
  assert.equal((sel({ kind: "latest" }) as PointSummary).id, pts[2]?.id);
  assert.equal((sel({ kind: "latest-app-consistent" }) as PointSummary).id, pts[0]?.id);
  assert.equal((sel({ kind: "id", id: pts[1]?.id as PointId }) as PointSummary).id, pts[1]?.id);
  assert.equal((sel({ kind: "time", atMs: t0 + 20 * 60e3 }) as PointSummary).id, pts[1]?.id);
  assert.equal((sel({ kind: "time", atMs: t0 + 15 * 60e3 }) as PointSummary).id, pts[1]?.id);
});

test("refusals are named", () => {
  const codes = [
    sel({ kind: "latest" }, []),
    sel({ kind: "latest-app-consistent" }, pts.slice(1)),
    sel({ kind: "id", id: "20261126T000000000Z-ffffff" as PointId }),
    sel({ kind: "time", atMs: t0 - 1 }),
  ].map((r) => (isRefusal(r) ? r.code : "selected"));
  assert.deepEqual(codes, [
    "POINT_NONE_AVAILABLE",
    "POINT_NO_APP_CONSISTENT",
    "POINT_NOT_FOUND",
    "POINT_NONE_BEFORE_TIME",
  ]);
});

test("property: a time request selects the newest point not after it, in any input order", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 1e6 }), { minLength: 1, maxLength: 30 }),
      fc.integer({ min: -10, max: 1e6 + 10 }),
      (times, at) => {
        const points = times.map((ms, i) => ({
          id: `p${i}` as PointId,
          createdAtMs: ms,
          consistency: "crash" as const,
        }));
        const r = selectPoint(points, { kind: "time", atMs: at });
        const eligible = times.filter((x) => x <= at);
        if (eligible.length === 0) return isRefusal(r);
        return !isRefusal(r) && r.createdAtMs === Math.max(...eligible);
      },
    ),
  );
});

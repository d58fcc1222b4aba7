import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { liveness, replicationProgress, rpo } from "../../src/domain/health.ts";

const t0 = new Date("2026-11-26T03:00:00.000Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);

describe("liveness", () => {
  it("is unknown before the first heartbeat", () => {
    assert.deepEqual(liveness(t0, null, 15_000), { state: "unknown", silentForMs: null });
  });

  it("stays online through three missed heartbeats and is lost after", () => {
    assert.equal(liveness(at(45), t0, 15_000).state, "online");
    assert.equal(liveness(at(45.001), t0, 15_000).state, "lost");
    assert.equal(liveness(at(46), t0, 15_000).silentForMs, 46_000);
  });

  it("treats a heartbeat from the future (clock skew) as just now", () => {
    assert.deepEqual(liveness(t0, at(5), 15_000), { state: "online", silentForMs: 0 });
  });

  it("honours another number of missed heartbeats", () => {
    assert.equal(liveness(at(31), t0, 15_000, 2).state, "lost");
  });
});

describe("rpo", () => {
  const threshold = 900; // 15m

  it("is healthy below 80 % of the threshold, warning from 80 % to 100 %, critical above", () => {
    assert.deepEqual(rpo({ now: at(719), lastPointAt: t0, thresholdSeconds: threshold }), {
      rpoSeconds: 719,
      status: "healthy",
    });
    assert.equal(rpo({ now: at(720), lastPointAt: t0, thresholdSeconds: threshold }).status, "warning");
    assert.equal(rpo({ now: at(900), lastPointAt: t0, thresholdSeconds: threshold }).status, "warning");
    assert.equal(rpo({ now: at(901), lastPointAt: t0, thresholdSeconds: threshold }).status, "critical");
  });

  it("measures from the start of protection before the first point", () => {
    const r = rpo({ now: at(1000), lastPointAt: null, since: t0, thresholdSeconds: threshold });
    assert.deepEqual(r, { rpoSeconds: 1000, status: "critical" });
  });

  it("is unknown with neither a point nor a start", () => {
    assert.deepEqual(rpo({ now: t0, lastPointAt: null, thresholdSeconds: threshold }), {
      rpoSeconds: null,
      status: "unknown",
    });
  });

  it("never reports a status better than a smaller RPO would (monotonic)", () => {
    const rank = { unknown: -1, healthy: 0, warning: 1, critical: 2 } as const;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 0, max: 200_000 }),
        (th, a, b) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          const rLo = rpo({ now: at(lo), lastPointAt: t0, thresholdSeconds: th });
          const rHi = rpo({ now: at(hi), lastPointAt: t0, thresholdSeconds: th });
          return rank[rLo.status] <= rank[rHi.status];
        },
      ),
    );
  });
});

describe("replicationProgress", () => {
  const GiB = 1024 ** 3;

  it("measures throughput between the samples and derives the ETA", () => {
    const p = replicationProgress({
      now: at(20),
      bytesTotal: 10 * GiB,
      samples: [
        { at: at(20), bytesDone: 3 * GiB },
        { at: at(0), bytesDone: 1 * GiB },
        { at: at(10), bytesDone: 2 * GiB },
      ],
    });
    assert.equal(p.bytesDone, 3 * GiB);
    assert.equal(p.percent, 30);
    assert.equal(p.bytesPerSecond, GiB / 10);
    assert.equal(p.etaSeconds, 70);
    assert.deepEqual(p.sampledAt, at(20));
  });

  it("counts the ETA down between samples", () => {
    const samples = [
      { at: at(0), bytesDone: 0 },
      { at: at(10), bytesDone: GiB },
    ];
    const p = replicationProgress({ now: at(15), bytesTotal: 2 * GiB, samples });
    assert.equal(p.etaSeconds, 5);
  });

  it("uses only the last minute of samples for the rate", () => {
    const p = replicationProgress({
      now: at(200),
      bytesTotal: 100 * GiB,
      samples: [
        { at: at(0), bytesDone: 0 }, // a fast start two minutes ago does not count
        { at: at(140), bytesDone: 50 * GiB },
        { at: at(200), bytesDone: 56 * GiB },
      ],
    });
    assert.equal(p.bytesPerSecond, (6 * GiB) / 60);
  });

  it("falls back to the agent's reported rate with one sample, and has no ETA without a rate", () => {
    const one = [{ at: at(0), bytesDone: GiB }];
    const r = replicationProgress({
      now: at(0),
      bytesTotal: 2 * GiB,
      samples: one,
      reportedBytesPerSecond: GiB,
    });
    assert.equal(r.bytesPerSecond, GiB);
    assert.equal(r.etaSeconds, 1);
    const n = replicationProgress({ now: at(0), bytesTotal: 2 * GiB, samples: one });
    assert.equal(n.bytesPerSecond, 0);
    assert.equal(n.etaSeconds, null);
  });

  it("is done at 100 % with an ETA of 0, and caps a report past the total", () => {
    const p = replicationProgress({
      now: at(5),
      bytesTotal: GiB,
      samples: [{ at: at(0), bytesDone: 2 * GiB }],
    });
    assert.equal(p.percent, 100);
    assert.equal(p.bytesDone, GiB);
    assert.equal(p.etaSeconds, 0);
  });

  it("has no progress and no ETA before the first sample", () => {
    const p = replicationProgress({ now: t0, bytesTotal: GiB, samples: [] });
    assert.deepEqual(p, {
      bytesDone: 0,
      bytesTotal: GiB,
      percent: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      sampledAt: null,
    });
  });

  it("keeps percent within 0..100 and the ETA non-negative for any samples", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.array(
          fc.record({ s: fc.integer({ min: 0, max: 10_000 }), b: fc.integer({ min: 0, max: 2 ** 41 }) }),
        ),
        fc.integer({ min: 0, max: 20_000 }),
        (total, raw, now) => {
          const p = replicationProgress({
            now: at(now),
            bytesTotal: total,
            samples: raw.map((x) => ({ at: at(x.s), bytesDone: x.b })),
          });
          return (
            p.percent >= 0 &&
            p.percent <= 100 &&
            p.bytesPerSecond >= 0 &&
            (p.etaSeconds === null || p.etaSeconds >= 0)
          );
        },
      ),
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type AlertDecision,
  type AlertFacts,
  type ApplianceFacts,
  decideAlerts,
  type ItemFacts,
  isAlertKind,
  type JobFacts,
  judge,
  lastProgressAt,
  type MachineFacts,
  type OpenAlert,
  stalledAfterMs,
} from "../../src/domain/alerts.ts";
import { PHASES } from "../../src/domain/lifecycle.ts";

const t0 = new Date("2026-11-26T03:00:00.000Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);
const HB = 15_000;

function facts(now: Date, o: Partial<AlertFacts> = {}): AlertFacts {
  return {
    now,
    heartbeatIntervalMs: HB,
    complete: true,
    items: [],
    machines: [],
    appliances: [],
    jobs: [],
    ...o,
  };
}

function item(o: Partial<ItemFacts> = {}): ItemFacts {
  return {
    id: "item-1",
    name: "web1",
    phase: "protected",
    direction: "primary → recovery",
    since: t0,
    lastPointAt: t0,
    rpoThresholdSeconds: 900,
    crashEverySeconds: 300,
    progress: [],
    ...o,
  };
}

function machine(o: Partial<MachineFacts> = {}): MachineFacts {
  return {
    id: "m-1",
    name: "web1",
    lastHeartbeatAt: t0,
    replicatingItems: ["web1"],
    watchedSince: t0,
    ...o,
  };
}

function appliance(o: Partial<ApplianceFacts> = {}): ApplianceFacts {
  return { id: "app-1", name: "ps-primary", site: "primary", lastHeartbeatAt: t0, createdAt: t0, ...o };
}

function job(o: Partial<JobFacts> = {}): JobFacts {
  return {
    id: "job-000000000001",
    kind: "failover",
    state: "failed",
    itemName: "web1",
    error: { code: "X_FAILED", message: "it broke" },
    ...o,
  };
}

/** The open alerts after a decision is applied (what the vault's transaction does). */
function applied(open: readonly OpenAlert[], d: AlertDecision, now: Date, ids: { n: number }): OpenAlert[] {
  const cleared = new Set(d.clear.map((c) => c.id));
  return [
    ...open.filter((a) => !cleared.has(a.id)),
    ...d.raise.map((r) => ({
      id: `al-${ids.n++}`,
      kind: r.kind,
      subject: r.subject,
      raisedAt: now.toISOString(),
    })),
  ];
}

const kinds = (d: AlertDecision) => ({
  raise: d.raise.map((r) => `${r.kind} ${r.subject}`).sort(),
  clear: d.clear.map((c) => `${c.kind} ${c.subject}`).sort(),
});

describe("alerts: conditions", () => {
  it("raises rpo-breach only when a protected item's RPO is over its threshold", () => {
    const it0 = item({ rpoThresholdSeconds: 900, crashEverySeconds: 60 });
    const progressing = [{ at: at(899), bytesDone: 10 }];
    assert.deepEqual(
      decideAlerts(facts(at(900), { items: [{ ...it0, progress: progressing }] }), []).raise,
      [],
    );
    const d = decideAlerts(
      facts(at(901), { items: [{ ...it0, progress: [{ at: at(900), bytesDone: 1 }] }] }),
      [],
    );
    assert.deepEqual(kinds(d).raise, ["rpo-breach item:item-1"]);
    assert.equal(d.raise[0]!.severity, "critical");
    assert.match(
      d.raise[0]!.message,
      /item web1 \(primary → recovery\): RPO 15m1s is over .* threshold of 15m/,
    );
    // not while failed over, nor during initial replication (no point to age yet)
    for (const phase of ["failed-over", "initial-replication", "disabled"] as const) {
      const r = decideAlerts(
        facts(at(5000), { items: [item({ phase, progress: [{ at: at(4999), bytesDone: 1 }] })] }),
        [],
      );
      assert.ok(!r.raise.some((x) => x.kind === "rpo-breach"), phase);
    }
  });

  it("raises replication-stalled after 3 crash periods without progress or a new point", () => {
    const it0 = item({ crashEverySeconds: 60, rpoThresholdSeconds: 3600 });
    assert.equal(stalledAfterMs(60, HB), 180_000);
    assert.equal(stalledAfterMs(1, 500), 3_000, "at least 3 heartbeat intervals");
    assert.deepEqual(decideAlerts(facts(at(180), { items: [it0] }), []).raise, []);
    assert.deepEqual(kinds(decideAlerts(facts(at(181), { items: [it0] }), [])).raise, [
      "replication-stalled item:item-1",
    ]);
    // progress reported by the agent keeps it quiet; a repeated figure is no progress
    const moving = [
      { at: at(100), bytesDone: 5 },
      { at: at(170), bytesDone: 9 },
    ];
    assert.deepEqual(decideAlerts(facts(at(300), { items: [{ ...it0, progress: moving }] }), []).raise, []);
    const stuck = [
      { at: at(100), bytesDone: 9 },
      { at: at(170), bytesDone: 9 },
    ];
    assert.equal(decideAlerts(facts(at(300), { items: [{ ...it0, progress: stuck }] }), []).raise.length, 1);
  });

  it("raises replication-stalled for an initial replication that does not move", () => {
    const it0 = item({ phase: "initial-replication", lastPointAt: null, crashEverySeconds: 60 });
    const d = decideAlerts(facts(at(181), { items: [it0] }), []);
    assert.deepEqual(kinds(d).raise, ["replication-stalled item:item-1"]);
    assert.match(d.raise[0]!.message, /initial replication has made no progress for 3m1s/);
    const moving = [
      { at: at(150), bytesDone: 1 },
      { at: at(160), bytesDone: 2 },
    ];
    assert.deepEqual(decideAlerts(facts(at(300), { items: [{ ...it0, progress: moving }] }), []).raise, []);
  });

  it("knows when progress was last seen", () => {
    assert.equal(lastProgressAt([]), null);
    assert.deepEqual(lastProgressAt([{ at: at(3), bytesDone: 1 }]), at(3));
    assert.deepEqual(
      lastProgressAt([
        { at: at(9), bytesDone: 4 },
        { at: at(1), bytesDone: 1 },
        { at: at(5), bytesDone: 4 },
      ]),
      at(5),
    );
  });

  it("raises agent-lost after 3 silent heartbeat intervals, only while an item replicates from the machine", () => {
    assert.deepEqual(decideAlerts(facts(at(45), { machines: [machine()] }), []).raise, []);
    const d = decideAlerts(facts(at(45.001), { machines: [machine()] }), []);
    assert.deepEqual(kinds(d).raise, ["agent-lost machine:m-1"]);
    assert.match(
      d.raise[0]!.message,
      /machine web1: its agent has not reported for 45s .* item web1 replicates/,
    );
    assert.deepEqual(
      decideAlerts(facts(at(999), { machines: [machine({ replicatingItems: [] })] }), []).raise,
      [],
    );
    const never = decideAlerts(facts(at(46), { machines: [machine({ lastHeartbeatAt: null })] }), []);
    assert.match(never.raise[0]!.message, /never reported/);
  });

  it("raises appliance-lost after 3 missed heartbeats (counted from its creation if it never beat)", () => {
    assert.deepEqual(decideAlerts(facts(at(45), { appliances: [appliance()] }), []).raise, []);
    assert.deepEqual(kinds(decideAlerts(facts(at(46), { appliances: [appliance()] }), [])).raise, [
      "appliance-lost appliance:app-1",
    ]);
    const d = decideAlerts(facts(at(46), { appliances: [appliance({ lastHeartbeatAt: null })] }), []);
    assert.match(d.raise[0]!.message, /ps-primary at primary: no heartbeat since it was added for 46s/);
  });

  it("raises job-failed once per failed job and clears it when a retry succeeds", () => {
    const ids = { n: 0 };
    let open: OpenAlert[] = [];
    const d1 = decideAlerts(facts(t0, { jobs: [job()] }), open);
    assert.deepEqual(kinds(d1).raise, ["job-failed job:job-000000000001"]);
    assert.match(
      d1.raise[0]!.message,
      /job job-000000000001 \(failover of item web1\) failed: X_FAILED: it broke/,
    );
    open = applied(open, d1, t0, ids);
    // still failed, retried (running), failed again: nothing new
    for (const state of ["failed", "queued", "running", "waiting", "failed"] as const) {
      assert.deepEqual(kinds(decideAlerts(facts(t0, { jobs: [job({ state })] }), open)), {
        raise: [],
        clear: [],
      });
    }
    const done = decideAlerts(facts(t0, { jobs: [job({ state: "succeeded" })] }), open);
    assert.deepEqual(kinds(done), { raise: [], clear: ["job-failed job:job-000000000001"] });
    assert.equal(done.clear[0]!.reason, "the job was retried and succeeded");
  });

  it("clears job-failed when a later job of the same kind on the item succeeded (run again, not retried)", () => {
    const ids = { n: 0 };
    const open = applied([], decideAlerts(facts(t0, { jobs: [job()] }), []), t0, ids);
    const d = decideAlerts(facts(t0, { jobs: [job({ supersededBy: "job-000000000002" })] }), open);
    assert.deepEqual(kinds(d), { raise: [], clear: ["job-failed job:job-000000000001"] });
    assert.match(d.clear[0]!.reason, /a later failover job \(job-000000000002\) succeeded/);
    // and a superseded failed job raises nothing in the first place
    assert.deepEqual(
      kinds(decideAlerts(facts(t0, { jobs: [job({ supersededBy: "job-2" })] }), [])).raise,
      [],
    );
  });

  it("clears an alert whose condition is gone, and one whose subject is gone on a complete look only", () => {
    const open: OpenAlert[] = [
      { id: "a1", kind: "agent-lost", subject: "machine:m-1", raisedAt: t0.toISOString() },
      { id: "a2", kind: "appliance-lost", subject: "appliance:gone", raisedAt: t0.toISOString() },
    ];
    const back = facts(at(10), { machines: [machine({ lastHeartbeatAt: at(9) })] });
    assert.deepEqual(kinds(decideAlerts(back, open)).clear, [
      "agent-lost machine:m-1",
      "appliance-lost appliance:gone",
    ]);
    assert.deepEqual(kinds(decideAlerts({ ...back, complete: false }, open)).clear, [
      "agent-lost machine:m-1",
    ]);
    // a partial look (one job) leaves every other alert alone
    assert.deepEqual(kinds(decideAlerts(facts(at(10), { complete: false, jobs: [job()] }), open)), {
      raise: ["job-failed job:job-000000000001"],
      clear: [],
    });
  });

  it("keeps the oldest of duplicate open alerts and clears the others", () => {
    const open: OpenAlert[] = [
      { id: "new", kind: "agent-lost", subject: "machine:m-1", raisedAt: at(5).toISOString() },
      { id: "old", kind: "agent-lost", subject: "machine:m-1", raisedAt: at(1).toISOString() },
    ];
    const d = decideAlerts(facts(at(100), { machines: [machine()] }), open);
    assert.deepEqual(d.raise, []);
    assert.deepEqual(
      d.clear.map((c) => [c.id, c.reason]),
      [["new", "a duplicate of an older open alert"]],
    );
  });

  it("names a kind for every condition it judges", () => {
    const f = facts(at(10_000), {
      items: [item()],
      machines: [machine()],
      appliances: [appliance()],
      jobs: [job()],
    });
    for (const j of judge(f)) assert.ok(isAlertKind(j.kind), j.kind);
  });
});

// ---- property: random worlds, random open alerts -------------------------------------------------

const ids = ["1", "2", "3"];
const time = fc.integer({ min: 0, max: 4000 }).map((s) => at(s));
const maybeTime = fc.option(time, { nil: null });

const itemArb = fc.record({
  id: fc.constantFrom(...ids).map((i) => `item-${i}`),
  name: fc.constant("web"),
  phase: fc.constantFrom(...PHASES),
  direction: fc.constant("primary → recovery"),
  since: time,
  lastPointAt: maybeTime,
  rpoThresholdSeconds: fc.integer({ min: 1, max: 3600 }),
  crashEverySeconds: fc.integer({ min: 1, max: 900 }),
  progress: fc.array(fc.record({ at: time, bytesDone: fc.integer({ min: 0, max: 5 }) }), { maxLength: 4 }),
});
const machineArb = fc.record({
  id: fc.constantFrom(...ids).map((i) => `m-${i}`),
  name: fc.constant("web"),
  lastHeartbeatAt: maybeTime,
  replicatingItems: fc.array(fc.constant("web"), { maxLength: 2 }),
  watchedSince: time,
});
const applianceArb = fc.record({
  id: fc.constantFrom(...ids).map((i) => `app-${i}`),
  name: fc.constant("ps"),
  site: fc.constant("primary"),
  lastHeartbeatAt: maybeTime,
  createdAt: time,
});
const jobArb = fc.record({
  id: fc.constantFrom(...ids).map((i) => `job-00000000000${i}`),
  kind: fc.constant("failover"),
  state: fc.constantFrom("queued", "running", "waiting", "succeeded", "failed", "cancelled" as const),
  itemName: fc.constant(null),
  error: fc.constant(null),
});
const uniqueBy = <T extends { id: string }>(a: fc.Arbitrary<T>) =>
  fc.uniqueArray(a, { selector: (x) => x.id, maxLength: 3 });

const factsArb = fc.record({
  now: fc.integer({ min: 0, max: 5000 }).map((s) => at(s)),
  heartbeatIntervalMs: fc.constantFrom(500, 15_000),
  complete: fc.boolean(),
  items: uniqueBy(itemArb),
  machines: uniqueBy(machineArb),
  appliances: uniqueBy(applianceArb),
  jobs: uniqueBy(jobArb),
});
const subjects = [
  ...ids.map((i) => `item:item-${i}`),
  ...ids.map((i) => `machine:m-${i}`),
  ...ids.map((i) => `appliance:app-${i}`),
  ...ids.map((i) => `job:job-00000000000${i}`),
];
const openArb = fc
  .array(
    fc.record({
      kind: fc.constantFrom(
        "rpo-breach",
        "replication-stalled",
        "agent-lost",
        "appliance-lost",
        "job-failed" as const,
      ),
      subject: fc.constantFrom(...subjects),
      raisedAt: time.map((d) => d.toISOString()),
    }),
    { maxLength: 8 },
  )
  .map((xs) => xs.map((x, i) => ({ ...x, id: `open-${i}` })));

describe("alerts: properties", () => {
  it("deciding again on the result raises and clears nothing, one open alert per (kind, subject)", () => {
    fc.assert(
      fc.property(factsArb, openArb, (f, open) => {
        const d = decideAlerts(f, open);
        const after = applied(open, d, f.now, { n: 0 });
        assert.deepEqual(decideAlerts(f, after), { raise: [], clear: [] });
        const keys = after.map((a) => `${a.kind} ${a.subject}`);
        assert.equal(new Set(keys).size, keys.length, "no duplicates");
      }),
      { numRuns: 2000 },
    );
  });

  it("every firing condition has an open alert and every open alert whose condition is gone is cleared", () => {
    fc.assert(
      fc.property(factsArb, openArb, (f, open) => {
        const d = decideAlerts(f, open);
        const after = applied(open, d, f.now, { n: 0 });
        const openKeys = new Set(after.map((a) => `${a.kind} ${a.subject}`));
        const judged = new Map(judge(f).map((j) => [`${j.kind} ${j.subject}`, j.j.type]));
        for (const [k, type] of judged) {
          if (type === "firing") assert.ok(openKeys.has(k), `${k} fires and is open`);
          if (type === "resolved") assert.ok(!openKeys.has(k), `${k} is resolved and not open`);
        }
        for (const k of openKeys) {
          if (!judged.has(k))
            assert.ok(!f.complete, `${k}: its subject is gone, so only a partial look keeps it`);
        }
        // nothing is cleared that is still firing or undecided, unless it is a duplicate
        for (const c of d.clear) {
          const type = judged.get(`${c.kind} ${c.subject}`);
          if (type === "firing" || type === "undecided")
            assert.equal(c.reason, "a duplicate of an older open alert");
        }
      }),
      { numRuns: 2000 },
    );
  });
});

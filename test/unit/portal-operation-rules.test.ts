// The operation dialogs' pure rules (portal/src/lib/operation-rules.ts): what each dialog refuses
// before it asks the vault, the bodies it sends, the words it shows, and that the point it says a
// choice means is the point the vault's own selection picks.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { Appliance, Datastore, PointView } from "../../portal/src/api/client.ts";
import {
  changePointBody,
  disableWords,
  failoverBody,
  failoverDefaultChoice,
  initialPointForm,
  initialReprotectForm,
  isFailback,
  isRefusalError,
  NEEDS_RUNNING_MACHINE,
  NOTES_MAX,
  operationTitle,
  PLANNED_WORDS,
  POINT_CHOICES,
  POINT_WORDS,
  type PointChoice,
  pinPoint,
  pointAgeWords,
  pointPinWords,
  pointText,
  REFUSAL_ADVICE,
  type ReprotectForm,
  reprotectBody,
  reprotectChoices,
  reprotectDirection,
  reprotectSites,
  resolvePoint,
  resumeBody,
  startWords,
  testFailoverBody,
  validateChangePoint,
  validateCleanup,
  validateConfirmForm,
  validateFailover,
  validatePoint,
  validateReprotect,
  validateTestFailover,
  withReprotectDefaults,
} from "../../portal/src/lib/operation-rules.ts";
import type { PointId } from "../../src/domain/ids.ts";
import { type PointRequest, parsePointRequest, selectPoint } from "../../src/domain/point-selection.ts";
import { isRefusal } from "../../src/domain/refusal.ts";

const t0 = Date.parse("2026-11-26T12:00:00Z");
const point = (min: number, consistency: "crash" | "app", hex: string, nowMin = 60): PointView => {
  const at = new Date(t0 + min * 60e3).toISOString();
  return {
    id: `${at.replace(/[-:.]/g, "").slice(0, 18)}Z-${hex}`,
    createdAt: at,
    consistency,
    ageSeconds: (nowMin - min) * 60,
  };
};
// newest first, as the API lists them
const POINTS = [point(55, "crash", "000003"), point(50, "crash", "000002"), point(30, "app", "000001")];
const [NEWEST, MIDDLE, APP] = POINTS as [PointView, PointView, PointView];

const ITEM = { name: "web1", source: "primary", target: "recovery", home: "primary" };

test("each dialog starts on its default point, or on the one picked on the timeline", () => {
  assert.deepEqual(initialPointForm("failover"), { choice: "latest", custom: "" });
  assert.deepEqual(initialPointForm("test-failover"), { choice: "latest-processed", custom: "" });
  // changing the point: the operator names the new one
  assert.deepEqual(initialPointForm("change-point"), { choice: "custom", custom: "" });
  assert.deepEqual(initialPointForm("failover", MIDDLE.id), { choice: "custom", custom: MIDDLE.id });
  assert.deepEqual(initialPointForm("test-failover", "latest-app-consistent"), {
    choice: "latest-app-consistent",
    custom: "",
  });
  // no "latest" after a failover (nothing is left to process): a keyword it does not offer is an id
  assert.equal(initialPointForm("change-point", "latest").choice, "custom");
  assert.ok(!POINT_CHOICES["change-point"].includes("latest"));
  assert.equal(pointText({ choice: "custom", custom: MIDDLE.id }), MIDDLE.id);
  assert.equal(pointText({ choice: "latest-processed", custom: MIDDLE.id }), "latest-processed");
});

test("every point option says its RPO/RTO trade-off in one line", () => {
  for (const c of Object.keys(POINT_WORDS) as PointChoice[]) {
    assert.ok(POINT_WORDS[c].label.length > 0);
    assert.doesNotMatch(POINT_WORDS[c].tradeOff, /\n/);
  }
  assert.match(POINT_WORDS.latest.tradeOff, /lowest RPO/);
  assert.match(POINT_WORDS["latest-processed"].tradeOff, /lowest RTO/);
  assert.match(POINT_WORDS["latest-app-consistent"].tradeOff, /older/);
});

test("a choice resolves to the held point it means, in any order of the list", () => {
  const shuffled = [APP, NEWEST, MIDDLE];
  assert.equal(resolvePoint({ choice: "latest-processed", custom: "" }, shuffled), NEWEST);
  assert.equal(resolvePoint({ choice: "latest-app-consistent", custom: "" }, shuffled), APP);
  assert.equal(resolvePoint({ choice: "custom", custom: MIDDLE.id }, shuffled), MIDDLE);
  assert.equal(resolvePoint({ choice: "custom", custom: "20261126T000000000Z-ffffff" }, shuffled), null);
  // latest makes a new point
  assert.equal(resolvePoint({ choice: "latest", custom: "" }, shuffled), null);
  assert.equal(resolvePoint({ choice: "latest-processed", custom: "" }, []), null);
});

test("the point the dialog names is the one the vault selects", () => {
  const arbPoint = fc.record({
    min: fc.integer({ min: 0, max: 10_000 }),
    consistency: fc.constantFrom<"crash" | "app">("crash", "app"),
    hex: fc.stringMatching(/^[0-9a-f]{6}$/),
  });
  fc.assert(
    fc.property(
      fc.uniqueArray(arbPoint, { minLength: 1, maxLength: 12, selector: (p) => p.min }),
      fc.constantFrom<PointChoice>("latest-processed", "latest-app-consistent", "custom"),
      fc.nat(),
      (raw, choice, pick) => {
        const views = raw.map((r) => point(r.min, r.consistency, r.hex, 20_000));
        const custom = views[pick % views.length]!.id;
        const form = { choice, custom };
        const mine = resolvePoint(form, views);
        const vaults = selectPoint(
          views.map((v) => ({
            id: v.id as PointId,
            createdAtMs: Date.parse(v.createdAt),
            consistency: v.consistency,
          })),
          parsePointRequest(pointText(form)) as PointRequest,
        );
        if (isRefusal(vaults)) assert.equal(mine, null);
        else assert.equal(mine?.id, vaults.id);
        // and what the dialog refuses, the vault refuses
        assert.equal(validatePoint(form, views).point !== undefined, isRefusal(vaults));
      },
    ),
  );
});

test("each option shows the concrete point's age", () => {
  assert.equal(pointAgeWords("latest-processed", undefined), "…");
  assert.equal(pointAgeWords("latest-processed", POINTS), "5 min old");
  assert.equal(pointAgeWords("latest-app-consistent", POINTS), "30 min old, app-consistent");
  assert.equal(
    pointAgeWords("latest", POINTS),
    "a new point, cut when it starts (the newest held is 5 min old)",
  );
  assert.equal(pointAgeWords("latest", []), "a new point, cut when it starts");
  assert.equal(pointAgeWords("latest-app-consistent", [NEWEST]), "none held");
  assert.equal(pointAgeWords("latest-processed", []), "no point yet");
  assert.equal(pointAgeWords("custom", POINTS), "none chosen yet");
  assert.equal(pointAgeWords("custom", POINTS, MIDDLE.id), "10 min old");
  assert.equal(pointAgeWords("custom", POINTS, "20261126T000000000Z-ffffff"), "no longer held");
});

test("validatePoint: a specific point needs choosing, and the chosen kind must be held", () => {
  assert.deepEqual(validatePoint({ choice: "custom", custom: "" }, undefined), {
    point: "choose a recovery point from the list",
  });
  assert.deepEqual(validatePoint({ choice: "custom", custom: "" }, POINTS), {
    point: "choose a recovery point from the list",
  });
  assert.deepEqual(validatePoint({ choice: "custom", custom: MIDDLE.id }, POINTS), {});
  assert.match(
    validatePoint({ choice: "custom", custom: "20261126T000000000Z-ffffff" }, POINTS).point ?? "",
    /no longer held/,
  );
  assert.match(
    validatePoint({ choice: "latest-app-consistent", custom: "" }, [NEWEST]).point ?? "",
    /no app-consistent/,
  );
  assert.match(
    validatePoint({ choice: "latest-processed", custom: "" }, []).point ?? "",
    /no recovery point yet/,
  );
  // latest cuts its own point; points not loaded yet: nothing to say
  assert.deepEqual(validatePoint({ choice: "latest", custom: "" }, []), {});
  assert.deepEqual(validatePoint({ choice: "latest-app-consistent", custom: "" }, undefined), {});
});

test("validateFailover: the item's name, exactly, enables the start", () => {
  const form = {
    point: { choice: "latest" as const, custom: "" },
    shutdownSource: true,
    planned: false,
    confirm: "",
  };
  assert.deepEqual(validateFailover(form, ITEM, POINTS), { confirm: "type web1 to confirm" });
  assert.deepEqual(validateFailover({ ...form, confirm: "WEB1" }, ITEM, POINTS), {
    confirm: "that is not the item's name: type web1",
  });
  assert.deepEqual(validateFailover({ ...form, confirm: " web1 " }, ITEM, POINTS), {});
  assert.deepEqual(
    validateFailover({ ...form, point: { choice: "custom", custom: "" }, confirm: "web1" }, ITEM, POINTS),
    { point: "choose a recovery point from the list" },
  );
  fc.assert(
    fc.property(fc.string(), fc.string({ minLength: 1 }), (typed, name) => {
      const ok = Object.keys(validateFailover({ ...form, confirm: typed }, { name }, POINTS)).length === 0;
      assert.equal(ok, typed.trim() === name);
    }),
  );
  assert.deepEqual(failoverBody({ ...form, point: { choice: "custom", custom: APP.id } }), {
    point: APP.id,
    shutdownSource: true,
  });
});

test("a planned failover forces latest and the shutdown, and takes no point choice", () => {
  const form = {
    point: { choice: "custom" as const, custom: "" },
    shutdownSource: false,
    planned: true,
    confirm: "web1",
  };
  // the custom point left unchosen is no error: the planned failover does not use it
  assert.deepEqual(validateFailover(form, ITEM, POINTS), {});
  assert.deepEqual(validateFailover({ ...form, planned: false }, ITEM, POINTS), {
    point: "choose a recovery point from the list",
  });
  assert.deepEqual(failoverBody(form), { point: "latest", shutdownSource: true, planned: true });
  assert.match(
    PLANNED_WORDS("primary", "failover"),
    /^No data loss: the machine at primary .* must be running/,
  );
});

test("the failover's default point follows the source machine's agent", () => {
  assert.equal(failoverDefaultChoice(undefined), "latest", "not known yet: latest");
  assert.equal(failoverDefaultChoice("online"), "latest");
  // latest needs the machine running to drain it: the vault refuses FAILOVER_LATEST_SOURCE_NOT_RUNNING
  assert.equal(failoverDefaultChoice("lost"), "latest-processed");
  assert.equal(failoverDefaultChoice("unknown"), "latest-processed");
  assert.ok(POINT_CHOICES.failover.includes(failoverDefaultChoice("lost")));
});

test("a resumed failover sends the request of the job that began it", () => {
  assert.deepEqual(resumeBody({ point: APP.id, shutdownSource: true, planned: false, drain: false }), {
    point: APP.id,
    shutdownSource: true,
  });
  assert.deepEqual(resumeBody({ point: "latest", shutdownSource: false, planned: true, drain: true }), {
    point: "latest",
    shutdownSource: false,
  });
  // no job found (or params of another shape): the vault's defaults
  assert.deepEqual(resumeBody(undefined), {});
  assert.deepEqual(resumeBody({ point: 3 }), {});
});

test("validateTestFailover refuses a test network that is the production network", () => {
  const form = { point: { choice: "latest-processed" as const, custom: "" } };
  assert.deepEqual(validateTestFailover(form, { targetSettings: { testNetwork: "lab" } }, POINTS), {});
  assert.match(
    validateTestFailover(form, { targetSettings: { network: "prod", testNetwork: "prod" } }, POINTS)
      .testNetwork ?? "",
    /is the production network \(prod\)/,
  );
  // a network chosen for this drill is checked the same way, and sent; an empty one is not
  const prod = { targetSettings: { network: "prod", testNetwork: "lab" } };
  assert.match(
    validateTestFailover({ ...form, testNetwork: " prod " }, prod, POINTS).testNetwork ?? "",
    /production/,
  );
  assert.deepEqual(validateTestFailover({ ...form, testNetwork: "lab-b" }, prod, POINTS), {});
  assert.deepEqual(testFailoverBody({ ...form, testNetwork: " lab-b " }), {
    point: "latest-processed",
    testNetwork: "lab-b",
  });
  assert.deepEqual(testFailoverBody({ ...form, testNetwork: "" }), { point: "latest-processed" });
});

test("validateCleanup keeps notes up to 4000 characters", () => {
  assert.equal(NOTES_MAX, 4000);
  assert.deepEqual(validateCleanup({ notes: "x".repeat(4000) }), {});
  assert.deepEqual(validateCleanup({ notes: "x".repeat(4001) }), {
    notes: "notes are 4001 characters, 1 over the 4000 kept: shorten them",
  });
  fc.assert(
    fc.property(fc.nat({ max: 9000 }), (n) => {
      assert.equal(validateCleanup({ notes: "y".repeat(n) }).notes === undefined, n <= NOTES_MAX);
    }),
  );
});

test("validateChangePoint refuses the point the machine runs from already", () => {
  const running = { failover: { point: NEWEST.id, instanceId: "i", site: "recovery", jobId: "j" } } as const;
  const sameByKeyword = { point: { choice: "latest-processed" as const, custom: "" } };
  assert.match(
    validateChangePoint(sameByKeyword, running as never, POINTS).point ?? "",
    /runs from this point/,
  );
  assert.match(
    validateChangePoint({ point: { choice: "custom", custom: NEWEST.id } }, running as never, POINTS).point ??
      "",
    /runs from this point/,
  );
  assert.deepEqual(
    validateChangePoint({ point: { choice: "custom", custom: APP.id } }, running as never, POINTS),
    {},
  );
  assert.deepEqual(changePointBody({ point: { choice: "custom", custom: APP.id } }), { point: APP.id });
});

test("commit and disable want the name", () => {
  assert.deepEqual(validateConfirmForm({ confirm: "web1" }, ITEM), {});
  assert.ok(validateConfirmForm({ confirm: "web" }, ITEM).confirm);
  assert.ok(validateConfirmForm({ confirm: "" }, ITEM).confirm);
});

test("disable says what happens in the item's phase", () => {
  const base = { ...ITEM, direction: "primary → recovery" };
  const prot = disableWords({ ...base, phase: "protected" });
  assert.match(prot.lead, /replication primary → recovery ends .* The machine at primary keeps running/);
  assert.match(prot.warning, /Every recovery point of web1 at recovery is deleted/);
  // after a committed failover nothing replicates and the machine runs at the target
  const committed = disableWords({ ...base, phase: "failover-committed" });
  assert.match(
    committed.lead,
    /web1 runs at recovery since its failover was committed, and nothing replicates/,
  );
  assert.doesNotMatch(committed.lead, /replication primary → recovery ends|keeps running at primary/);
  assert.match(committed.warning, /cannot be reprotected or failed back to primary/);
});

test("a failover towards home is a failback, in the title and the button", () => {
  const back = { ...ITEM, source: "recovery", target: "primary" };
  assert.equal(isFailback(ITEM), false);
  assert.equal(isFailback(back), true);
  assert.equal(operationTitle(ITEM, "failover"), "Failover");
  assert.equal(operationTitle(back, "failover"), "Failback");
  assert.equal(startWords(ITEM, "failover"), "Fail over");
  assert.equal(startWords(back, "failover"), "Fail back");
  assert.equal(operationTitle(ITEM, "commit"), "Commit failover");
  assert.equal(operationTitle(back, "commit"), "Commit failback");
  assert.equal(operationTitle(ITEM, "test-failover"), "Test failover");
});

const appliance = (name: string, site: string, roles: Appliance["roles"], createdMin: number): Appliance => ({
  id: `app-${name}`,
  name,
  site,
  siteId: `site-${site}`,
  roles,
  url: null,
  kind: "in-process",
  controlUrl: null,
  lastHeartbeatAt: null,
  createdAt: new Date(t0 + createdMin * 60e3).toISOString(),
  health: { liveness: "online" },
});
const datastore = (name: string, site: string, createdMin: number): Datastore => ({
  id: `ds-${name}`,
  name,
  site,
  siteId: `site-${site}`,
  kind: "local",
  location: `/srv/${name}`,
  applianceId: null,
  capacityBytes: null,
  usedBytes: null,
  lastSeenAt: null,
  createdAt: new Date(t0 + createdMin * 60e3).toISOString(),
  health: { reachable: true },
});

const APPLIANCES = [
  appliance("rec-ps", "recovery", ["process-server", "master-target"], 0),
  appliance("prim-mt2", "primary", ["master-target"], 9),
  appliance("prim-both", "primary", ["process-server", "master-target"], 1),
  appliance("prim-ps2", "primary", ["process-server"], 5),
];
const DATASTORES = [
  datastore("prim-b", "primary", 7),
  datastore("rec-a", "recovery", 0),
  datastore("prim-a", "primary", 2),
];
const COMMITTED = { phase: "failover-committed", source: "primary", target: "recovery" };

test("reprotect goes from where the machine runs back to where it came from", () => {
  assert.deepEqual(reprotectSites(COMMITTED), { running: "recovery", returning: "primary" });
  assert.equal(reprotectDirection(COMMITTED), "recovery → primary");
  // resuming: the direction is already reversed
  const resuming = { phase: "reprotecting", source: "recovery", target: "primary" };
  assert.deepEqual(reprotectSites(resuming), { running: "recovery", returning: "primary" });
});

test("reprotect offers the return site's appliances and datastores, the vault's default first", () => {
  const c = reprotectChoices(COMMITTED, APPLIANCES, DATASTORES);
  assert.deepEqual(
    c.processServers.map((a) => a.name),
    ["prim-both", "prim-ps2"],
  );
  assert.deepEqual(
    c.masterTargets.map((a) => a.name),
    ["prim-both", "prim-mt2"],
  );
  assert.deepEqual(
    c.datastores.map((d) => d.name),
    ["prim-a", "prim-b"],
  );
  const empty: ReprotectForm = { location: "original", processServer: "", masterTarget: "", datastore: "" };
  assert.deepEqual(withReprotectDefaults(empty, c), {
    location: "original",
    processServer: "app-prim-both",
    masterTarget: "app-prim-both",
    datastore: "ds-prim-a",
  });
  // only what the operator chose is sent: the vault picks the same defaults itself
  assert.deepEqual(reprotectBody(empty), { location: "original" });
  assert.deepEqual(reprotectBody({ ...empty, location: "alternate", datastore: "ds-prim-b" }), {
    location: "alternate",
    datastore: "ds-prim-b",
  });
});

test("validateReprotect names a choice at the wrong site and a site with nothing to choose", () => {
  const empty: ReprotectForm = { location: "original", processServer: "", masterTarget: "", datastore: "" };
  assert.deepEqual(validateReprotect(empty, COMMITTED, undefined, undefined), {});
  assert.deepEqual(validateReprotect(empty, COMMITTED, APPLIANCES, DATASTORES), {});
  assert.deepEqual(
    validateReprotect({ ...empty, processServer: "app-rec-ps" }, COMMITTED, APPLIANCES, DATASTORES),
    {
      processServer: "rec-ps is at recovery, but replication goes back to primary: choose one at primary",
    },
  );
  assert.match(
    validateReprotect({ ...empty, datastore: "ds-gone" }, COMMITTED, APPLIANCES, DATASTORES).datastore ?? "",
    /is gone/,
  );
  const bare = validateReprotect(empty, COMMITTED, [APPLIANCES[0]!], [DATASTORES[1]!]);
  assert.deepEqual(Object.keys(bare).sort(), ["datastore", "masterTarget", "processServer"]);
  assert.match(bare.processServer ?? "", /^primary has no process server/);
});

test("the refusals a dialog choice fixes say which choice", () => {
  assert.match(REFUSAL_ADVICE.REPROTECT_ORIGINAL_DISKS_GONE ?? "", /Alternate location/);
  assert.match(REFUSAL_ADVICE.FAILOVER_LATEST_SOURCE_NOT_RUNNING ?? "", /Latest processed/);
  assert.match(REFUSAL_ADVICE.FAILOVER_PLANNED_SOURCE_NOT_RUNNING ?? "", /Untick Planned/);
});

test("a dry run's 4xx with the vault's code is a refusal; no answer, a 5xx or 401/403 is not", () => {
  const e = (status: number, code: string) => ({ status, code });
  for (const [status, code] of [
    [409, "REPROTECT_MACHINE_NOT_RUNNING"],
    [404, "POINT_NOT_FOUND"],
    [404, "ITEM_NOT_FOUND"],
    [400, "INVALID_REQUEST"],
    [400, "POINT_REQUEST_INVALID"],
  ] as const) {
    assert.equal(isRefusalError(e(status, code)), true, `${status} ${code}`);
  }
  for (const [status, code] of [
    [0, "VAULT_UNREACHABLE"],
    [500, "INTERNAL"],
    [503, "DB_UNREACHABLE"],
    [401, "UNAUTHENTICATED"],
    [403, "FORBIDDEN"],
    [404, "HTTP_404"],
  ] as const) {
    assert.equal(isRefusalError(e(status, code)), false, `${status} ${code}`);
  }
});

test("the refusals that want a machine running are the lifecycle's and reprotect's", () => {
  for (const code of [
    "REPROTECT_MACHINE_NOT_RUNNING",
    "COMMIT_RECOVERED_MACHINE_NOT_RUNNING",
    "FAILOVER_LATEST_SOURCE_NOT_RUNNING",
    "FAILOVER_PLANNED_SOURCE_NOT_RUNNING",
  ]) {
    assert.ok(NEEDS_RUNNING_MACHINE.has(code), code);
  }
  // a machine that still runs where it must not is not fixed by starting one
  assert.equal(NEEDS_RUNNING_MACHINE.has("REPROTECT_OLD_MACHINE_RUNNING"), false);
});

test("Start sends the point the dry run resolved, except for latest", () => {
  const resolved = {
    id: MIDDLE.id,
    createdAt: MIDDLE.createdAt,
    consistency: "crash" as const,
    ageSeconds: 3,
  };
  assert.deepEqual(pinPoint({ point: "latest-processed", shutdownSource: true }, resolved), {
    point: MIDDLE.id,
    shutdownSource: true,
  });
  assert.deepEqual(pinPoint({ point: "latest-app-consistent" }, resolved), { point: MIDDLE.id });
  // latest cuts a new point when it starts: it cannot be pinned
  assert.deepEqual(pinPoint({ point: "latest", planned: true }, resolved), {
    point: "latest",
    planned: true,
  });
  assert.deepEqual(pinPoint({ point: "latest-processed" }, undefined), { point: "latest-processed" });
  assert.deepEqual(pinPoint({}, resolved), {}, "an operation without a point is sent as it is");
  const at = (iso: string) => iso.slice(11, 19);
  assert.equal(
    pointPinWords("latest-processed", { drain: false, point: resolved }, at),
    `Will use point ${MIDDLE.id} from 12:50:00, 3 s old (crash-consistent): Start sends exactly this point, so one arriving meanwhile is not used.`,
  );
  assert.equal(
    pointPinWords(MIDDLE.id, { drain: false, point: { ...resolved, consistency: "app" } }, at),
    `Will use point ${MIDDLE.id} from 12:50:00, 3 s old (app-consistent).`,
  );
  assert.match(pointPinWords("latest", { drain: true }, at) ?? "", /cuts a new point when it starts/);
  assert.equal(pointPinWords(undefined, { drain: false }, at), null);
});

test("reprotect opens on the original location only while the disks are at the return site", () => {
  assert.equal(initialReprotectForm({ disksAtReturnSite: true }).location, "original");
  assert.equal(initialReprotectForm({ disksAtReturnSite: false }).location, "alternate");
  assert.deepEqual(initialReprotectForm({ disksAtReturnSite: true }), {
    location: "original",
    processServer: "",
    masterTarget: "",
    datastore: "",
  });
});

// The portal's plan editing model (portal/src/lib/plan-edit.ts): the edits, the checks made before a
// save, and that they agree with the vault's own rules (src/domain/plan.ts) — what the editor lets
// through the API accepts, what it stops the API would refuse, and the run order it shows is the
// order of the job's steps.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Value } from "@sinclair/typebox/value";
import fc from "fast-check";
import { initialPointForm, POINT_CHOICES, POINT_WORDS } from "../../portal/src/lib/operation-rules.ts";
import {
  ACTION_KINDS,
  type ActionKind,
  addAction,
  addGroup,
  addItems,
  childJobs,
  DEFAULT_ACTION_ON,
  type DraftAction,
  draftFromView,
  emptyDraft,
  groupOf,
  initialPlanOptions,
  isDirty,
  issuesAt,
  itemTakesPart,
  MAX_TIMEOUT_S,
  machinesOf,
  moveAction,
  moveGroup,
  moveItem,
  PLAN_OPERATIONS,
  type PlanDraft,
  type PlanOperation,
  planCheckKey,
  planNameTyped,
  planOperationBody,
  planPointChoices,
  planStartGate,
  removeAction,
  removeGroup,
  removeItem,
  runOrder,
  setGroupOnError,
  stepNames,
  stepPlace,
  toBody,
  toggleActionOn,
  updateAction,
  validate,
  waitingAt,
} from "../../portal/src/lib/plan-edit.ts";
import {
  checkDefinition,
  ACTION_KINDS as DOMAIN_ACTION_KINDS,
  DEFAULT_ACTION_ON as DOMAIN_DEFAULT_ON,
  PLAN_OPERATIONS as DOMAIN_OPERATIONS,
  type PlanOperation as DomainOperation,
  MAX_ACTION_TIMEOUT_S,
  planSteps,
} from "../../src/domain/plan.ts";
import { isRefusal } from "../../src/domain/refusal.ts";
import { PlanOperationBodies } from "../../src/vault/plans/schema.ts";

const DB = { id: "item-db0000000001", name: "db" };
const APP1 = { id: "item-app000000001", name: "app1" };
const APP2 = { id: "item-app000000002", name: "app2" };
const WEB = { id: "item-web000000001", name: "web" };
const ITEMS = [DB, APP1, APP2, WEB];
const KNOWN = new Set(ITEMS.map((i) => i.id));

const names = (d: PlanDraft) => d.groups.map((g) => g.items.map((i) => i.name));
const paths = (d: PlanDraft, known?: ReadonlySet<string>) => validate(d, known).map((i) => i.path);

/** db first, then the two apps with a manual step before them. */
function twoGroups(): PlanDraft {
  let d = addGroup(emptyDraft("erp"), [DB]);
  d = addGroup(d, [APP1, APP2]);
  d = addAction(d, 1, "pre", "manual");
  return updateAction(d, 1, "pre", 0, { message: "check the database answers" });
}

describe("the portal's plan constants", () => {
  it("are the vault's", () => {
    assert.deepEqual([...PLAN_OPERATIONS], [...DOMAIN_OPERATIONS]);
    assert.deepEqual([...ACTION_KINDS], [...DOMAIN_ACTION_KINDS]);
    assert.deepEqual([...DEFAULT_ACTION_ON], [...DOMAIN_DEFAULT_ON]);
    assert.equal(MAX_TIMEOUT_S, MAX_ACTION_TIMEOUT_S);
  });
});

describe("editing a plan", () => {
  it("moves an item to another group and to a new last group", () => {
    let d = twoGroups();
    d = moveItem(d, APP2.id, 0);
    assert.deepEqual(names(d), [["db", "app2"], ["app1"]]);
    d = moveItem(d, DB.id, "new");
    assert.deepEqual(names(d), [["app2"], ["app1"], ["db"]]);
    assert.equal(groupOf(d, DB.id), 2);
    // to its own group, to a group that does not exist, or an item not in the plan: nothing changes
    assert.equal(moveItem(d, DB.id, 2), d);
    assert.equal(moveItem(d, DB.id, 7), d);
    assert.equal(moveItem(d, WEB.id, 0), d);
  });

  it("reorders groups with their actions", () => {
    const d = moveGroup(twoGroups(), 1, -1);
    assert.deepEqual(names(d), [["app1", "app2"], ["db"]]);
    assert.equal(d.groups[0]?.pre[0]?.message, "check the database answers");
    assert.deepEqual(names(moveGroup(d, 0, -1)), names(d), "the first group cannot go earlier");
    assert.deepEqual(names(moveGroup(d, 1, 1)), names(d), "the last group cannot go later");
  });

  it("adds only items the plan does not have yet", () => {
    const d = addItems(twoGroups(), 0, [APP1, WEB, WEB]);
    assert.deepEqual(names(d), [
      ["db", "web"],
      ["app1", "app2"],
    ]);
    assert.deepEqual(names(addGroup(d, [DB, APP1])), [["db", "web"], ["app1", "app2"], []]);
  });

  it("removes items and groups; a removed group's items leave the plan", () => {
    let d = removeItem(twoGroups(), APP1.id);
    assert.deepEqual(names(d), [["db"], ["app2"]]);
    d = removeGroup(d, 0);
    assert.deepEqual(names(d), [["app2"]]);
    assert.equal(groupOf(d, DB.id), -1);
    assert.equal(d.groups[0]?.pre.length, 1);
  });

  it("adds, changes, reorders and removes actions", () => {
    let d = addAction(twoGroups(), 0, "post", "script");
    d = addAction(d, 0, "post", "machine-script");
    d = updateAction(d, 0, "post", 0, { run: "curl -f http://db/health" });
    d = moveAction(d, 0, "post", 0, 1);
    assert.deepEqual(
      d.groups[0]?.post.map((a) => a.kind),
      ["machine-script", "script"],
    );
    d = toggleActionOn(d, 0, "post", 1, "test-failover");
    assert.deepEqual(d.groups[0]?.post[1]?.on, ["failover"]);
    d = toggleActionOn(d, 0, "post", 1, "test-failover");
    assert.deepEqual(d.groups[0]?.post[1]?.on, ["test-failover", "failover"], "kept in the API's order");
    d = removeAction(d, 0, "post", 0);
    assert.deepEqual(
      d.groups[0]?.post.map((a) => a.run),
      ["curl -f http://db/health"],
    );
  });

  it("turns a plan view into a draft and back into the body PUT takes", () => {
    const view = {
      name: "erp",
      continueOnError: false,
      groups: [
        {
          continueOnError: true,
          items: [DB],
          pre: [],
          post: [{ kind: "script", run: "echo ok", timeoutSeconds: 60, on: ["failover"], step: "x" }],
        },
        {
          continueOnError: false,
          items: [APP1],
          pre: [{ kind: "manual", message: "check", on: ["failover", "test-failover"], step: "y" }],
          post: [],
        },
      ],
    };
    const d = draftFromView(view);
    assert.equal(d.groups[0]?.onError, "go-on");
    assert.equal(d.groups[1]?.onError, "plan");
    assert.deepEqual(toBody(d), {
      name: "erp",
      continueOnError: false,
      groups: [
        {
          items: [DB.id],
          pre: [],
          post: [{ kind: "script", run: "echo ok", timeoutSeconds: 60, on: ["failover"] }],
          continueOnError: true,
        },
        {
          items: [APP1.id],
          pre: [{ kind: "manual", message: "check", on: ["failover", "test-failover"] }],
          post: [],
        },
      ],
    });
    assert.equal(isDirty(d, draftFromView(view)), false, "a fresh draft has no changes");
    assert.equal(isDirty(setGroupOnError(d, 1, "stop"), d), false, "stop is what the plan says already");
    assert.equal(isDirty(setGroupOnError(d, 0, "plan"), d), true);
    assert.equal(isDirty(moveItem(d, APP1.id, 0), d), true);
    // a manual step keeps a command typed before its kind changed, but does not send it
    const m = updateAction(d, 1, "pre", 0, { run: "ignored" });
    assert.equal(isDirty(m, d), false);
  });
});

describe("checking a plan before it is saved", () => {
  it("names each mistake at its field", () => {
    let d = addGroup(emptyDraft("my plan"), [DB]);
    d = addGroup(d);
    d = addAction(d, 0, "pre", "script");
    d = addAction(d, 0, "post", "manual");
    d = updateAction(d, 0, "pre", 0, { run: "true", timeout: "0" });
    d = addAction(d, 0, "post", "machine-script");
    d = updateAction(d, 0, "post", 1, { run: "sync", on: [] });
    assert.deepEqual(paths(d), [
      "name",
      "groups.0.pre.0.timeout",
      "groups.0.post.0.message",
      "groups.0.post.1.on",
      "groups.1.items",
    ]);
    const issues = validate(d);
    assert.match(issuesAt(issues, "name")[0]?.message ?? "", /no spaces/);
    assert.match(issuesAt(issues, "groups.1.items")[0]?.message ?? "", /Group 2 has no machines/);
    assert.equal(issuesAt(issues, "groups.0", true).length, 3);
  });

  it("finds an item in two groups, a script without a command and an item the vault lost", () => {
    let d = twoGroups();
    // a draft can only get there by hand (the edits keep an item in one group), as a stale copy might
    d = { ...d, groups: d.groups.map((g, i) => (i === 0 ? { ...g, items: [...g.items, APP1] } : g)) };
    d = addAction(d, 1, "post", "script");
    const issues = validate(d, new Set([DB.id, APP1.id]));
    assert.deepEqual(
      issues.map((i) => i.path),
      ["groups.1.items", "groups.1.items", "groups.1.post.0.run"],
    );
    assert.match(issues[0]?.message ?? "", /app1 is in group 1 and in group 2/);
    assert.match(issues[1]?.message ?? "", /app2 .* no longer a replicated item/);
    assert.match(issues[2]?.message ?? "", /without a command/);
  });

  it("lets a plan without groups through (groups may come later)", () => {
    assert.deepEqual(validate(emptyDraft("later")), []);
  });

  const arbAction = fc.record({
    kind: fc.constantFrom<ActionKind>(...ACTION_KINDS),
    run: fc.constantFrom("", "  ", "echo ok", " sync "),
    message: fc.constantFrom("", " ", "check DNS"),
    timeout: fc.constantFrom("", "0", "1", "300", "86400", "86401", "3.5", "x"),
    on: fc.subarray([...PLAN_OPERATIONS]),
  });
  const arbDraft = fc
    .record({
      name: fc.constantFrom("erp", "", "two words", "a.b-c_d"),
      continueOnError: fc.boolean(),
      groups: fc.array(
        fc.record({
          items: fc.subarray(ITEMS),
          pre: fc.array(arbAction, { maxLength: 2 }),
          post: fc.array(arbAction, { maxLength: 2 }),
          onError: fc.constantFrom("plan" as const, "stop" as const, "go-on" as const),
        }),
        { maxLength: 4 },
      ),
    })
    .map(
      (r): PlanDraft => ({
        ...r,
        groups: r.groups.map((g, gi) => ({
          ...g,
          key: `g${gi}`,
          pre: g.pre.map((a, i): DraftAction => ({ ...a, key: `p${i}` })),
          post: g.post.map((a, i): DraftAction => ({ ...a, key: `q${i}` })),
        })),
      }),
    );

  it("agrees with the vault: what it passes the API accepts, what it stops the API refuses", () => {
    fc.assert(
      fc.property(arbDraft, (d) => {
        const issues = validate(d, KNOWN).filter((i) => i.path !== "name");
        const body = toBody(d);
        const r = checkDefinition({ continueOnError: body.continueOnError, groups: body.groups }, ITEMS);
        assert.equal(
          isRefusal(r),
          issues.length > 0,
          `editor: ${JSON.stringify(issues)}; vault: ${JSON.stringify(r)}`,
        );
      }),
      { numRuns: 500 },
    );
  });

  it("shows the run order the vault's job runs", () => {
    fc.assert(
      fc.property(arbDraft, fc.constantFrom<PlanOperation>(...PLAN_OPERATIONS), (d, op) => {
        fc.pre(validate(d, KNOWN).every((i) => i.path === "name"));
        const def = checkDefinition(toBody(d), ITEMS);
        assert.ok(!isRefusal(def));
        const body = toBody(d);
        assert.deepEqual(
          stepNames(body, op),
          planSteps(def, op as DomainOperation).map((s) => s.name),
        );
        const stages = runOrder(body, op);
        assert.equal(
          stages.flatMap((s) => s.groups).length,
          d.groups.length,
          "every group in exactly one stage",
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe("reading a plan job back", () => {
  it("places each step in its group", () => {
    assert.deepEqual(stepPlace("group-2-pre-1"), { kind: "action", group: 1, when: "pre", index: 0 });
    assert.deepEqual(stepPlace("group-3-items"), { kind: "items", groups: 2 });
    assert.deepEqual(stepPlace("all-groups-items"), { kind: "items", groups: "all" });
    assert.deepEqual(stepPlace("summary"), { kind: "summary" });
    assert.deepEqual(stepPlace("enable"), { kind: "other" });
  });

  it("says which manual action a waiting job waits at, with its instructions", () => {
    const params = {
      definition: {
        continueOnError: false,
        groups: [
          { items: ["x"], pre: [], post: [{ kind: "manual", message: "switch DNS", on: ["failover"] }] },
        ],
      },
    };
    assert.deepEqual(waitingAt({ state: "waiting", waitingFor: "confirm-group-1-post-1", params }), {
      step: "group-1-post-1",
      group: 1,
      message: "switch DNS",
    });
    assert.equal(waitingAt({ state: "running", waitingFor: null, params }), null);
    assert.equal(waitingAt({ state: "waiting", waitingFor: "lease", params }), null);
  });

  it("finds the item jobs an items step started, from its log lines", () => {
    const m = childJobs([
      { message: "db: test-failover job job_1 started", data: { item: "db", job: "job_1" } },
      { message: "app1: its test-failover job job_2 was started by this step before", data: null },
      {
        message: "app1: test-failover job job_2 succeeded",
        data: { item: "app1", job: "job_2", state: "succeeded" },
      },
      { message: "group 1: going on (continueOnError)" },
    ]);
    assert.deepEqual(
      [...m],
      [
        ["db", "job_1"],
        ["app1", "job_2"],
      ],
    );
  });

  it("reads an items step's machines", () => {
    const out = {
      machines: [
        { item: "db", itemId: "i", group: 1, job: "j", state: "succeeded", error: null, phase: "protected" },
      ],
      failed: 0,
    };
    assert.equal(machinesOf(out)[0]?.item, "db");
    assert.deepEqual(machinesOf(null), []);
  });

  it("offers an operation to the items whose state allows it, in the right direction", () => {
    const away = { allowedOperations: ["failover", "test-failover"], target: "recovery", home: "primary" };
    const back = { allowedOperations: ["failover"], target: "primary", home: "primary" };
    assert.equal(itemTakesPart("failover", away), true);
    assert.equal(itemTakesPart("failback", away), false);
    assert.equal(itemTakesPart("failback", back), true);
    assert.equal(itemTakesPart("failover", back), false);
    assert.equal(itemTakesPart("commit", away), false);
  });
});

describe("starting a plan operation", () => {
  it("offers the item dialogs' points, in their order and with their default, without a specific point", () => {
    assert.deepEqual(planPointChoices("test-failover"), [
      "latest-processed",
      "latest",
      "latest-app-consistent",
    ]);
    for (const op of ["failover", "failback"] as const) {
      assert.deepEqual(
        planPointChoices(op),
        POINT_CHOICES.failover.filter((c) => c !== "custom"),
      );
    }
    for (const op of ["test-failover-cleanup", "commit", "reprotect"] as const) {
      assert.equal(planPointChoices(op), null);
    }
    for (const op of ["test-failover", "failover", "failback"] as const) {
      const itemOp = op === "failback" ? "failover" : op;
      assert.equal(initialPlanOptions(op).point, initialPointForm(itemOp).choice, `${op}'s default point`);
      assert.equal(
        initialPlanOptions(op).shutdownSource,
        true,
        "the item dialog shuts the source down first",
      );
      for (const c of planPointChoices(op) ?? []) assert.ok(POINT_WORDS[c].tradeOff.length > 0);
    }
  });

  it("sends bodies the vault takes for every operation and choice", () => {
    for (const op of PLAN_OPERATIONS) {
      for (const point of planPointChoices(op) ?? ["latest" as const]) {
        for (const planned of [false, true]) {
          for (const notes of ["", "  the drill went well  "]) {
            const body = planOperationBody(op, { point, shutdownSource: false, planned, notes });
            assert.ok(Value.Check(PlanOperationBodies[op], body), `${op}: ${JSON.stringify(body)}`);
          }
        }
      }
    }
    const o = { ...initialPlanOptions("failback"), point: "latest-processed" as const };
    assert.deepEqual(planOperationBody("failback", o), { point: "latest-processed", shutdownSource: true });
    assert.deepEqual(planOperationBody("failback", { ...o, planned: true }), { planned: true });
    assert.deepEqual(planOperationBody("test-failover-cleanup", { ...o, notes: "  ok  " }), { notes: "ok" });
    assert.deepEqual(planOperationBody("test-failover-cleanup", { ...o, notes: "   " }), {});
  });

  it("asks the vault again when the body, the plan or a machine's state changes", () => {
    const plan = { id: "plan-1", updatedAt: "2026-01-01T00:00:00Z", groups: [{ items: [DB, APP1] }] };
    const items = new Map([
      [DB.id, { phase: "protected", target: "recovery", home: "primary" }],
      [APP1.id, { phase: "protected", target: "recovery", home: "primary" }],
    ]);
    const body = { point: "latest", shutdownSource: true };
    const key = planCheckKey(plan, "failover", body, items);
    assert.equal(planCheckKey(plan, "failover", { ...body }, new Map(items)), key, "same inputs, same key");
    const changed = [
      planCheckKey(plan, "failover", { ...body, point: "latest-processed" }, items),
      planCheckKey(plan, "failover", { planned: true }, items),
      planCheckKey(plan, "test-failover", body, items),
      planCheckKey({ ...plan, updatedAt: "2026-01-01T00:00:01Z" }, "failover", body, items),
      planCheckKey(
        plan,
        "failover",
        body,
        new Map(items).set(DB.id, { phase: "failed-over", target: "recovery", home: "primary" }),
      ),
      planCheckKey(
        plan,
        "failover",
        body,
        new Map(items).set(DB.id, { phase: "protected", target: "primary", home: "primary" }),
      ),
      planCheckKey(plan, "failover", body, new Map([...items].filter(([id]) => id !== APP1.id))),
    ];
    for (const k of changed) assert.notEqual(k, key);
    assert.equal(new Set(changed).size, changed.length);
  });

  it("takes the plan's name typed with spaces around it, as the item dialogs do", () => {
    assert.equal(planNameTyped(" erp ", "erp"), true);
    assert.equal(planNameTyped("erp", "erp"), true);
    assert.equal(planNameTyped("erp2", "erp"), false);
    assert.equal(planNameTyped("", "erp"), false);
  });

  it("starts only when some machine will run, and says how many of them", () => {
    const gate = (o: Partial<Parameters<typeof planStartGate>[0]>) =>
      planStartGate({ op: "failover", total: 3, checking: 0, willRun: 3, nameOk: true, busy: false, ...o });
    assert.deepEqual(gate({}), { disabled: false, why: "", label: "Failover 3 machines" });
    assert.deepEqual(gate({ willRun: 2 }), { disabled: false, why: "", label: "Failover 2 of 3 machines" });
    const none = gate({ willRun: 0 });
    assert.equal(none.disabled, true, "the vault refuses every machine: nothing to start");
    assert.equal(none.label, "Failover 0 of 3 machines");
    assert.match(none.why, /refuses every machine/);
    const checking = gate({ checking: 1, willRun: 2 });
    assert.equal(checking.disabled, true);
    assert.equal(checking.label, "Failover 3 machines");
    assert.match(gate({ nameOk: false }).why, /Type the plan's name/);
    assert.deepEqual(gate({ busy: true }), { disabled: true, why: "", label: "Starting…" });
    assert.equal(gate({ total: 0, willRun: 0 }).disabled, true);
    assert.equal(
      planStartGate({ op: "reprotect", total: 1, checking: 0, willRun: 1, nameOk: true, busy: false }).label,
      "Reprotect 1 machine",
    );
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type ItemState, initialState } from "../../src/domain/lifecycle.ts";
import {
  actionEnv,
  checkAction,
  checkDefinition,
  continuesOnError,
  DEFAULT_ACTION_ON,
  itemOperationFor,
  machineScriptCopy,
  PLAN_OPERATIONS,
  type PlanDefinition,
  type PlanOperation,
  planStages,
  planSteps,
} from "../../src/domain/plan.ts";
import { isRefusal, type Refusal } from "../../src/domain/refusal.ts";

const ITEMS = [
  { id: "item-db0000000001", name: "db" },
  { id: "item-app000000001", name: "app1" },
  { id: "item-app000000002", name: "app2" },
];

function refusal(x: unknown): Refusal {
  assert.ok(isRefusal(x), `expected a refusal, got ${JSON.stringify(x)}`);
  return x;
}

function ok<T>(x: T | Refusal): T {
  assert.ok(!isRefusal(x), `expected no refusal, got ${JSON.stringify(x)}`);
  return x as T;
}

describe("checkDefinition", () => {
  it("resolves names and ids to ids and fills in action defaults", () => {
    const def = ok(
      checkDefinition(
        {
          groups: [
            { items: ["db"], post: [{ kind: "script", run: " echo ok " }] },
            { items: ["item-app000000001", "app2"], pre: [{ kind: "manual", message: "check the db" }] },
          ],
        },
        ITEMS,
      ),
    );
    assert.deepEqual(def, {
      continueOnError: false,
      groups: [
        {
          items: ["item-db0000000001"],
          pre: [],
          post: [{ kind: "script", run: "echo ok", timeoutSeconds: 300, on: ["failover", "test-failover"] }],
        },
        {
          items: ["item-app000000001", "item-app000000002"],
          pre: [{ kind: "manual", message: "check the db", on: [...DEFAULT_ACTION_ON] }],
          post: [],
        },
      ],
    });
  });

  it("allows a plan without groups (they come later)", () => {
    assert.deepEqual(ok(checkDefinition({}, ITEMS)), { continueOnError: false, groups: [] });
  });

  it("refuses an unknown item, naming the field", () => {
    const r = refusal(checkDefinition({ groups: [{ items: ["db"] }, { items: ["app1", "nope"] }] }, ITEMS));
    assert.equal(r.code, "PLAN_ITEM_INVALID");
    assert.match(r.message, /^groups\[1\]\.items\[1\]: replicated item "nope" does not exist/);
  });

  it("refuses an item in two groups, or twice in one", () => {
    const two = refusal(
      checkDefinition({ groups: [{ items: ["db"] }, { items: ["item-db0000000001"] }] }, ITEMS),
    );
    assert.equal(two.code, "PLAN_ITEM_INVALID");
    assert.match(two.message, /groups\[1\]\.items\[0\]: item db is in group 1 already/);
    const twice = refusal(checkDefinition({ groups: [{ items: ["db", "db"] }] }, ITEMS));
    assert.match(twice.message, /named twice in group 1/);
  });

  it("refuses an empty group", () => {
    const r = refusal(checkDefinition({ groups: [{ items: ["db"] }, { items: [] }] }, ITEMS));
    assert.equal(r.code, "PLAN_GROUP_INVALID");
    assert.match(r.message, /^groups\[1\]\.items: group 2 has no items/);
  });

  it("refuses bad actions, naming the field", () => {
    const cases: [unknown, RegExp][] = [
      [
        { kind: "reboot", run: "x" },
        /groups\[0\]\.post\[0\]: kind "reboot" is not an action kind; use script, machine-script, manual/,
      ],
      [{ kind: "script" }, /needs "run"/],
      [{ kind: "script", run: "   " }, /needs "run"/],
      [{ kind: "machine-script", run: "x", message: "m" }, /has "run", not "message"/],
      [{ kind: "manual", run: "x", message: "m" }, /has "message".*not "run"/],
      [{ kind: "manual" }, /needs "message"/],
      [{ kind: "script", run: "x", timeoutSeconds: 0 }, /"timeoutSeconds" is 0/],
      [{ kind: "script", run: "x", on: [] }, /"on" is empty/],
      [
        { kind: "script", run: "x", on: ["failover", "explode"] },
        /"on" names "explode", which is not a plan operation/,
      ],
      [{ kind: "script", run: "x", on: ["failover", "failover"] }, /names an operation twice/],
      [{ kind: "script", run: "x".repeat(4001) }, /keep it under 4000/],
    ];
    for (const [action, re] of cases) {
      const r = refusal(checkDefinition({ groups: [{ items: ["db"], post: [action as never] }] }, ITEMS));
      assert.equal(r.code, "PLAN_ACTION_INVALID", JSON.stringify(action));
      assert.match(r.message, re, JSON.stringify(action));
    }
  });

  it("checkAction keeps failback actions separate from failover ones", () => {
    const a = ok(checkAction({ kind: "script", run: "x", on: ["failback"] }, "a"));
    assert.deepEqual(a.on, ["failback"]);
  });

  it("continueOnError: the group's own setting wins over the plan's", () => {
    const def = ok(
      checkDefinition(
        { continueOnError: true, groups: [{ items: ["db"], continueOnError: false }, { items: ["app1"] }] },
        ITEMS,
      ),
    );
    assert.equal(continuesOnError(def, 0), false);
    assert.equal(continuesOnError(def, 1), true);
  });
});

describe("itemOperationFor", () => {
  const away: ItemState = { ...initialState("primary", "recovery"), phase: "protected" };
  const home: ItemState = { ...away, source: "recovery", target: "primary" };
  const names = (id: string) => `site:${id}`;

  it("maps each plan operation to the item's operation", () => {
    assert.equal(itemOperationFor("test-failover", away), "test-failover");
    assert.equal(itemOperationFor("test-failover-cleanup", away), "test-failover-cleanup");
    assert.equal(itemOperationFor("failover", away), "failover");
    assert.equal(itemOperationFor("commit", away), "commit");
    assert.equal(itemOperationFor("reprotect", away), "reprotect");
    assert.equal(itemOperationFor("failback", home), "failover");
    assert.equal(itemOperationFor("commit", home), "commit");
    assert.equal(itemOperationFor("test-failover", home), "test-failover");
  });

  it("refuses a failover towards home and a failback away from it, with the way out", () => {
    const f = refusal(itemOperationFor("failover", home, names));
    assert.equal(f.code, "FAILOVER_ITEM_TOWARDS_HOME");
    assert.match(f.message, /site:recovery → site:primary, towards its home site site:primary; .*failback/);
    const b = refusal(itemOperationFor("failback", away, names));
    assert.equal(b.code, "FAILBACK_ITEM_AWAY_FROM_HOME");
    assert.match(b.message, /away from its home site site:primary; .*reprotect/);
  });

  it("decides by direction alone, in every phase (the lifecycle core decides the rest)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PLAN_OPERATIONS),
        fc.constantFrom("protected", "failed-over", "failover-committed", "failing-over", "reprotecting"),
        fc.boolean(),
        (op, phase, towardsHome) => {
          const s = { ...(towardsHome ? home : away), phase } as ItemState;
          const r = itemOperationFor(op, s);
          if (op === "failover") assert.equal(isRefusal(r), towardsHome);
          else if (op === "failback") assert.equal(isRefusal(r), !towardsHome);
          else assert.equal(r, op);
        },
      ),
    );
  });
});

describe("stages and steps", () => {
  it("runs groups in order for drills, failover, failback and reprotect; all at once for cleanup and commit", () => {
    for (const op of ["test-failover", "failover", "failback", "reprotect"] as const) {
      assert.deepEqual(planStages(op, 3), [[0], [1], [2]], op);
    }
    for (const op of ["test-failover-cleanup", "commit"] as const) {
      assert.deepEqual(planStages(op, 3), [[0, 1, 2]], op);
    }
    assert.deepEqual(planStages("failover", 0), []);
  });

  const def = ok(
    checkDefinition(
      {
        groups: [
          {
            items: ["db"],
            pre: [{ kind: "script", run: "pre-db", on: ["failover"] }],
            post: [
              { kind: "script", run: "marker" },
              { kind: "machine-script", run: "back", on: ["failback"] },
            ],
          },
          { items: ["app1", "app2"], pre: [{ kind: "manual", message: "go?", on: ["test-failover"] }] },
        ],
      },
      ITEMS,
    ),
  );

  it("builds pre actions, items and post actions per group, each action its own step", () => {
    assert.deepEqual(
      planSteps(def, "test-failover").map((s) => s.name),
      ["group-1-items", "group-1-post-1", "group-2-pre-1", "group-2-items", "summary"],
    );
    assert.deepEqual(
      planSteps(def, "failover").map((s) => s.name),
      ["group-1-pre-1", "group-1-items", "group-1-post-1", "group-2-items", "summary"],
    );
    assert.deepEqual(
      planSteps(def, "failback").map((s) => s.name),
      ["group-1-items", "group-1-post-2", "group-2-items", "summary"],
    );
    assert.deepEqual(
      planSteps(def, "commit").map((s) => s.name),
      ["all-groups-items", "summary"],
    );
  });

  it("machine-scripts run in the drill copy after a drill's items and before its cleanup, else in production", () => {
    assert.equal(machineScriptCopy("test-failover", "post"), "drill");
    assert.equal(machineScriptCopy("test-failover-cleanup", "pre"), "drill");
    assert.equal(machineScriptCopy("test-failover", "pre"), "production");
    assert.equal(machineScriptCopy("failover", "post"), "production");
    assert.equal(machineScriptCopy("failback", "post"), "production");
  });

  it("gives actions the plan, operation, 1-based group and item names", () => {
    assert.deepEqual(actionEnv({ plan: "p", operation: "failover", group: 1, items: ["app1", "app2"] }), {
      SWITCHBACK_PLAN: "p",
      SWITCHBACK_OPERATION: "failover",
      SWITCHBACK_GROUP: "2",
      SWITCHBACK_ITEMS: "app1,app2",
    });
  });

  // random plans: 1-6 groups over up to 12 items, random actions on random operations
  const arbPlan = fc
    .record({
      items: fc.uniqueArray(fc.integer({ min: 0, max: 11 }), { minLength: 1, maxLength: 12 }),
      cuts: fc.array(fc.integer({ min: 1, max: 11 }), { maxLength: 5 }),
      actions: fc.array(
        fc.record({
          group: fc.nat(),
          when: fc.constantFrom("pre" as const, "post" as const),
          kind: fc.constantFrom("script", "machine-script", "manual"),
          on: fc.subarray([...PLAN_OPERATIONS], { minLength: 1 }),
        }),
        { maxLength: 8 },
      ),
    })
    .map(({ items, cuts, actions }): PlanDefinition => {
      const bounds = [...new Set(cuts.filter((c) => c < items.length))].sort((a, b) => a - b);
      const edges = [0, ...bounds, items.length];
      const groups = edges.slice(1).map((end, g) => ({
        items: items.slice(edges[g], end).map((n) => `item-${n}`),
        pre: [] as PlanDefinition["groups"][number]["pre"],
        post: [] as PlanDefinition["groups"][number]["post"],
      }));
      for (const a of actions) {
        const g = groups[a.group % groups.length]!;
        g[a.when].push(
          a.kind === "manual"
            ? { kind: "manual", message: "m", on: a.on }
            : { kind: a.kind as "script", run: "r", timeoutSeconds: 1, on: a.on },
        );
      }
      return { continueOnError: false, groups };
    });

  it("every item appears in exactly one items step, with its own group, for every operation", () => {
    fc.assert(
      fc.property(arbPlan, fc.constantFrom(...PLAN_OPERATIONS), (d, op) => {
        const all = d.groups.flatMap((g) => g.items);
        const seen = planSteps(d, op).flatMap((s) => (s.type === "items" ? s.items : []));
        assert.deepEqual(seen.map((x) => x.item).sort(), [...all].sort());
        for (const x of seen) assert.ok(d.groups[x.group]!.items.includes(x.item));
        const names = planSteps(d, op).map((s) => s.name);
        assert.equal(new Set(names).size, names.length, "step names are unique");
      }),
    );
  });

  it("keeps group order: a group's pre actions, items, post actions, before the next group's", () => {
    fc.assert(
      fc.property(
        arbPlan,
        fc.constantFrom<PlanOperation>("test-failover", "failover", "failback", "reprotect"),
        (d, op) => {
          const steps = planSteps(d, op);
          const rank = (s: (typeof steps)[number]): [number, number] => {
            if (s.type === "summary") return [Number.MAX_SAFE_INTEGER, 0];
            if (s.type === "items") return [s.groups[0]!, 1];
            return [s.group, s.when === "pre" ? 0 : 2];
          };
          for (let i = 1; i < steps.length; i++) {
            const [ga, pa] = rank(steps[i - 1]!);
            const [gb, pb] = rank(steps[i]!);
            assert.ok(ga < gb || (ga === gb && pa <= pb), `${steps[i - 1]!.name} before ${steps[i]!.name}`);
          }
          // exactly the actions that are on this operation, once each
          const want = d.groups.flatMap((g) => [...g.pre, ...g.post].filter((a) => a.on.includes(op)));
          assert.equal(steps.filter((s) => s.type === "action").length, want.length);
          assert.equal(steps.filter((s) => s.type === "items").length, d.groups.length);
        },
      ),
    );
  });
});

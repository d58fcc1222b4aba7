// Recovery plans, the pure part: what a plan definition is and when it is valid (every item known and
// in one group only, no empty group, actions that say what they run and when), which item operation a
// plan operation means for an item in its current direction, and the steps of a plan job in order.
// Invariants the tests hold us to: every item of the plan appears in exactly one items step; groups
// run in their order for test failover, failover, failback and reprotect; a group's pre actions run
// before its items and its post actions after them, before the next group starts.
import { type ItemState, isFailback, type OperationName } from "./lifecycle.ts";
import { type Refusal, refuse } from "./refusal.ts";

export type PlanOperation =
  | "test-failover"
  | "test-failover-cleanup"
  | "failover"
  | "commit"
  | "reprotect"
  | "failback";

export const PLAN_OPERATIONS: readonly PlanOperation[] = [
  "test-failover",
  "test-failover-cleanup",
  "failover",
  "commit",
  "reprotect",
  "failback",
];

export type ActionKind = "script" | "machine-script" | "manual";
export const ACTION_KINDS: readonly ActionKind[] = ["script", "machine-script", "manual"];

export type ActionWhen = "pre" | "post";

/** The operations an action runs for when it does not say: a drill and a failover (failback is separate). */
export const DEFAULT_ACTION_ON: readonly PlanOperation[] = ["failover", "test-failover"];
export const DEFAULT_ACTION_TIMEOUT_S = 300;
export const MAX_ACTION_TIMEOUT_S = 86_400;
const MAX_COMMAND_CHARS = 4000;

export type PlanAction =
  /** a command the vault runs with `sh -c` */
  | { kind: "script"; run: string; timeoutSeconds: number; on: PlanOperation[] }
  /** a command run in each machine of the group (the copy the operation is about) */
  | { kind: "machine-script"; run: string; timeoutSeconds: number; on: PlanOperation[] }
  /** the plan waits until an operator confirms (`plans confirm`) */
  | { kind: "manual"; message: string; on: PlanOperation[] };

export interface PlanGroup {
  /** item ids; machines of one group run their operation at the same time */
  items: string[];
  pre: PlanAction[];
  post: PlanAction[];
  /** overrides the plan's continueOnError for this group */
  continueOnError?: boolean | undefined;
}

export interface PlanDefinition {
  /** a machine's failure stops the plan (false) or is reported and the plan goes on (true) */
  continueOnError: boolean;
  groups: PlanGroup[];
}

/** An action as an operator writes it: defaults not filled in, kind not checked yet. */
export interface PlanActionInput {
  kind: string;
  run?: string | undefined;
  message?: string | undefined;
  timeoutSeconds?: number | undefined;
  on?: string[] | undefined;
}

export interface PlanGroupInput {
  /** item ids or names */
  items: string[];
  pre?: PlanActionInput[] | undefined;
  post?: PlanActionInput[] | undefined;
  continueOnError?: boolean | undefined;
}

export interface PlanDefinitionInput {
  continueOnError?: boolean | undefined;
  groups?: PlanGroupInput[] | undefined;
}

/** An item the vault knows, as a plan definition is checked against it. */
export interface KnownItem {
  id: string;
  name: string;
}

function isPlanOperation(s: string): s is PlanOperation {
  return (PLAN_OPERATIONS as readonly string[]).includes(s);
}

/** Checks one action and fills in its defaults; `field` names it in the refusal (groups[0].pre[1]). */
export function checkAction(a: PlanActionInput, field: string): PlanAction | Refusal {
  const bad = (message: string) => refuse("PLAN_ACTION_INVALID", `${field}: ${message}`);
  const on = a.on ?? [...DEFAULT_ACTION_ON];
  if (on.length === 0)
    return bad(`"on" is empty; name the operations it runs for (${PLAN_OPERATIONS.join(", ")})`);
  for (const o of on) {
    if (!isPlanOperation(o)) {
      return bad(
        `"on" names ${JSON.stringify(o)}, which is not a plan operation; use ${PLAN_OPERATIONS.join(", ")}`,
      );
    }
  }
  if (new Set(on).size !== on.length) return bad(`"on" names an operation twice (${on.join(", ")})`);
  const ops = on as PlanOperation[];
  switch (a.kind) {
    case "script":
    case "machine-script": {
      if (a.message !== undefined) return bad(`a ${a.kind} action has "run", not "message"`);
      const run = a.run?.trim() ?? "";
      if (run === "") return bad(`a ${a.kind} action needs "run": the command to run with sh -c`);
      if (run.length > MAX_COMMAND_CHARS) {
        return bad(
          `"run" is ${run.length} characters; keep it under ${MAX_COMMAND_CHARS} (put longer scripts in a file)`,
        );
      }
      const t = a.timeoutSeconds ?? DEFAULT_ACTION_TIMEOUT_S;
      if (!Number.isInteger(t) || t < 1 || t > MAX_ACTION_TIMEOUT_S) {
        return bad(
          `"timeoutSeconds" is ${t}; use a whole number of seconds from 1 to ${MAX_ACTION_TIMEOUT_S}`,
        );
      }
      return { kind: a.kind, run, timeoutSeconds: t, on: ops };
    }
    case "manual": {
      if (a.run !== undefined || a.timeoutSeconds !== undefined) {
        return bad(
          `a manual action has "message" (what the operator must do), not "run" or "timeoutSeconds"`,
        );
      }
      const message = a.message?.trim() ?? "";
      if (message === "")
        return bad(`a manual action needs "message": what the operator must do before confirming`);
      if (message.length > MAX_COMMAND_CHARS) {
        return bad(`"message" is ${message.length} characters; keep it under ${MAX_COMMAND_CHARS}`);
      }
      return { kind: "manual", message, on: ops };
    }
    default:
      return bad(`kind ${JSON.stringify(a.kind)} is not an action kind; use ${ACTION_KINDS.join(", ")}`);
  }
}

/**
 * Checks a whole definition against the items the vault knows and resolves item names to ids.
 * Refusals name the field: PLAN_GROUP_INVALID (an empty group), PLAN_ITEM_INVALID (an unknown item, or
 * one in two groups), PLAN_ACTION_INVALID (a bad action).
 */
export function checkDefinition(
  input: PlanDefinitionInput,
  items: readonly KnownItem[],
): PlanDefinition | Refusal {
  const byRef = new Map<string, KnownItem>();
  for (const it of items) byRef.set(it.name, it);
  for (const it of items) byRef.set(it.id, it); // an id wins over a name that looks like one
  const seen = new Map<string, number>();
  const groups: PlanGroup[] = [];
  const rawGroups = input.groups ?? [];
  for (let g = 0; g < rawGroups.length; g++) {
    const raw = rawGroups[g]!;
    const field = `groups[${g}]`;
    if (raw.items.length === 0) {
      return refuse(
        "PLAN_GROUP_INVALID",
        `${field}.items: group ${g + 1} has no items; a group needs at least one replicated item`,
      );
    }
    const ids: string[] = [];
    for (let i = 0; i < raw.items.length; i++) {
      const ref = raw.items[i]!;
      const it = byRef.get(ref);
      if (it === undefined) {
        return refuse(
          "PLAN_ITEM_INVALID",
          `${field}.items[${i}]: replicated item ${JSON.stringify(ref)} does not exist; see 'switchback items list'`,
        );
      }
      const other = seen.get(it.id);
      if (other !== undefined) {
        return refuse(
          "PLAN_ITEM_INVALID",
          other === g
            ? `${field}.items[${i}]: item ${it.name} is named twice in group ${g + 1}; name it once`
            : `${field}.items[${i}]: item ${it.name} is in group ${other + 1} already; an item belongs to one group of a plan`,
        );
      }
      seen.set(it.id, g);
      ids.push(it.id);
    }
    const group: PlanGroup = { items: ids, pre: [], post: [] };
    for (const when of ["pre", "post"] as const) {
      const list = raw[when] ?? [];
      for (let k = 0; k < list.length; k++) {
        const a = checkAction(list[k]!, `${field}.${when}[${k}]`);
        if ("refused" in a) return a;
        group[when].push(a);
      }
    }
    if (raw.continueOnError !== undefined) group.continueOnError = raw.continueOnError;
    groups.push(group);
  }
  return { continueOnError: input.continueOnError ?? false, groups };
}

/** Whether a machine's failure in group `g` lets the plan go on. */
export function continuesOnError(def: PlanDefinition, g: number): boolean {
  return def.groups[g]?.continueOnError ?? def.continueOnError;
}

/**
 * The item operation a plan operation means for an item in state `s`, or the named refusal for that
 * machine. A failover moves an item away from its home site, a failback towards it: an item in the
 * other direction is refused with the operation that fits it.
 */
export function itemOperationFor(
  op: PlanOperation,
  s: ItemState,
  siteName: (siteId: string) => string = (id) => id,
): OperationName | Refusal {
  const dir = `${siteName(s.source)} → ${siteName(s.target)}`;
  switch (op) {
    case "test-failover":
    case "test-failover-cleanup":
    case "commit":
    case "reprotect":
      return op;
    case "failover":
      if (isFailback(s)) {
        return refuse(
          "FAILOVER_ITEM_TOWARDS_HOME",
          `the item replicates ${dir}, towards its home site ${siteName(s.home)}; a plan failover moves items away from home — run the plan's failback instead`,
        );
      }
      return "failover";
    case "failback":
      if (!isFailback(s)) {
        return refuse(
          "FAILBACK_ITEM_AWAY_FROM_HOME",
          `the item replicates ${dir}, away from its home site ${siteName(s.home)}; failback needs an item that was failed over, committed and reprotected (plans failover, commit, reprotect)`,
        );
      }
      return "failover";
    default: {
      const never: never = op;
      throw new Error(`unknown plan operation ${String(never)}`);
    }
  }
}

/**
 * The copy of a machine a machine-script runs in: the drill copy after a test failover's items and
 * before a cleanup's; otherwise the production copy, where the machine runs at that moment (after a
 * failover's items, the recovered machine).
 */
export function machineScriptCopy(op: PlanOperation, when: ActionWhen): "drill" | "production" {
  if ((op === "test-failover" && when === "post") || (op === "test-failover-cleanup" && when === "pre")) {
    return "drill";
  }
  return "production";
}

/**
 * The groups of each stage, in order: groups of one stage run their items at once. Test failover,
 * failover, failback and reprotect go group by group in the plan's order (a database before the apps
 * that need it); cleanup and commit only remove or make final, so all groups go at once.
 */
export function planStages(op: PlanOperation, groupCount: number): number[][] {
  const all = Array.from({ length: groupCount }, (_, g) => g);
  if (groupCount === 0) return [];
  if (op === "test-failover-cleanup" || op === "commit") return [all];
  return all.map((g) => [g]);
}

export type PlanStep =
  | {
      type: "action";
      name: string;
      /** 0-based group index */
      group: number;
      when: ActionWhen;
      /** index in the group's `when` list */
      index: number;
      action: PlanAction;
    }
  | { type: "items"; name: string; groups: number[]; items: { item: string; group: number }[] }
  | { type: "summary"; name: "summary" };

export function actionStepName(group: number, when: ActionWhen, index: number): string {
  return `group-${group + 1}-${when}-${index + 1}`;
}

/** The signal a manual action's step waits for. */
export function confirmSignal(stepName: string): string {
  return `confirm-${stepName}`;
}

/**
 * The steps of a plan job: per stage, each group's pre actions for this operation (one step per
 * action: a manual action re-runs its step from the start once confirmed, so nothing else may share
 * it), the stage's items, each group's post actions; then a summary of every machine.
 */
export function planSteps(def: PlanDefinition, op: PlanOperation): PlanStep[] {
  const steps: PlanStep[] = [];
  const actions = (g: number, when: ActionWhen) => {
    def.groups[g]![when].forEach((action, index) => {
      if (action.on.includes(op)) {
        steps.push({ type: "action", name: actionStepName(g, when, index), group: g, when, index, action });
      }
    });
  };
  for (const stage of planStages(op, def.groups.length)) {
    for (const g of stage) actions(g, "pre");
    steps.push({
      type: "items",
      name: stage.length === 1 ? `group-${stage[0]! + 1}-items` : "all-groups-items",
      groups: stage,
      items: stage.flatMap((g) => def.groups[g]!.items.map((item) => ({ item, group: g }))),
    });
    for (const g of stage) actions(g, "post");
  }
  steps.push({ type: "summary", name: "summary" });
  return steps;
}

/** The environment a plan action's command gets (a machine-script adds the machine's own). */
export function actionEnv(o: {
  plan: string;
  operation: PlanOperation;
  group: number;
  items: readonly string[];
}): Record<string, string> {
  return {
    SWITCHBACK_PLAN: o.plan,
    SWITCHBACK_OPERATION: o.operation,
    SWITCHBACK_GROUP: String(o.group + 1),
    SWITCHBACK_ITEMS: o.items.join(","),
  };
}

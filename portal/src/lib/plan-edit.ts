// Recovery plans in the portal, the pure part: the editing model (a draft of the whole definition the
// editor changes step by step and sends whole with PUT), the checks made before sending it (the API's
// own rules from src/domain/plan.ts, said in the editor's words and tied to the field they are about),
// the order a plan operation runs the groups in (for the operation dialogs), and reading a plan job's
// steps back group by group, and what the start of a plan operation sends and when it may start. No
// DOM, no components: test/unit/portal-plan-edit.test.ts runs it in Node.
import { POINT_CHOICES, type PointChoice } from "./operation-rules.ts";

// ---- what the vault allows (mirrors src/domain/plan.ts; the unit test holds the two together) ----

export const PLAN_OPERATIONS = [
  "test-failover",
  "test-failover-cleanup",
  "failover",
  "commit",
  "reprotect",
  "failback",
] as const;
export type PlanOperation = (typeof PLAN_OPERATIONS)[number];

export const ACTION_KINDS = ["script", "machine-script", "manual"] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];
export type When = "pre" | "post";

/** The operations a new action runs for, as the API's default: a drill and a failover. */
export const DEFAULT_ACTION_ON: readonly PlanOperation[] = ["failover", "test-failover"];
export const DEFAULT_TIMEOUT_S = 300;
export const MAX_TIMEOUT_S = 86_400;
export const MAX_TEXT = 4000;
export const MAX_GROUPS = 100;
export const MAX_ACTIONS = 100;
export const MAX_ITEMS_PER_GROUP = 1000;
const NAME = /^[A-Za-z0-9._-]{1,64}$/;

export const PLAN_OPERATION_WORDS: Record<PlanOperation, string> = {
  "test-failover": "Test failover",
  "test-failover-cleanup": "Clean up test failover",
  failover: "Failover",
  commit: "Commit",
  reprotect: "Reprotect",
  failback: "Failback",
};

export const ACTION_KIND_WORDS: Record<ActionKind, string> = {
  script: "Script on the vault",
  "machine-script": "Script in each machine",
  manual: "Manual step",
};

export function isPlanOperation(s: string): s is PlanOperation {
  return (PLAN_OPERATIONS as readonly string[]).includes(s);
}

export function isActionKind(s: string): s is ActionKind {
  return (ACTION_KINDS as readonly string[]).includes(s);
}

export function checkPlanName(name: string): string | null {
  if (name === "") return "give the plan a name";
  if (!NAME.test(name)) return "use 1 to 64 letters, digits, dots, dashes or underscores (no spaces)";
  return null;
}

// ---- the draft ----

export interface ItemRef {
  id: string;
  name: string;
}

/** An action as the form holds it: the timeout as typed, both texts kept when the kind changes. */
export interface DraftAction {
  key: string;
  kind: ActionKind;
  run: string;
  message: string;
  timeout: string;
  on: PlanOperation[];
}

/** "plan": the plan's own setting applies; "stop"/"go-on": this group overrides it. */
export type GroupOnError = "plan" | "stop" | "go-on";

export interface DraftGroup {
  key: string;
  items: ItemRef[];
  pre: DraftAction[];
  post: DraftAction[];
  onError: GroupOnError;
}

export interface PlanDraft {
  name: string;
  continueOnError: boolean;
  groups: DraftGroup[];
}

/** The parts of the API's plan view a draft is made from. */
export interface PlanViewLike {
  name: string;
  continueOnError: boolean;
  groups: readonly {
    continueOnError: boolean;
    items: readonly ItemRef[];
    pre: readonly ActionViewLike[];
    post: readonly ActionViewLike[];
  }[];
}

export interface ActionViewLike {
  kind: string;
  run?: string | undefined;
  message?: string | undefined;
  timeoutSeconds?: number | undefined;
  on: readonly string[];
}

let keySeq = 0;
/** A key for lists the editor renders (stable across moves; never sent). */
function key(prefix: string): string {
  keySeq += 1;
  return `${prefix}${keySeq}`;
}

export function newAction(kind: ActionKind): DraftAction {
  return {
    key: key("a"),
    kind,
    run: "",
    message: "",
    timeout: String(DEFAULT_TIMEOUT_S),
    on: [...DEFAULT_ACTION_ON],
  };
}

export function newGroup(items: readonly ItemRef[] = []): DraftGroup {
  return { key: key("g"), items: [...items], pre: [], post: [], onError: "plan" };
}

export function emptyDraft(name: string): PlanDraft {
  return { name, continueOnError: false, groups: [] };
}

function actionFromView(a: ActionViewLike): DraftAction {
  const kind: ActionKind = isActionKind(a.kind) ? a.kind : "script";
  return {
    key: key("a"),
    kind,
    run: a.run ?? "",
    message: a.message ?? "",
    timeout: String(a.timeoutSeconds ?? DEFAULT_TIMEOUT_S),
    on: a.on.filter(isPlanOperation),
  };
}

/** The draft of a plan as the vault shows it. */
export function draftFromView(v: PlanViewLike): PlanDraft {
  return {
    name: v.name,
    continueOnError: v.continueOnError,
    groups: v.groups.map((g) => ({
      key: key("g"),
      items: g.items.map((it) => ({ id: it.id, name: it.name })),
      pre: g.pre.map(actionFromView),
      post: g.post.map(actionFromView),
      onError: g.continueOnError === v.continueOnError ? "plan" : g.continueOnError ? "go-on" : "stop",
    })),
  };
}

// ---- the body PUT /v1/plans/{plan} takes ----

export type ActionBody =
  | { kind: "script" | "machine-script"; run: string; timeoutSeconds: number; on: PlanOperation[] }
  | { kind: "manual"; message: string; on: PlanOperation[] };

export interface GroupBody {
  items: string[];
  pre: ActionBody[];
  post: ActionBody[];
  continueOnError?: boolean;
}

export interface PlanBody {
  name: string;
  continueOnError: boolean;
  groups: GroupBody[];
}

function actionBody(a: DraftAction): ActionBody {
  if (a.kind === "manual") return { kind: "manual", message: a.message.trim(), on: [...a.on] };
  const t = a.timeout.trim();
  return {
    kind: a.kind,
    run: a.run.trim(),
    // empty: the default; a timeout that is not a number is caught by validate() before a save
    timeoutSeconds: t === "" ? DEFAULT_TIMEOUT_S : /^\d+$/.test(t) ? Number(t) : Number.NaN,
    on: [...a.on],
  };
}

/** The whole definition as the API takes it: items by id (an id always wins over a name). */
export function toBody(d: PlanDraft): PlanBody {
  return {
    name: d.name.trim(),
    continueOnError: d.continueOnError,
    groups: d.groups.map((g) => ({
      items: g.items.map((it) => it.id),
      pre: g.pre.map(actionBody),
      post: g.post.map(actionBody),
      ...(g.onError === "plan" ? {} : { continueOnError: g.onError === "go-on" }),
    })),
  };
}

/** What a save would change, compared as the API would store it (keys and untouched texts aside). */
function canonical(d: PlanDraft): string {
  const b = toBody(d);
  return JSON.stringify({
    ...b,
    groups: b.groups.map((g, i) => ({
      ...g,
      // a group that says what the plan says stores the same thing as one that says nothing
      continueOnError: g.continueOnError ?? b.continueOnError,
      n: i,
    })),
  });
}

export function isDirty(draft: PlanDraft, base: PlanDraft): boolean {
  return canonical(draft) !== canonical(base);
}

// ---- changes (each returns a new draft; an index out of range changes nothing) ----

function withGroup(d: PlanDraft, g: number, f: (x: DraftGroup) => DraftGroup): PlanDraft {
  const x = d.groups[g];
  if (x === undefined) return d;
  return { ...d, groups: d.groups.map((y, i) => (i === g ? f(x) : y)) };
}

function moveIn<T>(list: readonly T[], from: number, to: number): T[] {
  if (from < 0 || from >= list.length || to < 0 || to >= list.length || from === to) return [...list];
  const out = [...list];
  const [x] = out.splice(from, 1);
  out.splice(to, 0, x as T);
  return out;
}

export function setName(d: PlanDraft, name: string): PlanDraft {
  return { ...d, name };
}

export function setContinueOnError(d: PlanDraft, on: boolean): PlanDraft {
  return { ...d, continueOnError: on };
}

export function addGroup(d: PlanDraft, items: readonly ItemRef[] = []): PlanDraft {
  const inPlan = itemIdsInPlan(d);
  return { ...d, groups: [...d.groups, newGroup(items.filter((it) => !inPlan.has(it.id)))] };
}

/** Removes group g; its items leave the plan (they can be added again from the picker). */
export function removeGroup(d: PlanDraft, g: number): PlanDraft {
  if (d.groups[g] === undefined) return d;
  return { ...d, groups: d.groups.filter((_, i) => i !== g) };
}

/** Moves group g by `delta` places (-1: runs one group earlier). */
export function moveGroup(d: PlanDraft, g: number, delta: number): PlanDraft {
  return { ...d, groups: moveIn(d.groups, g, g + delta) };
}

export function setGroupOnError(d: PlanDraft, g: number, onError: GroupOnError): PlanDraft {
  return withGroup(d, g, (x) => ({ ...x, onError }));
}

export function itemIdsInPlan(d: PlanDraft): Set<string> {
  return new Set(d.groups.flatMap((g) => g.items.map((it) => it.id)));
}

/** The group an item is in (0-based), or -1. */
export function groupOf(d: PlanDraft, itemId: string): number {
  return d.groups.findIndex((g) => g.items.some((it) => it.id === itemId));
}

/** Adds items to group g; an item the plan has already stays where it is. */
export function addItems(d: PlanDraft, g: number, items: readonly ItemRef[]): PlanDraft {
  const inPlan = itemIdsInPlan(d);
  const seen = new Set<string>();
  const fresh = items.filter((it) => {
    if (inPlan.has(it.id) || seen.has(it.id)) return false;
    seen.add(it.id);
    return true;
  });
  return withGroup(d, g, (x) => ({ ...x, items: [...x.items, ...fresh] }));
}

export function removeItem(d: PlanDraft, itemId: string): PlanDraft {
  return { ...d, groups: d.groups.map((g) => ({ ...g, items: g.items.filter((it) => it.id !== itemId) })) };
}

/** Moves an item into group `to` (0-based), or into a new last group with "new". */
export function moveItem(d: PlanDraft, itemId: string, to: number | "new"): PlanDraft {
  const from = groupOf(d, itemId);
  if (from < 0) return d;
  if (to === from) return d;
  const it = d.groups[from]?.items.find((x) => x.id === itemId) as ItemRef;
  if (to === "new") {
    const out = removeItem(d, itemId);
    return { ...out, groups: [...out.groups, newGroup([it])] };
  }
  if (d.groups[to] === undefined) return d;
  return withGroup(removeItem(d, itemId), to, (x) => ({ ...x, items: [...x.items, it] }));
}

export function addAction(d: PlanDraft, g: number, when: When, kind: ActionKind): PlanDraft {
  return withGroup(d, g, (x) => ({ ...x, [when]: [...x[when], newAction(kind)] }));
}

export function updateAction(
  d: PlanDraft,
  g: number,
  when: When,
  i: number,
  patch: Partial<Omit<DraftAction, "key">>,
): PlanDraft {
  return withGroup(d, g, (x) => {
    if (x[when][i] === undefined) return x;
    return { ...x, [when]: x[when].map((a, k) => (k === i ? { ...a, ...patch } : a)) };
  });
}

export function toggleActionOn(d: PlanDraft, g: number, when: When, i: number, op: PlanOperation): PlanDraft {
  const a = d.groups[g]?.[when][i];
  if (a === undefined) return d;
  const on = a.on.includes(op)
    ? a.on.filter((o) => o !== op)
    : PLAN_OPERATIONS.filter((o) => o === op || a.on.includes(o));
  return updateAction(d, g, when, i, { on });
}

export function removeAction(d: PlanDraft, g: number, when: When, i: number): PlanDraft {
  return withGroup(d, g, (x) => ({ ...x, [when]: x[when].filter((_, k) => k !== i) }));
}

export function moveAction(d: PlanDraft, g: number, when: When, i: number, delta: number): PlanDraft {
  return withGroup(d, g, (x) => ({ ...x, [when]: moveIn(x[when], i, i + delta) }));
}

// ---- checks before PUT ----

/**
 * One thing to fix. `path` names the field the editor shows it at: "name", "groups.1" (the group),
 * "groups.1.items", "groups.1.pre.0.run" / ".message" / ".timeout" / ".on".
 */
export interface Issue {
  path: string;
  message: string;
}

export function actionPath(g: number, when: When, i: number): string {
  return `groups.${g}.${when}.${i}`;
}

function checkAction(a: DraftAction, where: string, path: string, out: Issue[]): void {
  if (a.on.length === 0) {
    out.push({
      path: `${path}.on`,
      message: `${where} runs for no operation; tick at least one`,
    });
  }
  if (a.kind === "manual") {
    const m = a.message.trim();
    if (m === "") {
      out.push({
        path: `${path}.message`,
        message: `${where} is a manual step without instructions; say what the operator must do before confirming`,
      });
    } else if (m.length > MAX_TEXT) {
      out.push({
        path: `${path}.message`,
        message: `${where}: keep the instructions under ${MAX_TEXT} characters`,
      });
    }
    return;
  }
  const run = a.run.trim();
  if (run === "") {
    out.push({
      path: `${path}.run`,
      message: `${where} is a script without a command; write the command to run (sh -c)`,
    });
  } else if (run.length > MAX_TEXT) {
    out.push({
      path: `${path}.run`,
      message: `${where}: the command is ${run.length} characters; keep it under ${MAX_TEXT} (put longer scripts in a file)`,
    });
  }
  const t = a.timeout.trim();
  if (t !== "" && (!/^\d+$/.test(t) || Number(t) < 1 || Number(t) > MAX_TIMEOUT_S)) {
    out.push({
      path: `${path}.timeout`,
      message: `${where}: the time limit must be a whole number of seconds from 1 to ${MAX_TIMEOUT_S}`,
    });
  }
}

/**
 * Everything a save would be refused for, in the order the editor shows it. `known`, when given, is
 * the ids of the items the vault has: an item deleted since it was added is named.
 */
export function validate(d: PlanDraft, known?: ReadonlySet<string>): Issue[] {
  const out: Issue[] = [];
  const nameIssue = checkPlanName(d.name.trim());
  if (nameIssue !== null) out.push({ path: "name", message: nameIssue });
  if (d.groups.length > MAX_GROUPS) {
    out.push({
      path: "groups",
      message: `a plan has at most ${MAX_GROUPS} groups; this one has ${d.groups.length}`,
    });
  }
  const firstGroup = new Map<string, number>();
  d.groups.forEach((g, gi) => {
    const label = `Group ${gi + 1}`;
    if (g.items.length === 0) {
      out.push({
        path: `groups.${gi}.items`,
        message: `${label} has no machines; add at least one, or remove the group`,
      });
    }
    if (g.items.length > MAX_ITEMS_PER_GROUP) {
      out.push({
        path: `groups.${gi}.items`,
        message: `${label} has ${g.items.length} machines; a group holds at most ${MAX_ITEMS_PER_GROUP}`,
      });
    }
    for (const it of g.items) {
      const other = firstGroup.get(it.id);
      if (other === undefined) firstGroup.set(it.id, gi);
      else {
        out.push({
          path: `groups.${gi}.items`,
          message:
            other === gi
              ? `${label} names ${it.name} twice; a machine is named once`
              : `${it.name} is in group ${other + 1} and in group ${gi + 1}; a machine belongs to one group of a plan`,
        });
      }
      if (known !== undefined && !known.has(it.id)) {
        out.push({
          path: `groups.${gi}.items`,
          message: `${it.name} (${label}) is no longer a replicated item of this vault; remove it`,
        });
      }
    }
    for (const when of ["pre", "post"] as const) {
      if (g[when].length > MAX_ACTIONS) {
        out.push({
          path: `groups.${gi}.${when}`,
          message: `${label} has ${g[when].length} actions ${when === "pre" ? "before" : "after"} its machines; at most ${MAX_ACTIONS}`,
        });
      }
      g[when].forEach((a, i) => {
        const where = `${label}, ${when === "pre" ? "before" : "after"} the machines, action ${i + 1}`;
        checkAction(a, where, actionPath(gi, when, i), out);
      });
    }
  });
  return out;
}

/** The issues at a field (exactly) or, with `under`, at it and below it. */
export function issuesAt(issues: readonly Issue[], path: string, under = false): Issue[] {
  return issues.filter((i) => i.path === path || (under && i.path.startsWith(`${path}.`)));
}

// ---- how an operation runs a plan (mirrors planStages/planSteps in src/domain/plan.ts) ----

export interface DefinitionLike<A extends { on: readonly string[] } = { on: readonly string[] }> {
  groups: readonly { items: readonly unknown[]; pre: readonly A[]; post: readonly A[] }[];
}

/** Groups of one stage run their machines at once; cleanup and commit take all groups in one stage. */
export function stagesOf(op: PlanOperation, groupCount: number): number[][] {
  if (groupCount === 0) return [];
  const all = Array.from({ length: groupCount }, (_, g) => g);
  if (op === "test-failover-cleanup" || op === "commit") return [all];
  return all.map((g) => [g]);
}

export interface PlannedAction<A> {
  step: string;
  group: number;
  when: When;
  index: number;
  action: A;
}

export interface Stage<A> {
  groups: number[];
  /** the items step's name in the job */
  itemsStep: string;
  pre: PlannedAction<A>[];
  post: PlannedAction<A>[];
}

export function actionStep(g: number, when: When, i: number): string {
  return `group-${g + 1}-${when}-${i + 1}`;
}

/** What a plan operation will run, stage by stage: the actions that run for it and the items step. */
export function runOrder<A extends { on: readonly string[] }>(
  def: DefinitionLike<A>,
  op: PlanOperation,
): Stage<A>[] {
  return stagesOf(op, def.groups.length).map((groups) => {
    const pick = (when: When) =>
      groups.flatMap((g) =>
        (def.groups[g]?.[when] ?? []).flatMap((action, index) =>
          action.on.includes(op) ? [{ step: actionStep(g, when, index), group: g, when, index, action }] : [],
        ),
      );
    return {
      groups,
      itemsStep: groups.length === 1 ? `group-${(groups[0] as number) + 1}-items` : "all-groups-items",
      pre: pick("pre"),
      post: pick("post"),
    };
  });
}

/** The step names of a plan job in order (as the vault answers on start). */
export function stepNames(def: DefinitionLike, op: PlanOperation): string[] {
  return [
    ...runOrder(def, op).flatMap((s) => [
      ...s.pre.map((a) => a.step),
      s.itemsStep,
      ...s.post.map((a) => a.step),
    ]),
    "summary",
  ];
}

/** The item operation a plan operation means (failback is an item failover towards home). */
export function itemOperation(
  op: PlanOperation,
): "test-failover" | "test-failover-cleanup" | "failover" | "commit" | "reprotect" {
  return op === "failback" ? "failover" : op;
}

/**
 * Whether an item in its state would run the plan operation: the item allows the item operation, and
 * for failover and failback it goes the right way (a failover leaves home, a failback returns to it).
 */
export function itemTakesPart(
  op: PlanOperation,
  it: { allowedOperations: readonly string[]; target: string; home: string },
): boolean {
  if (!it.allowedOperations.includes(itemOperation(op))) return false;
  if (op === "failover") return it.target !== it.home;
  if (op === "failback") return it.target === it.home;
  return true;
}

// ---- starting a plan operation ----

/** A recovery point a plan operation can name for every machine (each resolves it to its own point). */
export type PlanPoint = Exclude<PointChoice, "custom">;

/**
 * The points a plan operation offers, in the item dialogs' order with their default first (the words
 * are the item dialogs' POINT_WORDS). No "a specific point": each machine holds its own points. Null
 * when the operation takes no point.
 */
export function planPointChoices(op: PlanOperation): readonly PlanPoint[] | null {
  const pointOp = op === "test-failover" ? op : op === "failover" || op === "failback" ? "failover" : null;
  if (pointOp === null) return null;
  return POINT_CHOICES[pointOp].filter((c): c is PlanPoint => c !== "custom");
}

export interface PlanOptions {
  point: PlanPoint;
  shutdownSource: boolean;
  planned: boolean;
  notes: string;
}

/** The dialog's first choices: the item dialogs' defaults (their default point, the source shut down first). */
export function initialPlanOptions(op: PlanOperation): PlanOptions {
  return { point: planPointChoices(op)?.[0] ?? "latest", shutdownSource: true, planned: false, notes: "" };
}

/** The body POST /v1/plans/{plan}/{op} takes (also each machine's dry run, as the job sends it). */
export function planOperationBody(op: PlanOperation, o: PlanOptions): Record<string, unknown> {
  switch (op) {
    case "test-failover":
      return { point: o.point };
    case "test-failover-cleanup":
      return o.notes.trim() === "" ? {} : { notes: o.notes.trim() };
    case "failover":
    case "failback":
      return o.planned ? { planned: true } : { point: o.point, shutdownSource: o.shutdownSource };
    default:
      return {};
  }
}

/**
 * What the vault's verdicts on a plan's machines were asked with: the plan's version, the operation,
 * the body and each machine's state (phase and direction). A verdict counts only while this is still
 * the key: new choices, an edited plan or a machine that moved make the dialog ask again.
 */
export function planCheckKey(
  plan: { id: string; updatedAt: string; groups: readonly { items: readonly { id: string }[] }[] },
  op: PlanOperation,
  body: Record<string, unknown>,
  items: ReadonlyMap<string, { phase: string; target: string; home: string }>,
): string {
  const states = plan.groups.flatMap((g) =>
    g.items.map((pi) => {
      const it = items.get(pi.id);
      return it === undefined ? `${pi.id}:gone` : `${pi.id}:${it.phase}:${it.target}:${it.home}`;
    }),
  );
  return JSON.stringify([plan.id, plan.updatedAt, op, body, states]);
}

/** The plan's name typed to confirm, as the item dialogs take an item's (spaces around it do not count). */
export function planNameTyped(typed: string, name: string): boolean {
  return typed.trim() === name;
}

export interface StartGate {
  disabled: boolean;
  /** why it is disabled, in words ("" when it is not) */
  why: string;
  /** the start button's words: "Failover 3 machines", "Failover 2 of 3 machines" */
  label: string;
}

/** Whether a plan operation may start now, and what its button says. */
export function planStartGate(p: {
  op: PlanOperation;
  total: number;
  checking: number;
  willRun: number;
  nameOk: boolean;
  busy: boolean;
}): StartGate {
  const words = PLAN_OPERATION_WORDS[p.op];
  const all = `${p.total} machine${p.total === 1 ? "" : "s"}`;
  const label = p.busy
    ? "Starting…"
    : p.checking > 0 || p.willRun === p.total
      ? `${words} ${all}`
      : `${words} ${p.willRun} of ${all}`;
  const why =
    p.total === 0
      ? "The plan has no machines: add some first."
      : p.checking > 0
        ? "The vault is still deciding for some machines."
        : p.willRun === 0
          ? `The vault refuses every machine in its current state: there is nothing to ${words.toLowerCase()}.`
          : !p.nameOk
            ? "Type the plan's name to confirm."
            : "";
  return { disabled: p.busy || why !== "", why, label };
}

// ---- a plan job, read back ----

export type StepPlace =
  | { kind: "action"; group: number; when: When; index: number }
  | { kind: "items"; groups: "all" | number }
  | { kind: "summary" }
  | { kind: "other" };

/** Where a plan job's step belongs: group numbers are 0-based here. */
export function stepPlace(name: string): StepPlace {
  const a = /^group-(\d+)-(pre|post)-(\d+)$/.exec(name);
  if (a !== null) {
    return { kind: "action", group: Number(a[1]) - 1, when: a[2] as When, index: Number(a[3]) - 1 };
  }
  const i = /^group-(\d+)-items$/.exec(name);
  if (i !== null) return { kind: "items", groups: Number(i[1]) - 1 };
  if (name === "all-groups-items") return { kind: "items", groups: "all" };
  if (name === "summary") return { kind: "summary" };
  return { kind: "other" };
}

/** The manual action a plan job waits at, from the definition it runs with (as the vault's waitingAction). */
export function waitingAt(job: {
  state: string;
  waitingFor: string | null;
  params: unknown;
}): { step: string; group: number; message: string } | null {
  if (job.state !== "waiting" || job.waitingFor === null || !job.waitingFor.startsWith("confirm-"))
    return null;
  const step = job.waitingFor.slice("confirm-".length);
  const p = stepPlace(step);
  if (p.kind !== "action") return { step, group: 0, message: "" };
  const def = (job.params as { definition?: { groups?: { pre?: unknown[]; post?: unknown[] }[] } } | null)
    ?.definition;
  const a = def?.groups?.[p.group]?.[p.when]?.[p.index] as { kind?: string; message?: string } | undefined;
  return { step, group: p.group + 1, message: a?.kind === "manual" ? (a.message ?? "") : "" };
}

/**
 * The item jobs an items step started, from the plan job's log lines: item name → job id. The vault
 * logs "NAME: KIND job ID started" with data {item, job}, and each job's end with {item, job, state}.
 */
export function childJobs(logs: readonly { message: string; data?: unknown }[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of logs) {
    const d = l.data as { item?: unknown; job?: unknown } | null | undefined;
    if (d !== null && typeof d === "object" && typeof d.item === "string" && typeof d.job === "string") {
      out.set(d.item, d.job);
      continue;
    }
    const m = /^([A-Za-z0-9._-]+): (?:its )?[a-z-]+ job (\S+) (?:started|was started)/.exec(l.message);
    if (m !== null) out.set(m[1] as string, m[2] as string);
  }
  return out;
}

/** How one machine of an items step did (the step's output once it finished). */
export interface MachineOutcome {
  item: string;
  itemId: string;
  group: number;
  job: string | null;
  state: string;
  error: { code: string; message: string } | null;
  phase: string | null;
}

export function machinesOf(output: unknown): MachineOutcome[] {
  const m = (output as { machines?: unknown } | null)?.machines;
  if (!Array.isArray(m)) return [];
  return m.filter((x): x is MachineOutcome => typeof (x as MachineOutcome)?.item === "string");
}

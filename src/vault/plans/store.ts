// Recovery plans in the database (`plans`: name and the definition as JSON) and what the API does with
// them: create, replace, add a group or an action (read, checked by src/domain/plan.ts, written back
// only if nobody changed the plan in between), delete, show with each item's phase and the last run,
// start a plan operation's job, and confirm the manual action a plan's job waits for.
import type { Kysely } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import {
  actionStepName,
  checkAction,
  checkDefinition,
  continuesOnError,
  type PlanActionInput,
  type PlanDefinition,
  type PlanDefinitionInput,
  type PlanGroupInput,
  type PlanOperation,
  planSteps,
} from "../../domain/plan.ts";
import { isRefusal, orThrow } from "../../domain/refusal.ts";
import { readJson } from "../db/json.ts";
import type { PlanRow, VaultDatabase } from "../db/schema.ts";
import { newId } from "../ids.ts";
import { checkName, insertUnique } from "../inventory/common.ts";
import { ItemStateSchema } from "../items.ts";
import type { JobEngine } from "../jobs/engine.ts";
import type { JobView } from "../jobs/types.ts";
import {
  PlanDefinitionSchema,
  type PlanJobOptions,
  type PlanJobParams,
  type PlanRun,
  type PlanView,
} from "./schema.ts";

type Db = Kysely<VaultDatabase>;

export const PLAN_KIND_PREFIX = "plan-";

export interface LoadedPlan {
  row: PlanRow;
  definition: PlanDefinition;
}

function parsePlanRow(row: PlanRow): LoadedPlan {
  return {
    row,
    definition: readJson(PlanDefinitionSchema, row.definition, {
      table: "plans",
      column: "definition",
      id: row.id,
    }),
  };
}

/** By id or name. */
export async function loadPlan(db: Db, ref: string): Promise<LoadedPlan> {
  const row =
    (await db.selectFrom("plans").selectAll().where("id", "=", ref).executeTakeFirst()) ??
    (await db.selectFrom("plans").selectAll().where("name", "=", ref).executeTakeFirst());
  if (row === undefined) {
    throw new SwitchbackError(
      "PLAN_NOT_FOUND",
      `recovery plan ${JSON.stringify(ref)} does not exist; 'switchback plans list' lists them`,
    );
  }
  return parsePlanRow(row);
}

async function knownItems(db: Db): Promise<{ id: string; name: string }[]> {
  return db.selectFrom("items").select(["id", "name"]).execute();
}

/** The plan's unfinished job, if any (one at a time: PLAN_BUSY). */
export async function activePlanJob(
  db: Db,
  planId: string,
): Promise<{ id: string; kind: string; state: string; created_at: string } | undefined> {
  return db
    .selectFrom("jobs")
    .select(["id", "kind", "state", "created_at"])
    .where("plan_id", "=", planId)
    .where("finished_at", "is", null)
    .orderBy("created_at")
    .orderBy("id")
    .executeTakeFirst();
}

export function planBusy(name: string, job: { id: string; kind: string; state: string }, doing: string) {
  return new SwitchbackError(
    "PLAN_BUSY",
    `recovery plan ${name} has an unfinished ${job.kind} job ${job.id} (${job.state}); ${doing} waits until it finishes — follow it with 'switchback jobs show ${job.id}', or cancel it`,
  );
}

async function refuseIfBusy(db: Db, plan: LoadedPlan, doing: string): Promise<void> {
  const job = await activePlanJob(db, plan.row.id);
  if (job !== undefined) throw planBusy(plan.row.name, job, doing);
}

function checked(input: PlanDefinitionInput, items: { id: string; name: string }[]): PlanDefinition {
  return orThrow(checkDefinition(input, items));
}

export async function createPlan(
  db: Db,
  body: { name: string } & PlanDefinitionInput,
  now: Date,
): Promise<LoadedPlan> {
  checkName("plan", body.name);
  const definition = checked(body, await knownItems(db));
  const id = newId("plan");
  const at = now.toISOString();
  await insertUnique("plan", body.name, () =>
    db
      .insertInto("plans")
      .values({ id, name: body.name, definition: JSON.stringify(definition), created_at: at, updated_at: at })
      .execute(),
  );
  return loadPlan(db, id);
}

/**
 * Reads the plan, lets `change` make the new name and definition, writes them if the plan was not
 * changed since it was read (updated_at), else tries again. Refused while a job of the plan runs: a
 * running job keeps the definition it started with, and a change would not be what it runs.
 */
async function changePlan(
  db: Db,
  ref: string,
  now: Date,
  doing: string,
  change: (p: LoadedPlan) => Promise<{ name: string; definition: PlanDefinition }>,
): Promise<LoadedPlan> {
  // under the plan's lock, as starting an operation is: an edit and a run cannot interleave between
  // the busy check and the write (within this vault process; several share PostgreSQL unlocked)
  const first = await loadPlan(db, ref);
  return serialized(first.row.id, async () => {
    for (let attempt = 0; ; attempt++) {
      const p = await loadPlan(db, first.row.id);
      await refuseIfBusy(db, p, doing);
      const next = await change(p);
      if (next.name !== p.row.name) checkName("plan", next.name);
      let at = now.toISOString();
      if (at <= p.row.updated_at) at = new Date(Date.parse(p.row.updated_at) + 1).toISOString();
      const r = await insertUnique("plan", next.name, () =>
        db
          .updateTable("plans")
          .set({ name: next.name, definition: JSON.stringify(next.definition), updated_at: at })
          .where("id", "=", p.row.id)
          .where("updated_at", "=", p.row.updated_at)
          .executeTakeFirst(),
      );
      if (r.numUpdatedRows === 1n) return loadPlan(db, p.row.id);
      if (attempt >= 10) {
        throw new SwitchbackError(
          "PLAN_CHANGE_REFUSED",
          `recovery plan ${p.row.name} kept changing while this change was made; look at it again ('plans show') and retry`,
        );
      }
    }
  });
}

/** Stored actions back in the input form, so a whole definition is checked again on every change. */
function asInput(def: PlanDefinition): PlanGroupInput[] {
  return def.groups.map((g) => ({
    items: g.items,
    pre: g.pre,
    post: g.post,
    ...(g.continueOnError !== undefined ? { continueOnError: g.continueOnError } : {}),
  }));
}

export async function replacePlan(
  db: Db,
  ref: string,
  body: { name?: string | undefined } & PlanDefinitionInput,
  now: Date,
): Promise<LoadedPlan> {
  return changePlan(db, ref, now, "a change of the plan", async (p) => ({
    name: body.name ?? p.row.name,
    definition: checked(body, await knownItems(db)),
  }));
}

export async function addGroup(db: Db, ref: string, group: PlanGroupInput, now: Date): Promise<LoadedPlan> {
  return changePlan(db, ref, now, "a change of the plan", async (p) => {
    const groups = [...asInput(p.definition), group];
    return {
      name: p.row.name,
      definition: checked({ continueOnError: p.definition.continueOnError, groups }, await knownItems(db)),
    };
  });
}

/** Adds an action to group `n` (1-based) before or after its items. */
export async function addAction(
  db: Db,
  ref: string,
  n: number,
  when: "pre" | "post",
  action: PlanActionInput,
  now: Date,
): Promise<LoadedPlan> {
  return changePlan(db, ref, now, "a change of the plan", async (p) => {
    const g = p.definition.groups[n - 1];
    if (g === undefined) {
      throw new SwitchbackError(
        "PLAN_GROUP_NOT_FOUND",
        `recovery plan ${p.row.name} has ${p.definition.groups.length} group${p.definition.groups.length === 1 ? "" : "s"}, so there is no group ${n}; groups count from 1 ('plans show ${p.row.name}')`,
      );
    }
    const a = checkAction(action, `groups[${n - 1}].${when}[${g[when].length}]`);
    if (isRefusal(a)) throw new SwitchbackError(a.code, a.message);
    const groups = p.definition.groups.map((x, i) => (i === n - 1 ? { ...x, [when]: [...x[when], a] } : x));
    return { name: p.row.name, definition: { ...p.definition, groups } };
  });
}

export async function deletePlan(db: Db, ref: string): Promise<LoadedPlan> {
  const p = await loadPlan(db, ref);
  await refuseIfBusy(db, p, "deleting the plan");
  await db.deleteFrom("plans").where("id", "=", p.row.id).execute();
  return p;
}

// ---- views ----

function operationOf(kind: string): string {
  return kind.startsWith(PLAN_KIND_PREFIX) ? kind.slice(PLAN_KIND_PREFIX.length) : kind;
}

/** The manual action a plan job waits at, from the definition it runs with. */
export function waitingAction(
  job: Pick<JobView, "state" | "waitingFor" | "params">,
): { step: string; group: number; message: string } | null {
  if (job.state !== "waiting" || job.waitingFor === null || !job.waitingFor.startsWith("confirm-"))
    return null;
  const step = job.waitingFor.slice("confirm-".length);
  const m = /^group-(\d+)-(pre|post)-(\d+)$/.exec(step);
  const def = (job.params as Partial<PlanJobParams> | null)?.definition;
  if (m === null || def === undefined) return { step, group: 0, message: "" };
  const action = def.groups[Number(m[1]) - 1]?.[m[2] as "pre" | "post"][Number(m[3]) - 1];
  return {
    step,
    group: Number(m[1]),
    message: action?.kind === "manual" ? action.message : "",
  };
}

function runView(job: JobView): PlanRun {
  return {
    jobId: job.id,
    operation: operationOf(job.kind),
    state: job.state,
    waitingFor: job.waitingFor,
    waiting: waitingAction(job),
    error: job.error,
    createdBy: job.createdBy,
    createdAt: job.createdAt,
    startedAt: job.startedAt,
    finishedAt: job.finishedAt,
    steps: job.steps.map((s) => ({
      name: s.name,
      state: s.state,
      startedAt: s.startedAt,
      finishedAt: s.finishedAt,
      output: s.output,
    })),
  };
}

export async function planViews(db: Db, engine: JobEngine | null, plans: LoadedPlan[]): Promise<PlanView[]> {
  if (plans.length === 0) return [];
  const sites = new Map(
    (await db.selectFrom("sites").select(["id", "name"]).execute()).map((s) => [s.id, s.name]),
  );
  const site = (id: string) => sites.get(id) ?? id;
  const itemRows = await db.selectFrom("items").select(["id", "name", "state"]).execute();
  const items = new Map(
    itemRows.map((r) => {
      const s = readJson(ItemStateSchema, r.state, { table: "items", column: "state", id: r.id });
      return [
        r.id,
        { id: r.id, name: r.name, phase: s.phase, direction: `${site(s.source)} → ${site(s.target)}` },
      ];
    }),
  );
  const views: PlanView[] = [];
  for (const p of plans) {
    let lastRun: PlanRun | null = null;
    if (engine !== null) {
      const [last] = await engine.list({ planId: p.row.id, limit: 1 });
      if (last !== undefined) lastRun = runView(await engine.get(last.id));
    }
    const action = (g: number, when: "pre" | "post") =>
      p.definition.groups[g]![when].map((a, k) => ({ step: actionStepName(g, when, k), ...a }));
    views.push({
      id: p.row.id,
      name: p.row.name,
      continueOnError: p.definition.continueOnError,
      groups: p.definition.groups.map((g, i) => ({
        n: i + 1,
        continueOnError: continuesOnError(p.definition, i),
        items: g.items.map((id) => items.get(id) ?? { id, name: id, phase: "unknown", direction: "unknown" }),
        pre: action(i, "pre"),
        post: action(i, "post"),
      })),
      lastRun,
      createdAt: p.row.created_at,
      updatedAt: p.row.updated_at,
    });
  }
  return views;
}

export async function listPlans(db: Db): Promise<LoadedPlan[]> {
  const rows = await db.selectFrom("plans").selectAll().orderBy("name").execute();
  return rows.map(parsePlanRow);
}

// ---- running ----

// Two requests for one plan in this process are decided one after the other, so the second sees the
// first one's job (PLAN_BUSY); across vault processes the job's first step checks again.
const starting = new Map<string, Promise<unknown>>();

async function serialized<T>(key: string, f: () => Promise<T>): Promise<T> {
  const before = starting.get(key) ?? Promise.resolve();
  const run = before.then(f, f);
  const tail = run.catch(() => {});
  starting.set(key, tail);
  try {
    return await run;
  } finally {
    if (starting.get(key) === tail) starting.delete(key);
  }
}

/** Creates the job of a plan operation: one durable job whose steps come from the plan's definition. */
export async function startPlanOperation(
  db: Db,
  engine: JobEngine,
  ref: string,
  op: PlanOperation,
  options: PlanJobOptions,
  by: string | null,
): Promise<{ plan: LoadedPlan; job: JobView; steps: string[] }> {
  const first = await loadPlan(db, ref);
  return serialized(first.row.id, async () => {
    const p = await loadPlan(db, first.row.id);
    if (p.definition.groups.length === 0) {
      throw new SwitchbackError(
        "PLAN_OPERATION_NOT_ALLOWED",
        `recovery plan ${p.row.name} has no groups, so ${op} has nothing to do; add one with 'switchback plans add-group ${p.row.name} ITEM…'`,
      );
    }
    await refuseIfBusy(db, p, `a plan ${op}`);
    const params: PlanJobParams = {
      plan: { id: p.row.id, name: p.row.name },
      definition: p.definition,
      options,
    };
    const job = await engine.create(`${PLAN_KIND_PREFIX}${op}`, {
      planId: p.row.id,
      params,
      createdBy: by,
    });
    return { plan: p, job, steps: planSteps(p.definition, op).map((s) => s.name) };
  });
}

/** Sends the signal the plan's job waits for at a manual action. */
export async function confirmPlan(
  db: Db,
  engine: JobEngine,
  ref: string,
  by: string | null,
  /** the step the operator was shown: confirming must not slip to the next manual action */
  expected?: string,
): Promise<{ job: string; step: string; message: string; accepted: boolean }> {
  const p = await loadPlan(db, ref);
  const active = await activePlanJob(db, p.row.id);
  if (active === undefined) {
    throw new SwitchbackError(
      "PLAN_CONFIRM_NOT_ALLOWED",
      `recovery plan ${p.row.name} has no running job, so there is nothing to confirm; start one with 'switchback plans <operation> ${p.row.name}'`,
    );
  }
  const job = await engine.get(active.id as JobView["id"]);
  const waiting = waitingAction(job);
  if (waiting === null || job.waitingFor === null) {
    throw new SwitchbackError(
      "PLAN_CONFIRM_NOT_ALLOWED",
      `the ${job.kind} job ${job.id} of plan ${p.row.name} is ${job.state}${job.waitingFor !== null ? ` (waiting for ${job.waitingFor})` : ""}, not waiting at a manual action; confirm once it does ('plans show ${p.row.name}')`,
    );
  }
  if (expected !== undefined && expected !== waiting.step) {
    throw new SwitchbackError(
      "PLAN_CONFIRM_STALE",
      `the ${job.kind} job of plan ${p.row.name} no longer waits at ${expected} but at ${waiting.step} (${waiting.message}); read it, then confirm that one`,
    );
  }
  const accepted = await engine.signal(job.id, job.waitingFor, { by }, by ?? undefined);
  return { job: job.id, step: waiting.step, message: waiting.message, accepted };
}

// The job kinds of recovery plans: `plan-<operation>` for each plan operation. The steps come from the
// definition the job was created with (src/domain/plan.ts: pre actions, items, post actions, group by
// group, then a summary). An items step starts each item's own operation job through the same path
// as the API (decided by the lifecycle core; a refusal counts as that machine's failure), marks it
// with this plan job (created_by), and waits for all of them; run again (after a restart, or a retry
// of the plan job), it finds the jobs it started instead of starting new ones, and starts again only
// those that failed or were refused. Actions: `script` runs on the vault, `machine-script` in each
// machine of the group (the `process` provider: `sh -c` with that instance's environment and folder),
// `manual` parks the job until `plans confirm` sends its signal.
import { tmpdir } from "node:os";
import path from "node:path";
import { SwitchbackError } from "../../domain/errors.ts";
import type { OperationName } from "../../domain/lifecycle.ts";
import {
  actionEnv,
  confirmSignal,
  continuesOnError,
  itemOperationFor,
  machineScriptCopy,
  PLAN_OPERATIONS,
  type PlanAction,
  type PlanOperation,
  type PlanStep,
  planSteps,
} from "../../domain/plan.ts";
import { isRefusal } from "../../domain/refusal.ts";
import { loadItem } from "../items.ts";
import type { JobEngine } from "../jobs/engine.ts";
import {
  defineJobKind,
  isFinished,
  type JobId,
  type JobKind,
  type StepContext,
  type StepDef,
} from "../jobs/types.ts";
import { instancesAt, type OpsContext, sleep } from "../operations/context.ts";
import { type OperationRequest, preview, startOperation } from "../operations/index.ts";
import { baseEnv, type CommandResult, howItEnded, runCommand, stderrForSentence } from "./commands.ts";
import {
  type MachineResult,
  type PlanJobOptions,
  type PlanJobParams,
  PlanJobParamsSchema,
  type PlanMachineDecision,
} from "./schema.ts";
import { activePlanJob, type LoadedPlan, loadPlan, PLAN_KIND_PREFIX, planBusy } from "./store.ts";

const POLL_MS = 500;

type Ctx = StepContext<PlanJobParams>;

/** Every plan job kind. `engine` is read when a step runs (the engine is made with these kinds). */
export function planJobKinds(ops: OpsContext, engine: () => JobEngine): JobKind[] {
  return PLAN_OPERATIONS.map((op) => planKind(ops, engine, op));
}

function planKind(ops: OpsContext, engine: () => JobEngine, op: PlanOperation) {
  return defineJobKind({
    kind: `${PLAN_KIND_PREFIX}${op}`,
    params: PlanJobParamsSchema,
    steps: (params) => {
      const defs = planSteps(params.definition, op).map(
        (s): StepDef<PlanJobParams> => ({ name: s.name, run: (c) => runStep(ops, engine(), op, s, c) }),
      );
      const first = defs[0]!;
      // across vault processes two jobs of one plan can both be created: the older one runs
      defs[0] = {
        ...first,
        run: async (c) => {
          const oldest = await activePlanJob(ops.db, c.params.plan.id);
          if (oldest !== undefined && oldest.id !== c.jobId) {
            throw planBusy(c.params.plan.name, oldest, `its ${op} job ${c.jobId}`);
          }
          return first.run(c);
        },
      };
      return defs;
    },
  });
}

function runStep(
  ops: OpsContext,
  engine: JobEngine,
  op: PlanOperation,
  s: PlanStep,
  c: Ctx,
): Promise<unknown> {
  switch (s.type) {
    case "action":
      return runAction(ops, op, s, c);
    case "items":
      return runItems(ops, engine, op, s, c);
    case "summary":
      return summarize(op, c);
    default: {
      const never: never = s;
      throw new Error(`unknown plan step ${JSON.stringify(never)}`);
    }
  }
}

/** What marks the item jobs a plan job started (jobs.created_by), so a resumed step finds them. */
function childTag(plan: string, jobId: string): string {
  return `plan ${plan} (${jobId})`;
}

function requestFor(op: OperationName, o: PlanJobOptions): OperationRequest {
  switch (op) {
    case "test-failover":
      return { op, point: o.point ?? "latest-processed" };
    case "test-failover-cleanup":
      return { op, notes: o.notes ?? "" };
    case "failover":
      return {
        op,
        point: o.point ?? "latest",
        shutdownSource: o.shutdownSource ?? false,
        planned: o.planned ?? false,
      };
    case "commit":
      return { op };
    case "reprotect":
      return { op, location: "original" };
    case "change-point":
    case "disable":
      throw new Error(`a plan does not run ${op}`);
  }
}

/**
 * A plan operation's dry run: what each machine's own operation would be and what the lifecycle core
 * decides for it now, group by group, through the same choice of operation and request the job makes
 * (itemOperationFor, requestFor) and the same decision as an item's dry run. Nothing starts. A refused
 * machine is what the job would count as that machine's failure.
 */
export async function previewPlanOperation(
  ops: OpsContext,
  planRef: string,
  op: PlanOperation,
  options: PlanJobOptions,
): Promise<{ plan: LoadedPlan; steps: string[]; machines: PlanMachineDecision[] }> {
  const p = await loadPlan(ops.db, planRef);
  if (p.definition.groups.length === 0) {
    throw new SwitchbackError(
      "PLAN_OPERATION_NOT_ALLOWED",
      `recovery plan ${p.row.name} has no groups, so ${op} has nothing to do; add one with 'switchback plans add-group ${p.row.name} ITEM…'`,
    );
  }
  const site = await siteNames(ops);
  const machines: PlanMachineDecision[] = [];
  for (const [g, group] of p.definition.groups.entries()) {
    for (const ref of group.items) {
      const row: PlanMachineDecision = {
        group: g + 1,
        itemId: ref,
        item: ref,
        operation: null,
        decision: null,
        refused: null,
      };
      try {
        const it = await loadItem(ops.db, ref);
        row.itemId = it.row.id;
        row.item = it.row.name;
        const itemOp = itemOperationFor(op, it.state, site);
        if (isRefusal(itemOp)) throw new SwitchbackError(itemOp.code, itemOp.message);
        row.operation = itemOp;
        const { decision } = await preview(ops, it.row.id, requestFor(itemOp, options));
        row.decision = {
          label: decision.label,
          direction: decision.direction,
          irreversible: decision.irreversible,
          consequences: decision.consequences,
        };
      } catch (err) {
        if (!(err instanceof SwitchbackError)) throw err;
        row.refused = { code: err.code, message: err.message };
      }
      machines.push(row);
    }
  }
  return { plan: p, steps: planSteps(p.definition, op).map((s) => s.name), machines };
}

async function siteNames(ops: OpsContext): Promise<(id: string) => string> {
  const rows = await ops.db.selectFrom("sites").select(["id", "name"]).execute();
  const m = new Map(rows.map((r) => [r.id, r.name]));
  return (id) => m.get(id) ?? id;
}

async function itemNames(ops: OpsContext, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await ops.db
    .selectFrom("items")
    .select(["id", "name"])
    .where("id", "in", [...ids])
    .execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}

interface Started {
  itemId: string;
  item: string;
  group: number;
  kind: string;
  job: string | null;
  refused: { code: string; message: string } | null;
}

async function startOrFind(
  ops: OpsContext,
  engine: JobEngine,
  op: PlanOperation,
  x: { item: string; group: number },
  tag: string,
  site: (id: string) => string,
  c: Ctx,
): Promise<Started> {
  const base = { itemId: x.item, item: x.item, group: x.group + 1, kind: op as string };
  try {
    const it = await loadItem(ops.db, x.item);
    base.item = it.row.name;
    const before = await ops.db
      .selectFrom("jobs")
      .select(["id", "kind", "state"])
      .where("item_id", "=", it.row.id)
      .where("created_by", "=", tag)
      .orderBy("created_at", "desc")
      .orderBy("id", "desc")
      .executeTakeFirst();
    if (before !== undefined && before.state !== "failed" && before.state !== "cancelled") {
      c.log("info", `${it.row.name}: its ${before.kind} job ${before.id} was started by this step before`);
      return { ...base, kind: before.kind, job: before.id, refused: null };
    }
    const itemOp = itemOperationFor(op, it.state, site);
    if (isRefusal(itemOp)) throw new SwitchbackError(itemOp.code, itemOp.message);
    base.kind = itemOp;
    const { job } = await startOperation(ops, engine, it.row.id, requestFor(itemOp, c.params.options), tag);
    c.log("info", `${it.row.name}: ${itemOp} job ${job.id} started`, { item: it.row.name, job: job.id });
    return { ...base, job: job.id, refused: null };
  } catch (err) {
    if (!(err instanceof SwitchbackError)) throw err;
    c.log("warn", `${base.item}: refused: ${err.code}: ${err.message}`, { item: base.item, code: err.code });
    return { ...base, job: null, refused: { code: err.code, message: err.message } };
  }
}

function describeMachine(m: MachineResult, kind: string): string {
  const how = m.state === "refused" ? "refused" : `${kind} job ${m.job} ${m.state}`;
  return `${m.item} ${how}${m.error !== null ? ` (${m.error.code}: ${m.error.message})` : ""}`;
}

function stageLabel(groups: readonly number[]): string {
  return groups.length === 1 ? `group ${groups[0]! + 1}` : `groups ${groups.map((g) => g + 1).join(", ")}`;
}

async function runItems(
  ops: OpsContext,
  engine: JobEngine,
  op: PlanOperation,
  s: Extract<PlanStep, { type: "items" }>,
  c: Ctx,
): Promise<{ machines: MachineResult[]; failed: number }> {
  const tag = childTag(c.params.plan.name, c.jobId);
  const site = await siteNames(ops);
  const started = await Promise.all(s.items.map((x) => startOrFind(ops, engine, op, x, tag, site, c)));

  const pending = new Set(started.flatMap((x) => (x.job !== null ? [x.job] : [])));
  const total = pending.size;
  const finished = new Map<string, Awaited<ReturnType<JobEngine["get"]>>>();
  while (pending.size > 0) {
    for (const id of [...pending]) {
      const j = await engine.get(id as JobId);
      if (!isFinished(j.state)) continue;
      pending.delete(id);
      finished.set(id, j);
      const who = started.find((x) => x.job === id)?.item ?? id;
      c.log(
        j.state === "succeeded" ? "info" : "error",
        `${who}: ${j.kind} job ${id} ${j.state}${j.error !== null ? ` (${j.error.code}: ${j.error.message})` : ""}`,
        { item: who, job: id, state: j.state },
      );
    }
    c.progress(total === 0 ? 1 : (total - pending.size) / total);
    if (pending.size > 0) await sleep(POLL_MS, c.signal);
  }

  const machines: MachineResult[] = [];
  for (const x of started) {
    let phase: string | null = null;
    try {
      phase = (await loadItem(ops.db, x.itemId)).state.phase;
    } catch {
      // the item is gone: its result says why
    }
    const j = x.job !== null ? finished.get(x.job) : undefined;
    machines.push({
      item: x.item,
      itemId: x.itemId,
      group: x.group,
      job: x.job,
      state: x.refused !== null ? "refused" : (j?.state as MachineResult["state"]),
      error: x.refused ?? j?.error ?? null,
      phase,
    });
  }
  const failed = machines.filter((m) => m.state !== "succeeded");
  if (failed.length > 0) {
    const kinds = new Map(started.map((x) => [x.itemId, x.kind]));
    const stop = failed.some((m) => !continuesOnError(c.params.definition, m.group - 1));
    const what = `${stageLabel(s.groups)}: ${failed.length} of ${machines.length} machine${machines.length === 1 ? "" : "s"} failed — ${failed.map((m) => describeMachine(m, kinds.get(m.itemId) ?? op)).join("; ")}`;
    c.log("error", what, { machines: failed });
    if (stop) {
      throw new SwitchbackError(
        "PLAN_MACHINES_FAILED",
        `${what}; the plan stopped here (continueOnError is off for ${stageLabel(s.groups)}). Fix the cause, then retry the plan's job ('switchback jobs retry ${c.jobId}'): machines that succeeded are not run again`,
      );
    }
    c.log("warn", `${stageLabel(s.groups)}: going on (continueOnError)`);
  }
  return { machines, failed: failed.length };
}

// ---- actions ----

function actionLabel(s: Extract<PlanStep, { type: "action" }>): string {
  const a = s.action;
  const what =
    a.kind === "manual"
      ? "manual action"
      : `${a.kind} ${JSON.stringify(a.run.length > 60 ? `${a.run.slice(0, 60)}…` : a.run)}`;
  return `group ${s.group + 1} ${s.when} action ${s.index + 1} (${what})`;
}

async function runAction(
  ops: OpsContext,
  op: PlanOperation,
  s: Extract<PlanStep, { type: "action" }>,
  c: Ctx,
): Promise<unknown> {
  const def = c.params.definition;
  const ids = def.groups[s.group]!.items;
  const names = await itemNames(ops, ids);
  const env = actionEnv({
    plan: c.params.plan.name,
    operation: op,
    group: s.group,
    items: ids.map((id) => names.get(id) ?? id),
  });
  const a = s.action;
  switch (a.kind) {
    case "manual": {
      const data = (await c.waitFor(
        confirmSignal(s.name),
        `${a.message} (confirm with 'switchback plans confirm ${c.params.plan.name}')`,
      )) as { by?: string | null } | null;
      const by = data?.by ?? null;
      c.log("info", `${actionLabel(s)} confirmed${by !== null ? ` by ${by}` : ""}`);
      return { kind: "manual", confirmedBy: by, failures: 0 };
    }
    case "script": {
      const r = await runCommand(a.run, {
        env: { ...baseEnv(), ...env },
        timeoutMs: a.timeoutSeconds * 1000,
        signal: c.signal,
        marker: path.join(tmpdir(), `switchback-${c.jobId}-${c.step}.pgid`),
      });
      const out = {
        kind: "script",
        exitCode: r.exitCode,
        durationMs: r.durationMs,
        stdoutTail: r.stdoutTail,
        stderrTail: r.stderrTail,
      };
      if (r.exitCode === 0) {
        c.log("info", `${actionLabel(s)} done in ${(r.durationMs / 1000).toFixed(2)} s`);
        return { ...out, failures: 0 };
      }
      const err = new SwitchbackError(
        r.timedOut ? "PLAN_SCRIPT_TIMEOUT" : "PLAN_SCRIPT_FAILED",
        `${actionLabel(s)} ${howItEnded(r, a.timeoutSeconds)}: ${stderrForSentence(r)}; fix the script (or the plan: 'plans show ${c.params.plan.name}') and retry the plan's job ('switchback jobs retry ${c.jobId}')`,
      );
      if (!continuesOnError(def, s.group)) throw err;
      c.log("error", `${err.code}: ${err.message}; going on (continueOnError)`);
      return { ...out, failures: 1, error: { code: err.code, message: err.message } };
    }
    case "machine-script": {
      const results = await Promise.all(ids.map((id) => runInMachine(ops, op, s, a, id, env, c)));
      const failed = results.filter((r) => r.error !== null);
      for (const r of results) {
        c.log(
          r.error === null ? "info" : "error",
          `${r.item}: ${r.error === null ? "machine script done" : `${r.error.code}: ${r.error.message}`}`,
        );
      }
      if (failed.length > 0 && !continuesOnError(def, s.group)) {
        throw new SwitchbackError(
          "PLAN_MACHINE_SCRIPT_FAILED",
          `${actionLabel(s)} failed in ${failed.length} of ${results.length} machines — ${failed.map((r) => `${r.item}: ${r.error!.message}`).join("; ")}; the plan stopped here. Fix the cause and retry the plan's job ('switchback jobs retry ${c.jobId}')`,
        );
      }
      return { kind: "machine-script", machines: results, failures: failed.length };
    }
    default: {
      const never: never = a;
      throw new Error(`unknown action ${JSON.stringify(never)}`);
    }
  }
}

interface MachineScriptResult {
  item: string;
  instance: string | null;
  site: string | null;
  exitCode: number | null;
  stderrTail: string;
  error: { code: string; message: string } | null;
}

/**
 * Runs a machine-script in one machine. In the unprivileged `process` provider "inside the machine"
 * means: `sh -c` in the instance's folder with the environment its boot command gets (SWITCHBACK_DISKS,
 * SWITCHBACK_DISK_n, SWITCHBACK_MACHINE_DIR, SWITCHBACK_INSTANCE, SWITCHBACK_SITE) and SWITCHBACK_ITEM.
 * The instance is the drill copy or the production copy (machineScriptCopy), found through the item's
 * drill or failover record, else the machine's production instance where it runs; it must be running.
 */
async function runInMachine(
  ops: OpsContext,
  op: PlanOperation,
  s: Extract<PlanStep, { type: "action" }>,
  a: Extract<PlanAction, { kind: "machine-script" }>,
  itemId: string,
  env: Record<string, string>,
  c: Ctx,
): Promise<MachineScriptResult> {
  const res: MachineScriptResult = {
    item: itemId,
    instance: null,
    site: null,
    exitCode: null,
    stderrTail: "",
    error: null,
  };
  const fail = (code: string, message: string) => ({ ...res, error: { code, message } });
  const it = await loadItem(ops.db, itemId);
  res.item = it.row.name;
  const copy = machineScriptCopy(op, s.when);
  let siteId: string;
  let instanceId: string | undefined;
  if (copy === "drill") {
    if (it.drill === null) {
      return fail(
        "MACHINE_SCRIPT_NO_COPY",
        `${it.row.name} has no drill copy to run in (is the item's test failover cleaned up already?)`,
      );
    }
    siteId = it.drill.site;
    instanceId = it.drill.instanceId;
  } else if (it.failover !== null && ["failed-over", "failover-committed"].includes(it.state.phase)) {
    siteId = it.failover.site;
    instanceId = it.failover.instanceId;
  } else {
    siteId = it.state.source;
    instanceId = (await instancesAt(ops, it.row.machine_id, siteId, ["production"]))[0]?.id;
  }
  const site = ops.sites.get(siteId);
  res.site = site?.name ?? siteId;
  if (instanceId === undefined || site === undefined) {
    return fail(
      "MACHINE_SCRIPT_NO_COPY",
      `${it.row.name} has no ${copy} instance this vault runs at ${res.site}; a machine-script runs only in machines a compute provider of the vault started`,
    );
  }
  res.instance = instanceId;
  if (site.kind === "remote") {
    // the script runs on this host in the instance's folder: a remote appliance's machines are elsewhere
    return fail(
      "MACHINE_SCRIPT_REMOTE_SITE",
      `${it.row.name} runs at ${site.name}, whose appliance is a separate process; machine-scripts run only in machines of in-process appliances for now (use a vault script)`,
    );
  }
  const info = await site.provider.status(instanceId);
  if (info === null || info.state !== "running") {
    return fail(
      "MACHINE_SCRIPT_MACHINE_NOT_RUNNING",
      `the ${copy} copy of ${it.row.name} (instance ${instanceId} at ${site.name}) is ${info === null ? "gone" : info.state}; start it, or leave the action out`,
    );
  }
  const machineEnv: Record<string, string> = {
    ...baseEnv(),
    ...env,
    SWITCHBACK_ITEM: it.row.name,
    SWITCHBACK_SITE: site.name,
    SWITCHBACK_MACHINE_DIR: info.folder,
    SWITCHBACK_DISKS: info.disks.join(":"),
    SWITCHBACK_INSTANCE: info.id,
  };
  info.disks.forEach((d, n) => {
    machineEnv[`SWITCHBACK_DISK_${n}`] = d;
  });
  const r: CommandResult = await runCommand(a.run, {
    env: machineEnv,
    cwd: info.folder,
    timeoutMs: a.timeoutSeconds * 1000,
    signal: c.signal,
    marker: path.join(tmpdir(), `switchback-${c.jobId}-${c.step}-${info.id}.pgid`),
  });
  res.exitCode = r.exitCode;
  res.stderrTail = r.stderrTail;
  if (r.exitCode === 0) return res;
  return fail(
    r.timedOut ? "MACHINE_SCRIPT_TIMEOUT" : "MACHINE_SCRIPT_FAILED",
    `the script in ${it.row.name} (instance ${instanceId} at ${site.name}) ${howItEnded(r, a.timeoutSeconds)}: ${stderrForSentence(r)}`,
  );
}

// ---- summary ----

async function summarize(op: PlanOperation, c: Ctx): Promise<unknown> {
  const machines: MachineResult[] = [];
  let actionFailures = 0;
  for (const [name, out] of Object.entries(c.outputs)) {
    const o = out as { machines?: unknown; failures?: number } | null;
    if (name.endsWith("-items") && Array.isArray(o?.machines))
      machines.push(...(o.machines as MachineResult[]));
    else if (typeof o?.failures === "number") actionFailures += o.failures;
  }
  const failed = machines.filter((m) => m.state !== "succeeded");
  const line = `plan ${c.params.plan.name} ${op}: ${machines.length - failed.length} of ${machines.length} machines succeeded${actionFailures > 0 ? `; ${actionFailures} action failure${actionFailures === 1 ? "" : "s"}` : ""}`;
  c.log(failed.length > 0 || actionFailures > 0 ? "warn" : "info", line);
  return {
    operation: op,
    machines: machines.length,
    succeeded: machines.length - failed.length,
    failed: failed.map((m) => ({ item: m.item, group: m.group, state: m.state, error: m.error })),
    actionFailures,
  };
}

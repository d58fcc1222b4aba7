// A plan's run, group by group: for each group the actions before its machines, the machines with
// their state and their own operation's job, the actions after; the summary once it ends. The page
// follows the run with useJobFollow (lib/job-follow.ts, as the job page) and shows the manual action
// it waits at with the shared WaitingPanel (ui/waiting.tsx). The run is shown with the definition the
// job was started with, not the plan's current one.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, type Job, ok } from "../api/client.ts";
import { ago, duration, time } from "../lib/format.ts";
import { type FollowedJob, isFinished, type Step } from "../lib/job-follow.ts";
import { useLive } from "../lib/live.ts";
import {
  ACTION_KIND_WORDS,
  childJobs,
  isActionKind,
  isPlanOperation,
  machinesOf,
  PLAN_OPERATION_WORDS,
  type PlannedAction,
  type PlanOperation,
  runOrder,
  waitingAt,
} from "../lib/plan-edit.ts";
import { href } from "../lib/router.ts";
import { jobTone, phaseWords } from "../lib/words.ts";
import { HealthBadge } from "../ui/health.tsx";
import { Badge, Dialog, ErrorBanner, Loading, Progress, type Tone } from "../ui/kit.tsx";
import { took, useNow } from "./job-common.tsx";

export interface StoredAction {
  kind: string;
  run?: string;
  message?: string;
  timeoutSeconds?: number;
  on: string[];
}

export interface RunDefinition {
  continueOnError: boolean;
  groups: { items: string[]; pre: StoredAction[]; post: StoredAction[]; continueOnError?: boolean }[];
}

export function operationOfKind(kind: string): PlanOperation | null {
  const op = kind.startsWith("plan-") ? kind.slice(5) : kind;
  return isPlanOperation(op) ? op : null;
}

function definitionOf(job: Job): RunDefinition | null {
  const d = (job.params as { definition?: RunDefinition } | null)?.definition;
  return d !== undefined && Array.isArray(d.groups) ? d : null;
}

function stepTone(state: string): Tone {
  if (state === "succeeded") return "ok";
  if (state === "failed") return "bad";
  if (state === "waiting") return "warn";
  if (state === "running") return "info";
  return "muted";
}

const STEP_WORDS: Record<string, string> = {
  pending: "not started",
  running: "running",
  waiting: "waiting",
  succeeded: "done",
  failed: "failed",
  skipped: "skipped",
};

function StepBadge(p: { step: Step | undefined; waiting: boolean }) {
  if (p.waiting) return <Badge tone="warn">waiting for you</Badge>;
  const st = p.step?.state ?? "pending";
  return <Badge tone={stepTone(st)}>{STEP_WORDS[st] ?? st}</Badge>;
}

/** One line on what an action does, for the run, the definition and the dialogs. */
export function ActionText(p: { a: StoredAction }) {
  const a = p.a;
  const kind = isActionKind(a.kind) ? ACTION_KIND_WORDS[a.kind] : a.kind;
  return (
    <span class="plan-action-text">
      <span class="plan-action-kind">{kind}</span>{" "}
      {a.kind === "manual" ? <span>{a.message}</span> : <code class="plan-cmd">{a.run}</code>}
    </span>
  );
}

/** An action before or after a group's machines: what it does, how it ended, how long it took. */
function ActionRow(p: {
  a: PlannedAction<StoredAction>;
  when: "Before" | "After";
  step: Step | undefined;
  now: number;
  waiting: boolean;
}) {
  return (
    <li>
      <span class="plan-when">{p.when}</span>
      <span class="step-name">
        <ActionText a={p.a.action} />
      </span>
      <ActionOutcome step={p.step} />
      <span class="muted nowrap">{stepTook(p.step, p.now)}</span>
      <StepBadge step={p.step} waiting={p.waiting} />
    </li>
  );
}

function ActionOutcome(p: { step: Step | undefined }) {
  const o = p.step?.output as {
    kind?: string;
    exitCode?: number | null;
    stderrTail?: string;
    confirmedBy?: string | null;
    error?: { code: string; message: string };
    machines?: { item: string; error: { code: string; message: string } | null }[];
  } | null;
  if (o === null || o === undefined) return null;
  if (o.kind === "manual") {
    return <span class="muted">confirmed{o.confirmedBy ? ` by ${o.confirmedBy}` : ""}</span>;
  }
  if (o.kind === "script") {
    return (
      <span class="muted">
        exit {o.exitCode ?? "—"}
        {o.error !== undefined && (
          <>
            {" "}
            · <code>{o.error.code}</code>
          </>
        )}
      </span>
    );
  }
  if (o.kind === "machine-script" && Array.isArray(o.machines)) {
    const bad = o.machines.filter((m) => m.error !== null);
    return (
      <span class="muted">
        {o.machines.length - bad.length} of {o.machines.length} machines done
        {bad.map((m) => (
          <span key={m.item}>
            {" "}
            · {m.item}: <code>{m.error?.code}</code>
          </span>
        ))}
      </span>
    );
  }
  return null;
}

interface ItemRow {
  id: string;
  name: string;
  view: ItemView | undefined;
  job: Job | undefined;
  jobId: string | null;
  outcome: ReturnType<typeof machinesOf>[number] | undefined;
}

function MachineRows(p: { rows: ItemRow[] }) {
  return (
    <table class="plan-machines" aria-label="Machines">
      <thead>
        <tr>
          <th scope="col">Machine</th>
          <th scope="col">Health</th>
          <th scope="col">State</th>
          <th scope="col">Its job</th>
        </tr>
      </thead>
      <tbody>
        {p.rows.map((r) => {
          const state = r.outcome?.state ?? r.job?.state ?? null;
          const err = r.outcome?.error ?? r.job?.error ?? null;
          return (
            <tr key={r.id}>
              <td>
                <a href={href(`/items/${encodeURIComponent(r.name)}`)}>{r.name}</a>
              </td>
              <td>
                <HealthBadge item={r.view} />
              </td>
              <td>
                {r.view !== undefined ? phaseWords(r.view.phase) : <span class="muted">unknown</span>}
                {r.view?.drill != null && <span class="muted"> · drill copy running</span>}
              </td>
              <td class="plan-machine-job">
                {state === null ? (
                  <span class="muted">not started</span>
                ) : (
                  <>
                    <Badge tone={state === "refused" ? "bad" : jobTone(state)}>{state}</Badge>{" "}
                    {r.jobId !== null && (
                      <a href={href(`/jobs/${r.jobId}`)}>{r.job?.kind ?? r.outcome?.state ?? "job"}</a>
                    )}
                    {r.job !== undefined && !isFinished(r.job.state) && (
                      <Progress value={r.job.progress * 100} label={`${r.name}: ${r.job.kind}`} />
                    )}
                    {err !== null && (
                      <div class="plan-error">
                        <code>{err.code}</code> {err.message}
                      </div>
                    )}
                  </>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function groupState(steps: (Step | undefined)[], waiting: boolean): { tone: Tone; word: string } {
  if (waiting) return { tone: "warn", word: "waiting for you" };
  const states = steps.map((s) => s?.state ?? "pending");
  if (states.includes("failed")) return { tone: "bad", word: "failed" };
  if (states.includes("running") || states.includes("waiting")) return { tone: "info", word: "running" };
  if (states.every((s) => s === "succeeded" || s === "skipped")) return { tone: "ok", word: "done" };
  if (states.every((s) => s === "pending")) return { tone: "muted", word: "waiting its turn" };
  return { tone: "info", word: "under way" };
}

function RunControls(p: { job: Job; onChanged: () => void }) {
  const [ask, setAsk] = useState<"cancel" | "retry" | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  // offered only when the vault would cancel: the run is queued or waits at a manual action
  const canCancel = p.job.cancellable;
  const canRetry = p.job.state === "failed";
  if (!canCancel && !canRetry) return null;
  const act = async (verb: "cancel" | "retry") => {
    setBusy(true);
    setError(null);
    try {
      const path = `/v1/jobs/{job}/${verb}` as "/v1/jobs/{job}/cancel";
      await ok(client.POST(path, { params: { path: { job: p.job.id } } }));
      setAsk(null);
      p.onChanged();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      {canCancel && (
        <button type="button" onClick={() => setAsk("cancel")}>
          Cancel the run
        </button>
      )}
      {canRetry && (
        <button type="button" onClick={() => setAsk("retry")}>
          Retry from the failed step
        </button>
      )}
      {ask !== null && (
        <Dialog
          title={ask === "cancel" ? "Cancel this run?" : "Retry this run?"}
          onClose={() => setAsk(null)}
          footer={
            <>
              <button type="button" onClick={() => setAsk(null)}>
                Keep it as it is
              </button>
              <button
                type="button"
                class={ask === "cancel" ? "danger" : "primary"}
                disabled={busy}
                onClick={() => act(ask)}
              >
                {ask === "cancel" ? "Cancel the run" : "Retry"}
              </button>
            </>
          }
        >
          {ask === "cancel" ? (
            <p>
              The run stops where it is: the groups it has not reached are not touched, and what the groups
              before did stays as it is. The vault refuses if the run has moved on in the meantime (a run can
              be cancelled only while it waits or has not started).
            </p>
          ) : (
            <p>
              The run starts again at the step that failed. Machines that succeeded are not run again; those
              that failed or were refused are tried again.
            </p>
          )}
          <ErrorBanner error={error} prefix="Refused:" />
        </Dialog>
      )}
    </>
  );
}

const LINK_WORDS: Record<FollowedJob["link"]["kind"], string> = {
  connecting: "loading",
  live: "following live",
  retrying: "reconnecting…",
  ended: "finished",
};

/** How long a step took, or has taken so far; nothing before it starts. */
function stepTook(step: Step | undefined, now: number): string {
  if (step === undefined || step.startedAt === null) return "";
  const t = took(step, now);
  return step.finishedAt === null && step.durationMs === null ? `${t} so far` : t;
}

/** The item jobs of a run whose progress is shown (a run of more machines shows their states only). */
const MAX_CHILDREN = 200;
const CHILD_POLL_MS = 2000;
/** item jobs read at once */
const CHILD_BATCH = 8;

/**
 * The item jobs a run started, by id. Each is read until it is seen finished, then kept as it is:
 * while the run runs, only the jobs still running are read again (every 2 s, while the page is seen).
 */
function useChildJobs(ids: readonly string[], running: boolean): ReadonlyMap<string, Job> {
  const [jobs, setJobs] = useState<ReadonlyMap<string, Job>>(() => new Map());
  const known = useRef(jobs);
  known.current = jobs;
  const key = ids.join(",");
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      if (document.visibilityState === "visible") {
        const want = ids.filter((id) => {
          const j = known.current.get(id);
          return j === undefined || !isFinished(j.state);
        });
        const got = new Map<string, Job>();
        for (let i = 0; i < want.length && !stopped; i += CHILD_BATCH) {
          await Promise.all(
            want.slice(i, i + CHILD_BATCH).map(async (id) => {
              try {
                got.set(id, await ok(client.GET("/v1/jobs/{job}", { params: { path: { job: id } } })));
              } catch {
                // a job that cannot be read shows without its progress
              }
            }),
          );
        }
        if (stopped) return;
        if (got.size > 0) setJobs((m) => new Map([...m, ...got]));
      }
      // once the run has ended, one last read brings every job to its end
      if (!stopped && running) timer = setTimeout(load, CHILD_POLL_MS);
    };
    void load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [key, running]);
  return jobs;
}

/** The run of a plan, group by group. */
export function RunView(p: {
  plan: string;
  followed: FollowedJob;
  items: ReadonlyMap<string, ItemView>;
  onChanged: () => void;
}) {
  const { job, logs } = p.followed;
  const children = useMemo(() => childJobs(logs), [logs]);
  const running = job !== undefined && !isFinished(job.state);
  const now = useNow(running);
  const childJobsById = useChildJobs([...children.values()].slice(0, MAX_CHILDREN), running);
  if (job === undefined) {
    return p.followed.error !== null ? <ErrorBanner error={p.followed.error} /> : <Loading what="the run" />;
  }
  const op = operationOfKind(job.kind);
  const def = definitionOf(job);
  if (op === null || def === null) {
    return (
      <p class="muted">
        Job <a href={href(`/jobs/${job.id}`)}>{job.id}</a> is not a plan run this portal can show.
      </p>
    );
  }
  const steps = new Map((job.steps ?? []).map((s) => [s.name, s]));
  const waiting = waitingAt(job);
  const stages = runOrder(def, op);
  const done = (job.steps ?? []).filter((s) => s.state === "succeeded" || s.state === "skipped").length;
  const total = (job.steps ?? []).length;
  const summary = steps.get("summary")?.output as {
    machines?: number;
    succeeded?: number;
    actionFailures?: number;
  } | null;
  const nameOf = (id: string) => p.items.get(id)?.name ?? id;
  const rowsFor = (g: number, stepName: string): ItemRow[] => {
    const outcomes = machinesOf(steps.get(stepName)?.output);
    return (def.groups[g]?.items ?? []).map((id) => {
      const name = nameOf(id);
      const outcome = outcomes.find((m) => m.itemId === id);
      const jobId = outcome?.job ?? children.get(name) ?? null;
      return {
        id,
        name,
        view: p.items.get(id),
        job: jobId !== null ? childJobsById.get(jobId) : undefined,
        jobId,
        outcome,
      };
    });
  };
  return (
    <div class="plan-run">
      <div class="plan-run-head">
        <div>
          <h2>
            {PLAN_OPERATION_WORDS[op]}{" "}
            <Badge tone={waiting !== null ? "warn" : jobTone(job.state)}>{job.state}</Badge>
          </h2>
          <p class="muted">
            Started {time(job.startedAt ?? job.createdAt)} ({ago(job.startedAt ?? job.createdAt)})
            {job.createdBy !== null ? ` by ${job.createdBy}` : ""}
            {job.durationMs !== null ? ` · took ${duration(job.durationMs / 1000)}` : ""} · {done} of {total}{" "}
            steps done · {LINK_WORDS[p.followed.link.kind]}
          </p>
        </div>
        <div class="actions">
          <RunControls job={job} onChanged={p.onChanged} />
          <a class="button" href={href(`/jobs/${job.id}`)}>
            Open the job
          </a>
        </div>
      </div>
      {running && <Progress value={total === 0 ? 0 : (done / total) * 100} label="steps of the run done" />}
      {job.error !== null && (
        <div class="banner banner-bad" role="alert">
          <code class="code">{job.error.code}</code> {job.error.message}
        </div>
      )}
      <ol class="plan-stages">
        {stages.map((stage) => {
          const itemsStep = steps.get(stage.itemsStep);
          return stage.groups.map((g) => {
            const pre = stage.pre.filter((a) => a.group === g);
            const post = stage.post.filter((a) => a.group === g);
            const mine = [
              ...pre.map((a) => steps.get(a.step)),
              itemsStep,
              ...post.map((a) => steps.get(a.step)),
            ];
            const gWaiting = waiting !== null && waiting.group === g + 1;
            const gs = groupState(mine, gWaiting);
            return (
              <li key={`${stage.itemsStep}-${g}`} class={`plan-stage plan-stage-${gs.tone}`}>
                <div class="plan-stage-head">
                  <h3>Group {g + 1}</h3>
                  <Badge tone={gs.tone}>{gs.word}</Badge>
                  {stage.groups.length > 1 && <span class="muted">all groups at once</span>}
                </div>
                <ol class="steps plan-steps">
                  {pre.map((a) => (
                    <ActionRow
                      key={a.step}
                      a={a}
                      when="Before"
                      step={steps.get(a.step)}
                      now={now}
                      waiting={waiting?.step === a.step}
                    />
                  ))}
                  <li class="plan-step-items">
                    <span class="plan-when">Machines</span>
                    <div class="step-name">
                      <MachineRows rows={rowsFor(g, stage.itemsStep)} />
                    </div>
                    <span class="muted nowrap">{stepTook(itemsStep, now)}</span>
                    <StepBadge step={itemsStep} waiting={false} />
                  </li>
                  {post.map((a) => (
                    <ActionRow
                      key={a.step}
                      a={a}
                      when="After"
                      step={steps.get(a.step)}
                      now={now}
                      waiting={waiting?.step === a.step}
                    />
                  ))}
                </ol>
              </li>
            );
          });
        })}
      </ol>
      {summary !== null && summary !== undefined && typeof summary.machines === "number" && (
        <p
          class={
            summary.succeeded === summary.machines && !summary.actionFailures
              ? "plan-summary"
              : "plan-summary plan-summary-bad"
          }
        >
          {summary.succeeded} of {summary.machines} machines succeeded
          {summary.actionFailures ? `; ${summary.actionFailures} action failure(s)` : ""}.
        </p>
      )}
    </div>
  );
}

/** The plan's earlier runs, newest first. */
export function RunHistory(p: {
  planId: string;
  current: string | null;
  /** the followed run's state: the list is read again when it changes */
  currentState: string | null;
  onPick: (jobId: string) => void;
}) {
  const runs = useLive(
    () => ok(client.GET("/v1/jobs", { params: { query: { plan: p.planId, limit: 20 } } })),
    10_000,
    [p.planId, p.current, p.currentState],
  );
  if (runs.data === undefined) return runs.error !== null ? <ErrorBanner error={runs.error} /> : null;
  if (runs.data.length === 0) return null;
  return (
    <section class="panel" aria-labelledby="plan-history-h">
      <div class="panel-head">
        <h2 id="plan-history-h">Runs of this plan</h2>
      </div>
      <div class="table-wrap">
        <table aria-label="Runs of this plan">
          <thead>
            <tr>
              <th scope="col">Operation</th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
              <th scope="col" class="num">
                Took
              </th>
              <th scope="col">By</th>
              <th scope="col">
                <span class="sr-only">Show</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {runs.data.map((j) => {
              const op = operationOfKind(j.kind);
              return (
                <tr key={j.id} aria-current={j.id === p.current ? "true" : undefined}>
                  <td>
                    <a href={href(`/jobs/${j.id}`)}>{op !== null ? PLAN_OPERATION_WORDS[op] : j.kind}</a>
                  </td>
                  <td>
                    <Badge tone={jobTone(j.state)}>{j.state}</Badge>
                    {j.error !== null && <span class="muted"> {j.error.code}</span>}
                  </td>
                  <td>{time(j.startedAt ?? j.createdAt)}</td>
                  <td class="num">{j.durationMs === null ? "—" : duration(j.durationMs / 1000)}</td>
                  <td>{j.createdBy ?? "—"}</td>
                  <td>
                    {j.id === p.current ? (
                      <span class="muted">shown above</span>
                    ) : (
                      <button type="button" class="link-button" onClick={() => p.onPick(j.id)}>
                        Show group by group
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

// A plan's run, group by group: for each group the actions before its machines, the machines with
// their state and their own operation's job, the actions after; the manual action the run waits at as
// a panel that cannot be missed, with Confirm; the summary once it ends. The run is followed live
// (server-sent events from /v1/jobs/{id}/events, polling when they fail), with the definition the job
// was started with, not the plan's current one.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, type Job, type JobLog, ok } from "../api/client.ts";
import { readEvents } from "../api/sse.ts";
import { ago, duration, time } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import {
  ACTION_KIND_WORDS,
  childJobs,
  isActionKind,
  isPlanOperation,
  machinesOf,
  PLAN_OPERATION_WORDS,
  type PlanOperation,
  runOrder,
  waitingAt,
} from "../lib/plan-edit.ts";
import { href } from "../lib/router.ts";
import { health, jobTone, phaseWords } from "../lib/words.ts";
import { Badge, Dialog, ErrorBanner, Loading, Progress, type Tone } from "../ui/kit.tsx";

type Step = NonNullable<Job["steps"]>[number];

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

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

export function isFinishedState(state: string): boolean {
  return FINISHED.has(state);
}

export function operationOfKind(kind: string): PlanOperation | null {
  const op = kind.startsWith("plan-") ? kind.slice(5) : kind;
  return isPlanOperation(op) ? op : null;
}

function definitionOf(job: Job): RunDefinition | null {
  const d = (job.params as { definition?: RunDefinition } | null)?.definition;
  return d !== undefined && Array.isArray(d.groups) ? d : null;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      r();
    });
  });

export interface FollowedJob {
  job: Job | null;
  logs: JobLog[];
  error: ApiError | null;
  /** "live" while the event stream is open, "polling" when it failed, "ended" once the job finished */
  mode: "loading" | "live" | "polling" | "ended";
}

/**
 * Follows a job: its steps and log lines now, then every change as the vault sends it, until it
 * finishes (`onFinished` is called then, and when it had finished already). Reconnects after a lost
 * stream, reading what it missed from the job and its logs.
 */
export function useFollowedJob(jobId: string | null, onFinished: () => void): FollowedJob {
  const [s, setS] = useState<FollowedJob>({ job: null, logs: [], error: null, mode: "loading" });
  const finished = useRef(onFinished);
  finished.current = onFinished;
  useEffect(() => {
    setS({ job: null, logs: [], error: null, mode: "loading" });
    if (jobId === null) return;
    const ac = new AbortController();
    let lastLog = 0;
    const catchUp = async (): Promise<Job> => {
      const [job, logs] = await Promise.all([
        ok(client.GET("/v1/jobs/{job}", { params: { path: { job: jobId } } })),
        ok(
          client.GET("/v1/jobs/{job}/logs", {
            params: { path: { job: jobId }, query: { after: lastLog } },
          }),
        ),
      ]);
      if (ac.signal.aborted) return job;
      lastLog = logs.reduce((m, l) => Math.max(m, l.id), lastLog);
      setS((x) => ({ ...x, job, logs: [...x.logs, ...logs], error: null }));
      return job;
    };
    const onEvent = (ev: unknown) => {
      const e = ev as
        | { type: "job"; job: Omit<Job, "steps"> }
        | { type: "step"; step: Step }
        | { type: "log"; log: JobLog };
      if (e.type === "job") {
        setS((x) => ({ ...x, job: { ...e.job, steps: x.job?.steps ?? [] } as Job }));
      } else if (e.type === "step") {
        setS((x) => {
          if (x.job === null) return x;
          const steps = [...(x.job.steps ?? [])];
          const i = steps.findIndex((st) => st.idx === e.step.idx);
          if (i >= 0) steps[i] = e.step;
          else steps.push(e.step);
          return { ...x, job: { ...x.job, steps } };
        });
      } else if (e.type === "log") {
        if (e.log.id <= lastLog) return;
        lastLog = e.log.id;
        setS((x) => ({ ...x, logs: [...x.logs, e.log] }));
      }
    };
    void (async () => {
      while (!ac.signal.aborted) {
        let job: Job;
        try {
          job = await catchUp();
        } catch (err) {
          setS((x) => ({ ...x, error: err as ApiError, mode: "polling" }));
          await sleep(3000, ac.signal);
          continue;
        }
        if (isFinishedState(job.state)) {
          setS((x) => ({ ...x, mode: "ended" }));
          finished.current();
          return;
        }
        try {
          setS((x) => ({ ...x, mode: "live" }));
          await readEvents(`/v1/jobs/${encodeURIComponent(jobId)}/events`, onEvent, ac.signal);
        } catch {
          if (ac.signal.aborted) return;
          setS((x) => ({ ...x, mode: "polling" }));
          await sleep(3000, ac.signal);
        }
      }
    })();
    return () => ac.abort();
  }, [jobId]);
  return s;
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

function took(step: Step | undefined): string {
  if (step === undefined || step.startedAt === null) return "";
  if (step.durationMs !== null) return duration(step.durationMs / 1000);
  return `${duration((Date.now() - Date.parse(step.startedAt)) / 1000)} so far`;
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
          const h = r.view !== undefined ? health(r.view) : null;
          const state = r.outcome?.state ?? r.job?.state ?? null;
          const err = r.outcome?.error ?? r.job?.error ?? null;
          return (
            <tr key={r.id}>
              <td>
                <a href={href(`/items/${encodeURIComponent(r.name)}`)}>{r.name}</a>
              </td>
              <td>
                {h !== null ? (
                  <Badge tone={h.tone} title={h.why}>
                    {h.word}
                  </Badge>
                ) : (
                  <span class="muted">—</span>
                )}
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
                    {r.job !== undefined && !isFinishedState(r.job.state) && (
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

/** The "Waiting for you" panel: what to do, and Confirm once it is done. */
export function WaitingPanel(p: {
  plan: string;
  waiting: { step: string; group: number; message: string };
  onConfirmed: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const where = /-pre-/.test(p.waiting.step) ? "before" : "after";
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      await ok(
        client.POST("/v1/plans/{plan}/confirm", {
          params: { path: { plan: p.plan } },
          body: { step: p.waiting.step },
        }),
      );
      p.onConfirmed();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="plan-waiting" aria-labelledby="plan-waiting-h">
      <h2 id="plan-waiting-h">Waiting for you: {p.waiting.message || "a manual step"}</h2>
      <p class="muted">
        Group {p.waiting.group}, {where} its machines. The run stays here until someone confirms that this is
        done; then it goes on with the rest of the plan.
      </p>
      <ErrorBanner error={error} prefix="Not confirmed:" />
      <button type="button" class="primary" disabled={busy} onClick={confirm}>
        {busy ? "Confirming…" : "Done: confirm and go on"}
      </button>
    </section>
  );
}

function RunControls(p: { job: Job; onChanged: () => void }) {
  const [ask, setAsk] = useState<"cancel" | "retry" | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const canCancel = !isFinishedState(p.job.state);
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
              The plan stops where it is. Machines whose own operation already began go on to its end (a
              failover that has begun cannot be cancelled); groups not reached are not touched. The vault
              refuses when the run is past its point of no return.
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

/** The run of a plan, group by group. */
export function RunView(p: {
  plan: string;
  followed: FollowedJob;
  items: ReadonlyMap<string, ItemView>;
  onChanged: () => void;
}) {
  const { job, logs } = p.followed;
  const children = useMemo(() => childJobs(logs), [logs]);
  const running = job !== null && !isFinishedState(job.state);
  const childIds = [...children.values()].slice(0, 200);
  const childLive = useLive(
    async () => {
      const out = new Map<string, Job>();
      await Promise.all(
        childIds.map(async (id) => {
          try {
            out.set(id, await ok(client.GET("/v1/jobs/{job}", { params: { path: { job: id } } })));
          } catch {
            // a job that cannot be read shows without its progress
          }
        }),
      );
      return out;
    },
    running ? 2000 : 0,
    [childIds.join(","), running],
  );
  if (job === null) {
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
        job: jobId !== null ? childLive.data?.get(jobId) : undefined,
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
            steps done ·{" "}
            {p.followed.mode === "live"
              ? "following live"
              : p.followed.mode === "polling"
                ? "reconnecting…"
                : p.followed.mode === "ended"
                  ? "finished"
                  : "loading"}
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
                    <li key={a.step}>
                      <span class="plan-when">Before</span>
                      <span class="step-name">
                        <ActionText a={a.action} />
                      </span>
                      <ActionOutcome step={steps.get(a.step)} />
                      <span class="muted nowrap">{took(steps.get(a.step))}</span>
                      <StepBadge step={steps.get(a.step)} waiting={waiting?.step === a.step} />
                    </li>
                  ))}
                  <li class="plan-step-items">
                    <span class="plan-when">Machines</span>
                    <div class="step-name">
                      <MachineRows rows={rowsFor(g, stage.itemsStep)} />
                    </div>
                    <span class="muted nowrap">{took(itemsStep)}</span>
                    <StepBadge step={itemsStep} waiting={false} />
                  </li>
                  {post.map((a) => (
                    <li key={a.step}>
                      <span class="plan-when">After</span>
                      <span class="step-name">
                        <ActionText a={a.action} />
                      </span>
                      <ActionOutcome step={steps.get(a.step)} />
                      <span class="muted nowrap">{took(steps.get(a.step))}</span>
                      <StepBadge step={steps.get(a.step)} waiting={waiting?.step === a.step} />
                    </li>
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

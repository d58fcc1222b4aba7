// One job, live: what it is and on what, who started it and when, its progress, its steps with their
// timings and outputs, its error, its logs, and what the operator can do (cancel, retry, confirm the
// manual action it waits for). Live through server-sent events; when the stream drops before the job
// ends, it reconnects with backoff and polls the job meanwhile, so nothing is missed.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { type ApiError, client, type Job, type JobLog, ok } from "../api/client.ts";
import { percent, time } from "../lib/format.ts";
import { type Link, useJobFollow } from "../lib/job-follow.ts";
import { useReadOnly } from "../lib/me.ts";
import { href } from "../lib/router.ts";
import { Badge, Dialog, Empty, ErrorBanner, KeyValues, Loading, Progress, type Tone } from "../ui/kit.tsx";
import { WaitingPanel, waitTarget } from "../ui/waiting.tsx";
import {
  isFinished,
  JobBadge,
  kindWords,
  LinkJobs,
  outputRows,
  StartedBy,
  type Step,
  StepOutput,
  Target,
  took,
  useNow,
  When,
} from "./job-common.tsx";

// ---- steps --------------------------------------------------------------------------------------

const STEP_LOOK: Record<string, { icon: string; tone: Tone; word: string }> = {
  pending: { icon: "○", tone: "muted", word: "Pending" },
  running: { icon: "◐", tone: "info", word: "Running" },
  waiting: { icon: "‖", tone: "warn", word: "Waiting for you" },
  succeeded: { icon: "✓", tone: "ok", word: "Done" },
  failed: { icon: "✕", tone: "bad", word: "Failed" },
  skipped: { icon: "–", tone: "muted", word: "Skipped" },
};

function stepWords(name: string): string {
  const s = name.replace(/-/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

interface PlanAction {
  kind: string;
  run?: string;
  message?: string;
}

interface PlanParams {
  definition?: { groups?: { items?: string[]; pre?: PlanAction[]; post?: PlanAction[] }[] };
}

function short(s: string, n = 56): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** A plan job's step in words: which group, before or after its machines, and what the action does. */
function planStepWords(job: Job, name: string): string | null {
  if (!job.kind.startsWith("plan-")) return null;
  const groups = (job.params as PlanParams | null)?.definition?.groups ?? [];
  const action = /^group-(\d+)-(pre|post)-(\d+)$/.exec(name);
  if (action !== null) {
    const a = groups[Number(action[1]) - 1]?.[action[2] as "pre" | "post"]?.[Number(action[3]) - 1];
    const where = `Group ${action[1]}, ${action[2] === "pre" ? "before" : "after"} its machines`;
    if (a === undefined) return where;
    if (a.kind === "manual") return `${where}: manual action “${short(a.message ?? "")}”`;
    return `${where}: ${a.kind} “${short(a.run ?? "")}”`;
  }
  const items = /^group-(\d+)-items$/.exec(name);
  if (items !== null) {
    const n = groups[Number(items[1]) - 1]?.items?.length;
    return `Group ${items[1]}: ${kindWords(job.kind.slice(5)).toLowerCase()} of its ${n ?? ""} machine${n === 1 ? "" : "s"}`;
  }
  if (name === "all-groups-items")
    return `All groups: ${kindWords(job.kind.slice(5)).toLowerCase()} of their machines`;
  if (name === "summary") return "Summary of every machine";
  return null;
}

function StepRow(p: { step: Step; job: Job; total: number; now: number }) {
  const s = p.step;
  const look = STEP_LOOK[s.state] ?? { icon: "?", tone: "muted" as Tone, word: s.state };
  // the job's progress is (steps done + this step's fraction) / steps
  const fraction = s.state === "running" ? Math.max(0, Math.min(1, p.job.progress * p.total - s.idx)) : 0;
  const hasOutput = s.output !== null && s.output !== undefined;
  return (
    <li class={`job-step job-step-${s.state}`}>
      <span class={`job-step-icon tone-${look.tone}`} aria-hidden="true">
        {look.icon}
      </span>
      <div class="job-step-main">
        <div class="job-step-line">
          <span class="job-step-name" title={s.name}>
            {planStepWords(p.job, s.name) ?? stepWords(s.name)}
          </span>
          <Badge tone={look.tone}>{look.word}</Badge>
          {s.attempts > 1 && (
            <Badge
              tone="muted"
              title={`this step ran ${s.attempts} times: again after a failed attempt, a wait or a vault restart`}
            >
              ran {s.attempts}×
            </Badge>
          )}
          {s.state === "running" && fraction > 0 && (
            <span class="job-step-progress">
              <Progress value={fraction * 100} label={`progress of step ${s.name}`} />
              <span class="muted">{percent(fraction * 100)}</span>
            </span>
          )}
          <span class="job-step-time muted">
            {s.startedAt !== null && <When iso={s.startedAt} />}
            {s.startedAt !== null &&
              (s.state === "running" || s.state === "waiting" || s.finishedAt !== null) &&
              " · "}
            <span class={s.state === "running" ? "job-ticking" : undefined}>
              {s.state === "running" ||
              s.state === "waiting" ||
              s.finishedAt !== null ||
              s.durationMs !== null
                ? took(s, p.now)
                : ""}
            </span>
          </span>
        </div>
        {hasOutput && s.state !== "pending" && <StepOutput output={s.output} />}
      </div>
    </li>
  );
}

function Steps(p: { job: Job; now: number }) {
  const steps = p.job.steps ?? [];
  if (steps.length === 0) return <p class="muted">This job has no steps yet.</p>;
  return (
    <ol class="steps job-steps" aria-label="Steps">
      {steps.map((s) => (
        <StepRow key={s.idx} step={s} job={p.job} total={steps.length} now={p.now} />
      ))}
    </ol>
  );
}

// ---- logs ---------------------------------------------------------------------------------------

const LEVELS = ["debug", "info", "warn", "error"] as const;
const LEVEL_FILTERS = [
  { id: "debug", label: "All levels" },
  { id: "info", label: "Info and above" },
  { id: "warn", label: "Warnings and errors" },
  { id: "error", label: "Errors only" },
] as const;

function rank(level: string): number {
  const i = LEVELS.indexOf(level as (typeof LEVELS)[number]);
  return i < 0 ? 1 : i;
}

function Logs(p: { logs: JobLog[]; steps: Step[] }) {
  const [min, setMin] = useState<string>("debug");
  const box = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const [behind, setBehind] = useState(false);
  const shown = p.logs.filter((l) => rank(l.level) >= rank(min));
  const counts = { warn: 0, error: 0 };
  for (const l of p.logs) if (l.level === "warn" || l.level === "error") counts[l.level]++;
  useLayoutEffect(() => {
    const el = box.current;
    if (el === null) return;
    if (atBottom.current) el.scrollTop = el.scrollHeight;
    else setBehind(true);
  }, [shown.length]);
  const onScroll = () => {
    const el = box.current;
    if (el === null) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    if (atBottom.current) setBehind(false);
  };
  const toBottom = () => {
    const el = box.current;
    if (el === null) return;
    el.scrollTop = el.scrollHeight;
    atBottom.current = true;
    setBehind(false);
  };
  return (
    <section class="panel" aria-labelledby="logs-h">
      <div class="panel-head">
        <h2 id="logs-h">Logs</h2>
        <span class="muted">
          {p.logs.length} line{p.logs.length === 1 ? "" : "s"}
          {counts.error > 0 ? ` · ${counts.error} error${counts.error === 1 ? "" : "s"}` : ""}
          {counts.warn > 0 ? ` · ${counts.warn} warning${counts.warn === 1 ? "" : "s"}` : ""}
        </span>
        <span class="more">
          <select aria-label="Log levels shown" value={min} onChange={(e) => setMin(e.currentTarget.value)}>
            {LEVEL_FILTERS.map((f) => (
              <option key={f.id} value={f.id}>
                {f.label}
              </option>
            ))}
          </select>
        </span>
      </div>
      {shown.length === 0 ? (
        <p class="muted">{p.logs.length === 0 ? "No log line yet." : "No line at these levels."}</p>
      ) : (
        <div class="job-logs-wrap">
          <div
            class="logs job-logs"
            ref={box}
            onScroll={onScroll}
            role="log"
            aria-live="off"
            // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable by keyboard
            tabIndex={0}
            aria-label="Log lines, oldest first"
          >
            {shown.map((l) => (
              <div key={l.id} class={`job-log log-${l.level}`}>
                <span class="job-log-at">{time(l.at)}</span>{" "}
                <span class="job-log-level">{l.level.toUpperCase().padEnd(5)}</span>{" "}
                {l.step !== null && (
                  <span class="job-log-step">[{p.steps[l.step]?.name ?? `step ${l.step}`}] </span>
                )}
                <LinkJobs text={l.message} />
                {l.data !== null && l.data !== undefined && Object.keys(l.data as object).length > 0 && (
                  <span class="job-log-data"> {short(JSON.stringify(l.data), 160)}</span>
                )}
              </div>
            ))}
          </div>
          {behind && (
            <button type="button" class="job-logs-latest" onClick={toBottom}>
              ↓ New lines: jump to the latest
            </button>
          )}
        </div>
      )}
    </section>
  );
}

// ---- actions ------------------------------------------------------------------------------------

function CancelDialog(p: { job: Job; onClose: () => void; onDone: (j: Job) => void }) {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<ApiError | null>(null);
  const go = async () => {
    setBusy(true);
    setErr(null);
    try {
      p.onDone(await ok(client.POST("/v1/jobs/{job}/cancel", { params: { path: { job: p.job.id } } })));
    } catch (e) {
      setErr(e as ApiError);
      setBusy(false);
    }
  };
  return (
    <Dialog
      title={`Cancel this ${kindWords(p.job.kind).toLowerCase()} job?`}
      onClose={p.onClose}
      footer={
        <>
          <button type="button" onClick={p.onClose}>
            Keep it
          </button>
          <button type="button" class="danger" onClick={go} disabled={busy} aria-busy={busy}>
            {busy ? "Cancelling…" : "Cancel the job"}
          </button>
        </>
      }
    >
      <p>
        The vault cancels a job only while it is queued or waits, and never once a step that cannot be undone
        has run (a failover's stop of replication is its point of no return). Steps not yet run are skipped;
        what the steps before did stays as it is.
      </p>
      <ErrorBanner error={err} prefix="The vault refused:" />
    </Dialog>
  );
}

/** What the step a job waits at asks for, in its own words (from the log line that parked the job). */
function waitReason(logs: readonly JobLog[], name: string): string | undefined {
  const marker = `waiting for signal "${name}": `;
  const line = [...logs].reverse().find((l) => l.message.startsWith(marker));
  return line?.message.slice(marker.length).replace(/ \(confirm with '[^']*'\)$/, "");
}

function LinkNote(p: { link: Link; now: number }) {
  const l = p.link;
  if (l.kind === "live") {
    return (
      <span class="job-link job-link-live">
        <span class="job-live-dot" aria-hidden="true" /> live
      </span>
    );
  }
  if (l.kind === "retrying") {
    const s = Math.max(0, Math.ceil((l.at - p.now) / 1000));
    return (
      <span class="job-link job-link-retrying">
        connection lost · polling, reconnecting{s > 0 ? ` in ${s} s` : "…"}
      </span>
    );
  }
  if (l.kind === "connecting") return <span class="job-link muted">connecting…</span>;
  return null;
}

/** The job's parameters (a plan job's definition is its steps, and its plan is the target). */
function Params(p: { job: Job }) {
  const params = p.job.params;
  if (params === null || typeof params !== "object") return null;
  const shown = Object.fromEntries(
    Object.entries(params as Record<string, unknown>).filter(
      ([k]) => !(p.job.kind.startsWith("plan-") && (k === "definition" || k === "plan")),
    ),
  );
  const rows = outputRows(shown);
  if (rows.length === 0) return null;
  return (
    <>
      <h3 class="job-params-h">Parameters</h3>
      <KeyValues rows={rows} />
    </>
  );
}

// ---- the page -----------------------------------------------------------------------------------

export function JobPage(p: { job: string }) {
  const readOnly = useReadOnly();
  const [session, setSession] = useState(0);
  const { job, logs, error, link, setJob } = useJobFollow(p.job, { session });
  const [cancelling, setCancelling] = useState(false);
  const [actionError, setActionError] = useState<ApiError | null>(null);
  const [retrying, setRetrying] = useState(false);
  const [announce, setAnnounce] = useState("");
  const lastState = useRef<string | null>(null);
  const running = job !== undefined && !isFinished(job.state);
  const now = useNow(running || link.kind === "retrying");
  useEffect(() => {
    if (job === undefined) return;
    const key = `${job.state}/${job.waitingFor ?? ""}`;
    if (lastState.current !== null && lastState.current !== key) {
      setAnnounce(
        job.state === "waiting" && job.waitingFor !== null
          ? `The job waits for your confirmation.`
          : `The job is now ${job.state}${job.error !== null ? `: ${job.error.code}` : ""}.`,
      );
    }
    lastState.current = key;
  }, [job?.state, job?.waitingFor]);
  useEffect(() => {
    lastState.current = null;
    setActionError(null);
  }, [p.job]);

  if (job === undefined) {
    if (error !== null && (error.status === 404 || error.status === 400)) {
      return (
        <Empty title={`There is no job ${p.job}`} action={<a href="#/jobs">Back to the jobs</a>}>
          <p>
            <code>{error.code}</code> {error.message}
          </p>
        </Empty>
      );
    }
    return error !== null ? <ErrorBanner error={error} /> : <Loading what={`job ${p.job}`} />;
  }

  const retry = async () => {
    setRetrying(true);
    setActionError(null);
    try {
      const j = await ok(client.POST("/v1/jobs/{job}/retry", { params: { path: { job: job.id } } }));
      setJob(j);
      setSession((n) => n + 1);
    } catch (e) {
      setActionError(e as ApiError);
    } finally {
      setRetrying(false);
    }
  };
  const failedStep = job.steps?.find((s) => s.state === "failed");
  const wait = waitTarget(job);
  const waitingStep =
    job.state === "waiting"
      ? job.steps?.find((s) => s.state === "waiting" && s.startedAt !== null)
      : undefined;
  const stepCount = job.steps?.length ?? 0;
  const done = Math.min(job.step, stepCount);
  return (
    <>
      <div class="crumbs">
        <a href="#/jobs">Jobs</a> /
      </div>
      <div class="page-head">
        <div>
          <h1>
            {kindWords(job.kind)} <JobBadge state={job.state} />
          </h1>
          <p class="sub">
            <Target job={job} /> · started by <StartedBy by={job.createdBy} /> ·{" "}
            {job.startedAt !== null ? (
              <>
                started <When iso={job.startedAt} />
              </>
            ) : (
              <>
                queued <When iso={job.createdAt} />
              </>
            )}{" "}
            ·{" "}
            {job.startedAt === null ? (
              "not started yet"
            ) : waitingStep !== undefined ? (
              <>
                waiting for you for <span class="job-ticking">{took(waitingStep, now)}</span>
              </>
            ) : (
              <>
                {isFinished(job.state) ? "took" : "running for"}{" "}
                <span class="job-ticking">{took(job, now)}</span>
              </>
            )}
            {link.kind !== "ended" && (
              <>
                {" "}
                · <LinkNote link={link} now={now} />
              </>
            )}
          </p>
        </div>
        <fieldset class="actions">
          <legend class="sr-only">Job actions</legend>
          {job.state === "failed" && !readOnly && (
            <button
              type="button"
              class="primary"
              onClick={retry}
              disabled={retrying}
              aria-busy={retrying}
              aria-label="Retry this job from the step that failed"
            >
              {retrying ? "Retrying…" : "Retry"}
            </button>
          )}
          {job.cancellable && !readOnly && (
            <button type="button" onClick={() => setCancelling(true)}>
              Cancel job
            </button>
          )}
        </fieldset>
      </div>
      <div class="sr-only" aria-live="polite" role="status">
        {announce}
      </div>
      <ErrorBanner error={actionError} prefix="The vault refused:" />
      {link.kind === "retrying" && error !== null && (
        <ErrorBanner error={error} prefix="The vault does not answer:" />
      )}
      {wait !== null && readOnly && (
        <p class="banner banner-warn" role="status">
          This job waits for an operator to confirm a step; your token may only read, so an admin must confirm
          it.
        </p>
      )}
      {wait !== null && !readOnly && (
        <WaitingPanel
          key={job.waitingFor}
          class="panel job-waiting"
          target={wait}
          title="Waiting for you"
          onConfirmed={() => setActionError(null)}
        >
          <p class="job-waiting-reason">
            {waitReason(logs, job.waitingFor ?? "") ?? "This job waits for a confirmation before it goes on."}
          </p>
          <p class="muted">
            Do what it asks first; the job goes on from this step once you confirm. It waits for{" "}
            <code>{job.waitingFor}</code>.
          </p>
        </WaitingPanel>
      )}
      {job.error !== null && (
        <section class="panel job-error" aria-labelledby="error-h" role="alert">
          <div class="panel-head">
            <h2 id="error-h">
              {job.state === "failed" ? "Why it failed" : "Last error"}
              {failedStep !== undefined ? ` (step ${stepWords(failedStep.name).toLowerCase()})` : ""}
            </h2>
          </div>
          <p>
            <code class="job-error-code">{job.error.code}</code>
          </p>
          <p class="job-error-message">
            <LinkJobs text={job.error.message} />
          </p>
        </section>
      )}
      <div class="job-grid">
        <section class="panel" aria-labelledby="steps-h">
          <div class="panel-head">
            <h2 id="steps-h">Steps</h2>
            <span class="muted">
              {done} of {stepCount} done
            </span>
            {!isFinished(job.state) && (
              <span class="job-progress-head">
                <Progress value={job.progress * 100} label="progress of the job" />
                <span class="muted">{percent(job.progress * 100)}</span>
              </span>
            )}
          </div>
          <Steps job={job} now={now} />
        </section>
        <section class="panel" aria-labelledby="about-h">
          <div class="panel-head">
            <h2 id="about-h">About this job</h2>
          </div>
          <KeyValues
            rows={[
              ["Job", <code key="id">{job.id}</code>],
              ["Kind", <code key="k">{job.kind}</code>],
              ["On", <Target key="t" job={job} />],
              ["Started by", <StartedBy key="b" by={job.createdBy} />],
              ["Created", <When key="c" iso={job.createdAt} />],
              ["Started", <When key="s" iso={job.startedAt} />],
              ["Finished", <When key="f" iso={job.finishedAt} />],
            ]}
          />
          <Params job={job} />
        </section>
      </div>
      <Logs logs={logs} steps={job.steps ?? []} />
      {cancelling && (
        <CancelDialog
          job={job}
          onClose={() => setCancelling(false)}
          onDone={(j) => {
            setCancelling(false);
            setJob(j);
          }}
        />
      )}
      <p class="muted job-foot">
        <a href={href("/jobs", { item: job.itemId ?? undefined, plan: job.planId ?? undefined })}>
          Other jobs of this {job.itemId !== null ? "item" : job.planId !== null ? "plan" : "vault"}
        </a>
      </p>
    </>
  );
}

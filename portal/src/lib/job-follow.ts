// Following one job live, for the job page and a plan's run: its steps and log lines now, then every
// change as the vault sends it (server-sent events from /v1/jobs/{id}/events), until it finishes. When
// the stream drops before the job ends, the job and its new log lines are polled while the stream is
// reconnected with backoff, so nothing is missed; a vault that answers again is reconnected at once.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, client, type Job, type JobLog, ok } from "../api/client.ts";
import { readEvents } from "../api/sse.ts";

export type Step = NonNullable<Job["steps"]>[number];

type JobEvent =
  | { type: "job"; job: Omit<Job, "steps"> }
  | { type: "step"; jobId: string; step: Step }
  | { type: "log"; log: JobLog };

/** How the job is followed: live (events), reconnecting (polling meanwhile), or done with. */
export type Link =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "retrying"; at: number }
  | { kind: "ended" };

const POLL_MS = 3000;
const MAX_BACKOFF_MS = 30_000;
/** log lines a page of GET /v1/jobs/{job}/logs holds at most */
const LOG_PAGE = 1000;

export function isFinished(state: string): boolean {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** A job view without steps (an event's) keeps the steps already known. */
export function withSteps(next: Omit<Job, "steps"> & { steps?: Job["steps"] }, prev: Job | undefined): Job {
  return { ...next, steps: next.steps ?? prev?.steps ?? [] } as Job;
}

export interface FollowedJob {
  /** undefined until it is read (and for a null id) */
  job: Job | undefined;
  logs: JobLog[];
  /** the last failure to read it; cleared when it answers again */
  error: ApiError | null;
  link: Link;
  /** puts a job view an action answered with (cancel, retry) in place at once */
  setJob: (next: Job) => void;
}

interface State {
  id: string | null;
  job: Job | undefined;
  logs: JobLog[];
  error: ApiError | null;
  link: Link;
}

const fresh = (id: string | null): State => ({
  id,
  job: undefined,
  logs: [],
  error: null,
  link: { kind: "connecting" },
});

/** Errors that following again will not fix: a bad id, no access, a job that does not exist. */
function fatal(e: unknown): boolean {
  return e instanceof ApiError && [400, 401, 403, 404].includes(e.status);
}

/**
 * Job `id` (null: none), kept current until it finishes. A new `session` follows it again from the
 * start (after a retry, which makes a finished job run again). `onFinished` is called when the job
 * is seen to finish: once per session, and not for a job that had finished before it was followed.
 */
export function useJobFollow(
  id: string | null,
  opts: { session?: number; onFinished?: () => void } = {},
): FollowedJob {
  const [s, setS] = useState<State>(() => fresh(id));
  const onFinished = useRef(opts.onFinished);
  onFinished.current = opts.onFinished;
  useEffect(() => {
    // the same job again (a new session) keeps what it shows until the vault answers
    setS((x) => (x.id === id ? { ...x, link: { kind: "connecting" } } : fresh(id)));
    if (id === null) return;
    const ac = new AbortController();
    const signal = ac.signal;
    const update = (f: (x: State) => State) => {
      if (!signal.aborted) setS((x) => (x.id === id ? f(x) : x));
    };
    let lastLog = 0;
    let finished = false;
    let seenRunning = false;
    const addLogs = (more: readonly JobLog[]) => {
      const add = more.filter((l) => l.id > lastLog);
      if (add.length === 0 || signal.aborted) return;
      lastLog = (add.at(-1) as JobLog).id;
      // a new session reads the log again from the start: keep each line once
      update((x) => {
        const last = x.logs.at(-1)?.id ?? 0;
        const fresher = add.filter((l) => l.id > last);
        return fresher.length === 0 ? x : { ...x, logs: [...x.logs, ...fresher] };
      });
    };
    const gotJob = (j: Omit<Job, "steps"> & { steps?: Job["steps"] }) => {
      if (signal.aborted) return;
      update((x) => ({ ...x, job: withSteps(j, x.job) }));
      if (!isFinished(j.state)) seenRunning = true;
      else if (!finished) {
        finished = true;
        if (seenRunning) onFinished.current?.();
      }
    };
    const setLink = (link: Link) =>
      update((x) => (x.link.kind === link.kind && link.kind !== "retrying" ? x : { ...x, link }));
    const setError = (error: ApiError | null) => update((x) => (x.error === error ? x : { ...x, error }));
    const pollOnce = async () => {
      gotJob(await ok(client.GET("/v1/jobs/{job}", { params: { path: { job: id } } })));
      for (let i = 0; i < 50; i++) {
        const page = await ok(
          client.GET("/v1/jobs/{job}/logs", { params: { path: { job: id }, query: { after: lastLog } } }),
        );
        addLogs(page);
        if (page.length < LOG_PAGE) break;
      }
    };
    const onEvent = (raw: unknown) => {
      const ev = raw as JobEvent;
      setLink({ kind: "live" });
      if (ev.type === "job") gotJob(ev.job);
      else if (ev.type === "step") {
        update((x) => {
          if (x.job === undefined) return x;
          const steps = [...(x.job.steps ?? [])];
          const i = steps.findIndex((st) => st.idx === ev.step.idx);
          if (i >= 0) steps[i] = ev.step;
          else steps.push(ev.step);
          return { ...x, job: { ...x.job, steps } };
        });
      } else if (ev.type === "log") addLogs([ev.log]);
    };
    void (async () => {
      try {
        await pollOnce();
        setError(null);
      } catch (e) {
        if (signal.aborted) return;
        setError(e as ApiError);
        if (fatal(e)) return;
      }
      let backoff = 1000;
      while (!signal.aborted) {
        if (finished) {
          setLink({ kind: "ended" });
          return;
        }
        let heard = false;
        try {
          await readEvents(
            `/v1/jobs/${encodeURIComponent(id)}/events`,
            (ev) => {
              heard = true;
              onEvent(ev);
            },
            signal,
          );
          setError(null);
        } catch (e) {
          if (signal.aborted) return;
          if (fatal(e)) {
            setError(e as ApiError);
            return;
          }
        }
        if (signal.aborted) return;
        if (finished) continue;
        // the stream ended before the job did: poll while waiting to reconnect
        if (heard) backoff = 1000;
        const until = Date.now() + backoff;
        setLink({ kind: "retrying", at: until });
        let unreachable = false;
        while (!signal.aborted && !finished && Date.now() < until) {
          try {
            await pollOnce();
            setError(null);
            if (unreachable) break; // the vault is back: reconnect now
          } catch (e) {
            if (signal.aborted) return;
            setError(e as ApiError);
            unreachable = true;
          }
          await sleep(Math.min(POLL_MS, Math.max(0, until - Date.now())), signal);
        }
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    })();
    return () => ac.abort();
  }, [id, opts.session ?? 0]);
  const setJob = useCallback(
    (next: Job) => setS((x) => (x.id === id ? { ...x, job: withSteps(next, x.job) } : x)),
    [id],
  );
  // until the effect has caught up with a new id, show nothing of the old job
  const shown = s.id === id ? s : fresh(id);
  return { job: shown.job, logs: shown.logs, error: shown.error, link: shown.link, setJob };
}

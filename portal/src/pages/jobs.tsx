// Jobs: every long operation the vault ran or runs, newest first — what kind, on which item or plan,
// its state (with progress while it runs), when, how long, who started it and why it failed. Filters
// live in the address; "Load older" pages back with the vault's cursor; the list refreshes every 4 s
// while a job on it is active. The job page itself is in job-page.tsx.
import "./jobs.css";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { type ApiError, client, type Job, ok } from "../api/client.ts";
import { percent } from "../lib/format.ts";
import { href, replaceQuery } from "../lib/router.ts";
import { Empty, ErrorBanner, Loading, Progress } from "../ui/kit.tsx";
import {
  isFinished,
  JOB_KINDS,
  JOB_STATES,
  JobBadge,
  kindWords,
  STATE_WORDS,
  StartedBy,
  Target,
  took,
  When,
} from "./job-common.tsx";

export { JobPage } from "./job-page.tsx";

const PAGE = 50;
const ACTIVE_MS = 4000;
const IDLE_MS = 30_000;

interface Filters {
  state: string;
  item: string;
  plan: string;
  kind: string;
}

interface ListState {
  jobs: Job[];
  /** an older page may exist */
  more: boolean;
}

/** (createdAt, id) descending: the vault's order, and its paging cursor. */
function olderThan(a: Job, b: Job): boolean {
  return a.createdAt < b.createdAt || (a.createdAt === b.createdAt && a.id < b.id);
}

function useJobList(f: Filters) {
  const [list, setList] = useState<ListState | undefined>(undefined);
  const [error, setError] = useState<ApiError | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const current = useRef<ListState | undefined>(undefined);
  const gen = useRef(0);
  const size = PAGE;
  const fetchPage = useCallback(
    (limit: number, before?: string) =>
      ok(
        client.GET("/v1/jobs", {
          params: {
            query: {
              limit,
              ...(f.state !== "" ? { state: f.state as Job["state"] as never } : {}),
              ...(f.item !== "" ? { item: f.item } : {}),
              ...(f.plan !== "" ? { plan: f.plan } : {}),
              ...(f.kind !== "" ? { kind: f.kind } : {}),
              ...(before !== undefined ? { before } : {}),
            },
          },
        }),
      ),
    [f.state, f.item, f.plan, f.kind],
  );
  const set = (s: ListState) => {
    current.current = s;
    setList(s);
  };
  // the newest jobs, as many as are shown (up to 1000), merged with older pages loaded before
  const refresh = useCallback(() => {
    const mine = gen.current;
    const had = current.current;
    const limit = Math.min(1000, Math.max(size, had?.jobs.length ?? 0));
    fetchPage(limit).then(
      (fresh) => {
        if (mine !== gen.current) return;
        const complete = fresh.length < limit;
        const last = fresh.at(-1);
        const tail =
          complete || last === undefined || had === undefined
            ? []
            : had.jobs.filter((j) => olderThan(j, last));
        set({
          jobs: [...fresh, ...tail],
          more: complete ? false : tail.length > 0 ? (had?.more ?? true) : true,
        });
        setError(null);
      },
      (e: ApiError) => mine === gen.current && setError(e),
    );
  }, [fetchPage, size]);
  const loadOlder = () => {
    const last = current.current?.jobs.at(-1);
    if (last === undefined) return;
    const mine = gen.current;
    setLoadingOlder(true);
    fetchPage(size, last.id).then(
      (page) => {
        if (mine !== gen.current) return;
        const had = current.current?.jobs ?? [];
        const seen = new Set(had.map((j) => j.id));
        set({ jobs: [...had, ...page.filter((j) => !seen.has(j.id))], more: page.length === size });
        setLoadingOlder(false);
      },
      (e: ApiError) => {
        if (mine !== gen.current) return;
        setError(e);
        setLoadingOlder(false);
      },
    );
  };
  // a new filter starts from its first page
  useEffect(() => {
    gen.current++;
    current.current = undefined;
    setList(undefined);
    setError(null);
    refresh();
  }, [refresh]);
  const active = list?.jobs.some((j) => !isFinished(j.state)) ?? false;
  useEffect(() => {
    const every = active ? ACTIVE_MS : IDLE_MS;
    const timer = setInterval(() => document.visibilityState === "visible" && refresh(), every);
    const onVisible = () => document.visibilityState === "visible" && refresh();
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [active, refresh]);
  return { list, error, active, loadOlder, loadingOlder, refresh };
}

function JobRow(p: { job: Job; now: number }) {
  const j = p.job;
  return (
    <tr class={j.state === "failed" ? "job-row-failed" : undefined}>
      <td>
        <a href={href(`/jobs/${j.id}`)} title={`${j.kind} · ${j.id}`}>
          {kindWords(j.kind)}
        </a>
      </td>
      <td>
        <Target job={j} />
      </td>
      <td>
        <div class="job-state-cell">
          <JobBadge state={j.state} />
          {j.state === "running" && (
            <>
              <Progress value={j.progress * 100} label={`progress of ${kindWords(j.kind)} job ${j.id}`} />
              <span class="muted nowrap">{percent(j.progress * 100)}</span>
            </>
          )}
          {j.state === "waiting" && j.waitingFor !== null && (
            <span class="job-waiting-for" title={`waits for signal ${j.waitingFor}`}>
              needs you
            </span>
          )}
        </div>
      </td>
      <td class="nowrap">
        {j.startedAt !== null ? (
          <When iso={j.startedAt} />
        ) : (
          <span class="muted">
            queued <When iso={j.createdAt} />
          </span>
        )}
      </td>
      <td class="num nowrap">{took(j, p.now)}</td>
      <td>
        <StartedBy by={j.createdBy} />
      </td>
      <td>
        {j.error !== null ? (
          <code class="job-error-code" title={j.error.message}>
            {j.error.code}
          </code>
        ) : (
          <span class="muted">—</span>
        )}
      </td>
    </tr>
  );
}

function ItemFilter(p: { value: string; onCommit: (v: string) => void }) {
  const [draft, setDraft] = useState(p.value);
  useEffect(() => setDraft(p.value), [p.value]);
  return (
    <form
      class="job-item-filter"
      onSubmit={(e) => {
        e.preventDefault();
        p.onCommit(draft.trim());
      }}
    >
      <input
        type="search"
        placeholder="Item name or id"
        aria-label="Show the jobs of one item (name or id)"
        value={draft}
        onInput={(e) => setDraft(e.currentTarget.value)}
        onChange={(e) => p.onCommit(e.currentTarget.value.trim())}
      />
    </form>
  );
}

export function JobsPage(p: { query: URLSearchParams }) {
  const f: Filters = {
    state: p.query.get("state") ?? "",
    item: p.query.get("item") ?? "",
    plan: p.query.get("plan") ?? "",
    kind: p.query.get("kind") ?? "",
  };
  const setF = (patch: Partial<Filters>) => replaceQuery({ ...f, ...patch });
  const { list, error, active, loadOlder, loadingOlder } = useJobList(f);
  const shown = list?.jobs.filter((j) => f.kind === "" || j.kind === f.kind);
  const filtered = f.state !== "" || f.item !== "" || f.plan !== "" || f.kind !== "";
  const now = Date.now();
  return (
    <>
      <div class="page-head">
        <div>
          <h1>Jobs</h1>
          <p class="sub">
            Every protection, drill, failover, commit, reprotect and plan run, newest first ·{" "}
            {active ? "updated every 4 s while a job runs" : "updated every 30 s"}
          </p>
        </div>
      </div>
      <ErrorBanner error={error} prefix="The list could not be refreshed:" />
      <div class="toolbar">
        <fieldset class="chips">
          <legend class="sr-only">Filter by state</legend>
          <button
            type="button"
            class="chip"
            aria-pressed={f.state === ""}
            onClick={() => setF({ state: "" })}
          >
            All
          </button>
          {JOB_STATES.map((s) => (
            <button
              type="button"
              key={s}
              class="chip"
              aria-pressed={f.state === s}
              onClick={() => setF({ state: s })}
            >
              {STATE_WORDS[s]}
            </button>
          ))}
        </fieldset>
        <ItemFilter value={f.item} onCommit={(item) => setF({ item })} />
        <select
          aria-label="Filter by kind"
          value={f.kind}
          onChange={(e) => setF({ kind: e.currentTarget.value })}
        >
          <option value="">Any kind</option>
          {JOB_KINDS.map((k) => (
            <option key={k} value={k}>
              {kindWords(k)}
            </option>
          ))}
        </select>
        {f.plan !== "" && (
          <button
            type="button"
            class="chip"
            aria-pressed="true"
            aria-label={`Showing the jobs of plan ${f.plan}; remove this filter`}
            onClick={() => setF({ plan: "" })}
          >
            plan {f.plan} ×
          </button>
        )}
      </div>
      {list === undefined || shown === undefined ? (
        error === null && <Loading what="jobs" />
      ) : list.jobs.length === 0 && !filtered ? (
        <Empty
          title="No job has run yet"
          action={
            <a class="button" href="#/items">
              Go to the replicated items
            </a>
          }
        >
          <p>
            Jobs are the vault's long operations. Protecting a machine starts one; so do a test failover and
            its cleanup, a failover, changing the recovery point, commit, reprotect, disabling replication and
            every run of a recovery plan. Start one from an item's page or a plan's page, and follow it here.
          </p>
        </Empty>
      ) : shown.length === 0 && !list.more ? (
        <Empty
          title="No job matches these filters"
          action={
            <button type="button" onClick={() => setF({ state: "", item: "", plan: "", kind: "" })}>
              Clear the filters
            </button>
          }
        >
          {f.item !== "" && (
            <p>
              The item filter takes an item's exact name or id: <code>{f.item}</code>.
            </p>
          )}
        </Empty>
      ) : (
        <>
          {shown.length > 0 ? (
            <div class="table-wrap">
              <table aria-label="Jobs" class="jobs-table">
                <thead>
                  <tr>
                    <th scope="col">Kind</th>
                    <th scope="col">Target</th>
                    <th scope="col">State</th>
                    <th scope="col">Started</th>
                    <th scope="col" class="num">
                      Took
                    </th>
                    <th scope="col">By</th>
                    <th scope="col">Error</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((j) => (
                    <JobRow key={j.id} job={j} now={now} />
                  ))}
                </tbody>
              </table>
            </div>
          ) : (
            <p class="muted">
              No {kindWords(f.kind)} job among the {list.jobs.length} newest; load older ones to look further.
            </p>
          )}
          <nav class="pager" aria-label="Older jobs">
            <span class="muted">
              {shown.length === list.jobs.length
                ? `${list.jobs.length} job${list.jobs.length === 1 ? "" : "s"}`
                : `${shown.length} of ${list.jobs.length} loaded`}
              {list.more ? "" : " · that is all"}
            </span>
            {list.more && (
              <button type="button" onClick={loadOlder} disabled={loadingOlder} aria-busy={loadingOlder}>
                {loadingOlder ? "Loading…" : "Load older"}
              </button>
            )}
          </nav>
        </>
      )}
    </>
  );
}

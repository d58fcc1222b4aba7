// Replicated items: every protected machine with its health, state, direction, RPO against its
// threshold, initial replication progress, latest point and running job. Filters and search live in
// the address (shareable, survive reloads); the list pages on the vault, so 10,000 items load as fast
// as 100.
import { useEffect, useRef, useState } from "preact/hooks";
import { type Answer, client, type ItemView, ok } from "../api/client.ts";
import { duration, percent } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import { href, replaceQuery } from "../lib/router.ts";
import { phaseWords } from "../lib/words.ts";
import { HealthBadge } from "../ui/health.tsx";
import { Empty, ErrorBanner, Loading, Progress } from "../ui/kit.tsx";

export const PAGE_SIZE = 100;

const HEALTH_FILTERS = [
  { id: "", label: "All" },
  { id: "critical", label: "Critical" },
  { id: "warning", label: "Warning" },
  { id: "ok", label: "Healthy" },
  { id: "initial", label: "Initial replication" },
  { id: "n/a", label: "Not replicating" },
] as const;

const SORTS = [
  { id: "name", label: "Name" },
  { id: "rpo", label: "Worst RPO first" },
  { id: "phase", label: "State" },
] as const;

export interface ItemsQuery {
  search: string;
  health: string;
  phase: string;
  sort: string;
  /** items that replicate from or to this site */
  site: string;
  offset: number;
}

export type ItemsAnswer = Answer<"/v1/items-page", "get">;

function loadItems(q: ItemsQuery): Promise<ItemsAnswer> {
  return ok(
    client.GET("/v1/items-page", {
      params: {
        query: {
          limit: PAGE_SIZE,
          offset: q.offset,
          ...(q.search !== "" ? { search: q.search } : {}),
          ...(q.health !== "" ? { health: q.health as "ok" } : {}),
          ...(q.phase !== "" ? { phase: q.phase as "protected" } : {}),
          ...(q.sort !== "" ? { sort: q.sort as "name" } : {}),
          ...(q.site !== "" ? { site: q.site } : {}),
        },
      },
    }),
  );
}

function count(d: ItemsAnswer | undefined, health: string): number {
  if (d === undefined) return 0;
  if (health === "") return d.counts.all;
  return (d.counts.byHealth as Record<string, number>)[health] ?? 0;
}

function Rpo(p: { it: ItemView }) {
  const h = p.it.health;
  if (h.rpoSeconds === null) return <span class="muted">—</span>;
  return (
    <span class="nowrap">
      {duration(h.rpoSeconds)} <span class="muted">/ {duration(h.rpoThresholdSeconds)}</span>
    </span>
  );
}

function Initial(p: { it: ItemView }) {
  const r = p.it.health.initialReplication;
  if (r === null) return null;
  return (
    <div class="initial">
      <Progress value={r.percent} label={`initial replication of ${p.it.name}`} />
      <span class="muted nowrap">
        {percent(r.percent)}
        {r.etaSeconds !== null ? `, ${duration(r.etaSeconds)} left` : ""}
      </span>
    </div>
  );
}

export function ItemRow(p: { it: ItemView }) {
  const it = p.it;
  return (
    <tr>
      <td>
        <a href={href(`/items/${encodeURIComponent(it.name)}`)}>{it.name}</a>
      </td>
      <td>
        <HealthBadge item={it} />
      </td>
      <td>
        {phaseWords(it.phase)}
        <Initial it={it} />
      </td>
      <td class="nowrap">{it.direction}</td>
      <td class="num">
        <Rpo it={it} />
      </td>
      <td class="nowrap">
        {it.latestPoint === null ? (
          <span class="muted">none yet</span>
        ) : (
          <span title={it.latestPoint.createdAt}>
            {duration(it.latestPoint.ageSeconds)} ago
            {it.latestPoint.consistency === "app" ? " · app" : ""}
          </span>
        )}
      </td>
      <td>
        {it.activeJob === null ? (
          <span class="muted">—</span>
        ) : (
          <a href={href(`/jobs/${it.activeJob.id}`)}>
            {it.activeJob.kind} · {it.activeJob.state}
          </a>
        )}
      </td>
    </tr>
  );
}

/** Search as you type, asking the vault once typing pauses (not once per key). */
function SearchBox(p: { value: string; onChange: (v: string) => void }) {
  const [text, setText] = useState(p.value);
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  // the timer calls the latest onChange: one made before a chip or sort changed would undo it
  const onChange = useRef(p.onChange);
  onChange.current = p.onChange;
  useEffect(() => setText(p.value), [p.value]);
  useEffect(() => () => clearTimeout(timer.current), []);
  return (
    <input
      type="search"
      placeholder="Search items or machines"
      aria-label="Search by item or machine name"
      value={text}
      onInput={(e) => {
        const v = e.currentTarget.value;
        setText(v);
        clearTimeout(timer.current);
        timer.current = setTimeout(() => onChange.current(v), 250);
      }}
    />
  );
}

export function ItemsPage(p: { query: URLSearchParams }) {
  const q: ItemsQuery = {
    search: p.query.get("q") ?? "",
    health: p.query.get("health") ?? "",
    phase: p.query.get("phase") ?? "",
    sort: p.query.get("sort") ?? "",
    site: p.query.get("site") ?? "",
    offset: Math.max(0, Number(p.query.get("offset") ?? 0) || 0),
  };
  const set = (patch: Partial<ItemsQuery>) => {
    const n = { ...q, offset: 0, ...patch };
    replaceQuery({
      q: n.search,
      health: n.health,
      phase: n.phase,
      sort: n.sort,
      site: n.site,
      offset: n.offset || undefined,
    });
  };
  const sites = useLive(() => ok(client.GET("/v1/sites")), 60_000, []);
  const live = useLive(() => loadItems(q), 5000, [q.search, q.health, q.phase, q.sort, q.site, q.offset]);
  const d = live.data;
  return (
    <>
      <div class="page-head">
        <div>
          <h1>Replicated items</h1>
          <p class="sub">
            {d === undefined ? "…" : `${d.counts.all} machines protected`} · updated every 5 s
          </p>
        </div>
        <div class="actions">
          <a class="button" href="#/setup">
            Protect a machine
          </a>
        </div>
      </div>
      <ErrorBanner error={live.error} prefix="The list could not be refreshed:" />
      <div class="toolbar">
        <fieldset class="chips">
          <legend class="sr-only">Filter by health</legend>
          {HEALTH_FILTERS.map((f) => (
            <button
              type="button"
              key={f.id}
              class="chip"
              aria-pressed={q.health === f.id}
              onClick={() => set({ health: f.id })}
            >
              {f.label} <span class="n">{count(d, f.id)}</span>
            </button>
          ))}
        </fieldset>
        <SearchBox value={q.search} onChange={(search) => set({ search })} />
        <select
          aria-label="Filter by state"
          value={q.phase}
          onChange={(e) => set({ phase: e.currentTarget.value })}
        >
          <option value="">Any state</option>
          {[
            "enabling",
            "initial-replication",
            "protected",
            "failing-over",
            "failed-over",
            "failover-committed",
            "reprotecting",
          ].map((ph) => (
            <option key={ph} value={ph}>
              {phaseWords(ph)}
            </option>
          ))}
        </select>
        <select
          aria-label="Filter by site"
          value={q.site}
          onChange={(e) => set({ site: e.currentTarget.value })}
        >
          <option value="">Any site</option>
          {(sites.data ?? []).map((s) => (
            <option key={s.id} value={s.name}>
              From or to {s.name}
            </option>
          ))}
        </select>
        <select
          aria-label="Sort"
          value={q.sort || "name"}
          onChange={(e) => set({ sort: e.currentTarget.value })}
        >
          {SORTS.map((x) => (
            <option key={x.id} value={x.id}>
              Sort: {x.label}
            </option>
          ))}
        </select>
      </div>
      {d === undefined ? (
        live.error === null && <Loading what="replicated items" />
      ) : d.counts.all === 0 && q.search === "" ? (
        <Empty
          title="No machine is protected yet"
          action={
            <a class="button primary" href="#/setup">
              Set up protection
            </a>
          }
        >
          <p>
            Protecting a machine takes four steps: a recovery site, a policy, an agent on the machine, then
            replication. The set-up page walks you through them.
          </p>
        </Empty>
      ) : d.total === 0 ? (
        <Empty
          title="No item matches these filters"
          action={
            <button type="button" onClick={() => set({ search: "", health: "", phase: "", site: "" })}>
              Clear the filters
            </button>
          }
        />
      ) : (
        <>
          <div class="table-wrap">
            <table aria-label="Replicated items">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Health</th>
                  <th scope="col">State</th>
                  <th scope="col">Direction</th>
                  <th scope="col" class="num">
                    RPO / threshold
                  </th>
                  <th scope="col">Latest point</th>
                  <th scope="col">Active job</th>
                </tr>
              </thead>
              <tbody>
                {d.items.map((it) => (
                  <ItemRow key={it.id} it={it} />
                ))}
              </tbody>
            </table>
          </div>
          <nav class="pager" aria-label="Pages">
            <span class="muted" role="status">
              {q.offset + 1}–{Math.min(q.offset + PAGE_SIZE, d.total)} of {d.total}
            </span>
            <button
              type="button"
              disabled={q.offset === 0}
              onClick={() => set({ ...q, offset: Math.max(0, q.offset - PAGE_SIZE) })}
            >
              Previous
            </button>
            <button
              type="button"
              disabled={q.offset + PAGE_SIZE >= d.total}
              onClick={() => set({ ...q, offset: q.offset + PAGE_SIZE })}
            >
              Next
            </button>
          </nav>
        </>
      )}
    </>
  );
}

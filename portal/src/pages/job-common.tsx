// What the jobs list and the job page share: a job's kind and states in words, the link to what it
// works on (by name, looked up once per id), who started it (a plan's job links to that job), a clock
// for what is still running, and a step output as a few readable key/values.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { client, type Job, ok } from "../api/client.ts";
import { bytes, duration, time } from "../lib/format.ts";
import { isFinished } from "../lib/job-follow.ts";
import { href } from "../lib/router.ts";
import { jobTone, OPERATION_WORDS } from "../lib/words.ts";
import { Badge } from "../ui/kit.tsx";

export type { Step } from "../lib/job-follow.ts";
export { isFinished };

export const JOB_STATES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const STATE_WORDS: Record<string, string> = {
  queued: "Queued",
  running: "Running",
  waiting: "Waiting",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
};

const ITEM_KINDS = [
  "enable",
  "test-failover",
  "test-failover-cleanup",
  "failover",
  "change-point",
  "commit",
  "reprotect",
  "disable",
] as const;
const PLAN_OPS = ["test-failover", "test-failover-cleanup", "failover", "commit", "reprotect", "failback"];

/** Every kind the vault runs, in the order the kind filter offers them. */
export const JOB_KINDS: readonly string[] = [...ITEM_KINDS, ...PLAN_OPS.map((op) => `plan-${op}`)];

const KIND_WORDS: Record<string, string> = {
  ...(OPERATION_WORDS as Record<string, string>),
  enable: "Enable protection",
  failback: "Failback",
};

export function kindWords(kind: string): string {
  if (kind.startsWith("plan-")) {
    const op = kind.slice(5);
    return `Plan: ${KIND_WORDS[op] ?? op}`;
  }
  return KIND_WORDS[kind] ?? kind;
}

export function JobBadge(p: { state: string }) {
  if (p.state === "refused") return <Badge tone="bad">Refused</Badge>;
  return <Badge tone={jobTone(p.state)}>{STATE_WORDS[p.state] ?? p.state}</Badge>;
}

// ---- names of items and plans, fetched once per id ------------------------------------------------

const names = new Map<string, string | null>();
const pending = new Map<string, Promise<void>>();
const listeners = new Set<() => void>();

function lookUp(kind: "item" | "plan", id: string): void {
  const key = `${kind}:${id}`;
  if (names.has(key) || pending.has(key)) return;
  const call =
    kind === "item"
      ? ok(client.GET("/v1/items/{item}", { params: { path: { item: id } } }))
      : ok(client.GET("/v1/plans/{plan}", { params: { path: { plan: id } } }));
  pending.set(
    key,
    call
      .then(
        (x) => names.set(key, x.name),
        () => names.set(key, null), // gone (a disabled item, a deleted plan): the id stays
      )
      .then(() => {
        pending.delete(key);
        for (const l of listeners) l();
      }),
  );
}

/** The name of an item or plan by id (undefined while it loads, the id if it is gone). */
export function useName(kind: "item" | "plan", id: string | null): string | undefined {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  if (id === null) return undefined;
  const got = names.get(`${kind}:${id}`);
  if (got === undefined) {
    lookUp(kind, id);
    return undefined;
  }
  return got ?? id;
}

/** The item or plan a job works on, as a link. */
export function Target(p: { job: Pick<Job, "itemId" | "planId"> }) {
  const item = useName("item", p.job.itemId);
  const plan = useName("plan", p.job.planId);
  if (p.job.itemId !== null) {
    return (
      <a href={href(`/items/${encodeURIComponent(p.job.itemId)}`)} title={`item ${p.job.itemId}`}>
        {item ?? <span class="muted">{p.job.itemId}</span>}
      </a>
    );
  }
  if (p.job.planId !== null) {
    return (
      <a href={href(`/plans/${encodeURIComponent(p.job.planId)}`)} title={`recovery plan ${p.job.planId}`}>
        <span class="muted">plan </span>
        {plan ?? <span class="muted">{p.job.planId}</span>}
      </a>
    );
  }
  return <span class="muted">—</span>;
}

const PLAN_TAG = /^plan (.+) \((job-[0-9a-z]{12})\)$/;

/** Who started a job; a job a plan started links to the plan's job. */
export function StartedBy(p: { by: string | null }) {
  if (p.by === null) return <span class="muted">the vault</span>;
  const m = PLAN_TAG.exec(p.by);
  if (m !== null) {
    return (
      <span>
        plan {m[1]} (<a href={href(`/jobs/${m[2]}`)}>its job</a>)
      </span>
    );
  }
  return <span>{p.by}</span>;
}

const JOB_ID = /\bjob-[0-9a-z]{12}\b/g;

/** Text with every job id in it as a link to that job. */
export function LinkJobs(p: { text: string }): ComponentChildren {
  const out: ComponentChildren[] = [];
  let last = 0;
  for (const m of p.text.matchAll(JOB_ID)) {
    out.push(p.text.slice(last, m.index));
    out.push(
      <a key={m.index} href={href(`/jobs/${m[0]}`)}>
        {m[0]}
      </a>,
    );
    last = m.index + m[0].length;
  }
  out.push(p.text.slice(last));
  return out;
}

// ---- time ---------------------------------------------------------------------------------------

/** Date.now(), re-read every `ms` while `active` (a running step's elapsed time ticks). */
export function useNow(active: boolean, ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [active, ms]);
  return active ? now : Date.now();
}

/** How long something took, or has been running for. */
export function took(
  x: { startedAt: string | null; finishedAt: string | null; durationMs: number | null },
  now: number,
): string {
  if (x.durationMs !== null) return duration(x.durationMs / 1000);
  if (x.startedAt === null) return "—";
  if (x.finishedAt !== null) return duration((Date.parse(x.finishedAt) - Date.parse(x.startedAt)) / 1000);
  return duration((now - Date.parse(x.startedAt)) / 1000);
}

export function When(p: { iso: string | null }) {
  if (p.iso === null) return <span class="muted">—</span>;
  return (
    <time dateTime={p.iso} title={new Date(p.iso).toLocaleString(undefined, { hour12: false })}>
      {time(p.iso)}
    </time>
  );
}

// ---- step outputs -------------------------------------------------------------------------------

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

function words(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[-_]/g, " ")
    .toLowerCase()
    .replace(/ (ms|seconds)$/, "");
}

function value(key: string, v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") {
    if (/bytes/i.test(key)) return bytes(v);
    if (/Ms$/.test(key)) return duration(v / 1000);
    if (/Seconds$/.test(key)) return duration(v);
    return v.toLocaleString();
  }
  if (typeof v === "string") {
    if (v.trim() === "") return "—";
    if (ISO.test(v)) return time(v);
    return v.length > 120 ? `${v.slice(0, 120)}…` : v;
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return "none";
    if (v.every((x) => typeof x !== "object" || x === null)) {
      const s = v.map(String).join(", ");
      return s.length > 120 ? `${s.slice(0, 120)}…` : s;
    }
    return v.length === 1 ? "1 entry" : `${v.length} entries`;
  }
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

/** A step output as readable rows: nested objects flattened one level, units from the key names. */
export function outputRows(out: unknown): [string, string][] {
  if (out === null || out === undefined) return [];
  if (typeof out !== "object" || Array.isArray(out)) return [["value", value("", out)]];
  const rows: [string, string][] = [];
  for (const [k, v] of Object.entries(out as Record<string, unknown>)) {
    if (isMachineList(v)) continue; // shown as its own list
    if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length <= 6) {
      for (const [k2, v2] of Object.entries(v as Record<string, unknown>)) {
        rows.push([`${words(k)} ${words(k2)}`, value(k2, v2)]);
      }
    } else {
      rows.push([words(k), value(k, v)]);
    }
  }
  return rows;
}

interface MachineResult {
  item: string;
  job: string | null;
  state?: string;
  error?: { code: string; message: string } | null;
}

function isMachineList(v: unknown): v is MachineResult[] {
  return (
    Array.isArray(v) &&
    v.length > 0 &&
    v.every((x) => x !== null && typeof x === "object" && "item" in x && "job" in x)
  );
}

/** A step's output: key/values, the machines a plan step ran (linked to their jobs), the raw JSON. */
export function StepOutput(p: { output: unknown }) {
  const rows = outputRows(p.output);
  const machines = Object.values((p.output ?? {}) as Record<string, unknown>).find(isMachineList);
  if (rows.length === 0 && machines === undefined) return null;
  return (
    <div class="job-output">
      {rows.length > 0 && (
        <dl class="job-output-kv">
          {rows.map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{v}</dd>
            </div>
          ))}
        </dl>
      )}
      {machines !== undefined && (
        <ul class="job-machines">
          {machines.map((m) => (
            <li key={`${m.item}-${m.job}`}>
              <strong>{m.item}</strong> {m.job !== null ? <a href={href(`/jobs/${m.job}`)}>{m.job}</a> : null}{" "}
              {m.state !== undefined && <JobBadge state={m.state} />}
              {m.error !== null && m.error !== undefined && (
                <span class="muted">
                  {" "}
                  <code>{m.error.code}</code> {m.error.message}
                </span>
              )}
            </li>
          ))}
        </ul>
      )}
      <details class="job-raw">
        <summary>raw JSON</summary>
        <pre>{JSON.stringify(p.output, null, 2)}</pre>
      </details>
    </div>
  );
}

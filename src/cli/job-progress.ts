// An operation's job as the operator sees it: the decision the vault took (direction, consequences,
// whether it can be cancelled) before it starts, then the job followed to its end (--wait, jobs
// watch). The follower reads the vault's server-sent events and falls back to polling the job when
// the stream drops (a vault restart resumes the job; the follower keeps up). On a terminal it redraws
// one progress line in place; otherwise it prints one line per finished step, so logs stay readable.
import type { Command } from "commander";
import { SwitchbackError } from "../domain/errors.ts";
import type { Decision } from "../domain/lifecycle.ts";
import { parsePointRequest } from "../domain/point-selection.ts";
import { orThrow } from "../domain/refusal.ts";
import type { JobEvent, JobLogView, JobSummary, JobView, StepView } from "../vault/jobs/types.ts";
import { printJson } from "./output.ts";
import { seg, type VaultClient, type VaultFlags, vaultClient, withVault } from "./vault-client.ts";

/** A job as the API shows it (the lease stays inside the vault). */
export type Job = Omit<JobView, "lease">;
type Summary = Omit<JobSummary, "lease">;

export interface FollowFlags extends VaultFlags {
  json?: boolean;
}

const POLL_MS = 500;
/** How long the follower keeps asking a vault that does not answer (a restart takes seconds). */
const UNREACHABLE_GRACE_MS = 120_000;

export function isFinishedState(state: string): boolean {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

/** "12s", "1m05s": elapsed time on the progress line. */
function clock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

/** A step's or job's duration: "84ms", "2.5s"; "-" when it has none. */
export function took(ms: number | null): string {
  if (ms === null) return "-";
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`;
}

/** What the follower shows; `tty` redraws one line, otherwise one line per finished step. */
class ProgressView {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #quiet: boolean;
  readonly #steps = new Map<number, StepView>();
  readonly #printed = new Set<string>();
  #job: Summary | null = null;
  #lastLine = "";
  #timer: NodeJS.Timeout | undefined;

  constructor(o: { quiet: boolean }) {
    this.#out = process.stdout;
    this.#tty = process.stdout.isTTY === true;
    this.#quiet = o.quiet;
    if (this.#tty && !this.#quiet) this.#timer = setInterval(() => this.#redraw(), 1000);
  }

  /** The whole job (first event, or a poll): steps and summary. */
  job(j: Summary & { steps?: StepView[] }): void {
    const { steps, ...summary } = j as Job;
    if (steps !== undefined) {
      // all steps first: the "[n/total]" of a step printed below needs the total
      for (const s of steps) this.#steps.set(s.idx, s);
      for (const s of steps) this.step(s, false);
    }
    const was = this.#job?.state;
    this.#job = summary;
    if (!this.#tty && summary.state === "waiting" && was !== "waiting") {
      this.#line(`  waiting for ${summary.waitingFor ?? "a signal"}`);
    }
    this.#redraw();
  }

  step(s: StepView, redraw = true): void {
    this.#steps.set(s.idx, s);
    if (!this.#tty && (s.state === "succeeded" || s.state === "failed" || s.state === "skipped")) {
      const key = `${s.idx}:${s.attempts}:${s.state}`;
      if (!this.#printed.has(key)) {
        this.#printed.add(key);
        const n = `[${s.idx + 1}/${this.#total()}]`;
        this.#line(`  ${n} ${s.name} ${s.state}${s.durationMs === null ? "" : ` (${took(s.durationMs)})`}`);
      }
    }
    if (redraw) this.#redraw();
  }

  log(l: JobLogView): void {
    if (l.level === "warn" || l.level === "error") this.#line(`  ${l.level}: ${l.message}`);
  }

  /** Ends the live line: the job finished, or the follower stops. */
  close(): void {
    clearInterval(this.#timer);
    if (this.#tty && !this.#quiet && this.#lastLine !== "") this.#out.write("\n");
    this.#lastLine = "";
  }

  #total(): number {
    return Math.max(this.#steps.size, 1);
  }

  #line(text: string): void {
    if (this.#quiet) return;
    if (this.#tty && this.#lastLine !== "") this.#out.write("\r\x1b[K");
    this.#out.write(`${text}\n`);
    if (this.#tty && this.#lastLine !== "") this.#out.write(this.#lastLine);
  }

  #redraw(): void {
    const j = this.#job;
    if (!this.#tty || this.#quiet || j === null) return;
    const total = this.#total();
    const steps = [...this.#steps.values()].sort((a, b) => a.idx - b.idx);
    const current =
      steps.find((s) => s.state === "running" || s.state === "waiting" || s.state === "failed") ??
      steps[Math.min(j.step, steps.length - 1)];
    const pct = Math.round((j.state === "succeeded" ? 1 : j.progress) * 100);
    const width = 24;
    const fill = Math.round((pct / 100) * width);
    const bar = `${"#".repeat(fill)}${".".repeat(width - fill)}`;
    const started = Date.parse(j.startedAt ?? j.createdAt);
    const end = j.finishedAt === null ? Date.now() : Date.parse(j.finishedAt);
    const where =
      current === undefined
        ? j.state
        : `${Math.min(current.idx + 1, total)}/${total} ${current.name}${j.state === "waiting" ? ` (waiting for ${j.waitingFor})` : ""}`;
    const text = `[${bar}] ${String(pct).padStart(3)}%  ${where}  ${clock(end - started)}`;
    // a terminal that does not say its width (0) gets 100 columns
    const cols = this.#out.columns || 100;
    const line = text.length > cols - 1 ? text.slice(0, cols - 1) : text;
    if (line === this.#lastLine) return;
    this.#lastLine = line;
    this.#out.write(`\r\x1b[K${line}`);
  }
}

/** Reads `data:` events of a text/event-stream body; returns when the stream ends. */
async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<JobEvent> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data !== "") yield JSON.parse(data) as JobEvent;
    }
  }
}

/** Follows the job over the event stream; returns the finished job, or null when the stream dropped. */
async function followStream(
  client: VaultClient,
  token: string,
  id: string,
  view: ProgressView,
): Promise<Summary | null> {
  let res: Response;
  try {
    res = await fetch(`${client.url}/v1/jobs/${seg(id)}/events`, {
      headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
    });
  } catch {
    return null;
  }
  if (!res.ok || res.body === null) {
    // a refusal (unknown job, bad token) is the same from GET /v1/jobs/{id}: let the poll report it
    await res.body?.cancel();
    return null;
  }
  let last: Summary | null = null;
  try {
    for await (const ev of readEvents(res.body)) {
      switch (ev.type) {
        case "job":
          view.job(ev.job);
          last = ev.job;
          if (isFinishedState(ev.job.state)) return ev.job;
          break;
        case "step":
          view.step(ev.step);
          break;
        case "log":
          view.log(ev.log);
          break;
      }
    }
  } catch {
    // the connection dropped mid-stream
  }
  return last !== null && isFinishedState(last.state) ? last : null;
}

/** Polls GET /v1/jobs/{id} until the job finishes, riding out a vault that restarts. */
async function poll(client: VaultClient, id: string, view: ProgressView): Promise<Job> {
  let failingSince: number | null = null;
  for (;;) {
    try {
      const j = await client.get<Job>(`/v1/jobs/${seg(id)}`);
      failingSince = null;
      view.job(j);
      if (isFinishedState(j.state)) return j;
    } catch (err) {
      const unreachable = err instanceof SwitchbackError && err.code === "VAULT_UNREACHABLE";
      if (!unreachable) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > UNREACHABLE_GRACE_MS) throw err;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * Follows a job until it finishes and reports it: 0 when it succeeded; a failed or cancelled job
 * throws its error (the CLI prints `switchback: <message> [CODE]` and exits 1). With --json the
 * final job is printed and nothing else.
 */
export async function followJob(client: VaultClient, o: FollowFlags, id: string): Promise<Job> {
  const token = o.token ?? process.env["SWITCHBACK_TOKEN"] ?? "";
  const view = new ProgressView({ quiet: o.json === true });
  const interrupted = () => {
    view.close();
    process.stderr.write(
      `switchback: stopped following job ${id}; it goes on in the vault ('switchback jobs watch ${id}')\n`,
    );
    process.exit(130);
  };
  process.once("SIGINT", interrupted);
  let job: Job;
  try {
    await followStream(client, token, id, view);
    // the stream's last event is a summary: read the job once more for its steps and outputs
    job = await poll(client, id, view);
  } finally {
    process.off("SIGINT", interrupted);
    view.close();
  }
  if (o.json) printJson(job);
  else {
    const how =
      job.durationMs === null
        ? ""
        : ` in ${job.durationMs < 60_000 ? took(job.durationMs) : clock(job.durationMs)}`;
    process.stdout.write(`job ${job.id} (${job.kind}) ${job.state}${how}\n`);
  }
  if (job.state === "failed") {
    const e = job.error ?? { code: "JOB_FAILED", message: `job ${job.id} failed` };
    throw new SwitchbackError(e.code, e.message);
  }
  if (job.state === "cancelled") {
    throw new SwitchbackError(
      job.error?.code ?? "JOB_CANCELLED",
      job.error?.message ?? `job ${job.id} was cancelled`,
    );
  }
  return job;
}

// ---- operations on a replicated item -----------------------------------------------------------

export interface OperationFlags extends FollowFlags {
  wait?: boolean;
  dryRun?: boolean;
}

interface Started {
  job: { id: string; kind: string; state: string } | null;
  decision: Decision;
}

/** The decision in words: what, which way, what follows, and whether it can be stopped. */
export function printDecision(item: string, d: Decision): void {
  const w = (s: string) => process.stdout.write(`${s}\n`);
  w(`${d.label} of ${item}: ${d.direction}`);
  if (d.drain) w("  - the machine's last changes are drained into a fresh point first (latest)");
  for (const c of d.consequences) w(`  - ${c}`);
  if (d.irreversible) {
    w(
      d.op === "failover"
        ? `  ! the ${d.label} cannot be cancelled once replication has stopped`
        : `  ! the ${d.label} cannot be cancelled once it has started`,
    );
  }
}

/**
 * Starts an operation on an item (POST /v1/items/{item}/{op}): shows the vault's decision, then
 * prints the job id, or follows the job with --wait. A refusal is the vault's 409, thrown before
 * anything starts. --dry-run asks for the decision only.
 */
export async function runOperation(
  item: string,
  op: Decision["op"],
  body: Record<string, unknown>,
  o: OperationFlags,
): Promise<void> {
  const client = vaultClient(o);
  const clean = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
  const path = `/v1/items/${seg(item)}/${op}${o.dryRun ? "?dryRun=true" : ""}`;
  let r: Started;
  try {
    r = await client.post<Started>(path, clean);
  } catch (err) {
    if (err instanceof SwitchbackError && SITE_ID.test(err.message)) {
      throw new SwitchbackError(err.code, await withSiteNames(client, err.message));
    }
    throw err;
  }
  const d = r.decision;
  const words = [d.direction, ...d.consequences].join("\n");
  if (SITE_ID.test(words)) {
    const [direction, ...consequences] = (await withSiteNames(client, words)).split("\n");
    r = { ...r, decision: { ...d, direction: direction!, consequences } };
  }
  if (r.job === null || o.dryRun) {
    if (o.json) printJson(r);
    else {
      printDecision(item, r.decision);
      process.stdout.write("dry run: nothing was started\n");
    }
    return;
  }
  if (!o.json) {
    printDecision(item, r.decision);
    process.stdout.write(`started job ${r.job.id} (${r.job.kind})\n`);
  }
  if (!o.wait) {
    if (o.json) printJson(r);
    return;
  }
  await followJob(client, o, r.job.id);
}

// The lifecycle core words its decisions and refusals with the item's site ids; operators know sites
// by name. Asked only when a sentence holds an id, so this is free once the vault names them itself.
const SITE_ID = /\bsite-[0-9a-z]{12}\b/;

async function withSiteNames(client: VaultClient, text: string): Promise<string> {
  const sites = await client.get<{ id: string; name: string }[]>("/v1/sites");
  const names = new Map(sites.map((x) => [x.id, x.name]));
  return text.replace(new RegExp(SITE_ID.source, "g"), (id) => names.get(id) ?? id);
}

/** An operation's command: its item argument, its own options (`own`), then --wait, --dry-run, --json. */
export function operationCommand(cmd: Command, own: (c: Command) => Command = (c) => c): Command {
  return withVault(
    own(cmd.argument("<item>", "the replicated item (name or id)"))
      .option("--wait", "follow the job until it finishes (exit 0 done, 1 failed)")
      .option("--dry-run", "show what the vault would do, start nothing")
      .option("--json", "print the vault's answer (with --wait: the finished job) as JSON"),
  );
}

/** Shown after the options of the commands that take --point, one line per way to name a point. */
export const POINT_OPTION_HELP = [
  "",
  "Recovery points (--point):",
  "  latest                 drain the machine's last changes first: lowest RPO (needs it running)",
  "  latest-processed       the newest point already stored: lowest RTO",
  "  latest-app-consistent  the newest application-consistent point",
  "  <point id>             a point from 'switchback points list ITEM'",
  "  <ISO time>             the newest point at or before it, e.g. 2025-01-31T09:00:00Z",
].join("\n");

/** Checks --point here, so a typo is refused with the same sentence before the vault is asked. */
export function checkedPoint(p: string | undefined): string | undefined {
  if (p !== undefined) orThrow(parsePointRequest(p));
  return p;
}

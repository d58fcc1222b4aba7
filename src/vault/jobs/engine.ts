// The durable job engine (Temporal's split): a job is an ordered list of named, idempotent steps; each
// step's state, timing and output is committed before the next one starts, under a lease the running
// vault process renews. Every write about a running job checks that this process still holds its
// lease, so after kill -9 (or a stall) another process takes the job over at the step it was on and
// the old one can no longer record anything.
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { type ExpressionBuilder, type Kysely, sql, type Transaction, type Updateable } from "kysely";
import type { Logger } from "pino";
import { SwitchbackError } from "../../domain/errors.ts";
import type { VaultDb } from "../db/database.ts";
import { now, readJson, writeJson } from "../db/json.ts";
import { isUniqueViolation } from "../db/migrations.ts";
import type { JobsTable, VaultDatabase } from "../db/schema.ts";
import { jobNotFound, type ListJobsQuery, listJobs, readJob, readLogs } from "./store.ts";
import {
  isFinished,
  isRetryable,
  type JobEvent,
  type JobId,
  type JobKind,
  type JobLogView,
  type JobSummary,
  type JobView,
  type LogLevel,
  type StepContext,
  type StepDef,
  type StepView,
  type StoredJobSummary,
} from "./types.ts";

export interface JobEngineOptions {
  vdb: VaultDb;
  /** this process's name in leases; unique per running process (e.g. "<host>:<pid>") */
  owner: string;
  // biome-ignore lint/suspicious/noExplicitAny: kinds of every parameter type
  kinds: JobKind<any>[];
  /** how long a claim holds without renewal; renewed every third of it (default 15 s) */
  leaseMs?: number;
  /** how often to look for runnable jobs, and how often a watcher re-reads (default 500 ms) */
  pollMs?: number;
  /** jobs run at once by this process (default 4), besides those of the lanes below */
  concurrency?: number;
  /**
   * Kinds that get their own slots: a recovery plan's job waits for the item jobs it starts, so
   * plans must never take the slots those item jobs need (four plans would wait for ever).
   */
  lanes?: { name: string; match: (kind: string) => boolean; concurrency: number }[];
  log: Logger;
  /** called after a job succeeded, failed or was cancelled here (alerts on failure) */
  onFinished?: (job: JobView) => void | Promise<void>;
}

export interface CreateJobInput {
  itemId?: string | null;
  planId?: string | null;
  params: unknown;
  createdBy?: string | null;
}

const AnyJson = Type.Unknown();

/** Job progress is written at most this often (a step may report it thousands of times). */
const PROGRESS_WRITE_MS = 250;

/** Thrown when a write finds that this process no longer holds the job's lease. */
class LeaseLost extends Error {}

/** Thrown out of waitFor when the signal is not there yet: the step is parked, not failed. */
class WaitSuspended extends Error {}

type Db = Kysely<VaultDatabase>;
type Tx = Transaction<VaultDatabase>;

interface ActiveRun {
  jobId: JobId;
  controller: AbortController;
  done: Promise<void>;
  /** set when the run is giving the lease back itself (finish, park, release): renewal stops */
  releasing: boolean;
  leaseLost: boolean;
  leaseUntil: number;
  renewing: boolean;
}

type StepOutcome =
  | { type: "succeeded"; output: unknown }
  | { type: "failed"; code: string; message: string }
  | { type: "waiting"; name: string; reason: string }
  | { type: "interrupted" };

// Crockford's base32 in lower case, as the vault's other ids (src/vault/ids.ts).
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function newJobId(): JobId {
  let s = "";
  for (const b of randomBytes(12)) s += ALPHABET[b & 31];
  return `job-${s}` as JobId;
}

/** A job this process may claim: queued, abandoned by a dead lease holder, or waiting with its signal. */
function runnable(at: string) {
  return (eb: ExpressionBuilder<VaultDatabase, "jobs">) =>
    eb.and([
      eb("finished_at", "is", null),
      eb.or([eb("lease_until", "is", null), eb("lease_until", "<", at)]),
      eb.or([
        eb("state", "=", "queued"),
        eb("state", "=", "running"),
        eb.and([
          eb("state", "=", "waiting"),
          eb.exists(
            eb
              .selectFrom("job_signals")
              .select("job_signals.job_id")
              .whereRef("job_signals.job_id", "=", "jobs.id")
              .whereRef("job_signals.name", "=", "jobs.waiting_for"),
          ),
        ]),
      ]),
    ]);
}

function describeError(err: unknown): { code: string; message: string } {
  if (err instanceof SwitchbackError) return { code: err.code, message: err.message };
  return { code: "STEP_FAILED", message: err instanceof Error ? err.message : String(err) };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export class JobEngine {
  readonly #db: Db;
  readonly #owner: string;
  // biome-ignore lint/suspicious/noExplicitAny: kinds of every parameter type
  readonly #kinds = new Map<string, JobKind<any>>();
  readonly #leaseMs: number;
  readonly #pollMs: number;
  readonly #concurrency: number;
  readonly #lanes: { name: string; match: (kind: string) => boolean; concurrency: number }[];
  /** the lane each running job counts against ("" for the default one) */
  readonly #laneOfRun = new Map<JobId, string>();
  readonly #log: Logger;
  readonly #onFinished: JobEngineOptions["onFinished"];
  /** in-process change notifications, by job id: watchers re-read at once instead of at the next poll */
  readonly #events = new EventEmitter();
  readonly #runs = new Map<JobId, ActiveRun>();
  #started = false;
  #stopping = false;
  #pollTimer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | null = null;
  #tickAgain = false;

  constructor(opts: JobEngineOptions) {
    this.#db = opts.vdb.db;
    this.#owner = opts.owner;
    for (const k of opts.kinds) this.#kinds.set(k.kind, k);
    this.#leaseMs = opts.leaseMs ?? 15_000;
    this.#pollMs = opts.pollMs ?? 500;
    this.#concurrency = opts.concurrency ?? 4;
    this.#lanes = opts.lanes ?? [];
    this.#log = opts.log;
    this.#onFinished = opts.onFinished;
    this.#events.setMaxListeners(0);
  }

  // ---- creating and controlling jobs -------------------------------------------------------------

  /** Validates the parameters and stores the job with its steps; refuses a second unfinished job on an item. */
  async create(kindName: string, input: CreateJobInput): Promise<JobView> {
    const kind = this.#kind(kindName);
    if (!Value.Check(kind.params, input.params)) {
      const first = Value.Errors(kind.params, input.params).First();
      const field = first?.path ? `params${first.path.replaceAll("/", ".")}` : "params";
      throw new SwitchbackError(
        "JOB_PARAMS_INVALID",
        `${field} of a ${kindName} job ${first ? `is not valid: ${first.message}` : "is not valid"} (got ${JSON.stringify(first?.value)}); fix the request and try again`,
      );
    }
    const steps = kind.steps(input.params);
    const names = new Set(steps.map((s) => s.name));
    if (names.size !== steps.length) {
      throw new SwitchbackError(
        "JOB_KIND_INVALID",
        `job kind ${kindName} gives two steps the same name (${steps.map((s) => s.name).join(", ")}); step names must be unique within a job`,
      );
    }
    const itemId = input.itemId ?? null;
    for (let attempt = 0; ; attempt++) {
      const id = newJobId();
      const at = now();
      try {
        await this.#db.transaction().execute(async (trx) => {
          await trx
            .insertInto("jobs")
            .values({
              id,
              kind: kindName,
              item_id: itemId,
              plan_id: input.planId ?? null,
              state: "queued",
              waiting_for: null,
              params: writeJson(input.params),
              step: 0,
              progress: 0,
              error_code: null,
              error_message: null,
              lease_owner: null,
              lease_until: null,
              created_by: input.createdBy ?? null,
              created_at: at,
              started_at: null,
              finished_at: null,
            })
            .execute();
          if (steps.length > 0) {
            await trx
              .insertInto("job_steps")
              .values(
                steps.map((s, idx) => ({
                  job_id: id,
                  idx,
                  name: s.name,
                  state: "pending",
                  output: null,
                  started_at: null,
                  finished_at: null,
                  attempts: 0,
                })),
              )
              .execute();
          }
          await this.#insertLog(
            trx,
            id,
            "info",
            null,
            `created${input.createdBy ? ` by ${input.createdBy}` : ""}`,
          );
        });
        this.#wake(id);
        this.#kick();
        return await this.get(id);
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        if (itemId !== null) await this.#refuseIfBusy(itemId);
        // the conflicting job finished in between (or, vanishingly rarely, the id collided): try again
        if (attempt >= 2) throw err;
      }
    }
  }

  /**
   * Why a job cannot be cancelled now (the JOB_NOT_CANCELLABLE message), or null when it can: the one
   * rule cancel() enforces and every view shows as `cancellable`, so what the API offers and what it
   * does cannot drift. A job can be cancelled while it is queued or waits, unless a step marked
   * irreversible has run. `steps` are the job's steps; a list passes them only for queued and waiting
   * jobs, since any other state is refused whatever its steps.
   */
  #cancelRefusal(
    job: Pick<StoredJobSummary, "id" | "kind" | "state" | "params" | "step">,
    steps: readonly Pick<StepView, "idx" | "name" | "state">[],
  ): string | null {
    if (isFinished(job.state)) {
      return `job ${job.id} (${job.kind}) has already ${job.state === "cancelled" ? "been cancelled" : job.state}; there is nothing to cancel`;
    }
    const kind = this.#kinds.get(job.kind);
    const succeeded = steps.filter((s) => s.state === "succeeded");
    if (kind && succeeded.length > 0) {
      let defs: StepDef[] | null;
      try {
        defs = kind.steps(job.params);
      } catch {
        defs = null; // parameters this vault cannot read: which steps are irreversible is unknown
      }
      if (defs === null) {
        return `job ${job.id} (${job.kind}) cannot be cancelled: its parameters do not give this vault its steps, so whether a step that cannot be undone has run is unknown`;
      }
      const done = succeeded.find((s) => defs[s.idx]?.irreversible);
      if (done) {
        return `job ${job.id} (${job.kind}) cannot be cancelled: its step "${done.name}" cannot be undone and has already run; let the job finish`;
      }
    }
    if (job.state !== "queued" && job.state !== "waiting") {
      const running = steps.find((s) => s.idx === job.step)?.name;
      return `job ${job.id} (${job.kind}) is running${running ? ` step "${running}"` : ""}; a job can be cancelled only before its first step or while it waits — wait for it to finish or reach a wait`;
    }
    return null;
  }

  /** Cancels a job that is queued or waiting, unless a step marked irreversible has already run. */
  async cancel(jobId: JobId, by?: string): Promise<JobView> {
    const job = await this.get(jobId);
    const refusal = this.#cancelRefusal(job, job.steps);
    if (refusal !== null) throw new SwitchbackError("JOB_NOT_CANCELLABLE", refusal);
    const at = now();
    await this.#db.transaction().execute(async (trx) => {
      const r = await trx
        .updateTable("jobs")
        .set({ state: "cancelled", finished_at: at, waiting_for: null, lease_owner: null, lease_until: null })
        .where("id", "=", jobId)
        .where("state", "=", job.state)
        .where("finished_at", "is", null)
        .where((eb) => eb.or([eb("lease_until", "is", null), eb("lease_until", "<", at)]))
        .executeTakeFirst();
      if (r.numUpdatedRows !== 1n) {
        throw new SwitchbackError(
          "JOB_NOT_CANCELLABLE",
          `job ${jobId} (${job.kind}) started running while it was being cancelled; look at it again and cancel it when it waits`,
        );
      }
      await trx
        .updateTable("job_steps")
        .set({ state: "skipped" })
        .where("job_id", "=", jobId)
        .where("state", "in", ["pending", "waiting"])
        .execute();
      await this.#insertLog(trx, jobId, "warn", null, `cancelled${by ? ` by ${by}` : ""}`);
    });
    this.#wake(jobId);
    await this.#notifyFinished(jobId);
    return this.get(jobId);
  }

  /** Runs a failed job again from the step that failed. */
  async retry(jobId: JobId, by?: string): Promise<JobView> {
    const job = await this.get(jobId);
    if (job.state !== "failed") {
      throw new SwitchbackError(
        "JOB_NOT_RETRYABLE",
        `job ${jobId} (${job.kind}) is ${job.state}; only a failed job can be retried`,
      );
    }
    const stepName = job.steps[job.step]?.name ?? "(none)";
    try {
      await this.#db.transaction().execute(async (trx) => {
        const r = await trx
          .updateTable("jobs")
          .set({
            state: "queued",
            finished_at: null,
            error_code: null,
            error_message: null,
            lease_owner: null,
            lease_until: null,
          })
          .where("id", "=", jobId)
          .where("state", "=", "failed")
          .executeTakeFirst();
        if (r.numUpdatedRows !== 1n) {
          throw new SwitchbackError(
            "JOB_NOT_RETRYABLE",
            `job ${jobId} changed while being retried; look at it again`,
          );
        }
        await trx
          .updateTable("job_steps")
          .set({ state: "pending", finished_at: null })
          .where("job_id", "=", jobId)
          .where("state", "=", "failed")
          .execute();
        await this.#insertLog(
          trx,
          jobId,
          "info",
          null,
          `retried${by ? ` by ${by}` : ""}; resumes at step "${stepName}"`,
        );
      });
    } catch (err) {
      if (isUniqueViolation(err) && job.itemId !== null) await this.#refuseIfBusy(job.itemId);
      throw err;
    }
    this.#wake(jobId);
    this.#kick();
    return this.get(jobId);
  }

  /**
   * Stores signal `name` for a job (an approval, an answer) and wakes the job if it waits for it.
   * The first signal of a name wins; returns false when one was already stored.
   */
  async signal(jobId: JobId, name: string, data: unknown = null, by?: string): Promise<boolean> {
    const job = await this.#db
      .selectFrom("jobs")
      .select(["state", "kind"])
      .where("id", "=", jobId)
      .executeTakeFirst();
    if (!job) throw jobNotFound(jobId);
    if (isFinished(job.state as JobView["state"])) {
      throw new SwitchbackError(
        "JOB_FINISHED",
        `job ${jobId} (${job.kind}) has already ${job.state}; signal "${name}" can no longer change it`,
      );
    }
    let text: string;
    try {
      text = writeJson(data);
    } catch (err) {
      throw new SwitchbackError(
        "JOB_SIGNAL_INVALID",
        `the data of signal "${name}" for job ${jobId} cannot be stored as JSON (${(err as Error).message})`,
      );
    }
    const stored = await this.#db.transaction().execute(async (trx) => {
      const r = await trx
        .insertInto("job_signals")
        .values({ job_id: jobId, name, data: text, at: now() })
        .onConflict((oc) => oc.columns(["job_id", "name"]).doNothing())
        .executeTakeFirst();
      const inserted = (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
      if (inserted)
        await this.#insertLog(
          trx,
          jobId,
          "info",
          null,
          `signal "${name}" received${by ? ` from ${by}` : ""}`,
        );
      return inserted;
    });
    this.#wake(jobId);
    this.#kick();
    return stored;
  }

  // ---- reading -----------------------------------------------------------------------------------

  async get(jobId: JobId): Promise<JobView> {
    const job = await readJob(this.#db, jobId);
    return { ...job, cancellable: this.#cancelRefusal(job, job.steps) === null };
  }

  async list(q: ListJobsQuery = {}): Promise<JobSummary[]> {
    const jobs = await listJobs(this.#db, q);
    // the steps that decide `cancellable` matter only for queued and waiting jobs: read theirs alone
    const open = jobs.filter((j) => j.state === "queued" || j.state === "waiting").map((j) => j.id);
    const done = new Map<string, { idx: number; name: string; state: "succeeded" }[]>();
    for (let i = 0; i < open.length; i += 500) {
      const rows = await this.#db
        .selectFrom("job_steps")
        .select(["job_id", "idx", "name"])
        .where("job_id", "in", open.slice(i, i + 500))
        .where("state", "=", "succeeded")
        .execute();
      for (const r of rows) {
        const list = done.get(r.job_id) ?? [];
        list.push({ idx: r.idx, name: r.name, state: "succeeded" });
        done.set(r.job_id, list);
      }
    }
    return jobs.map((j) => ({ ...j, cancellable: this.#cancelRefusal(j, done.get(j.id) ?? []) === null }));
  }

  logs(jobId: JobId, afterId = 0): Promise<JobLogView[]> {
    return readLogs(this.#db, jobId, afterId);
  }

  /**
   * Yields what changes in a job (steps, log lines, then the job itself) until it finishes or `signal`
   * aborts. Reads the database, so it follows jobs run by another process; changes made in this
   * process wake it at once, others are seen within pollMs.
   */
  async *watch(jobId: JobId, opts: { signal?: AbortSignal } = {}): AsyncGenerator<JobEvent> {
    let lastJob = "";
    const lastSteps = new Map<number, string>();
    let lastLog = 0;
    for (;;) {
      const wake = this.#nextWake(jobId, opts.signal);
      try {
        const { steps, ...summary } = await this.get(jobId);
        for (const step of steps) {
          const key = JSON.stringify([step.state, step.attempts, step.startedAt, step.finishedAt]);
          if (lastSteps.get(step.idx) !== key) {
            lastSteps.set(step.idx, key);
            yield { type: "step", jobId, step };
          }
        }
        for (;;) {
          const logs = await this.logs(jobId, lastLog);
          for (const log of logs) {
            lastLog = log.id;
            yield { type: "log", log };
          }
          if (logs.length < 1000) break;
        }
        const { lease: _lease, ...shown } = summary;
        const key = JSON.stringify(shown);
        if (key !== lastJob) {
          lastJob = key;
          yield { type: "job", job: summary };
        }
        if (isFinished(summary.state) || opts.signal?.aborted) return;
        await wake.promise;
      } finally {
        wake.cancel();
      }
    }
  }

  // ---- running -----------------------------------------------------------------------------------

  /** Starts claiming and running jobs. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#stopping = false;
    this.#kick();
  }

  /** Stops claiming, aborts running steps, waits for them to settle and gives their jobs back. */
  async stop(): Promise<void> {
    if (!this.#started || this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#pollTimer);
    await this.#ticking;
    const reason = new SwitchbackError(
      "VAULT_STOPPING",
      "the vault is stopping; the job resumes at this step when a vault process runs again",
    );
    const runs = [...this.#runs.values()];
    for (const run of runs) run.controller.abort(reason);
    await Promise.allSettled(runs.map((r) => r.done));
    this.#started = false;
    this.#stopping = false;
  }

  #kick(): void {
    if (!this.#started || this.#stopping) return;
    if (this.#ticking) {
      this.#tickAgain = true;
      return;
    }
    clearTimeout(this.#pollTimer);
    this.#ticking = this.#claimRunnable()
      .catch((err) =>
        this.#log.error({ err }, "looking for runnable jobs failed; trying again at the next poll"),
      )
      .finally(() => {
        this.#ticking = null;
        if (this.#tickAgain) {
          this.#tickAgain = false;
          this.#kick();
        } else if (this.#started && !this.#stopping) {
          this.#pollTimer = setTimeout(() => this.#kick(), this.#pollMs);
        }
      });
  }

  async #claimRunnable(): Promise<void> {
    const capacity = this.#concurrency + this.#lanes.reduce((n, l) => n + l.concurrency, 0);
    if (this.#runs.size >= capacity || this.#kinds.size === 0) return;
    const candidates = await this.#db
      .selectFrom("jobs")
      .select(["id", "kind"])
      .where("kind", "in", [...this.#kinds.keys()])
      .where(runnable(now()))
      .orderBy("created_at")
      .orderBy("id")
      .limit(capacity * 2)
      .execute();
    for (const { id, kind } of candidates) {
      if (this.#stopping) return;
      if (this.#runs.has(id as JobId)) continue;
      const lane = this.#lanes.find((l) => l.match(kind));
      const limit = lane?.concurrency ?? this.#concurrency;
      const name = lane?.name ?? "";
      const used = [...this.#laneOfRun.values()].filter((n) => n === name).length;
      if (used >= limit) continue;
      if (await this.#claim(id as JobId)) {
        this.#laneOfRun.set(id as JobId, name);
        this.#launch(id as JobId);
      }
    }
  }

  /** Atomically takes the job's lease; false when another process got it first. */
  async #claim(jobId: JobId): Promise<boolean> {
    const at = now();
    const r = await this.#db
      .updateTable("jobs")
      .set({
        state: "running",
        waiting_for: null,
        lease_owner: this.#owner,
        lease_until: new Date(Date.now() + this.#leaseMs).toISOString(),
        started_at: sql<string>`coalesce(started_at, ${at})`,
      })
      .where("id", "=", jobId)
      .where(runnable(at))
      .executeTakeFirst();
    return r.numUpdatedRows === 1n;
  }

  #launch(jobId: JobId): void {
    const run: ActiveRun = {
      jobId,
      controller: new AbortController(),
      done: Promise.resolve(),
      releasing: false,
      leaseLost: false,
      leaseUntil: Date.now() + this.#leaseMs,
      renewing: false,
    };
    this.#runs.set(jobId, run);
    const renewal = setInterval(() => void this.#renew(run), Math.max(20, Math.floor(this.#leaseMs / 3)));
    run.done = this.#runJob(run)
      .catch((err) => {
        if (err instanceof LeaseLost || run.leaseLost) {
          this.#log.warn({ jobId }, "another vault process took over the job's lease; stopped working on it");
        } else {
          // The database did not take a write: leave the job as it is; when the lease expires it
          // is claimed again (by us or another process) and resumes at the step it was on.
          this.#log.error(
            { err, jobId },
            "recording the job's progress failed; it resumes when its lease expires",
          );
        }
        run.controller.abort(err);
      })
      .finally(() => {
        clearInterval(renewal);
        this.#runs.delete(jobId);
        this.#laneOfRun.delete(jobId);
        this.#wake(jobId);
        this.#kick();
      });
  }

  async #renew(run: ActiveRun): Promise<void> {
    if (run.releasing || run.leaseLost || run.renewing) return;
    run.renewing = true;
    const until = Date.now() + this.#leaseMs;
    try {
      const r = await this.#db
        .updateTable("jobs")
        .set({ lease_until: new Date(until).toISOString() })
        .where("id", "=", run.jobId)
        .where("lease_owner", "=", this.#owner)
        .where("finished_at", "is", null)
        .executeTakeFirst();
      if (r.numUpdatedRows === 1n) run.leaseUntil = until;
      else if (!run.releasing) this.#loseLease(run);
    } catch (err) {
      this.#log.warn({ err, jobId: run.jobId }, "renewing a job's lease failed");
      if (Date.now() > run.leaseUntil && !run.releasing) this.#loseLease(run);
    } finally {
      run.renewing = false;
    }
  }

  #loseLease(run: ActiveRun): void {
    run.leaseLost = true;
    run.controller.abort(
      new SwitchbackError("JOB_LEASE_LOST", `this vault process lost the lease of job ${run.jobId}`),
    );
  }

  /** Updates the job row only while this process holds its lease; otherwise throws LeaseLost. */
  async #updateOwned(trx: Tx, jobId: JobId, values: Updateable<JobsTable>): Promise<void> {
    const r = await trx
      .updateTable("jobs")
      .set(values)
      .where("id", "=", jobId)
      .where("lease_owner", "=", this.#owner)
      .where("finished_at", "is", null)
      .executeTakeFirst();
    if (r.numUpdatedRows !== 1n) throw new LeaseLost();
  }

  async #runJob(run: ActiveRun): Promise<void> {
    const jobId = run.jobId;
    let job: JobView;
    try {
      job = await this.get(jobId);
    } catch (err) {
      // A row that does not parse will not parse on the next claim either: fail the job, visibly.
      if (!(err instanceof SwitchbackError && err.code === "DB_CORRUPT_ROW")) throw err;
      const row = await this.#db
        .selectFrom("jobs")
        .select("step")
        .where("id", "=", jobId)
        .executeTakeFirstOrThrow();
      return this.#finish(run, row.step, { type: "failed", ...describeError(err) }, row.step);
    }
    const kind = this.#kinds.get(job.kind)!;
    let params: unknown;
    let steps: StepDef[];
    try {
      params = readJson(kind.params, JSON.stringify(job.params), {
        table: "jobs",
        column: "params",
        id: jobId,
      });
      steps = kind.steps(params);
    } catch (err) {
      return this.#finish(run, job.step, { type: "failed", ...describeError(err) }, job.steps.length);
    }
    const stored = job.steps.map((s) => s.name).join(", ");
    if (stored !== steps.map((s) => s.name).join(", ")) {
      return this.#finish(
        run,
        job.step,
        {
          type: "failed",
          code: "JOB_STEPS_CHANGED",
          message: `job ${jobId} (${job.kind}) was created with steps ${stored} but this vault's ${job.kind} has steps ${steps.map((s) => s.name).join(", ")}; run it with the vault version that created it, or cancel it and create it again`,
        },
        steps.length,
      );
    }
    const outputs: Record<string, unknown> = {};
    for (const s of job.steps) if (s.state === "succeeded") outputs[s.name] = s.output;
    const attempts = job.steps.map((s) => s.attempts);
    const resumed = attempts.some((a) => a > 0);
    await this.#appendLog(
      jobId,
      "info",
      null,
      resumed
        ? `resumed at step "${steps[job.step]?.name ?? "(end)"}" by ${this.#owner}`
        : `started by ${this.#owner}`,
    );

    for (let i = job.step; i < steps.length; i++) {
      if (run.controller.signal.aborted) return this.#finish(run, i, { type: "interrupted" }, steps.length);
      const outcome = await this.#runStep(run, job, params, steps, i, outputs, attempts);
      if (outcome.type === "succeeded") {
        outputs[steps[i]!.name] = outcome.output;
        continue;
      }
      if (outcome.type === "waiting" && !(await this.#park(run, i, outcome.name, outcome.reason))) {
        i--; // the signal arrived while the step was being parked: run the step again now
        continue;
      }
      if (outcome.type !== "waiting") await this.#finish(run, i, outcome, steps.length);
      return;
    }
    await this.#finish(run, steps.length, { type: "succeeded", output: null }, steps.length);
  }

  async #runStep(
    run: ActiveRun,
    job: JobView,
    params: unknown,
    steps: StepDef[],
    i: number,
    outputs: Record<string, unknown>,
    attempts: number[],
  ): Promise<StepOutcome> {
    const def = steps[i]!;
    const total = steps.length;
    let retriesLeft = def.retries ?? 0;
    let delay = def.backoffMs ?? 1000;
    for (;;) {
      const attempt = (attempts[i] ?? 0) + 1;
      const startedAt = now();
      await this.#db.transaction().execute(async (trx) => {
        await this.#updateOwned(trx, run.jobId, { state: "running", step: i, progress: i / total });
        await trx
          .updateTable("job_steps")
          .set({
            state: "running",
            attempts: attempt,
            started_at: sql<string>`coalesce(started_at, ${startedAt})`,
            finished_at: null,
          })
          .where("job_id", "=", run.jobId)
          .where("idx", "=", i)
          .execute();
      });
      attempts[i] = attempt;
      this.#wake(run.jobId);

      const step = this.#stepContext(run, job, params, def.name, i, total, attempt, outputs);
      const t0 = Date.now();
      let result: unknown;
      let error: unknown;
      let threw = false;
      try {
        result = await def.run(step.ctx);
      } catch (err) {
        threw = true;
        error = err;
      }
      await step.settle();
      if (step.suspended) return { type: "waiting", ...step.suspended };
      if (threw && run.controller.signal.aborted) return { type: "interrupted" };
      if (threw && isRetryable(error) && retriesLeft > 0) {
        const { code, message } = describeError(error);
        await this.#appendLog(
          run.jobId,
          "warn",
          i,
          `attempt ${attempt} of step "${def.name}" failed (${code}: ${message}); retrying in ${seconds(delay)}`,
        );
        try {
          await sleep(delay, undefined, { signal: run.controller.signal });
        } catch {
          return { type: "interrupted" };
        }
        retriesLeft--;
        delay *= 2;
        continue;
      }
      if (threw) return { type: "failed", ...describeError(error) };

      let text: string;
      try {
        text = writeJson(result);
      } catch (err) {
        return {
          type: "failed",
          code: "STEP_OUTPUT_NOT_JSON",
          message: `step "${def.name}" returned a value that cannot be stored as JSON (${(err as Error).message}); a step's output must be JSON`,
        };
      }
      const finishedAt = now();
      await this.#db.transaction().execute(async (trx) => {
        await this.#updateOwned(trx, run.jobId, { step: i + 1, progress: (i + 1) / total });
        await trx
          .updateTable("job_steps")
          .set({ state: "succeeded", output: text, finished_at: finishedAt })
          .where("job_id", "=", run.jobId)
          .where("idx", "=", i)
          .execute();
        await this.#insertLog(
          trx,
          run.jobId,
          "info",
          i,
          `step "${def.name}" done in ${seconds(Date.now() - t0)}`,
        );
      });
      this.#wake(run.jobId);
      // what later steps read is what a restart would read back: the stored JSON
      return { type: "succeeded", output: JSON.parse(text) };
    }
  }

  #stepContext(
    run: ActiveRun,
    job: JobView,
    params: unknown,
    name: string,
    i: number,
    total: number,
    attempt: number,
    outputs: Record<string, unknown>,
  ): { ctx: StepContext; settle(): Promise<void>; suspended: { name: string; reason: string } | null } {
    // Log lines and progress are written in order on one chain; the step's result is recorded only
    // after the chain is flushed, so a watcher never sees a step done before its last log line.
    let chain: Promise<void> = Promise.resolve();
    let chainError: unknown = null;
    const enqueue = (write: () => Promise<unknown>) => {
      chain = chain.then(write).then(
        () => this.#wake(run.jobId),
        (err) => {
          chainError ??= err;
        },
      );
    };
    let lastProgressWrite = 0;
    let pendingProgress = 0;
    let progressTimer: NodeJS.Timeout | undefined;
    const writeProgress = () => {
      progressTimer = undefined;
      lastProgressWrite = Date.now();
      const value = pendingProgress;
      enqueue(() =>
        this.#db
          .updateTable("jobs")
          .set({ progress: value })
          .where("id", "=", run.jobId)
          .where("lease_owner", "=", this.#owner)
          .execute(),
      );
    };
    const state = {
      suspended: null as { name: string; reason: string } | null,
      async settle() {
        clearTimeout(progressTimer);
        await chain;
        if (chainError) throw chainError;
      },
      ctx: {
        jobId: run.jobId,
        itemId: job.itemId,
        planId: job.planId,
        params,
        step: name,
        attempt,
        outputs: { ...outputs },
        signal: run.controller.signal,
        log: (level: LogLevel, message: string, data?: Record<string, unknown>) => {
          enqueue(() => this.#appendLog(run.jobId, level, i, message, data));
        },
        progress: (fraction: number) => {
          const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
          pendingProgress = (i + f) / total;
          const wait = PROGRESS_WRITE_MS - (Date.now() - lastProgressWrite);
          if (wait <= 0) writeProgress();
          else progressTimer ??= setTimeout(writeProgress, wait);
        },
        waitFor: async (signalName: string, reason: string): Promise<unknown> => {
          const row = await this.#db
            .selectFrom("job_signals")
            .select("data")
            .where("job_id", "=", run.jobId)
            .where("name", "=", signalName)
            .executeTakeFirst();
          if (row) {
            return readJson(AnyJson, row.data, {
              table: "job_signals",
              column: "data",
              id: `${run.jobId}/${signalName}`,
            });
          }
          state.suspended = { name: signalName, reason };
          throw new WaitSuspended(`job ${run.jobId} waits for signal "${signalName}": ${reason}`);
        },
      } satisfies StepContext,
    };
    return state;
  }

  /** Parks the job until its signal arrives; false when the signal is already there (run the step again). */
  async #park(run: ActiveRun, i: number, name: string, reason: string): Promise<boolean> {
    run.releasing = true;
    const parked = await this.#db.transaction().execute(async (trx) => {
      const signal = await trx
        .selectFrom("job_signals")
        .select("name")
        .where("job_id", "=", run.jobId)
        .where("name", "=", name)
        .executeTakeFirst();
      if (signal) return false;
      await this.#updateOwned(trx, run.jobId, {
        state: "waiting",
        waiting_for: name,
        lease_owner: null,
        lease_until: null,
      });
      await trx
        .updateTable("job_steps")
        .set({ state: "waiting" })
        .where("job_id", "=", run.jobId)
        .where("idx", "=", i)
        .execute();
      await this.#insertLog(trx, run.jobId, "info", i, `waiting for signal "${name}": ${reason}`);
      return true;
    });
    if (!parked) run.releasing = false;
    this.#wake(run.jobId);
    return parked;
  }

  /** Records how the run ended: succeeded, failed, or interrupted (the lease is given back). */
  async #finish(
    run: ActiveRun,
    i: number,
    outcome: Exclude<StepOutcome, { type: "waiting" }>,
    total: number,
  ): Promise<void> {
    if (outcome.type === "interrupted" && run.leaseLost) throw new LeaseLost();
    run.releasing = true;
    const at = now();
    const jobId = run.jobId;
    await this.#db.transaction().execute(async (trx) => {
      switch (outcome.type) {
        case "succeeded": {
          await this.#updateOwned(trx, jobId, {
            state: "succeeded",
            step: total,
            progress: 1,
            finished_at: at,
            lease_owner: null,
            lease_until: null,
          });
          const row = await trx
            .selectFrom("jobs")
            .select("started_at")
            .where("id", "=", jobId)
            .executeTakeFirst();
          const took = row?.started_at ? ` in ${seconds(Date.parse(at) - Date.parse(row.started_at))}` : "";
          await this.#insertLog(trx, jobId, "info", null, `succeeded${took}`);
          break;
        }
        case "failed": {
          await this.#updateOwned(trx, jobId, {
            state: "failed",
            error_code: outcome.code,
            error_message: outcome.message,
            finished_at: at,
            lease_owner: null,
            lease_until: null,
          });
          await trx
            .updateTable("job_steps")
            .set({ state: "failed", finished_at: at })
            .where("job_id", "=", jobId)
            .where("idx", "=", i)
            .execute();
          const step = await trx
            .selectFrom("job_steps")
            .select("name")
            .where("job_id", "=", jobId)
            .where("idx", "=", i)
            .executeTakeFirst();
          await this.#insertLog(
            trx,
            jobId,
            "error",
            step ? i : null,
            `${step ? `step "${step.name}" failed` : "failed"}: ${outcome.code}: ${outcome.message}`,
          );
          break;
        }
        case "interrupted": {
          await this.#updateOwned(trx, jobId, { state: "queued", lease_owner: null, lease_until: null });
          await trx
            .updateTable("job_steps")
            .set({ state: "pending" })
            .where("job_id", "=", jobId)
            .where("idx", "=", i)
            .where("state", "=", "running")
            .execute();
          await this.#insertLog(
            trx,
            jobId,
            "warn",
            null,
            `interrupted: ${this.#owner} is stopping; the job resumes at this step`,
          );
          break;
        }
        default: {
          const never: never = outcome;
          throw new Error(`unhandled outcome ${JSON.stringify(never)}`);
        }
      }
    });
    this.#wake(jobId);
    if (outcome.type === "succeeded") this.#log.info({ jobId }, "job succeeded");
    if (outcome.type === "failed")
      this.#log.error({ jobId, code: outcome.code }, `job failed: ${outcome.message}`);
    if (outcome.type !== "interrupted") await this.#notifyFinished(jobId);
  }

  async #notifyFinished(jobId: JobId): Promise<void> {
    if (!this.#onFinished) return;
    try {
      await this.#onFinished(await this.get(jobId));
    } catch (err) {
      // the job's own record is committed; the hook (alerting) can only report its failure here
      this.#log.error({ err, jobId }, "the job-finished hook failed");
    }
  }

  // ---- helpers -----------------------------------------------------------------------------------

  // biome-ignore lint/suspicious/noExplicitAny: kinds of every parameter type
  #kind(name: string): JobKind<any> {
    const kind = this.#kinds.get(name);
    if (!kind) {
      throw new SwitchbackError(
        "JOB_KIND_UNKNOWN",
        `job kind ${JSON.stringify(name)} is not known to this vault; known kinds: ${[...this.#kinds.keys()].join(", ") || "(none)"}`,
      );
    }
    return kind;
  }

  async #refuseIfBusy(itemId: string): Promise<void> {
    const busy = await this.#db
      .selectFrom("jobs")
      .select(["id", "kind", "state"])
      .where("item_id", "=", itemId)
      .where("finished_at", "is", null)
      .executeTakeFirst();
    if (busy) {
      throw new SwitchbackError(
        "ITEM_BUSY",
        `item ${JSON.stringify(itemId)} already has an unfinished ${busy.kind} job ${busy.id} (${busy.state}); wait for it to finish or cancel it, then try again`,
      );
    }
  }

  async #insertLog(
    db: Db | Tx,
    jobId: JobId,
    level: LogLevel,
    step: number | null,
    message: string,
    data?: Record<string, unknown>,
  ): Promise<void> {
    let text: string | null = null;
    if (data !== undefined) {
      try {
        text = writeJson(data);
      } catch (err) {
        text = writeJson({ unserialisable: (err as Error).message });
      }
    }
    await db
      .insertInto("job_logs")
      .values({ job_id: jobId, at: now(), level, step, message, data: text })
      .execute();
    this.#log[level]({ jobId, step, ...(data ? { data } : {}) }, message);
  }

  async #appendLog(
    jobId: JobId,
    level: LogLevel,
    step: number | null,
    message: string,
    data?: Record<string, unknown>,
  ): Promise<void> {
    await this.#insertLog(this.#db, jobId, level, step, message, data);
    this.#wake(jobId);
  }

  #wake(jobId: JobId): void {
    this.#events.emit(jobId);
  }

  #nextWake(jobId: JobId, signal?: AbortSignal): { promise: Promise<void>; cancel(): void } {
    let cancel = () => {};
    const promise = new Promise<void>((resolve) => {
      const done = () => {
        cancel();
        resolve();
      };
      const timer = setTimeout(done, this.#pollMs);
      this.#events.on(jobId, done);
      signal?.addEventListener("abort", done, { once: true });
      cancel = () => {
        clearTimeout(timer);
        this.#events.off(jobId, done);
        signal?.removeEventListener("abort", done);
      };
    });
    return { promise, cancel };
  }
}

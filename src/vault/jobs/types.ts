// What a job is to the rest of the vault: a kind (parameter schema + ordered, named, idempotent steps),
// the context a step runs in, and the views and events the engine hands out. No I/O here.
import type { Static, TSchema } from "@sinclair/typebox";
import { SwitchbackError } from "../../domain/errors.ts";
import type { Brand } from "../../domain/ids.ts";

export type JobId = Brand<string, "JobId">;

const JOB_ID = /^job-[0-9a-z]{12}$/;

/** Parses a job id from outside (a URL, the CLI); inside, ids come from the engine already typed. */
export function parseJobId(s: string): JobId {
  if (!JOB_ID.test(s)) {
    throw new SwitchbackError(
      "INVALID_JOB_ID",
      `job id ${JSON.stringify(s)} is not valid; job ids look like job-7k3q9m2x4d1c (see 'jobs list')`,
    );
  }
  return s as JobId;
}

export type JobState = "queued" | "running" | "waiting" | "succeeded" | "failed" | "cancelled";
export type StepState = "pending" | "running" | "waiting" | "succeeded" | "failed" | "skipped";
export type LogLevel = "debug" | "info" | "warn" | "error";

export const FINISHED_STATES: readonly JobState[] = ["succeeded", "failed", "cancelled"];

export function isFinished(state: JobState): boolean {
  return FINISHED_STATES.includes(state);
}

export interface StepContext<P = unknown> {
  jobId: JobId;
  itemId: string | null;
  planId: string | null;
  params: P;
  /** this step's name and 1-based attempt number (attempts survive restarts) */
  step: string;
  attempt: number;
  /** outputs of the steps that already succeeded, by step name, as stored (JSON) */
  outputs: Readonly<Record<string, unknown>>;
  log(level: LogLevel, message: string, data?: Record<string, unknown>): void;
  /** fraction 0..1 of this step done */
  progress(fraction: number): void;
  /** aborted when the engine stops or loses the job's lease: stop soon, the step will run again */
  signal: AbortSignal;
  /**
   * Returns the data of signal `name` once `engine.signal(jobId, name, data)` was called. Until then
   * the job is parked in state "waiting" and this step is abandoned: it runs again from its start
   * when the signal arrives, so everything before waitFor must be idempotent. Let the rejection
   * propagate; use a name once per job.
   */
  waitFor(name: string, reason: string): Promise<unknown>;
}

export interface StepDef<P = unknown> {
  name: string;
  run(ctx: StepContext<P>): Promise<unknown>;
  /** extra attempts for errors marked retryable (RetryableError), with doubling backoff */
  retries?: number;
  /** first retry delay, doubled each time (default 1000 ms) */
  backoffMs?: number;
  /** once this step has run, the job cannot be cancelled (a failover's point of no return) */
  irreversible?: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds kinds of every parameter type
export interface JobKind<P = any> {
  kind: string;
  params: TSchema;
  /** the steps for these parameters (a plan's groups make a plan job's steps) */
  steps(params: P): StepDef<P>[];
}

/** Declares a kind with its parameter type inferred from the schema. */
export function defineJobKind<S extends TSchema>(k: {
  kind: string;
  params: S;
  steps(params: Static<S>): StepDef<Static<S>>[];
}): JobKind<Static<S>> {
  return k;
}

/** A transient failure (a peer not answering yet): the engine retries the step if it allows retries. */
export class RetryableError extends SwitchbackError {
  readonly retryable = true;
}

export function isRetryable(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
}

export interface StepView {
  idx: number;
  name: string;
  state: StepState;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  output: unknown;
}

export interface JobSummary {
  id: JobId;
  kind: string;
  itemId: string | null;
  planId: string | null;
  state: JobState;
  /** while waiting: the signal the job waits for */
  waitingFor: string | null;
  params: unknown;
  /** index of the step the job is on (= number of steps when it succeeded) */
  step: number;
  progress: number;
  error: { code: string; message: string } | null;
  lease: { owner: string; until: string } | null;
  createdBy: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  /**
   * Whether POST /v1/jobs/{job}/cancel would succeed now: the job is queued or waits and no step
   * that cannot be undone has run. The engine decides it with the rule its cancel enforces.
   */
  cancellable: boolean;
}

export interface JobView extends JobSummary {
  steps: StepView[];
}

/** A job as stored, before the engine adds what only its kinds can tell (`cancellable`). */
export type StoredJobSummary = Omit<JobSummary, "cancellable">;
export type StoredJobView = Omit<JobView, "cancellable">;

export interface JobLogView {
  id: number;
  jobId: JobId;
  at: string;
  level: LogLevel;
  /** index of the step that logged it, null for the engine's own lines */
  step: number | null;
  message: string;
  data: unknown;
}

export type JobEvent =
  | { type: "job"; job: JobSummary }
  | { type: "step"; jobId: JobId; step: StepView }
  | { type: "log"; log: JobLogView };

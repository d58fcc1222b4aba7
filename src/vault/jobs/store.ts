// Reading jobs back: rows of jobs, job_steps and job_logs turned into the views the API and the CLI
// show. Every JSON column is parsed here, once; a row that does not parse is DB_CORRUPT_ROW.
import { Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import { readJson, readJsonOrNull } from "../db/json.ts";
import type { JobLogRow, JobRow, JobStepRow, VaultDatabase } from "../db/schema.ts";
import type {
  JobId,
  JobLogView,
  JobState,
  LogLevel,
  StepState,
  StepView,
  StoredJobSummary,
  StoredJobView,
} from "./types.ts";

const AnyJson = Type.Unknown();

function duration(from: string | null, to: string | null): number | null {
  return from && to ? Date.parse(to) - Date.parse(from) : null;
}

export function toSummary(row: JobRow): StoredJobSummary {
  return {
    id: row.id as JobId,
    kind: row.kind,
    itemId: row.item_id,
    planId: row.plan_id,
    state: row.state as JobState,
    waitingFor: row.waiting_for,
    params: readJson(AnyJson, row.params, { table: "jobs", column: "params", id: row.id }),
    step: row.step,
    progress: row.progress,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null,
    lease: row.lease_owner && row.lease_until ? { owner: row.lease_owner, until: row.lease_until } : null,
    createdBy: row.created_by,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: duration(row.started_at, row.finished_at),
  };
}

export function toStepView(row: JobStepRow): StepView {
  return {
    idx: row.idx,
    name: row.name,
    state: row.state as StepState,
    attempts: row.attempts,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: duration(row.started_at, row.finished_at),
    output: readJsonOrNull(AnyJson, row.output, {
      table: "job_steps",
      column: "output",
      id: `${row.job_id}/${row.idx}`,
    }),
  };
}

export function toLogView(row: JobLogRow): JobLogView {
  return {
    id: row.id,
    jobId: row.job_id as JobId,
    at: row.at,
    level: row.level as LogLevel,
    step: row.step,
    message: row.message,
    data: readJsonOrNull(AnyJson, row.data, { table: "job_logs", column: "data", id: row.id }),
  };
}

export function jobNotFound(jobId: string): SwitchbackError {
  return new SwitchbackError(
    "JOB_NOT_FOUND",
    `job ${JSON.stringify(jobId)} does not exist; list jobs with 'switchback jobs list'`,
  );
}

export async function readJob(db: Kysely<VaultDatabase>, jobId: string): Promise<StoredJobView> {
  const row = await db.selectFrom("jobs").selectAll().where("id", "=", jobId).executeTakeFirst();
  if (!row) throw jobNotFound(jobId);
  const steps = await db
    .selectFrom("job_steps")
    .selectAll()
    .where("job_id", "=", jobId)
    .orderBy("idx")
    .execute();
  return { ...toSummary(row), steps: steps.map(toStepView) };
}

export interface ListJobsQuery {
  itemId?: string;
  planId?: string;
  state?: JobState;
  /** only jobs of this kind (test-failover, plan-failover, …) */
  kind?: string;
  /** at most this many, newest first (default 50, at most 1000) */
  limit?: number;
  /** page on: only jobs created before this one */
  before?: JobId;
}

export async function listJobs(db: Kysely<VaultDatabase>, q: ListJobsQuery): Promise<StoredJobSummary[]> {
  let query = db.selectFrom("jobs").selectAll();
  if (q.itemId !== undefined) query = query.where("item_id", "=", q.itemId);
  if (q.planId !== undefined) query = query.where("plan_id", "=", q.planId);
  if (q.state !== undefined) query = query.where("state", "=", q.state);
  if (q.kind !== undefined) query = query.where("kind", "=", q.kind);
  if (q.before !== undefined) {
    const cursor = await db
      .selectFrom("jobs")
      .select(["created_at", "id"])
      .where("id", "=", q.before)
      .executeTakeFirst();
    if (!cursor) throw jobNotFound(q.before);
    // (created_at, id) as the cursor: jobs created in the same millisecond are neither skipped nor repeated
    query = query.where((eb) =>
      eb.or([
        eb("created_at", "<", cursor.created_at),
        eb.and([eb("created_at", "=", cursor.created_at), eb("id", "<", cursor.id)]),
      ]),
    );
  }
  const limit = Math.max(1, Math.min(q.limit ?? 50, 1000));
  const rows = await query.orderBy("created_at", "desc").orderBy("id", "desc").limit(limit).execute();
  return rows.map(toSummary);
}

export async function readLogs(
  db: Kysely<VaultDatabase>,
  jobId: string,
  afterId = 0,
  limit = 1000,
): Promise<JobLogView[]> {
  const rows = await db
    .selectFrom("job_logs")
    .selectAll()
    .where("job_id", "=", jobId)
    .where("id", ">", afterId)
    .orderBy("id")
    .limit(limit)
    .execute();
  return rows.map(toLogView);
}

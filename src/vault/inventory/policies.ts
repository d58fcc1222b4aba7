// Replication policies: RPO threshold (an alert, not a schedule), recovery-point retention, and how
// often crash- and app-consistent points are taken. Rules, checked on create and on every update of
// the merged result: RPO threshold > 0; crash-consistent frequency > 0; retention ≥ crash-consistent
// frequency (or no point would outlive the next); app-consistent frequency 0 (none) or ≥ the
// crash-consistent one (app points are the rarer, costlier kind). Failback policies are derived:
// same values, name "<name>-failback", derived_from set.
import type { Kysely } from "kysely";
import { formatDuration, parseDuration } from "../../domain/duration.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import type { PolicyRow, VaultDatabase } from "../db/schema.ts";
import type { CreatePolicy, Policy, UpdatePolicy } from "../http/schemas.ts";
import { newId } from "../ids.ts";
import { checkName, findByRef, insertUnique, notFound } from "./common.ts";

export interface PolicyValues {
  rpoThresholdSeconds: number;
  retentionSeconds: number;
  /** 0: no app-consistent points */
  appConsistentEverySeconds: number;
  crashConsistentEverySeconds: number;
}

export function toPolicy(r: PolicyRow): Policy {
  return {
    id: r.id,
    name: r.name,
    rpoThresholdSeconds: r.rpo_threshold_s,
    retentionSeconds: r.retention_s,
    appConsistentEverySeconds: r.app_consistent_every_s,
    crashConsistentEverySeconds: r.crash_consistent_every_s,
    derivedFrom: r.derived_from,
    createdAt: r.created_at,
  };
}

/** A duration field as whole seconds; "0" and "none" mean never where `zeroOk`. */
function seconds(field: string, s: string, zeroOk = false): number {
  if (zeroOk && (s === "0" || s === "none")) return 0;
  let ms: number;
  try {
    ms = parseDuration(s, `field "${field}"`);
  } catch (err) {
    if (err instanceof SwitchbackError) throw new SwitchbackError("INVALID_REQUEST", err.message);
    throw err;
  }
  const sec = Math.round(ms / 1000);
  if (sec <= 0 && !(zeroOk && ms === 0)) {
    throw new SwitchbackError(
      "INVALID_REQUEST",
      `field "${field}" is ${s}; it must be at least 1s${zeroOk ? " (or 0 / none for never)" : ""}`,
    );
  }
  return sec;
}

/** Checks the rules between the values; the error names the field to change. */
export function validatePolicy(v: PolicyValues): void {
  const d = (s: number) => formatDuration(s * 1000);
  if (!(v.rpoThresholdSeconds > 0))
    throw new SwitchbackError("INVALID_REQUEST", `field "rpoThreshold" must be more than 0`);
  if (!(v.crashConsistentEverySeconds > 0))
    throw new SwitchbackError("INVALID_REQUEST", `field "crashConsistentEvery" must be more than 0`);
  if (v.retentionSeconds < v.crashConsistentEverySeconds) {
    throw new SwitchbackError(
      "INVALID_REQUEST",
      `field "retention" is ${d(v.retentionSeconds)}, shorter than crash-consistent points are taken (every ${d(v.crashConsistentEverySeconds)}); make retention at least that long`,
    );
  }
  if (v.appConsistentEverySeconds !== 0 && v.appConsistentEverySeconds < v.crashConsistentEverySeconds) {
    throw new SwitchbackError(
      "INVALID_REQUEST",
      `field "appConsistentEvery" is ${d(v.appConsistentEverySeconds)}, more often than crash-consistent points (every ${d(v.crashConsistentEverySeconds)}); make it at least that long, or 0 for no app-consistent points`,
    );
  }
}

export async function createPolicy(
  db: Kysely<VaultDatabase>,
  input: CreatePolicy,
  now: Date,
): Promise<Policy> {
  checkName("policy", input.name);
  const v: PolicyValues = {
    rpoThresholdSeconds: seconds("rpoThreshold", input.rpoThreshold),
    retentionSeconds: seconds("retention", input.retention),
    appConsistentEverySeconds: seconds("appConsistentEvery", input.appConsistentEvery, true),
    crashConsistentEverySeconds: seconds("crashConsistentEvery", input.crashConsistentEvery),
  };
  validatePolicy(v);
  return insertPolicy(db, input.name, v, null, now);
}

async function insertPolicy(
  db: Kysely<VaultDatabase>,
  name: string,
  v: PolicyValues,
  derivedFrom: string | null,
  now: Date,
): Promise<Policy> {
  const row: PolicyRow = {
    id: newId("policy"),
    name,
    rpo_threshold_s: v.rpoThresholdSeconds,
    retention_s: v.retentionSeconds,
    app_consistent_every_s: v.appConsistentEverySeconds,
    crash_consistent_every_s: v.crashConsistentEverySeconds,
    derived_from: derivedFrom,
    created_at: now.toISOString(),
  };
  await insertUnique("policy", name, () => db.insertInto("policies").values(row).execute());
  return toPolicy(row);
}

export async function listPolicies(db: Kysely<VaultDatabase>): Promise<Policy[]> {
  const rows = await db.selectFrom("policies").selectAll().orderBy("created_at").orderBy("name").execute();
  return rows.map(toPolicy);
}

export async function getPolicyRow(db: Kysely<VaultDatabase>, ref: string): Promise<PolicyRow> {
  const r = await findByRef(db, "policies", ref);
  if (r === undefined) throw notFound("policy", ref, "switchback policies list");
  return r;
}

export async function getPolicy(db: Kysely<VaultDatabase>, ref: string): Promise<Policy> {
  return toPolicy(await getPolicyRow(db, ref));
}

/** Changes the given values; the rules are checked on the result. Derived policies follow on reprotect. */
export async function updatePolicy(
  db: Kysely<VaultDatabase>,
  ref: string,
  input: UpdatePolicy,
): Promise<Policy> {
  const r = await getPolicyRow(db, ref);
  if (r.derived_from !== null) {
    const origin = await getPolicyRow(db, r.derived_from);
    throw new SwitchbackError(
      "POLICY_UPDATE_REFUSED",
      `policy ${JSON.stringify(r.name)} is the failback policy derived from ${JSON.stringify(origin.name)} and follows it; change ${JSON.stringify(origin.name)} instead`,
    );
  }
  const v: PolicyValues = {
    rpoThresholdSeconds:
      input.rpoThreshold !== undefined ? seconds("rpoThreshold", input.rpoThreshold) : r.rpo_threshold_s,
    retentionSeconds: input.retention !== undefined ? seconds("retention", input.retention) : r.retention_s,
    appConsistentEverySeconds:
      input.appConsistentEvery !== undefined
        ? seconds("appConsistentEvery", input.appConsistentEvery, true)
        : r.app_consistent_every_s,
    crashConsistentEverySeconds:
      input.crashConsistentEvery !== undefined
        ? seconds("crashConsistentEvery", input.crashConsistentEvery)
        : r.crash_consistent_every_s,
  };
  validatePolicy(v);
  await db
    .updateTable("policies")
    .set({
      rpo_threshold_s: v.rpoThresholdSeconds,
      retention_s: v.retentionSeconds,
      app_consistent_every_s: v.appConsistentEverySeconds,
      crash_consistent_every_s: v.crashConsistentEverySeconds,
    })
    .where("id", "=", r.id)
    .execute();
  return getPolicy(db, r.id);
}

const FAILBACK_SUFFIX = "-failback";

/** The failback policy of `policy`, pure: same values, name `<name>-failback` (cut to fit 64). */
export function derivePolicy(policy: Policy): { name: string; values: PolicyValues; derivedFrom: string } {
  return {
    name: policy.name.slice(0, 64 - FAILBACK_SUFFIX.length) + FAILBACK_SUFFIX,
    values: {
      rpoThresholdSeconds: policy.rpoThresholdSeconds,
      retentionSeconds: policy.retentionSeconds,
      appConsistentEverySeconds: policy.appConsistentEverySeconds,
      crashConsistentEverySeconds: policy.crashConsistentEverySeconds,
    },
    derivedFrom: policy.id,
  };
}

/**
 * The policy for the reverse direction, for reprotect: a derived policy's reverse is the policy it was
 * derived from; otherwise the derived failback policy, created on first use and brought up to date
 * with its origin's values afterwards. Idempotent (a retried reprotect step gets the same policy).
 */
export async function ensureReversePolicy(
  db: Kysely<VaultDatabase>,
  ref: string,
  now: Date,
): Promise<Policy> {
  const p = toPolicy(await getPolicyRow(db, ref));
  if (p.derivedFrom !== null) return getPolicy(db, p.derivedFrom);
  const d = derivePolicy(p);
  const existing = await db
    .selectFrom("policies")
    .selectAll()
    .where("derived_from", "=", p.id)
    .executeTakeFirst();
  if (existing === undefined) return insertPolicy(db, d.name, d.values, d.derivedFrom, now);
  await db
    .updateTable("policies")
    .set({
      rpo_threshold_s: d.values.rpoThresholdSeconds,
      retention_s: d.values.retentionSeconds,
      app_consistent_every_s: d.values.appConsistentEverySeconds,
      crash_consistent_every_s: d.values.crashConsistentEverySeconds,
    })
    .where("id", "=", existing.id)
    .execute();
  return getPolicy(db, existing.id);
}

// Each item's RPO over the last hours, for the portal's charts. Points are pruned by retention, so
// nothing is derived from them: every commit of a point records, for the minute it happened in, the
// RPO just before it (the commit's time minus the newest point before it) and the newest point known
// after it. Between commits the RPO grows with the clock, so a bucket's worst RPO is the larger of
// the peaks recorded in it and its end minus the newest point known by then. Rows older than
// RPO_HISTORY_KEEP_HOURS are deleted beside commits, at most once a minute per vault process and
// about 5,000 rows at a time (the oldest minutes first).
import { type Static, Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import type { VaultDatabase } from "./db/schema.ts";
import type { LoadedItem } from "./items.ts";

/** How long the minutes are kept: the portal's 24 h chart and an hour to spare. */
export const RPO_HISTORY_KEEP_HOURS = 25;
/** The longest history a request may ask for (the part older than the kept hours comes back null). */
export const RPO_HISTORY_MAX_HOURS = 72;
/** At most this many buckets come back: the bucket is the smallest of BUCKET_SIZES that fits. */
export const RPO_HISTORY_MAX_BUCKETS = 300;
const BUCKET_MINUTES = [1, 2, 5, 10, 15, 30, 60] as const;
const TRIM_EVERY_MS = 60_000;
const TRIM_MAX_ROWS = 5_000;
const MINUTE_MS = 60_000;

export const RpoHistorySchema = Type.Object({
  item: Type.String({ description: "the item's id" }),
  phase: Type.String(),
  replicating: Type.Boolean({
    description:
      "protected or initial-replication: only then is an RPO measured; otherwise every bucket is null",
  }),
  thresholdSeconds: Type.Number({ description: "the RPO threshold of the item's policy" }),
  bucketSeconds: Type.Integer({ description: "the width of a bucket (60 up to 5 h, 300 for 24 h, …)" }),
  from: Type.String({ description: "the start of the first bucket" }),
  to: Type.String({ description: "now: the end of the last bucket" }),
  buckets: Type.Array(
    Type.Object({
      at: Type.String({ description: "the bucket's start (ISO 8601, on a minute)" }),
      rpoSeconds: Type.Union([Type.Number(), Type.Null()], {
        description:
          "the worst RPO in the bucket; null before the item's first point, before the history kept, or while it does not replicate",
      }),
    }),
  ),
});
export type RpoHistory = Static<typeof RpoHistorySchema>;

const iso = (ms: number) => new Date(ms).toISOString();

/** The ISO start of the minute `ms` falls in. */
export function minuteOf(ms: number): string {
  return iso(Math.floor(ms / MINUTE_MS) * MINUTE_MS);
}

/** The bucket width for a history of `hours`: the smallest nice width giving at most 300 buckets. */
export function bucketSecondsFor(hours: number): number {
  const minutes = hours * 60;
  const m = BUCKET_MINUTES.find((b) => minutes / b <= RPO_HISTORY_MAX_BUCKETS) ?? 60;
  return m * 60;
}

/** The row a commit writes for its minute (pure); null for a point time that does not parse. */
export function committedPointRow(o: {
  pointAt: string;
  previousPointAt: string | null;
  committedAt: Date;
}): HistoryRow | null {
  const committedMs = o.committedAt.getTime();
  const pointMs = Date.parse(o.pointAt);
  if (!Number.isFinite(pointMs)) return null;
  const previousMs = o.previousPointAt === null ? Number.NaN : Date.parse(o.previousPointAt);
  const before = Number.isFinite(previousMs) ? previousMs : pointMs;
  return {
    minute: minuteOf(committedMs),
    // a point stamped after the vault's clock (skew between hosts) counts as just taken
    peak_rpo_s: Math.max(0, (committedMs - before) / 1000),
    // the newest point known: an older point committed late (a drain) does not move it back
    last_point_at: iso(Math.max(pointMs, before)),
  };
}

/**
 * Records a point committed at `committedAt`: for its minute, peak = max(peak, committedAt − the
 * newest point before it) and last_point_at = max. The item's first point (no point before it: a new
 * protection, or the first after a reprotect, whose commit deleted the old direction's points) starts
 * the history afresh: older minutes belong to a replication that is over.
 */
export async function recordCommittedPoint(
  db: Kysely<VaultDatabase>,
  o: { itemId: string; pointAt: string; previousPointAt: string | null; committedAt: Date },
): Promise<void> {
  const row = committedPointRow(o);
  if (row === null) return;
  const { minute, peak_rpo_s: peak, last_point_at: pointAt } = row;
  if (o.previousPointAt === null) {
    await db.deleteFrom("rpo_history").where("item_id", "=", o.itemId).where("minute", "<", minute).execute();
  }
  await db
    .insertInto("rpo_history")
    .values({ item_id: o.itemId, minute, peak_rpo_s: peak, last_point_at: pointAt })
    .onConflict((oc) =>
      oc.columns(["item_id", "minute"]).doUpdateSet((eb) => ({
        peak_rpo_s: eb
          .case()
          .when(eb.ref("excluded.peak_rpo_s"), ">", eb.ref("rpo_history.peak_rpo_s"))
          .then(eb.ref("excluded.peak_rpo_s"))
          .else(eb.ref("rpo_history.peak_rpo_s"))
          .end(),
        last_point_at: eb
          .case()
          .when(eb.ref("excluded.last_point_at"), ">", eb.ref("rpo_history.last_point_at"))
          .then(eb.ref("excluded.last_point_at"))
          .else(eb.ref("rpo_history.last_point_at"))
          .end(),
      })),
    )
    .execute();
}

/**
 * Deletes minutes older than the kept hours, the oldest first, about `limit` rows at a time (whole
 * minutes): a vault back after a long stop clears its backlog over a few rounds instead of holding
 * SQLite for seconds. Range deletes on the minute index: a minute's rows at 10,000 items (~2,000 with
 * a point every 5 minutes) take a few tens of ms. Returns how many rows went.
 */
export async function trimRpoHistory(
  db: Kysely<VaultDatabase>,
  now: Date,
  limit = TRIM_MAX_ROWS,
): Promise<number> {
  const cutoff = minuteOf(now.getTime() - RPO_HISTORY_KEEP_HOURS * 3_600_000);
  // the minute `limit` rows in: everything before it goes (or all before the cutoff, if fewer)
  const nth = await db
    .selectFrom("rpo_history")
    .select("minute")
    .where("minute", "<", cutoff)
    .orderBy("minute")
    .limit(1)
    .offset(limit)
    .executeTakeFirst();
  let r = await db
    .deleteFrom("rpo_history")
    .where("minute", "<", nth?.minute ?? cutoff)
    .executeTakeFirst();
  if (nth !== undefined && Number(r.numDeletedRows) === 0) {
    // more than `limit` rows in the oldest minute alone: that minute goes whole
    r = await db.deleteFrom("rpo_history").where("minute", "=", nth.minute).executeTakeFirst();
  }
  return Number(r.numDeletedRows);
}

const lastTrim = new WeakMap<object, number>();

/** trimRpoHistory at most once a minute per database handle (by the vault's clock); null when not due. */
export async function trimRpoHistoryIfDue(db: Kysely<VaultDatabase>, now: Date): Promise<number | null> {
  const last = lastTrim.get(db);
  const t = now.getTime();
  if (last !== undefined && t - last < TRIM_EVERY_MS && t >= last) return null;
  lastTrim.set(db, t);
  return trimRpoHistory(db, now);
}

export interface HistoryRow {
  minute: string;
  peak_rpo_s: number;
  last_point_at: string;
}

/**
 * The buckets of a history (pure). Each bucket's value is the worst RPO in it: the larger of the
 * peaks recorded in its minutes and its end (now, for the last one) minus the newest point known by
 * then; null when neither is known (before the first point, or before what the history kept).
 * `lastPointAt` is the item's newest point now: it counts from its own time when no row recorded its
 * commit (committed before the history began, or more than the kept hours ago).
 */
export function rpoBuckets(o: {
  now: Date;
  hours: number;
  rows: readonly HistoryRow[];
  lastPointAt: string | null;
}): { bucketSeconds: number; from: string; buckets: { at: string; rpoSeconds: number | null }[] } {
  const bucketSeconds = bucketSecondsFor(o.hours);
  const size = bucketSeconds * 1000;
  const n = Math.ceil((o.hours * 3600) / bucketSeconds);
  const nowMs = o.now.getTime();
  const first = Math.floor(nowMs / size) * size - (n - 1) * size;
  if (o.lastPointAt === null) {
    // no point now: nothing the history holds belongs to the replication that runs (if any)
    return {
      bucketSeconds,
      from: iso(first),
      buckets: Array.from({ length: n }, (_, i) => ({ at: iso(first + i * size), rpoSeconds: null })),
    };
  }
  const entries = o.rows
    .map((r) => ({ from: Date.parse(r.minute), point: Date.parse(r.last_point_at), peak: r.peak_rpo_s }))
    .filter((e) => Number.isFinite(e.from) && Number.isFinite(e.point))
    .sort((a, b) => a.from - b.from);
  const last = Date.parse(o.lastPointAt);
  if (Number.isFinite(last) && !entries.some((e) => e.point >= last)) {
    entries.push({ from: last, point: last, peak: Number.NaN });
    entries.sort((a, b) => a.from - b.from);
  }
  const buckets: { at: string; rpoSeconds: number | null }[] = [];
  let known = Number.NaN;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const start = first + i * size;
    const end = Math.min(start + size, nowMs);
    let worst = Number.NaN;
    for (; k < entries.length && entries[k]!.from < end; k++) {
      const e = entries[k]!;
      if (!(e.point <= known)) known = e.point;
      if (e.from >= start && Number.isFinite(e.peak) && !(e.peak <= worst)) worst = e.peak;
    }
    if (Number.isFinite(known)) {
      const growing = Math.max(0, (end - known) / 1000);
      if (!(growing <= worst)) worst = growing;
    }
    buckets.push({ at: iso(start), rpoSeconds: Number.isFinite(worst) ? worst : null });
  }
  return { bucketSeconds, from: iso(first), buckets };
}

/** GET /v1/items/{item}/rpo-history: the item's RPO over the last `hours`, by bucket. */
export async function itemRpoHistory(
  db: Kysely<VaultDatabase>,
  it: LoadedItem,
  o: { now: Date; hours: number },
): Promise<RpoHistory> {
  const policy = await db
    .selectFrom("policies")
    .select("rpo_threshold_s")
    .where("id", "=", it.row.policy_id)
    .executeTakeFirst();
  const replicating = it.state.phase === "protected" || it.state.phase === "initial-replication";
  const rows = replicating
    ? await db
        .selectFrom("rpo_history")
        .select(["minute", "peak_rpo_s", "last_point_at"])
        .where("item_id", "=", it.row.id)
        .orderBy("minute")
        .execute()
    : [];
  const b = rpoBuckets({
    now: o.now,
    hours: o.hours,
    rows,
    lastPointAt: replicating ? it.row.last_point_at : null,
  });
  return {
    item: it.row.id,
    phase: it.state.phase,
    replicating,
    thresholdSeconds: policy?.rpo_threshold_s ?? 0,
    bucketSeconds: b.bucketSeconds,
    from: b.from,
    to: o.now.toISOString(),
    buckets: b.buckets,
  };
}

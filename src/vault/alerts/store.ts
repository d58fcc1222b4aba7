// Alerts in the database: the API's view of a row, listing, and applying a decision of the alerts core
// (src/domain/alerts.ts) under one lock, so that two evaluations (the periodic one, a job that just
// finished, another vault process on PostgreSQL) never open the same alert twice. Delivery state per
// row: delivered_at null means the row's latest event (raised, or cleared once cleared_at is set) is
// still to be sent; clearing resets it. An alert raised and cleared before its raise went out is sent
// once, as "cleared", carrying both times.
import { randomBytes } from "node:crypto";
import { type Static, Type } from "@sinclair/typebox";
import { type Kysely, sql, type Transaction } from "kysely";
import {
  ALERT_KINDS,
  type AlertDecision,
  type AlertToRaise,
  isAlertKind,
  type OpenAlert,
} from "../../domain/alerts.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import type { VaultDb } from "../db/database.ts";
import type { AlertRow, VaultDatabase } from "../db/schema.ts";

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const AlertKindSchema = Type.Union(ALERT_KINDS.map((k) => Type.Literal(k)));

/** An alert as the API lists it and the webhook sends it. */
export const AlertSchema = Type.Object({
  id: Type.String(),
  kind: AlertKindSchema,
  /** "item:<id>", "machine:<id>", "appliance:<id>" or "job:<id>" */
  subject: Type.String(),
  severity: Type.Union([Type.Literal("warning"), Type.Literal("critical")]),
  message: Type.String(),
  raisedAt: Type.String(),
  clearedAt: Nullable(Type.String()),
  open: Type.Boolean(),
});
export type Alert = Static<typeof AlertSchema>;

export const AlertRecordSchema = Type.Composite([
  AlertSchema,
  Type.Object({
    delivery: Type.Object({
      /** when the latest event (raised, or cleared) reached the webhook; null: not yet */
      deliveredAt: Nullable(Type.String()),
      /** why the last attempt failed, while it is not delivered */
      error: Nullable(Type.String()),
    }),
  }),
]);
export type AlertRecord = Static<typeof AlertRecordSchema>;

export function toAlert(r: AlertRow): Alert {
  return {
    id: r.id,
    kind: isAlertKind(r.kind) ? r.kind : "job-failed",
    subject: r.subject,
    severity: r.severity === "warning" ? "warning" : "critical",
    message: r.message,
    raisedAt: r.raised_at,
    clearedAt: r.cleared_at,
    open: r.cleared_at === null,
  };
}

export function toAlertRecord(r: AlertRow): AlertRecord {
  return { ...toAlert(r), delivery: { deliveredAt: r.delivered_at, error: r.delivery_error } };
}

export interface ListAlertsQuery {
  open?: boolean;
  kind?: string;
  subject?: string;
  limit?: number;
}

/** Newest first. */
export async function listAlerts(db: Kysely<VaultDatabase>, q: ListAlertsQuery = {}): Promise<AlertRow[]> {
  let s = db.selectFrom("alerts").selectAll();
  if (q.open === true) s = s.where("cleared_at", "is", null);
  if (q.open === false) s = s.where("cleared_at", "is not", null);
  if (q.kind !== undefined) s = s.where("kind", "=", q.kind);
  if (q.subject !== undefined) s = s.where("subject", "=", q.subject);
  return s
    .orderBy("raised_at", "desc")
    .orderBy("id", "desc")
    .limit(q.limit ?? 100)
    .execute();
}

export async function getAlert(db: Kysely<VaultDatabase>, id: string): Promise<AlertRow> {
  const r = await db.selectFrom("alerts").selectAll().where("id", "=", id).executeTakeFirst();
  if (r === undefined) {
    throw new SwitchbackError(
      "ALERT_NOT_FOUND",
      `alert ${JSON.stringify(id)} does not exist; see 'switchback alerts list'`,
    );
  }
  return r;
}

// Crockford's base32 in lower case, like the vault's other ids (src/vault/ids.ts)
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

function newAlertId(): string {
  let s = "";
  for (const b of randomBytes(12)) s += ALPHABET[b & 31];
  return `alert-${s}`;
}

/** A fixed key for PostgreSQL's transaction-level advisory lock over alert decisions ("SBALERTS"). */
const ALERTS_LOCK = 0x5342_414c_4552_5453n;

type Tx = Transaction<VaultDatabase>;

export interface Applied {
  raised: AlertRow[];
  cleared: { row: AlertRow; reason: string }[];
}

/**
 * Runs `decide` on the open alerts inside one transaction that holds the alerts lock (SQLite's
 * write lock, taken by BEGIN IMMEDIATE; PostgreSQL's advisory lock), then writes what it decided.
 * `decide` may read more in the same transaction (the facts), so that the decision and the open
 * alerts it was made on are one consistent view.
 */
export async function applyAlertDecision(
  vdb: VaultDb,
  now: () => Date,
  decide: (trx: Tx, open: OpenAlert[], at: Date) => Promise<AlertDecision>,
  scope: { subject?: string } = {},
): Promise<Applied> {
  return vdb.db.transaction().execute(async (trx) => {
    if (vdb.dialect === "postgres") await sql`select pg_advisory_xact_lock(${ALERTS_LOCK})`.execute(trx);
    let q = trx.selectFrom("alerts").selectAll().where("cleared_at", "is", null);
    if (scope.subject !== undefined) q = q.where("subject", "=", scope.subject);
    const rows = await q.execute();
    const open: OpenAlert[] = rows
      .filter((r) => isAlertKind(r.kind))
      .map((r) => ({
        id: r.id,
        kind: r.kind as OpenAlert["kind"],
        subject: r.subject,
        raisedAt: r.raised_at,
      }));
    const at = now();
    const d = await decide(trx, open, at);
    const iso = at.toISOString();
    const raised = d.raise.map((a: AlertToRaise) => ({
      id: newAlertId(),
      kind: a.kind,
      subject: a.subject,
      severity: a.severity,
      message: a.message,
      raised_at: iso,
      cleared_at: null,
      delivered_at: null,
      delivery_error: null,
      sending_until: null,
    }));
    // in chunks: one statement may bind at most 32,766 (SQLite) or 65,535 (PostgreSQL) values, and a
    // lost site raises an alert per machine
    for (let i = 0; i < raised.length; i += 500) {
      await trx
        .insertInto("alerts")
        .values(raised.slice(i, i + 500))
        .execute();
    }
    const rowById = new Map(rows.map((x) => [x.id, x]));
    const cleared: Applied["cleared"] = [];
    for (const c of d.clear) {
      const r = await trx
        .updateTable("alerts")
        .set({ cleared_at: iso, delivered_at: null, delivery_error: null, sending_until: null })
        .where("id", "=", c.id)
        .where("cleared_at", "is", null)
        .executeTakeFirst();
      const row = rowById.get(c.id);
      if (Number(r.numUpdatedRows) === 1 && row !== undefined) {
        cleared.push({
          row: { ...row, cleared_at: iso, delivered_at: null, delivery_error: null, sending_until: null },
          reason: c.reason,
        });
      }
    }
    return { raised, cleared };
  });
}

// ---- the webhook's address (settings table) ------------------------------------------------------

export const ALERT_WEBHOOK_SETTING = "alert-webhook";

/** Checks a webhook URL as an operator gave it: http or https, nothing else. */
export function parseWebhookUrl(s: string): string {
  let u: URL;
  try {
    u = new URL(s.trim());
  } catch {
    throw new SwitchbackError(
      "ALERT_WEBHOOK_INVALID",
      `alert webhook ${JSON.stringify(s)} is not a URL; give an http:// or https:// URL that accepts POSTed JSON`,
    );
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new SwitchbackError(
      "ALERT_WEBHOOK_INVALID",
      `alert webhook ${JSON.stringify(s)} uses ${u.protocol}; give an http:// or https:// URL`,
    );
  }
  return u.toString();
}

/** Where a webhook URL points, without its path, query or credentials (they may hold a secret). */
export function webhookOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid URL)";
  }
}

export async function getAlertWebhook(db: Kysely<VaultDatabase>): Promise<string | null> {
  const r = await db
    .selectFrom("settings")
    .select("value")
    .where("key", "=", ALERT_WEBHOOK_SETTING)
    .executeTakeFirst();
  return r?.value ?? null;
}

/** Stores (or with null removes) the webhook alerts are sent to. */
export async function setAlertWebhook(db: Kysely<VaultDatabase>, url: string | null): Promise<string | null> {
  if (url === null) {
    await db.deleteFrom("settings").where("key", "=", ALERT_WEBHOOK_SETTING).execute();
    return null;
  }
  const value = parseWebhookUrl(url);
  await db
    .insertInto("settings")
    .values({ key: ALERT_WEBHOOK_SETTING, value })
    .onConflict((oc) => oc.column("key").doUpdateSet({ value }))
    .execute();
  return value;
}

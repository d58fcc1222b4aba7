// Sends alert events to the configured webhook: POST JSON {alert, event: "raised" | "cleared"} for
// every alert whose latest event is not delivered (delivered_at null), oldest event first. A failed
// attempt (no answer within the timeout, or a status other than 2xx) is recorded in delivery_error and
// retried with doubling backoff (1 s, 2 s, 4 s … at most 5 min) until it goes through: delivery is at
// least once, so a receiver that must not act twice dedupes on (alert.id, event). Without a webhook
// configured nothing is sent and events wait; they go out once one is set.
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { AlertRow, VaultDatabase } from "../db/schema.ts";
import { getAlertWebhook, toAlert, webhookOrigin } from "./store.ts";

export interface WebhookOptions {
  /** first retry delay, doubled after each failure (default 1 s) */
  backoffMs?: number;
  /** longest delay between attempts (default 5 min) */
  maxBackoffMs?: number;
  /** how often to look for undelivered events (default 1 s) */
  pollMs?: number;
  /** how long one POST may take (default 10 s) */
  timeoutMs?: number;
}

export type AlertEvent = "raised" | "cleared";

const BATCH = 100;

interface Attempts {
  failures: number;
  nextAt: number;
}

export class AlertWebhook {
  readonly #db: Kysely<VaultDatabase>;
  readonly #now: () => Date;
  readonly #log: Logger;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  /** per alert and event: failures so far and when the next attempt is due */
  readonly #attempts = new Map<string, Attempts>();
  #url: string | null = null;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | null = null;
  #again = false;
  #stopped = false;
  readonly #abort = new AbortController();

  constructor(o: WebhookOptions & { db: Kysely<VaultDatabase>; now: () => Date; log: Logger }) {
    this.#db = o.db;
    this.#now = o.now;
    this.#log = o.log;
    this.#backoffMs = o.backoffMs ?? 1000;
    this.#maxBackoffMs = o.maxBackoffMs ?? 300_000;
    this.#pollMs = o.pollMs ?? 1000;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
  }

  start(): void {
    this.#timer = setInterval(() => this.kick(), this.#pollMs);
    this.#timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#abort.abort();
    await this.#running;
  }

  /** Looks for undelivered events now (after an evaluation raised or cleared something). */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          await this.#pass();
        } catch (err) {
          this.#log.error({ err }, "delivering alerts failed");
        }
      } while (this.#again && !this.#stopped);
    })().finally(() => {
      this.#running = null;
    });
  }

  async #pass(): Promise<void> {
    const url = await getAlertWebhook(this.#db);
    if (url !== this.#url) {
      this.#url = url;
      this.#attempts.clear(); // a new receiver gets a fresh first attempt
    }
    if (url === null) return;
    const nowIso = new Date().toISOString();
    const pending = await this.#db
      .selectFrom("alerts")
      .selectAll()
      .where("delivered_at", "is", null)
      // events claimed by another vault process, or waiting out a failed attempt, are not due
      .where((eb) => eb.or([eb("sending_until", "is", null), eb("sending_until", "<", nowIso)]))
      .orderBy("raised_at")
      .orderBy("id")
      .limit(BATCH)
      .execute();
    pending.sort((a, b) => eventAt(a).localeCompare(eventAt(b)));
    for (const row of pending) {
      if (this.#stopped) return;
      const event: AlertEvent = row.cleared_at === null ? "raised" : "cleared";
      const key = `${row.id} ${event}`;
      const a = this.#attempts.get(key);
      if (a !== undefined && a.nextAt > Date.now()) continue;
      // claim it: of several vault processes, one posts the event
      const claim = await this.#db
        .updateTable("alerts")
        .set({ sending_until: new Date(Date.now() + this.#timeoutMs + 5000).toISOString() })
        .where("id", "=", row.id)
        .where("delivered_at", "is", null)
        .where((eb) =>
          eb.or([eb("sending_until", "is", null), eb("sending_until", "<", new Date().toISOString())]),
        )
        .executeTakeFirst();
      if (Number(claim.numUpdatedRows) !== 1) continue;
      const error = await this.#post(url, row, event);
      if (error === null) {
        this.#attempts.delete(key);
        // only the event that was sent: a clear that happened meanwhile stays pending
        await this.#db
          .updateTable("alerts")
          .set({ delivered_at: this.#now().toISOString(), delivery_error: null, sending_until: null })
          .where("id", "=", row.id)
          .where("delivered_at", "is", null)
          .where("cleared_at", event === "raised" ? "is" : "is not", null)
          .execute();
        continue;
      }
      const failures = (a?.failures ?? 0) + 1;
      const delay = Math.min(this.#backoffMs * 2 ** (failures - 1), this.#maxBackoffMs);
      this.#attempts.set(key, { failures, nextAt: Date.now() + delay });
      const message = `attempt ${failures} to send the ${event} event failed: ${error}; next attempt in ${formatMs(delay)}`;
      this.#log.warn({ alert: row.id, event }, message);
      await this.#db
        .updateTable("alerts")
        .set({ delivery_error: message, sending_until: new Date(Date.now() + delay).toISOString() })
        .where("id", "=", row.id)
        .where("delivered_at", "is", null)
        .execute();
    }
  }

  /** POSTs one event; null when the receiver took it (2xx), otherwise why not. */
  async #post(url: string, row: AlertRow, event: AlertEvent): Promise<string | null> {
    const where = webhookOrigin(url);
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "switchback-vault" },
        body: JSON.stringify({ alert: toAlert(row), event }),
        signal: AbortSignal.any([AbortSignal.timeout(this.#timeoutMs), this.#abort.signal]),
        redirect: "error",
      });
      await res.body?.cancel().catch(() => {});
      return res.ok ? null : `HTTP ${res.status} from ${where}`;
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why =
        e.name === "TimeoutError"
          ? `no answer within ${formatMs(this.#timeoutMs)}`
          : (e.cause?.code ?? e.cause?.message ?? e.message);
      return `${why} from ${where}`;
    }
  }
}

/** When the row's pending event happened. */
function eventAt(r: AlertRow): string {
  return r.cleared_at ?? r.raised_at;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

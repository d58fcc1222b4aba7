// The agent daemon: takes recovery points of one machine on a schedule and ships them to a process
// server. Crash-consistent every `crashEveryMs`, app-consistent (hooks) every `appEveryMs`; an
// app-consistent point also counts as the crash-consistent one. One point at a time. A failed point
// is retried with backoff; nothing of it is visible until the server commits it, and the retry sends
// only what the server does not hold yet, so a failure costs a retry, never a corrupt point.
import type { Logger } from "pino";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import { inspectDisk } from "../replication/disk-source.ts";
import { type ChangeJournal, changeJournalFactory } from "../replication/journal.ts";
import { RemoteSink } from "../replication/remote-sink.ts";
import { type ReplicateResult, replicateOnce, type SnapshotMode } from "../replication/replicate.ts";
import { type TrackMode, writeTrackerFactory } from "../replication/write-tracker.ts";

export interface AgentDaemonOptions {
  server: string;
  token: string;
  item: ItemName;
  disks: string[];
  /** this item's agent state folder */
  stateDir: string;
  crashEveryMs: number;
  appEveryMs: number;
  /** pre-snapshot/post-snapshot hooks; without them every point is crash-consistent */
  hooksDir?: string;
  hookTimeoutMs?: number;
  snapshot?: SnapshotMode;
  /**
   * kernel write tracking (default auto: tracefs when root): between points (the write journal), so
   * that a point reads only what was written since the last one, and while a freeze-mode point
   * pre-copies, so that only what was written meanwhile is read again while frozen
   */
  track?: TrackMode;
  /** the write journal's trace buffer per CPU, KiB (default 4 MiB) */
  journalBufferKbPerCpu?: number;
  /** how long one call to the process server keeps retrying */
  deadlineMs?: number;
  /** the disks' identities from the machine's identity label */
  diskUuids?: readonly string[];
  /** told how far a point has read (initial replication progress) */
  onProgress?: (p: { bytesRead: number; totalBytes: number }) => void;
  /** told about every committed point */
  onPoint?: (r: ReplicateResult) => void;
  /** the item's replication generation (sent to a vault's process server, which fences old ones) */
  generation?: number;
  log: Logger;
}

/** Codes after which the next attempt should start at once: the server told us exactly what to redo. */
const RETRY_AT_ONCE = new Set(["POINT_BLOCKS_MISSING", "POINT_PARENT_NOT_LATEST", "POINT_ID_NOT_NEWER"]);
const MAX_BACKOFF_MS = 60_000;
/** failures after which an out-of-schedule point request is answered with an error */
const REQUEST_ATTEMPTS = 5;

interface PointRequest {
  /** a point that started at or after this time answers the request */
  after: number;
  resolve: (r: ReplicateResult) => void;
  reject: (e: Error) => void;
}

export class AgentDaemon {
  readonly #o: AgentDaemonOptions;
  #stopping = false;
  #requests: PointRequest[] = [];
  #wake: (() => void) | null = null;
  #running: Promise<unknown> | null = null;

  readonly #tracker: ReturnType<typeof writeTrackerFactory>;
  readonly #journal: ReturnType<typeof changeJournalFactory>;
  /** the journal as seen between points, to drain a filling trace buffer (made again after each point) */
  #absorber: ChangeJournal | null = null;
  /** the last point this daemon committed (the journal must cover writes since it to be drained) */
  #lastPoint: PointId | undefined;
  /** the last warning logged about the journal between points, not repeated every second */
  #lastAbsorbWarning: string | null = null;

  constructor(o: AgentDaemonOptions) {
    this.#o = o;
    this.#tracker = writeTrackerFactory(o.track ?? "auto");
    this.#journal = changeJournalFactory(o.track ?? "auto", undefined, o.journalBufferKbPerCpu);
  }

  /** True while a point is being taken. */
  get busy(): boolean {
    return this.#running !== null;
  }

  /** Asks the loop to stop after the point under way (if any). */
  stop(): void {
    this.#stopping = true;
    for (const r of this.#requests.splice(0)) {
      r.reject(new SwitchbackError("AGENT_STOPPING", "the agent stopped before it could take the point"));
    }
    this.#wake?.();
  }

  /**
   * A point taken from now on, out of schedule (the vault's drain before a failover): resolves with
   * the first point that starts after this call and commits. Fails after `attempts` failures.
   */
  requestPoint(): Promise<ReplicateResult> {
    return new Promise((resolve, reject) => {
      this.#requests.push({ after: Date.now(), resolve, reject });
      this.#wake?.();
    });
  }

  /** Takes one point, retrying failures up to `attempts` times. */
  async once(attempts = 5): Promise<ReplicateResult | null> {
    for (let failures = 0; !this.#stopping; ) {
      const r = await this.#attempt(this.#o.hooksDir !== undefined ? "app" : "crash");
      if (r.ok) return r.result;
      if (++failures >= attempts) return null;
      await this.#sleep(backoff(r.code, failures));
    }
    return null;
  }

  /** Runs the schedule until stop(). */
  async run(): Promise<void> {
    const { crashEveryMs, appEveryMs, hooksDir, log } = this.#o;
    let lastCrash = Number.NEGATIVE_INFINITY;
    let lastApp = Number.NEGATIVE_INFINITY;
    let failures = 0;
    log.info(
      { server: this.#o.server, disks: this.#o.disks, crashEveryMs, appEveryMs, hooks: hooksDir ?? null },
      "agent started",
    );
    while (!this.#stopping) {
      const now = Date.now();
      const appDue = hooksDir !== undefined && now - lastApp >= appEveryMs;
      const crashDue = now - lastCrash >= crashEveryMs || this.#requests.length > 0;
      if (!appDue && !crashDue) {
        const next = Math.min(
          lastCrash + crashEveryMs,
          hooksDir !== undefined ? lastApp + appEveryMs : Infinity,
        );
        await this.#idle(next - now);
        continue;
      }
      const consistency = appDue ? "app" : "crash";
      const r = await this.#attempt(consistency);
      if (r.ok) {
        failures = 0;
        lastCrash = r.startedAt;
        if (consistency === "app") lastApp = r.startedAt;
        const answered = this.#requests.filter((q) => q.after <= r.startedAt);
        this.#requests = this.#requests.filter((q) => q.after > r.startedAt);
        for (const q of answered) q.resolve(r.result);
      } else {
        failures++;
        if (failures >= REQUEST_ATTEMPTS && this.#requests.length > 0) {
          const e = new SwitchbackError(
            "AGENT_POINT_FAILED",
            `the agent could not take a point after ${failures} attempts (last error ${r.code})`,
          );
          for (const q of this.#requests.splice(0)) q.reject(e);
        }
        await this.#idle(backoff(r.code, failures));
      }
    }
    log.info("agent stopped");
  }

  async #attempt(
    consistency: "crash" | "app",
  ): Promise<{ ok: true; result: ReplicateResult; startedAt: number } | { ok: false; code: string }> {
    const o = this.#o;
    const startedAt = Date.now();
    let sink: RemoteSink | null = null;
    const work = (async () => {
      sink = await RemoteSink.connect({
        server: o.server,
        token: o.token,
        deadlineMs: o.deadlineMs,
        ...(o.generation !== undefined ? { headers: { "switchback-generation": String(o.generation) } } : {}),
        onRetry: (e) => o.log.warn(e, "retrying a call to the process server"),
      });
      return replicateOnce({
        item: o.item,
        disks: o.disks,
        stateDir: o.stateDir,
        sink,
        consistency,
        hooksDir: o.hooksDir,
        hookTimeoutMs: o.hookTimeoutMs,
        snapshot: o.snapshot,
        ...(this.#tracker !== undefined ? { tracker: this.#tracker } : {}),
        ...(this.#journal !== undefined ? { journal: this.#journal } : {}),
        ...(o.diskUuids !== undefined ? { diskUuids: o.diskUuids } : {}),
        ...(o.onProgress !== undefined ? { onProgress: o.onProgress } : {}),
      });
    })();
    this.#running = work;
    try {
      const r = await work;
      const s = sink as RemoteSink | null;
      o.log.info(
        {
          pointId: r.pointId,
          parent: r.parent,
          mode: r.mode,
          consistency: r.consistency,
          snapshot: r.snapshot,
          bytesRead: r.bytesRead,
          bytesSent: r.bytesSent,
          bytesResent: s?.bytesResent ?? 0,
          retries: s?.retries ?? 0,
          changedBlocks: r.changedBlocks,
          journaledDisks: r.journaledDisks,
          durationMs: r.durationMs,
          maxFreezeMs: r.maxFreezeMs,
          warnings: r.warnings,
        },
        "point committed",
      );
      o.onPoint?.(r);
      this.#lastPoint = r.pointId;
      return { ok: true, result: r, startedAt };
    } catch (err) {
      const code =
        err instanceof SwitchbackError ? err.code : ((err as NodeJS.ErrnoException).code ?? "UNEXPECTED");
      o.log.error(
        { code, error: (err as Error).message, consistency, durationMs: Date.now() - startedAt },
        "point failed",
      );
      return { ok: false, code };
    } finally {
      this.#running = null;
      this.#absorber = null; // the disks as the next point sees them
      await (sink as RemoteSink | null)?.close().catch(() => {});
    }
  }

  /**
   * Waits `ms` (or until woken), awake every second meanwhile: a busy disk's writes would overflow
   * the write journal's trace buffer before a point far apart (or a server back after a while)
   * drained it.
   */
  async #idle(ms: number): Promise<void> {
    for (const until = Date.now() + ms; !this.#stopping; ) {
      const left = until - Date.now();
      if (left <= 0) return;
      const woken = await this.#sleep(Math.min(left, ABSORB_EVERY_MS));
      if (woken) return;
      await this.#absorb();
    }
  }

  /** Drains the write journal's trace into its files when the buffer is filling (journal.ts absorb). */
  async #absorb(): Promise<void> {
    if (this.#journal === undefined || this.#stopping) return;
    let warning: string | null;
    try {
      this.#absorber ??= await this.#journal(this.#o.stateDir, this.#o.disks.map(inspectDisk));
      warning = (await this.#absorber?.absorb?.(this.#lastPoint)) ?? null;
    } catch (err) {
      // (a disk gone or resized: the next point says so)
      this.#absorber = null;
      warning = `write journal not drained between points: ${(err as Error).message}`;
    }
    if (warning !== null && warning !== this.#lastAbsorbWarning)
      this.#o.log.warn({ warning }, "write journal");
    this.#lastAbsorbWarning = warning;
  }

  /** Sleeps `ms`; true when woken before (a point requested, or stopping). */
  #sleep(ms: number): Promise<boolean> {
    if (this.#stopping || ms <= 0) return Promise.resolve(this.#stopping);
    return new Promise((resolve) => {
      const t = setTimeout(() => done(false), ms);
      function done(woken: boolean) {
        clearTimeout(t);
        resolve(woken);
      }
      this.#wake = () => {
        this.#wake = null;
        done(true);
      };
    });
  }
}

/** How often the daemon looks at the write journal's trace buffer between points. */
const ABSORB_EVERY_MS = 1000;

function backoff(code: string, failures: number): number {
  if (RETRY_AT_ONCE.has(code) && failures <= 3) return 200;
  return Math.min(1000 * 2 ** (failures - 1), MAX_BACKOFF_MS);
}

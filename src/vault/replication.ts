// Who may replicate what, and what each agent is told. The vault is the one authority:
//  - a copy of a machine replicates an item only while the item is replicating (initial replication
//    or protected) and the copy runs at the item's source site, to the item's process server, with
//    the item's current generation; every other copy is told to replicate nothing;
//  - the process servers ask `authenticate` (src/appliance/directory.ts; synchronous: it reads an
//    in-memory directory refreshed after every change and every second), which lets a request through
//    only with a current generation and otherwise names it fenced; remote appliances get their site's
//    part of it (directoryFor), pushed after every change and fetched every second;
//  - commands (take a point now, shut down) wait in agent_commands until the agent of the right copy
//    picks them up with a heartbeat and reports the result.
import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import {
  type AgentCommand,
  type Assignment,
  type CommandResult,
  CommandResultSchema,
  type LastPoint,
} from "../agent/protocol.ts";
import {
  authenticateFrom,
  emptyDirectory,
  type ItemGrant,
  type ReplicationDirectory,
  type SiteDirectory,
  siteDirectory,
} from "../appliance/directory.ts";
import type { Authenticate } from "../appliance/process-server.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { readJsonOrNull } from "./db/json.ts";
import type { VaultDatabase } from "./db/schema.ts";
import { applyItemEvent, parseItemRow } from "./items.ts";
import { recordCommittedPoint, trimRpoHistoryIfDue } from "./rpo-history.ts";

export interface CopyOfMachine {
  /** the compute instance the agent runs in, when one of ours */
  instanceId?: string;
  /** the site the agent says it runs at (from its SWITCHBACK_SITE), when not in an instance */
  site?: string;
  /** the site its agent token was registered from, which nothing the copy says overrides */
  tokenSite?: string;
}

export interface HeartbeatReport {
  results?: CommandResult[];
  lastPoint?: LastPoint;
}

/**
 * Every change this vault makes refreshes the directory at once; the timer only catches changes by
 * other vault processes on the same PostgreSQL (a read costs ~0.2 s at 10,000 items).
 */
const DIRECTORY_REFRESH_MS = 5000;

export class ReplicationService {
  readonly #db: Kysely<VaultDatabase>;
  readonly #log: Logger;
  readonly #now: () => Date;
  #dir: ReplicationDirectory = emptyDirectory();
  /** when the directory in memory was read (taken before reading) */
  #asOf = new Date(0);
  #timer: NodeJS.Timeout | null = null;
  /** process server URL by datastore id (filled by the site runtimes) */
  readonly serverUrls = new Map<string, string>();
  /** told after every refresh (remote sites push their part of the directory when it changed) */
  readonly #listeners = new Set<{ siteId: string; fn: () => Promise<void> }>();

  constructor(o: { db: Kysely<VaultDatabase>; log: Logger; now: () => Date }) {
    this.#db = o.db;
    this.#log = o.log;
    this.#now = o.now;
  }

  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => {
      this.#read()
        .then(() => this.#tell())
        .catch((err: unknown) => this.#log.error({ err }, "refreshing the replication directory failed"));
    }, DIRECTORY_REFRESH_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /**
   * Re-reads tokens and items; call after any change that moves a generation or a direction. Returns
   * once the remote appliances have the change too (or could not be told within a few seconds: they
   * fetch the directory every second anyway).
   */
  async refresh(): Promise<boolean> {
    return (await this.refreshSites()).length === 0;
  }

  /** As refresh(); returns the sites whose appliance could not be told. */
  async refreshSites(): Promise<string[]> {
    await this.#read();
    return this.#tell();
  }

  /** Calls `fn` after every refresh (it tells the appliance of `siteId`); returns how to stop. */
  onRefresh(siteId: string, fn: () => Promise<void>): () => void {
    const l = { siteId, fn };
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /** Pushes the directory to every remote appliance; the sites of those that could not be told. */
  async #tell(): Promise<string[]> {
    const told = await Promise.all(
      [...this.#listeners].map((l) =>
        l.fn().then(
          () => null,
          (err: unknown) => {
            this.#log.debug({ err, site: l.siteId }, "telling an appliance about the directory failed");
            return l.siteId;
          },
        ),
      ),
    );
    return told.filter((x) => x !== null);
  }

  /** The part of the directory a site's appliance needs (GET /v1/appliances/{id}/directory). */
  directoryFor(siteId: string): SiteDirectory {
    return siteDirectory(this.#dir, siteId, this.#asOf);
  }

  async #read(): Promise<void> {
    // the real clock, not the vault's (tests fix that one): appliances keep the newest copy by it
    const asOf = new Date();
    const tokens = await this.#db
      .selectFrom("tokens")
      .select(["sha256", "machine_id", "site_id"])
      .where("role", "=", "agent")
      .execute();
    const items = await this.#db.selectFrom("items").selectAll().execute();
    const dir: ReplicationDirectory = emptyDirectory();
    for (const t of tokens) {
      if (t.machine_id !== null) dir.tokens.set(t.sha256, { machineId: t.machine_id, site: t.site_id });
    }
    for (const row of items) {
      const it = parseItemRow(row);
      const m = dir.grants.get(row.machine_id) ?? new Map<string, ItemGrant>();
      m.set(row.id, {
        generation: it.state.generation,
        targetSite: it.state.target,
        sourceSite: it.state.source,
        replicating: it.state.phase === "initial-replication" || it.state.phase === "protected",
      });
      dir.grants.set(row.machine_id, m);
    }
    if (asOf < this.#asOf) return; // a later read finished first
    this.#dir = dir;
    this.#asOf = asOf;
  }

  /** The in-process process servers' authentication at `siteId`: agent tokens, current generations only. */
  authenticateFor(siteId: () => string): Authenticate {
    return authenticateFrom(() => this.#dir, siteId);
  }

  /** A point committed at a process server: the item's latest point, and its first completes enabling. */
  async pointCommitted(datastoreId: string, item: string, header: PointHeader): Promise<void> {
    const row = await this.#db
      .selectFrom("items")
      .select(["id", "datastore_id"])
      .where("id", "=", item)
      .executeTakeFirst();
    if (row === undefined || row.datastore_id !== datastoreId) return;
    const now = this.#now();
    // the item's newest point before this one, as the write that succeeded saw it
    let previousPointAt: string | null = null;
    await applyItemEvent(this.#db, item, { e: "point-arrived" }, now, (it) => {
      previousPointAt = it.row.last_point_at;
      return {
        lastPoint: { id: header.id, at: header.createdAt, app: header.consistency === "app" },
        resyncRequired: false,
      };
    });
    // the RPO history is for charts: failing to write it must not fail the commit's record
    try {
      await recordCommittedPoint(this.#db, {
        itemId: item,
        pointAt: header.createdAt,
        previousPointAt,
        committedAt: now,
      });
    } catch (err) {
      this.#log.warn({ err, item }, "recording the RPO history of a committed point failed");
    }
    trimRpoHistoryIfDue(this.#db, now).catch((err: unknown) =>
      this.#log.warn({ err }, "trimming the RPO history failed"),
    );
    await this.refresh();
  }

  /** What the agent of this copy of the machine should do now. */
  async assignmentFor(
    machineId: string,
    copy: CopyOfMachine,
    report: HeartbeatReport = {},
  ): Promise<Assignment> {
    const now = this.#now().toISOString();
    // results the vault still waited for; a late one (the job gave up) is not accepted, and the agent
    // then does not act on it (a shutdown the vault no longer wants does not power the machine off)
    const accepted: string[] = [];
    for (const r of report.results ?? []) {
      const u = await this.#db
        .updateTable("agent_commands")
        .set({ finished_at: now, result: JSON.stringify(r) })
        .where("id", "=", r.id)
        .where("machine_id", "=", machineId)
        .where("finished_at", "is", null)
        .executeTakeFirst();
      if (Number(u.numUpdatedRows) === 1) accepted.push(r.id);
    }
    const site = await this.#siteOf(machineId, copy);
    const rows = await this.#db.selectFrom("items").selectAll().where("machine_id", "=", machineId).execute();
    let replicate: Assignment["replicate"] = null;
    let fenced: string | undefined;
    for (const row of rows) {
      const it = parseItemRow(row);
      if (report.lastPoint !== undefined && report.lastPoint.item === row.id) {
        await this.#db
          .updateTable("items")
          .set({ last_point_report: JSON.stringify(report.lastPoint) })
          .where("id", "=", row.id)
          .execute();
      }
      const s = it.state;
      if (s.phase === "disabled") continue;
      if (site !== s.source) {
        if (s.phase !== "enabling")
          fenced = `this copy runs at ${site ?? "an unknown site"}; item ${row.name} replicates from ${s.source}`;
        continue;
      }
      if (s.phase !== "initial-replication" && s.phase !== "protected") continue;
      const url = this.serverUrls.get(row.datastore_id);
      const policy = await this.#db
        .selectFrom("policies")
        .selectAll()
        .where("id", "=", row.policy_id)
        .executeTakeFirst();
      if (url === undefined || policy === undefined) continue;
      replicate = {
        item: row.id,
        processServer: url,
        generation: s.generation,
        crashEverySeconds: policy.crash_consistent_every_s,
        appEverySeconds: policy.app_consistent_every_s,
      };
    }
    const pending = await this.#db
      .selectFrom("agent_commands")
      .selectAll()
      .where("machine_id", "=", machineId)
      .where("finished_at", "is", null)
      .orderBy("created_at")
      .execute();
    const commands: AgentCommand[] = [];
    for (const c of pending) {
      if (c.site_id !== null && c.site_id !== site) continue;
      if (c.job_id !== null) {
        // a command outlives nothing: once its job finished nobody waits for it
        const job = await this.#db
          .selectFrom("jobs")
          .select("finished_at")
          .where("id", "=", c.job_id)
          .executeTakeFirst();
        if (job === undefined || job.finished_at !== null) {
          await this.cancelCommand(c.id);
          continue;
        }
      }
      const params = JSON.parse(c.params) as { finalPoint?: boolean };
      commands.push({ id: c.id, kind: c.kind as AgentCommand["kind"], ...params });
      if (c.delivered_at === null) {
        await this.#db
          .updateTable("agent_commands")
          .set({ delivered_at: now })
          .where("id", "=", c.id)
          .execute();
      }
    }
    return {
      replicate,
      commands,
      accepted,
      ...(replicate === null && fenced !== undefined ? { fenced } : {}),
    };
  }

  async #siteOf(machineId: string, copy: CopyOfMachine): Promise<string | null> {
    if (copy.tokenSite !== undefined) return copy.tokenSite;
    if (copy.instanceId !== undefined) {
      const inst = await this.#db
        .selectFrom("instances")
        .select("site_id")
        .where("id", "=", copy.instanceId)
        .executeTakeFirst();
      if (inst !== undefined) return inst.site_id;
    }
    if (copy.site !== undefined) {
      const s = await this.#db
        .selectFrom("sites")
        .select("id")
        .where((eb) => eb.or([eb("id", "=", copy.site as string), eb("name", "=", copy.site as string)]))
        .executeTakeFirst();
      if (s !== undefined) return s.id;
    }
    const m = await this.#db
      .selectFrom("machines")
      .select("site_id")
      .where("id", "=", machineId)
      .executeTakeFirst();
    return m?.site_id ?? null;
  }

  /** Queues a command for the copy of the machine at `siteId`; returns its id. */
  async command(
    machineId: string,
    siteId: string | null,
    kind: AgentCommand["kind"],
    params: { finalPoint?: boolean },
    jobId: string | null,
    id = `cmd-${randomBytes(8).toString("hex")}`,
  ): Promise<string> {
    // a resumed job step queues the same command once; a retried step whose command failed or was
    // given up queues a fresh one (cmd-…-r2, -r3…), which the agent has not seen yet
    for (let attempt = 1; ; attempt++) {
      const candidate = attempt === 1 ? id : `${id}-r${attempt}`;
      const row = await this.#db
        .selectFrom("agent_commands")
        .select(["finished_at", "result"])
        .where("id", "=", candidate)
        .executeTakeFirst();
      if (row === undefined) {
        id = candidate;
        break;
      }
      const failed = row.finished_at !== null && !(JSON.parse(row.result ?? "{}") as { ok?: boolean }).ok;
      if (!failed) return candidate;
    }
    await this.#db
      .insertInto("agent_commands")
      .values({
        id,
        machine_id: machineId,
        site_id: siteId,
        kind,
        params: JSON.stringify(params),
        job_id: jobId,
        created_at: this.#now().toISOString(),
        delivered_at: null,
        finished_at: null,
        result: null,
      })
      .execute();
    return id;
  }

  /** Waits for a command's result; null when the time limit passed first. */
  /**
   * The command's result once the agent delivered it; null after `timeoutMs`, or as soon as `alive`
   * (asked about once a second) says the agent cannot answer any more (its site is unreachable).
   */
  async awaitCommand(
    id: string,
    timeoutMs: number,
    signal?: AbortSignal,
    alive?: () => Promise<boolean>,
  ): Promise<CommandResult | null> {
    const deadline = Date.now() + timeoutMs;
    let askedAt = Date.now();
    for (;;) {
      const row = await this.#db
        .selectFrom("agent_commands")
        .select(["result", "finished_at"])
        .where("id", "=", id)
        .executeTakeFirst();
      if (row === undefined)
        throw new SwitchbackError("COMMAND_NOT_FOUND", `agent command ${id} does not exist`);
      if (row.finished_at !== null) {
        return readJsonOrNull(CommandResultSchema, row.result, {
          table: "agent_commands",
          column: "result",
          id,
        });
      }
      if (Date.now() >= deadline) return null;
      if (alive !== undefined && Date.now() - askedAt >= 1000) {
        askedAt = Date.now();
        if (!(await alive())) return null;
      }
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Forgets commands nobody will pick up any more (the item moved on). */
  async cancelCommand(id: string): Promise<void> {
    await this.#db
      .updateTable("agent_commands")
      .set({
        finished_at: this.#now().toISOString(),
        result: JSON.stringify({ id, ok: false, error: "cancelled: no answer in time" }),
      })
      .where("id", "=", id)
      .where("finished_at", "is", null)
      .execute();
  }
}

// Who may replicate what, and what each agent is told. The vault is the one authority:
//  - a copy of a machine replicates an item only while the item is replicating (initial replication
//    or protected) and the copy runs at the item's source site, to the item's process server, with
//    the item's current generation; every other copy is told to replicate nothing;
//  - the in-process process servers ask `authenticate` (synchronous: it reads an in-memory directory
//    refreshed after every change and every second), which lets a request through only with a
//    current generation and otherwise names it fenced;
//  - commands (take a point now, shut down) wait in agent_commands until the agent of the right copy
//    picks them up with a heartbeat and reports the result.
import { createHash, randomBytes } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import {
  type AgentCommand,
  type Assignment,
  type CommandResult,
  CommandResultSchema,
  type LastPoint,
} from "../agent/protocol.ts";
import type { Authenticate, Principal } from "../appliance/process-server.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { readJsonOrNull } from "./db/json.ts";
import type { VaultDatabase } from "./db/schema.ts";
import { applyItemEvent, loadItem, parseItemRow } from "./items.ts";

interface ItemGrant {
  generation: number;
  /** the site of the process server that may receive it (the item's target) */
  targetSite: string;
  replicating: boolean;
}

interface Directory {
  /** sha256(token) → machine id */
  tokens: Map<string, string>;
  /** machine id → item id → grant */
  grants: Map<string, Map<string, ItemGrant>>;
}

export interface CopyOfMachine {
  /** the compute instance the agent runs in, when one of ours */
  instanceId?: string;
  /** the site the agent says it runs at (from its SWITCHBACK_SITE), when not in an instance */
  site?: string;
}

export interface HeartbeatReport {
  results?: CommandResult[];
  lastPoint?: LastPoint;
}

export class ReplicationService {
  readonly #db: Kysely<VaultDatabase>;
  readonly #log: Logger;
  readonly #now: () => Date;
  #dir: Directory = { tokens: new Map(), grants: new Map() };
  #timer: NodeJS.Timeout | null = null;
  /** process server URL by datastore id (filled by the site runtimes) */
  readonly serverUrls = new Map<string, string>();

  constructor(o: { db: Kysely<VaultDatabase>; log: Logger; now: () => Date }) {
    this.#db = o.db;
    this.#log = o.log;
    this.#now = o.now;
  }

  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => {
      this.refresh().catch((err: unknown) =>
        this.#log.error({ err }, "refreshing the replication directory failed"),
      );
    }, 1000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Re-reads tokens and items; call after any change that moves a generation or a direction. */
  async refresh(): Promise<void> {
    const tokens = await this.#db
      .selectFrom("tokens")
      .select(["sha256", "machine_id"])
      .where("role", "=", "agent")
      .execute();
    const items = await this.#db.selectFrom("items").selectAll().execute();
    const dir: Directory = { tokens: new Map(), grants: new Map() };
    for (const t of tokens) if (t.machine_id !== null) dir.tokens.set(t.sha256, t.machine_id);
    for (const row of items) {
      const it = parseItemRow(row);
      const m = dir.grants.get(row.machine_id) ?? new Map<string, ItemGrant>();
      m.set(row.id, {
        generation: it.state.generation,
        targetSite: it.state.target,
        replicating: it.state.phase === "initial-replication" || it.state.phase === "protected",
      });
      dir.grants.set(row.machine_id, m);
    }
    this.#dir = dir;
  }

  /** The process server's authentication at `siteId`: agent tokens, current generations only. */
  authenticateFor(siteId: () => string): Authenticate {
    return (req: FastifyRequest): Principal | null => {
      const h = req.headers.authorization;
      if (h === undefined || !h.startsWith("Bearer ")) return null;
      const digest = createHash("sha256").update(h.slice(7).trim(), "utf8").digest("hex");
      const machine = this.#dir.tokens.get(digest);
      if (machine === undefined) return null;
      const header = req.headers["switchback-generation"];
      const generation = Number(Array.isArray(header) ? header[0] : header);
      const items = new Set<string>();
      const fenced = new Set<string>();
      for (const [item, g] of this.#dir.grants.get(machine) ?? []) {
        if (g.targetSite !== siteId()) continue;
        if (g.replicating && g.generation === generation) items.add(item);
        else fenced.add(item);
      }
      return { agent: `machine ${machine}`, items, fenced };
    };
  }

  /** A point committed at a process server: the item's latest point, and its first completes enabling. */
  async pointCommitted(datastoreId: string, item: string, header: PointHeader): Promise<void> {
    const row = await this.#db
      .selectFrom("items")
      .select(["id", "datastore_id"])
      .where("id", "=", item)
      .executeTakeFirst();
    if (row === undefined || row.datastore_id !== datastoreId) return;
    await applyItemEvent(this.#db, item, { e: "point-arrived" }, this.#now(), () => ({
      lastPoint: { id: header.id, at: header.createdAt, app: header.consistency === "app" },
      resyncRequired: false,
    }));
    await this.refresh();
  }

  /** What the agent of this copy of the machine should do now. */
  async assignmentFor(
    machineId: string,
    copy: CopyOfMachine,
    report: HeartbeatReport = {},
  ): Promise<Assignment> {
    const now = this.#now().toISOString();
    for (const r of report.results ?? []) {
      await this.#db
        .updateTable("agent_commands")
        .set({ finished_at: now, result: JSON.stringify(r) })
        .where("id", "=", r.id)
        .where("machine_id", "=", machineId)
        .where("finished_at", "is", null)
        .execute();
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
    return { replicate, commands, ...(replicate === null && fenced !== undefined ? { fenced } : {}) };
  }

  async #siteOf(machineId: string, copy: CopyOfMachine): Promise<string | null> {
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
    const exists = await this.#db
      .selectFrom("agent_commands")
      .select("id")
      .where("id", "=", id)
      .executeTakeFirst();
    if (exists !== undefined) return id; // a resumed job step queues the same command once
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
  async awaitCommand(id: string, timeoutMs: number, signal?: AbortSignal): Promise<CommandResult | null> {
    const deadline = Date.now() + timeoutMs;
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

  /** The item, for callers that hold only the service. */
  item(id: string) {
    return loadItem(this.#db, id);
  }
}

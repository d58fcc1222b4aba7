// The agent under a vault: finds its machine's identity on the OS disk, registers, heartbeats the
// machine's properties and follows the assignment it gets back (replicate this item to that process
// server with this generation, take a point now, shut the machine down). Replication itself is the
// AgentDaemon's; this module only starts, stops and steers it.
//
// Agent state lives per item *and generation*: after a failover or a failback the disks may have
// been rewritten underneath, so hashes of an older generation are never trusted again (the first
// point of a new generation is a resync by comparison, which ships only the blocks that differ).
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import { SwitchbackError } from "../domain/errors.ts";
import { parseItemName } from "../domain/ids.ts";
import { writeFileAtomic } from "../platform/files.ts";
import { procStat } from "../platform/process.ts";
import { callVault } from "../platform/vault-call.ts";
import { inspectDisk } from "../replication/disk-source.ts";
import { removeJournal } from "../replication/journal.ts";
import type { ReplicateResult, SnapshotMode } from "../replication/replicate.ts";
import { AgentDaemon } from "./daemon.ts";
import { ensureIdentity, ensureIdentityFile, type MachineIdentity } from "./identity.ts";
import type {
  AgentCommand,
  Assignment,
  CommandResult,
  LastPoint,
  ReplicationAssignment,
} from "./protocol.ts";

export interface VaultAgentOptions {
  vault: string;
  /** registers with it the first time; later the agent token saved in stateDir is used */
  enrolToken?: string;
  disks: string[];
  /** the agent's own folder (not on the replicated disks): its token and per-item state */
  stateDir: string;
  name: string;
  /** the compute instance that runs this machine, when a provider of the vault started it */
  instanceId?: string;
  site?: string;
  /** how the agent powers its machine off: its process group (provider-run machines) or a command */
  /** the identity lives in this file (privileged machines) instead of a label on the OS disk */
  identityFile?: string;
  shutdown: { kind: "process-group" } | { kind: "command"; command: string } | { kind: "none" };
  snapshot?: SnapshotMode;
  hooksDir?: string;
  /** the write journal's trace buffer per CPU, KiB (default 4 MiB) */
  journalBufferKbPerCpu?: number;
  log: Logger;
}

interface Saved {
  machineId: string;
  token: string;
}

export class VaultAgent {
  readonly #o: VaultAgentOptions;
  readonly identity: MachineIdentity;
  #saved: Saved | null = null;
  #heartbeatMs = 5000;
  #daemon: { daemon: AgentDaemon; running: Promise<void>; key: string; a: ReplicationAssignment } | null =
    null;
  #handled = new Set<string>();
  /** command results the vault accepted (it still waited for them) */
  #accepted = new Set<string>();
  #results: CommandResult[] = [];
  #lastPoint: LastPoint | null = null;
  #progress: { bytesDone: number; bytesTotal: number; bytesPerSecond: number } | undefined;
  #progressStart: { at: number; bytes: number } | null = null;
  #stopping = false;
  #wake: (() => void) | null = null;
  #poweringOff = false;

  constructor(o: VaultAgentOptions) {
    this.#o = o;
    this.identity =
      o.identityFile !== undefined
        ? ensureIdentityFile(o.identityFile, o.disks.length, o.name).identity
        : ensureIdentity(o.disks, o.name).identity;
  }

  async run(): Promise<void> {
    const log = this.#o.log;
    log.info({ machineId: this.identity.machineId, vault: this.#o.vault }, "agent started");
    while (!this.#stopping) {
      try {
        await this.#beat();
      } catch (err) {
        log.warn({ error: (err as Error).message, code: (err as SwitchbackError).code }, "heartbeat failed");
      }
      await this.#sleep(this.#heartbeatMs);
    }
    await this.#stopDaemon();
    log.info("agent stopped");
  }

  stop(): void {
    this.#stopping = true;
    this.#wake?.();
  }

  async #beat(): Promise<void> {
    const saved = await this.#ensureRegistered();
    const results = this.#results.splice(0);
    let reply: { assignment: Assignment; heartbeatIntervalSeconds: number };
    try {
      reply = (await this.#call("/v1/agent/heartbeat", saved.token, {
        ...this.#properties(),
        ...(this.#progress !== undefined ? { replication: this.#progress } : {}),
        ...(this.#o.instanceId !== undefined ? { instanceId: this.#o.instanceId } : {}),
        results,
        ...(this.#lastPoint !== null ? { lastPoint: this.#lastPoint } : {}),
      })) as typeof reply;
    } catch (err) {
      this.#results.unshift(...results); // report them with the next heartbeat
      throw err;
    }
    this.#heartbeatMs = Math.max(200, reply.heartbeatIntervalSeconds * 1000);
    for (const id of reply.assignment.accepted ?? []) this.#accepted.add(id);
    await this.#follow(reply.assignment);
  }

  async #ensureRegistered(): Promise<Saved> {
    if (this.#saved !== null) return this.#saved;
    const file = path.join(this.#o.stateDir, "agent.json");
    try {
      const s = JSON.parse(readFileSync(file, "utf8")) as Saved;
      if (s.machineId === this.identity.machineId) {
        this.#saved = s;
        return s;
      }
      // a copy of the disks from another machine: register as what the disk says
    } catch {
      // first start
    }
    if (this.#o.enrolToken === undefined) {
      throw new SwitchbackError(
        "AGENT_NOT_ENROLLED",
        "the agent has no token yet; give it an enrol token (--enrol-token or SWITCHBACK_ENROL_TOKEN)",
      );
    }
    const r = (await this.#call("/v1/agent/register", this.#o.enrolToken, {
      machineId: this.identity.machineId,
      name: this.#o.name,
      ...(this.#o.instanceId !== undefined ? { instanceId: this.#o.instanceId } : {}),
      ...(this.#o.site !== undefined ? { site: this.#o.site } : {}),
    })) as { machineId: string; agentToken: string; heartbeatIntervalSeconds: number };
    const saved = { machineId: r.machineId, token: r.agentToken };
    writeFileAtomic(file, `${JSON.stringify(saved)}\n`, 0o600);
    this.#heartbeatMs = r.heartbeatIntervalSeconds * 1000;
    this.#saved = saved;
    this.#o.log.info({ machineId: r.machineId }, "registered with the vault");
    return saved;
  }

  #properties() {
    const nics = Object.entries(os.networkInterfaces()).map(([name, addrs]) => ({
      name,
      mac: addrs?.[0]?.mac ?? "00:00:00:00:00:00",
      addresses: (addrs ?? []).map((a) => `${a.address}/${a.cidr?.split("/")[1] ?? ""}`.replace(/\/$/, "")),
    }));
    return {
      machineId: this.identity.machineId,
      hostname: this.#o.name,
      os: `${os.type().toLowerCase()} ${os.release()}`,
      cpus: os.availableParallelism(),
      memoryBytes: os.totalmem(),
      disks: this.#o.disks.map((p, i) => {
        const d = inspectDisk(p);
        return {
          uuid: this.identity.disks[i]?.uuid ?? "",
          path: p,
          sizeBytes: d.sizeBytes,
          sectorSize: d.sectorSize,
        };
      }),
      nics,
    };
  }

  async #follow(a: Assignment): Promise<void> {
    const want = a.replicate;
    const key = want === null ? "" : `${want.item}@${want.processServer}#${want.generation}`;
    if (a.fenced !== undefined && this.#daemon !== null) {
      this.#o.log.warn({ reason: a.fenced }, "replication fenced by the vault");
    }
    if ((this.#daemon?.key ?? "") !== key) {
      const ended = this.#daemon?.a;
      await this.#stopDaemon();
      // that replication is over: its write journal stops recording (an agent that merely restarts keeps it)
      if (ended !== undefined) removeJournal(this.#replicationState(ended));
      if (want !== null) this.#startDaemon(want, key);
    }
    for (const c of a.commands) {
      if (this.#handled.has(c.id)) continue;
      this.#handled.add(c.id);
      void this.#command(c);
    }
  }

  #startDaemon(a: ReplicationAssignment, key: string): void {
    const saved = this.#saved as Saved;
    const item = parseItemName(a.item);
    this.#progressStart = null;
    const daemon = new AgentDaemon({
      server: a.processServer,
      token: saved.token,
      item,
      disks: this.#o.disks,
      stateDir: this.#replicationState(a),
      crashEveryMs: a.crashEverySeconds * 1000,
      appEveryMs: a.appEverySeconds > 0 ? a.appEverySeconds * 1000 : Number.POSITIVE_INFINITY,
      generation: a.generation,
      diskUuids: this.identity.disks.map((d) => d.uuid),
      ...(this.#o.hooksDir !== undefined && a.appEverySeconds > 0 ? { hooksDir: this.#o.hooksDir } : {}),
      ...(this.#o.snapshot !== undefined ? { snapshot: this.#o.snapshot } : {}),
      ...(this.#o.journalBufferKbPerCpu !== undefined
        ? { journalBufferKbPerCpu: this.#o.journalBufferKbPerCpu }
        : {}),
      deadlineMs: 30_000,
      log: this.#o.log,
      onProgress: (p) => {
        const now = Date.now();
        if (this.#progressStart === null || p.bytesRead < this.#progressStart.bytes) {
          this.#progressStart = { at: now, bytes: p.bytesRead };
        }
        const dt = (now - this.#progressStart.at) / 1000;
        this.#progress = {
          bytesDone: p.bytesRead,
          bytesTotal: p.totalBytes,
          bytesPerSecond: dt > 0 ? (p.bytesRead - this.#progressStart.bytes) / dt : 0,
        };
      },
      onPoint: (r) => {
        this.#lastPoint = lastPointOf(r);
        this.#progressStart = null;
        if (this.#progress !== undefined)
          this.#progress = { ...this.#progress, bytesDone: this.#progress.bytesTotal };
      },
    });
    this.#o.log.info(
      { item: a.item, processServer: a.processServer, generation: a.generation },
      "replicating",
    );
    this.#daemon = { daemon, running: daemon.run(), key, a };
  }

  #replicationState(a: ReplicationAssignment): string {
    return path.join(this.#o.stateDir, "replication", `${a.item}-g${a.generation}`);
  }

  async #stopDaemon(): Promise<void> {
    const d = this.#daemon;
    if (d === null) return;
    this.#daemon = null;
    d.daemon.stop();
    await d.running.catch(() => {});
  }

  async #command(c: AgentCommand): Promise<void> {
    const log = this.#o.log;
    log.info({ command: c }, "command from the vault");
    try {
      if (c.kind === "point-now") {
        const r = await this.#pointNow();
        this.#report({ id: c.id, ok: true, pointId: r.pointId });
        return;
      }
      // shutdown: stop the machine's services so nothing writes any more, take the final point of
      // a quiet disk (a planned failover loses nothing), report, then power off
      if (this.#o.shutdown.kind === "none") {
        throw new SwitchbackError(
          "AGENT_CANNOT_SHUT_DOWN",
          "this agent does not know how to shut its machine down; start it with --shutdown-command",
        );
      }
      await stopOtherProcesses(log);
      let pointId: string | undefined;
      if (c.finalPoint) pointId = (await this.#pointNow()).pointId;
      this.#report({ id: c.id, ok: true, ...(pointId !== undefined ? { pointId } : {}) });
      // deliver the result before powering off, and power off only when the vault still wanted it
      // (a failover that gave up on this machine goes on replicating from it)
      for (let i = 0; i < 5 && !this.#accepted.has(c.id); i++) {
        await this.#beat().catch(() => {});
        if (!this.#accepted.has(c.id)) await new Promise((r) => setTimeout(r, 500));
      }
      if (!this.#accepted.has(c.id)) {
        log.warn(
          { command: c.id },
          "the vault no longer waits for this shutdown: not powering off (the machine's services were stopped; restart the machine)",
        );
        return;
      }
      await this.#powerOff();
    } catch (err) {
      log.error({ command: c.id, error: (err as Error).message }, "command failed");
      this.#report({ id: c.id, ok: false, error: (err as Error).message });
    }
  }

  async #pointNow(): Promise<ReplicateResult> {
    const d = this.#daemon;
    if (d === null) {
      throw new SwitchbackError(
        "AGENT_NOT_REPLICATING",
        "the agent has no replication assignment to take a point for",
      );
    }
    return d.daemon.requestPoint();
  }

  #report(r: CommandResult): void {
    this.#results.push(r);
    this.#wake?.(); // a heartbeat now delivers it
  }

  async #powerOff(): Promise<void> {
    if (this.#poweringOff) return;
    this.#poweringOff = true;
    this.#stopping = true;
    await this.#stopDaemon();
    const s = this.#o.shutdown;
    this.#o.log.info({ how: s.kind }, "powering off");
    if (s.kind === "command") {
      const { spawnSync } = await import("node:child_process");
      spawnSync("sh", ["-c", s.command], { stdio: "inherit" });
    } else if (s.kind === "process-group") {
      const pgid = procStat(process.pid)?.pgrp ?? null;
      if (pgid !== null && pgid > 1) process.kill(-pgid, "SIGTERM");
    }
    setTimeout(() => process.exit(0), 200).unref();
  }

  async #call(route: string, token: string, body: unknown): Promise<unknown> {
    try {
      return await callVault(this.#o.vault, { method: "POST", route, token, body });
    } catch (err) {
      // a token the vault no longer knows: register again (a new enrolment)
      if ((err as { status?: number }).status === 401 && route.endsWith("heartbeat")) this.#saved = null;
      throw err;
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(t);
        self.#wake = null;
        resolve();
      }
      this.#wake = done;
    });
  }
}

function lastPointOf(r: ReplicateResult): LastPoint {
  return {
    item: r.item,
    pointId: r.pointId,
    mode: r.mode,
    consistency: r.consistency,
    bytesRead: r.bytesRead,
    bytesSent: r.bytesSent,
    changedBlocks: r.changedBlocks,
    durationMs: Math.round(r.durationMs),
    maxFreezeMs: Math.round(r.maxFreezeMs),
    warnings: r.warnings,
  };
}

/**
 * Stops the machine's other processes (its services) but not the agent and its ancestors: TERM,
 * then KILL after 10 s. Only for provider-run machines, whose process group is the machine.
 */
async function stopOtherProcesses(log: Logger): Promise<void> {
  const pgid = procStat(process.pid)?.pgrp ?? null;
  if (pgid === null || pgid <= 1) return;
  const keep = new Set<number>();
  for (let p: number | null = process.pid; p !== null && p > 1; p = procStat(p)?.ppid ?? null) keep.add(p);
  const members = (): number[] =>
    readdirSync("/proc")
      .filter((n) => /^\d+$/.test(n))
      .map(Number)
      .filter((p) => {
        if (keep.has(p)) return false;
        const st = procStat(p);
        return st !== null && st.pgrp === pgid && st.state !== "Z"; // a zombie has stopped already
      });
  const first = members();
  log.info({ processes: first }, "stopping the machine's services");
  for (const p of first) tryKill(p, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (members().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const p of members()) tryKill(p, "SIGKILL");
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

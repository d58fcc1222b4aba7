// Machines: what agents run on and items protect. A machine's id is the one on its own OS disk
// (identity label, src/agent/identity.ts), so a recovered copy that registers from the other site is
// the same row with a new site and instance. Rows come from two places: `machines create` defines a
// machine the `process` provider boots (boot command, disk sizes), and an agent's registration
// creates the row of a machine the vault did not define. Heartbeats replace the reported properties.
import { randomUUID } from "node:crypto";
import { Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import { liveness, replicationProgress } from "../../domain/health.ts";
import { readJson, readJsonOrNull } from "../db/json.ts";
import type { MachineRow, VaultDatabase } from "../db/schema.ts";
import {
  type AgentHeartbeat,
  type AgentRegister,
  type CreateMachine,
  type Machine,
  type MachineDisk,
  MachineDiskSchema,
  type MachineLayout,
  MachineLayoutSchema,
  NicSchema,
  PowerStateSchema,
} from "../http/schemas.ts";
import type { HealthClock } from "./appliances.ts";
import { checkName, dateOrNull, exists, findByRef, notFound } from "./common.ts";
import { getSiteRow, siteNames } from "./sites.ts";
import { createToken } from "./tokens.ts";

const DisksSchema = Type.Array(MachineDiskSchema);
const NicsSchema = Type.Array(NicSchema);
const ReplicationSchema = Type.Object({
  bytesDone: Type.Number(),
  bytesTotal: Type.Number(),
  bytesPerSecond: Type.Number(),
  at: Type.String(),
  samples: Type.Array(Type.Object({ at: Type.String(), bytesDone: Type.Number() })),
});
type Replication = typeof ReplicationSchema.static;

/** Samples kept for the throughput: a minute's worth at the default 15 s heartbeat, and some. */
const MAX_SAMPLES = 8;

export function toMachine(r: MachineRow, siteName: string | null, clock: HealthClock): Machine {
  const ref = (column: string) => ({ table: "machines", column, id: r.id });
  const rep = readJsonOrNull(ReplicationSchema, r.replication, ref("replication"));
  const power = r.power_state as Machine["powerState"];
  return {
    id: r.id,
    name: r.name,
    siteId: r.site_id,
    site: siteName,
    instanceId: r.instance_id,
    hostname: r.hostname,
    os: r.os,
    cpus: r.cpus,
    memoryBytes: r.memory_bytes === null ? null : Number(r.memory_bytes),
    disks: readJson(DisksSchema, r.disks, ref("disks")),
    nics: readJson(NicsSchema, r.nics, ref("nics")),
    bootCommand: r.boot_command,
    layout: readJsonOrNull(MachineLayoutSchema, r.layout, ref("layout")),
    powerState: PowerStateSchema.anyOf.some((s) => s.const === power) ? power : "unknown",
    lastHeartbeatAt: r.last_heartbeat_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    health: {
      liveness: liveness(clock.now, dateOrNull(r.last_heartbeat_at), clock.heartbeatIntervalMs).state,
      replication:
        rep === null
          ? null
          : (({ sampledAt, ...p }) => ({ ...p, sampledAt: sampledAt?.toISOString() ?? null }))(
              replicationProgress({
                now: clock.now,
                bytesTotal: rep.bytesTotal,
                samples: rep.samples.map((s) => ({ at: new Date(s.at), bytesDone: s.bytesDone })),
                reportedBytesPerSecond: rep.bytesPerSecond,
              }),
            ),
    },
  };
}

export async function getMachineRow(db: Kysely<VaultDatabase>, ref: string): Promise<MachineRow> {
  const r = await findByRef(db, "machines", ref);
  if (r === undefined) throw notFound("machine", ref, "switchback machines list");
  return r;
}

async function siteNameOf(db: Kysely<VaultDatabase>, siteId: string | null): Promise<string | null> {
  return siteId === null ? null : (await getSiteRow(db, siteId)).name;
}

export async function getMachine(
  db: Kysely<VaultDatabase>,
  ref: string,
  clock: HealthClock,
): Promise<Machine> {
  const r = await getMachineRow(db, ref);
  return toMachine(r, await siteNameOf(db, r.site_id), clock);
}

export async function listMachines(
  db: Kysely<VaultDatabase>,
  clock: HealthClock,
  filter: { site?: string } = {},
): Promise<Machine[]> {
  let q = db.selectFrom("machines").selectAll();
  if (filter.site !== undefined) q = q.where("site_id", "=", (await getSiteRow(db, filter.site)).id);
  const rows = await q.orderBy("created_at").orderBy("name").execute();
  const names = await siteNames(db);
  return rows.map((r) => toMachine(r, r.site_id === null ? null : (names.get(r.site_id) ?? null), clock));
}

async function refuseTakenName(
  db: Kysely<VaultDatabase>,
  name: string,
  machineId: string | null,
): Promise<void> {
  // machines.name carries no unique index (an agent may register a name the vault already knows under
  // another id), so the check is here
  const other = await db.selectFrom("machines").select("id").where("name", "=", name).executeTakeFirst();
  if (other !== undefined && other.id !== machineId) throw exists("machine", name);
}

/** Defines a machine for the `process` provider: a boot command and empty disks of these sizes. */
export async function createMachine(
  db: Kysely<VaultDatabase>,
  input: CreateMachine,
  clock: HealthClock,
): Promise<Machine> {
  checkName("machine", input.name);
  const site = await getSiteRow(db, input.site);
  await refuseTakenName(db, input.name, null);
  const now = clock.now.toISOString();
  const disks: MachineDisk[] = input.disks.map((d, i) => ({
    uuid: randomUUID(),
    path: null,
    sizeBytes: d.sizeBytes,
    sectorSize: d.sectorSize ?? 512,
    role: i === 0 ? "os" : "data",
  }));
  const row: MachineRow = {
    id: randomUUID(),
    name: input.name,
    site_id: site.id,
    instance_id: null,
    hostname: null,
    os: null,
    cpus: null,
    memory_bytes: null,
    disks: JSON.stringify(disks),
    nics: "[]",
    boot_command: input.bootCommand,
    layout: layoutOf(input),
    power_state: "stopped",
    last_heartbeat_at: null,
    replication: null,
    created_at: now,
    updated_at: now,
  };
  await db.insertInto("machines").values(row).execute();
  return toMachine(row, site.name, clock);
}

/**
 * An agent registers (with an enrol token, or admin): the machine's row is found by the id on its
 * disk or created, takes the site of the instance it runs in (or the site named), and the agent gets
 * a fresh token bound to that machine. Registering again (a restart, a recovered copy) is the same row.
 */
export async function registerAgent(
  db: Kysely<VaultDatabase>,
  input: AgentRegister,
  clock: HealthClock,
): Promise<{ machineId: string; agentToken: string }> {
  const now = clock.now.toISOString();
  let siteId: string | null = null;
  if (input.instanceId !== undefined) {
    const inst = await db
      .selectFrom("instances")
      .select(["site_id", "deleted_at"])
      .where("id", "=", input.instanceId)
      .executeTakeFirst();
    if (inst === undefined || inst.deleted_at !== null) {
      throw new SwitchbackError(
        "INSTANCE_NOT_FOUND",
        `instance ${JSON.stringify(input.instanceId)} (SWITCHBACK_INSTANCE) is not one the vault runs; start the machine through the vault, or register without an instance and with a site`,
      );
    }
    siteId = inst.site_id;
  } else if (input.site !== undefined) {
    siteId = (await getSiteRow(db, input.site)).id;
  }
  const existing = await db
    .selectFrom("machines")
    .selectAll()
    .where("id", "=", input.machineId)
    .executeTakeFirst();
  if (existing === undefined) {
    const name = input.name ?? input.machineId.slice(0, 64);
    checkName("machine", name);
    await refuseTakenName(db, name, input.machineId);
    await db
      .insertInto("machines")
      .values({
        id: input.machineId,
        name,
        site_id: siteId,
        instance_id: input.instanceId ?? null,
        hostname: null,
        os: null,
        cpus: null,
        memory_bytes: null,
        disks: "[]",
        nics: "[]",
        boot_command: null,
        layout: null,
        power_state: "running",
        last_heartbeat_at: null,
        replication: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
  } else {
    await db
      .updateTable("machines")
      .set({
        site_id: siteId ?? existing.site_id,
        // a registration from outside any instance of ours leaves the machine's instance unknown
        instance_id: input.instanceId ?? (siteId === null ? existing.instance_id : null),
        power_state: "running",
        updated_at: now,
      })
      .where("id", "=", existing.id)
      .execute();
  }
  const name = existing?.name ?? input.name ?? input.machineId;
  const t = await createToken(db, {
    role: "agent",
    name: `agent ${name}`,
    machineId: input.machineId,
    // the token speaks for this copy only: the site (and instance) it registers from
    siteId,
    instanceId: input.instanceId ?? null,
    now: clock.now,
  });
  return { machineId: input.machineId, agentToken: t.token };
}

/** Replaces the machine's reported properties; returns nothing (the caller adds the assignment). */
export async function recordHeartbeat(
  db: Kysely<VaultDatabase>,
  hb: AgentHeartbeat,
  now: Date,
  /** the agent token the heartbeat came with: its copy's site is the token's, whatever hb says */
  token?: { tokenId: string; siteId: string | null },
): Promise<void> {
  const r = await getMachineRowById(db, hb.machineId);
  if (token !== undefined) {
    // every copy's last word, by its token: how the vault tells a copy that runs from one that is gone
    await db
      .updateTable("tokens")
      .set({ last_used_at: now.toISOString() })
      .where("id", "=", token.tokenId)
      .execute();
  }
  // another copy of the machine (the old primary back after a failover, fenced) does not speak for
  // it: the row describes the copy the vault runs it as (its assignment still answers that copy)
  if (hb.instanceId !== undefined && r.instance_id !== null && hb.instanceId !== r.instance_id) return;
  if (token?.siteId != null && r.site_id !== null && token.siteId !== r.site_id) return;
  const known = readJson(DisksSchema, r.disks, { table: "machines", column: "disks", id: r.id });
  const disks: MachineDisk[] = hb.disks.map((d, i) => ({
    uuid: d.uuid,
    path: d.path,
    sizeBytes: d.sizeBytes,
    sectorSize: d.sectorSize,
    role: known.find((k) => k.uuid === d.uuid)?.role ?? (i === 0 ? "os" : "data"),
  }));
  let replication = r.replication;
  if (hb.replication !== undefined) {
    const prev = readJsonOrNull(ReplicationSchema, r.replication, {
      table: "machines",
      column: "replication",
      id: r.id,
    });
    // a new copy (another total, or progress gone backwards) starts a new series of samples
    const continues =
      prev !== null &&
      prev.bytesTotal === hb.replication.bytesTotal &&
      prev.bytesDone <= hb.replication.bytesDone;
    const next: Replication = {
      ...hb.replication,
      at: now.toISOString(),
      samples: [
        ...(continues ? prev.samples : []),
        { at: now.toISOString(), bytesDone: hb.replication.bytesDone },
      ].slice(-MAX_SAMPLES),
    };
    replication = JSON.stringify(next);
  }
  await db
    .updateTable("machines")
    .set({
      hostname: hb.hostname,
      os: hb.os,
      cpus: hb.cpus,
      memory_bytes: hb.memoryBytes,
      disks: JSON.stringify(disks),
      nics: JSON.stringify(hb.nics),
      power_state: "running",
      last_heartbeat_at: now.toISOString(),
      replication,
      updated_at: now.toISOString(),
    })
    .where("id", "=", r.id)
    .execute();
}

async function getMachineRowById(db: Kysely<VaultDatabase>, id: string): Promise<MachineRow> {
  const r = await db.selectFrom("machines").selectAll().where("id", "=", id).executeTakeFirst();
  if (r === undefined) {
    throw new SwitchbackError(
      "MACHINE_NOT_FOUND",
      `machine ${JSON.stringify(id)} is not registered; the agent must register (POST /v1/agent/register) before it heartbeats`,
    );
  }
  return r;
}

/** The layout part of a machine definition, or null when it gives none. */
function layoutOf(input: CreateMachine): string | null {
  const disks = input.disks.map((d) => ({
    ...(d.filesystem !== undefined ? { filesystem: d.filesystem } : {}),
    ...(d.mountAt !== undefined ? { mountAt: d.mountAt } : {}),
  }));
  const mounts = disks.map((d) => d.mountAt).filter((m) => m !== undefined);
  if (new Set(mounts).size !== mounts.length) {
    throw new SwitchbackError(
      "INVALID_MACHINE",
      `machine ${input.name}: two disks are mounted at the same place`,
    );
  }
  for (const [n, d] of disks.entries()) {
    if (d.mountAt !== undefined && d.filesystem === undefined) {
      throw new SwitchbackError(
        "INVALID_MACHINE",
        `machine ${input.name}: disk ${n} is mounted at ${d.mountAt} but has no filesystem; give it one (ext4 or xfs)`,
      );
    }
  }
  if (mounts.length > 0 && !mounts.includes("/")) {
    throw new SwitchbackError(
      "INVALID_MACHINE",
      `machine ${input.name}: its disks are mounted but none at "/"; the root file system holds its identity`,
    );
  }
  const any = disks.some((d) => Object.keys(d).length > 0);
  if (!any && input.network === undefined) return null;
  const layout: MachineLayout = { disks, ...(input.network !== undefined ? { network: input.network } : {}) };
  return JSON.stringify(layout);
}

/** A machine row's layout, or null. */
export function machineLayout(r: MachineRow): MachineLayout | null {
  return readJsonOrNull(MachineLayoutSchema, r.layout, { table: "machines", column: "layout", id: r.id });
}

/** The provider's mounts for a machine's disks (privileged machines), from its layout. */
export function mountsOf(layout: MachineLayout | null): { disk: number; at: string }[] | undefined {
  const mounts = (layout?.disks ?? []).flatMap((d, disk) =>
    d.mountAt !== undefined ? [{ disk, at: d.mountAt }] : [],
  );
  return mounts.length > 0 ? mounts : undefined;
}

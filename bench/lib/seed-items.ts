// Inserts N replicated items into a vault database the way a running vault would have written them,
// straight through Kysely (no API, no job engine, no jobs): per item a machine (two disks, a NIC, an
// agent token) and the item, in a mix of phases: mostly protected with their last points a few
// minutes old, some breaching their policy's RPO (warning, critical), some in initial replication with
// the agent's progress samples in machines.replication, a few failed over (with the recovered
// instance), committed, enabling or disabled. Optionally each protected item's RPO history (one row
// per commit, src/vault/rpo-history.ts). JSON columns are checked against the vault's own schemas.
// Used by the item-list tests and timings (test/integration/vault-portal-api.test.ts) and the
// portal benchmark.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import type { Insertable, Kysely } from "kysely";
import type { ItemState, Phase } from "../../src/domain/lifecycle.ts";
import type { VaultDb } from "../../src/vault/db/database.ts";
import type { VaultDatabase } from "../../src/vault/db/schema.ts";
import { newId } from "../../src/vault/ids.ts";
import {
  type FailoverRecord,
  FailoverRecordSchema,
  ItemStateSchema,
  type TargetSettings,
  TargetSettingsSchema,
} from "../../src/vault/items.ts";
import { minuteOf } from "../../src/vault/rpo-history.ts";
import { initialReplicationReport, prng } from "./vault-seed.ts";

/** The mix of phases and RPOs, as fractions of the items (the rest: protected, RPO healthy). */
export const SEED_ITEMS_MIX = {
  initialReplication: 0.08,
  failedOver: 0.03,
  failoverCommitted: 0.01,
  enabling: 0.005,
  disabled: 0.005,
  /** protected, last point between 80 % and 100 % of the threshold old */
  rpoWarning: 0.03,
  /** protected, last point 1.1 to 6 thresholds old */
  rpoCritical: 0.04,
};

export interface SeedItemsOptions {
  /**
   * site names the items replicate between: item i goes from sites[i % k] to sites[(i + 1) % k]
   * (default: primary and recovery). Each needs an appliance and a datastore.
   */
  sites?: readonly string[];
  /** the policy's name (default: default) */
  policy?: string;
  /** the PRNG seed: the same seed and n give the same mix */
  seed?: number;
  /** times are relative to it (default: now) */
  nowMs?: number;
  /** item and machine names are `${prefix}${kind}-${number}` (default: none) */
  prefix?: string;
  /** RPO history for the first `items` protected items over the last `hours` (default: none) */
  rpoHistory?: { items: number; hours: number };
  mix?: Partial<typeof SEED_ITEMS_MIX>;
}

export interface SeededItem {
  id: string;
  name: string;
  machineId: string;
  phase: Phase;
  /** what its view's health.summary will say at `nowMs` */
  health: "ok" | "warning" | "critical" | "initial" | "n/a";
  source: string;
  target: string;
}

type Tables = { [K in keyof VaultDatabase]: Insertable<VaultDatabase[K]> };

async function insertAll<K extends keyof VaultDatabase & string>(
  db: Kysely<VaultDatabase>,
  table: K,
  rows: Tables[K][],
): Promise<void> {
  if (rows.length === 0) return;
  const per = Math.max(1, Math.floor(30_000 / Object.keys(rows[0] as object).length));
  for (let i = 0; i < rows.length; i += per) {
    // biome-ignore lint/suspicious/noExplicitAny: one helper for every table
    const chunk = rows.slice(i, i + per) as any;
    await db.insertInto(table).values(chunk).execute();
  }
}

function checked(schema: Parameters<typeof Value.Check>[0], value: unknown, what: string): string {
  if (!Value.Check(schema, value)) {
    const e = Value.Errors(schema, value).First();
    throw new Error(`seedItems: ${what} does not pass the vault's schema at ${e?.path}: ${e?.message}`);
  }
  return JSON.stringify(value);
}

/** A point id as the datastore makes them: UTC time to the millisecond, then random hex. */
function pointId(atMs: number): string {
  const t = new Date(atMs).toISOString().replace(/[-:.]/g, "");
  return `${t.slice(0, 15)}${t.slice(15, 18)}Z-${randomBytes(3).toString("hex")}`;
}

const iso = (ms: number) => new Date(ms).toISOString();
const GiB = 1024 ** 3;
const KINDS = ["web", "db", "app", "cache", "mq"] as const;

type Kind = "protected" | "warning" | "critical" | Exclude<Phase, "protected">;

export async function seedItems(vdb: VaultDb, n: number, o: SeedItemsOptions = {}): Promise<SeededItem[]> {
  const db = vdb.db;
  const rand = prng(o.seed ?? 1);
  const between = (a: number, b: number) => a + rand() * (b - a);
  const int = (a: number, b: number) => Math.floor(between(a, b + 1));
  const now = o.nowMs ?? Date.now();
  const mix = { ...SEED_ITEMS_MIX, ...o.mix };
  const prefix = o.prefix ?? "";

  const siteNames = o.sites ?? ["primary", "recovery"];
  if (siteNames.length < 2) throw new Error("seedItems: give at least two sites");
  const siteRows = await db.selectFrom("sites").select(["id", "name"]).execute();
  const siteIds = siteNames.map((name) => {
    const r = siteRows.find((x) => x.name === name || x.id === name);
    if (r === undefined) throw new Error(`seedItems: there is no site ${name}`);
    return r.id;
  });
  const apps = await db.selectFrom("appliances").select(["id", "site_id"]).orderBy("created_at").execute();
  const stores = await db.selectFrom("datastores").select(["id", "site_id"]).orderBy("created_at").execute();
  const at = (rows: { id: string; site_id: string }[], site: string, what: string) => {
    const r = rows.find((x) => x.site_id === site);
    if (r === undefined) throw new Error(`seedItems: site ${site} has no ${what}`);
    return r.id;
  };
  const policy = await db
    .selectFrom("policies")
    .selectAll()
    .where("name", "=", o.policy ?? "default")
    .executeTakeFirstOrThrow();
  const threshold = policy.rpo_threshold_s * 1000;
  const crashEvery = Math.max(60, policy.crash_consistent_every_s) * 1000;
  const width = String(n).length;

  const machines: Tables["machines"][] = [];
  const tokens: Tables["tokens"][] = [];
  const items: Tables["items"][] = [];
  const instances: Tables["instances"][] = [];
  const history: Tables["rpo_history"][] = [];
  const out: SeededItem[] = [];
  let historyLeft = o.rpoHistory?.items ?? 0;

  for (let i = 0; i < n; i++) {
    const x = rand();
    const cuts: [number, Kind][] = [
      [mix.initialReplication, "initial-replication"],
      [mix.failedOver, "failed-over"],
      [mix.failoverCommitted, "failover-committed"],
      [mix.enabling, "enabling"],
      [mix.disabled, "disabled"],
      [mix.rpoWarning, "warning"],
      [mix.rpoCritical, "critical"],
    ];
    let kind: Kind = "protected";
    let acc = 0;
    for (const [f, k] of cuts) {
      acc += f;
      if (x < acc) {
        kind = k;
        break;
      }
    }
    const phase: Phase = kind === "warning" || kind === "critical" ? "protected" : kind;
    const name = `${prefix}${KINDS[i % KINDS.length]}-${String(i + 1).padStart(width, "0")}`;
    const machineId = randomUUID();
    const itemId = newId("item");
    const createdMs = now - between(2, 90) * 86_400_000;
    const home = siteIds[i % siteIds.length]!;
    const away = siteIds[(i + 1) % siteIds.length]!;
    // a committed failover reverses nothing yet; a failed-over machine runs at the target
    const source = home;
    const target = away;
    const disks = [
      { uuid: randomUUID(), path: "/dev/vda", sizeBytes: 40 * GiB, sectorSize: 512, role: "os" },
      {
        uuid: randomUUID(),
        path: "/dev/vdb",
        sizeBytes: int(1, 8) * 64 * GiB,
        sectorSize: 512,
        role: "data",
      },
    ];
    const totalBytes = disks[0]!.sizeBytes + disks[1]!.sizeBytes;

    let replication: string | null = null;
    if (phase === "initial-replication") {
      replication = initialReplicationReport(now, totalBytes, between(40, 200) * 1e6, between(0.05, 0.95));
    } else if (phase === "protected") {
      const sent = int(2, 200) * 1e6;
      const t = iso(now - between(0, 240_000));
      replication = JSON.stringify({
        bytesDone: sent,
        bytesTotal: sent,
        bytesPerSecond: between(40, 200) * 1e6,
        at: t,
        samples: [{ at: t, bytesDone: sent }],
      });
    }
    machines.push({
      id: machineId,
      name,
      site_id: phase === "failed-over" || phase === "failover-committed" ? target : source,
      instance_id: null,
      hostname: `${name}.corp.example`,
      os: i % 3 === 0 ? "Ubuntu 24.04.1 LTS" : "Debian GNU/Linux 12 (bookworm)",
      cpus: [2, 4, 8, 16][i % 4]!,
      memory_bytes: [4, 8, 16, 32][i % 4]! * GiB,
      disks: JSON.stringify(disks),
      nics: JSON.stringify([
        {
          name: "eth0",
          mac: `52:54:00:${randomBytes(3).toString("hex").match(/../g)!.join(":")}`,
          addresses: [`10.${Math.floor(i / 250) % 256}.0.${(i % 250) + 2}/24`],
        },
      ]),
      boot_command: null,
      layout: null,
      power_state: phase === "enabling" || phase === "disabled" ? "unknown" : "running",
      last_heartbeat_at: phase === "enabling" ? null : iso(now - between(0, 10_000)),
      replication,
      created_at: iso(createdMs),
      updated_at: iso(now - between(0, 10_000)),
    });
    tokens.push({
      id: newId("token"),
      name: `agent of ${name}`,
      role: "agent",
      sha256: createHash("sha256").update(randomBytes(32)).digest("hex"),
      machine_id: machineId,
      created_at: iso(createdMs),
      last_used_at: iso(now - between(0, 10_000)),
      site_id: source,
      instance_id: null,
    });

    // the newest point's age: a protected item's by its RPO kind; none during initial replication
    // or enabling, none after a commit (it deleted them)
    const hasPoints = phase === "protected" || phase === "failed-over" || phase === "disabled";
    const lastAgo =
      kind === "warning"
        ? between(0.8, 0.99) * threshold
        : kind === "critical"
          ? between(1.1, 6) * threshold
          : phase === "protected"
            ? between(5_000, Math.min(0.7 * threshold, crashEvery))
            : between(1, 48) * 3_600_000;
    const lastMs = now - lastAgo;
    const appMs = lastMs - between(0, policy.app_consistent_every_s * 1000);
    const lastPoint = hasPoints ? pointId(lastMs) : null;
    const appPoint = hasPoints ? pointId(appMs) : null;
    let failover: FailoverRecord | null = null;
    if (phase === "failed-over") {
      const instanceId = `failover-${randomBytes(6).toString("hex")}`;
      failover = {
        point: lastPoint!,
        instanceId,
        site: target,
        jobId: `job-${randomBytes(6).toString("hex")}`,
        sourceShutdown: { requested: true, outcome: "shut down after a final point" },
      };
      instances.push({
        id: instanceId,
        item_id: itemId,
        machine_id: machineId,
        site_id: target,
        purpose: "failover",
        provider: "process",
        provider_state: JSON.stringify({ disks: [`/srv/${name}/disk0.img`, `/srv/${name}/disk1.img`] }),
        created_at: iso(lastMs + 60_000),
        deleted_at: null,
      });
    }
    const state: ItemState = {
      phase,
      home,
      source,
      target,
      generation: phase === "failed-over" || phase === "failover-committed" ? 2 : 1,
      failoverPoint: (failover?.point ?? null) as ItemState["failoverPoint"],
      drill: null,
    };
    const settings: TargetSettings = {
      targetName: `${name}-dr`,
      cpus: [2, 4, 8, 16][i % 4]!,
      memoryBytes: [4, 8, 16, 32][i % 4]! * GiB,
      diskRoles: { [disks[0]!.uuid]: "os", [disks[1]!.uuid]: "data" },
    };
    // the item changes with each point (point-arrived); otherwise when its phase last moved
    const updatedMs = phase === "protected" ? lastMs : now - between(0.2, 6) * 3_600_000;
    items.push({
      id: itemId,
      name,
      machine_id: machineId,
      home_site_id: home,
      source_site_id: source,
      target_site_id: target,
      policy_id: policy.id,
      process_server_id: at(apps, target, "appliance"),
      master_target_id: at(apps, target, "appliance"),
      datastore_id: at(stores, target, "datastore"),
      state: checked(ItemStateSchema, state, `item ${name}'s state`),
      generation: state.generation,
      target_settings: checked(TargetSettingsSchema, settings, `item ${name}'s target settings`),
      failover: failover === null ? null : checked(FailoverRecordSchema, failover, `item ${name}'s failover`),
      drill: null,
      last_point_id: lastPoint,
      last_point_at: hasPoints ? iso(lastMs) : null,
      last_app_point_id: appPoint,
      last_app_point_at: hasPoints ? iso(appMs) : null,
      resync_required: 0,
      seed_point_id: null,
      last_point_report: null,
      version: int(2, 4000),
      created_at: iso(createdMs),
      updated_at: iso(updatedMs),
    });
    if (phase === "protected" && historyLeft > 0 && o.rpoHistory !== undefined) {
      historyLeft--;
      // a commit every crash interval (a few seconds' jitter) up to the newest point
      let prev: number | null = null;
      for (let t = lastMs - o.rpoHistory.hours * 3_600_000; t <= lastMs; t += crashEvery) {
        const point = t === lastMs ? t : t + between(-5_000, 5_000);
        const committed = point + between(2_000, 20_000);
        history.push({
          item_id: itemId,
          minute: minuteOf(committed),
          peak_rpo_s: Math.max(0, (committed - (prev ?? point)) / 1000),
          last_point_at: iso(point),
        });
        prev = point;
      }
    }
    const health: SeededItem["health"] =
      phase === "initial-replication"
        ? "initial"
        : phase !== "protected"
          ? "n/a"
          : kind === "warning" || kind === "critical"
            ? kind
            : "ok";
    out.push({ id: itemId, name, machineId, phase, health, source, target });
  }

  // rows of one minute for one item (two commits within it) become one, as the upsert makes them
  const merged = new Map<string, Tables["rpo_history"]>();
  for (const h of history) {
    const k = `${h.item_id} ${h.minute}`;
    const e = merged.get(k);
    if (e === undefined) merged.set(k, h);
    else {
      e.peak_rpo_s = Math.max(e.peak_rpo_s, h.peak_rpo_s);
      if (h.last_point_at > e.last_point_at) e.last_point_at = h.last_point_at;
    }
  }
  await db.transaction().execute(async (trx) => {
    await insertAll(trx, "machines", machines);
    await insertAll(trx, "tokens", tokens);
    await insertAll(trx, "items", items);
    await insertAll(trx, "instances", instances);
    await insertAll(trx, "rpo_history", [...merged.values()]);
  });
  return out;
}

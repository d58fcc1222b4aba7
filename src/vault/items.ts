// Replicated items in the database: the row, its lifecycle state (src/domain/lifecycle.ts) parsed once
// at the boundary, and updates under optimistic concurrency (every write checks and bumps `version`,
// so two writers never both apply an event to the same old state).
import { type Static, Type } from "@sinclair/typebox";
import type { Kysely } from "kysely";
import { SwitchbackError } from "../domain/errors.ts";
import { apply, type ItemState, type LifecycleEvent, PHASES } from "../domain/lifecycle.ts";
import { readJson, readJsonOrNull } from "./db/json.ts";
import type { ItemRow, VaultDatabase } from "./db/schema.ts";

export const ItemStateSchema = Type.Object({
  phase: Type.Union(PHASES.map((p) => Type.Literal(p))),
  home: Type.String(),
  source: Type.String(),
  target: Type.String(),
  generation: Type.Integer({ minimum: 1 }),
  failoverPoint: Type.Union([Type.String(), Type.Null()]),
  drill: Type.Union([Type.Object({ point: Type.String(), startedAtMs: Type.Number() }), Type.Null()]),
});

export const TargetSettingsSchema = Type.Object(
  {
    targetName: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9._-]+$" })),
    cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    memoryBytes: Type.Optional(Type.Integer({ minimum: 16 * 1024 * 1024 })),
    network: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    subnet: Type.Optional(Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$" })),
    ip: Type.Optional(Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$" })),
    testNetwork: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    publicPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    /** the machine's port the public port forwards to (default: the same number) */
    servicePort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    /** disk uuid → role */
    diskRoles: Type.Optional(
      Type.Record(Type.String(), Type.Union([Type.Literal("os"), Type.Literal("data")])),
    ),
  },
  { additionalProperties: false },
);
export type TargetSettings = Static<typeof TargetSettingsSchema>;

/** What a failover recorded: the point, the machine it started, and what became of the source. */
export const FailoverRecordSchema = Type.Object({
  point: Type.String(),
  instanceId: Type.String(),
  site: Type.String(),
  jobId: Type.String(),
  sourceShutdown: Type.Object({
    requested: Type.Boolean(),
    outcome: Type.String(),
    detail: Type.Optional(Type.String()),
  }),
});
export type FailoverRecord = Static<typeof FailoverRecordSchema>;

export const DrillRecordSchema = Type.Object({
  point: Type.String(),
  instanceId: Type.String(),
  site: Type.String(),
  jobId: Type.String(),
  /** the test network chosen for this drill, when not the item's own (targetSettings.testNetwork) */
  network: Type.Optional(Type.String()),
});
export type DrillRecord = Static<typeof DrillRecordSchema>;

export interface LoadedItem {
  row: ItemRow;
  state: ItemState;
  settings: TargetSettings;
  failover: FailoverRecord | null;
  drill: DrillRecord | null;
}

export function parseItemRow(row: ItemRow): LoadedItem {
  const at = (column: string) => ({ table: "items", column, id: row.id });
  return {
    row,
    state: readJson(ItemStateSchema, row.state, at("state")) as ItemState,
    settings: readJson(TargetSettingsSchema, row.target_settings, at("target_settings")),
    failover: readJsonOrNull(FailoverRecordSchema, row.failover, at("failover")),
    drill: readJsonOrNull(DrillRecordSchema, row.drill, at("drill")),
  };
}

/** By id or name. */
export async function loadItem(db: Kysely<VaultDatabase>, ref: string): Promise<LoadedItem> {
  const row = await db
    .selectFrom("items")
    .selectAll()
    .where((eb) => eb.or([eb("id", "=", ref), eb("name", "=", ref)]))
    .executeTakeFirst();
  if (row === undefined) {
    throw new SwitchbackError(
      "ITEM_NOT_FOUND",
      `replicated item ${JSON.stringify(ref)} does not exist; see 'switchback items list'`,
    );
  }
  return parseItemRow(row);
}

export interface ItemPatch {
  state?: ItemState;
  failover?: FailoverRecord | null;
  drill?: DrillRecord | null;
  seedPointId?: string | null;
  processServerId?: string;
  masterTargetId?: string | null;
  datastoreId?: string;
  policyId?: string;
  targetSettings?: TargetSettings;
  lastPoint?: { id: string; at: string; app: boolean } | null;
  lastPointReport?: string | null;
  /** the next point must compare every block (a new direction or generation); cleared when one lands */
  resyncRequired?: boolean;
}

/**
 * Writes `patch` over the item if nobody changed it since `version` was read; refuses with
 * ITEM_CHANGED otherwise (the caller reloads and decides again).
 */
export async function updateItem(
  db: Kysely<VaultDatabase>,
  id: string,
  version: number,
  patch: ItemPatch,
  now: Date,
): Promise<void> {
  const set: Record<string, unknown> = { version: version + 1, updated_at: now.toISOString() };
  if (patch.state !== undefined) {
    set.state = JSON.stringify(patch.state);
    set.generation = patch.state.generation;
    set.source_site_id = patch.state.source;
    set.target_site_id = patch.state.target;
  }
  if (patch.failover !== undefined)
    set.failover = patch.failover === null ? null : JSON.stringify(patch.failover);
  if (patch.drill !== undefined) set.drill = patch.drill === null ? null : JSON.stringify(patch.drill);
  if (patch.seedPointId !== undefined) set.seed_point_id = patch.seedPointId;
  if (patch.processServerId !== undefined) set.process_server_id = patch.processServerId;
  if (patch.masterTargetId !== undefined) set.master_target_id = patch.masterTargetId;
  if (patch.datastoreId !== undefined) set.datastore_id = patch.datastoreId;
  if (patch.policyId !== undefined) set.policy_id = patch.policyId;
  if (patch.targetSettings !== undefined) set.target_settings = JSON.stringify(patch.targetSettings);
  if (patch.lastPointReport !== undefined) set.last_point_report = patch.lastPointReport;
  if (patch.resyncRequired !== undefined) set.resync_required = patch.resyncRequired ? 1 : 0;
  if (patch.lastPoint !== undefined) {
    set.last_point_id = patch.lastPoint?.id ?? null;
    set.last_point_at = patch.lastPoint?.at ?? null;
    if (patch.lastPoint === null) {
      set.last_app_point_id = null;
      set.last_app_point_at = null;
    } else if (patch.lastPoint.app) {
      set.last_app_point_id = patch.lastPoint.id;
      set.last_app_point_at = patch.lastPoint.at;
    }
  }
  const r = await db
    .updateTable("items")
    .set(set)
    .where("id", "=", id)
    .where("version", "=", version)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) !== 1) {
    throw new SwitchbackError("ITEM_CHANGED", `item ${id} changed while this update was prepared; try again`);
  }
}

/**
 * Applies a lifecycle event (and more fields) to the current item, reloading and retrying when
 * another writer got there first. Returns the item as written.
 */
export async function applyItemEvent(
  db: Kysely<VaultDatabase>,
  id: string,
  ev: LifecycleEvent | null,
  now: Date,
  more: (it: LoadedItem) => Omit<ItemPatch, "state"> = () => ({}),
): Promise<LoadedItem> {
  for (let attempt = 0; ; attempt++) {
    const it = await loadItem(db, id);
    const state = ev === null ? it.state : apply(it.state, ev);
    const patch: ItemPatch = { ...more(it), state };
    try {
      await updateItem(db, id, it.row.version, patch, now);
      return loadItem(db, id);
    } catch (err) {
      if ((err as SwitchbackError).code !== "ITEM_CHANGED" || attempt >= 20) throw err;
    }
  }
}

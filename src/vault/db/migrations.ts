// The vault's numbered migrations (portable DDL through Kysely's schema builder) and the Migrator that
// applies them. Migrations are append-only: a shipped one is never edited, a change is a new number.
// Kysely's Migrator takes an advisory lock on PostgreSQL, so vault processes starting together are safe.
import { type ColumnDefinitionBuilder, type Kysely, sql } from "kysely";
import { type Migration, Migrator } from "kysely/migration";
import { SwitchbackError } from "../../domain/errors.ts";
import type { DialectName, VaultDb } from "./database.ts";

// biome-ignore lint/suspicious/noExplicitAny: migrations describe the schema as it was then, not schema.ts
type AnyDb = Kysely<any>;

function migrations(dialect: DialectName): Record<string, Migration> {
  // Times are ISO 8601 text compared as text (leases, ordering); on PostgreSQL the "C" collation
  // makes that a byte comparison whatever the database's locale.
  const time = dialect === "postgres" ? sql`text collate "C"` : sql`text`;
  const notNull = (c: ColumnDefinitionBuilder) => c.notNull();

  return {
    "001_initial": {
      async up(db: AnyDb) {
        await db.schema
          .createTable("sites")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("subnet", "text")
          .addColumn("created_at", time, notNull)
          .execute();

        await db.schema
          .createTable("appliances")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("site_id", "text", (c) => c.notNull().references("sites.id"))
          .addColumn("roles", "text", notNull)
          .addColumn("url", "text")
          .addColumn("kind", "text", notNull)
          .addColumn("last_heartbeat_at", time)
          .addColumn("created_at", time, notNull)
          .execute();

        await db.schema
          .createTable("datastores")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("site_id", "text", (c) => c.notNull().references("sites.id"))
          .addColumn("kind", "text", notNull)
          .addColumn("location", "text", notNull)
          .addColumn("capacity_bytes", "bigint")
          .addColumn("used_bytes", "bigint")
          .addColumn("last_seen_at", time)
          .addColumn("created_at", time, notNull)
          .execute();

        await db.schema
          .createTable("policies")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("rpo_threshold_s", "integer", notNull)
          .addColumn("retention_s", "integer", notNull)
          .addColumn("app_consistent_every_s", "integer", notNull)
          .addColumn("crash_consistent_every_s", "integer", notNull)
          .addColumn("derived_from", "text", (c) => c.references("policies.id").onDelete("set null"))
          .addColumn("created_at", time, notNull)
          .execute();

        await db.schema
          .createTable("machines")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", notNull)
          .addColumn("site_id", "text", (c) => c.references("sites.id"))
          .addColumn("instance_id", "text")
          .addColumn("hostname", "text")
          .addColumn("os", "text")
          .addColumn("cpus", "integer")
          .addColumn("memory_bytes", "bigint")
          .addColumn("disks", "text", notNull)
          .addColumn("nics", "text", notNull)
          .addColumn("boot_command", "text")
          .addColumn("power_state", "text", notNull)
          .addColumn("last_heartbeat_at", time)
          .addColumn("replication", "text")
          .addColumn("created_at", time, notNull)
          .addColumn("updated_at", time, notNull)
          .execute();
        await db.schema.createIndex("machines_instance").on("machines").column("instance_id").execute();

        await db.schema
          .createTable("items")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("machine_id", "text", (c) => c.notNull().references("machines.id"))
          .addColumn("home_site_id", "text", (c) => c.notNull().references("sites.id"))
          .addColumn("source_site_id", "text", (c) => c.notNull().references("sites.id"))
          .addColumn("target_site_id", "text", (c) => c.notNull().references("sites.id"))
          .addColumn("policy_id", "text", (c) => c.notNull().references("policies.id"))
          .addColumn("process_server_id", "text", (c) => c.notNull().references("appliances.id"))
          .addColumn("master_target_id", "text", (c) => c.references("appliances.id"))
          .addColumn("datastore_id", "text", (c) => c.notNull().references("datastores.id"))
          .addColumn("state", "text", notNull)
          .addColumn("generation", "integer", notNull)
          .addColumn("target_settings", "text", notNull)
          .addColumn("failover", "text")
          .addColumn("drill", "text")
          .addColumn("last_point_id", "text")
          .addColumn("last_point_at", time)
          .addColumn("last_app_point_id", "text")
          .addColumn("last_app_point_at", time)
          .addColumn("resync_required", "integer", (c) => c.notNull().defaultTo(0))
          .addColumn("version", "integer", (c) => c.notNull().defaultTo(0))
          .addColumn("created_at", time, notNull)
          .addColumn("updated_at", time, notNull)
          .execute();
        await db.schema.createIndex("items_machine").on("items").column("machine_id").execute();

        await db.schema
          .createTable("instances")
          .addColumn("id", "text", (c) => c.primaryKey())
          // an instance can outlive the item or machine it ran (it is deleted later, by a job)
          .addColumn("item_id", "text", (c) => c.references("items.id").onDelete("set null"))
          .addColumn("machine_id", "text", (c) => c.references("machines.id").onDelete("set null"))
          .addColumn("site_id", "text", (c) => c.notNull().references("sites.id"))
          .addColumn("purpose", "text", notNull)
          .addColumn("provider", "text", notNull)
          .addColumn("provider_state", "text", notNull)
          .addColumn("created_at", time, notNull)
          .addColumn("deleted_at", time)
          .execute();
        await db.schema.createIndex("instances_item").on("instances").column("item_id").execute();

        await db.schema
          .createTable("plans")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", (c) => c.notNull().unique())
          .addColumn("definition", "text", notNull)
          .addColumn("created_at", time, notNull)
          .addColumn("updated_at", time, notNull)
          .execute();

        // jobs.item_id and plan_id carry no foreign key: a job is history and outlives the item a
        // "remove protection" job deletes, and the plan an operator deletes.
        await db.schema
          .createTable("jobs")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("kind", "text", notNull)
          .addColumn("item_id", "text")
          .addColumn("plan_id", "text")
          .addColumn("state", "text", notNull)
          .addColumn("waiting_for", "text")
          .addColumn("params", "text", notNull)
          .addColumn("step", "integer", (c) => c.notNull().defaultTo(0))
          .addColumn("progress", "double precision", (c) => c.notNull().defaultTo(0))
          .addColumn("error_code", "text")
          .addColumn("error_message", "text")
          .addColumn("lease_owner", "text")
          .addColumn("lease_until", time)
          .addColumn("created_by", "text")
          .addColumn("created_at", time, notNull)
          .addColumn("started_at", time)
          .addColumn("finished_at", time)
          .execute();
        await db.schema.createIndex("jobs_item").on("jobs").columns(["item_id", "created_at"]).execute();
        await db.schema.createIndex("jobs_plan").on("jobs").columns(["plan_id", "created_at"]).execute();
        await db.schema.createIndex("jobs_state").on("jobs").columns(["state", "created_at"]).execute();
        await db.schema.createIndex("jobs_created").on("jobs").column("created_at").execute();
        // At most one unfinished job per item: conflicting operations are refused at creation (ITEM_BUSY).
        await db.schema
          .createIndex("jobs_one_unfinished_per_item")
          .unique()
          .on("jobs")
          .column("item_id")
          .where("item_id", "is not", null)
          .where(sql.ref("finished_at"), "is", null)
          .execute();

        await db.schema
          .createTable("job_steps")
          .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id").onDelete("cascade"))
          .addColumn("idx", "integer", notNull)
          .addColumn("name", "text", notNull)
          .addColumn("state", "text", notNull)
          .addColumn("output", "text")
          .addColumn("started_at", time)
          .addColumn("finished_at", time)
          .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
          .addPrimaryKeyConstraint("job_steps_pk", ["job_id", "idx"])
          .execute();

        await db.schema
          .createTable("job_signals")
          .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id").onDelete("cascade"))
          .addColumn("name", "text", notNull)
          .addColumn("data", "text", notNull)
          .addColumn("at", time, notNull)
          .addPrimaryKeyConstraint("job_signals_pk", ["job_id", "name"])
          .execute();

        await db.schema
          .createTable("job_logs")
          .addColumn("id", dialect === "postgres" ? "bigint" : "integer", (c) =>
            dialect === "postgres"
              ? c.primaryKey().generatedByDefaultAsIdentity()
              : // AUTOINCREMENT: ids are never reused, so a watcher's "after id" cursor stays valid
                c.primaryKey().autoIncrement(),
          )
          .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id").onDelete("cascade"))
          .addColumn("at", time, notNull)
          .addColumn("level", "text", notNull)
          .addColumn("step", "integer")
          .addColumn("message", "text", notNull)
          .addColumn("data", "text")
          .execute();
        await db.schema.createIndex("job_logs_job").on("job_logs").columns(["job_id", "id"]).execute();

        await db.schema
          .createTable("alerts")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("kind", "text", notNull)
          .addColumn("subject", "text", notNull)
          .addColumn("severity", "text", notNull)
          .addColumn("message", "text", notNull)
          .addColumn("raised_at", time, notNull)
          .addColumn("cleared_at", time)
          .addColumn("delivered_at", time)
          .addColumn("delivery_error", "text")
          .execute();
        await db.schema.createIndex("alerts_subject").on("alerts").columns(["subject", "kind"]).execute();
        await db.schema
          .createIndex("alerts_cleared")
          .on("alerts")
          .columns(["cleared_at", "raised_at"])
          .execute();

        await db.schema
          .createTable("tokens")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("name", "text", notNull)
          .addColumn("role", "text", notNull)
          .addColumn("sha256", "text", (c) => c.notNull().unique())
          .addColumn("machine_id", "text")
          .addColumn("created_at", time, notNull)
          .addColumn("last_used_at", time)
          .execute();

        await db.schema
          .createTable("settings")
          .addColumn("key", "text", (c) => c.primaryKey())
          .addColumn("value", "text", notNull)
          .execute();
      },
    },
    "002_replication": {
      async up(db: AnyDb) {
        // what the vault asks of an agent (take a point now, shut down) and what it answered
        await db.schema
          .createTable("agent_commands")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("machine_id", "text", (c) => c.notNull().references("machines.id"))
          .addColumn("site_id", "text")
          .addColumn("kind", "text", notNull)
          .addColumn("params", "text", notNull)
          .addColumn("job_id", "text")
          .addColumn("created_at", time, notNull)
          .addColumn("delivered_at", time)
          .addColumn("finished_at", time)
          .addColumn("result", "text")
          .execute();
        await db.schema
          .createIndex("agent_commands_open")
          .on("agent_commands")
          .columns(["machine_id", "finished_at"])
          .execute();
        // the seed point reprotect took from disks at the returning site: not a recovery point
        await db.schema.alterTable("items").addColumn("seed_point_id", "text").execute();
        // what the agent reported of the item's last point (bytes shipped, mode) as JSON
        await db.schema.alterTable("items").addColumn("last_point_report", "text").execute();
      },
    },
    "003_remote_appliances": {
      async up(db: AnyDb) {
        // a `switchback appliance` process: where the vault reaches its control API, and the secret
        // it presents there (the appliance makes a new one at every start and registers it)
        await db.schema.alterTable("appliances").addColumn("control_url", "text").execute();
        await db.schema.alterTable("appliances").addColumn("control_secret", "text").execute();
        // the remote appliance that serves a datastore (null: the vault serves it, in-process)
        await db.schema.alterTable("datastores").addColumn("appliance_id", "text").execute();
      },
    },
    "004_agent_copies": {
      async up(db: AnyDb) {
        // an agent token belongs to one copy of a machine: the site (and instance) it registered
        // from. Replication, assignments and commands trust the token's site, not what a heartbeat
        // says, so an old copy that comes back cannot pass for the one that runs now
        await db.schema.alterTable("tokens").addColumn("site_id", "text").execute();
        await db.schema.alterTable("tokens").addColumn("instance_id", "text").execute();
      },
    },
    "005_alert_delivery_claims": {
      async up(db: AnyDb) {
        // a vault process claims an alert's pending event before it posts it (several vault
        // processes on one PostgreSQL send each event once); a failed attempt's backoff is kept
        // here too, so every process honours it and newer events are not held up behind it
        await db.schema.alterTable("alerts").addColumn("sending_until", time).execute();
      },
    },
    "006_machine_layout": {
      async up(db: AnyDb) {
        // a machine's layout at its home site (disk file systems and mount points, its address),
        // apart from what its agent reports, which heartbeats replace
        await db.schema.alterTable("machines").addColumn("layout", "text").execute();
      },
    },
    "007_rpo_history": {
      async up(db: AnyDb) {
        // each item's RPO over the last hours, kept apart from its points (retention prunes those):
        // per minute in which points were committed, the worst RPO just before a commit and the
        // newest point known (src/vault/rpo-history.ts). No foreign key: rows of a removed item
        // age out with the rest; the minute index makes that trim one range delete
        await db.schema
          .createTable("rpo_history")
          .addColumn("item_id", "text", notNull)
          .addColumn("minute", time, notNull)
          .addColumn("peak_rpo_s", dialect === "postgres" ? "double precision" : "real", notNull)
          .addColumn("last_point_at", time, notNull)
          .addPrimaryKeyConstraint("rpo_history_pk", ["item_id", "minute"])
          .execute();
        await db.schema.createIndex("rpo_history_minute").on("rpo_history").column("minute").execute();
      },
    },
    "008_token_created_by": {
      async up(db: AnyDb) {
        // operator tokens (admin, viewer) are made by operators: the name of the token that made
        // each one, for the audit (null for the first admin token and the machines' tokens)
        await db.schema.alterTable("tokens").addColumn("created_by", "text").execute();
      },
    },
  };
}

/** The names of every migration this build knows, in order. */
export const MIGRATION_NAMES: readonly string[] = Object.keys(migrations("sqlite"));

function migrator(vdb: VaultDb): Migrator {
  const all = migrations(vdb.dialect);
  return new Migrator({
    db: vdb.db,
    provider: { getMigrations: async () => all },
  });
}

/** Applies every migration not yet applied; a no-op when the database is current. */
export async function migrateToLatest(vdb: VaultDb): Promise<{ applied: string[] }> {
  const { error, results } = await migrator(vdb).migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw new SwitchbackError(
      "DB_MIGRATION_FAILED",
      `migrating the database ${JSON.stringify(vdb.url)} failed${failed ? ` at ${failed}` : ""}: ${(error as Error).message ?? String(error)}; the migration was rolled back, fix the cause and start the vault again`,
      { cause: error },
    );
  }
  return { applied: (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName) };
}

/**
 * True for a unique-constraint (or primary-key) violation from either driver:
 * PostgreSQL SQLSTATE 23505, SQLite SQLITE_CONSTRAINT_UNIQUE (2067) / _PRIMARYKEY (1555).
 */
export function isUniqueViolation(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { code?: unknown; errcode?: unknown };
  if (e.code === "23505") return true;
  return e.code === "ERR_SQLITE_ERROR" && (e.errcode === 2067 || e.errcode === 1555);
}

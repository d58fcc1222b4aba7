// The vault's database layer on a real SQLite file and a real PostgreSQL: migrations, round trips,
// transactions, the one-unfinished-job-per-item rule, and serialised access to SQLite's one connection.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { sql } from "kysely";
import { SwitchbackError } from "../../src/domain/errors.ts";
import { openDatabase, parseDatabaseUrl, type VaultDb } from "../../src/vault/db/database.ts";
import { isUniqueViolation, MIGRATION_NAMES, migrateToLatest } from "../../src/vault/db/migrations.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { ROOT } from "../helpers/env.ts";

const TABLES = [
  "agent_commands",
  "alerts",
  "appliances",
  "datastores",
  "instances",
  "items",
  "job_logs",
  "job_signals",
  "job_steps",
  "jobs",
  "machines",
  "plans",
  "policies",
  "rpo_history",
  "settings",
  "sites",
  "tokens",
];

/** Runs migrateToLatest in a separate Node process; resolves with the names it applied. */
function migrateInChild(url: string): Promise<string[]> {
  const code = `
    import { openDatabase } from ${JSON.stringify(path.join(ROOT, "src/vault/db/database.ts"))};
    import { migrateToLatest } from ${JSON.stringify(path.join(ROOT, "src/vault/db/migrations.ts"))};
    const vdb = await openDatabase(process.argv[1]);
    const r = await migrateToLatest(vdb);
    await vdb.close();
    console.log(JSON.stringify(r.applied));`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--input-type=module", "-e", code, url], (err, stdout, stderr) => {
      if (err) reject(new Error(`migration child failed: ${stderr}`));
      else resolve(JSON.parse(stdout) as string[]);
    });
  });
}

const T0 = "2026-01-01T00:00:00.000Z";

async function seedItem(vdb: VaultDb, id = "item-1"): Promise<void> {
  const db = vdb.db;
  await db
    .insertInto("sites")
    .values([
      { id: "s1", name: "primary", subnet: null, created_at: T0 },
      { id: "s2", name: "recovery", subnet: "10.10.0.0/24", created_at: T0 },
    ])
    .execute();
  await db
    .insertInto("appliances")
    .values({
      id: "a1",
      name: "ps-1",
      site_id: "s1",
      roles: '["process-server"]',
      url: null,
      kind: "in-process",
      last_heartbeat_at: null,
      created_at: T0,
    })
    .execute();
  await db
    .insertInto("datastores")
    .values({
      id: "d1",
      name: "local-2",
      site_id: "s2",
      kind: "local",
      location: "/x",
      capacity_bytes: 2 ** 45,
      used_bytes: 0,
      last_seen_at: null,
      created_at: T0,
    })
    .execute();
  await db
    .insertInto("policies")
    .values({
      id: "p1",
      name: "default",
      rpo_threshold_s: 900,
      retention_s: 86400,
      app_consistent_every_s: 3600,
      crash_consistent_every_s: 300,
      derived_from: null,
      created_at: T0,
    })
    .execute();
  await db
    .insertInto("machines")
    .values({
      id: "m1",
      name: "web",
      site_id: "s1",
      instance_id: null,
      hostname: "web",
      os: "linux",
      cpus: 2,
      memory_bytes: 8 * 2 ** 30,
      disks: "[]",
      nics: "[]",
      boot_command: null,
      power_state: "running",
      last_heartbeat_at: T0,
      replication: null,
      created_at: T0,
      updated_at: T0,
    })
    .execute();
  await db
    .insertInto("items")
    .values({
      id,
      name: `web-${id}`,
      machine_id: "m1",
      home_site_id: "s1",
      source_site_id: "s1",
      target_site_id: "s2",
      policy_id: "p1",
      process_server_id: "a1",
      master_target_id: null,
      datastore_id: "d1",
      state: '{"kind":"protected"}',
      generation: 1,
      target_settings: "{}",
      failover: null,
      drill: null,
      last_point_id: null,
      last_point_at: null,
      last_app_point_id: null,
      last_app_point_at: null,
      resync_required: 0,
      version: 0,
      created_at: T0,
      updated_at: T0,
    })
    .execute();
}

function job(id: string, itemId: string | null, finishedAt: string | null = null) {
  return {
    id,
    kind: "test",
    item_id: itemId,
    plan_id: null,
    state: finishedAt ? "succeeded" : "queued",
    waiting_for: null,
    params: "{}",
    step: 0,
    progress: 0,
    error_code: null,
    error_message: null,
    lease_owner: null,
    lease_until: null,
    created_by: null,
    created_at: T0,
    started_at: null,
    finished_at: finishedAt,
  };
}

describe("database URLs", () => {
  it("refuses an unsupported scheme and a relative sqlite: URL with DB_URL_INVALID", () => {
    for (const url of ["mysql://h/db", "", "sqlite:relative.db"]) {
      assert.throws(
        () => parseDatabaseUrl(url),
        (e: unknown) => e instanceof SwitchbackError && e.code === "DB_URL_INVALID",
      );
    }
    assert.deepEqual(parseDatabaseUrl("sqlite::memory:"), { dialect: "sqlite", file: ":memory:" });
    assert.deepEqual(parseDatabaseUrl("sqlite:///var/x.db"), { dialect: "sqlite", file: "/var/x.db" });
  });

  it("reports an unreachable PostgreSQL with DB_UNREACHABLE and the password masked", async () => {
    await assert.rejects(openDatabase("postgres://sb:hunter2@127.0.0.1:1/vault"), (e: unknown) => {
      assert.ok(e instanceof SwitchbackError);
      assert.equal(e.code, "DB_UNREACHABLE");
      assert.match(e.message, /postgres:\/\/sb:\*\*\*@127\.0\.0\.1:1\/vault/);
      assert.doesNotMatch(e.message, /hunter2/);
      return true;
    });
  });

  it("reports a SQLite file in a missing folder with DB_UNREACHABLE", async () => {
    await assert.rejects(
      openDatabase("sqlite:/nonexistent-sb-folder/vault.db"),
      (e: unknown) =>
        e instanceof SwitchbackError &&
        e.code === "DB_UNREACHABLE" &&
        /nonexistent-sb-folder/.test(e.message),
    );
  });
});

for (const d of databases) {
  describe(d.name, { skip: d.skip }, () => {
    let created: CreatedDatabase;
    let vdb: VaultDb;

    before(async () => {
      created = await d.create();
      vdb = await openDatabase(created.url);
    });
    after(async () => {
      await vdb?.close();
      await created?.drop();
    });

    it("creates every table, and a second run applies nothing", async () => {
      const first = await migrateToLatest(vdb);
      assert.deepEqual(first.applied, [...MIGRATION_NAMES]);
      const tables = (await vdb.db.introspection.getTables())
        .map((t) => t.name)
        .filter((n) => !n.startsWith("kysely_"))
        .sort();
      assert.deepEqual(tables, TABLES);
      assert.deepEqual((await migrateToLatest(vdb)).applied, []);
    });

    it("migrates safely when two vault processes start at once", async () => {
      const fresh = await d.create();
      try {
        const results = await Promise.all([migrateInChild(fresh.url), migrateInChild(fresh.url)]);
        assert.deepEqual(results.flat().sort(), [...MIGRATION_NAMES]);
      } finally {
        await fresh.drop();
      }
    });

    it("round-trips rows, with byte counts past 2^32 as numbers", async () => {
      await seedItem(vdb);
      const item = await vdb.db
        .selectFrom("items")
        .selectAll()
        .where("machine_id", "=", "m1")
        .executeTakeFirstOrThrow();
      assert.equal(item.name, "web-item-1");
      assert.equal(item.generation, 1);
      assert.equal(item.resync_required, 0);
      const ds = await vdb.db.selectFrom("datastores").selectAll().executeTakeFirstOrThrow();
      assert.strictEqual(ds.capacity_bytes, 2 ** 45);
      const m = await vdb.db.selectFrom("machines").select("memory_bytes").executeTakeFirstOrThrow();
      assert.strictEqual(m.memory_bytes, 8 * 2 ** 30);
      const count = await vdb.db
        .selectFrom("sites")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow();
      assert.strictEqual(count.n, 2);

      await vdb.db.insertInto("jobs").values(job("j-log", null)).execute();
      const ids: number[] = [];
      for (const message of ["one", "two"]) {
        const r = await vdb.db
          .insertInto("job_logs")
          .values({ job_id: "j-log", at: T0, level: "info", step: null, message, data: null })
          .returning("id")
          .executeTakeFirstOrThrow();
        ids.push(r.id);
      }
      assert.equal(typeof ids[0], "number");
      assert.ok(ids[1]! > ids[0]!);
    });

    it("refuses a duplicate name and a reference to a missing row", async () => {
      await assert.rejects(
        vdb.db
          .insertInto("sites")
          .values({ id: "s9", name: "primary", subnet: null, created_at: T0 })
          .execute(),
        (e: unknown) => isUniqueViolation(e),
      );
      await assert.rejects(
        vdb.db
          .insertInto("appliances")
          .values({
            id: "a9",
            name: "ps-9",
            site_id: "no-such-site",
            roles: "[]",
            url: null,
            kind: "remote",
            last_heartbeat_at: null,
            created_at: T0,
          })
          .execute(),
        (e: unknown) => !isUniqueViolation(e) && /foreign key/i.test((e as Error).message),
      );
    });

    it("keeps nothing of a transaction that throws", async () => {
      await assert.rejects(
        vdb.db.transaction().execute(async (trx) => {
          await trx.insertInto("settings").values({ key: "k1", value: "v1" }).execute();
          await trx
            .insertInto("plans")
            .values({ id: "pl1", name: "plan", definition: "{}", created_at: T0, updated_at: T0 })
            .execute();
          throw new Error("boom");
        }),
        /boom/,
      );
      assert.equal((await vdb.db.selectFrom("settings").selectAll().execute()).length, 0);
      assert.equal((await vdb.db.selectFrom("plans").selectAll().execute()).length, 0);
    });

    it("allows at most one unfinished job per item", async () => {
      await vdb.db.insertInto("jobs").values(job("j1", "item-1")).execute();
      await assert.rejects(vdb.db.insertInto("jobs").values(job("j2", "item-1")).execute(), (e: unknown) =>
        isUniqueViolation(e),
      );
      // finished jobs and jobs without an item are not limited
      await vdb.db
        .insertInto("jobs")
        .values(job("j3", "item-1", T0))
        .execute();
      await vdb.db
        .insertInto("jobs")
        .values([job("j4", null), job("j5", null)])
        .execute();
      await vdb.db
        .updateTable("jobs")
        .set({ state: "succeeded", finished_at: T0 })
        .where("id", "=", "j1")
        .execute();
      await vdb.db.insertInto("jobs").values(job("j2", "item-1")).execute();
    });

    it("recognises only unique violations as such", () => {
      assert.equal(isUniqueViolation(new Error("x")), false);
      assert.equal(isUniqueViolation(null), false);
    });

    if (d.name === "sqlite") {
      it("runs with WAL, synchronous=FULL and foreign keys on", async () => {
        const pragma = async (name: string) =>
          Object.values((await sql.raw(`pragma ${name}`).execute(vdb.db)).rows[0] as object)[0];
        assert.equal(await pragma("journal_mode"), "wal");
        assert.equal(await pragma("synchronous"), 2);
        assert.equal(await pragma("foreign_keys"), 1);
        assert.equal(await pragma("busy_timeout"), 5000);
      });

      it("shares one connection when the same file is opened twice in a process", async () => {
        const second = await openDatabase(created.url);
        await Promise.all([
          vdb.db.transaction().execute(async (trx) => {
            await trx.insertInto("settings").values({ key: "h1", value: "1" }).execute();
            await new Promise((r) => setTimeout(r, 20));
          }),
          second.db.insertInto("settings").values({ key: "h2", value: "2" }).execute(),
        ]);
        await second.close();
        // closing one handle leaves the other open
        assert.equal(
          (await vdb.db.selectFrom("settings").selectAll().where("key", "in", ["h1", "h2"]).execute()).length,
          2,
        );
      });

      it("does not interleave concurrent transactions on the one connection", async () => {
        await vdb.db.insertInto("settings").values({ key: "counter", value: "0" }).execute();
        const order: string[] = [];
        const bump = (who: string) =>
          vdb.db.transaction().execute(async (trx) => {
            order.push(`${who}:begin`);
            const row = await trx
              .selectFrom("settings")
              .select("value")
              .where("key", "=", "counter")
              .executeTakeFirstOrThrow();
            // yield to the event loop inside the transaction: another caller must not get in here
            await new Promise((r) => setTimeout(r, 5));
            await trx
              .updateTable("settings")
              .set({ value: String(Number(row.value) + 1) })
              .where("key", "=", "counter")
              .execute();
            order.push(`${who}:end`);
          });
        await Promise.all(Array.from({ length: 10 }, (_, i) => bump(`t${i}`)));
        const final = await vdb.db
          .selectFrom("settings")
          .select("value")
          .where("key", "=", "counter")
          .executeTakeFirstOrThrow();
        assert.equal(final.value, "10");
        for (let i = 0; i < order.length; i += 2) {
          assert.equal(
            order[i]!.split(":")[0],
            order[i + 1]!.split(":")[0],
            `interleaved: ${order.join(" ")}`,
          );
        }
      });
    }
  });
}

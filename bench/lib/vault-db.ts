// Fresh vault databases for bench:vault: a SQLite file in the run's temp folder, or a new PostgreSQL
// database on a server the benchmark can create databases on (dropped afterwards). The server is
// SWITCHBACK_BENCH_PG, else SWITCHBACK_TEST_PG (the test suite's), else the local socket as the
// current OS user, as in test/helpers/databases.ts.
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import path from "node:path";
import pg from "pg";
import { maskUrl } from "../../src/vault/db/database.ts";

export type BenchDbKind = "sqlite" | "postgres";

export interface BenchDatabase {
  kind: BenchDbKind;
  /** the URL startVault and openDatabase take */
  url: string;
  drop(): Promise<void>;
}

export const PG_SERVER =
  process.env["SWITCHBACK_BENCH_PG"] ??
  process.env["SWITCHBACK_TEST_PG"] ??
  `postgres://${encodeURIComponent(userInfo().username)}@%2Fvar%2Frun%2Fpostgresql/postgres`;

async function withAdmin<T>(run: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_SERVER, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return await run(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** null when PostgreSQL can be used, else why not (printed in place of its rows). */
export async function postgresProblem(): Promise<string | null> {
  try {
    await withAdmin(async (c) => {
      const r = await c.query<{ ok: boolean }>(
        "select rolcreatedb or rolsuper as ok from pg_roles where rolname = current_user",
      );
      if (r.rows[0]?.ok !== true) throw new Error("the user may not create databases");
    });
    return null;
  } catch (err) {
    return `PostgreSQL is not usable at ${maskUrl(PG_SERVER)} (${(err as Error).message}); start it ('pg_ctlcluster 15 main start') or set SWITCHBACK_BENCH_PG to a URL with createdb rights`;
  }
}

export async function createBenchDatabase(kind: BenchDbKind, dir: string): Promise<BenchDatabase> {
  if (kind === "sqlite") {
    return { kind, url: `sqlite:${path.join(dir, "vault.db")}`, drop: async () => {} };
  }
  const name = `sb_bench_${randomBytes(6).toString("hex")}`;
  await withAdmin((c) => c.query(`create database "${name}"`));
  const u = new URL(PG_SERVER);
  u.pathname = `/${name}`;
  return {
    kind,
    url: u.toString(),
    drop: () => withAdmin((c) => c.query(`drop database if exists "${name}" with (force)`)).then(() => {}),
  };
}

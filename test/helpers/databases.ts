// The databases every vault test runs on: a fresh SQLite file, and a fresh PostgreSQL database on
// the server named by SWITCHBACK_TEST_PG (default: the local socket as the current OS user).
// PostgreSQL is probed once at import; when absent the tests skip with how to enable them, except
// under CI=true, where they run and fail loudly.
import { randomBytes } from "node:crypto";
import { userInfo } from "node:os";
import path from "node:path";
import { test } from "node:test";
import pg from "pg";
import { tempDir } from "./env.ts";

export interface CreatedDatabase {
  url: string;
  drop(): Promise<void>;
}

export interface DatabaseUnderTest {
  name: "sqlite" | "postgres";
  skip: string | false;
  create(): Promise<CreatedDatabase>;
}

const PG_SERVER =
  process.env["SWITCHBACK_TEST_PG"] ??
  `postgres://${encodeURIComponent(userInfo().username)}@%2Fvar%2Frun%2Fpostgresql/postgres`;

async function probe(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("select 1");
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
}

const pgProblem = await probe(PG_SERVER);
const pgSkip: string | false =
  pgProblem === null || process.env["CI"] === "true"
    ? false
    : `PostgreSQL is not reachable at ${PG_SERVER} (${pgProblem}); start it with ` +
      `'pg_ctlcluster 15 main start; su postgres -c "createuser -s $USER"' or set SWITCHBACK_TEST_PG ` +
      "to a URL with createdb rights";

// node:test counts the tests of a skipped suite as nothing at all: the closing summary said
// "skipped 0" while every PostgreSQL suite was skipped. One skipped test per file that runs on the
// databases makes the summary count them, with the reason.
if (pgSkip !== false) test("the PostgreSQL suites of this file", { skip: pgSkip }, () => {});

function withDatabase(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_SERVER, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

export const databases: DatabaseUnderTest[] = [
  {
    name: "sqlite",
    skip: false,
    async create() {
      const tmp = tempDir("sb-db-");
      return {
        url: `sqlite:${path.join(tmp.dir, "vault.db")}`,
        drop: async () => tmp.cleanup(),
      };
    },
  },
  {
    name: "postgres",
    skip: pgSkip,
    async create() {
      const name = `sb_test_${randomBytes(6).toString("hex")}`;
      await admin((c) => c.query(`create database "${name}"`));
      return {
        url: withDatabase(PG_SERVER, name),
        // WITH (FORCE) ends sessions a failed test left open (PostgreSQL 13+)
        drop: () => admin((c) => c.query(`drop database if exists "${name}" with (force)`)).then(() => {}),
      };
    },
  },
];

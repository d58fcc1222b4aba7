// Opens the vault's database from a URL: PostgreSQL through `pg`, or SQLite through `node:sqlite`.
// Opening proves the database answers (errors name the URL, password masked); it never migrates.

import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { setTimeout as sleep } from "node:timers/promises";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { SwitchbackError } from "../../domain/errors.ts";
import type { VaultDatabase } from "./schema.ts";
import { NodeSqliteDialect } from "./sqlite-dialect.ts";

export type DialectName = "sqlite" | "postgres";

export interface VaultDb {
  db: Kysely<VaultDatabase>;
  dialect: DialectName;
  /** the URL it was opened with, password masked (safe to log) */
  url: string;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** PostgreSQL pool size (default 10) */
  poolSize?: number;
  /** called when an idle pooled PostgreSQL connection fails (the pool drops it and reconnects) */
  onIdleError?: (err: Error) => void;
}

const URL_FORMS =
  "use postgres://user:password@host:5432/db, sqlite:/absolute/path.db, sqlite::memory: or a file path";

export async function openDatabase(url: string, options: OpenOptions = {}): Promise<VaultDb> {
  const target = parseDatabaseUrl(url);
  return target.dialect === "postgres"
    ? openPostgres(target.url, options)
    : openSqlite(target.file, maskUrl(url));
}

type DatabaseTarget = { dialect: "postgres"; url: string } | { dialect: "sqlite"; file: string };

/** Resolves a URL to a dialect and its address; throws DB_URL_INVALID for anything else. */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  const trimmed = url.trim();
  if (trimmed === "") throw new SwitchbackError("DB_URL_INVALID", `the database URL is empty; ${URL_FORMS}`);
  if (/^postgres(ql)?:\/\//i.test(trimmed)) {
    try {
      new URL(trimmed);
    } catch {
      throw new SwitchbackError(
        "DB_URL_INVALID",
        `database URL ${JSON.stringify(maskUrl(trimmed))} is not a valid URL; ${URL_FORMS} (percent-encode a socket folder: postgres://user@%2Fvar%2Frun%2Fpostgresql/db)`,
      );
    }
    return { dialect: "postgres", url: trimmed };
  }
  if (/^sqlite:/i.test(trimmed)) {
    let rest = trimmed.slice("sqlite:".length);
    if (rest === ":memory:") return { dialect: "sqlite", file: ":memory:" };
    if (rest.startsWith("//")) rest = rest.slice(2); // sqlite:///abs/path.db
    if (!path.isAbsolute(rest)) {
      throw new SwitchbackError(
        "DB_URL_INVALID",
        `database URL ${JSON.stringify(trimmed)} does not name an absolute file; ${URL_FORMS}`,
      );
    }
    return { dialect: "sqlite", file: rest };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    throw new SwitchbackError(
      "DB_URL_INVALID",
      `database URL ${JSON.stringify(maskUrl(trimmed))} has a scheme the vault does not support; ${URL_FORMS}`,
    );
  }
  return { dialect: "sqlite", file: path.resolve(trimmed) };
}

/** The URL with its password (user-info or `password=` parameter) replaced by `***`. */
export function maskUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, "$1***@")
    .replace(/([?&]password=)[^&]*/i, "$1***");
}

// One connection per SQLite file per process: a second DatabaseSync on the same file would wait for
// the write lock synchronously (busy_timeout) and so block the very event loop that must finish
// the first connection's transaction. Opening a file again shares the handle, counted.
const sqliteHandles = new Map<string, { vdb: VaultDb; refs: number }>();

const SQLITE_BUSY = 5;

// Two processes switching a new file to WAL at once: SQLite answers SQLITE_BUSY without calling the
// busy handler (it would deadlock otherwise), so the loser tries again for up to ~5 s.
async function switchToWal(database: DatabaseSync): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      database.exec("pragma journal_mode = wal");
      return;
    } catch (err) {
      if ((err as { errcode?: number }).errcode !== SQLITE_BUSY || attempt >= 100) throw err;
      await sleep(20 + Math.random() * 30);
    }
  }
}

async function openSqlite(file: string, shownUrl: string): Promise<VaultDb> {
  const shared = file === ":memory:" ? undefined : sqliteHandles.get(file);
  if (shared) {
    shared.refs++;
    return sharedHandle(shared.vdb, file);
  }
  let database: DatabaseSync | undefined;
  try {
    database = new DatabaseSync(file);
    // busy_timeout first: a second process waits for the lock instead of failing, and switching a
    // new file to WAL takes that lock (two vaults starting together used to fail here). WAL lets
    // readers (a watcher in another process) run beside the writer; synchronous=FULL fsyncs every
    // commit, because a DR control plane must not forget a finished job step on power loss.
    database.exec("pragma busy_timeout = 5000");
    await switchToWal(database);
    database.exec("pragma synchronous = full");
    database.exec("pragma foreign_keys = on");
  } catch (err) {
    if (database?.isOpen) database.close();
    throw new SwitchbackError(
      "DB_UNREACHABLE",
      `cannot open the SQLite database ${JSON.stringify(shownUrl)}: ${(err as Error).message}; check that its folder exists and is writable`,
      { cause: err },
    );
  }
  // another openDatabase of this file may have finished while this one waited for WAL
  const raced = file === ":memory:" ? undefined : sqliteHandles.get(file);
  if (raced) {
    database.close();
    raced.refs++;
    return sharedHandle(raced.vdb, file);
  }
  const opened = database;
  const db = new Kysely<VaultDatabase>({ dialect: new NodeSqliteDialect(() => opened) });
  const vdb = handle(db, "sqlite", shownUrl);
  if (file === ":memory:") return vdb;
  sqliteHandles.set(file, { vdb, refs: 1 });
  return sharedHandle(vdb, file);
}

function sharedHandle(vdb: VaultDb, file: string): VaultDb {
  let closed = false;
  return {
    db: vdb.db,
    dialect: vdb.dialect,
    url: vdb.url,
    close: async () => {
      if (closed) return;
      closed = true;
      const entry = sqliteHandles.get(file);
      if (entry && --entry.refs === 0) {
        sqliteHandles.delete(file);
        await vdb.close();
      }
    },
  };
}

// int8 (count(*), byte counts, log ids) and numeric come back from `pg` as strings so that no
// precision is lost; we want numbers, and keep the string only where a number would round.
const INT8_OID = 20;
const NUMERIC_OID = 1700;
const pgTypes = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8_OID) {
      return (value: string) => {
        const n = Number(value);
        return Number.isSafeInteger(n) ? n : value;
      };
    }
    if (oid === NUMERIC_OID) {
      return (value: string) => {
        const n = Number(value);
        return Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n)) ? n : value;
      };
    }
    return pg.types.getTypeParser(oid, format ?? "text");
  },
} as pg.CustomTypesConfig;

async function openPostgres(url: string, options: OpenOptions): Promise<VaultDb> {
  const shownUrl = maskUrl(url);
  const pool = new pg.Pool({
    connectionString: url,
    types: pgTypes,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 10_000,
  });
  // Without a listener an idle client's error (server restart) would crash the process.
  pool.on("error", (err) => {
    if (options.onIdleError) options.onIdleError(err);
    else
      process.emitWarning(
        `idle PostgreSQL connection to ${shownUrl} failed: ${err.message}`,
        "DatabaseWarning",
      );
  });
  try {
    await pool.query("select 1");
  } catch (err) {
    await pool.end().catch(() => {});
    throw new SwitchbackError(
      "DB_UNREACHABLE",
      `cannot reach the PostgreSQL database ${JSON.stringify(shownUrl)}: ${(err as Error).message}; check that the server is running and the URL's user, password and database are right`,
      { cause: err },
    );
  }
  const db = new Kysely<VaultDatabase>({ dialect: new PostgresDialect({ pool }) });
  return handle(db, "postgres", shownUrl);
}

function handle(db: Kysely<VaultDatabase>, dialect: DialectName, url: string): VaultDb {
  let closing: Promise<void> | null = null;
  return {
    db,
    dialect,
    url,
    close: () => {
      closing ??= db.destroy();
      return closing;
    },
  };
}

// The database-backed service of the end-to-end DR test: inside a protected machine it commits
// numbered rows to a SQLite database (WAL, synchronous=FULL) and keeps a tree of files whose manifest
// lives in the same database, then appends "<seq> <site> <instance> <epochMs>" to an acknowledgement
// log outside the machine. Invariant, at every instant a crash (kill -9, power cut) can freeze: every
// manifest entry's file exists with its sha256, because a file is written, fsynced and renamed into
// place before the transaction that references it, and a replaced file is deleted only after the
// transaction that stops referencing it has committed. `check` proves it on any copy.
//   env: WORKLOAD_ROOT (data directory, must exist), WORKLOAD_ACK (ack log), WORKLOAD_LISTEN
//   (host:port, default 0.0.0.0:8080), WORKLOAD_EVERY_MS (default 20), SWITCHBACK_SITE,
//   SWITCHBACK_INSTANCE, SWITCHBACK_DRILL=1 (acks go to "<WORKLOAD_ACK>.drill")
//   node scripts/sql-workload.ts             runs the service
//   node scripts/sql-workload.ts check ROOT  prints the check as JSON, exits 1 unless it is ok
import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";

/** Files of seq n live in files/<n % DIRS>/, so no directory grows without bound. */
const DIRS = 16;
/** Every REWRITE_EVERY-th seq also replaces the least recently written file with a new version. */
const REWRITE_EVERY = 10;

export interface WorkloadCheck {
  /** PRAGMA integrity_check, joined; "ok" when fine, or why the database could not be read. */
  integrity: string;
  rows: number;
  minSeq: number | null;
  maxSeq: number | null;
  /** The seqs are exactly 1…maxSeq (true for an empty table). */
  unbroken: boolean;
  /** Rows whose checksum is not sha256("<seq>|<payload>"). */
  badChecksums: number;
  manifestEntries: number;
  /** Manifest paths (relative to the root) with no file. */
  manifestMissing: string[];
  /** Manifest paths whose file's sha256 differs from the manifest. */
  manifestMismatched: string[];
  /** All of the above fine, and one manifest entry per row (each seq adds one file, a rewrite replaces one). */
  ok: boolean;
}

export interface WorkloadStatus {
  site: string;
  instance: string;
  drill: boolean;
  listen: string;
  bootMaxSeq: number;
  maxSeq: number;
  rows: number;
  bootCheck: WorkloadCheck;
  check: WorkloadCheck;
}

export interface Ack {
  seq: number;
  site: string;
  instance: string;
  /** When the commit was acknowledged (ms since the epoch); null on a line without it. */
  atMs: number | null;
}

export function databasePath(root: string): string {
  return path.join(root, "app.db");
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function rowChecksum(seq: number, payload: string): string {
  return sha256(`${seq}|${payload}`);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function failedCheck(why: string): WorkloadCheck {
  return {
    integrity: why,
    rows: 0,
    minSeq: null,
    maxSeq: null,
    unbroken: false,
    badChecksums: 0,
    manifestEntries: 0,
    manifestMissing: [],
    manifestMismatched: [],
    ok: false,
  };
}

/**
 * Checks the database and the file tree under `root`. Opens the database read-write, so that a hot
 * WAL (a crash-consistent copy) is recovered the way the service itself would; a missing or unreadable
 * database is a failed check, not an exception.
 */
export function checkWorkload(root: string): WorkloadCheck {
  const file = databasePath(root);
  if (!existsSync(file)) return failedCheck(`no database at ${file}`);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file, { timeout: 5000 });
  } catch (err) {
    return failedCheck(`cannot open ${file}: ${message(err)}`);
  }
  try {
    const integrity = db
      .prepare("PRAGMA integrity_check")
      .all()
      .map((r) => String(r["integrity_check"]))
      .join("; ");
    const agg = db.prepare("SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM rows").get() as {
      n: number;
      lo: number | null;
      hi: number | null;
    };
    let badChecksums = 0;
    for (const r of db.prepare("SELECT seq, payload, checksum FROM rows").iterate()) {
      if (rowChecksum(r["seq"] as number, r["payload"] as string) !== r["checksum"]) badChecksums++;
    }
    const manifestMissing: string[] = [];
    const manifestMismatched: string[] = [];
    let manifestEntries = 0;
    for (const e of db.prepare("SELECT path, sha256 FROM files ORDER BY path").iterate()) {
      manifestEntries++;
      const rel = e["path"] as string;
      let content: Buffer;
      try {
        content = readFileSync(path.join(root, rel));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") {
          manifestMissing.push(rel);
          continue;
        }
        throw err;
      }
      if (sha256(content) !== e["sha256"]) manifestMismatched.push(rel);
    }
    const unbroken = agg.n === 0 || (agg.lo === 1 && agg.hi === agg.n);
    return {
      integrity,
      rows: agg.n,
      minSeq: agg.lo,
      maxSeq: agg.hi,
      unbroken,
      badChecksums,
      manifestEntries,
      manifestMissing,
      manifestMismatched,
      ok:
        integrity === "ok" &&
        unbroken &&
        badChecksums === 0 &&
        manifestMissing.length === 0 &&
        manifestMismatched.length === 0 &&
        manifestEntries === agg.n,
    };
  } catch (err) {
    return failedCheck(`cannot read ${file}: ${message(err)}`);
  } finally {
    db.close();
  }
}

const ACK_LINE = /^(\d+) (\S+) (\S+)(?: (\d+))?$/;

/** The acknowledgements in `file` ([] when it does not exist); a final line without "\n" is one being written. */
export function readAcks(file: string): Ack[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const lines = text.split("\n");
  lines.pop();
  return lines.map((line, i) => {
    const m = ACK_LINE.exec(line);
    if (m === null) throw new Error(`ACK_LOG_MALFORMED: line ${i + 1} of ${file} is ${JSON.stringify(line)}`);
    return {
      seq: Number(m[1]),
      site: m[2] as string,
      instance: m[3] as string,
      atMs: m[4] === undefined ? null : Number(m[4]),
    };
  });
}

interface Config {
  root: string;
  ackFile: string;
  host: string;
  port: number;
  everyMs: number;
  site: string;
  instance: string;
  drill: boolean;
}

function configError(code: string, sentence: string): Error {
  return new Error(`${code}: ${sentence}`);
}

/** One token of an ack line: whitespace would split it. */
function token(v: string | undefined): string {
  const t = (v ?? "").replace(/\s+/g, "_");
  return t === "" ? "?" : t;
}

export function parseListen(v: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(v);
  const port = Number(m?.[2]);
  if (m === null || m[1] === "" || !Number.isInteger(port) || port > 65535)
    throw configError(
      "WORKLOAD_LISTEN_INVALID",
      `WORKLOAD_LISTEN ${JSON.stringify(v)} is not host:port; use e.g. 0.0.0.0:8080`,
    );
  return { host: m[1] as string, port };
}

function configFromEnv(env: NodeJS.ProcessEnv): Config {
  const root = env.WORKLOAD_ROOT;
  if (root === undefined || root === "")
    throw configError(
      "WORKLOAD_ROOT_UNSET",
      "WORKLOAD_ROOT is not set; set it to a directory on the data disk",
    );
  // Never create it: when the data file system failed to mount, a new directory on the root file
  // system would silently start over at seq 1.
  if (!existsSync(root) || !statSync(root).isDirectory())
    throw configError(
      "WORKLOAD_ROOT_MISSING",
      `WORKLOAD_ROOT ${JSON.stringify(root)} is not a directory; mount the data file system or create it`,
    );
  const ack = env.WORKLOAD_ACK;
  if (ack === undefined || ack === "")
    throw configError(
      "WORKLOAD_ACK_UNSET",
      "WORKLOAD_ACK is not set; set it to a log file outside the machine",
    );
  if (!existsSync(path.dirname(ack)))
    throw configError(
      "WORKLOAD_ACK_DIR_MISSING",
      `the folder of WORKLOAD_ACK ${JSON.stringify(ack)} does not exist; create it`,
    );
  const everyMs = Number(env.WORKLOAD_EVERY_MS ?? 20);
  if (!Number.isFinite(everyMs) || everyMs < 0)
    throw configError(
      "WORKLOAD_EVERY_MS_INVALID",
      `WORKLOAD_EVERY_MS ${JSON.stringify(env.WORKLOAD_EVERY_MS)} is not a number of milliseconds ≥ 0`,
    );
  const drill = env.SWITCHBACK_DRILL === "1";
  return {
    root: path.resolve(root),
    ackFile: drill ? `${ack}.drill` : ack,
    ...parseListen(env.WORKLOAD_LISTEN ?? "0.0.0.0:8080"),
    everyMs,
    site: token(env.SWITCHBACK_SITE),
    instance: token(env.SWITCHBACK_INSTANCE),
    drill,
  };
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `rel` under `root` so that a crash leaves either no file or the whole one: temp, fsync, rename, fsync dir. */
function writeFileDurably(root: string, rel: string, content: Buffer): void {
  const abs = path.join(root, rel);
  const dir = path.dirname(abs);
  const tmp = path.join(dir, `.${path.basename(abs)}.tmp`);
  const fd = openSync(tmp, "w");
  try {
    writeFileSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, abs);
  fsyncDir(dir);
}

function fileContent(header: string): Buffer {
  return Buffer.from(`${header}\n${randomBytes(1536).toString("hex")}\n`);
}

/** Opens (creating when new) the service's database with its schema. */
function openWorkloadDb(root: string): DatabaseSync {
  const db = new DatabaseSync(databasePath(root), { timeout: 5000 });
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA synchronous=FULL");
  db.exec(`
    CREATE TABLE IF NOT EXISTS rows(
      seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, checksum TEXT NOT NULL, written_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, seq INTEGER NOT NULL);`);
  return db;
}

/** The service's writer: one call of step() is one seq, from its files to its acknowledgement. */
class Writer {
  readonly cfg: Config;
  readonly db: DatabaseSync;
  seq: number;
  readonly #insertRow: StatementSync;
  readonly #upsertEntry: StatementSync;
  readonly #deleteEntry: StatementSync;
  readonly #oldestEntry: StatementSync;

  constructor(cfg: Config, db: DatabaseSync, seq: number) {
    this.cfg = cfg;
    this.db = db;
    this.seq = seq;
    this.#insertRow = db.prepare("INSERT INTO rows(seq, payload, checksum, written_at) VALUES (?, ?, ?, ?)");
    // files.seq: the seq whose transaction wrote the file version the entry points at
    this.#upsertEntry = db.prepare(
      "INSERT INTO files(path, sha256, seq) VALUES (?, ?, ?) " +
        "ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, seq = excluded.seq",
    );
    this.#deleteEntry = db.prepare("DELETE FROM files WHERE path = ?");
    this.#oldestEntry = db.prepare("SELECT path FROM files ORDER BY seq, path LIMIT 1");
  }

  step(): void {
    const seq = this.seq + 1;
    const { root } = this.cfg;
    const entries: { path: string; sha256: string }[] = [];
    const put = (rel: string, content: Buffer) => {
      writeFileDurably(root, rel, content);
      entries.push({ path: rel, sha256: sha256(content) });
    };
    put(`files/${seq % DIRS}/${seq}.txt`, fileContent(`seq ${seq}`));
    let retired: string | null = null;
    if (seq % REWRITE_EVERY === 0) {
      const old = this.#oldestEntry.get() as { path: string } | undefined;
      if (old !== undefined) {
        const stem = path.posix.basename(old.path).replace(/(\.v\d+)?\.txt$/, "");
        put(`${path.posix.dirname(old.path)}/${stem}.v${seq}.txt`, fileContent(`${stem} version ${seq}`));
        retired = old.path;
      }
    }
    const payload = randomBytes(160).toString("hex");
    this.db.exec("BEGIN IMMEDIATE");
    try {
      this.#insertRow.run(seq, payload, rowChecksum(seq, payload), new Date().toISOString());
      if (retired !== null) this.#deleteEntry.run(retired);
      for (const e of entries) this.#upsertEntry.run(e.path, e.sha256, seq);
      this.db.exec("COMMIT");
    } catch (err) {
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      throw err;
    }
    this.seq = seq;
    // committed with synchronous=FULL: the WAL is fsynced, so the row survives a power cut from here on
    const { ackFile, site, instance } = this.cfg;
    appendFileSync(ackFile, `${seq} ${site} ${instance} ${Date.now()}\n`);
    // force: a file already missing is a broken manifest the check reports; the rewrite has replaced it
    if (retired !== null) rmSync(path.join(root, retired), { force: true });
  }

  counts(): { rows: number; maxSeq: number } {
    const r = this.db.prepare("SELECT count(*) AS n, coalesce(max(seq), 0) AS hi FROM rows").get() as {
      n: number;
      hi: number;
    };
    return { rows: r.n, maxSeq: r.hi };
  }
}

export function main(env: NodeJS.ProcessEnv = process.env): void {
  const cfg = configFromEnv(env);
  const db = openWorkloadDb(cfg.root);
  const bootCheck = checkWorkload(cfg.root);
  const writer = new Writer(cfg, db, 0);
  const bootMaxSeq = writer.counts().maxSeq;
  writer.seq = bootMaxSeq;
  const files = path.join(cfg.root, "files");
  for (let d = 0; d < DIRS; d++) mkdirSync(path.join(files, String(d)), { recursive: true });
  fsyncDir(files);
  fsyncDir(cfg.root);

  let listen = `${cfg.host}:${cfg.port}`;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    try {
      if (req.method === "GET" && url.pathname === "/health") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok");
      } else if (req.method === "GET" && url.pathname === "/status") {
        // every step() runs to completion between two events, so the check never sees half a seq
        const status: WorkloadStatus = {
          site: cfg.site,
          instance: cfg.instance,
          drill: cfg.drill,
          listen,
          bootMaxSeq,
          ...writer.counts(),
          bootCheck,
          check: checkWorkload(cfg.root),
        };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(status));
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      }
    } catch (err) {
      res.writeHead(500, { "content-type": "text/plain" }).end(message(err));
    }
  });

  const stop = (code: number, why: string) => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    server.close();
    server.closeAllConnections();
    db.close();
    console.log(`sql-workload: stopped (${why}) at seq ${writer.seq}`);
    process.exit(code);
  };
  const tick = () => {
    try {
      writer.step();
    } catch (err) {
      console.error(`SQL_WORKLOAD_WRITE_FAILED: seq ${writer.seq + 1} in ${cfg.root}: ${message(err)}`);
      stop(1, "write failed");
      return;
    }
    timer = setTimeout(tick, cfg.everyMs);
  };
  // Signals arrive between two events, never inside step(): the seq under way is always finished.
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => stop(0, sig));

  server.on("error", (err) => {
    console.error(`SQL_WORKLOAD_LISTEN_FAILED: cannot listen on ${listen}: ${message(err)}`);
    stop(1, "listen failed");
  });
  server.listen(cfg.port, cfg.host, () => {
    const addr = server.address() as AddressInfo;
    listen = `${cfg.host}:${addr.port}`;
    console.log(
      `sql-workload: started root=${cfg.root} listen=${listen} bootMaxSeq=${bootMaxSeq} ` +
        `site=${cfg.site} instance=${cfg.instance} drill=${cfg.drill} ack=${cfg.ackFile} ` +
        `bootCheck=${bootCheck.ok ? "ok" : "FAILED"}`,
    );
    // Keep going: the copy's state at boot is the evidence a drill reads from /status.
    if (!bootCheck.ok) console.error(`SQL_WORKLOAD_BOOT_CHECK_FAILED: ${JSON.stringify(bootCheck)}`);
    tick();
  });
}

function checkMain(root: string | undefined): void {
  if (root === undefined) {
    console.error("usage: node scripts/sql-workload.ts check <root>");
    process.exit(2);
  }
  const check = checkWorkload(root);
  console.log(JSON.stringify(check, null, 2));
  process.exit(check.ok ? 0 : 1);
}

if (process.argv[1] === import.meta.filename) {
  try {
    if (process.argv[2] === "check") checkMain(process.argv[3]);
    else main();
  } catch (err) {
    console.error(message(err));
    process.exit(1);
  }
}

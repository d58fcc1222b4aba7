// npm run bench:vault [-- --sizes 100,1000,10000 | --quick] [--db sqlite|postgres|both] [--cli-runs 15]
//                       [--no-cli] [--seed 1] [--tmp DIR] [--keep] [--profile DIR]
//
// The vault's read paths at 100, 1,000 and 10,000 replicated items (issue 4, "Benchmark"): for each
// size a fresh database is seeded straight through Kysely (bench/lib/vault-seed.ts: items in mixed
// phases, 10 finished jobs per item with steps and logs), a vault runs in this process on it with its
// default services (DR runtime, job engine, alerts), and the list and show routes of items and jobs
// are timed over real HTTP, then the CLI's read commands as real processes. One table to stdout.
import { mkdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { bootstrap } from "../src/vault/bootstrap.ts";
import { openDatabase } from "../src/vault/db/database.ts";
import { migrateToLatest } from "../src/vault/db/migrations.ts";
import { type RunningVault, startVault } from "../src/vault/server.ts";
import { report } from "./lib/cpuprofile.ts";
import { busyness, describeMachine, fileSystemOf } from "./lib/machine.ts";
import { fmtBytes, fmtInt, fmtSeconds } from "./lib/sizes.ts";
import { markdown } from "./lib/table.ts";
import { type BenchDbKind, createBenchDatabase, postgresProblem } from "./lib/vault-db.ts";
import { type HttpPlan, profiled, type Timing, timeCommand, timeHttp } from "./lib/vault-measure.ts";
import { JOBS_PER_ITEM, PHASE_MIX, prng, type SeededVault, seedVault } from "./lib/vault-seed.ts";
import { benchWorkdir } from "./lib/workdir.ts";

const SWITCHBACK = path.resolve(import.meta.dirname, "../bin/switchback");

function fail(message: string): never {
  process.stderr.write(`bench:vault: ${message}\n`);
  process.exit(1);
}

const { values: opt } = parseArgs({
  options: {
    sizes: { type: "string" },
    quick: { type: "boolean", default: false },
    db: { type: "string", default: "both" },
    "cli-runs": { type: "string", default: "15" },
    "no-cli": { type: "boolean", default: false },
    seed: { type: "string", default: "1" },
    tmp: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
    profile: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  process.stdout.write(
    [
      "usage: npm run bench:vault [-- options]",
      "  --sizes LIST     item counts (default 100,1000,10000)",
      "  --quick          100 and 1,000 items only",
      "  --db KIND        both (default: SQLite, and PostgreSQL when reachable, else skipped with the reason),",
      "                   sqlite or postgres; the PostgreSQL server is SWITCHBACK_BENCH_PG, else SWITCHBACK_TEST_PG,",
      "                   else the local socket as this user (a database is created per size and dropped)",
      "  --cli-runs 15    timed runs of each CLI command",
      "  --no-cli         API only",
      "  --seed 1         seed of the item mix and of the random picks",
      "  --tmp DIR        where the temp folder goes (default the system's temp folder)",
      "  --keep           keep the temp folder (data folders and SQLite files)",
      "  --profile DIR    V8 CPU profile of this process during the item-list requests, per size, summarised",
      "",
    ].join("\n"),
  );
  process.exit(0);
}

const sizes = (opt.sizes ?? (opt.quick ? "100,1000" : "100,1000,10000")).split(",").map((s) => {
  const n = Number(s.trim().replace(/_/g, ""));
  if (!Number.isInteger(n) || n < 1) fail(`--sizes: ${JSON.stringify(s)} is not a whole number ≥ 1`);
  return n;
});
const dbChoice = opt.db;
if (!["sqlite", "postgres", "both"].includes(dbChoice))
  fail(`--db ${dbChoice}: use sqlite, postgres or both`);
const cliRuns = Number(opt["cli-runs"]);
if (!Number.isInteger(cliRuns) || cliRuns < 1)
  fail(`--cli-runs ${opt["cli-runs"]} must be a whole number ≥ 1`);
const seed = Number(opt.seed);
if (!Number.isInteger(seed)) fail(`--seed ${opt.seed} must be an integer`);
const profileDir = opt.profile === undefined ? undefined : path.resolve(opt.profile);

const progress = (s: string) => process.stderr.write(`${s}\n`);
// the alerts the seeded rows raise are logged at warn, thousands of lines at 10,000 items
process.env.SWITCHBACK_LOG_LEVEL ??= "error";

// cheap routes: up to 300 requests (about 10 s worth); the list: at least 30, about 30 s worth
const CHEAP: HttpPlan = { warmup: 20, budgetMs: 10_000, min: 30, max: 300 };
const listPlan = (n: number): HttpPlan => ({
  warmup: n >= 10_000 ? 3 : 10,
  budgetMs: 30_000,
  min: 30,
  max: 300,
});

interface Row {
  n: number;
  db: BenchDbKind;
  op: string;
  t: Timing | null;
  /** why there is no timing */
  missing?: string;
}

async function runSize(
  n: number,
  kind: BenchDbKind,
  base: string,
  rows: Row[],
  notes: string[],
): Promise<void> {
  const data = path.join(base, `${kind}-${n}`);
  mkdirSync(data, { recursive: true });
  const database = await createBenchDatabase(kind, data);
  let vault: RunningVault | null = null;
  try {
    // seed on a database of our own, then let the vault open it as it would after a restart
    let t = performance.now();
    const vdb = await openDatabase(database.url);
    let token: string;
    let seeded: SeededVault;
    try {
      await migrateToLatest(vdb);
      const b = await bootstrap(vdb, { data, now: new Date() });
      if (b.adminToken === null) throw new Error(`the database of ${kind}-${n} was bootstrapped already`);
      token = b.adminToken;
      seeded = await seedVault(vdb.db, { n, seed: seed + n, nowMs: Date.now() });
    } finally {
      await vdb.close();
    }
    const r = seeded.rows;
    notes.push(
      `${fmtInt(n)} items on ${kind}: seeded in ${fmtSeconds((performance.now() - t) / 1000)} s — ${fmtInt(r.machines ?? 0)} machines, ${fmtInt(r.jobs ?? 0)} jobs, ${fmtInt(r.job_steps ?? 0)} steps, ${fmtInt(r.job_logs ?? 0)} log lines, ${fmtInt(r.instances ?? 0)} instances`,
    );
    progress(notes[notes.length - 1]!);

    t = performance.now();
    vault = await startVault({ data, db: database.url, host: "127.0.0.1", port: 0 });
    progress(`  vault up in ${fmtSeconds((performance.now() - t) / 1000)} s at ${vault.url}`);
    const url = vault.url;
    const db = vault.vdb.db;
    // The alerts service's first rounds raise what the seeded rows call for (failed jobs, RPO
    // breaches) in one burst: wait until the open alerts stop changing before timing anything.
    let open = -1;
    for (let i = 0; i < 60; i++) {
      await sleep(1000);
      const c = await db
        .selectFrom("alerts")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow();
      if (Number(c.n) === open && i >= 2) break;
      open = Number(c.n);
    }
    notes.push(`${fmtInt(n)} items on ${kind}: ${fmtInt(open)} open alerts when timing started`);

    const pick = prng(seed * 7919 + n);
    const anyItem = () => seeded.items[Math.floor(pick() * seeded.items.length)]!.name;
    const anyJob = () => seeded.jobIds[Math.floor(pick() * seeded.jobIds.length)]!;
    // agents are not simulated: their heartbeats are brought up to date in one statement before each
    // operation, so that no machine looks lost (the list reports it, the alerts service raises it)
    const heartbeats = async () => {
      await db.updateTable("machines").set({ last_heartbeat_at: new Date().toISOString() }).execute();
    };

    const api: [string, (i: number) => string, HttpPlan][] = [
      ["API GET /v1/items", () => "/v1/items", listPlan(n)],
      ["API GET /v1/items/{item}", () => `/v1/items/${encodeURIComponent(anyItem())}`, CHEAP],
      ["API GET /v1/jobs?limit=50", () => "/v1/jobs?limit=50", CHEAP],
      ["API GET /v1/jobs?item={item}", () => `/v1/jobs?item=${encodeURIComponent(anyItem())}`, CHEAP],
      ["API GET /v1/jobs/{job}", () => `/v1/jobs/${anyJob()}`, CHEAP],
    ];
    for (const [op, p, plan] of api) {
      await heartbeats();
      const measure = () => timeHttp(url, token, p, plan);
      let timed: Timing;
      if (profileDir !== undefined && op === "API GET /v1/items") {
        const dir = path.join(profileDir, `list-${kind}-${n}`);
        mkdirSync(dir, { recursive: true });
        timed = await profiled(path.join(dir, "CPU.vault.0.0.cpuprofile"), measure);
      } else {
        timed = await measure();
      }
      rows.push({ n, db: kind, op, t: timed });
      progress(`  ${op}: ${timed.n} requests, p50 ${ms(timed.p50)} ms, p99 ${ms(timed.p99)} ms`);
    }

    const cli: [string, (i: number) => string[]][] = [
      ["CLI items list --json", () => ["items", "list", "--json"]],
      ["CLI items show ITEM --json", () => ["items", "show", anyItem(), "--json"]],
      ["CLI jobs list --json", () => ["jobs", "list", "--json"]],
      ["CLI jobs show JOB --json", () => ["jobs", "show", anyJob(), "--json"]],
    ];
    const env = { ...process.env, SWITCHBACK_VAULT: url, SWITCHBACK_TOKEN: token };
    for (const [op, args] of cli) {
      if (opt["no-cli"]) {
        rows.push({ n, db: kind, op, t: null, missing: "not run (--no-cli)" });
        continue;
      }
      await heartbeats();
      try {
        const timed = await timeCommand(SWITCHBACK, args, env, { warmup: 1, runs: cliRuns });
        rows.push({ n, db: kind, op, t: timed });
        progress(`  ${op}: ${timed.n} runs, p50 ${ms(timed.p50)} ms, p99 ${ms(timed.p99)} ms`);
      } catch (err) {
        // the CLI's read commands are another engineer's; a missing one is reported, not fatal
        rows.push({ n, db: kind, op, t: null, missing: "not available" });
        progress(`  ${op}: not available (${(err as Error).message.split("\n")[0]})`);
      }
    }
  } finally {
    await vault?.close();
    await database.drop();
    if (!opt.keep) rmSync(data, { recursive: true, force: true });
  }
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return "n/a";
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : fmtInt(Math.round(x));
}

function sizeCell(n: number): string {
  return `${fmtInt(n)} items, ${fmtInt(n * JOBS_PER_ITEM)} jobs`;
}

/** "×9.8 (100 → 1,000)" for each pair of consecutive sizes of one operation and database. */
function growth(rows: Row[], op: string, db: BenchDbKind): string | null {
  const pts = rows
    .filter((r) => r.op === op && r.db === db && r.t !== null)
    .map((r) => ({ n: r.n, p50: r.t!.p50 }))
    .sort((a, b) => a.n - b.n);
  if (pts.length < 2) return null;
  const parts: string[] = [];
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1]!;
    const b = pts[i]!;
    parts.push(
      `×${(b.p50 / a.p50).toFixed(1)} from ${fmtInt(a.n)} to ${fmtInt(b.n)} items (×${fmtInt(b.n / a.n)} items)`,
    );
  }
  return `${op} on ${db}, p50: ${parts.join("; ")}`;
}

const { base, cleanup } = benchWorkdir(opt.tmp, "switchback-bench-vault-", opt.keep === true);

try {
  const m = describeMachine(fileSystemOf(base));
  const out: string[] = [];
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB memory, ${m.kernel}, Node ${m.node}`);
  out.push(`Temp folder on ${m.fileSystem}; ${new Date().toISOString()}`);
  const busyStart = busyness();
  process.stdout.write(`${out.join("\n")}\n`);

  const kinds: BenchDbKind[] = dbChoice === "both" ? ["sqlite", "postgres"] : [dbChoice as BenchDbKind];
  const skipped: string[] = [];
  if (kinds.includes("postgres")) {
    const problem = await postgresProblem();
    if (problem !== null) {
      if (dbChoice === "postgres") fail(problem);
      kinds.splice(kinds.indexOf("postgres"), 1);
      skipped.push(`PostgreSQL skipped: ${problem}`);
      progress(skipped[skipped.length - 1]!);
    }
  }
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const n of sizes) for (const kind of kinds) await runSize(n, kind, base, rows, notes);

  const mix = PHASE_MIX;
  const lines: string[] = [];
  lines.push(`Other load: at start ${busyStart}; at end ${busyness()}`);
  lines.push(
    `Items: ${Math.round((1 - mix.initialReplication - mix.failedOver - mix.reversed - mix.drill - mix.rpoBreach) * 100)} % protected, ${mix.initialReplication * 100} % in initial replication (progress samples), ${mix.failedOver * 100} % failed over (failover record, recovered instance), ${mix.reversed * 100} % protected in reverse after a reprotect, ${mix.drill * 100} % with a drill running, ${mix.rpoBreach * 100} % past their RPO; each a machine with 2 disks and ${JOBS_PER_ITEM} finished jobs with steps and log lines. Seed ${seed}.`,
  );
  lines.push(...notes.map((x) => `- ${x}`));
  lines.push(
    "API: fetch from the vault's own process, keep-alive, one request at a time, after a warm-up; show and jobs?item pick random items, jobs/{job} random jobs. CLI: `bin/switchback … --json` as a child process per run (process start and Node's start-up included), after one untimed run. p99 is nearest-rank: with 30 samples it is the slowest. Response = median body (API) or stdout (CLI) size.",
  );
  lines.push(...skipped);
  lines.push("");
  const header = ["size", "database", "operation", "requests", "p50 ms", "p99 ms", "mean ms", "response"];
  lines.push(
    markdown([
      header,
      ...rows.map((r) =>
        r.t === null
          ? [sizeCell(r.n), r.db, r.op, r.missing ?? "n/a", "", "", "", ""]
          : [
              sizeCell(r.n),
              r.db,
              r.op,
              fmtInt(r.t.n),
              ms(r.t.p50),
              ms(r.t.p99),
              ms(r.t.mean),
              fmtBytes(r.t.bytes),
            ],
      ),
    ]),
  );
  lines.push("");
  for (const kind of kinds) {
    for (const op of ["API GET /v1/items", "CLI items list --json"]) {
      const g = growth(rows, op, kind);
      if (g !== null) lines.push(`List time grows: ${g}`);
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);

  if (profileDir !== undefined) {
    process.stdout.write(
      `\nCPU profiles of the vault's process during the item-list requests (${profileDir}):\n`,
    );
    for (const n of sizes) {
      for (const kind of kinds) {
        process.stdout.write(
          `\n${fmtInt(n)} items, ${kind}:\n${report(path.join(profileDir, `list-${kind}-${n}`), 20)}\n`,
        );
      }
    }
  }
} catch (err) {
  cleanup();
  fail((err as Error).stack ?? (err as Error).message);
} finally {
  cleanup();
}

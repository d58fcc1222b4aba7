// npm run bench:replication [-- --size 2G --runs 2 --seed 1 --tools switchback,rsync,rsync-b4096,restic
//                               --tmp DIR --keep --profile DIR]
//
// Switchback beside rsync and restic on one mixed-content disk image (issue 3, "Benchmark"): full
// copy, incremental after 1 % of the 4 KiB blocks were overwritten at random, full and delta restore,
// peak memory and agent state. Every tool runs as a child process against a local target in a temp
// folder. Everything runs warm: the images are in the page cache (as in docs/MEASUREMENTS-style
// figures); dirty pages are flushed (sync) before each timed step. Before each restore the cache is
// dropped (as root) and what the restore reads is read back (bench/lib/scenario.ts, freshForRestore).
import { copyFileSync, existsSync, mkdirSync, rmSync, statfsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { native } from "../src/platform/native.ts";
import { report } from "./lib/cpuprofile.ts";
import { applyChange, makeChange, writeImage } from "./lib/image.ts";
import { busyness, describeMachine, fileSystemOf } from "./lib/machine.ts";
import { primeMemory } from "./lib/prime.ts";
import { resticRunner, resticVersion } from "./lib/restic.ts";
import { rsyncRunner } from "./lib/rsync.ts";
import { GNU_TIME, run, versionOf, which } from "./lib/run.ts";
import { type Step, settle, type ToolRun, type ToolRunner, warm } from "./lib/scenario.ts";
import { fmtBytes, fmtInt, fmtSeconds, parseSize } from "./lib/sizes.ts";
import { SWITCHBACK_CLI, switchbackRunner } from "./lib/switchback.ts";
import { bestOf, markdown, resultTable } from "./lib/table.ts";
import { benchWorkdir } from "./lib/workdir.ts";

const CHANGE_FRACTION = 0.01;
const TOOLS = [
  "switchback",
  "switchback-hashing",
  "switchback-device",
  "switchback-xfs",
  "switchback-remote",
  "rsync",
  "rsync-b4096",
  "restic",
] as const;
type ToolName = (typeof TOOLS)[number];

function fail(message: string): never {
  process.stderr.write(`bench:replication: ${message}\n`);
  process.exit(1);
}

const { values: opt } = parseArgs({
  options: {
    size: { type: "string", default: "2G" },
    runs: { type: "string", default: "2" },
    seed: { type: "string", default: "1" },
    tools: { type: "string", default: TOOLS.join(",") },
    tmp: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
    "no-prime": { type: "boolean", default: false },
    profile: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  process.stdout.write(
    [
      "usage: npm run bench:replication [-- options]",
      "  --size 2G        size of the test image (default 2G; e.g. 512M for a quick run)",
      "  --runs 2         runs per tool; the table shows each step's best run",
      "  --seed 1         seed of the image and of the change",
      `  --tools LIST     comma-separated subset of ${TOOLS.join(",")}`,
      "                   (switchback-hashing: the image with --track none: no write journal, the incremental compares the whole image)",
      "                   (switchback-device: the image through a loop device, the write journal between points; root)",
      "                   (switchback-xfs: the image on XFS, --snapshot reflink, extents between points; root)",
      "                   (switchback-remote: switchback agent --once to a process server on loopback)",
      "  --tmp DIR        where the temp folder goes (default the system's temp folder)",
      "  --keep           keep the temp folder",
      "  --no-prime       do not touch memory before the runs (see bench/lib/prime.ts)",
      "  --profile DIR    write V8 CPU profiles of Switchback's runs to DIR and summarise them",
      "",
    ].join("\n"),
  );
  process.exit(0);
}

const sizeBytes = (() => {
  let n: number;
  try {
    n = parseSize(opt.size);
  } catch (err) {
    fail((err as Error).message);
  }
  if (n < 3 * 1024 * 1024 || n % (1024 * 1024) !== 0)
    fail(`--size ${opt.size} must be a whole number of MiB, at least 3M`);
  return n;
})();
const runs = Number(opt.runs);
if (!Number.isInteger(runs) || runs < 1) fail(`--runs ${opt.runs} must be a whole number ≥ 1`);
const seed = Number(opt.seed);
if (!Number.isInteger(seed)) fail(`--seed ${opt.seed} must be an integer`);
const tools = opt.tools.split(",").map((t) => t.trim()) as ToolName[];
for (const t of tools) if (!TOOLS.includes(t)) fail(`--tools: unknown tool ${t}; use ${TOOLS.join(",")}`);
for (const [tool, needs, why] of [
  ["switchback-device", ["losetup"], "a loop device and tracefs need root"],
  ["switchback-xfs", ["losetup", "mkfs.xfs", "mount"], "an XFS file system on a loop device needs root"],
] as const) {
  if (!tools.includes(tool) || (process.getuid?.() === 0 && needs.every((c) => which(c) !== null))) continue;
  if (opt.tools !== TOOLS.join(",")) fail(`--tools ${tool} needs root and ${needs.join(", ")}`);
  tools.splice(tools.indexOf(tool), 1);
  process.stderr.write(`bench:replication: skipping ${tool} (${why}, and ${needs.join(", ")})\n`);
}

// the peers must be there: this is a comparison, not a Switchback-only figure
const missing = [
  ...(tools.some((t) => t.startsWith("rsync")) && which("rsync") === null ? ["rsync"] : []),
  ...(tools.includes("restic") && which("restic") === null ? ["restic"] : []),
  ...(existsSync(GNU_TIME) ? [] : [`GNU time (${GNU_TIME})`]),
];
if (missing.length > 0) {
  fail(
    `${missing.join(", ")} not found; install them with 'apt-get install -y restic rsync time' (or pick tools with --tools)`,
  );
}

const { base, cleanup } = benchWorkdir(opt.tmp, "switchback-bench-", opt.keep === true);

const progress = (s: string) => process.stderr.write(`${s}\n`);
const busyStart = busyness();

try {
  // v1, v2, the working disk, a store and a restored copy at a time, with room to spare
  const { bavail, bsize } = statfsSync(base);
  const need = sizeBytes * 7;
  if (bavail * bsize < need) {
    throw new Error(
      `${base} has ${fmtBytes(bavail * bsize)} free; a ${opt.size} run needs about ${fmtBytes(need)}`,
    );
  }
  if (!opt["no-prime"]) {
    const p = primeMemory(sizeBytes * 7);
    progress(
      `memory: touched ${fmtBytes(p.bytes)} in ${fmtSeconds(p.seconds)} s (${fmtBytes(p.bytes / p.seconds)}/s) so that no run pays the VM's first-touch faults`,
    );
  }
  const v1 = path.join(base, "v1.img");
  const v2 = path.join(base, "v2.img");
  const disk = path.join(base, "disk.img");
  let t = performance.now();
  const layout = writeImage(v1, sizeBytes, seed);
  const change = makeChange(sizeBytes, seed, CHANGE_FRACTION);
  copyFileSync(v1, v2);
  applyChange(v2, change);
  progress(
    `image: ${fmtBytes(sizeBytes)} (${fmtBytes(layout.zeroBytes)} zeros, ${fmtBytes(layout.textBytes)} text, ${fmtBytes(layout.randomBytes)} random) made in ${fmtSeconds((performance.now() - t) / 1000)} s; change: ${fmtInt(change.blocks.length)} blocks`,
  );

  // the disk's own speed, the yardstick for restores: a plain copy of the image to a new file, fsynced
  let diskSeconds = Number.POSITIVE_INFINITY;
  for (let r = 0; r < runs; r++) {
    const copy = path.join(base, "dd.img");
    warm(v2);
    settle();
    diskSeconds = Math.min(
      diskSeconds,
      run("dd", [`if=${v2}`, `of=${copy}`, "bs=1M", "conv=fsync", "status=none"]).seconds,
    );
    rmSync(copy);
  }
  progress(`disk: dd of the image to a new file with fsync ${fmtSeconds(diskSeconds)} s`);

  const profileDir = opt.profile === undefined ? undefined : path.resolve(opt.profile);
  const runners: Record<ToolName, ToolRunner> = {
    switchback: switchbackRunner(profileDir),
    "switchback-hashing": switchbackRunner(profileDir, "hashing"),
    "switchback-device": switchbackRunner(profileDir, true),
    "switchback-xfs": switchbackRunner(profileDir, "xfs"),
    "switchback-remote": switchbackRunner(profileDir, "remote"),
    rsync: rsyncRunner(),
    "rsync-b4096": rsyncRunner(4096),
    restic: resticRunner,
  };
  const results: { tool: ToolName; runs: ToolRun[] }[] = [];
  for (const tool of tools) {
    const done: ToolRun[] = [];
    for (let r = 1; r <= runs; r++) {
      const work = path.join(base, `${tool}-${r}`);
      mkdirSync(work);
      copyFileSync(v1, disk);
      t = performance.now();
      const result = runners[tool]({
        work,
        disk,
        v1,
        v2,
        sizeBytes,
        change,
        changeDisk: () => applyChange(disk, change),
      });
      done.push(result);
      rmSync(work, { recursive: true, force: true });
      progress(
        `${tool} run ${r}: full ${fmtSeconds(result.full.seconds)} s, incremental ${fmtSeconds(result.incremental.seconds)} s (whole run ${fmtSeconds((performance.now() - t) / 1000)} s)`,
      );
    }
    results.push({ tool, runs: done });
  }

  const m = describeMachine(fileSystemOf(base));
  const busyEnd = busyness();
  const [rmaj, rmin] = tools.includes("restic") ? resticVersion() : [0, 0];
  const out: string[] = [];
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB memory, ${m.kernel}, Node ${m.node}`);
  out.push(`Temp folder on ${m.fileSystem}; ${new Date().toISOString()}`);
  out.push(
    native === null
      ? "Native addon: not loaded (BLAKE3 one call per block; build it with npm run build:native)"
      : `Native addon: loaded (BLAKE3 of many blocks per call, ${native.simdDegree()} lanes)`,
  );
  out.push(`Other load: at start ${busyStart}; at end ${busyEnd}`);
  out.push(
    `Peers: ${[
      tools.some((t) => t.startsWith("rsync")) ? versionOf("rsync", ["--version"]) : "",
      tools.includes("restic") ? `restic ${rmaj}.${rmin}` : "",
    ]
      .filter(Boolean)
      .join("; ")}`,
  );
  out.push(
    `Image: ${fmtBytes(sizeBytes)} (${opt.size}), seed ${seed}: 1 MiB stretches, 1/3 zeros, 1/3 text-like, 1/3 random; change: ${fmtInt(change.blocks.length)} random 4 KiB blocks (${CHANGE_FRACTION * 100} %) overwritten with random data`,
  );
  out.push(
    `Warm page cache (not dropped; sync before each step). Best of ${runs} run(s) per step. Seconds are wall-clock of the child process; (own) is what the tool reports itself.`,
  );
  out.push("");
  out.push(
    markdown(
      resultTable(
        results.map((r) => bestOf(r.runs)),
        sizeBytes,
        change.blocks.length,
        diskSeconds,
      ),
    ),
  );
  out.push("");
  for (const r of results) {
    const b = bestOf(r.runs);
    // every run's wall seconds, with CPU seconds (user + system) in brackets: CPU time is what the
    // other processes on a shared machine cannot inflate much
    const all = (f: (x: ToolRun) => Step | null) => {
      const xs = r.runs.map(f);
      if (xs.some((x) => x === null)) return "n/a";
      return `${xs.map((x) => `${fmtSeconds(x!.seconds)} [${fmtSeconds(x!.cpuSeconds ?? Number.NaN)}]`).join(", ")} s`;
    };
    out.push(
      `- ${b.tool}: full ${all((x) => x.full)}; incremental ${all((x) => x.incremental)}; full restore ${all((x) => x.fullRestore)}; delta restore ${all((x) => x.deltaRestore)}`,
    );
    for (const n of b.notes) out.push(`  - ${n}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);

  if (profileDir !== undefined) {
    process.stdout.write(
      `\nCPU profiles of ${path.relative(process.cwd(), SWITCHBACK_CLI)} (${profileDir}):\n`,
    );
    for (const step of ["full-copy", "incremental", "full-restore", "delta-restore"]) {
      process.stdout.write(`\n${step}:\n${report(path.join(profileDir, step))}\n`);
    }
  }
} catch (err) {
  cleanup();
  fail((err as Error).message);
} finally {
  cleanup();
}

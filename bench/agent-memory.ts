// npm run bench:memory [-- --size 64G --data 20000 --change 5000 --seed 1 --tools switchback,rsync-b4096
//                          --tmp DIR --keep]
//
// What an agent costs in memory as disks grow: a sparse image of --size (64 GiB by default) that holds
// --data random 4 KiB blocks at seeded positions, copied whole, then --change of its blocks overwritten
// at random and copied again. Switchback (`replicate-once` on the image file) beside rsync -B4096
// (--inplace --no-whole-file --sparse, to a local copy: the peer that finds 4 KiB changes, and whose
// block checksums also grow with the file). Peak RSS and seconds of each step, and what each keeps
// between runs. The image file (not a loop device): every point reads it whole, the case with most
// hashes to hold. Sparse, so that a large disk fits on a small machine: the data blocks are what is
// stored, and reading holes is fast.
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { rng32 } from "./lib/image.ts";
import { busyness, describeMachine, fileSystemOf } from "./lib/machine.ts";
import { GNU_TIME, type RunResult, run, versionOf, which } from "./lib/run.ts";
import { settle } from "./lib/scenario.ts";
import { fmtBytes, fmtInt, fmtMiB, fmtSeconds, parseSize, treeBytes } from "./lib/sizes.ts";
import { SWITCHBACK_CLI } from "./lib/switchback.ts";
import { markdown } from "./lib/table.ts";
import { benchWorkdir } from "./lib/workdir.ts";

const BLOCK = 4096;
const TOOLS = ["switchback", "rsync-b4096"] as const;

function fail(message: string): never {
  process.stderr.write(`bench:memory: ${message}\n`);
  process.exit(1);
}

const { values: opt } = parseArgs({
  options: {
    size: { type: "string", default: "64G" },
    data: { type: "string", default: "20000" },
    change: { type: "string", default: "5000" },
    seed: { type: "string", default: "1" },
    tools: { type: "string", default: TOOLS.join(",") },
    tmp: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  process.stdout.write(
    [
      "usage: npm run bench:memory [-- options]",
      "  --size 64G       size of the sparse test image",
      "  --data 20000     4 KiB blocks of random data in it, at seeded positions",
      "  --change 5000    blocks overwritten (random positions, random data) before the incremental",
      "  --seed 1         seed of the positions and the data",
      `  --tools LIST     comma-separated subset of ${TOOLS.join(",")}`,
      "  --tmp DIR        where the temp folder goes (default the system's temp folder)",
      "  --keep           keep the temp folder",
      "",
    ].join("\n"),
  );
  process.exit(0);
}

const sizeBytes = parseSize(opt.size!);
const dataBlocks = Number(opt.data);
const changeBlocks = Number(opt.change);
const seed = Number(opt.seed);
const tools = opt.tools!.split(",").map((t) => t.trim());
for (const t of tools) if (!(TOOLS as readonly string[]).includes(t)) fail(`unknown tool ${t}`);
if (sizeBytes % BLOCK !== 0) fail(`--size must be a whole number of 4 KiB blocks`);
if (!Number.isInteger(dataBlocks) || dataBlocks < 0) fail(`--data must be a block count`);
if (!Number.isInteger(changeBlocks) || changeBlocks < 1) fail(`--change must be a block count of at least 1`);
if (which("time") === null && which(GNU_TIME) === null) fail("GNU time is needed (apt-get install time)");
if (tools.includes("rsync-b4096") && which("rsync") === null) fail("rsync is needed (apt-get install rsync)");

/** Writes `count` blocks of random bytes at random block positions of `file` (seeded). */
function scatter(file: string, count: number, s: number): void {
  const next = rng32(s);
  const fd = openSync(file, "r+");
  const buf = Buffer.allocUnsafe(BLOCK);
  try {
    for (let i = 0; i < count; i++) {
      for (let k = 0; k < BLOCK; k += 4) buf.writeUInt32LE(next() >>> 0, k);
      const b = Math.floor(((next() >>> 0) / 2 ** 32) * (sizeBytes / BLOCK));
      writeSync(fd, buf, 0, BLOCK, b * BLOCK);
    }
  } finally {
    closeSync(fd);
  }
}

interface Row {
  tool: string;
  full: RunResult;
  incr: RunResult;
  keptBytes: number;
  note: string;
}

function switchback(work: string, disk: string): Row {
  const ds = path.join(work, "ds");
  const state = path.join(work, "state");
  run(SWITCHBACK_CLI, ["datastore", "init", "--path", ds, "--json"]);
  const point = () => {
    settle();
    const r = run(SWITCHBACK_CLI, [
      "replicate-once",
      ...["--datastore", ds, "--item", "bench", "--disk", disk, "--state", state],
      ...["--snapshot", "none", "--json"],
    ]);
    return { r, j: JSON.parse(r.stdout) as { mode: string; changedBlocks: number } };
  };
  const full = point();
  scatter(disk, changeBlocks, seed + 1);
  const incr = point();
  return {
    tool: "Switchback",
    full: full.r,
    incr: incr.r,
    keptBytes: treeBytes(state),
    note: `${full.j.mode} then ${incr.j.mode}: ${fmtInt(incr.j.changedBlocks)} changed blocks found`,
  };
}

function rsyncB4096(work: string, disk: string): Row {
  const target = path.join(work, "copy.img");
  const sync = () => {
    settle();
    return run("rsync", [
      "--inplace",
      "--no-whole-file",
      "--sparse",
      "--ignore-times",
      "-B4096",
      disk,
      target,
    ]);
  };
  const full = sync();
  scatter(disk, changeBlocks, seed + 1);
  const incr = sync();
  return { tool: "rsync -B4096", full, incr, keptBytes: 0, note: "keeps no state; its copy is the state" };
}

const { base, cleanup } = benchWorkdir(opt.tmp!, "switchback-bench-memory-", opt.keep!);
try {
  const machine = describeMachine(fileSystemOf(base));
  const rows: Row[] = [];
  for (const tool of tools) {
    // each tool starts from the same image
    const work = path.join(base, tool);
    const disk = path.join(base, `${tool}-disk.img`);
    const fd = openSync(disk, "w");
    ftruncateSync(fd, sizeBytes);
    closeSync(fd);
    scatter(disk, dataBlocks, seed);
    run("mkdir", ["-p", work]);
    process.stderr.write(`bench:memory: ${tool}...\n`);
    rows.push(tool === "switchback" ? switchback(work, disk) : rsyncB4096(work, disk));
  }
  const gib = sizeBytes / 1024 ** 3;
  const table = [
    [
      "tool",
      "full copy s",
      "full copy peak RSS",
      "incremental s",
      "incremental peak RSS",
      "kept between runs",
    ],
    ...rows.map((r) => [
      r.tool,
      fmtSeconds(r.full.seconds),
      fmtMiB(r.full.maxRssKiB),
      fmtSeconds(r.incr.seconds),
      fmtMiB(r.incr.maxRssKiB),
      r.keptBytes > 0 ? `${fmtBytes(r.keptBytes)} (${fmtBytes(r.keptBytes / gib)} per GiB)` : "n/a",
    ]),
  ];
  process.stdout.write(
    [
      `Sparse image of ${opt.size} (${fmtBytes(sizeBytes)}, ${fmtInt(sizeBytes / BLOCK)} blocks), ${fmtInt(dataBlocks)} of them random data; ${fmtInt(changeBlocks)} overwritten before the incremental.`,
      `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}, Node ${machine.node}, ${machine.fileSystem}; ${busyness()}.`,
      tools.includes("rsync-b4096") ? `rsync: ${versionOf("rsync", ["--version"])}.` : "",
      "",
      markdown(table),
      "",
      ...rows.map((r) => `- ${r.tool}: ${r.note}`),
      "",
    ].join("\n"),
  );
} finally {
  cleanup();
}

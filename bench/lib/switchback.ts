// Switchback in the benchmark: the CLI as a child process, as an operator runs it, with its --json
// figures (bytesSent, durationMs, changedBlocks). Store = the datastore folder; metadata = its points/
// and index/ folders; agent state = the --state folder.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { removeJournal } from "../../src/replication/journal.ts";
import { BENCH_BLOCK, type Change, sameContent } from "./image.ts";
import { type RunResult, run } from "./run.ts";
import { freshForRestore, type Scenario, settle, step, type ToolRun, warm } from "./scenario.ts";
import { treeBytes } from "./sizes.ts";

export const SWITCHBACK_CLI = path.resolve(import.meta.dirname, "../../bin/switchback");

interface ReplicateJson {
  mode: string;
  bytesRead: number;
  bytesSent: number;
  changedBlocks: number;
  durationMs: number;
}

interface RestoreJson {
  durationMs: number;
  verifyMs: number;
  blocksWritten: number;
}

/**
 * `profileDir`: write V8 CPU profiles of every CLI run there, one folder per step.
 * `device`: replicate the image through a loop device, as a protected machine's disk is a block
 * device, with the change written through that device (root only): the write journal then tracks it
 * between the points.
 */
export function switchbackRunner(
  profileDir?: string,
  device: boolean | "xfs" | "remote" | "hashing" = false,
) {
  return (s: Scenario): ToolRun => {
    if (device === "xfs") return onXfs(s, profileDir);
    if (device === "remote") return throughProcessServer(s, profileDir);
    if (device === "hashing") {
      const r = runSwitchback(
        s,
        s.disk,
        s.changeDisk,
        "Switchback, no journal",
        profileDir,
        "none",
        undefined,
        ["--track", "none"],
      );
      r.notes.push(
        "`--track none`: no write journal, so the incremental reads the whole image and compares it with the agent state's hashes (as a point does where no journal can vouch)",
      );
      return r;
    }
    if (!device) {
      try {
        const r = runSwitchback(s, s.disk, s.changeDisk, "Switchback", profileDir);
        if (process.getuid?.() === 0)
          r.notes.push(
            "as root, the image file's write journal (tracefs on the device of the file system that holds it) hands the incremental the written blocks",
          );
        return r;
      } finally {
        removeJournal(path.join(s.work, "agent-state", "bench"));
      }
    }
    const dev = run("losetup", ["-f", "--show", s.disk]).stdout.trim();
    try {
      const r = runSwitchback(
        s,
        dev,
        () => writeChange(dev, s.change),
        "Switchback, block device",
        profileDir,
      );
      r.notes.push(
        `the image through loop device ${dev}, the change written through it; the write journal (tracefs) sees it between the points`,
      );
      return r;
    } finally {
      removeJournal(path.join(s.work, "agent-state", "bench")); // the item's agent state, as replicate-once names it
      run("losetup", ["-d", dev]);
    }
  };
}

/**
 * The image on an XFS file system (in a file of the run's folder, through a loop device), replicated
 * with `--snapshot reflink`: a point keeps its clone, and the next one reads only the blocks whose
 * extents moved since (docs/consistency.md). The change is written into the image and fsynced.
 */
function onXfs(s: Scenario, profileDir: string | undefined): ToolRun {
  const fsFile = path.join(s.work, "xfs.fs");
  const mnt = path.join(s.work, "xfs");
  closeSync(openSync(fsFile, "w"));
  run("truncate", ["-s", String(Math.ceil((s.sizeBytes * 1.5) / 2 ** 20) * 2 ** 20 + 2 ** 29), fsFile]);
  run("mkfs.xfs", ["-q", "-f", "-m", "reflink=1", fsFile]);
  const dev = run("losetup", ["-f", "--show", fsFile]).stdout.trim();
  mkdirSync(mnt);
  try {
    run("mount", [dev, mnt]);
    try {
      const disk = path.join(mnt, "disk.img");
      copyFileSync(s.disk, disk);
      const r = runSwitchback(
        s,
        disk,
        () => writeChange(disk, s.change),
        "Switchback, image on XFS",
        profileDir,
        "reflink",
      );
      r.notes.push(
        "the image in an XFS file system (reflink), `--snapshot reflink`: the incremental reads only the blocks whose extents moved since the full copy's clone",
      );
      return r;
    } finally {
      run("umount", [mnt]);
    }
  } finally {
    run("losetup", ["-d", dev]);
  }
}

/**
 * The image replicated by `switchback agent --once` to a `switchback process-server` on loopback, both
 * real processes on this machine's two cores, as a protected machine ships its points; restores read
 * the process server's datastore.
 */
function throughProcessServer(s: Scenario, profileDir: string | undefined): ToolRun {
  const ds = path.join(s.work, "datastore");
  const token = "bench-agent-token-0123456789";
  writeFileSync(path.join(s.work, "token"), token);
  writeFileSync(
    path.join(s.work, "tokens.json"),
    JSON.stringify({ version: 1, agents: [{ name: "bench", token, items: ["bench"] }] }),
  );
  run(SWITCHBACK_CLI, ["datastore", "init", "--path", ds, "--json"]);
  // port 0: the server takes a free one and prints its URL on stdout, read here from a file (this
  // runner is synchronous)
  const out = path.join(s.work, "process-server.out");
  const outFd = openSync(out, "w");
  const server: ChildProcess = spawn(
    SWITCHBACK_CLI,
    [
      "process-server",
      "--datastore",
      ds,
      "--listen",
      "127.0.0.1:0",
      "--tokens",
      path.join(s.work, "tokens.json"),
    ],
    { stdio: ["ignore", outFd, "inherit"] },
  );
  closeSync(outFd);
  try {
    // the full copy's time starts once the server listens
    let url: string | undefined;
    for (let i = 0; url === undefined; i++) {
      url = /process-server listening on (\S+)/.exec(readFileSync(out, "utf8"))?.[1];
      if (url !== undefined) break;
      if (i === 300)
        throw new Error(`the process server did not listen within 30 s:\n${readFileSync(out, "utf8")}`);
      spawnSync("sleep", ["0.1"]);
    }
    const r = runSwitchback(
      s,
      s.disk,
      s.changeDisk,
      "Switchback, agent → process server",
      profileDir,
      "none",
      {
        ds,
        replicate: (args, env) => {
          const a = run(
            SWITCHBACK_CLI,
            ["agent", ...["--server", url, "--token-file", path.join(s.work, "token")], ...args, "--once"],
            { env },
          );
          const line = a.stdout.split("\n").find((l) => l.includes('"point committed"'));
          if (line === undefined) throw new Error(`the agent committed no point:\n${a.stdout}\n${a.stderr}`);
          return { r: a, json: line };
        },
      },
    );
    r.notes.push(
      "`switchback agent --once` to a `switchback process-server` on 127.0.0.1 (both on this machine's two cores; the server's CPU and memory are not in the agent's figures)",
    );
    return r;
  } finally {
    server.kill("SIGKILL");
    removeJournal(path.join(s.work, "agent-state", "bench"));
  }
}

/** The benchmark's change, written through a block device and flushed. */
function writeChange(dev: string, change: Change): void {
  const fd = openSync(dev, "r+");
  try {
    change.blocks.forEach((b, i) => {
      writeSync(fd, change.data, i * BENCH_BLOCK, BENCH_BLOCK, b * BENCH_BLOCK);
    });
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function runSwitchback(
  s: Scenario,
  disk: string,
  changeDisk: () => void,
  tool: string,
  profileDir: string | undefined,
  snapshot = "none",
  remote?: {
    ds: string;
    /** runs one point with the agent's arguments: its run and its "point committed" JSON line */
    replicate: (args: string[], env: NodeJS.ProcessEnv) => { r: RunResult; json: string };
  },
  extraArgs: string[] = [],
): ToolRun {
  {
    const ds = remote?.ds ?? path.join(s.work, "datastore");
    const state = path.join(s.work, "agent-state");
    const notes: string[] = [];
    const env = (name: string): NodeJS.ProcessEnv => {
      if (profileDir === undefined) return process.env;
      const dir = path.join(profileDir, name);
      mkdirSync(dir, { recursive: true });
      return { ...process.env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` };
    };
    const sb = (name: string, args: string[]) => run(SWITCHBACK_CLI, args, { env: env(name) });
    const replicate = (name: string) => {
      warm(snapshot === "reflink" ? disk : s.disk);
      settle();
      const point = [
        "--item",
        "bench",
        "--disk",
        disk,
        "--state",
        state,
        "--snapshot",
        snapshot,
        ...extraArgs,
      ];
      if (remote !== undefined) {
        const { r, json } = remote.replicate(point, env(name));
        return { r, j: JSON.parse(json) as ReplicateJson };
      }
      const r = sb(name, ["replicate-once", "--datastore", ds, ...point, "--json"]);
      return { r, j: JSON.parse(r.stdout) as ReplicateJson };
    };
    const metadata = () => treeBytes(path.join(ds, "points")) + treeBytes(path.join(ds, "index"));

    if (remote === undefined) run(SWITCHBACK_CLI, ["datastore", "init", "--path", ds, "--json"]);
    const full = replicate("full-copy");
    if (full.j.mode !== "full") notes.push(`the first point was ${full.j.mode}, not full`);
    const storeFull = treeBytes(ds);
    const metaFull = metadata();

    changeDisk();
    const incr = replicate("incremental");
    if (incr.j.mode !== "incremental") notes.push(`the second point was ${incr.j.mode}, not incremental`);
    if (incr.j.changedBlocks !== s.change.blocks.length) {
      notes.push(
        `the incremental found ${incr.j.changedBlocks} changed blocks; ${s.change.blocks.length} were changed`,
      );
    }
    const storeGrowth = treeBytes(ds) - storeFull;
    const metaGrowth = metadata() - metaFull;

    const restore = (name: string, to: string, delta: boolean) => {
      if (delta) settle();
      else freshForRestore([ds], [SWITCHBACK_CLI, "restore", "--help"]);
      const r = sb(name, [
        "restore",
        ...["--datastore", ds, "--item", "bench", "--point", "latest", "--disk", "0", "--to", to],
        ...(delta ? ["--delta"] : []),
        "--json",
      ]);
      const j = JSON.parse(r.stdout) as RestoreJson;
      return {
        ...step(r),
        toolSeconds: j.durationMs / 1000,
        correct: sameContent(to, s.v2),
        verifySeconds: j.verifyMs / 1000,
      };
    };
    const out = path.join(s.work, "restored.img");
    const fullRestore = restore("full-restore", out, false);
    copyFileSync(s.v1, out);
    warm(out);
    const deltaRestore = restore("delta-restore", out, true);
    notes.push(
      `restores include Switchback's read-back verification (${fullRestore.verifySeconds.toFixed(2)} s full, ${deltaRestore.verifySeconds.toFixed(2)} s delta) and an fsync of the target`,
    );

    return {
      tool,
      full: {
        ...step(full.r),
        toolSeconds: full.j.durationMs / 1000,
        sentBytes: full.j.bytesSent,
        storeBytes: storeFull,
      },
      incremental: {
        ...step(incr.r),
        toolSeconds: incr.j.durationMs / 1000,
        sentBytes: incr.j.bytesSent,
        storeGrowthBytes: storeGrowth,
        metadataBytes: metaGrowth,
        changedBlocks: incr.j.changedBlocks,
      },
      fullRestore,
      deltaRestore,
      stateBytes: treeBytes(state),
      notes,
    };
  }
}

// One tool's pass through the benchmark's scenario: full copy of the disk, the 1 % change, an
// incremental copy, a full restore and a delta restore onto the previous version of the disk. Each
// tool (bench/lib/{switchback,rsync,restic}.ts) fills in a ToolRun; the table is made from those.
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readdirSync, readSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Change } from "./image.ts";

export interface Scenario {
  /** this run's own folder (empty, removed afterwards) */
  work: string;
  /** the source disk: holds the first version when the run starts */
  disk: string;
  /** the first and the changed version of the disk, for delta restores and for checking restores */
  v1: string;
  v2: string;
  sizeBytes: number;
  change: Change;
  /** overwrites the changed blocks of `disk` in place */
  changeDisk(): void;
}

export interface Step {
  seconds: number;
  /** what the tool itself says it took (Switchback's durationMs), when it says */
  toolSeconds?: number;
  maxRssKiB?: number;
  cpuSeconds?: number;
}

export interface ToolRun {
  tool: string;
  full: Step & { sentBytes: number; storeBytes: number };
  incremental: Step & {
    sentBytes: number;
    storeGrowthBytes: number;
    /** NaN: the tool keeps none, or it cannot be told apart from data */
    metadataBytes: number;
    changedBlocks?: number;
  };
  /** null: the tool cannot do it */
  fullRestore: (Step & { correct: boolean }) | null;
  deltaRestore: (Step & { correct: boolean; sentBytes?: number }) | null;
  /** bytes the agent side keeps between runs (NaN: not applicable) */
  stateBytes: number;
  notes: string[];
}

export type ToolRunner = (s: Scenario) => ToolRun;

/** The figures of a child process run that every step reports. */
export function step(r: { seconds: number; maxRssKiB: number; cpuSeconds: number }): Step {
  return { seconds: r.seconds, maxRssKiB: r.maxRssKiB, cpuSeconds: r.cpuSeconds };
}

/** Flushes dirty pages (of the image copies) so that their writeback does not land inside a timed step. */
export function settle(): void {
  spawnSync("sync");
}

/**
 * Before a timed full restore (a whole disk written to a new file), for every tool alike: dirty
 * pages flushed and, as root, the page cache dropped, then `sources` (the files and folders the
 * restore reads) read back into it. The restore then writes into free memory, as `dd` did when the
 * disk's speed was measured at the start, instead of first reclaiming the cache the earlier steps
 * filled: on this VM that reclaim, and the host backing memory the guest had not touched yet, made a
 * first 2 GiB restore take up to twice as long as the next one. Delta restores write little and are
 * measured without it: dropping the cache only left code they load cold (~0.1 s more, measured). `tool` is run once afterwards (a command that does
 * nothing, e.g. its help) to read its own code back. False when the cache could not be dropped (not
 * root).
 */
export function freshForRestore(sources: string[], tool: [cmd: string, ...args: string[]]): boolean {
  settle();
  let dropped = false;
  if (process.getuid?.() === 0) {
    try {
      writeFileSync("/proc/sys/vm/drop_caches", "1");
      dropped = true;
    } catch {
      // a container without a writable /proc/sys: the restore finds the cache as the steps left it
    }
  }
  for (const s of sources) warmTree(s);
  // the tool's own code too (for Switchback: Node.js, the modules, the compile cache), as when it has
  // run before: a restore's start is not a cold start from disk
  spawnSync(tool[0], tool.slice(1), { stdio: "ignore" });
  return dropped;
}

function warmTree(p: string): void {
  if (!statSync(p).isDirectory()) {
    warm(p);
    return;
  }
  for (const e of readdirSync(p)) warmTree(path.join(p, e));
}

/** Reads a file once so that the timed step finds it in the page cache. */
export function warm(file: string): void {
  const fd = openSync(file, "r");
  const buf = Buffer.allocUnsafe(1024 * 1024);
  try {
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}

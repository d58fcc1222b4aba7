// One tool's pass through the benchmark's scenario: full copy of the disk, the 1 % change, an
// incremental copy, a full restore and a delta restore onto the previous version of the disk. Each
// tool (bench/lib/{switchback,rsync,restic}.ts) fills in a ToolRun; the table is made from those.
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readSync } from "node:fs";
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

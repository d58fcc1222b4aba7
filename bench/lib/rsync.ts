// rsync in the benchmark: `--inplace --no-whole-file` to a local file, with `--ignore-times` so that
// its quick check (size + mtime to the second) does not skip a disk rewritten within the same second.
// "Bytes sent" is its --stats "Total bytes sent" (sender to receiver, through a pipe here). It keeps
// no history and no state: the target is one copy, updated in place. Its "delta restore" is rsync the
// other way, onto the previous version of the disk.
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { sameContent } from "./image.ts";
import { run } from "./run.ts";
import { freshForRestore, type Scenario, settle, step, type ToolRun, warm } from "./scenario.ts";
import { fmtBytes, treeBytes } from "./sizes.ts";

/** `blockSize`: rsync's -B (undefined: its default, about the square root of the file size). */
export function rsyncRunner(blockSize?: number) {
  return (s: Scenario): ToolRun => {
    const flags = [
      "--inplace",
      "--no-whole-file",
      "--ignore-times",
      "--stats",
      ...(blockSize ? [`-B${blockSize}`] : []),
    ];
    const targetDir = path.join(s.work, "target");
    const restoreDir = path.join(s.work, "restore");
    mkdirSync(targetDir);
    mkdirSync(restoreDir);
    const target = path.join(targetDir, "disk.img");
    /** `fullRestore`: a restore to a new file (see freshForRestore) */
    const rsync = (from: string, to: string, fullRestore = false) => {
      if (fullRestore) freshForRestore([from], ["rsync", "--version"]);
      else {
        warm(from);
        settle();
      }
      const r = run("rsync", [...flags, from, to]);
      return { ...r, sentBytes: totalBytesSent(r.stdout) };
    };

    const full = rsync(s.disk, target);
    const storeFull = treeBytes(targetDir);
    s.changeDisk();
    const incr = rsync(s.disk, target);
    const storeGrowth = treeBytes(targetDir) - storeFull;

    const out = path.join(restoreDir, "disk.img");
    const fr = rsync(target, out, true);
    const fullRestore = { ...step(fr), correct: sameContent(out, s.v2) };
    copyFileSync(s.v1, out);
    warm(out);
    const dr = rsync(target, out);
    const deltaRestore = {
      ...step(dr),
      correct: sameContent(out, s.v2),
      sentBytes: dr.sentBytes,
    };

    return {
      tool: `rsync ${blockSize ? `-B${blockSize}` : "(default block)"}`,
      full: {
        ...step(full),
        sentBytes: full.sentBytes,
        storeBytes: storeFull,
      },
      incremental: {
        ...step(incr),
        sentBytes: incr.sentBytes,
        storeGrowthBytes: storeGrowth,
        metadataBytes: Number.NaN,
      },
      fullRestore,
      deltaRestore,
      stateBytes: 0,
      notes: [
        `delta restore sent ${fmtBytes(dr.sentBytes)}; rsync updates its one copy in place (no history, so the store does not grow) and does not fsync`,
      ],
    };
  };
}

function totalBytesSent(stats: string): number {
  const m = /^Total bytes sent:\s*([\d,.]+)/m.exec(stats);
  if (m === null) throw new Error(`rsync --stats printed no "Total bytes sent":\n${stats}`);
  return Number(m[1]!.replace(/[,.]/g, ""));
}

// Small facts about processes on this host.
import { readFileSync, rmSync, writeFileSync } from "node:fs";

/** True when a process with this pid exists (EPERM: it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes a lock file holding our pid (created exclusively); a lock whose holder is dead is taken over.
 * False when a live process holds it. Release it with rmSync.
 */
export function tryPidLock(file: string): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(file, "utf8"));
    } catch {
      // gone meanwhile: try again
    }
    if (Number.isInteger(holder) && holder > 0 && pidAlive(holder)) return false;
    rmSync(file, { force: true });
  }
  return false;
}

export interface ProcStat {
  /** R, S, D, Z (zombie), T… */
  state: string;
  ppid: number;
  pgrp: number;
  /** clock ticks after boot: with the pid, names one process for good (pids are reused) */
  startTime: number;
}

/** A process's /proc/<pid>/stat, or null when there is no such process. */
export function procStat(pid: number): ProcStat | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // fields after the command name (which may hold spaces and parentheses) start after the last ')'
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { state: f[0] ?? "?", ppid: Number(f[1]), pgrp: Number(f[2]), startTime: Number(f[19]) };
}

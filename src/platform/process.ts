// Small facts about processes on this host.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { native } from "./native.ts";

/** True when a process with this pid exists (EPERM: it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A lock this process holds; release() gives it up. */
export interface HeldLock {
  release(): void;
}

/**
 * Takes the lock named by `file` without waiting, or returns null when another live process holds it.
 * With the native addon it is a flock(2) on the file, which the kernel drops when the holder closes it
 * or dies (the file stays; it holds the last holder's pid, for people). Without it, the file itself
 * is the lock (see tryPidLock). Every process that shares the lock must run the same way: do not set
 * SWITCHBACK_NATIVE=0 for only some of the processes of one agent state.
 */
export function takeLock(file: string): HeldLock | null {
  if (native === null) {
    if (!tryPidLock(file)) return null;
    return { release: () => releasePidLock(file) };
  }
  const fd = openSync(file, constants.O_RDWR | constants.O_CREAT, 0o644);
  let held = false;
  try {
    held = native.flock(fd, true);
    if (!held) return null;
    // the pid, for people, padded over whatever an earlier holder wrote: no truncation, which ext4
    // answers by flushing the file at close (its "replace by truncate" rule), ~5 ms a lock
    writeSync(fd, `${String(process.pid).padEnd(11)}\n`, 0);
  } finally {
    if (!held) closeSync(fd);
  }
  let open = true;
  return {
    release: () => {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

/**
 * A lock file holding our pid, created whole (written aside, then linked into place, so that nobody
 * reads it empty); a lock whose holder is dead is taken over by renaming it away first, so that two
 * takers cannot both remove it and both believe they hold a new one. False when a live process holds
 * it. Release it with releasePidLock.
 */
export function tryPidLock(file: string): boolean {
  const mine = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
  writeFileSync(mine, String(process.pid));
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(mine, file);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const holder = pidIn(file);
      if (holder === null) continue; // gone meanwhile: try again
      if (holder > 0 && pidAlive(holder)) return false; // 0: not a pid (a damaged file): taken over
      // a dead holder's lock: move it aside, and remove it only if it is still the one we judged dead
      const aside = `${mine}.dead`;
      try {
        renameSync(file, aside);
      } catch {
        continue; // someone else moved it first
      }
      if (pidIn(aside) === holder) rmSync(aside, { force: true });
      else {
        // we moved a lock just taken by a live process: put it back (unless a third took the name)
        try {
          linkSync(aside, file);
        } catch {
          // a third process holds the name now; the one we moved keeps believing it holds the lock
        }
        rmSync(aside, { force: true });
        return false;
      }
    }
    return false;
  } finally {
    rmSync(mine, { force: true });
  }
}

/** Removes a lock taken by tryPidLock, if it is still ours. */
export function releasePidLock(file: string): void {
  if (pidIn(file) === process.pid) rmSync(file, { force: true });
}

function pidIn(file: string): number | null {
  try {
    const n = Number(readFileSync(file, "utf8"));
    return Number.isInteger(n) && n > 0 ? n : 0;
  } catch {
    return null;
  }
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

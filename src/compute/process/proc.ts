// What /proc says about the processes of a `process` instance. A pid alone is not an identity: after
// the instance exits the kernel may hand the number to another process, so a run is recorded as its
// pid and the process's start time (/proc/<pid>/stat field 22, clock ticks since boot), and it only
// counts as ours while both match. A zombie (exited, not yet reaped) counts as gone.
import { readdirSync, readFileSync } from "node:fs";

export interface ProcStat {
  pid: number;
  state: string;
  pgrp: number;
  session: number;
  /** clock ticks since boot, as a decimal string (it can exceed 2^53 in principle) */
  startTime: string;
}

/** /proc/<pid>/stat, or null when the process does not exist. */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
  // the command name (field 2) is in parentheses and may itself hold spaces and parentheses
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const pgrp = Number(rest[2]);
  const session = Number(rest[3]);
  const startTime = rest[19];
  if (state === undefined || startTime === undefined || !Number.isInteger(pgrp)) return null;
  return { pid, state, pgrp, session, startTime };
}

/** True when `pid` is alive (not a zombie) and, when given, started at `startTime`. */
export function processAlive(pid: number, startTime?: string | null): boolean {
  const s = procStat(pid);
  if (s === null || s.state === "Z" || s.state === "X") return false;
  return startTime == null || s.startTime === startTime;
}

/**
 * The live processes of the process group `pgid` whose leader started at `leaderStart` (the leader
 * included while it lives). Members may outlive the leader, and the kernel keeps the number from
 * being reused while any of them lives; once a live process holds the number with another start
 * time, the group it leads is not ours. Members started before our leader cannot be ours either.
 */
export function groupMembers(pgid: number, leaderStart: string): number[] {
  const leader = procStat(pgid);
  if (leader !== null && leader.startTime !== leaderStart) return [];
  const out: number[] = [];
  const since = BigInt(leaderStart);
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const n of names) {
    const c = n.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const s = procStat(Number(n));
    if (s === null || s.pgrp !== pgid || s.session !== pgid) continue;
    if (s.state === "Z" || s.state === "X") continue;
    if (BigInt(s.startTime) < since) continue;
    out.push(s.pid);
  }
  return out;
}

/** Sends `signal` to a process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

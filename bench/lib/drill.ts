// What `npm run bench:drill` measures from outside the product: when a machine's service answers (curl
// from the host or from inside a network namespace), the bytes that crossed a lab link (the kernel's
// interface counters), the 4 KiB blocks two disk images differ in, and what rsync says it moved.
import { execFile, spawnSync } from "node:child_process";
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { BENCH_BLOCK } from "./image.ts";

/** One GET with curl (inside `netns` when given): the body, or null when nothing answered in time. */
export function curlGet(netns: string | null, url: string, timeoutS: number): Promise<string | null> {
  const argv = ["curl", "-s", "-f", "-m", String(timeoutS), url];
  const [cmd, ...args] = netns === null ? argv : ["nsenter", `--net=/run/netns/${netns}`, "--", ...argv];
  return new Promise((resolve) => {
    execFile(cmd!, args, { encoding: "utf8" }, (err, stdout) => resolve(err ? null : stdout));
  });
}

export interface LinkBytes {
  tx: number;
  rx: number;
}

/** The byte counters of interface `dev` in network namespace `netns` (`ip -s -j link`). */
export function linkBytes(netns: string, dev: string): LinkBytes {
  const r = spawnSync("ip", ["-n", netns, "-s", "-j", "link", "show", dev], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip -n ${netns} -s link show ${dev}: ${r.stderr.trim()}`);
  const [link] = JSON.parse(r.stdout) as { stats64: { rx: { bytes: number }; tx: { bytes: number } } }[];
  if (link === undefined) throw new Error(`no interface ${dev} in ${netns}`);
  return { tx: link.stats64.tx.bytes, rx: link.stats64.rx.bytes };
}

/** How many BENCH_BLOCK-sized blocks of two equally long files differ. */
export function differingBlocks(a: string, b: string): number {
  const fa = openSync(a, "r");
  const fb = openSync(b, "r");
  try {
    const size = fstatSync(fa).size;
    if (fstatSync(fb).size !== size) throw new Error(`${a} and ${b} differ in size`);
    const chunk = 4 * 1024 * 1024;
    const ba = Buffer.allocUnsafe(chunk);
    const bb = Buffer.allocUnsafe(chunk);
    let differ = 0;
    for (let pos = 0; pos < size; pos += chunk) {
      const n = readSync(fa, ba, 0, chunk, pos);
      if (readSync(fb, bb, 0, chunk, pos) !== n) throw new Error(`short read at ${pos} of ${a} or ${b}`);
      if (ba.subarray(0, n).equals(bb.subarray(0, n))) continue;
      for (let at = 0; at < n; at += BENCH_BLOCK) {
        const end = Math.min(n, at + BENCH_BLOCK);
        if (ba.compare(bb, at, end, at, end) !== 0) differ++;
      }
    }
    return differ;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** rsync --stats: "Total bytes sent" (sender to receiver) and "Total bytes received" (the block checksums). */
export function rsyncTotals(stats: string): { sent: number; received: number } {
  const num = (label: string) => {
    const m = new RegExp(`^${label}:\\s*([\\d,.]+)`, "m").exec(stats);
    if (m === null) throw new Error(`rsync --stats printed no "${label}":\n${stats}`);
    return Number(m[1]!.replace(/[,.]/g, ""));
  };
  return { sent: num("Total bytes sent"), received: num("Total bytes received") };
}

export interface JobStep {
  name: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/**
 * "accepted 0.01, queued 0.00, prepare 2.10, select-point 0.02, …": seconds from the request to its
 * answer (the vault decides before it makes the job), from the answer to the first step, then per step.
 */
export function stepSeconds(requestedAtMs: number, acceptedAtMs: number, steps: JobStep[]): string {
  const s = (ms: number) => (ms / 1000).toFixed(2);
  const parts = [`accepted ${s(acceptedAtMs - requestedAtMs)}`];
  const first = steps[0]?.startedAt;
  if (first !== null && first !== undefined)
    parts.push(`queued ${s(Math.max(0, Date.parse(first) - acceptedAtMs))}`);
  for (const x of steps) {
    if (x.startedAt === null || x.finishedAt === null) continue;
    parts.push(`${x.name} ${s(Date.parse(x.finishedAt) - Date.parse(x.startedAt))}`);
  }
  return parts.join(", ");
}

export interface PointStats {
  id: string;
  createdAt: string;
  parent: string | null;
  stats: {
    bytesRead: number;
    bytesSent: number;
    changedBlocks: number;
    durationMs: number;
    maxFreezeMs: number;
    trackedDisks: number;
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/**
 * CPU seconds (user + system, threads included, waited-for children not) used so far by the
 * processes of process group `pgid`, summed by what they are: the agent, the workload, the rest.
 */
export function groupCpuSeconds(pgid: number): { agent: number; workload: number; other: number } {
  const out = { agent: 0, workload: 0, other: 0 };
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    let cmdline: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
      cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue; // gone meanwhile
    }
    // after "(comm)": state ppid pgrp … utime (14th field) stime (15th)
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(f[2]) !== pgid) continue;
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    if (/ agent( |$)/.test(cmdline)) out.agent += cpu;
    else if (cmdline.includes("sql-workload")) out.workload += cpu;
    else out.other += cpu;
  }
  return out;
}

// Summarises V8 CPU profiles (node --cpu-prof) into where the time goes: per thread, the functions
// with the most self time and the most inclusive time. Used by `bench:replication --profile DIR`.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface FunctionTime {
  name: string;
  selfMs: number;
  totalMs: number;
}

export interface ThreadProfile {
  file: string;
  /** "main" or "worker <tid>" */
  thread: string;
  wallMs: number;
  /** sampled time, idle excluded */
  busyMs: number;
  functions: FunctionTime[];
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const name = f.functionName || "(anonymous)";
  if (f.url === "") return name;
  const file = f.url.replace(/^file:\/\//, "");
  const short = file.includes("/node_modules/")
    ? file.slice(file.lastIndexOf("/node_modules/") + 14)
    : file.includes("/src/")
      ? file.slice(file.lastIndexOf("/src/") + 1)
      : path.basename(file);
  return `${name} ${short}:${f.lineNumber + 1}`;
}

export function summarise(file: string): ThreadProfile {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  p.samples.forEach((id, i) => {
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(id)!;
    const key = label(node);
    if (key === "(idle)") return;
    busy += dt;
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = label(byId.get(cur)!);
      if (k === "(root)" || seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  });
  const tid = /\.(\d+)\.(\d+)\.cpuprofile$/.exec(file)?.[1] ?? "?";
  return {
    file,
    thread: tid === "0" ? "main" : `worker ${tid}`,
    wallMs: (p.endTime - p.startTime) / 1000,
    busyMs: busy,
    functions: [...total.entries()].map(([name, totalMs]) => ({
      name,
      selfMs: self.get(name) ?? 0,
      totalMs,
    })),
  };
}

/** A readable report of every profile in `dir`: top `top` functions by self time and by total time. */
export function report(dir: string, top = 12): string {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort();
  const out: string[] = [];
  for (const f of files) {
    const t = summarise(path.join(dir, f));
    out.push(`  ${t.thread}: ${t.wallMs.toFixed(0)} ms wall, ${t.busyMs.toFixed(0)} ms busy (${f})`);
    const bySelf = [...t.functions].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
    out.push("    self ms  total ms  function");
    for (const fn of bySelf)
      out.push(`    ${fn.selfMs.toFixed(0).padStart(7)}  ${fn.totalMs.toFixed(0).padStart(8)}  ${fn.name}`);
    const byTotal = [...t.functions]
      .filter((fn) => !fn.name.startsWith("(") && fn.totalMs >= t.busyMs * 0.05)
      .sort((a, b) => b.totalMs - a.totalMs)
      .slice(0, top);
    out.push("    inclusive (≥ 5 % of busy time):");
    for (const fn of byTotal)
      out.push(`    ${fn.selfMs.toFixed(0).padStart(7)}  ${fn.totalMs.toFixed(0).padStart(8)}  ${fn.name}`);
  }
  return out.join("\n");
}

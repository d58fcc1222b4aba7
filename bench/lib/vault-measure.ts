// Timing for bench:vault: HTTP requests from the benchmark's own process to the in-process vault
// (fetch, i.e. undici, whose global agent keeps connections alive), one at a time; and CLI commands as
// real child processes, awaited without blocking the event loop (the vault answers them from this
// process). Percentiles are nearest-rank over every timed sample: with 30 samples p99 is the slowest.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";

export interface Timing {
  /** timed samples (warm-up excluded) */
  n: number;
  p50: number;
  p99: number;
  mean: number;
  /** median size of the answer in bytes (HTTP body, or the CLI's stdout) */
  bytes: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function timing(ms: readonly number[], bytes: readonly number[]): Timing {
  const s = [...ms].sort((a, b) => a - b);
  const b = [...bytes].sort((x, y) => x - y);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    mean: s.reduce((a, x) => a + x, 0) / s.length,
    bytes: percentile(b, 50),
  };
}

export interface HttpPlan {
  /** requests not timed, first */
  warmup: number;
  /** timed requests: about budgetMs worth at the warm-up's median pace, within [min, max] */
  budgetMs: number;
  min: number;
  max: number;
}

/** How many requests an operation gets after a warm-up whose median was `warmMs`. */
export function requestsFor(plan: HttpPlan, warmMs: number): number {
  if (!Number.isFinite(warmMs)) return plan.max;
  return Math.max(plan.min, Math.min(plan.max, Math.round(plan.budgetMs / Math.max(warmMs, 0.01))));
}

/** GET base+path(i) until the plan is done; any status but 200 stops the benchmark. */
export async function timeHttp(
  base: string,
  token: string,
  path: (i: number) => string,
  plan: HttpPlan,
): Promise<Timing> {
  const headers = { authorization: `Bearer ${token}`, accept: "application/json" };
  const once = async (i: number): Promise<{ ms: number; bytes: number }> => {
    const p = path(i);
    const t0 = performance.now();
    const res = await fetch(base + p, { headers });
    const body = await res.arrayBuffer();
    const ms = performance.now() - t0;
    if (res.status !== 200) {
      throw new Error(`GET ${p} answered ${res.status}: ${Buffer.from(body).toString("utf8").slice(0, 400)}`);
    }
    return { ms, bytes: body.byteLength };
  };
  // the median: one warm-up request that waited for a background round must not cut the count
  const warm: number[] = [];
  for (let i = 0; i < plan.warmup; i++) warm.push((await once(i)).ms);
  const count = requestsFor(
    plan,
    percentile(
      warm.sort((a, b) => a - b),
      50,
    ),
  );
  const ms: number[] = [];
  const bytes: number[] = [];
  for (let i = 0; i < count; i++) {
    const r = await once(plan.warmup + i);
    ms.push(r.ms);
    bytes.push(r.bytes);
  }
  return timing(ms, bytes);
}

/** Runs `command args` to completion; resolves with its wall time and stdout size, rejects on exit ≠ 0. */
function runOnce(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let bytes = 0;
    let err = "";
    child.stdout.on("data", (b: Buffer) => {
      bytes += b.length;
    });
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve({ ms, bytes });
      else reject(new Error(`${[command, ...args].join(" ")} exited ${code}: ${err.trim().slice(0, 400)}`));
    });
  });
}

/** `runs` timed runs of a command after `warmup` untimed ones (args may differ per run). */
export async function timeCommand(
  command: string,
  args: (i: number) => readonly string[],
  env: NodeJS.ProcessEnv,
  o: { warmup: number; runs: number },
): Promise<Timing> {
  for (let i = 0; i < o.warmup; i++) await runOnce(command, args(i), env);
  const ms: number[] = [];
  const bytes: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    const r = await runOnce(command, args(o.warmup + i), env);
    ms.push(r.ms);
    bytes.push(r.bytes);
  }
  return timing(ms, bytes);
}

/** Runs `fn` under the V8 CPU profiler of this process and writes the profile to `file`. */
export async function profiled<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const session = new Session();
  session.connect();
  try {
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 500 });
    await session.post("Profiler.start");
    try {
      return await fn();
    } finally {
      const { profile } = await session.post("Profiler.stop");
      writeFileSync(file, JSON.stringify(profile));
    }
  } finally {
    session.disconnect();
  }
}

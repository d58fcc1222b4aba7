// App-consistency hooks: executables the machine's owner puts in a folder. pre-snapshot hooks run just
// before the point's instant (flush and quiesce the application), post-snapshot hooks right after it.
// A hook that fails or overruns its time limit never costs the point: it becomes crash-consistent and
// carries a warning. Post hooks run whenever a pre hook ran, so that an application is never left quiesced.
import { accessSync, constants, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { childProcess } from "../platform/lazy.ts";

export type HookPhase = "pre-snapshot" | "post-snapshot";

export interface HookRun {
  phase: HookPhase;
  hook: string;
  ok: boolean;
  ms: number;
  detail: string;
}

/** Hooks of a phase: the file `<dir>/<phase>` and the files in `<dir>/<phase>.d/`, in name order. */
export function findHooks(dir: string, phase: HookPhase): string[] {
  const out: string[] = [];
  const single = path.join(dir, phase);
  if (isFile(single)) out.push(single);
  const d = path.join(dir, `${phase}.d`);
  try {
    for (const n of readdirSync(d).sort()) if (isFile(path.join(d, n))) out.push(path.join(d, n));
  } catch {
    // no such folder: no hooks of this phase
  }
  return out;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

export async function runHooks(
  dir: string,
  phase: HookPhase,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<HookRun[]> {
  const runs: HookRun[] = [];
  for (const hook of findHooks(dir, phase)) {
    const start = performance.now();
    try {
      accessSync(hook, constants.X_OK);
    } catch {
      runs.push({ phase, hook, ok: false, ms: 0, detail: "is not executable" });
      continue;
    }
    const r = await runOne(hook, { ...process.env, ...env, SWITCHBACK_HOOK_PHASE: phase }, timeoutMs);
    runs.push({ phase, hook, ok: r.ok, ms: Math.round(performance.now() - start), detail: r.detail });
  }
  return runs;
}

function runOne(
  file: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const child = childProcess().spawn(file, [], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString("utf8");
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // the whole process group: a hook's own children must not outlive its time limit
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, detail: err.message });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const tail = stderr.trim().split("\n").slice(-1)[0] ?? "";
      if (timedOut) resolve({ ok: false, detail: `did not finish within ${timeoutMs} ms and was killed` });
      else if (code === 0) resolve({ ok: true, detail: "ok" });
      else
        resolve({ ok: false, detail: `exited with ${signal ?? `code ${code}`}${tail ? `: ${tail}` : ""}` });
    });
  });
}

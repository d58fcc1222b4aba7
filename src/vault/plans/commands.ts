// Running a plan action's command: `sh -c` in its own process group with a time limit; the group is
// killed when the limit passes or the vault stops the step. What it printed last is kept (a few KiB of
// stdout and stderr) for the job's output and for the error that names a failure.
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { procStat } from "../../platform/process.ts";

/** Variables of the vault's own environment a command gets; nothing else (tokens stay in the vault). */
const PASS_THROUGH = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TMPDIR"];
const TAIL_BYTES = 2048;

export interface CommandResult {
  /** null when it was killed (time limit) */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  stdoutTail: string;
  stderrTail: string;
}

export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of PASS_THROUGH) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

class Tail {
  #buf = Buffer.alloc(0);
  push(chunk: Buffer): void {
    const b = Buffer.concat([this.#buf, chunk]);
    this.#buf = b.length > TAIL_BYTES ? b.subarray(b.length - TAIL_BYTES) : b;
  }
  text(): string {
    return this.#buf.toString("utf8").replace(/^\uFFFD+/, "");
  }
}

/** Kills the process group a marker file names, if that very process (pid and start time) still runs. */
function killLeftover(marker: string): void {
  let text: string;
  try {
    text = readFileSync(marker, "utf8");
  } catch {
    return;
  }
  const [pid, start] = text.trim().split(" ").map(Number);
  // a pid alone could have been reused (after a reboot, say): the start time proves it is ours
  if (pid !== undefined && pid > 1 && procStat(pid)?.startTime === start) killGroup(pid);
  rmSync(marker, { force: true });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * Runs `command` with `sh -c`. Resolves with how it ended (a non-zero exit is a result, not an error);
 * rejects with `signal`'s reason when the step is aborted (the process group is killed first).
 */
export function runCommand(
  command: string,
  o: {
    env: Record<string, string>;
    cwd?: string;
    timeoutMs: number;
    signal: AbortSignal;
    /**
     * a file naming the run's process group while it runs: a run left behind by a vault killed
     * with kill -9 is killed before the step runs it again (never two copies of one script at once)
     */
    marker?: string;
  },
): Promise<CommandResult> {
  if (o.marker !== undefined) killLeftover(o.marker);
  return new Promise((resolve, reject) => {
    if (o.signal.aborted) {
      reject(o.signal.reason);
      return;
    }
    const t0 = Date.now();
    const child = spawn("sh", ["-c", command], {
      env: o.env,
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (o.marker !== undefined && child.pid !== undefined) {
      const st = procStat(child.pid);
      writeFileSync(o.marker, `${child.pid} ${st?.startTime ?? 0}\n`);
      child.once("close", () => rmSync(o.marker as string, { force: true }));
    }
    const out = new Tail();
    const err = new Tail();
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, o.timeoutMs);
    const onAbort = () => {
      killGroup(child.pid);
      finish(() => reject(o.signal.reason));
    };
    o.signal.addEventListener("abort", onAbort, { once: true });
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      o.signal.removeEventListener("abort", onAbort);
      f();
    };
    child.on("error", (e) => {
      finish(() =>
        resolve({
          exitCode: null,
          signal: null,
          timedOut: false,
          durationMs: Date.now() - t0,
          stdoutTail: "",
          stderrTail: `could not run sh: ${e.message}`,
        }),
      );
    });
    child.on("exit", (code, signal) => {
      const done = () =>
        finish(() =>
          resolve({
            exitCode: code,
            signal,
            timedOut,
            durationMs: Date.now() - t0,
            stdoutTail: out.text(),
            stderrTail: err.text(),
          }),
        );
      // the output pipes close when every process holding them is gone; a process the command left
      // in the background may hold them for long, so do not wait for it more than a moment
      const grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        done();
      }, 200);
      child.once("close", () => {
        clearTimeout(grace);
        done();
      });
    });
  });
}

/** "exited with 3", "was killed after its time limit of 5 s", … */
export function howItEnded(r: CommandResult, timeoutSeconds: number): string {
  if (r.timedOut) return `was killed after its time limit of ${timeoutSeconds} s`;
  if (r.exitCode === null) return r.signal !== null ? `was killed by ${r.signal}` : "could not be started";
  return `exited with ${r.exitCode}`;
}

/** The last line(s) of stderr for a sentence: at most `max` characters, on one line. */
export function stderrForSentence(r: CommandResult, max = 300): string {
  const s = r.stderrTail.trim().replace(/\s*\n\s*/g, " | ");
  if (s === "") return "no output on stderr";
  return s.length > max ? `…${s.slice(s.length - max)}` : s;
}

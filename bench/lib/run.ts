// Runs a tool as a child process and measures it from outside: wall-clock seconds (process start
// included, as an operator sees it) and peak resident memory through GNU time's %M.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

export const GNU_TIME = "/usr/bin/time";
const RSS_MARK = "@@bench-max-rss-kib=";

export interface RunResult {
  stdout: string;
  stderr: string;
  seconds: number;
  /** peak RSS of the process (or its largest waited-for child), KiB */
  maxRssKiB: number;
  /** user + system CPU seconds of the process and its children */
  cpuSeconds: number;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export class ToolFailed extends Error {}

export function run(cmd: string, args: string[], o: RunOptions = {}): RunResult {
  const t0 = performance.now();
  const r = spawnSync(GNU_TIME, ["-f", `${RSS_MARK}%M %U %S`, cmd, ...args], {
    env: o.env ?? process.env,
    cwd: o.cwd,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.error) throw r.error;
  const stderrAll = r.stderr ?? "";
  const at = stderrAll.lastIndexOf(RSS_MARK);
  const stderr = at >= 0 ? stderrAll.slice(0, at) : stderrAll;
  const [rss, user, sys] =
    at >= 0
      ? stderrAll
          .slice(at + RSS_MARK.length)
          .trim()
          .split(" ")
          .map(Number)
      : [];
  const maxRssKiB = rss ?? Number.NaN;
  const cpuSeconds = (user ?? Number.NaN) + (sys ?? Number.NaN);
  if (r.status !== 0) {
    throw new ToolFailed(
      `${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}:\n${stderr.trim() || r.stdout.trim()}`,
    );
  }
  return { stdout: r.stdout, stderr, seconds, maxRssKiB, cpuSeconds };
}

/** Where a command is on PATH, or null. */
export function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir !== "" && existsSync(`${dir}/${cmd}`)) return `${dir}/${cmd}`;
  }
  return null;
}

/** One line of a command's output (its version), or "?" when it cannot say. */
export function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return (r.stdout || r.stderr || "?").split("\n")[0]!.trim();
}

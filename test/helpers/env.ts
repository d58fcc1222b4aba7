// Shared test helpers: temporary folders, running the CLI as a real process, and the reason a
// privileged test skips when it is not root.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CLI = path.join(ROOT, "src/cli/main.mjs");

/** Why privileged tests cannot run here, or false when they can (root and the tools they need). */
export function privilegedSkipReason(
  tools: string[] = ["losetup", "mkfs.ext4", "mount", "fsfreeze"],
): string | false {
  if (process.getuid?.() !== 0) return "needs root (loop devices, mounts, fsfreeze); CI runs it as root";
  for (const t of tools) {
    if (spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0)
      return `needs ${t} (apt-get install it; .ci/run does)`;
  }
  return false;
}

export function tempDir(prefix = "sb-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `switchback ARGS` as a child process. */
export function cli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs the CLI and parses its --json output; throws with stderr when it fails. */
export async function cliJson<T = Record<string, unknown>>(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<T> {
  const r = await cli([...args, "--json"], opts);
  if (r.code !== 0) throw new Error(`switchback ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Restores one disk of a point with the data-plane CLI into `out` and returns `out`. */
export async function restorePoint(o: {
  datastore: string;
  item: string;
  point: string;
  disk: number;
  out: string;
}): Promise<string> {
  const r = await cli([
    "restore",
    "--datastore",
    o.datastore,
    "--item",
    o.item,
    "--point",
    o.point,
    "--disk",
    String(o.disk),
    "--to",
    o.out,
  ]);
  if (r.code !== 0) throw new Error(`switchback restore exited ${r.code}: ${r.stderr}`);
  return o.out;
}

// The CLI as long-running child processes (a process server, an agent): their stdout lines, waiting
// for one, and killing whatever a test file left running (call killChildren in its `after`).
import { type ChildProcess, spawn } from "node:child_process";
import { CLI, ROOT } from "./env.ts";

const children = new Set<ChildProcess>();

/** SIGKILLs every child still running. */
export function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

export interface Proc {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLine: (pred: (line: string) => boolean, timeoutMs: number, what: string) => Promise<string>;
}

export function spawnCli(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const lines: string[] = [];
  let partial = "";
  let err = "";
  const waiters: (() => void)[] = [];
  child.stdout!.on("data", (d: Buffer) => {
    partial += d.toString();
    const parts = partial.split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      for (const w of waiters.splice(0)) w();
      resolve({ code, signal });
    });
  });
  const waitForLine = async (pred: (l: string) => boolean, timeoutMs: number, what: string) => {
    const deadline = Date.now() + timeoutMs;
    let seen = 0;
    for (;;) {
      for (; seen < lines.length; seen++) if (pred(lines[seen]!)) return lines[seen]!;
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`process exited before ${what}; stdout:\n${lines.join("\n")}\nstderr:\n${err}`);
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; stdout:\n${lines.join("\n")}\nstderr:\n${err}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  return { child, lines, stderr: () => err, exited, waitForLine };
}

export interface Server extends Proc {
  url: string;
  port: number;
}

/** `switchback process-server` on 127.0.0.1 (port 0: a free one), once it listens. */
export async function startServer(
  ds: string,
  tokens: string,
  port = 0,
  extra: string[] = [],
): Promise<Server> {
  const p = spawnCli([
    "process-server",
    "--datastore",
    ds,
    "--listen",
    `127.0.0.1:${port}`,
    "--tokens",
    tokens,
    ...extra,
  ]);
  const line = await p.waitForLine((l) => l.startsWith("process-server listening on "), 20_000, "listening");
  const url = line.slice("process-server listening on ".length).trim();
  return { ...p, url, port: Number(new URL(url).port) };
}

// A real `switchback server` process for end-to-end tests, and a small client of its API.
import assert from "node:assert/strict";
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { unbrokenPrefix } from "../../scripts/machine-workload.ts";
import { CLI, ROOT } from "./env.ts";

export interface VaultProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  url: string;
  /** the admin token (first start), or the one passed in */
  token: string;
  stderr: () => string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

/** A CLI process started for a test, ready once its stdout matched `ready`. */
interface Started {
  child: ChildProcessByStdio<null, Readable, Readable>;
  out: string;
  stderr: () => string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

async function startCli(
  what: string,
  args: string[],
  ready: RegExp,
  env?: NodeJS.ProcessEnv,
  netns?: string,
): Promise<Started> {
  const argv = [process.execPath, CLI, ...args];
  // inside a network namespace: nsenter execs (the child's pid is the CLI's) and, unlike `ip netns
  // exec`, leaves the mounts alone (tracefs under /sys stays where the write tracker finds it)
  if (netns !== undefined) argv.unshift("nsenter", `--net=/run/netns/${netns}`, "--");
  const child = spawn(argv[0] as string, argv.slice(1), {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let out = "";
  let err = "";
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in 30 s: ${out} ${err}`)), 30_000);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited ${code}: ${out} ${err}`));
    });
  });
  const exited = once(child, "exit");
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  return { child, out, stderr: () => err, stop: () => signal("SIGTERM"), kill9: () => signal("SIGKILL") };
}

export async function startVaultProcess(
  data: string,
  o: { args?: string[]; token?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<VaultProcess> {
  const { out, ...p } = await startCli(
    "server",
    ["server", "--data", data, "--port", "0", "--heartbeat-interval", "500ms", ...(o.args ?? [])],
    /^point the CLI at it: .*$/m,
    o.env,
  );
  const url = /vault listening on (http:\/\/\S+)/.exec(out)?.[1] ?? "";
  const token = /admin token \(shown once\): (\S+)/.exec(out)?.[1] ?? o.token ?? "";
  assert.ok(url && token, `server announced its URL and token: ${out}`);
  return { ...p, url, token };
}

/** An API answer as the tests read it: checked field by field by the assertions. */
// biome-ignore lint/suspicious/noExplicitAny: see above
export type Json = any;

export interface Answer<T = Json> {
  status: number;
  body: T;
}

/** Calls the vault's API with a token: the status and the body (JSON parsed, other text as it is, empty as null). */
export function apiOf(v: { url: string; token: string }) {
  return async <T = Json>(method: string, path: string, body?: unknown): Promise<Answer<T>> => {
    const res = await fetch(v.url + path, {
      method,
      headers: {
        authorization: `Bearer ${v.token}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json = (res.headers.get("content-type") ?? "").includes("json");
    return { status: res.status, body: text.length === 0 ? null : json ? JSON.parse(text) : text };
  };
}

/** Polls until `f` returns a value that is not undefined/false, or fails after `ms`. */
export async function until<T>(
  what: string,
  f: () => Promise<T | undefined | false>,
  ms = 60_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Kills every machine the vault's process providers started under `data` (their process groups):
 * machines outlive the vault by design, tests must not leave them behind.
 */
export function killMachines(data: string): number {
  let killed = 0;
  for (const rec of instanceRecords(data)) {
    const pid = rec.run?.pid;
    if (pid === undefined) continue;
    try {
      process.kill(-pid, "SIGKILL");
      killed++;
    } catch {
      // not running
    }
  }
  return killed;
}

/** The instance records of every site's machines under a vault's (or a lab's) data folder. */
export function* instanceRecords(
  data: string,
): Generator<{ run: { pid: number } | null; disks: { path: string }[] }> {
  const sites = path.join(data, "sites");
  if (!existsSync(sites)) return;
  for (const site of readdirSync(sites)) {
    const machines = path.join(sites, site, "machines");
    if (!existsSync(machines)) continue;
    for (const inst of readdirSync(machines)) {
      const rec = path.join(machines, inst, "instance.json");
      if (existsSync(rec)) yield JSON.parse(readFileSync(rec, "utf8"));
    }
  }
}

/** The demo workload (records on the data disk, acknowledged in a log outside the machine). */
export const WORKLOAD = path.join(ROOT, "scripts/machine-workload.ts");

/** A policy that takes a crash-consistent point every second: the tests' default. */
export async function createFastPolicy(api: ReturnType<typeof apiOf>): Promise<void> {
  const p = await api("POST", "/v1/policies", {
    name: "fast",
    rpoThreshold: "1m",
    retention: "1h",
    appConsistentEvery: "0",
    crashConsistentEvery: "1s",
  });
  assert.equal(p.status, 201, JSON.stringify(p.body));
}

/**
 * Defines a machine at the primary site that runs the workload (acknowledging to `ackLog`) and the
 * agent, with an OS and a data disk.
 */
export async function defineMachine(
  api: ReturnType<typeof apiOf>,
  o: { name: string; ackLog: string; osMiB?: number; dataMiB?: number; site?: string },
): Promise<void> {
  const MiB = 1024 * 1024;
  const m = await api("POST", "/v1/machines", {
    name: o.name,
    site: o.site ?? "primary",
    bootCommand: `WORKLOAD_ACK=${o.ackLog} ${process.execPath} ${WORKLOAD} & exec $SWITCHBACK_CLI agent`,
    disks: [{ sizeBytes: (o.osMiB ?? 8) * MiB }, { sizeBytes: (o.dataMiB ?? 16) * MiB }],
  });
  assert.equal(m.status, 201, JSON.stringify(m.body));
}

export interface ApplianceProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** where its control API listens */
  controlUrl: string;
  stderr: () => string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

/** A real `switchback appliance` process; resolves once it has registered with the vault. */
export async function startApplianceProcess(o: {
  vault: string;
  token: string;
  name: string;
  site: string;
  datastore: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** run it inside this network namespace (a lab site's) */
  netns?: string;
}): Promise<ApplianceProcess> {
  const { out, ...p } = await startCli(
    "appliance",
    [
      "appliance",
      "--vault",
      o.vault,
      "--token",
      o.token,
      "--name",
      o.name,
      "--site",
      o.site,
      "--datastore",
      o.datastore,
      ...(o.args ?? []),
    ],
    /^registered with the vault$/m,
    o.env,
    o.netns,
  );
  const controlUrl = /control API on (http:\/\/\S+)/.exec(out)?.[1] ?? "";
  return { ...p, controlUrl };
}

/** The record numbers the workload acknowledged, in order. */
export function acks(file: string): number[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map(Number);
}

/** The workload's unbroken run of records 1…n on a data disk image. */
export function prefixOf(image: string): number {
  const fd = openSync(image, "r");
  try {
    return unbrokenPrefix(fd);
  } finally {
    closeSync(fd);
  }
}

/** Waits for a job to finish (succeeded, failed or cancelled) and returns it. */
export function finishedJob(api: ReturnType<typeof apiOf>, id: string, ms = 120_000): Promise<Json> {
  return until(
    `job ${id}`,
    async () => {
      const r = await api("GET", `/v1/jobs/${id}`);
      return ["succeeded", "failed", "cancelled"].includes(r.body.state) ? r.body : undefined;
    },
    ms,
  );
}

/**
 * Waits for a job and fails the test unless it succeeded, with the job's error, its log and
 * `context()` (the processes' stderr) in the message.
 */
export async function succeededJob(
  api: ReturnType<typeof apiOf>,
  id: string,
  o: { ms?: number; context?: () => string } = {},
): Promise<Json> {
  const j = await finishedJob(api, id, o.ms);
  if (j.state !== "succeeded") {
    const logs = (await api("GET", `/v1/jobs/${id}/logs`)).body;
    assert.fail(
      `job ${j.kind} ${j.state}: ${JSON.stringify(j.error)}\n${JSON.stringify(logs, null, 1)}\n${o.context?.() ?? ""}`,
    );
  }
  return j;
}

export { restorePoint } from "./env.ts";

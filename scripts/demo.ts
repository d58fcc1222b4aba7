// ./dev demo: Switchback on its embedded defaults, with something to look at. Starts the vault on
// .demo/ (SQLite, a local datastore per site, in-process appliances, unprivileged machines), and on
// the first start defines a demo machine at the primary site (a workload writing records to its two
// disks, and the agent), boots it and protects it to the recovery site. Then it prints how to drive
// the vault from another terminal and reports recovery points as they land. Ctrl-C stops the demo
// machine and the vault; `--points N` stops after N points (used to check a fresh clone).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "src/cli/main.mjs");
const demo = path.join(root, ".demo");
const data = path.join(demo, "vault");
const tokenFile = path.join(demo, "admin-token");
const pointsArg = process.argv.indexOf("--points");
const maxPoints = pointsArg > 0 ? Number(process.argv[pointsArg + 1]) : Number.POSITIVE_INFINITY;
const port = process.env.SWITCHBACK_DEMO_PORT ?? "8470";
const MiB = 1024 * 1024;

mkdirSync(demo, { recursive: true });
const vault: ChildProcess = spawn(
  process.execPath,
  [cli, "server", "--data", data, "--port", port, "--heartbeat-interval", "2s"],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const announced = await new Promise<string>((resolve, reject) => {
  let out = "";
  vault.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
    if (/point the CLI at it/.test(out)) resolve(out);
  });
  vault.once("exit", (code) =>
    reject(new Error(`the vault exited (${code}); is port ${port} taken? set SWITCHBACK_DEMO_PORT`)),
  );
});
const url = /vault listening on (\S+)/.exec(announced)?.[1] as string;
const fresh = /admin token \(shown once\): (\S+)/.exec(announced)?.[1];
// the demo keeps its admin token in .demo (mode 0600) so that later starts can drive the vault
if (fresh !== undefined) writeFileSync(tokenFile, `${fresh}\n`, { mode: 0o600 });
const token = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : "";

async function api<T>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(url + p, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
}

const machine = await api<{ name: string }>("GET", "/v1/machines/demo-web");
if (machine.status === 404) {
  await api("POST", "/v1/policies", {
    name: "demo",
    rpoThreshold: "1m",
    retention: "2h",
    appConsistentEvery: "0",
    crashConsistentEvery: "5s",
  });
  const workload = path.join(root, "scripts/machine-workload.ts");
  const r = await api("POST", "/v1/machines", {
    name: "demo-web",
    site: "primary",
    bootCommand: `WORKLOAD_ACK=${path.join(demo, "acks.log")} WORKLOAD_EVERY_MS=200 ${process.execPath} ${workload} & exec $SWITCHBACK_CLI agent`,
    disks: [{ sizeBytes: 32 * MiB }, { sizeBytes: 64 * MiB }],
  });
  if (r.status !== 201) throw new Error(`defining the demo machine failed: ${JSON.stringify(r.body)}`);
}
await api("POST", "/v1/machines/demo-web/start", {});
for (let i = 0; i < 100; i++) {
  const m = await api<{ disks: unknown[] }>("GET", "/v1/machines/demo-web");
  if (m.body.disks.length > 0) break;
  await new Promise((r) => setTimeout(r, 200));
}
const item = await api("GET", "/v1/items/demo-web");
if (item.status === 404) {
  const p = await api("POST", "/v1/items", { machine: "demo-web", to: "recovery", policy: "demo" });
  if (p.status !== 202) throw new Error(`protecting the demo machine failed: ${JSON.stringify(p.body)}`);
}

const rel = (p: string) => path.relative(process.cwd(), p) || ".";
console.log(`Switchback demo in ${rel(demo)}: vault at ${url}`);
console.log("  sites primary and recovery, each with a local datastore and an in-process appliance");
console.log(
  "  machine demo-web at primary (32 + 64 MiB disks, a workload and the agent), protected to recovery",
);
console.log(`\nOpen the portal at ${url}/ and sign in with the token in ${rel(tokenFile)}.`);
console.log("\nIn another terminal:");
console.log(`  export SWITCHBACK_VAULT=${url} SWITCHBACK_TOKEN=$(cat ${rel(tokenFile)})`);
console.log("  bin/switchback items show demo-web");
console.log("  bin/switchback test-failover demo-web --wait        # a drill at the recovery site");
console.log(
  "  bin/switchback failover demo-web --planned --wait   # then commit, reprotect, failover (failback)…",
);
console.log("\nRecovery points as they land (Ctrl-C stops the demo machine and the vault):");

let seen = "";
let points = 0;
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(poll);
  await api("POST", "/v1/machines/demo-web/stop", {}).catch(() => {});
  vault.kill("SIGTERM");
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
const poll = setInterval(async () => {
  const r = await api<{
    phase: string;
    direction: string;
    latestPoint: { id: string; consistency: string } | null;
    lastPointReport: {
      mode?: string;
      bytesSent?: number;
      changedBlocks?: number;
      durationMs?: number;
    } | null;
    health: { rpoSeconds: number | null; rpoStatus: string };
  }>("GET", "/v1/items/demo-web").catch(() => null);
  const it = r?.body;
  if (it?.latestPoint && it.latestPoint.id !== seen) {
    seen = it.latestPoint.id;
    points++;
    const rep = it.lastPointReport;
    const sent =
      rep?.bytesSent !== undefined ? `${(rep.bytesSent / 1024).toFixed(1).padStart(8)} KiB sent` : "";
    console.log(
      `  ${seen}  ${it.direction}  ${it.phase.padEnd(19)} ${String(rep?.changedBlocks ?? "").padStart(5)} changed blocks ${sent}  RPO ${Math.round(it.health.rpoSeconds ?? 0)} s (${it.health.rpoStatus})`,
    );
    if (points >= maxPoints) await stop();
  }
}, 1000);
await new Promise((r) => vault.once("exit", r));
console.log(`\n${points} point(s) seen. Start again with ./dev demo; everything is kept in ${rel(demo)}.`);

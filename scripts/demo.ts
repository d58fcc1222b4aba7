// ./dev demo: Switchback on its embedded defaults, with something to look at. Creates .demo/ with a
// local datastore, a 64 MiB demo disk and a token; starts a process server on 127.0.0.1 and an agent
// (real processes, unprivileged) taking a point every 5 s while a small workload writes to the disk;
// prints each recovery point as it lands. Ctrl-C stops everything; `--points N` stops after N points.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "src/cli/main.ts");
const demo = path.join(root, ".demo");
const ds = path.join(demo, "datastore");
const disk = path.join(demo, "demo-machine-disk0.img");
const maxPoints = Number(process.argv[process.argv.indexOf("--points") + 1] || 0) || Number.POSITIVE_INFINITY;
const DISK_MIB = 64;

function run(args: string[]): ChildProcess {
  return spawn(process.execPath, ["--disable-warning=ExperimentalWarning", cli, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
}

async function once(args: string[]): Promise<void> {
  const c = run(args);
  c.stdout?.resume();
  const code = await new Promise<number | null>((r) => c.once("close", r));
  if (code !== 0) throw new Error(`switchback ${args.join(" ")} exited ${code}`);
}

mkdirSync(demo, { recursive: true });
if (!existsSync(path.join(ds, "config.json"))) await once(["datastore", "init", "--path", ds]);
if (!existsSync(disk)) {
  // a disk that looks used: some text, some random data, mostly zeros
  const fd = openSync(disk, "w");
  for (let mib = 0; mib < DISK_MIB; mib++) {
    const chunk =
      mib % 4 === 0
        ? Buffer.from("switchback demo data\n".repeat(49932)).subarray(0, 1 << 20)
        : mib % 4 === 1
          ? randomBytes(1 << 20)
          : Buffer.alloc(1 << 20);
    writeSync(fd, chunk, 0, chunk.length, mib << 20);
  }
  closeSync(fd);
}
const token = randomBytes(24).toString("hex");
writeFileSync(
  path.join(demo, "tokens.json"),
  JSON.stringify({ version: 1, agents: [{ name: "demo", token, items: ["demo-machine"] }] }, null, 2),
);
writeFileSync(path.join(demo, "agent.token"), token);

console.log(`Switchback demo in ${demo}`);
console.log(`  datastore   ${ds}`);
console.log(`  machine     demo-machine, one ${DISK_MIB} MiB disk: ${disk}`);

const server = run([
  "process-server",
  "--datastore",
  ds,
  "--listen",
  "127.0.0.1:0",
  "--tokens",
  path.join(demo, "tokens.json"),
]);
const url = await new Promise<string>((resolve, reject) => {
  const rl = createInterface({ input: server.stdout! });
  rl.on("line", (l) => {
    const m = /listening on (http:\/\/\S+)/.exec(l);
    if (m) resolve(m[1]!);
  });
  server.once("close", (c) => reject(new Error(`process server exited ${c}`)));
});
console.log(`  process server ${url}`);

const agent = run([
  "agent",
  "--server",
  url,
  "--token-file",
  path.join(demo, "agent.token"),
  "--item",
  "demo-machine",
  "--disk",
  disk,
  "--state",
  path.join(demo, "agent-state"),
  "--crash-every",
  "5s",
  "--snapshot",
  "none",
]);

// the workload: the machine keeps writing a few scattered blocks a second
const workload = setInterval(() => {
  const fd = openSync(disk, "r+");
  for (let i = 0; i < 8; i++)
    writeSync(fd, randomBytes(4096), 0, 4096, Math.floor(Math.random() * DISK_MIB * 256) * 4096);
  closeSync(fd);
}, 1000);

let points = 0;
const stop = () => {
  clearInterval(workload);
  agent.kill("SIGTERM");
  server.kill("SIGTERM");
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
console.log("\nRecovery points as they land (Ctrl-C to stop):");
createInterface({ input: agent.stdout! }).on("line", (l) => {
  let e: Record<string, unknown>;
  try {
    e = JSON.parse(l) as Record<string, unknown>;
  } catch {
    return;
  }
  if (e.msg === "point committed") {
    points++;
    const kib = (Number(e.bytesSent) / 1024).toFixed(1);
    console.log(
      `  ${e.pointId}  ${String(e.mode).padEnd(11)} ${String(e.changedBlocks).padStart(6)} changed blocks  ${kib.padStart(9)} KiB sent  ${e.durationMs} ms`,
    );
    if (points >= maxPoints) stop();
  } else if (e.msg === "point failed") console.log(`  point failed: ${e.error}`);
});
await Promise.all([agent, server].map((c) => new Promise((r) => c.once("close", r))));
console.log(
  `\n${points} point(s). Try: bin/switchback points list --datastore ${path.relative(process.cwd(), ds)} --item demo-machine`,
);

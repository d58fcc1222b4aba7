// npm run bench:drill [-- --fill 1G --write 20 --tmp DIR --keep]
//
// Issue 5's figures, measured on two real sites on this host (test/helpers/two-sites.ts: lab "sbb" on
// 10.80/10.81, so the end-to-end test's lab "sbe" can run beside it). Two privileged machines, each
// with 4 GiB of ext4 disks (1 GiB root, 3 GiB data holding --fill of random files) and the SQLite
// workload, are protected east → west with a point every second. Then: a drill (copy answers on the
// test network), a planned failover of the first (point "latest": RTO, RPO), an unplanned failover of
// the second with east cut off (point "latest-processed"), commit, --write seconds of new writes,
// reprotect of the first back to east (its resync against rsync on the very same change) and the
// failback. One run, one table; docs/benchmarks.md explains the method.
import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { readAcks } from "../scripts/sql-workload.ts";
import { cli, privilegedSkipReason, restorePoint } from "../test/helpers/env.ts";
import { Scratch } from "../test/helpers/privileged.ts";
import {
  addressIn,
  type LabSiteInfo,
  SERVICE_PORT,
  SQL_WORKLOAD,
  startTwoSites,
  TWO_SITES_TOOLS,
  type TwoSites,
} from "../test/helpers/two-sites.ts";
import { createFastPolicy, type Json, succeededJob, until } from "../test/helpers/vault.ts";
import {
  curlGet,
  differingBlocks,
  groupCpuSeconds,
  type JobStep,
  type LinkBytes,
  linkBytes,
  median,
  type PointStats,
  rsyncTotals,
  stepSeconds,
} from "./lib/drill.ts";
import { BENCH_BLOCK, sameContent } from "./lib/image.ts";
import { busyness, describeMachine, fileSystemOf } from "./lib/machine.ts";
import { versionOf } from "./lib/run.ts";
import { fmtBytes, fmtInt, fmtSeconds, parseSize } from "./lib/sizes.ts";
import { markdown } from "./lib/table.ts";

const LAB = "sbb";
const LAB_BASE = 80;
const ROOT_MIB = 1024;
const DATA_MIB = 3072;
const GOALS = { rtoSeconds: 10, failbackSentOverChanged: 1.1 };
/** the end of the inter-site link in each site's namespace (src/lab/lab.ts) */
const INTER_SITE_DEV = "x0";
/** the scratch XFS for the sites' folders: 2 × 4 GiB machines, datastores, replicas, copies */
const XFS_GIB = 32;
/** seconds of steady replication over which the agents' CPU is measured */
const STEADY_SECONDS = 15;

function fail(message: string): never {
  process.stderr.write(`bench:drill: ${message}\n`);
  process.exit(1);
}

const { values: opt } = parseArgs({
  options: {
    fill: { type: "string", default: "1G" },
    write: { type: "string", default: "20" },
    fs: { type: "string", default: "xfs" },
    tmp: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  process.stdout.write(
    [
      "usage: npm run bench:drill [-- options]      (root: loop devices, namespaces, mounts)",
      "  --fill 1G     random files written to each machine's data disk before it is protected",
      "  --write 20    seconds the failed-over machine writes after commit, before the reprotect",
      "  --fs xfs      the sites' folders on a scratch XFS (reflink clones, as on an appliance) or on the",
      "                temp folder's own file system (ext4 here): --fs ext4",
      "  --tmp DIR     where the temp folder goes (default the system's temp folder)",
      "  --keep        keep the temp folder (the scratch XFS goes: use --fs ext4 to keep the sites too)",
      "",
    ].join("\n"),
  );
  process.exit(0);
}
const fillMiB = (() => {
  try {
    const n = parseSize(opt.fill) / 1024 / 1024;
    if (!Number.isInteger(n / 16) || n < 16 || n > DATA_MIB - 512) throw new Error("");
    return n;
  } catch {
    fail(`--fill ${opt.fill} must be a multiple of 16M between 16M and ${(DATA_MIB - 512) / 1024}G`);
  }
})();
const writeSeconds = Number(opt.write);
if (!Number.isFinite(writeSeconds) || writeSeconds < 0) fail(`--write ${opt.write} is not seconds`);
if (opt.fs !== "xfs" && opt.fs !== "ext4") fail(`--fs ${opt.fs}: use xfs or ext4`);
const skip = privilegedSkipReason([...(opt.fs === "xfs" ? ["mkfs.xfs"] : []), ...TWO_SITES_TOOLS, "rsync"]);
if (skip !== false) fail(skip);

const progress = (s: string) => process.stderr.write(`${s}\n`);
const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

mkdirSync(opt.tmp, { recursive: true });
const base = mkdtempSync(path.join(path.resolve(opt.tmp), "switchback-drill-"));
let two: TwoSites | undefined;
let scratch: Scratch | undefined;
let finished: Promise<void> | undefined;
/** Once, whoever asks first (the end of the run, an error, Ctrl-C): machines, loops, lab, then the folder. */
function finish(): Promise<void> {
  finished ??= (async () => {
    if (two !== undefined) await two.stop().catch((err: unknown) => progress(`stopping the lab: ${err}`));
    else await cli(["lab", "down", "--name", LAB]); // a lab half up
    try {
      scratch?.cleanup();
    } catch (err) {
      progress(`removing the scratch file system: ${err}`);
    }
    if (opt.keep) progress(`kept ${base}`);
    else rmSync(base, { recursive: true, force: true });
  })();
  return finished;
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    progress(`${sig}: stopping the machines and taking lab ${LAB} down`);
    void finish().finally(() => process.exit(130));
  });
}
// the sites' folders (machines, datastores, replicas): on XFS as an appliance would keep them
const data = path.join(
  opt.fs === "xfs"
    ? (() => {
        scratch = new Scratch("switchback-drill-xfs-");
        const dev = scratch.attach(scratch.image("sites.img", XFS_GIB * 1024));
        scratch.mkfs(dev, "xfs");
        return scratch.mount(dev, "mnt");
      })()
    : base,
  "data",
);

interface Answered {
  /** when /health first answered (ms since the epoch) */
  atMs: number;
  status: Json;
}

interface Op {
  jobId: string;
  requestedAtMs: number;
  /** when the vault answered the request (it decides first: facts from both sites) */
  acceptedAtMs: number;
}

/** What a machine is in the run: its name (also its item's), its addresses, its acknowledgement log. */
interface Subject {
  name: string;
  eastIp: string;
  westIp: string;
  ackLog: string;
}

async function main(): Promise<void> {
  const busyStart = busyness();
  const t0 = Date.now();
  const mark = (s: string) => progress(`${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s  ${s}`);
  two = await startTwoSites({ lab: LAB, base: LAB_BASE, data });
  const t = two;
  const [east, west] = t.sites as [LabSiteInfo, LabSiteInfo];
  mark(`lab ${LAB} up: vault ${t.vault.url}, appliances at ${east.name} and ${west.name}`);
  await createFastPolicy(t.api);

  const api = async (method: string, p: string, body?: unknown, want = 200): Promise<Json> => {
    // a GET is asked again once when the connection broke (a keep-alive socket the vault had closed)
    const r = await t.api(method, p, body).catch((err: unknown) => {
      if (method !== "GET") throw err;
      return t.api(method, p, body);
    });
    if (r.status !== want) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const job = (id: string, ms = 300_000) => succeededJob(t.api, id, { ms, context: () => t.context() });
  const operate = async (name: string, op: string, body: unknown = {}): Promise<Op> => {
    // a GET first, of a route that asks no site (an item's view would ask a lost site first and take
    // the POST's wait on it out of the RTO): it clears a stale connection a POST could not retry on
    await api("GET", "/v1/jobs?limit=1");
    const requestedAtMs = Date.now();
    const r = await api("POST", `/v1/items/${name}/${op}`, body, 202);
    return { jobId: r.job.id as string, requestedAtMs, acceptedAtMs: Date.now() };
  };
  const item = (name: string) => api("GET", `/v1/items/${name}`);

  /** Polls the service's /health (every 100 ms, from `netns` or the host) until it answers; then its /status. */
  async function answer(what: string, netns: string | null, ip: string, jobId?: string): Promise<Answered> {
    const deadline = Date.now() + 240_000;
    let checkedJob = 0;
    for (;;) {
      if ((await curlGet(netns, `http://${ip}:${SERVICE_PORT}/health`, 0.5)) !== null) {
        const atMs = Date.now();
        const body = await curlGet(netns, `http://${ip}:${SERVICE_PORT}/status`, 60);
        if (body === null) throw new Error(`${what}: /health answered at ${ip}, /status did not`);
        return { atMs, status: JSON.parse(body) };
      }
      if (jobId !== undefined && Date.now() - checkedJob > 1000) {
        checkedJob = Date.now();
        const j = await api("GET", `/v1/jobs/${jobId}`);
        if (j.state === "failed" || j.state === "cancelled") await job(jobId); // throws with its log
      }
      if (Date.now() > deadline)
        throw new Error(`${what}: nothing answered at ${ip} in 240 s\n${t.context()}`);
      await sleep(100);
    }
  }

  const checkCopy = (what: string, s: Json, site: string, drill: boolean) => {
    const ok = s.bootCheck?.ok === true && s.site === site && s.drill === drill;
    if (!ok) throw new Error(`${what}: the copy is not sound: ${JSON.stringify(s)}`);
  };
  /** The highest seq acknowledged by the copy at `site` (before `beforeMs`, when given). */
  const lastAck = (m: Subject, site: string, beforeMs = Number.POSITIVE_INFINITY) =>
    readAcks(m.ackLog)
      .filter((a) => a.site === site && (a.atMs ?? 0) < beforeMs)
      .reduce((hi, a) => Math.max(hi, a.seq), 0);
  const stepOf = (j: Json, name: string): Json => (j.steps as Json[]).find((s) => s.name === name);
  const instanceRecord = (site: string, instance: string) =>
    JSON.parse(
      readFileSync(path.join(data, "sites", site, "machines", instance, "instance.json"), "utf8"),
    ) as {
      disks: { path: string; method?: string }[];
    };
  const instanceDisks = (site: string, instance: string): string[] =>
    instanceRecord(site, instance).disks.map((d) => d.path);
  /** How the provider made an instance's disks: reflink or sparse-copy of a replica, restore, in-place… */
  const diskMethods = (site: string, instance: string): string =>
    instanceRecord(site, instance)
      .disks.map((d) => d.method ?? "?")
      .join(" + ");
  /** The item's points in a site's datastore, oldest first, with the stats their agent recorded. */
  const pointsAt = async (site: string, name: string): Promise<PointStats[]> => {
    const id = (await item(name)).id as string;
    const dir = path.join(data, "sites", site, "datastore");
    const r = await cli(["points", "list", "--datastore", dir, "--item", id, "--json"]);
    if (r.code !== 0) throw new Error(`points list --datastore ${dir}: ${r.stderr}`);
    return JSON.parse(r.stdout) as PointStats[];
  };
  const copySparse = (from: string, to: string) => {
    const r = spawnSync("cp", ["--sparse=always", from, to], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`cp ${from} ${to}: ${r.stderr}`);
  };

  // 1. two machines at east, their data disks partly filled, protected to west
  const machines: [Subject, Subject] = [
    {
      name: "dbA",
      eastIp: addressIn(east, 10),
      westIp: addressIn(west, 20),
      ackLog: path.join(base, "acks-dbA.log"),
    },
    {
      name: "dbB",
      eastIp: addressIn(east, 11),
      westIp: addressIn(west, 21),
      ackLog: path.join(base, "acks-dbB.log"),
    },
  ];
  const [A, B] = machines;
  const home = new Map<string, string>();
  for (const m of machines) {
    // the fill runs once, at the first boot (a copy finds fill/done on its data disk); the service
    // starts after it, so "the service answers" means the disk holds the fill
    const fill =
      `F=$SWITCHBACK_ROOT/data/fill; [ -e $F/done ] || { mkdir -p $F && ` +
      `for i in $(seq 1 ${fillMiB / 16}); do dd if=/dev/urandom of=$F/$i.bin bs=1M count=16 status=none || exit 1; done && ` +
      `sync && touch $F/done; }; `;
    await api(
      "POST",
      "/v1/machines",
      {
        name: m.name,
        site: east.name,
        bootCommand:
          fill +
          `WORKLOAD_ROOT=$SWITCHBACK_ROOT/data WORKLOAD_ACK=${m.ackLog} WORKLOAD_LISTEN=0.0.0.0:${SERVICE_PORT} ` +
          `WORKLOAD_EVERY_MS=20 ${process.execPath} ${SQL_WORKLOAD} & exec $SWITCHBACK_CLI agent`,
        disks: [
          { sizeBytes: ROOT_MIB * 1024 * 1024, filesystem: "ext4", mountAt: "/" },
          { sizeBytes: DATA_MIB * 1024 * 1024, filesystem: "ext4", mountAt: "/data" },
        ],
        network: { ip: m.eastIp },
      },
      201,
    );
    home.set(m.name, (await api("POST", `/v1/machines/${m.name}/start`, {})).instanceId as string);
  }
  await Promise.all(
    machines.map(async (m) => {
      checkCopy(
        `${m.name} at east`,
        (await answer(`${m.name} at east`, null, m.eastIp)).status,
        "east",
        false,
      );
      await until(
        `${m.name}'s agent registers`,
        async () => {
          const r = await api("GET", `/v1/machines/${m.name}`);
          return r.lastHeartbeatAt !== null && r.disks.length === 2;
        },
        120_000,
      );
    }),
  );
  const allocated = instanceDisks("east", home.get(A.name)!).reduce(
    (s, d) => s + statSync(d).blocks * 512,
    0,
  );
  mark(`${A.name} and ${B.name} run at east, ${fmtBytes(allocated)} of their 4 GiB of disks allocated`);

  const initial = await Promise.all(
    machines.map(async (m) => {
      const protectedAtMs = Date.now();
      const r = await api(
        "POST",
        "/v1/items",
        { machine: m.name, to: west.name, policy: "fast", targetSettings: { ip: m.westIp } },
        202,
      );
      await job(r.job.id);
      await until(
        `${m.name}: initial replication`,
        async () => {
          const x = await item(m.name);
          return x.phase === "protected";
        },
        600_000,
      );
      const seconds = (Date.now() - protectedAtMs) / 1000;
      await until(`${m.name}: 3 points`, async () => (await item(m.name)).pointCount >= 3, 60_000);
      return { seconds };
    }),
  );
  mark(
    `protected east → west: initial replication ${initial.map((x) => `${fmtSeconds(x.seconds)} s`).join(", ")}`,
  );

  // steady replication for a while: what the agents cost the machines (CPU of their process groups)
  const pids = machines.map(
    (m) =>
      (
        JSON.parse(
          readFileSync(
            path.join(data, "sites", "east", "machines", home.get(m.name)!, "instance.json"),
            "utf8",
          ),
        ) as { run: { pid: number } }
      ).run.pid,
  );
  const cpuBefore = pids.map(groupCpuSeconds);
  const steadyFromMs = Date.now();
  await sleep(STEADY_SECONDS * 1000);
  const cpuAfter = pids.map(groupCpuSeconds);
  const steadyS = (Date.now() - steadyFromMs) / 1000;
  const cpuUsed = (k: "agent" | "workload") =>
    cpuAfter.reduce((s, c, i) => s + c[k] - cpuBefore[i]![k], 0) / steadyS;
  const agentCpu = cpuUsed("agent");
  const workloadCpu = cpuUsed("workload");
  mark(`steady replication: the two agents used ${agentCpu.toFixed(2)} CPU-seconds a second`);

  // 2. drill of A on the test network, then its cleanup
  const drillOp = await operate(A.name, "test-failover", { point: "latest-processed" });
  const drilled = await answer("drill copy", west.testNetns, A.westIp, drillOp.jobId);
  checkCopy("drill copy", drilled.status, "west", true);
  const drillJob = await job(drillOp.jobId);
  const drillDisks = diskMethods(west.name, stepOf(drillJob, "start").output.instanceId);
  const drillSeconds = (drilled.atMs - drillOp.requestedAtMs) / 1000;
  const cleanupOp = await operate(A.name, "test-failover-cleanup", { notes: "bench:drill" });
  const cleanupJob = await job(cleanupOp.jobId);
  const cleanupSeconds = (Date.parse(cleanupJob.finishedAt) - cleanupOp.requestedAtMs) / 1000;
  mark(`drill answered after ${fmtSeconds(drillSeconds)} s; cleanup ${fmtSeconds(cleanupSeconds)} s`);

  // 3. RTO/RPO "latest": planned failover of A (drain, source shut down, final point)
  const foA = await operate(A.name, "failover", { planned: true });
  const atWestA = await answer(`${A.name} at west`, null, A.westIp, foA.jobId);
  checkCopy(`${A.name} at west`, atWestA.status, "west", false);
  const foAJob = await job(foA.jobId);
  const foADisks = diskMethods(west.name, stepOf(foAJob, "materialize").output.instanceId);
  const failA = {
    rto: (atWestA.atMs - foA.requestedAtMs) / 1000,
    dataAge: (foA.requestedAtMs - Date.parse(stepOf(foAJob, "select-point").output.createdAt)) / 1000,
    rowsLost: lastAck(A, "east") - atWestA.status.bootMaxSeq,
    materialize: stepOf(foAJob, "materialize").output,
  };
  const drainedA = (await pointsAt(west.name, A.name)).find(
    (p) => p.id === stepOf(foAJob, "select-point").output.point,
  );
  mark(`${A.name}: planned failover answered at west after ${fmtSeconds(failA.rto)} s`);

  // 4. RTO/RPO "latest-processed": east is lost (both of its links cut), B fails over from what west has
  await t.cut(`site:${east.name}`);
  const foB = await operate(B.name, "failover", { point: "latest-processed" });
  const atWestB = await answer(`${B.name} at west`, null, B.westIp, foB.jobId);
  checkCopy(`${B.name} at west`, atWestB.status, "west", false);
  const foBJob = await job(foB.jobId);
  const foBDisks = diskMethods(west.name, stepOf(foBJob, "materialize").output.instanceId);
  const failB = {
    rto: (atWestB.atMs - foB.requestedAtMs) / 1000,
    dataAge: (foB.requestedAtMs - Date.parse(stepOf(foBJob, "select-point").output.createdAt)) / 1000,
    rowsLost: Math.max(0, lastAck(B, "east", foB.requestedAtMs) - atWestB.status.bootMaxSeq),
    materialize: stepOf(foBJob, "materialize").output,
  };
  await t.restore(`site:${east.name}`);
  const pointsB = await pointsAt(west.name, B.name);
  mark(`${B.name}: unplanned failover (east cut off) answered at west after ${fmtSeconds(failB.rto)} s`);

  // 5. failback efficiency: commit A, let it write, snapshot the disks it left at east, reprotect
  await job((await operate(A.name, "commit")).jobId);
  const ackedAtCommit = lastAck(A, "west");
  await sleep(writeSeconds * 1000);
  const rowsWritten = lastAck(A, "west") - ackedAtCommit;
  const snap = path.join(base, "east-before");
  mkdirSync(snap);
  const eastDisks = instanceDisks("east", home.get(A.name)!);
  const snapDisks = eastDisks.map((d, i) => {
    const to = path.join(snap, `disk-${i}.img`);
    copySparse(d, to);
    return to;
  });
  mark(`${A.name} wrote ${fmtInt(rowsWritten)} rows at west in ${writeSeconds} s; east's disks copied aside`);

  const rowsAtWest = lastAck(A, "west") - atWestA.status.bootMaxSeq;
  const linkBefore = linkBytes(west.netns, INTER_SITE_DEV);
  // the east appliance may still be catching up after its links came back
  const rp = await until(
    "reprotect accepted",
    async () => {
      const requestedAtMs = Date.now();
      const r = await t.api("POST", `/v1/items/${A.name}/reprotect`, { location: "original" });
      const acceptedAtMs = Date.now();
      return r.status === 202 ? { jobId: r.body.job.id as string, requestedAtMs, acceptedAtMs } : undefined;
    },
    60_000,
  );
  let linkAtLanding: LinkBytes | null = null;
  let landedAtMs = 0;
  while (linkAtLanding === null) {
    const link = linkBytes(west.netns, INTER_SITE_DEV);
    const it = await item(A.name);
    if (it.phase === "protected" && it.direction === `${west.name} → ${east.name}`) {
      linkAtLanding = link;
      landedAtMs = Date.now();
    } else {
      const j = await api("GET", `/v1/jobs/${rp.jobId}`);
      if (j.state === "failed" || j.state === "cancelled") await job(rp.jobId);
      await sleep(200);
    }
  }
  const rpJob = await job(rp.jobId);
  const resync = stepOf(rpJob, "initial-replication").output as {
    point: string;
    mode: string | null;
    bytesSent: number | null;
    changedBlocks: number | null;
    createdAt?: string | null;
    bytesRead?: number | null;
    durationMs?: number | null;
  };
  const reprotectSeconds = (landedAtMs - rp.requestedAtMs) / 1000;
  const linkSent = linkAtLanding.tx - linkBefore.tx;
  const linkReceived = linkAtLanding.rx - linkBefore.rx;
  mark(
    `reprotect ${west.name} → ${east.name} (${resync.mode}): ${fmtBytes(resync.bytesSent ?? Number.NaN)} for ${fmtInt(resync.changedBlocks ?? Number.NaN)} changed blocks in ${fmtSeconds(reprotectSeconds)} s`,
  );

  // the same change for rsync and for the count: the resync point's disks, restored from east's datastore
  const itemId = (await item(A.name)).id as string;
  const pDir = path.join(base, "resync-point");
  mkdirSync(pDir);
  const pDisks: string[] = [];
  for (let i = 0; i < eastDisks.length; i++) {
    pDisks.push(
      await restorePoint({
        datastore: path.join(data, "sites", east.name, "datastore"),
        item: itemId,
        point: resync.point,
        disk: i,
        out: path.join(pDir, `disk-${i}.img`),
      }),
    );
  }
  const changed = pDisks.reduce((s, p, i) => s + differingBlocks(p, snapDisks[i]!), 0);
  const changedBytes = changed * BENCH_BLOCK;
  // rsync as bench:replication runs it (bench/lib/rsync.ts), plus -z: Switchback compresses what it ships
  // (rsync runs as an async child: a blocked event loop here would leave a stale keep-alive socket to
  // the vault, and the next POST would fail on it)
  const rsyncRuns: { flags: string; seconds: number; correct: boolean; sent: number; received: number }[] =
    [];
  for (const extra of [[], ["-B4096"], ["-z", "-B4096"]]) {
    const dir = path.join(base, "rsync");
    mkdirSync(dir);
    snapDisks.forEach((d, i) => {
      copySparse(d, path.join(dir, `disk-${i}.img`));
    });
    const flags = ["--inplace", "--no-whole-file", "--ignore-times", "--stats", ...extra];
    const started = performance.now();
    const { stdout } = await execFileAsync("rsync", [...flags, ...pDisks, `${dir}/`], {
      encoding: "utf8",
      maxBuffer: 16 * 1024 * 1024,
    });
    const seconds = (performance.now() - started) / 1000;
    const correct = pDisks.every((p, i) => sameContent(p, path.join(dir, `disk-${i}.img`)));
    rmSync(dir, { recursive: true });
    rsyncRuns.push({
      flags: extra.length === 0 ? "(default block)" : extra.join(" "),
      seconds,
      correct,
      ...rsyncTotals(stdout),
    });
  }
  mark(
    `the resync point differs from east's old disks in ${fmtInt(changed)} blocks; rsync sent ${rsyncRuns.map((r) => fmtBytes(r.sent)).join(" / ")}`,
  );

  // 6. failback: planned failover of the reverse item, onto east's own disks
  const fb = await operate(A.name, "failover", { planned: true });
  const backAtEast = await answer(`${A.name} back at east`, null, A.eastIp, fb.jobId);
  checkCopy(`${A.name} back at east`, backAtEast.status, "east", false);
  const fbJob = await job(fb.jobId);
  const failBack = {
    rto: (backAtEast.atMs - fb.requestedAtMs) / 1000,
    dataAge: (fb.requestedAtMs - Date.parse(stepOf(fbJob, "select-point").output.createdAt)) / 1000,
    rowsLost: lastAck(A, "west") - backAtEast.status.bootMaxSeq,
    materialize: stepOf(fbJob, "materialize").output,
  };
  mark(`${A.name}: failback answered at east after ${fmtSeconds(failBack.rto)} s`);

  // the table
  const ratio = (bytes: number | null) =>
    bytes === null || changed === 0 ? "n/a" : `${(bytes / changedBytes).toFixed(2)}×`;
  const rto = (s: number) => `${fmtSeconds(s)} s${s <= GOALS.rtoSeconds ? "" : " (not met)"}`;
  const rpo = (x: { dataAge: number; rowsLost: number }) =>
    `${x.dataAge < 0 ? `point taken ${fmtSeconds(-x.dataAge)} s after the request` : `${fmtSeconds(x.dataAge)} s`}; ${fmtInt(x.rowsLost)} acknowledged rows lost`;
  const sent = resync.bytesSent;
  // B's points at west, from the first incremental to its failover: the cadence behind the RPO
  const steady = pointsB.slice(1).filter((p) => Date.parse(p.createdAt) < foB.requestedAtMs);
  const intervals = steady.slice(1).map((p, i) => Date.parse(p.createdAt) - Date.parse(steady[i]!.createdAt));
  const sec = (ms: number) => `${fmtSeconds(ms / 1000)} s`;
  const fullB = pointsB[0];
  const rows: string[][] = [
    ["measure", "goal", "result", "how it is measured"],
    [
      "initial replication",
      "",
      initial.map((x) => `${fmtSeconds(x.seconds)} s`).join(" / "),
      `${A.name} / ${B.name} side by side, protect request → phase "protected"; 4 GiB of disks each, ${fmtBytes(allocated)} allocated; ${B.name}'s full copy read ${fmtBytes(fullB?.stats.bytesRead ?? Number.NaN)}, sent ${fmtBytes(fullB?.stats.bytesSent ?? Number.NaN)}, froze its file systems ${sec(fullB?.stats.maxFreezeMs ?? Number.NaN)}`,
    ],
    [
      "points (policy: one a second)",
      "",
      `one every ${sec(median(intervals))}`,
      `${B.name} before its failover (${steady.length} incremental points, median): each took ${sec(median(steady.map((p) => p.stats.durationMs)))} and read ${fmtBytes(median(steady.map((p) => p.stats.bytesRead)))}; file systems frozen ${sec(median(steady.map((p) => p.stats.maxFreezeMs)))} (longest ${sec(Math.max(...steady.map((p) => p.stats.maxFreezeMs)))}); write tracker used in ${steady.filter((p) => p.stats.trackedDisks > 0).length} of them`,
    ],
    [
      "replication CPU",
      "",
      `${agentCpu.toFixed(2)} CPU-s/s`,
      `both agents together over ${fmtSeconds(steadyS)} s of steady replication (of the ${os.availableParallelism()} cores); the two workloads ${workloadCpu.toFixed(2)}`,
    ],
    [
      "drill",
      "",
      `${fmtSeconds(drillSeconds)} s`,
      `${A.name}, point latest-processed: request → the copy's service answers on west's test network`,
    ],
    ["drill cleanup", "", `${fmtSeconds(cleanupSeconds)} s`, "request → job done (copy and its disks gone)"],
    [
      "RTO latest",
      `≤ ${GOALS.rtoSeconds} s`,
      rto(failA.rto),
      `${A.name}, planned failover (drain, source shut down, final point): request → service answers at its west address`,
    ],
    [
      "RPO latest",
      "0",
      rpo(failA),
      "failover request − the chosen point's createdAt; rows acknowledged at east missing in the copy",
    ],
    [
      "RTO latest-processed",
      `≤ ${GOALS.rtoSeconds} s`,
      rto(failB.rto),
      `${B.name}, unplanned failover with east cut off (both links) just before: request → service answers at west`,
    ],
    [
      "RPO latest-processed",
      "",
      rpo(failB),
      "as above; rows acknowledged at east before the request, missing in the copy",
    ],
    [
      "reprotect (failback resync)",
      "",
      `${fmtSeconds(reprotectSeconds)} s`,
      `${A.name} west → east (${resync.mode}) after ${fmtSeconds((rp.requestedAtMs - atWestA.atMs) / 1000)} s at west (${fmtInt(rowsAtWest)} rows written; commit, then ${writeSeconds} s): request → first point landed`,
    ],
    [
      `changed data (${fmtInt(changed)} × 4 KiB)`,
      "",
      fmtBytes(changedBytes),
      `blocks in which the resync point differs from east's disks before the reprotect (Switchback counted ${fmtInt(resync.changedBlocks ?? Number.NaN)})`,
    ],
    [
      "Switchback: sent ÷ changed",
      `≤ ${GOALS.failbackSentOverChanged}`,
      `${ratio(sent)} (${fmtBytes(sent ?? Number.NaN)})`,
      "the resync point's bytesSent (compressed frames of the blocks east lacks)",
    ],
    [
      "Switchback: over the link ÷ changed",
      `≤ ${GOALS.failbackSentOverChanged}`,
      `${ratio(linkSent)} (${fmtBytes(linkSent)})`,
      `west → east bytes on the inter-site link (IP packets) during the reprotect; east → west ${fmtBytes(linkReceived)}`,
    ],
    ...rsyncRuns.map((r) => [
      `rsync ${r.flags}: sent ÷ changed`,
      "",
      `${ratio(r.sent)} (${fmtBytes(r.sent)})${r.correct ? "" : " WRONG CONTENT"}`,
      `the resync point's disks onto copies of east's old ones: "Total bytes sent" ${fmtBytes(r.sent)}, received (checksums) ${fmtBytes(r.received)}, ${fmtSeconds(r.seconds)} s`,
    ]),
    [
      "failback RTO",
      "",
      `${fmtSeconds(failBack.rto)} s`,
      `${A.name}, planned failover back onto east's own disks (${failBack.materialize.mode}, ${fmtInt(failBack.materialize.blocksWritten ?? Number.NaN)} blocks written): request → service answers at east; ${rpo(failBack)}`,
    ],
  ];

  const m = describeMachine(fileSystemOf(base));
  const sitesFs = fileSystemOf(data);
  const git = spawnSync("git", ["describe", "--always", "--dirty"], { encoding: "utf8" }).stdout.trim();
  const out: string[] = [];
  out.push(`Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB memory, ${m.kernel}, Node ${m.node}`);
  out.push(
    `Temp folder on ${m.fileSystem}; sites' folders on ${sitesFs}; ${new Date().toISOString()}; tree at ${git || "?"}`,
  );
  out.push(`Other load: at start ${busyStart}; at end ${busyness()}`);
  out.push(
    `Machines: 2 × (${ROOT_MIB} MiB root + ${DATA_MIB} MiB data, ext4 on loop devices), ${fillMiB} MiB of random files on each data disk, SQLite workload every 20 ms; policy "fast" (a point every second); ${versionOf("rsync", ["--version"])}`,
  );
  out.push("");
  out.push(markdown(rows));
  out.push("");
  out.push("Where the time goes (seconds per job step; answer = start step done → service answers):");
  const where = (label: string, op: Op, j: Json, answeredAtMs?: number) => {
    const startDone = stepOf(j, "start")?.finishedAt as string | undefined;
    const tail =
      answeredAtMs !== undefined && startDone !== undefined
        ? `, answer ${((answeredAtMs - Date.parse(startDone)) / 1000).toFixed(2)}`
        : "";
    out.push(`- ${label}: ${stepSeconds(op.requestedAtMs, op.acceptedAtMs, j.steps as JobStep[])}${tail}`);
  };
  where("drill", drillOp, drillJob, drilled.atMs);
  where("drill cleanup", cleanupOp, cleanupJob);
  where(`failover latest (${A.name})`, foA, foAJob, atWestA.atMs);
  where(`failover latest-processed (${B.name})`, foB, foBJob, atWestB.atMs);
  where(`reprotect (${A.name})`, rp, rpJob);
  where(`failback (${A.name})`, fb, fbJob, backAtEast.atMs);
  if (resync.createdAt != null && resync.durationMs != null) {
    out.push(
      `- the reprotect's resync point (inside "initial-replication"): began ${sec(Date.parse(resync.createdAt) - rp.requestedAtMs)} after the request, took ${sec(resync.durationMs)}, read ${fmtBytes(resync.bytesRead ?? Number.NaN)}`,
    );
  }
  if (drainedA !== undefined) {
    out.push(
      `- the final point of ${A.name}'s planned failover (inside "prepare"): took ${sec(drainedA.stats.durationMs)}, read ${fmtBytes(drainedA.stats.bytesRead)}, file systems frozen ${sec(drainedA.stats.maxFreezeMs)}`,
    );
  }
  out.push(
    `- disks made by materialize (root + data): drill ${drillDisks}; failover ${A.name} ${foADisks}; failover ${B.name} ${foBDisks}; failback ${failBack.materialize.mode} onto east's own disks`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
}

try {
  await main();
} catch (err) {
  if (finished === undefined) {
    const cause = (err as Error).cause;
    process.stderr.write(
      `bench:drill: ${(err as Error).stack ?? err}${cause !== undefined ? `\ncaused by: ${cause}` : ""}\n`,
    );
    if (two !== undefined) process.stderr.write(`${two.context()}\n`);
    process.exitCode = 1;
  }
} finally {
  await finish();
}

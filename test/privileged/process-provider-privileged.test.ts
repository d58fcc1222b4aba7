// The `process` provider in privileged mode, on its own (no vault): a lab's site networks, real
// network and mount namespaces, ext4 disks on loop devices, HTTP services answering at the machines'
// addresses. What a machine saw from the inside (its eth0, its mounts, its environment) it writes to
// its own data disk; the test reads that disk afterwards with a read-only mount of its own.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { readSiteNetworks } from "../../src/compute/process/netns.ts";
import { groupMembers, processAlive, procStat, signalGroup } from "../../src/compute/process/proc.ts";
import { IDENTITY_FILE, ProcessProvider } from "../../src/compute/process/process-provider.ts";
import type { InstanceInfo, InstanceSpec } from "../../src/compute/provider.ts";
import { SwitchbackError } from "../../src/domain/errors.ts";
import type { Lab, LabSite } from "../../src/lab/lab.ts";
import { cli, privilegedSkipReason, tempDir } from "../helpers/env.ts";

const skip = privilegedSkipReason(["losetup", "mkfs.ext4", "mount", "ip", "nsenter", "unshare", "curl"]);
/** this file's own lab: other tests on this host use bases 70 and 80 */
const LAB = "sbp";
const BASE = "90";
const MiB = 1024 * 1024;
const PORT = 8080;

/** Serves `$WHO` on port 8080 and exits on SIGTERM. */
const SERVE = `exec "$NODE_BIN" -e 'process.on("SIGTERM",()=>process.exit(0));require("http").createServer((q,s)=>s.end(process.env.WHO)).listen(${PORT})'`;

function code(err: unknown): string {
  return err instanceof SwitchbackError ? err.code : String(err);
}

function sh(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `losetup -j IMAGE`: the loop devices over an image file now. */
function loopsOf(image: string): string[] {
  if (!existsSync(image)) return []; // losetup -j fails on a missing file; loopsUnder finds those of deleted images
  const r = sh("losetup", ["-j", image]);
  assert.equal(r.status, 0, `losetup -j ${image}: ${r.stderr}`);
  return [...r.stdout.matchAll(/^(\/dev\/loop\d+):/gm)].map((m) => m[1] as string);
}

/** Loop devices whose backing file is under `dir` (also finds those of deleted images). */
function loopsUnder(dir: string): string[] {
  const r = sh("losetup", ["--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"]);
  return r.stdout
    .split("\n")
    .map((l) => l.split(" "))
    .filter(([, file]) => file?.startsWith(`${dir}/`))
    .map(([name]) => name as string);
}

/** Named network namespaces of instance `id` (its namespace is "<network's namespace>.<id>"). */
function netnsOf(id: string): string[] {
  return readdirSync("/run/netns").filter((n) => n.endsWith(`.${id}`));
}

/**
 * The body of http://ip:8080/ from `netns` (null: the host), or null when nothing answers within
 * `timeoutS` (an address nobody holds costs the whole timeout: ARP gets no answer).
 */
function httpBody(netns: string | null, ip: string, timeoutS = 2): string | null {
  const curl = ["curl", "-s", "-f", "-m", String(timeoutS), `http://${ip}:${PORT}/`];
  const r =
    netns === null ? sh("curl", curl.slice(1)) : sh("nsenter", [`--net=/run/netns/${netns}`, "--", ...curl]);
  return r.status === 0 ? r.stdout : null;
}

async function answers(netns: string | null, ip: string, want: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  let got = httpBody(netns, ip);
  while (got !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    got = httpBody(netns, ip);
  }
  assert.equal(got, want, `http://${ip}:${PORT}/ from ${netns ?? "the host"}`);
}

/** The address of eth0 in a namespace, as `ip -4 -o addr` prints it ("a.b.c.d/n"). */
function eth0Of(netns: string): string | null {
  const r = sh("ip", ["-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"]);
  return /inet (\S+)/.exec(r.stdout)?.[1] ?? null;
}

/** Mount points listed in a mountinfo text, with their file system type and source. */
function mountsIn(mountinfo: string): Map<string, { fstype: string; source: string }> {
  const out = new Map<string, { fstype: string; source: string }>();
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (left === undefined || right === undefined) continue;
    const at = left.split(" ")[4] as string;
    const [fstype, source] = right.split(" ");
    out.set(at, { fstype: fstype as string, source: source as string });
  }
  return out;
}

/** Reads files off an ext4 image with a read-only mount in a private mount namespace. */
async function readFromImage(image: string, files: string[], dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const sep = "\n--8<--\n";
  const r = sh("unshare", [
    "--mount",
    "--propagation",
    "private",
    "--",
    "sh",
    "-ec",
    'img="$1"; at="$2"; shift 2; mount -o ro,loop "$img" "$at"; for f; do cat "$at/$f"; printf "\\n--8<--\\n"; done; umount "$at"',
    "sh",
    image,
    dir,
    ...files,
  ]);
  assert.equal(r.status, 0, `reading ${files.join(", ")} off ${image}: ${r.stderr}`);
  // the loop device of that mount goes when it is unmounted; wait, so later checks see only the provider's
  const deadline = Date.now() + 5000;
  while (loopsOf(image).length > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  assert.deepEqual(loopsOf(image), [], `the read-only mount's loop device of ${image} is gone`);
  return r.stdout.split(sep).slice(0, files.length);
}

describe("process provider, privileged mode: namespaces, loop devices, site networks", {
  skip,
  timeout: 120_000,
}, () => {
  const tmp = tempDir("sb-pp-priv-");
  const root = path.join(tmp.dir, "machines");
  let site: LabSite;
  let provider: ProcessProvider;
  /** every instance this file creates: `after` deletes them whatever failed */
  const created = new Set<string>();
  /** every run this file started (leader pid → start time): killed in `after` if delete could not */
  const runs = new Map<number, string>();
  const addr = (host: number) => site.subnet.replace(/\.0\/24$/, `.${host}`);

  async function create(spec: InstanceSpec): Promise<InstanceInfo> {
    created.add(spec.id);
    return provider.create(spec);
  }

  async function start(id: string): Promise<InstanceInfo> {
    const info = await provider.start(id);
    if (info.pid !== null) {
      const st = procStat(info.pid);
      if (st !== null) runs.set(info.pid, st.startTime);
    }
    return info;
  }

  /** A small machine: one blank disk, no mounts, serving `who`. */
  const server = (id: string, who: string, network: InstanceSpec["network"]): InstanceSpec => ({
    id,
    name: id,
    disks: [{ from: "blank", sizeBytes: MiB }],
    bootCommand: SERVE,
    env: { WHO: who, NODE_BIN: process.execPath },
    ...(network !== undefined ? { network } : {}),
  });

  /** After its run: no process of it, no loop device over its images, no namespace of it. */
  function released(info: InstanceInfo, what: string): void {
    for (const d of info.disks) assert.deepEqual(loopsOf(d), [], `${what}: no loop device over ${d}`);
    assert.deepEqual(loopsUnder(info.folder), [], `${what}: no loop device over a file in ${info.folder}`);
    assert.deepEqual(netnsOf(info.id), [], `${what}: no namespace of ${info.id} in /run/netns`);
  }

  before(async () => {
    const r = await cli([
      "lab",
      "up",
      "--name",
      LAB,
      "--base",
      BASE,
      "--sites",
      "here,there",
      "--replace",
      "--json",
    ]);
    assert.equal(r.code, 0, `lab up: ${r.stderr}`);
    const lab = JSON.parse(r.stdout) as Lab;
    site = lab.sites[0] as LabSite;
    assert.equal(site.name, "here");
    provider = new ProcessProvider({ root, networks: readSiteNetworks(site.networksFile) });
    assert.equal(provider.privileged, true);
  });

  after(async () => {
    for (const id of created) {
      await provider?.delete(id, { timeoutMs: 1000 }).catch((err: unknown) => {
        console.error(`after: delete ${id}: ${(err as Error).message}`);
      });
    }
    // only if a delete failed: what this file started, by leader pid and start time
    for (const [pid, startTime] of runs) {
      if (groupMembers(pid, startTime).length > 0) signalGroup(pid, "SIGKILL");
    }
    for (const loop of loopsUnder(tmp.dir)) sh("losetup", ["--detach", loop]);
    const down = await cli(["lab", "down", "--name", LAB]);
    if (down.code !== 0) console.error(`after: lab down: ${down.stderr}`);
    tmp.cleanup();
  });

  test("a machine with ext4 root and data disks: its address, its own mounts, its loop devices; stop releases them", async () => {
    const ip = addr(10);
    const info = await create({
      id: "ppt-web",
      name: "web",
      disks: [
        { from: "blank", sizeBytes: 32 * MiB, filesystem: "ext4" },
        { from: "blank", sizeBytes: 48 * MiB, filesystem: "ext4" },
      ],
      mounts: [
        { disk: 0, at: "/" },
        { disk: 1, at: "/data" },
      ],
      network: { ip },
      env: { WHO: "web", NODE_BIN: process.execPath },
      bootCommand: [
        'd="$SWITCHBACK_ROOT/data"',
        'printf "%s\\n" "ip=$SWITCHBACK_IP" "disks=$SWITCHBACK_DISKS" "root=$SWITCHBACK_ROOT" "identity=$SWITCHBACK_IDENTITY_FILE" > "$d/hello"',
        'ip -4 -o addr show dev eth0 > "$d/addr"',
        'cat /proc/self/mountinfo > "$d/mounts"',
        SERVE,
      ].join("\n"),
    });
    assert.equal(info.state, "stopped");
    assert.equal(info.network, null, "no network before its first run");
    const machineRoot = path.join(info.folder, "root");
    const netns = `${site.netns}.ppt-web`;

    const run = await start("ppt-web");
    assert.equal(run.state, "running");
    assert.ok(run.pid !== null && processAlive(run.pid));
    assert.deepEqual(run.network, { name: "prod", ip, netns });
    assert.ok(existsSync(`/run/netns/${netns}`));
    await answers(site.netns, ip, "web");
    await answers(null, ip, "web");
    assert.equal(eth0Of(netns), `${ip}/24`);

    const loops = info.disks.map((d) => loopsOf(d));
    for (const [n, l] of loops.entries()) assert.equal(l.length, 1, `one loop device over disk ${n}: ${l}`);
    const hostMounts = mountsIn(readFileSync("/proc/self/mountinfo", "utf8"));
    assert.equal(hostMounts.has(machineRoot), false, "the machine's root is not mounted on the host");
    assert.equal(hostMounts.has(`${machineRoot}/data`), false, "nor its data disk");
    // the machine's own view of its root, through its leader's /proc entry
    const seen = mountsIn(readFileSync(`/proc/${run.pid}/mountinfo`, "utf8"));
    assert.equal(seen.get(machineRoot)?.source, loops[0]![0]);

    const t = performance.now();
    assert.deepEqual(await provider.stop("ppt-web", { timeoutMs: 5000 }), {
      graceful: true,
      wasRunning: true,
    });
    assert.ok(performance.now() - t < 4000, "node exits on SIGTERM: the stop does not wait for the timeout");
    assert.equal(processAlive(run.pid), false);
    const st = await provider.status("ppt-web");
    assert.equal(st?.state, "stopped");
    assert.deepEqual(st?.network, { name: "prod", ip, netns }, "status keeps the last run's network");
    assert.equal(existsSync(`/run/netns/${netns}`), false, "its namespace is gone");
    released(info, "after stop");
    assert.equal(httpBody(site.netns, ip, 1), null, "nothing answers at its address");

    const [hello, addrFile, mountinfo] = await readFromImage(
      info.disks[1]!,
      ["hello", "addr", "mounts"],
      path.join(tmp.dir, "read"),
    );
    const env = Object.fromEntries(
      hello!
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    assert.deepEqual(env, {
      ip,
      disks: `${loops[0]![0]}:${loops[1]![0]}`,
      root: machineRoot,
      identity: path.join(machineRoot, IDENTITY_FILE),
    });
    assert.match(env.disks!, /^\/dev\/loop\d+:\/dev\/loop\d+$/);
    assert.match(addrFile!, new RegExp(`\\beth0\\s+inet ${ip.replaceAll(".", "\\.")}/24\\b`));
    const inside = mountsIn(mountinfo!);
    assert.deepEqual(inside.get(machineRoot), { fstype: "ext4", source: loops[0]![0] });
    assert.deepEqual(inside.get(`${machineRoot}/data`), { fstype: "ext4", source: loops[1]![0] });
  });

  test("without an address a machine gets a free one and keeps it from run to run", async () => {
    // ppt-tmp takes the first free address after ppt-web's .10, so ppt-auto gets the next; once
    // ppt-tmp is gone, a fresh choice for ppt-auto would be .11: a restart must keep .12
    await create(server("ppt-tmp", "tmp", undefined));
    const tmpRun = await start("ppt-tmp");
    assert.equal(tmpRun.network?.ip, addr(11));
    const auto = await create(server("ppt-auto", "auto", undefined));
    const first = await start("ppt-auto");
    assert.equal(first.network?.ip, addr(12), "the first free address: .10 and .11 are taken");
    assert.notEqual(first.network?.ip, addr(10), "not ppt-web's address while both exist");
    await answers(site.netns, addr(12), "auto");
    await provider.delete("ppt-tmp", { timeoutMs: 5000 });
    created.delete("ppt-tmp");

    assert.deepEqual(await provider.stop("ppt-auto", { timeoutMs: 5000 }), {
      graceful: true,
      wasRunning: true,
    });
    released(auto, "ppt-auto stopped");
    const second = await start("ppt-auto");
    assert.equal(second.state, "running");
    assert.deepEqual(second.network, first.network, "the address of its last run");
    assert.equal(eth0Of(`${site.netns}.ppt-auto`), `${addr(12)}/24`);
    await answers(site.netns, addr(12), "auto");
    assert.equal(httpBody(site.netns, addr(11), 1), null, "nothing at the address it did not take");
    assert.deepEqual(await provider.stop("ppt-auto", { timeoutMs: 5000 }), {
      graceful: true,
      wasRunning: true,
    });
    released(auto, "ppt-auto stopped again");
  });

  test("a boot command that ignores SIGTERM is killed after the timeout, its group gone, its disks released", async () => {
    const info = await create({
      id: "ppt-stubborn",
      name: "stubborn",
      disks: [{ from: "blank", sizeBytes: MiB }],
      bootCommand: "trap '' TERM; while :; do sleep 1; done",
    });
    const run = await start("ppt-stubborn");
    const pid = run.pid!;
    const startTime = procStat(pid)!.startTime;
    assert.ok(groupMembers(pid, startTime).length >= 1);
    assert.equal(loopsOf(info.disks[0]!).length, 1);
    assert.deepEqual(netnsOf("ppt-stubborn"), [`${site.netns}.ppt-stubborn`]);
    await new Promise((r) => setTimeout(r, 300)); // the trap is set before TERM comes
    const t = performance.now();
    const s = await provider.stop("ppt-stubborn", { timeoutMs: 1000 });
    const took = performance.now() - t;
    assert.deepEqual(s, { graceful: false, wasRunning: true });
    assert.ok(took >= 950, `stopped after ${Math.round(took)} ms, before the timeout`);
    assert.deepEqual(groupMembers(pid, startTime), [], "no process of its group is left");
    assert.equal(processAlive(pid), false);
    released(info, "after a forced stop");
    await provider.delete("ppt-stubborn");
    created.delete("ppt-stubborn");
  });

  test("a drill copy joins the test network: the same address as production, each answering in its own network", async () => {
    const ip = addr(50);
    await create(server("ppt-prod", "production", { ip }));
    await create(server("ppt-drill", "drill", { ip, drill: true }));
    const prod = await start("ppt-prod");
    const drill = await start("ppt-drill");
    assert.deepEqual(prod.network, { name: "prod", ip, netns: `${site.netns}.ppt-prod` });
    assert.deepEqual(drill.network, { name: "test", ip, netns: `${site.testNetns}.ppt-drill` });
    assert.equal(eth0Of(`${site.testNetns}.ppt-drill`), `${ip}/24`);
    await answers(site.netns, ip, "production");
    await answers(site.testNetns, ip, "drill");
    await answers(null, ip, "production");
    for (const id of ["ppt-prod", "ppt-drill"]) {
      const info = (await provider.status(id))!;
      await provider.delete(id, { timeoutMs: 5000 });
      created.delete(id);
      released(info, `${id} deleted`);
    }
  });

  test("bad network settings name what is wrong and leave no namespace, loop device or process", async () => {
    const cases: { id: string; network: InstanceSpec["network"]; code: string; says: RegExp }[] = [
      {
        id: "ppt-bad-net",
        network: { name: "nope" },
        code: "NETWORK_NOT_FOUND",
        says: /network nope.*site here.*it has prod, test/,
      },
      {
        id: "ppt-bad-subnet",
        network: { ip: "192.0.2.10" },
        code: "ADDRESS_NOT_IN_SUBNET",
        says: new RegExp(
          `192\\.0\\.2\\.10 is not in network prod's subnet ${site.subnet.replaceAll(".", "\\.")}`,
        ),
      },
      {
        id: "ppt-bad-gw",
        network: { ip: site.gateway },
        code: "ADDRESS_IS_GATEWAY",
        says: new RegExp(`${site.gateway.replaceAll(".", "\\.")} is the gateway of network prod`),
      },
      {
        id: "ppt-bad-bcast",
        network: { ip: site.subnet.replace(/\.0\/24$/, ".255") },
        code: "ADDRESS_NOT_USABLE",
        says: /is the broadcast address of/,
      },
      {
        id: "ppt-bad-netaddr",
        network: { ip: site.subnet.replace(/\/24$/, "") },
        code: "ADDRESS_NOT_USABLE",
        says: /is the network address of/,
      },
      {
        id: "ppt-bad-octet",
        network: { ip: site.subnet.replace(/\.\d+\.0\/24$/, ".0.266") },
        code: "INVALID_ADDRESS",
        says: /is not an IPv4 address/,
      },
    ];
    for (const c of cases) {
      const info = await create({
        ...server(c.id, c.id, c.network),
        disks: [{ from: "blank", sizeBytes: 8 * MiB, filesystem: "ext4" }],
        mounts: [{ disk: 0, at: "/" }],
      });
      await assert.rejects(start(c.id), (err: unknown) => {
        assert.equal(code(err), c.code, String(err));
        assert.match((err as Error).message, c.says);
        return true;
      });
      const st = await provider.status(c.id);
      assert.equal(st?.state, "stopped", c.id);
      assert.equal(st?.pid, null, c.id);
      assert.equal(st?.network, null, `${c.id}: no network recorded`);
      assert.equal(existsSync(path.join(info.folder, "console.log")), false, `${c.id}: nothing was booted`);
      released(info, c.id);
      await provider.delete(c.id);
      created.delete(c.id);
    }
    // an address a running machine holds on the same network is refused (a failover copy takes an
    // address over at another site, or once the holder stopped)
    const ip = site.subnet.replace(/\.0\/24$/, ".77");
    for (const id of ["ppt-holder", "ppt-clash"]) {
      await create({
        ...server(id, id, { ip }),
        disks: [{ from: "blank", sizeBytes: 8 * MiB, filesystem: "ext4" }],
        mounts: [{ disk: 0, at: "/" }],
      });
    }
    await start("ppt-holder");
    await assert.rejects(start("ppt-clash"), (err: unknown) => {
      assert.equal(code(err), "ADDRESS_IN_USE", String(err));
      assert.match((err as Error).message, /held by running instance ppt-holder/);
      return true;
    });
    released((await provider.status("ppt-clash"))!, "ppt-clash refused");
    await provider.stop("ppt-holder", { timeoutMs: 5000 });
    await start("ppt-clash");
    assert.equal((await provider.status("ppt-clash"))?.network?.ip, ip, "free again once the holder stopped");
    for (const id of ["ppt-holder", "ppt-clash"]) {
      await provider.delete(id, { timeoutMs: 5000 });
      created.delete(id);
    }
  });

  test("writeRootFile writes onto a stopped machine's root file system and refuses a running one", async () => {
    const info = (await provider.status("ppt-web"))!;
    assert.equal(info.state, "stopped");
    const identity = `${JSON.stringify({ instance: "ppt-web", generation: 1 })}\n`;
    await provider.writeRootFile("ppt-web", IDENTITY_FILE, identity);
    released(info, "after writeRootFile");
    const [onDisk] = await readFromImage(info.disks[0]!, [IDENTITY_FILE], path.join(tmp.dir, "read"));
    assert.equal(onDisk, identity);

    const run = await start("ppt-web");
    await answers(site.netns, run.network!.ip, "web");
    const seen = `/proc/${run.pid}/root${path.join(info.folder, "root", IDENTITY_FILE)}`;
    assert.equal(readFileSync(seen, "utf8"), identity, "the machine sees it on its root file system");
    await assert.rejects(
      provider.writeRootFile("ppt-web", IDENTITY_FILE, "{}\n"),
      (err: unknown) => code(err) === "INSTANCE_RUNNING",
    );
    assert.equal(readFileSync(seen, "utf8"), identity, "a refused write changes nothing");
    assert.equal((await provider.status("ppt-web"))?.state, "running");
    for (const d of info.disks) assert.equal(loopsOf(d).length, 1, `still one loop device over ${d}`);
  });

  test("delete stops a running machine and leaves no folder, loop device or namespace", async () => {
    const info = (await provider.status("ppt-web"))!;
    assert.equal(info.state, "running");
    const pid = info.pid!;
    await provider.delete("ppt-web", { timeoutMs: 5000 });
    created.delete("ppt-web");
    assert.equal(processAlive(pid), false);
    assert.equal(existsSync(info.folder), false, "its folder is gone");
    assert.equal(await provider.status("ppt-web"), null);
    released(info, "after delete");

    const auto = (await provider.status("ppt-auto"))!;
    await provider.delete("ppt-auto");
    created.delete("ppt-auto");
    released(auto, "ppt-auto deleted");
    assert.deepEqual(readdirSync(root), [], "no instance folder is left");
    assert.deepEqual(loopsUnder(tmp.dir), []);
  });
});

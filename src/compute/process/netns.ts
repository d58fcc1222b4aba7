// Network namespaces, veth pairs and loop devices for privileged `process` machines (docs/vault.md,
// "Machines in privileged mode"). Everything here runs the system's own tools (`ip`, `losetup`,
// `mount`) so that what an operator sees with them is what Switchback did: a machine is a named
// network namespace (/run/netns/<name>) whose `eth0` is one end of a veth pair, the other end a port
// of its network's bridge in the site's namespace; its disks are loop devices over its image files.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { SwitchbackError } from "../../domain/errors.ts";

/** One network of a site: a bridge in a namespace, with a subnet and the gateway address on the bridge. */
export const SiteNetworkSchema = Type.Object({
  name: Type.String({ pattern: "^[A-Za-z0-9._-]{1,64}$" }),
  /** the namespace the bridge lives in */
  netns: Type.String({ pattern: "^[A-Za-z0-9._-]{1,64}$" }),
  bridge: Type.String({ pattern: "^[A-Za-z0-9._-]{1,15}$" }),
  /** a.b.c.d/n */
  subnet: Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$" }),
  gateway: Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$" }),
  /** a test network: no route to anywhere else (drills) */
  isolated: Type.Boolean(),
});
export type SiteNetwork = Static<typeof SiteNetworkSchema>;

/** What a site's appliance needs to run privileged machines: its networks and its edge. */
export const SiteNetworksSchema = Type.Object({
  version: Type.Literal(1),
  site: Type.String(),
  networks: Type.Array(SiteNetworkSchema, { minItems: 1 }),
  /** the network a machine joins when its settings name none */
  defaultNetwork: Type.String(),
  /** the network drill copies join */
  testNetwork: Type.String(),
  /** the site's edge: public ports are forwarded from this address, inside this namespace */
  edge: Type.Object({ netns: Type.String(), address: Type.String() }),
});
export type SiteNetworks = Static<typeof SiteNetworksSchema>;

export function readSiteNetworks(file: string): SiteNetworks {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new SwitchbackError(
      "SITE_NETWORKS_UNREADABLE",
      `site networks file ${file} cannot be read as JSON (${(err as Error).message}); 'switchback lab up' writes one per site`,
    );
  }
  if (!Value.Check(SiteNetworksSchema, raw)) {
    const e = [...Value.Errors(SiteNetworksSchema, raw)][0];
    throw new SwitchbackError(
      "SITE_NETWORKS_INVALID",
      `site networks file ${file} is not valid (${e ? `${e.path || "/"}: ${e.message}` : "?"})`,
    );
  }
  const names = new Set(raw.networks.map((n) => n.name));
  for (const want of [raw.defaultNetwork, raw.testNetwork]) {
    if (!names.has(want)) {
      throw new SwitchbackError(
        "SITE_NETWORKS_INVALID",
        `site networks file ${file} names network ${want} as default or test network but defines only ${[...names].join(", ")}`,
      );
    }
  }
  return raw;
}

/** Runs a system tool; its stderr becomes the error's message. */
export function run(
  cmd: string,
  args: string[],
  o: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { encoding: "utf8", maxBuffer: 16 * 1024 * 1024, ...(o.env !== undefined ? { env: o.env } : {}) },
      (err, stdout, stderr) => {
        if (err === null) return resolve(stdout);
        const code = (err as NodeJS.ErrnoException).code;
        reject(
          new SwitchbackError(
            code === "ENOENT" ? "TOOL_MISSING" : "TOOL_FAILED",
            code === "ENOENT"
              ? `${cmd} is not installed; privileged machines need iproute2, util-linux and mount`
              : `${cmd} ${args.join(" ")} failed: ${(stderr || err.message).trim()}`,
          ),
        );
      },
    );
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

export const ip = (...args: string[]) => run("ip", args);

export function netnsExists(name: string): boolean {
  return existsSync(`/run/netns/${name}`);
}

export async function netnsDelete(name: string): Promise<void> {
  if (netnsExists(name)) await ip("netns", "delete", name);
}

/** The host end of a machine's veth pair: a name under the kernel's 15-byte limit, fixed per namespace. */
function vethName(machineNetns: string): string {
  return `sbm${createHash("sha256").update(machineNetns).digest("hex").slice(0, 10)}`;
}

export function prefixOf(subnet: string): number {
  return Number(subnet.split("/")[1]);
}

/** An IPv4 address as a number; throws INVALID_ADDRESS for anything else (an octet above 255, …). */
function toInt(a: string): number {
  const parts = a.split(".");
  if (parts.length !== 4 || parts.some((o) => !/^\d{1,3}$/.test(o) || Number(o) > 255)) {
    throw new SwitchbackError(
      "INVALID_ADDRESS",
      `${JSON.stringify(a)} is not an IPv4 address (four numbers 0-255)`,
    );
  }
  return parts.reduce((n, o) => n * 256 + Number(o), 0) >>> 0;
}

function toAddr(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Whether `addr` lies in `subnet` (a.b.c.d/n). */
function inSubnet(addr: string, subnet: string): boolean {
  const [base, bits] = subnet.split("/") as [string, string];
  const n = Number(bits);
  const mask = n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
  return (toInt(addr) & mask) >>> 0 === (toInt(base) & mask) >>> 0;
}

/** The first host address of `subnet` from .10 on that is not taken (the gateway is taken). */
export function freeAddress(subnet: string, taken: Set<string>): string {
  const [base, bits] = subnet.split("/") as [string, string];
  const size = 2 ** (32 - Number(bits));
  const first = toInt(base);
  for (let i = 10; i < size - 1; i++) {
    const a = toAddr(first + i);
    if (!taken.has(a)) return a;
  }
  throw new SwitchbackError(
    "NETWORK_FULL",
    `no free address left in ${subnet}; give the machine an address in its target settings or use a larger subnet`,
  );
}

/**
 * Makes the machine's namespace `netns` afresh with `eth0` = `address` on `net`'s bridge and a default
 * route through the network's gateway. A namespace left by an earlier run is replaced.
 */
export async function attachMachine(netns: string, net: SiteNetwork, address: string): Promise<void> {
  if (!inSubnet(address, net.subnet)) {
    throw new SwitchbackError(
      "ADDRESS_NOT_IN_SUBNET",
      `address ${address} is not in network ${net.name}'s subnet ${net.subnet}; fix the machine's target settings`,
    );
  }
  const [base, bits] = net.subnet.split("/") as [string, string];
  const hostBits = 32 - Number(bits);
  const offset = (toInt(address) - toInt(base)) >>> 0;
  if (hostBits >= 2 && (offset === 0 || offset === 2 ** hostBits - 1)) {
    throw new SwitchbackError(
      "ADDRESS_NOT_USABLE",
      `address ${address} is the ${offset === 0 ? "network" : "broadcast"} address of ${net.subnet}; give the machine a host address`,
    );
  }
  if (address === net.gateway) {
    throw new SwitchbackError(
      "ADDRESS_IS_GATEWAY",
      `address ${address} is the gateway of network ${net.name}; give the machine another address`,
    );
  }
  if (!netnsExists(net.netns)) {
    throw new SwitchbackError(
      "SITE_NETWORK_MISSING",
      `network ${net.name}'s namespace ${net.netns} does not exist; set the site's networks up first ('switchback lab up')`,
    );
  }
  await netnsDelete(netns);
  const host = vethName(netns);
  // a port left by an earlier run of this machine (its namespace was deleted with the other end)
  await ip("-n", net.netns, "link", "delete", host).catch(() => {});
  await ip("netns", "add", netns);
  try {
    // the address's own MAC: a copy that takes over an address (failover, failback) is reached at
    // once, without waiting for neighbours to give up on a MAC they cached for an earlier copy
    await ip(
      "-n",
      net.netns,
      "link",
      "add",
      host,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "address",
      macOf(address),
      "netns",
      netns,
    );
    await ip("-n", net.netns, "link", "set", host, "master", net.bridge, "up");
    await ip("-n", netns, "link", "set", "lo", "up");
    await ip("-n", netns, "addr", "add", `${address}/${prefixOf(net.subnet)}`, "dev", "eth0");
    await ip("-n", netns, "link", "set", "eth0", "up");
    await ip("-n", netns, "route", "add", "default", "via", net.gateway);
  } catch (err) {
    await netnsDelete(netns).catch(() => {});
    throw err;
  }
}

/** A locally administered unicast MAC made from an IPv4 address: 02:5b:a:b:c:d. */
function macOf(address: string): string {
  return ["02", "5b", ...address.split(".").map((o) => Number(o).toString(16).padStart(2, "0"))].join(":");
}

/** Loop devices attached to `file` now. */
export async function loopsOf(file: string): Promise<string[]> {
  const out = await run("losetup", ["--associated", file, "--noheadings", "--output", "NAME"]).catch(
    () => "",
  );
  return out
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("/dev/"));
}

export async function loopAttach(file: string): Promise<string> {
  return (await run("losetup", ["--find", "--show", file])).trim();
}

/**
 * Detaches every loop device of `file` and waits until the kernel has let go of them (a file system
 * of a namespace that just ended may still be unmounting: until it is, the image must not be touched).
 * A file system frozen for a point when its machine was killed outlives its namespace (the kernel
 * keeps a frozen superblock): it is mounted once more in a namespace of its own, thawed and unmounted.
 */
export async function loopsRelease(file: string, timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let thawed = false;
  for (;;) {
    const loops = await loopsOf(file);
    if (loops.length === 0) return;
    for (const l of loops) await run("losetup", ["--detach", l]).catch(() => {});
    if (!thawed && Date.now() - started > 500) {
      thawed = true;
      for (const l of loops) await thawOrphan(l);
    }
    if (Date.now() > deadline) {
      throw new SwitchbackError(
        "DISK_STILL_ATTACHED",
        `disk ${file} is still attached as ${loops.join(", ")} ${timeoutMs / 1000} s after its machine stopped (mounted elsewhere?); check with 'losetup -a' and 'grep ${loops[0]} /proc/*/mountinfo'`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `unshare` into a mount namespace of its own whose mounts propagate nowhere: then the command. */
export const PRIVATE_MOUNTS = ["unshare", "--mount", "--propagation", "private", "--"];

/** Runs a shell script (`sh -ec`, arguments $1…) in a mount namespace of its own. */
export function inPrivateMounts(script: string, args: string[], o: { input?: string } = {}): Promise<string> {
  const [cmd, ...rest] = PRIVATE_MOUNTS as [string, ...string[]];
  return run(cmd, [...rest, "sh", "-ec", script, "sh", ...args], o);
}

/** Thaws a file system on `dev` that no mount shows any more (see loopsRelease); best effort. */
async function thawOrphan(dev: string): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "sb-thaw-"));
  try {
    await inPrivateMounts(
      'mount "$1" "$2" 2>/dev/null || exit 0; fsfreeze -u "$2" 2>/dev/null || true; umount "$2"',
      [dev, dir],
    ).catch(() => {});
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

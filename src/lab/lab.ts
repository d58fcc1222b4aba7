// Two sites on one host (docs/operations.md, "Two sites on one host"): each site is a network
// namespace holding its production bridge, a router to the other site and an uplink to the host
// (where the vault listens); each site has a test network (a bridge in a namespace of its own with
// the same subnet and no route anywhere) for drills. The sites are linked by a veth pair that can be
// cut and restored, as can each site's uplink; cutting both is losing the site.
//
//   host:  lo 10.B.0.1/32 (the vault)    <lab>u<i> 10.B.<i>.1/30 ── up0 10.B.<i>.2/30 (site i's edge)
//   site i (<lab>-<site>):  br-prod 10.B+1.<i>.1/24 (machines, the appliance)   x0 10.B.100.<i>/30 ── x0 of the other site
//   test network (<lab>-<site>-t):  br-test 10.B+1.<i>.1/24, isolated
// B (the lab's --base, default 70) keeps two labs on one host apart (a test and a benchmark).
//
// The host does not forward: traffic between the sites only ever crosses the link, so cutting it is
// a real partition. Privileged machines get a namespace of their own on a bridge (netns.ts).
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { ip, netnsDelete, netnsExists, run, type SiteNetworks } from "../compute/process/netns.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { writeFileAtomic } from "../platform/files.ts";

export const LAB_DIR = "/run/switchback-lab";
export const DEFAULT_BASE = 70;

export interface LabSite {
  name: string;
  index: number;
  netns: string;
  testNetns: string;
  subnet: string;
  gateway: string;
  /** the host's end of the uplink */
  hostLink: string;
  hostAddress: string;
  /** the site's end of the uplink: its edge */
  edgeAddress: string;
  /** this site's end of the inter-site link */
  linkAddress: string;
  /** where the site's networks are described for its appliance */
  networksFile: string;
}

export interface Lab {
  name: string;
  /** the second octet of its management addresses (the sites' are base + 1) */
  base: number;
  vault: string;
  sites: LabSite[];
}

export function labFile(name: string): string {
  return path.join(LAB_DIR, name, "lab.json");
}

export function readLab(name: string): Lab {
  try {
    return JSON.parse(readFileSync(labFile(name), "utf8")) as Lab;
  } catch {
    throw new SwitchbackError(
      "LAB_NOT_FOUND",
      `lab ${name} is not up; start it with 'switchback lab up --name ${name}'`,
    );
  }
}

/** The labs whose files are on this host. */
export function labsUp(): string[] {
  try {
    return readdirSync(LAB_DIR);
  } catch {
    return [];
  }
}

function checkName(name: string): void {
  if (!/^[a-z][a-z0-9]{0,3}$/.test(name)) {
    throw new SwitchbackError(
      "INVALID_LAB_NAME",
      `lab name ${JSON.stringify(name)} is not valid: 1-4 lowercase letters or digits, starting with a letter (it prefixes interface names, which the kernel limits to 15 bytes)`,
    );
  }
}

function siteNetworks(s: LabSite): SiteNetworks {
  return {
    version: 1,
    site: s.name,
    networks: [
      {
        name: "prod",
        netns: s.netns,
        bridge: "br-prod",
        subnet: s.subnet,
        gateway: s.gateway,
        isolated: false,
      },
      {
        name: "test",
        netns: s.testNetns,
        bridge: "br-test",
        subnet: s.subnet,
        gateway: s.gateway,
        isolated: true,
      },
    ],
    defaultNetwork: "prod",
    testNetwork: "test",
    edge: { netns: s.netns, address: s.edgeAddress },
  };
}

/** Builds the two sites. `replace`: a lab of this name left by an earlier run is torn down first. */
export async function labUp(o: {
  name: string;
  sites?: [string, string];
  replace?: boolean;
  base?: number;
}): Promise<Lab> {
  checkName(o.name);
  if (process.getuid?.() !== 0) {
    throw new SwitchbackError("LAB_NEEDS_ROOT", "the lab makes network namespaces and links: run it as root");
  }
  const names = o.sites ?? ["primary", "recovery"];
  if (names[0] === names[1])
    throw new SwitchbackError("INVALID_OPTION", "the lab's two sites need two names");
  const base = o.base ?? DEFAULT_BASE;
  if (!Number.isInteger(base) || base < 1 || base > 253) {
    throw new SwitchbackError("INVALID_OPTION", `--base ${base} is not a whole number from 1 to 253`);
  }
  // a lab of this name, or one on these addresses, goes first (with replace)
  const clash = labsUp().filter((l) => {
    if (l === o.name) return true;
    try {
      const b = readLab(l).base ?? DEFAULT_BASE;
      return Math.abs(b - base) <= 1;
    } catch {
      return false;
    }
  });
  if (netnsExists(`${o.name}-${names[0]}`) && !clash.includes(o.name)) clash.push(o.name);
  if (clash.length > 0) {
    if (o.replace !== true) {
      throw new SwitchbackError(
        "LAB_EXISTS",
        `lab ${clash.join(", ")} is up already on these names or addresses; take it down first, use --replace, or another --base`,
      );
    }
    for (const l of clash) await labDown(l);
  }
  const mgmt = `10.${base}`;
  const sub = `10.${base + 1}`;
  const vaultAddress = `${mgmt}.0.1`;
  const routes = await ip("-4", "route", "show");
  const addrs = await ip("-4", "-o", "addr", "show");
  const inUse = new RegExp(`\\b10\\.(${base}|${base + 1})\\.`);
  if (inUse.test(routes) || inUse.test(addrs)) {
    throw new SwitchbackError(
      "LAB_ADDRESSES_IN_USE",
      `the lab's addresses (${mgmt}.0.0/16, ${sub}.0.0/16) are already used on this host (another lab, or a network of this host); take that down first or choose another --base`,
    );
  }
  const lab: Lab = {
    name: o.name,
    base,
    vault: vaultAddress,
    sites: names.map((name, n) => {
      const i = n + 1;
      return {
        name,
        index: i,
        netns: `${o.name}-${name}`,
        testNetns: `${o.name}-${name}-t`,
        subnet: `${sub}.${i}.0/24`,
        gateway: `${sub}.${i}.1`,
        hostLink: `${o.name}u${i}`,
        hostAddress: `${mgmt}.${i}.1`,
        edgeAddress: `${mgmt}.${i}.2`,
        linkAddress: `${mgmt}.100.${i}`,
        networksFile: path.join(LAB_DIR, o.name, `${name}.json`),
      };
    }),
  };
  mkdirSync(path.join(LAB_DIR, o.name), { recursive: true });
  // written first: a lab that fails half-way is taken down by what it says
  writeFileAtomic(labFile(o.name), `${JSON.stringify(lab, null, 2)}\n`);
  try {
    await ip("addr", "add", `${lab.vault}/32`, "dev", "lo");
    for (const s of lab.sites) {
      await ip("netns", "add", s.netns);
      await ip("netns", "add", s.testNetns);
      for (const ns of [s.netns, s.testNetns]) {
        await ip("-n", ns, "link", "set", "lo", "up");
        await run("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
      }
      // production and test bridges: the same subnet and gateway, never connected
      await ip("-n", s.netns, "link", "add", "br-prod", "type", "bridge");
      await ip("-n", s.netns, "addr", "add", `${s.gateway}/24`, "dev", "br-prod");
      await ip("-n", s.netns, "link", "set", "br-prod", "up");
      await ip("-n", s.testNetns, "link", "add", "br-test", "type", "bridge");
      await ip("-n", s.testNetns, "addr", "add", `${s.gateway}/24`, "dev", "br-test");
      await ip("-n", s.testNetns, "link", "set", "br-test", "up");
      // the uplink to the host
      await ip("link", "add", s.hostLink, "type", "veth", "peer", "name", "up0", "netns", s.netns);
      await ip("addr", "add", `${s.hostAddress}/30`, "dev", s.hostLink);
      await ip("link", "set", s.hostLink, "up");
      await ip("-n", s.netns, "addr", "add", `${s.edgeAddress}/30`, "dev", "up0");
      await ip("-n", s.netns, "link", "set", "up0", "up");
      await ip("route", "add", s.subnet, "via", s.edgeAddress);
      await ip("-n", s.netns, "route", "add", `${lab.vault}/32`, "via", s.hostAddress);
    }
    const [a, b] = lab.sites as [LabSite, LabSite];
    await ip("-n", a.netns, "link", "add", "x0", "type", "veth", "peer", "name", "x0", "netns", b.netns);
    for (const s of lab.sites) await ip("-n", s.netns, "addr", "add", `${s.linkAddress}/30`, "dev", "x0");
    await restoreInterSite(lab);
    for (const s of lab.sites)
      writeFileAtomic(s.networksFile, `${JSON.stringify(siteNetworks(s), null, 2)}\n`);
    writeFileAtomic(labFile(o.name), `${JSON.stringify(lab, null, 2)}\n`);
  } catch (err) {
    await labDown(o.name).catch(() => {});
    throw err;
  }
  return lab;
}

async function restoreInterSite(lab: Lab): Promise<void> {
  const [a, b] = lab.sites as [LabSite, LabSite];
  for (const [s, other] of [
    [a, b],
    [b, a],
  ] as const) {
    await ip("-n", s.netns, "link", "set", "x0", "up");
    await ip("-n", s.netns, "route", "replace", other.subnet, "via", other.linkAddress, "dev", "x0");
  }
}

function siteOf(lab: Lab, name: string): LabSite {
  const s = lab.sites.find((x) => x.name === name);
  if (s === undefined) {
    throw new SwitchbackError(
      "LAB_SITE_NOT_FOUND",
      `lab ${lab.name} has no site ${name}; its sites are ${lab.sites.map((x) => x.name).join(" and ")}`,
    );
  }
  return s;
}

function parseLink(lab: Lab, link: string): { interSite: boolean; uplinks: LabSite[] } {
  if (link === "inter-site") return { interSite: true, uplinks: [] };
  const [kind, site] = link.split(":");
  if (kind === "uplink" && site !== undefined) return { interSite: false, uplinks: [siteOf(lab, site)] };
  if (kind === "site" && site !== undefined) return { interSite: true, uplinks: [siteOf(lab, site)] };
  throw new SwitchbackError(
    "INVALID_LAB_LINK",
    `link ${JSON.stringify(link)} is not one of: inter-site, uplink:<site> (the site and the vault), site:<site> (both: the site is lost)`,
  );
}

/** Cuts a link: packets are dropped, as on a real cable pulled (no reset reaches either side). */
export async function labCut(name: string, link: string): Promise<void> {
  const lab = readLab(name);
  const p = parseLink(lab, link);
  if (p.interSite) for (const s of lab.sites) await ip("-n", s.netns, "link", "set", "x0", "down");
  for (const s of p.uplinks) await ip("-n", s.netns, "link", "set", "up0", "down");
}

export async function labRestore(name: string, link: string): Promise<void> {
  const lab = readLab(name);
  const p = parseLink(lab, link);
  if (p.interSite) await restoreInterSite(lab);
  for (const s of p.uplinks) {
    await ip("-n", s.netns, "link", "set", "up0", "up");
    await ip("-n", s.netns, "route", "replace", `${lab.vault}/32`, "via", s.hostAddress);
  }
}

/** Which links are up now. */
export async function labStatus(name: string): Promise<{ lab: Lab; links: Record<string, boolean> }> {
  const lab = readLab(name);
  const links: Record<string, boolean> = {};
  const up = async (ns: string, dev: string) =>
    /state UP|,UP[,>]/.test(await ip("-n", ns, "link", "show", dev));
  links["inter-site"] = (await Promise.all(lab.sites.map((s) => up(s.netns, "x0")))).every(Boolean);
  for (const s of lab.sites) links[`uplink:${s.name}`] = await up(s.netns, "up0");
  return { lab, links };
}

/**
 * Removes the lab's namespaces (machines' namespaces under them included), links, routes and files.
 * Processes still running inside a namespace keep it alive until they end: stop machines first.
 */
export async function labDown(name: string): Promise<void> {
  checkName(name);
  let lab: Lab | null = null;
  try {
    lab = readLab(name);
  } catch {
    lab = null;
  }
  let names: string[] = [];
  try {
    names = readdirSync("/run/netns");
  } catch {
    names = [];
  }
  for (const ns of names) if (ns.startsWith(`${name}-`)) await netnsDelete(ns).catch(() => {});
  for (const i of [1, 2]) await ip("link", "delete", `${name}u${i}`).catch(() => {});
  if (lab !== null) await ip("addr", "delete", `${lab.vault}/32`, "dev", "lo").catch(() => {});
  rmSync(path.join(LAB_DIR, name), { recursive: true, force: true });
}

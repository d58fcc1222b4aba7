// Checks the portal makes before it sends anything, each naming what is wrong in words. They mirror
// the API's own rules (which still decide) and add the mistakes the API cannot see in one field, such
// as an IP address outside its subnet or a test network that is the production network.

export type Errors<K extends string> = Partial<Record<K, string>>;

const NAME = /^[A-Za-z0-9._-]+$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseIpv4(s: string): number | null {
  const m = IPV4.exec(s.trim());
  if (m === null) return null;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return null;
  return (
    ((o[0] as number) * 2 ** 24 +
      (o[1] as number) * 2 ** 16 +
      (o[2] as number) * 2 ** 8 +
      (o[3] as number)) >>>
    0
  );
}

export function parseSubnet(s: string): { base: number; prefix: number } | null {
  const [ip, len] = s.trim().split("/");
  if (ip === undefined || len === undefined || !/^\d{1,2}$/.test(len)) return null;
  const prefix = Number(len);
  const base = parseIpv4(ip);
  if (base === null || prefix > 32) return null;
  return { base, prefix };
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** What the form holds: every field as typed (strings), "" meaning "leave as it is / unset". */
export interface TargetSettingsDraft {
  targetName: string;
  cpus: string;
  memoryMiB: string;
  network: string;
  subnet: string;
  ip: string;
  testNetwork: string;
  publicPort: string;
  servicePort: string;
}

export type TargetSettingsField = keyof TargetSettingsDraft;

function port(v: string, what: string): string | undefined {
  if (v === "") return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535)
    return `${what} must be a whole number from 1 to 65535`;
  return undefined;
}

export function validateTargetSettings(d: TargetSettingsDraft): Errors<TargetSettingsField> {
  const e: Errors<TargetSettingsField> = {};
  if (d.targetName !== "" && (!NAME.test(d.targetName) || d.targetName.length > 64)) {
    e.targetName = "use 1 to 64 letters, digits, dots, dashes or underscores";
  }
  if (d.cpus !== "" && (!/^\d+$/.test(d.cpus) || Number(d.cpus) < 1 || Number(d.cpus) > 1024)) {
    e.cpus = "CPUs must be a whole number from 1 to 1024";
  }
  if (d.memoryMiB !== "" && (!/^\d+$/.test(d.memoryMiB) || Number(d.memoryMiB) < 16)) {
    e.memoryMiB = "memory must be a whole number of MiB, at least 16";
  }
  for (const k of ["network", "testNetwork"] as const) {
    if (d[k].length > 64) e[k] = "at most 64 characters";
  }
  const subnet = d.subnet === "" ? null : parseSubnet(d.subnet);
  if (d.subnet !== "" && subnet === null)
    e.subnet = "write the subnet as an IPv4 network and prefix, e.g. 10.1.2.0/24";
  if (subnet !== null && (subnet.base & ~mask(subnet.prefix)) >>> 0 !== 0) {
    e.subnet = `that is an address inside a network, not the network itself (did you mean ${ipText((subnet.base & mask(subnet.prefix)) >>> 0)}/${subnet.prefix}?)`;
  }
  const ip = d.ip === "" ? null : parseIpv4(d.ip);
  if (d.ip !== "" && ip === null) e.ip = "write an IPv4 address, e.g. 10.1.2.15";
  if (ip !== null && subnet !== null && e.subnet === undefined) {
    const m = mask(subnet.prefix);
    if ((ip & m) >>> 0 !== subnet.base) e.ip = `${d.ip} is not inside ${d.subnet}`;
    else if (subnet.prefix < 31 && (ip === subnet.base || ip === (subnet.base | ~m) >>> 0)) {
      e.ip = `${d.ip} is the ${ip === subnet.base ? "network" : "broadcast"} address of ${d.subnet}; pick a host address`;
    }
  }
  if (d.testNetwork !== "" && d.network !== "" && d.testNetwork === d.network) {
    e.testNetwork =
      "a drill on the production network would clash with the running machine; pick an isolated network";
  }
  const pp = port(d.publicPort, "the public port");
  if (pp !== undefined) e.publicPort = pp;
  const sp = port(d.servicePort, "the service port");
  if (sp !== undefined) e.servicePort = sp;
  if (d.servicePort !== "" && d.publicPort === "" && sp === undefined) {
    e.servicePort = "a service port needs a public port to forward from";
  }
  return e;
}

function ipText(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Seconds of a duration as the vault writes them ("72h", "1h30m", "500ms"), or null. */
export function parseDurationSeconds(s: string): number | null {
  const t = s.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(t)) return null;
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
  }
  return total;
}

export interface PolicyDraft {
  name: string;
  rpoThreshold: string;
  retention: string;
  crashConsistentEvery: string;
  appConsistentEvery: string;
}

/** The vault's policy rules (src/vault/inventory/policies.ts), said before the request is sent. */
export function validatePolicy(d: PolicyDraft): Errors<keyof PolicyDraft> {
  const e: Errors<keyof PolicyDraft> = {};
  if (!NAME.test(d.name) || d.name.length > 64)
    e.name = "use 1 to 64 letters, digits, dots, dashes or underscores";
  const dur = (k: "rpoThreshold" | "retention" | "crashConsistentEvery") => {
    const v = parseDurationSeconds(d[k]);
    if (v === null) e[k] = "write a duration, e.g. 30s, 15m, 72h or 1h30m";
    else if (v < 1) e[k] = "at least 1s";
    return v;
  };
  const rpo = dur("rpoThreshold");
  const retention = dur("retention");
  const crash = dur("crashConsistentEvery");
  const never = d.appConsistentEvery.trim() === "0" || d.appConsistentEvery.trim() === "none";
  const app = never ? 0 : parseDurationSeconds(d.appConsistentEvery);
  if (app === null) e.appConsistentEvery = "write a duration (4h), or 0 for no app-consistent points";
  if (retention !== null && crash !== null && retention < crash && e.retention === undefined) {
    e.retention = "keep points at least as long as the interval between crash-consistent points";
  }
  if (app !== null && app > 0 && crash !== null && app < crash) {
    e.appConsistentEvery = "app-consistent points cannot come more often than crash-consistent ones";
  }
  if (rpo !== null && crash !== null && crash > rpo && e.crashConsistentEvery === undefined) {
    e.crashConsistentEvery =
      "points this far apart would breach the RPO threshold every time; take them more often";
  }
  return e;
}

// Two real sites on this host for the privileged end-to-end test and `npm run bench:drill`: a lab
// (`switchback lab up`: each site a network namespace with a bridge, linked by a veth pair that can be
// cut), a vault listening on the lab's vault address, and per site a `switchback appliance` process
// inside the site's namespace running privileged machines (network + mount namespaces, loop devices).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { loopsRelease } from "../../src/compute/process/netns.ts";
import { cli, ROOT } from "./env.ts";
import {
  type ApplianceProcess,
  apiOf,
  instanceRecords,
  type Json,
  killMachines,
  startApplianceProcess,
  startVaultProcess,
  type VaultProcess,
} from "./vault.ts";

export const SQL_WORKLOAD = path.join(ROOT, "scripts/sql-workload.ts");
/** What two sites on this host need besides root: loop devices, file systems, namespaces, curl. */
export const TWO_SITES_TOOLS = [
  "losetup",
  "mkfs.ext4",
  "mount",
  "fsfreeze",
  "ip",
  "nsenter",
  "unshare",
  "curl",
];
/** where the workload's service listens in every machine */
export const SERVICE_PORT = 8080;

/** The address `host` (e.g. 10) in a site's /24 subnet. */
export function addressIn(site: LabSiteInfo, host: number): string {
  return site.subnet.replace(/\.0\/24$/, `.${host}`);
}

export interface LabSiteInfo {
  name: string;
  netns: string;
  testNetns: string;
  subnet: string;
  gateway: string;
  edgeAddress: string;
  networksFile: string;
}

export interface TwoSites {
  lab: string;
  sites: [LabSiteInfo, LabSiteInfo];
  vault: VaultProcess;
  api: ReturnType<typeof apiOf>;
  appliances: Map<string, ApplianceProcess>;
  data: string;
  /** the lab's CLI: cut / restore a link */
  cut(link: string): Promise<void>;
  restore(link: string): Promise<void>;
  /** everything the processes said lately, for a failure's message */
  context(): string;
  stop(): Promise<void>;
}

async function labCli(args: string[]): Promise<string> {
  const r = await cli(["lab", ...args]);
  assert.equal(r.code, 0, `lab ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Brings up the lab, the vault and both appliances. `data`: the vault's folder (sites' folders inside). */
export async function startTwoSites(o: {
  lab: string;
  data: string;
  sites?: [string, string];
  /** the lab's address base (10.<base>, 10.<base+1>): two labs on one host need two */
  base?: number;
  vaultArgs?: string[];
  vaultEnv?: NodeJS.ProcessEnv;
}): Promise<TwoSites> {
  const names = o.sites ?? ["east", "west"];
  const lab = JSON.parse(
    await labCli([
      "up",
      "--name",
      o.lab,
      "--sites",
      names.join(","),
      "--base",
      String(o.base ?? 70),
      "--replace",
      "--json",
    ]),
  ) as { vault: string; sites: LabSiteInfo[] };
  const appliances = new Map<string, ApplianceProcess>();
  let vault: VaultProcess | undefined;
  const stop = async () => {
    for (const a of appliances.values()) await a.stop().catch(() => {});
    await vault?.stop().catch(() => {});
    killMachines(o.data);
    await new Promise((r) => setTimeout(r, 300));
    await releaseLoops(o.data);
    await cli(["lab", "down", "--name", o.lab]);
  };
  try {
    vault = await startVaultProcess(o.data, {
      args: ["--host", lab.vault, ...(o.vaultArgs ?? [])],
      ...(o.vaultEnv !== undefined ? { env: o.vaultEnv } : {}),
    });
    const v = vault;
    const api = apiOf(v);
    const env = { SWITCHBACK_VAULT: v.url, SWITCHBACK_TOKEN: v.token };
    for (const s of lab.sites) {
      const site = await cli(["sites", "create", s.name], { env });
      assert.equal(site.code, 0, site.stderr);
      const token = await cli(["appliances", "token", "--name", `${s.name}-appliance`], { env });
      assert.equal(token.code, 0, token.stderr);
      const folder = path.join(o.data, "sites", s.name);
      appliances.set(
        s.name,
        await startApplianceProcess({
          vault: v.url,
          token: token.stdout.trim(),
          name: `${s.name}-appliance`,
          site: s.name,
          datastore: path.join(folder, "datastore"),
          netns: s.netns,
          args: [
            "--listen",
            `${s.gateway}:0`,
            "--machines",
            path.join(folder, "machines"),
            "--site-networks",
            s.networksFile,
          ],
        }),
      );
    }
    return {
      lab: o.lab,
      sites: lab.sites as [LabSiteInfo, LabSiteInfo],
      vault: v,
      api,
      appliances,
      data: o.data,
      cut: async (link) => void (await labCli(["cut", link, "--name", o.lab])),
      restore: async (link) => void (await labCli(["restore", link, "--name", o.lab])),
      context: () =>
        [
          `vault: ${v.stderr().slice(-4000)}`,
          ...[...appliances].map(([n, a]) => `appliance ${n}: ${a.stderr().slice(-4000)}`),
        ].join("\n"),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Detaches loop devices left on machines' disk images (machines killed with kill -9, maybe mid-freeze). */
export async function releaseLoops(data: string): Promise<void> {
  for (const rec of instanceRecords(data))
    for (const d of rec.disks) await loopsRelease(d.path, 10_000).catch(() => {});
}

/** GET a URL from inside a network namespace (curl); the parsed JSON, or null when nothing answers. */
export function fetchJsonIn(netns: string | null, url: string, timeoutS = 3): Json | null {
  const argv = ["curl", "-s", "-f", "-m", String(timeoutS), url];
  const r =
    netns === null
      ? spawnSync(argv[0] as string, argv.slice(1), { encoding: "utf8" })
      : spawnSync("nsenter", [`--net=/run/netns/${netns}`, "--", ...argv], { encoding: "utf8" });
  if (r.status !== 0) return null;
  try {
    return JSON.parse(r.stdout);
  } catch {
    return null;
  }
}

/** A machine that runs the SQLite workload and the agent, with an ext4 root and an ext4 data disk. */
export async function defineSqlMachine(
  api: ReturnType<typeof apiOf>,
  o: {
    name: string;
    site: string;
    ackLog: string;
    ip?: string;
    rootMiB?: number;
    dataMiB?: number;
    everyMs?: number;
  },
): Promise<void> {
  const MiB = 1024 * 1024;
  const r = await api("POST", "/v1/machines", {
    name: o.name,
    site: o.site,
    bootCommand:
      `WORKLOAD_ROOT=$SWITCHBACK_ROOT/data WORKLOAD_ACK=${o.ackLog} WORKLOAD_LISTEN=0.0.0.0:${SERVICE_PORT} ` +
      `WORKLOAD_EVERY_MS=${o.everyMs ?? 20} ${process.execPath} ${SQL_WORKLOAD} & exec $SWITCHBACK_CLI agent`,
    disks: [
      { sizeBytes: (o.rootMiB ?? 64) * MiB, filesystem: "ext4", mountAt: "/" },
      { sizeBytes: (o.dataMiB ?? 128) * MiB, filesystem: "ext4", mountAt: "/data" },
    ],
    ...(o.ip !== undefined ? { network: { ip: o.ip } } : {}),
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

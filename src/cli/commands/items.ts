// switchback items [list [--phase P] [--search S] | show ITEM | update ITEM [--target-name … …]]
// Replicated items: their lifecycle phase and direction, health (RPO against the policy, initial
// replication), latest points, target settings and the operations they allow now.
import type { Command } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";
import type { Machine } from "../../vault/http/schemas.ts";
import type { TargetSettings } from "../../vault/items.ts";
import type { ItemView } from "../../vault/items-view.ts";
import { bytes, parseSize, printFields, printJson, printRecords, printTable, seconds } from "../output.ts";
import { seg, type VaultClient, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

export interface TargetFlags {
  targetName?: string;
  targetIp?: string;
  targetNetwork?: string;
  testNetwork?: string;
  targetSubnet?: string;
  publicPort?: string;
  servicePort?: string;
  cpus?: string;
  memory?: string;
  diskRole?: string[];
}

/** The target-settings options shared by `protect` and `items update`. */
export function targetSettingsOptions(cmd: Command, o: { diskRoles: boolean }): Command {
  cmd
    .option("--target-name <name>", "the machine's name at the target site")
    .option("--target-ip <ip>", "its IP address after a failover")
    .option("--target-network <net>", "the network it joins after a failover")
    .option("--target-subnet <cidr>", "the subnet after a failover, e.g. 10.20.0.0/24")
    .option("--test-network <net>", "the isolated network a test failover's copy joins")
    .option(
      "--public-port <port>",
      "a port of the target site's edge address forwarded to the machine after a failover",
    )
    .option(
      "--service-port <port>",
      "the machine's port the public port forwards to (default: the same number)",
    )
    .option("--cpus <n>", "CPUs at the target")
    .option("--memory <size>", "memory at the target, e.g. 4G (binary units)");
  if (o.diskRoles) {
    cmd.option(
      "--disk-role <uuid=role...>",
      "which disk is the OS disk: --disk-role 3f2a…=os 9c1d…=data (uuids from 'items show')",
    );
  }
  return cmd;
}

/** The target settings an operator typed, parsed; only the ones given. */
export function targetSettingsOf(o: TargetFlags): TargetSettings {
  const s: TargetSettings = {};
  if (o.targetName !== undefined) s.targetName = o.targetName;
  if (o.targetIp !== undefined) s.ip = o.targetIp;
  if (o.targetNetwork !== undefined) s.network = o.targetNetwork;
  if (o.targetSubnet !== undefined) s.subnet = o.targetSubnet;
  if (o.testNetwork !== undefined) s.testNetwork = o.testNetwork;
  for (const [flag, v, key] of [
    ["--public-port", o.publicPort, "publicPort"],
    ["--service-port", o.servicePort, "servicePort"],
  ] as const) {
    if (v === undefined) continue;
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) {
      throw new SwitchbackError("INVALID_PORT", `${flag} ${JSON.stringify(v)} is not a port (1-65535)`);
    }
    s[key] = Number(v);
  }
  if (o.cpus !== undefined) {
    if (!/^\d+$/.test(o.cpus) || Number(o.cpus) < 1) {
      throw new SwitchbackError("INVALID_CPUS", `--cpus ${JSON.stringify(o.cpus)} is not a whole number ≥ 1`);
    }
    s.cpus = Number(o.cpus);
  }
  if (o.memory !== undefined) s.memoryBytes = parseSize(o.memory, "--memory");
  if (o.diskRole !== undefined) {
    const roles: Record<string, "os" | "data"> = {};
    for (const r of o.diskRole) {
      const m = /^([^=]+)=(os|data)$/.exec(r);
      if (m === null) {
        throw new SwitchbackError(
          "INVALID_DISK_ROLE",
          `--disk-role ${JSON.stringify(r)} is not UUID=os or UUID=data (disk uuids are in 'items show')`,
        );
      }
      roles[m[1]!] = m[2] as "os" | "data";
    }
    s.diskRoles = roles;
  }
  return s;
}

/** Whole seconds as an operator reads them ("0s", "45s", "2m5s"). */
export function wholeSeconds(s: number): string {
  const n = Math.round(s);
  return n === 0 ? "0s" : seconds(n);
}

export function rpoText(it: ItemView): string {
  const h = it.health;
  if (h.rpoSeconds === null) return h.rpoStatus === "n/a" ? "-" : `- / ${seconds(h.rpoThresholdSeconds)}`;
  return `${wholeSeconds(h.rpoSeconds)} / ${seconds(h.rpoThresholdSeconds)} ${h.rpoStatus}`;
}

function age(p: { ageSeconds: number } | null): string {
  return p === null ? "-" : `${wholeSeconds(p.ageSeconds)} ago`;
}

function replicationText(it: ItemView): string {
  const r = it.health.initialReplication;
  if (r !== null) {
    const eta =
      r.etaSeconds === null || r.etaSeconds === 0 ? "" : `, ${seconds(Math.ceil(r.etaSeconds))} left`;
    return `initial ${r.percent.toFixed(1)}%${eta}`;
  }
  return it.health.resyncRequired ? "resync required" : "-";
}

function jobText(it: ItemView): string {
  const j = it.activeJob;
  return j === null ? "-" : `${j.kind} ${j.state} ${j.id}`;
}

function showItem(it: ItemView, m: Machine | null): void {
  printFields([
    ["name", it.name],
    ["id", it.id],
    ["phase", it.phase],
    ["direction", it.direction],
    ["home site", it.home],
    ["generation", it.generation],
    ["policy", it.policy],
    ["process server", it.processServer],
    ["datastore", it.datastore],
    ["active job", jobText(it)],
    ["allowed operations", it.allowedOperations.join(", ") || "none"],
  ]);
  process.stdout.write("\nmachine\n");
  printFields(
    m === null
      ? [["  machine", it.machineId]]
      : [
          ["  name", m.name],
          ["  site", m.site],
          ["  power", m.powerState],
          ["  agent", m.health.liveness],
          ["  last heartbeat", m.lastHeartbeatAt],
          ["  hostname", m.hostname],
          ["  os", m.os],
          ["  cpus", m.cpus],
          ["  memory", m.memoryBytes === null ? null : bytes(m.memoryBytes)],
        ],
  );
  process.stdout.write("\nhealth\n");
  const r = it.health.initialReplication;
  printFields([
    ["  rpo", rpoText(it)],
    [
      "  initial replication",
      r === null
        ? "-"
        : `${r.percent.toFixed(1)}% (${bytes(r.bytesDone)} of ${bytes(r.bytesTotal)}) at ${bytes(r.bytesPerSecond)}/s${r.etaSeconds === null ? "" : `, ${seconds(Math.ceil(r.etaSeconds))} left`}`,
    ],
    ["  resync required", it.health.resyncRequired ? "yes" : "no"],
  ]);
  process.stdout.write("\nrecovery points\n");
  const point = (p: ItemView["latestPoint"]) => (p === null ? "-" : `${p.id} (${age(p)})`);
  printFields([
    ["  latest", point(it.latestPoint)],
    ["  latest app-consistent", point(it.latestAppConsistentPoint)],
    ["  held", it.pointCount < 0 ? "-" : it.pointCount],
  ]);
  const t = it.targetSettings;
  process.stdout.write("\ntarget settings\n");
  printFields([
    ["  name", t.targetName],
    ["  cpus", t.cpus],
    ["  memory", t.memoryBytes === undefined ? undefined : bytes(t.memoryBytes)],
    ["  network", t.network],
    ["  subnet", t.subnet],
    ["  ip", t.ip],
    ["  test network", t.testNetwork],
  ]);
  const roles = Object.entries(t.diskRoles ?? {});
  if (roles.length > 0) {
    const size = new Map((m?.disks ?? []).map((d) => [d.uuid, bytes(d.sizeBytes)]));
    process.stdout.write("\n");
    printTable([
      ["DISK", "ROLE", "SIZE"],
      ...roles.map(([uuid, role]) => [uuid, role, size.get(uuid) ?? "-"]),
    ]);
  }
  if (it.drill !== null) {
    process.stdout.write("\ntest failover\n");
    printFields([
      ["  point", it.drill.point],
      ["  copy", `${it.drill.instanceId} at ${it.drill.site}`],
      ["  job", it.drill.jobId],
    ]);
  }
  if (it.failover !== null) {
    const f = it.failover;
    process.stdout.write("\nfailover\n");
    printFields([
      ["  point", f.point],
      ["  machine", `${f.instanceId} at ${f.site}`],
      ["  job", f.jobId],
      [
        "  source shutdown",
        `${f.sourceShutdown.requested ? "requested" : "not requested"}: ${f.sourceShutdown.outcome}${f.sourceShutdown.detail === undefined ? "" : ` (${f.sourceShutdown.detail})`}`,
      ],
    ]);
  }
}

/** The item's machine, or null when the vault no longer knows it (the item still shows). */
async function machineOf(client: VaultClient, it: ItemView): Promise<Machine | null> {
  try {
    return await client.get<Machine>(`/v1/machines/${seg(it.machineId)}`);
  } catch (err) {
    if (err instanceof SwitchbackError && err.code === "MACHINE_NOT_FOUND") return null;
    throw err;
  }
}

export function register(program: Command): void {
  const items = program.command("items").description("replicated items: protected machines and their state");
  withVault(items.command("list", { isDefault: true }).description("list the replicated items"))
    .option("--phase <phase>", "only items in this phase (protected, failed-over, …)")
    .option("--search <text>", "only items whose name contains this")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { phase?: string; search?: string }) => {
      const list = await vaultClient(o).get<ItemView[]>("/v1/items", { phase: o.phase, search: o.search });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (i) => i.name],
          ["PHASE", (i) => i.phase],
          ["DIRECTION", (i) => i.direction],
          ["RPO / THRESHOLD", rpoText],
          ["LATEST POINT", (i) => age(i.latestPoint)],
          ["REPLICATION", replicationText],
          ["JOB", jobText],
        ],
        "no replicated items; protect a machine with 'switchback protect MACHINE --to SITE'",
      );
    });
  withVault(
    items
      .command("show")
      .argument("<item>", "name or id")
      .description("show an item: machine, health, latest points, target settings, allowed operations"),
  )
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) => {
      const client = vaultClient(o);
      const it = await client.get<ItemView>(`/v1/items/${seg(ref)}`);
      if (o.json) return printJson(it);
      showItem(it, await machineOf(client, it));
    });
  withVault(
    targetSettingsOptions(
      items
        .command("update")
        .argument("<item>", "name or id")
        .description("change the target settings the next failover uses (not while failed over)"),
      { diskRoles: true },
    ),
  )
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags & TargetFlags) => {
      const body = targetSettingsOf(o);
      if (Object.keys(body).length === 0) {
        throw new SwitchbackError(
          "NOTHING_TO_UPDATE",
          "give at least one setting to change (see 'switchback items update --help')",
        );
      }
      const client = vaultClient(o);
      const it = await client.patch<ItemView>(`/v1/items/${seg(ref)}`, body);
      if (o.json) return printJson(it);
      showItem(it, await machineOf(client, it));
    });
}

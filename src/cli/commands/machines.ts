// switchback machines [list [--site S] | show NAME | create NAME --site S --boot-command CMD --disk SIZE… |
//                      start NAME | stop NAME]
import type { Command } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";
import type { Machine } from "../../vault/http/schemas.ts";
import { bytes, parseSize, printFields, printJson, printRecords, printTable, seconds } from "../output.ts";
import { seg, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

function progress(m: Machine): string {
  const r = m.health.replication;
  if (r === null) return "-";
  const eta = r.etaSeconds === null ? "" : r.etaSeconds === 0 ? "" : `, ${seconds(r.etaSeconds)} left`;
  return `${r.percent.toFixed(1)}% at ${bytes(r.bytesPerSecond)}/s${eta}`;
}

export function register(program: Command): void {
  const machines = program.command("machines").description("the machines the vault knows");
  withVault(machines.command("list", { isDefault: true }).description("list the machines"))
    .option("--site <site>", "only those running at this site")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { site?: string }) => {
      const list = await vaultClient(o).get<Machine[]>("/v1/machines", { site: o.site });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (m) => m.name],
          ["SITE", (m) => m.site ?? "-"],
          ["POWER", (m) => m.powerState],
          ["AGENT", (m) => m.health.liveness],
          ["HOSTNAME", (m) => m.hostname ?? "-"],
          ["DISKS", (m) => m.disks.map((d) => bytes(d.sizeBytes)).join(" + ") || "-"],
          ["REPLICATION", progress],
          ["ID", (m) => m.id],
        ],
        "no machines",
      );
    });
  withVault(machines.command("show").argument("<machine>", "name or id").description("show a machine"))
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) => {
      const m = await vaultClient(o).get<Machine>(`/v1/machines/${seg(ref)}`);
      if (o.json) return printJson(m);
      printFields([
        ["name", m.name],
        ["id", m.id],
        ["site", m.site],
        ["instance", m.instanceId],
        ["power", m.powerState],
        ["agent", m.health.liveness],
        ["last heartbeat", m.lastHeartbeatAt],
        ["hostname", m.hostname],
        ["os", m.os],
        ["cpus", m.cpus],
        ["memory", m.memoryBytes === null ? null : bytes(m.memoryBytes)],
        ["boot command", m.bootCommand],
        ["home address", m.layout?.network?.ip ?? null],
        [
          "mounts",
          m.layout === null
            ? null
            : m.layout.disks
                .flatMap((d, n) =>
                  d.mountAt !== undefined ? [`disk ${n} ${d.filesystem ?? "?"} at ${d.mountAt}`] : [],
                )
                .join(", ") || null,
        ],
        ["replication", progress(m)],
      ]);
      if (m.disks.length > 0) {
        process.stdout.write("\n");
        printTable([
          ["DISK", "ROLE", "SIZE", "SECTOR", "PATH"],
          ...m.disks.map((d) => [d.uuid, d.role, bytes(d.sizeBytes), String(d.sectorSize), d.path ?? "-"]),
        ]);
      }
      if (m.nics.length > 0) {
        process.stdout.write("\n");
        printTable([
          ["NIC", "MAC", "ADDRESSES"],
          ...m.nics.map((n) => [n.name, n.mac, n.addresses.join(", ")]),
        ]);
      }
    });
  withVault(
    machines
      .command("create")
      .argument("<name>", "the new machine's name")
      .description(
        "define a machine for the process provider: a boot command and its disks (the first is the OS disk)",
      ),
  )
    .requiredOption("--site <site>", "the site it runs at")
    .requiredOption("--boot-command <cmd>", "what the process provider runs (with sh -c) to boot it")
    .requiredOption(
      "--disk <disks...>",
      "its disks, e.g. --disk 1G 512M (binary units); privileged machines: --disk 1G:ext4:/ 3G:ext4:/data (file system made on first start, mounted there)",
    )
    .option(
      "--ip <address>",
      "privileged machines: its address on its site's network (default: the first free one)",
    )
    .option(
      "--network <name>",
      "privileged machines: the site network it joins (default: the site's default)",
    )
    .option("--json", "print the result as JSON")
    .action(
      async (
        name: string,
        o: Flags & { site: string; bootCommand: string; disk: string[]; ip?: string; network?: string },
      ) => {
        const m = await vaultClient(o).post<Machine>("/v1/machines", {
          name,
          site: o.site,
          bootCommand: o.bootCommand,
          disks: o.disk.map(diskOf),
          ...(o.ip !== undefined || o.network !== undefined
            ? {
                network: {
                  ...(o.ip !== undefined ? { ip: o.ip } : {}),
                  ...(o.network !== undefined ? { name: o.network } : {}),
                },
              }
            : {}),
        });
        if (o.json) printJson(m);
        else process.stdout.write(`created machine ${m.name} (${m.id}) at site ${m.site}\n`);
      },
    );
  for (const verb of ["start", "stop"] as const) {
    withVault(
      machines
        .command(verb)
        .argument("<machine>", "name or id")
        .description(
          verb === "start"
            ? "boot a machine the vault defined, through its site's compute provider (disks are made on the first start)"
            : "shut a machine the vault runs down (gracefully, then by force)",
        ),
    )
      .option("--json", "print the result as JSON")
      .action(async (ref: string, o: Flags) => {
        const r = await vaultClient(o).post<{ instanceId: string }>(`/v1/machines/${seg(ref)}/${verb}`, {});
        if (o.json) printJson(r);
        else
          process.stdout.write(
            `${verb === "start" ? "started" : "stopped"} machine ${ref} (instance ${r.instanceId})\n`,
          );
      });
  }
}

/** "1G", or "1G:ext4:/data" (a privileged machine's disk with its file system and mount point). */
function diskOf(spec: string): { sizeBytes: number; filesystem?: "ext4" | "xfs"; mountAt?: string } {
  const [size, fs, mount, ...rest] = spec.split(":");
  if (rest.length > 0 || (fs !== undefined && mount === undefined)) {
    throw new SwitchbackError(
      "INVALID_OPTION",
      `--disk ${JSON.stringify(spec)} is not SIZE or SIZE:FILESYSTEM:MOUNT (e.g. 3G:ext4:/data)`,
    );
  }
  if (fs !== undefined && fs !== "ext4" && fs !== "xfs") {
    throw new SwitchbackError(
      "INVALID_OPTION",
      `--disk ${JSON.stringify(spec)}: file system ${fs} is not ext4 or xfs`,
    );
  }
  return {
    sizeBytes: parseSize(size ?? "", "--disk"),
    ...(fs !== undefined ? { filesystem: fs } : {}),
    ...(mount !== undefined ? { mountAt: mount } : {}),
  };
}

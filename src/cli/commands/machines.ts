// switchback machines [list [--site S] | show NAME | create NAME --site S --boot-command CMD --disk SIZE… |
//                      start NAME | stop NAME]
import type { Command } from "commander";
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
    .requiredOption("--disk <size...>", "disk sizes, e.g. --disk 1G 512M (binary units)")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: Flags & { site: string; bootCommand: string; disk: string[] }) => {
      const m = await vaultClient(o).post<Machine>("/v1/machines", {
        name,
        site: o.site,
        bootCommand: o.bootCommand,
        disks: o.disk.map((s) => ({ sizeBytes: parseSize(s, "--disk") })),
      });
      if (o.json) printJson(m);
      else process.stdout.write(`created machine ${m.name} (${m.id}) at site ${m.site}\n`);
    });
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

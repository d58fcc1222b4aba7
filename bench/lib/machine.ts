// What the figures were measured on: STYLE.md wants every benchmark table beside its machine.
import { readFileSync } from "node:fs";
import os from "node:os";

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  fileSystem: string;
}

export function describeMachine(fileSystem: string): Machine {
  return {
    cpu: cpuModel(),
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    fileSystem,
  };
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux: fall through to what Node knows
  }
  return os.cpus()[0]?.model ?? "unknown";
}

/** The file system type that holds `dir` (from /proc/mounts: the longest mount point that prefixes it). */
export function fileSystemOf(dir: string): string {
  try {
    let best = { at: "", type: "unknown", dev: "" };
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [dev, at, type] = line.split(" ");
      if (dev === undefined || at === undefined || type === undefined) continue;
      const prefix = at.endsWith("/") ? at : `${at}/`;
      if ((dir === at || dir.startsWith(prefix)) && at.length >= best.at.length) best = { at, type, dev };
    }
    return `${best.type} (${best.dev} on ${best.at})`;
  } catch {
    return "unknown";
  }
}

/** How busy the machine is besides us: load average and CPU pressure (PSI), for the record. */
export function busyness(): string {
  const load = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
  let psi = "";
  try {
    const m = /^some avg10=([\d.]+) avg60=([\d.]+)/m.exec(readFileSync("/proc/pressure/cpu", "utf8"));
    if (m) psi = `, CPU pressure ${m[1]} % (10 s) ${m[2]} % (60 s)`;
  } catch {
    // no PSI on this kernel
  }
  return `load average ${load}${psi}`;
}

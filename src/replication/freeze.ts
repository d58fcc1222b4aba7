// File-system freeze for crash-consistent points of mounted disks. All file systems of a machine are
// frozen together (one instant), then thawed together. A watchdog process thaws them if the agent dies
// while they are frozen, so a kill -9 can never leave a machine's file systems stuck.
import { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { SwitchbackError } from "../domain/errors.ts";
import { childProcess } from "../platform/lazy.ts";
import type { DiskInfo } from "./disk-source.ts";

interface Mount {
  devno: string;
  mountPoint: string;
  root: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

export function readMounts(): Mount[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => {
      const f = l.split(" ");
      return { devno: f[2]!, root: unescapeMount(f[3]!), mountPoint: unescapeMount(f[4]!) };
    });
}

/**
 * Block devices (major:minor) that carry each disk: the device itself, or loop devices over an image
 * file, and the partitions of either (a file system on /dev/loop0p1 is on the disk /dev/loop0).
 */
export function deviceNumbers(disk: DiskInfo): string[] {
  const whole: string[] = [];
  if (disk.devno !== undefined) whole.push(disk.devno);
  else {
    const real = realpathSync(disk.path);
    let loops: string[] = [];
    try {
      loops = readdirSync("/sys/block").filter((n) => n.startsWith("loop"));
    } catch {
      return [];
    }
    for (const l of loops) {
      try {
        const backing = readFileSync(`/sys/block/${l}/loop/backing_file`, "utf8").trim();
        if (backing === real) whole.push(readFileSync(`/sys/block/${l}/dev`, "utf8").trim());
      } catch {
        // not attached
      }
    }
  }
  return whole.flatMap((d) => [d, ...partitionDevnos(d)]);
}

function partitionDevnos(devno: string): string[] {
  const sys = `/sys/dev/block/${devno}`;
  try {
    return readdirSync(sys)
      .filter((n) => existsSync(`${sys}/${n}/partition`))
      .map((n) => readFileSync(`${sys}/${n}/dev`, "utf8").trim());
  } catch {
    return [];
  }
}

/** One mount point per mounted file system on the given disks (bind mounts are frozen once). */
export function mountPointsOf(disks: DiskInfo[]): string[] {
  const devnos = new Set(disks.flatMap(deviceNumbers));
  const byDev = new Map<string, string>();
  for (const m of readMounts()) {
    if (!devnos.has(m.devno)) continue;
    const prev = byDev.get(m.devno);
    if (prev === undefined || m.root === "/") byDev.set(m.devno, m.mountPoint);
  }
  return [...byDev.values()];
}

export class Freezer {
  readonly mounts: readonly string[];
  readonly #watchdogMs: number;
  #frozen: string[] = [];
  #watchdog: number | undefined;
  #since = 0;

  constructor(mounts: readonly string[], watchdogMs = 10_000) {
    this.mounts = mounts;
    this.#watchdogMs = watchdogMs;
  }

  /** Freezes every mount; on any failure thaws those already frozen and throws. */
  freeze(): void {
    // sh -c SCRIPT DELAY MOUNT…: the delay is $0, the mounts are "$@"
    const dog = childProcess().spawn(
      "sh",
      [
        "-c",
        'sleep "$0"; for m in "$@"; do fsfreeze -u "$m" 2>/dev/null; done',
        String(this.#watchdogMs / 1000),
        ...this.mounts,
      ],
      { detached: true, stdio: "ignore" },
    );
    dog.unref();
    this.#watchdog = dog.pid;
    this.#since = performance.now();
    for (const m of this.mounts) {
      const r = childProcess().spawnSync("fsfreeze", ["-f", m], { encoding: "utf8" });
      if (r.status !== 0) {
        const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim();
        this.thaw();
        throw new SwitchbackError("FREEZE_FAILED", `could not freeze the file system at ${m}: ${why}`);
      }
      this.#frozen.push(m);
    }
  }

  /** Thaws what is frozen; returns how long the file systems stayed frozen, in ms. */
  thaw(): number {
    const errors: string[] = [];
    const early: string[] = [];
    for (const m of this.#frozen.reverse()) {
      const r = childProcess().spawnSync("fsfreeze", ["-u", m], { encoding: "utf8" });
      if (r.status === 0) continue;
      const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim();
      // EINVAL: it was not frozen any more, so something thawed it early: the watchdog, if the freeze
      // outlasted it. The copy then saw a live file system and is not one instant.
      if (/invalid argument/i.test(why)) early.push(m);
      else errors.push(`${m}: ${why}`);
    }
    this.#frozen = [];
    const ms = performance.now() - this.#since;
    // a mount that did not thaw keeps its watchdog: it is the last thing that will thaw it
    if (this.#watchdog !== undefined && errors.length === 0) {
      try {
        process.kill(-this.#watchdog, "SIGKILL");
      } catch {
        // already gone
      }
      this.#watchdog = undefined;
    }
    if (errors.length > 0) throw new SwitchbackError("THAW_FAILED", `could not thaw ${errors.join("; ")}`);
    if (early.length > 0) {
      throw new SwitchbackError(
        "FREEZE_OUTLASTED_WATCHDOG",
        `the file system(s) at ${early.join(", ")} were thawed after ${Math.round(ms)} ms, before the frozen copy ended (the watchdog thaws after ${this.#watchdogMs} ms); the point was not taken. Retry; if it recurs, use a write tracker (--track) so the frozen copy is short`,
      );
    }
    return ms;
  }
}

export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

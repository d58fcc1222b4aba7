// Helpers for privileged tests: image files, loop devices, file systems and mounts that are always
// undone (thawed, unmounted, detached, deleted) by cleanup(), even when the test failed half-way.
// Also the numbered, checksummed records that the record writer (record-writer.ts) appends.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Datastore } from "../../src/datastore/datastore.ts";
import { removeJournal, sweepJournals } from "../../src/replication/journal.ts";
import { ROOT } from "./env.ts";

export function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr || r.error?.message}`);
  return r.stdout.trim();
}

/** A scratch area: everything created through it is undone by cleanup(), in reverse order. */
export class Scratch {
  readonly dir: string;
  readonly #mounts: string[] = [];
  readonly #loops: string[] = [];

  constructor(prefix = "sb-priv-") {
    this.dir = spawnSync("mktemp", ["-d", path.join(tmpdir(), `${prefix}XXXXXX`)], {
      encoding: "utf8",
    }).stdout.trim();
  }

  path(...p: string[]): string {
    return path.join(this.dir, ...p);
  }

  /** A sparse image file of `mib` MiB. */
  image(name: string, mib: number): string {
    const p = this.path(name);
    writeFileSync(p, "");
    truncateSync(p, mib * 1024 * 1024);
    return p;
  }

  attach(file: string): string {
    const dev = sh("losetup", ["-f", "--show", file]);
    this.#loops.push(dev);
    return dev;
  }

  detach(dev: string): void {
    sh("losetup", ["-d", dev]);
    this.#loops.splice(this.#loops.indexOf(dev), 1);
  }

  mkfs(dev: string, type: "ext4" | "xfs" = "ext4"): void {
    if (type === "ext4") sh("mkfs.ext4", ["-q", "-F", dev]);
    else sh("mkfs.xfs", ["-q", "-f", dev]);
  }

  mount(dev: string, name: string): string {
    const dir = this.path(name);
    mkdirSync(dir, { recursive: true });
    sh("mount", [dev, dir]);
    this.#mounts.push(dir);
    return dir;
  }

  umount(dir: string): void {
    sh("umount", [dir]);
    this.#mounts.splice(this.#mounts.indexOf(dir), 1);
  }

  /** A new ext4 on a new image, attached and mounted. */
  ext4(name: string, mib: number): { image: string; dev: string; mnt: string } {
    const image = this.image(`${name}.img`, mib);
    const dev = this.attach(image);
    this.mkfs(dev);
    return { image, dev, mnt: this.mount(dev, name) };
  }

  cleanup(): void {
    const errors: string[] = [];
    for (const m of [...this.#mounts].reverse()) {
      spawnSync("fsfreeze", ["-u", m], { stdio: "ignore" }); // in case a test left it frozen
      let r = spawnSync("umount", [m], { encoding: "utf8" });
      if (r.status !== 0) r = spawnSync("umount", ["-l", m], { encoding: "utf8" });
      if (r.status !== 0) errors.push(`umount ${m}: ${r.stderr}`);
    }
    this.#mounts.length = 0;
    for (const l of [...this.#loops].reverse()) {
      const r = spawnSync("losetup", ["-d", l], { encoding: "utf8" });
      if (r.status !== 0) errors.push(`losetup -d ${l}: ${r.stderr}`);
    }
    this.#loops.length = 0;
    rmSync(this.dir, { recursive: true, force: true });
    // write journals of agent states that lived in here (the CLI's, the machines' agents') go with them
    sweepJournals();
    if (errors.length > 0) throw new Error(`cleanup: ${errors.join("; ")}`);
  }
}

// --- records ---------------------------------------------------------------------------------------

/** Record n: "n:payload:checksum\n", payload 20..2999 letters (so records straddle 4 KiB blocks). */
export function record(n: number): string {
  let x = (n * 2654435761) >>> 0;
  const len = 20 + (x % 2980);
  const chars: string[] = [];
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    chars.push(String.fromCharCode(97 + ((x >>> 16) % 26)));
  }
  const payload = chars.join("");
  return `${n}:${payload}:${checksum(n, payload)}\n`;
}

function checksum(n: number, payload: string): string {
  return createHash("sha256").update(`${n}:${payload}`).digest("hex").slice(0, 16);
}

/**
 * Checks a records file: it must be exactly records 1..k, each with a valid checksum, nothing after.
 * Returns k, or throws naming the first bad byte.
 */
export function countRecords(buf: Buffer): number {
  const text = buf.toString("latin1");
  let at = 0;
  let n = 0;
  while (at < text.length) {
    const nl = text.indexOf("\n", at);
    if (nl < 0)
      throw new Error(
        `record ${n + 1}: incomplete at byte ${at} (${text.length - at} bytes without a newline)`,
      );
    const line = text.slice(at, nl);
    const [num, payload, sum] = line.split(":");
    if (Number(num) !== n + 1 || payload === undefined || sum !== checksum(n + 1, payload)) {
      throw new Error(`record ${n + 1}: bad record at byte ${at}: ${JSON.stringify(line.slice(0, 60))}`);
    }
    n++;
    at = nl + 1;
  }
  return n;
}

/** The highest number the writer reported as acknowledged (fsync returned on every file). */
export function acknowledged(ackLog: string): number {
  let text = "";
  try {
    text = readFileSync(ackLog, "utf8");
  } catch {
    return 0;
  }
  const lines = text.split("\n");
  lines.pop(); // the last complete line ends with "\n"
  return lines.length === 0 ? 0 : Number(lines[lines.length - 1]);
}

export interface Writer {
  stop(): Promise<void>;
}

/** Starts the record writer as a child process: record n to each file in turn (fsync each), then ack n. */
export function startWriter(files: string[], ackLog: string): Writer {
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "test/privileged/record-writer.ts"), ackLog, ...files],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const exited = new Promise<void>((r) => child.on("close", () => r()));
  return {
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Waits until `pred` holds, polling. */
export async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Attaches a restored image, mounts it (ext4 replays its journal), returns what `read` found, then undoes it all and fscks. */
export function inspectRestored<T>(s: Scratch, image: string, read: (mnt: string) => T): T {
  const dev = s.attach(image);
  let out: T;
  try {
    const mnt = s.mount(dev, `m-${path.basename(image)}`);
    try {
      out = read(mnt);
    } finally {
      s.umount(mnt);
    }
    // after the replay the file system must be clean
    const fsck = spawnSync("e2fsck", ["-fn", dev], { encoding: "utf8" });
    if (fsck.status !== 0)
      throw new Error(`e2fsck -fn of restored ${image} exited ${fsck.status}: ${fsck.stdout.slice(-500)}`);
  } finally {
    s.detach(dev);
  }
  return out;
}

/**
 * A new datastore and an agent state folder in `s`; after the test, the state's write journal is
 * removed, the datastore closed and `s` cleaned up.
 */
export async function journalStore(
  t: { after: (f: () => void | Promise<void>) => void },
  s: Scratch,
): Promise<{ ds: Datastore; state: string }> {
  const ds = await Datastore.init(s.path("ds"));
  const state = s.path("state");
  t.after(async () => {
    removeJournal(state);
    await ds.close();
    s.cleanup();
  });
  return { ds, state };
}

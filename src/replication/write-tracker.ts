// Kernel write tracking for the freeze path: while the pre-copy pass runs, a private tracefs instance
// (instances/switchback-<pid>-<n>, so global tracing is untouched) records every write to the block
// devices that carry each disk; after the freeze, collect() drains it and says which 64 KiB units were
// written since start, so the frozen pass reads only those instead of the whole disk.
//
// Why two events (docs/consistency.md): block_bio_queue catches every bio submitted after start,
// including the ones the file system issues while it freezes; block_rq_complete also catches writes
// that were queued BEFORE start but finished after it (the pre-copy may have read their units before
// the new data landed). A write that finished before start is already on the device when the
// pre-copy reads it. The freeze waits for every write the file system issued, so once it returns
// their events are in the ring buffer. Completions are request-level, so the device must be blk-mq.
// Whenever completeness cannot be vouched for (events dropped, unreadable trace lines, devices that
// changed, a device that is not blk-mq) collect() returns null for that disk: the caller then
// re-reads the whole disk while frozen, slow but correct.
import {
  type BigIntStats,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  statfsSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { SwitchbackError } from "../domain/errors.ts";
import { readTrimmed } from "../platform/files.ts";
import { childProcess } from "../platform/lazy.ts";
import { native } from "../platform/native.ts";
import { pidAlive } from "../platform/process.ts";
import { type DiskInfo, devName } from "./disk-source.ts";
import { RangeList, toRanges } from "./ranges.ts";
import type { WriteTracker } from "./replicate.ts";
import { UNIT_BYTES } from "./scan.ts";
import { RawTraceReader } from "./trace-raw.ts";

const TRACEFS_CANDIDATES = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const INSTANCE_PREFIX = "switchback-";
const EVENTS = ["block_bio_queue", "block_rq_complete"] as const;
/** How often the ring buffer is drained while the pre-copy runs. */
const DRAIN_EVERY_MS = 50;

/** Where a device's sectors land on a disk: byte = (sector + shiftSectors) * 512 + addBytes. */
interface Window {
  dev: number;
  shiftSectors: number;
  addBytes: number;
}

export interface DiskPlan {
  windows: Window[];
  /** why this disk cannot be tracked, or null */
  untrackable: string | null;
  /** identity of the device set, compared at collect time */
  key: string;
  /** where events stop counting: the disk's size, or the file system's device's (`fileSystemDevice`) */
  limitBytes: number;
  /**
   * for an image file traced through the device of the file system that holds it, that device
   * ("major:minor"): the events are its sectors, which the file's extents place in the file
   * (journal.ts); null otherwise
   */
  fileSystemDevice: string | null;
}

/**
 * How an image file's writes are traced: through the loop devices that carry it (the write tracker
 * of a freeze: the file systems frozen are on them), or through the device of the file system that
 * holds the file (the write journal: every write to the file, by whatever path, reaches that device
 * at the places the file's extents name).
 */
export type FileRoute = "loop" | "file-system";

/** The kernel's in-trace dev_t: major << 20 | minor. */
function kdev(devno: string): number {
  const [ma, mi] = devno.split(":").map(Number);
  return ma! * 2 ** 20 + mi!;
}

/** Partitions of a whole disk: [devno, start sector]. */
function partitionsOf(sysDisk: string): [string, number][] {
  const out: [string, number][] = [];
  let names: string[] = [];
  try {
    names = readdirSync(sysDisk);
  } catch {
    return out;
  }
  for (const n of names) {
    // most entries are attributes, not partitions: asked first, without an exception for each
    if (!existsSync(path.join(sysDisk, n, "partition"))) continue;
    const dev = readTrimmed(path.join(sysDisk, n, "dev"));
    const start = readTrimmed(path.join(sysDisk, n, "start"));
    if (dev !== null && start !== null) out.push([dev, Number(start)]);
  }
  return out;
}

/**
 * Windows for a whole disk `devno` whose sector 0 is `addBytes` into our disk. Events on a partition
 * of it are counted both as partition-relative and as already remapped to the whole disk (kernels
 * report the whole disk's dev and sectors for bios since 5.12; counting both stays correct either way).
 */
function wholeDiskWindows(devno: string, addBytes: number): Window[] {
  const sys = `/sys/dev/block/${devno}`;
  const w: Window[] = [{ dev: kdev(devno), shiftSectors: 0, addBytes }];
  for (const [p, start] of partitionsOf(sys)) {
    w.push({ dev: kdev(p), shiftSectors: 0, addBytes }, { dev: kdev(p), shiftSectors: start, addBytes });
  }
  return w;
}

/**
 * The device's disk sequence number (kernel 5.15+: new at every attach of a loop device, every media
 * change), so that a device detached and attached again under the same number is not taken for the one
 * traced before.
 */
function seq(devno: string): string {
  const s = readTrimmed(`/sys/dev/block/${devno}/diskseq`);
  return s === null ? "" : `#${s}`;
}

function isBlkMq(devno: string): boolean {
  return existsSync(`/sys/dev/block/${devno}/mq`);
}

/** Block devices that carry a disk and how their sectors map onto it. */
export function planDisk(disk: DiskInfo, route: FileRoute = "loop"): DiskPlan {
  if (disk.kind === "file" && route === "file-system") return fileSystemPlan(disk);
  return { ...devicePlan(disk), limitBytes: disk.sizeBytes, fileSystemDevice: null };
}

/** The disk's own devices: the block device (and its partitions), or the loop devices on an image file. */
function devicePlan(disk: DiskInfo): Pick<DiskPlan, "windows" | "untrackable" | "key"> {
  if (disk.kind === "block") {
    const devno = disk.devno!;
    const sys = `/sys/dev/block/${devno}`;
    const start = readTrimmed(`${sys}/start`);
    if (readTrimmed(`${sys}/partition`) !== null && start !== null) {
      // the disk is a partition: requests complete on the whole disk, in whole-disk sectors
      const whole = readTrimmed(path.join(realpathSync(sys), "..", "dev"));
      if (whole === null)
        return {
          windows: [],
          untrackable: `cannot find the disk that holds partition ${disk.path}`,
          key: "",
        };
      const s = Number(start);
      const windows: Window[] = [
        { dev: kdev(whole), shiftSectors: -s, addBytes: 0 },
        { dev: kdev(devno), shiftSectors: 0, addBytes: 0 },
        { dev: kdev(devno), shiftSectors: -s, addBytes: 0 },
      ];
      const untrackable = isBlkMq(whole)
        ? null
        : `${disk.path} is not on a blk-mq device; its completions cannot be traced`;
      return { windows, untrackable, key: `${whole}${seq(whole)}+${s}` };
    }
    const untrackable = isBlkMq(devno)
      ? null
      : `${disk.path} is not a blk-mq device; its completions cannot be traced`;
    const windows = wholeDiskWindows(devno, 0);
    return {
      windows,
      untrackable,
      key: windows.map((w) => `${w.dev}/${w.shiftSectors}`).join(",") + seq(devno),
    };
  }
  // an image file: trace the loop devices backed by it
  const real = realpathSync(disk.path);
  const windows: Window[] = [];
  const keys: string[] = [];
  let untrackable: string | null = null;
  let loops: string[] = [];
  try {
    loops = readdirSync("/sys/block").filter((n) => n.startsWith("loop"));
  } catch {
    // no sysfs: no loop devices
  }
  for (const l of loops) {
    const backing = readTrimmed(`/sys/block/${l}/loop/backing_file`);
    if (backing !== real) continue;
    const devno = readTrimmed(`/sys/block/${l}/dev`)!;
    const offset = Number(readTrimmed(`/sys/block/${l}/loop/offset`) ?? "0");
    windows.push(...wholeDiskWindows(devno, offset));
    keys.push(`${devno}${seq(devno)}@${offset}`);
    if (!isBlkMq(devno)) untrackable = `loop device /dev/${l} is not blk-mq`;
  }
  if (windows.length === 0)
    untrackable = `${disk.path} is not attached to a loop device, so its writes cannot be traced`;
  return { windows, untrackable, key: keys.sort().join(",") };
}

const EXT4_MAGIC = 0xef53;
const XFS_MAGIC = 0x58465342;
/** inode flags (FS_IOC_GETFLAGS) under which a file's data does not reach its extents by a traced write */
const FS_JOURNAL_DATA_FL = 0x4000;
const FS_DAX_FL = 0x02000000;

/**
 * An image file traced through the device of the file system that holds it. Refused where a write
 * to the file could change its bytes without a write to that device at the places its extents name:
 * a file system on no single block device (btrfs, tmpfs, overlay, network), or not ext4 or XFS (whose
 * FIEMAP places are the device's); data journalled first (ext4 data=journal, or the file's own
 * journal-data flag: the data reaches its place only at a later checkpoint); DAX (no block I/O at
 * all); an XFS realtime device (data on another device).
 */
function fileSystemPlan(disk: DiskInfo): DiskPlan {
  const refuse = (why: string): DiskPlan => ({
    windows: [],
    untrackable: why,
    key: "",
    limitBytes: 0,
    fileSystemDevice: null,
  });
  let st: BigIntStats;
  let type: number;
  let flags: number | null = null;
  try {
    st = statSync(disk.path, { bigint: true });
    type = statfsSync(disk.path).type;
    if (native?.fileFlags !== undefined) {
      const fd = openSync(disk.path, "r");
      try {
        flags = native.fileFlags(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (err) {
    return refuse(`cannot inspect ${disk.path}: ${(err as Error).message}`);
  }
  if (flags === null) return refuse("the native addon (which reads a file's flags) is not loaded");
  const devno = devName(st.dev);
  if (devno.startsWith("0:"))
    return refuse(`the file system that holds ${disk.path} is not on one block device`);
  if (type !== EXT4_MAGIC && type !== XFS_MAGIC)
    return refuse(`${disk.path} is on a file system whose writes are not traced here (ext4 and XFS are)`);
  if ((flags & FS_JOURNAL_DATA_FL) !== 0)
    return refuse(`${disk.path} has its data journalled (chattr +j): its writes reach their place late`);
  if ((flags & FS_DAX_FL) !== 0) return refuse(`${disk.path} is a DAX file: its writes are no block I/O`);
  const options = superOptions(devno, type === EXT4_MAGIC);
  if (options === null) return refuse(`cannot find the mount of the file system that holds ${disk.path}`);
  // a DAX-capable device: whether a file is DAX follows its flag only once its inode is evicted
  let sysDev: string;
  try {
    sysDev = realpathSync(`/sys/dev/block/${devno}`);
  } catch {
    return refuse(`${devno}, the device of the file system that holds ${disk.path}, is not in /sys`);
  }
  const whole = existsSync(path.join(sysDev, "partition")) ? path.dirname(sysDev) : sysDev;
  if (readTrimmed(path.join(whole, "queue", "dax")) === "1")
    return refuse(
      `the file system that holds ${disk.path} is on a DAX-capable device: its writes may be no block I/O`,
    );
  const bad = options.find(
    (o) => o === "data=journal" || o === "dax" || o.startsWith("dax=always") || o.startsWith("rtdev="),
  );
  if (bad !== undefined)
    return refuse(
      `the file system that holds ${disk.path} is mounted with ${bad}: its writes reach their place late or elsewhere`,
    );
  const sectors = Number(readTrimmed(`/sys/dev/block/${devno}/size`) ?? "NaN");
  if (!Number.isSafeInteger(sectors))
    return refuse(`cannot read the size of ${devno}, the device of the file system that holds ${disk.path}`);
  const device = devicePlan({
    path: `the device ${devno} of the file system that holds ${disk.path}`,
    kind: "block",
    sizeBytes: sectors * 512,
    sectorSize: 512,
    devno,
  });
  return {
    ...device,
    key: `${device.key} inode ${st.ino}`,
    limitBytes: sectors * 512,
    fileSystemDevice: devno,
  };
}

/**
 * The mount options of the file system on device `devno`, or null. For ext4, all of them from
 * /proc/fs/ext4/<device>/options: mountinfo leaves out those that are the super block's defaults
 * (`tune2fs -o journal_data` makes data=journal one).
 */
function superOptions(devno: string, ext4: boolean): string[] | null {
  if (ext4) {
    try {
      const name = path.basename(realpathSync(`/sys/dev/block/${devno}`));
      return readFileSync(`/proc/fs/ext4/${name}/options`, "utf8")
        .split("\n")
        .filter((o) => o !== "");
    } catch {
      // not there (an older kernel): mountinfo below
    }
  }
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f[2] !== devno) continue;
    const dash = f.indexOf("-", 6);
    if (dash < 0 || f[dash + 3] === undefined) continue;
    return f[dash + 3]!.split(",");
  }
  return null;
}

function requireTracefs(): string {
  const tracefs = findTracefs();
  if (tracefs === null) {
    throw new SwitchbackError(
      "TRACKER_UNAVAILABLE",
      "tracefs is not mounted at /sys/kernel/tracing and could not be mounted; run as root on a kernel with tracing, or use --track none",
    );
  }
  return tracefs;
}

export function findTracefs(): string | null {
  for (const t of TRACEFS_CANDIDATES) if (existsSync(path.join(t, "instances"))) return t;
  // not mounted: mount it where the kernel documents it
  if (existsSync(TRACEFS_CANDIDATES[0]!)) {
    childProcess().spawnSync("mount", ["-t", "tracefs", "nodev", TRACEFS_CANDIDATES[0]!], {
      stdio: "ignore",
    });
    if (existsSync(path.join(TRACEFS_CANDIDATES[0]!, "instances"))) return TRACEFS_CANDIDATES[0]!;
  }
  return null;
}

/** Removes tracefs instances left by switchback processes that died (kill -9) while tracking. */
export function removeStaleInstances(tracefs = findTracefs()): string[] {
  if (tracefs === null) return [];
  const removed: string[] = [];
  for (const n of readdirSync(path.join(tracefs, "instances"))) {
    const m = /^switchback-(\d+)-\d+$/.exec(n);
    if (m === null || pidAlive(Number(m[1]))) continue;
    try {
      rmdirSync(path.join(tracefs, "instances", n));
      removed.push(n);
    } catch {
      // still in use: leave it
    }
  }
  return removed;
}

export interface TracefsTrackerOptions {
  /** ring buffer per CPU, KiB (default: 4 MiB per CPU, at most 64 MiB in all) */
  bufferKbPerCpu?: number;
  /** how image files are traced (default: through the loop devices that carry them) */
  files?: FileRoute;
  /** the disks' plans, when the caller has just made them (planDisk with the same route) */
  plans?: DiskPlan[];
}

let instanceCounter = 0;

export class TracefsWriteTracker implements WriteTracker {
  readonly warnings: string[] = [];
  readonly #disks: DiskInfo[];
  readonly #plans: DiskPlan[];
  readonly #route: FileRoute;
  readonly #dir: string;
  readonly #byDev = new Map<number, { disk: number; w: Window }[]>();
  /** per disk: [fromByte, toByte) intervals seen so far (merged at collect) */
  readonly #seen: RangeList[];
  /** #byDev for the native drain: five numbers a window (dev, disk, shiftSectors, addBytes, limitBytes) */
  #windows: Float64Array | undefined;
  readonly #lost: (string | null)[];
  #reader: RawTraceReader | null = null;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** a journal's instance outlives the process: never drained in the background, kept at detach */
  readonly #persistent: boolean;

  private constructor(
    disks: DiskInfo[],
    route: FileRoute,
    dir: string,
    persistent: boolean,
    plans = disks.map((d) => planDisk(d, route)),
  ) {
    this.#disks = disks;
    this.#plans = plans;
    this.#route = route;
    this.#dir = dir;
    this.#persistent = persistent;
    this.#seen = disks.map(() => new RangeList());
    this.#lost = plans.map((p) => p.untrackable);
    plans.forEach((p, disk) => {
      for (const w of p.windows) {
        const list = this.#byDev.get(w.dev) ?? [];
        list.push({ disk, w });
        this.#byDev.set(w.dev, list);
      }
    });
  }

  /** Starts tracking writes to the disks; throws TRACKER_UNAVAILABLE when tracefs cannot be used. */
  static start(disks: DiskInfo[], o: TracefsTrackerOptions = {}): TracefsWriteTracker {
    const tracefs = requireTracefs();
    removeStaleInstances(tracefs);
    return TracefsWriteTracker.#create(
      disks,
      path.join(tracefs, "instances", `${INSTANCE_PREFIX}${process.pid}-${instanceCounter++}`),
      false,
      o,
    );
  }

  /**
   * A named instance that keeps recording after this process ends (a write journal between points):
   * attached when it exists, created otherwise. `fresh` says it was just created.
   */
  static persistent(
    name: string,
    disks: DiskInfo[],
    o: TracefsTrackerOptions = {},
  ): { tracker: TracefsWriteTracker; fresh: boolean } {
    const dir = path.join(requireTracefs(), "instances", name);
    if (!existsSync(dir)) return { tracker: TracefsWriteTracker.#create(disks, dir, true, o), fresh: true };
    const t = new TracefsWriteTracker(disks, o.files ?? "loop", dir, true, o.plans);
    if ([...t.#byDev.keys()].length > 0)
      t.#reader = RawTraceReader.open(dir, path.dirname(path.dirname(dir)), EVENTS);
    return { tracker: t, fresh: false };
  }

  /** Removes a named instance (a journal's), if it is there. */
  static removeInstance(name: string): void {
    const tracefs = findTracefs();
    if (tracefs === null) return;
    try {
      rmdirSync(path.join(tracefs, "instances", name));
    } catch {
      // not there, or still being read by someone: leave it
    }
  }

  static #create(
    disks: DiskInfo[],
    dir: string,
    persistent: boolean,
    o: TracefsTrackerOptions,
  ): TracefsWriteTracker {
    try {
      mkdirSync(dir);
    } catch (err) {
      throw new SwitchbackError(
        "TRACKER_UNAVAILABLE",
        `cannot create the tracefs instance ${dir}: ${(err as Error).message}`,
      );
    }
    const t = new TracefsWriteTracker(disks, o.files ?? "loop", dir, persistent, o.plans);
    try {
      t.#setup(o);
    } catch (err) {
      t.#remove();
      throw err;
    }
    return t;
  }

  #setup(o: TracefsTrackerOptions): void {
    const devs = [...this.#byDev.keys()];
    if (devs.length === 0) return; // nothing traceable: every disk reports why at collect
    const cpus = readdirSync(path.join(this.#dir, "per_cpu")).filter((n) => n.startsWith("cpu")).length;
    const kb = o.bufferKbPerCpu ?? Math.max(256, Math.min(4096, Math.floor(65536 / Math.max(1, cpus))));
    writeFileSync(path.join(this.#dir, "buffer_size_kb"), String(kb));
    // when the buffer is full drop new events (counted) rather than overwrite old ones
    writeFileSync(path.join(this.#dir, "options", "overwrite"), "0");
    const filter = `(${devs.map((d) => `dev == ${d}`).join(" || ")}) && !(rwbs ~ "R*")`;
    for (const e of EVENTS) {
      const f = path.join(this.#dir, "events", "block", e, "filter");
      try {
        writeFileSync(f, filter);
      } catch (err) {
        // a rejected filter leaves the event unfiltered: never enable it then
        throw new SwitchbackError(
          "TRACKER_UNAVAILABLE",
          `tracefs rejected the filter for ${e}: ${(err as Error).message}`,
        );
      }
      const back = readFileSync(f, "utf8").trim();
      if (back !== filter)
        throw new SwitchbackError(
          "TRACKER_UNAVAILABLE",
          `tracefs kept filter "${back}" for ${e}, not "${filter}"`,
        );
    }
    this.#reader = RawTraceReader.open(this.#dir, path.dirname(path.dirname(this.#dir)), EVENTS);
    for (const e of EVENTS) writeFileSync(path.join(this.#dir, "events", "block", e, "enable"), "1");
    writeFileSync(path.join(this.#dir, "tracing_on"), "1");
    if (this.#persistent) return; // its events wait in the kernel for whoever collects next
    this.#timer = setInterval(() => this.#drain(), DRAIN_EVERY_MS);
    this.#timer.unref();
  }

  /** Reads every event the ring buffers hold now. */
  #drain(): void {
    if (this.#reader === null) return;
    // in the native addon where it is built: the pages parsed and the events placed in one call
    this.#windows ??= Float64Array.from(
      [...this.#byDev.values()].flatMap((list) =>
        list.flatMap(({ disk, w }) => [
          w.dev,
          disk,
          w.shiftSectors,
          w.addBytes,
          this.#plans[disk]!.limitBytes,
        ]),
      ),
    );
    const placed = this.#reader.drainPlaced(this.#windows, this.#disks.length);
    if (placed !== null) {
      placed.pairs.forEach((p, disk) => {
        this.#seen[disk]!.pushAll(p);
      });
      if (placed.passthrough !== null) this.#loseAll(passthroughLoss(placed.passthrough));
      if (placed.problem !== null) this.#loseAll(placed.problem);
      return;
    }
    const problem = this.#reader.drain((dev, sector, nr, rwbs) => this.#event(dev, sector, nr, rwbs));
    if (problem !== null) this.#loseAll(problem);
  }

  #event(dev: number, sector: number, nr: number, rwbs: string): void {
    if (nr === 0) {
      // flushes carry no data; a request of another kind without sectors is a passthrough command
      // (SG_IO, NVMe passthrough), whose writes the trace cannot place
      if (rwbs.includes("N") && this.#byDev.has(dev)) this.#loseAll(passthroughLoss(rwbs));
      return;
    }
    for (const { disk, w } of this.#byDev.get(dev) ?? []) {
      const size = this.#plans[disk]!.limitBytes;
      const from = Math.max(0, (sector + w.shiftSectors) * 512 + w.addBytes);
      const to = Math.min(size, (sector + w.shiftSectors + nr) * 512 + w.addBytes);
      if (to > from) this.#seen[disk]!.push(from, to);
    }
  }

  #loseAll(why: string): void {
    for (let i = 0; i < this.#lost.length; i++) this.#lost[i] ??= why;
  }

  /** Events the kernel could not record: dropped (buffer full) or overwritten. */
  #kernelLosses(): string | null {
    const base = path.join(this.#dir, "per_cpu");
    for (const cpu of readdirSync(base)) {
      const stats = readTrimmed(path.join(base, cpu, "stats"));
      if (stats === null) return `cannot read ${cpu} trace stats`;
      for (const key of ["overrun", "commit overrun", "dropped events"]) {
        const m = new RegExp(`^${key}: (\\d+)`, "m").exec(stats);
        if (m === null) continue;
        if (Number(m[1]) > 0)
          return `the trace ring buffer of ${cpu} lost ${m[1]} event(s) (${key}); the buffer is too small for this write rate`;
      }
    }
    if (readTrimmed(path.join(this.#dir, "tracing_on")) !== "1")
      return "tracing was switched off in the tracker's instance";
    for (const e of EVENTS) {
      if (readTrimmed(path.join(this.#dir, "events", "block", e, "enable")) !== "1")
        return `event ${e} was disabled`;
    }
    return null;
  }

  /**
   * Per disk, ascending [from, to) ranges of the `granule`-byte pieces written since start (default:
   * 64 KiB units), or null. A disk traced through its file system (`files: "file-system"`) gets the
   * 512-byte sectors written on that file system's device instead, for its file's extents to place.
   */
  async collect(granule = UNIT_BYTES): Promise<([number, number][] | null)[]> {
    if (this.#stopped) throw new Error("collect() after stop()");
    this.#drain();
    if (this.#reader !== null) {
      const k = this.#kernelLosses();
      if (k !== null) this.#loseAll(k);
    }
    // a loop device attached (or a partition table changed) since start: its writes were not traced
    this.#disks.forEach((d, i) => {
      if (this.#lost[i] !== null) return;
      let now: string;
      try {
        now = planDisk(d, this.#route).key;
      } catch (err) {
        now = `error ${(err as Error).message}`;
      }
      if (now !== this.#plans[i]!.key)
        this.#lost[i] = `the block devices of ${d.path} changed while tracking`;
    });
    return this.#disks.map((d, i) => {
      const why = this.#lost[i];
      if (why !== null && why !== undefined) {
        this.warnings.push(
          `write tracker cannot vouch for disk ${i} (${d.path}): ${why}; re-read it whole while frozen`,
        );
        return null;
      }
      const plan = this.#plans[i]!;
      if (plan.fileSystemDevice !== null) return toRanges(this.#seen[i]!, 512, plan.limitBytes / 512);
      return toRanges(this.#seen[i]!, granule, Math.ceil(d.sizeBytes / granule));
    });
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#remove();
  }

  /** Stops reading but leaves a persistent instance recording. */
  detach(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#reader?.close();
    this.#reader = null;
  }

  #remove(): void {
    clearInterval(this.#timer);
    if (this.#reader !== null) {
      try {
        writeFileSync(path.join(this.#dir, "tracing_on"), "0");
      } catch {
        // removing the instance below stops it as well
      }
      this.#reader.close();
      this.#reader = null;
    }
    try {
      rmdirSync(this.#dir);
    } catch {
      // a second attempt after a moment; a leftover is removed by the next tracker (removeStaleInstances)
      try {
        rmdirSync(this.#dir);
      } catch {
        // leave it
      }
    }
  }
}

function passthroughLoss(rwbs: string): string {
  return `a passthrough request (rwbs ${rwbs}) on a traced device: its writes cannot be placed`;
}

export type TrackMode = "auto" | "tracefs" | "none";

/**
 * The tracker factory for replicate: tracefs when asked (failure is an error), or when `auto` and
 * root (failure is a warning and a whole-disk frozen re-read), none otherwise.
 */
export function writeTrackerFactory(
  mode: TrackMode,
): ((disks: DiskInfo[]) => Promise<WriteTracker | null>) | undefined {
  if (mode === "none") return undefined;
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (mode === "auto" && !root) return undefined;
  return async (disks) => {
    try {
      return TracefsWriteTracker.start(disks);
    } catch (err) {
      if (mode === "tracefs") throw err;
      const why = (err as Error).message;
      return {
        warnings: [`write tracker unavailable (${why}); every disk was re-read whole while frozen`],
        collect: async () => disks.map(() => null),
        stop: async () => {},
      };
    }
  };
}

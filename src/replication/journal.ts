// The write journal: kernel change tracking BETWEEN points, for disks that are block devices (a loop
// device counts, but then its backing file must only be written through it) and for image files on
// ext4 or XFS, which are traced through the device of the file system that holds them and placed in
// the file by its extents. A named tracefs instance (`switchback-journal-<token>`) records every write
// to the disks' devices and outlives the agent process, so a point started by a new process (the
// `replicate-once` CLI, a restarted agent) still learns what was written since the last point and
// reads only that, instead of hashing the whole disks.
//
// Why that is enough (docs/consistency.md): the journal is armed before the pass of the point that
// first relies on it begins, so every write the pass could have missed is recorded; writes are only
// ever consumed from the kernel by a drain (a point's `since`, or one during or between points),
// which persists them in the agent state (journal.pending) before anything relies on them and keeps
// them there until a point that covers them is committed. A point that fails
// leaves them for the next. Whatever breaks that chain (lost events, devices attached or detached,
// a journal armed after the last point, a missing or unreadable file) makes `since` answer null for
// the disk: the pass then reads it whole, as without a journal, and the journal starts afresh.
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { BLOCK_SIZE } from "../datastore/format.ts";
import type { PointId } from "../domain/ids.ts";
import { readTrimmed, writeFileAtomic } from "../platform/files.ts";
import { type HeldLock, takeLock } from "../platform/process.ts";
import type { DiskInfo } from "./disk-source.ts";
import { blocksAtSectors, changedByExtents, extentsOf } from "./extent-changes.ts";
import { mergeRanges } from "./ranges.ts";
import {
  type DiskPlan,
  findTracefs,
  planDisk,
  type TracefsTrackerOptions,
  TracefsWriteTracker,
  type TrackMode,
} from "./write-tracker.ts";

const FILE = "journal.json";
const LOCK = "journal.lock";
/** the binary files' headers: an 8-byte magic, then the journal's instance name (32 bytes, NUL-padded) */
const HEADER_BYTES = 8 + 32;
/**
 * The drained blocks not yet in a committed point, appended drain after drain (a point's, or the
 * daemon's between points), so that a drain writes what it drained, not everything pending:
 * PENDING_MAGIC, the journal's instance name (32 bytes, NUL-padded), then records of a u32 disk, a
 * u32 count and `count` [from, to) block ranges as two f64 each, little-endian. Cleared at a commit.
 */
const PENDING = "journal.pending";
const PENDING_MAGIC = "SBJPEND1";
const PENDING_HEADER = HEADER_BYTES;
/**
 * The image files' extents (extentsOf's four numbers each), rewritten only when they changed (a
 * write in place changes none): EXTENTS_MAGIC, the instance name (32 bytes), then per image file a
 * u32 disk, a u32 count of extents and 4 × count f64, little-endian.
 */
const EXTENTS = "journal.extents";
const EXTENTS_MAGIC = "SBJEXTS1";
/** a trace buffer this full (of its fullest CPU) is drained before the point that would */
const DRAIN_AT = 0.25;
/** how often a point looks at the buffer while it runs */
const DRAIN_EVERY_MS = 1000;
/** pending past this many bytes is merged and rewritten by the next drain between points */
const COMPACT_BYTES = 8 * 1024 * 1024;
/** more block ranges pending than this (16 bytes each) and the journal gives up: read whole */
const MAX_PENDING_RANGES = 8_000_000;
/** how long a point waits for the journal lock (held by a drain between points, say) */
const LOCK_WAIT_MS = 3000;

interface JournalFile {
  version: 4;
  instance: string;
  /** which devices carry each disk (write-tracker's plan keys) when the journal was armed */
  keys: string[];
  /** the last committed point the journal has recorded every write since, or null */
  coversSince: string | null;
  /**
   * how many bytes of journal.pending (header included) hold the 4 KiB blocks drained from the kernel
   * but not yet in a committed point; bytes past it are none of this journal's
   */
  pendingBytes: number;
  /** when it was armed (ms since the epoch): a journal is trusted for `maxAgeMs` at most */
  armedAt: number;
  /**
   * SHA-256 (hex) of journal.extents, which holds the image files' extents as the last drain (or the
   * arming) saw them: they place the next drain's sectors in the files and tell what moved since;
   * null when no disk is an image file
   */
  extentsHash: string | null;
}

/**
 * How long one journal is trusted before a point reads the disks whole again and arms a new one: a
 * safety net, at the price of one hashing pass a day, for writes no block trace sees (made to a loop
 * device's backing file, say, or through a tampered instance).
 */
export const JOURNAL_MAX_AGE_MS = 24 * 3600_000;

export interface ChangeJournal {
  /**
   * Per disk, the 4 KiB blocks written since point `last` (ascending [fromBlock, toBlock) ranges), or null
   * where the journal cannot vouch for that (then the caller reads the whole disk). Call it before
   * the pass begins; it arms a new journal when there is none to trust.
   */
  since(last: PointId | null): Promise<([number, number][] | null)[]>;
  /** The point is committed: from now on the journal covers writes since it. */
  committed(point: PointId): Promise<void> | void;
  /** The point is over, committed or not: let the next one use the journal. */
  release(): Promise<void> | void;
  /**
   * While a point runs, the journal drains a filling trace buffer every second (a long pass on a
   * busy disk would overflow it); nothing may be written while file systems are frozen: pause()
   * stops that (resolving once a drain under way is done) until resume().
   */
  pause?(): Promise<void>;
  resume?(): void;
  /**
   * Between points (the agent daemon, every second): drains what the kernel holds into what is
   * pending once a CPU's trace buffer is a quarter full, so that a busy disk does not overflow it
   * before the next point. `last`: the agent's last committed point, when it knows it (a journal that
   * covers another is left alone). Returns a warning when the journal lost track, else null.
   */
  absorb?(last?: PointId): Promise<string | null>;
  readonly warnings: readonly string[];
}

/**
 * Arming a journal and clearing it at a commit write its file atomically but without fsyncs: losing
 * either write only leaves an older file, which names an older point than the latest and so vouches
 * for nothing (the next point reads the disks whole). The two writes around a drain stay durable:
 * losing one while the kernel instance lives on (a state folder on a network file system whose
 * server crashed) would leave a file that trusts the instance for writes it no longer holds.
 */
const EPHEMERAL = { durable: false };

export type ChangeJournalFactory = (stateDir: string, disks: DiskInfo[]) => Promise<ChangeJournal | null>;

export class WriteJournal implements ChangeJournal {
  readonly warnings: string[] = [];
  readonly #file: string;
  readonly #pendingFile: string;
  readonly #extentsFile: string;
  readonly #disks: DiskInfo[];
  #state: JournalFile | null = null;

  readonly #lockFile: string;
  #held: HeldLock | null = null;

  readonly #maxAgeMs: number;
  /** while a point runs: where the records drained after its own drain begin in journal.pending */
  #sinceEnd = 0;
  #during: NodeJS.Timeout | undefined;
  #duringDrain: Promise<void> | null = null;
  #paused = false;
  /** the disks' trace plans as #keys last made them */
  #plans: DiskPlan[] | undefined;

  /** the trace buffer per CPU of a journal armed here, KiB (default: the tracker's, 4 MiB) */
  readonly #bufferKbPerCpu: number | undefined;

  constructor(stateDir: string, disks: DiskInfo[], maxAgeMs = JOURNAL_MAX_AGE_MS, bufferKbPerCpu?: number) {
    this.#file = path.resolve(stateDir, FILE);
    this.#pendingFile = path.resolve(stateDir, PENDING);
    this.#extentsFile = path.resolve(stateDir, EXTENTS);
    this.#lockFile = path.resolve(stateDir, LOCK);
    this.#disks = disks;
    this.#maxAgeMs = maxAgeMs;
    this.#bufferKbPerCpu = bufferKbPerCpu;
  }

  async since(last: PointId | null): Promise<([number, number][] | null)[]> {
    sweepJournals();
    // one point at a time per agent state: a second process draining the same journal, or saving its
    // file, could take writes away from the point that will commit (docs/consistency.md); a drain
    // between points holds the lock for a moment only
    for (const until = Date.now() + LOCK_WAIT_MS; !this.#lock() && Date.now() < until; )
      await new Promise((r) => setTimeout(r, 50));
    if (this.#held === null) {
      this.warnings.push(
        `another process (pid in ${this.#lockFile}) is taking a point with this agent state; the disks are read whole`,
      );
      return this.#disks.map(() => null);
    }
    const saved = readJournalFile(this.#file);
    const plan = this.#keys();
    if ("refused" in plan) {
      if (plan.refused !== null)
        this.warnings.push(`no write journal: ${plan.refused}; the disks are read whole`);
      if (saved !== null) TracefsWriteTracker.removeInstance(saved.instance);
      return this.#disks.map(() => null);
    }
    const { keys } = plan;
    const expired = saved !== null && Date.now() - saved.armedAt > this.#maxAgeMs;
    const usable =
      saved !== null && !expired && last !== null && saved.coversSince === last && this.#fits(saved, keys);
    if (expired && last !== null && saved?.coversSince === last)
      this.warnings.push(
        `write journal ${saved.instance} is older than ${Math.round(this.#maxAgeMs / 3600_000)} h: the disks are read whole once, as a check`,
      );
    if (saved !== null && usable) {
      const r = await this.#drain(saved, "point");
      if (!("lost" in r)) {
        this.#state = r.state;
        this.#startDuring();
        return r.pending!;
      }
      this.warnings.push(`${r.lost}; the disks are read whole`);
    }
    if (saved !== null && last !== null && saved.coversSince === last && !sameKeys(saved.keys, keys))
      this.warnings.push(
        `the devices of the disks changed since write journal ${saved.instance} was armed; the disks are read whole`,
      );
    // nothing to trust: arm a new journal before the pass, read everything this time
    if (saved !== null) TracefsWriteTracker.removeInstance(saved.instance);
    // named in the journal file and the registry before it exists, so that no sweep takes it for a stray
    const instance = `switchback-journal-${randomBytes(6).toString("hex")}`;
    this.#state = {
      version: 4,
      instance,
      keys,
      coversSince: null,
      pendingBytes: PENDING_HEADER,
      armedAt: Date.now(),
      extentsHash: null,
    };
    try {
      this.#arm(instance);
    } catch (err) {
      this.#state = null; // (nothing armed: the commit must not vouch for it)
      throw err;
    }
    if (this.#state !== null) this.#startDuring();
    return this.#disks.map(() => null);
  }

  /** Arms the journal `#state` names (its file written first, with nothing to vouch for). */
  #arm(instance: string): void {
    const state = this.#state!;
    writeFileAtomic(this.#file, JSON.stringify(state), 0o644, EPHEMERAL);
    // (not fsynced: until a commit vouches for the journal nothing relies on it, and a header lost
    // after that makes the file unreadable, which vouches for nothing)
    writeFileSync(this.#pendingFile, pendingHeader(instance));
    register(instance, this.#file);
    // an image file's dirty pages written out before tracing begins: written after it, a fresh
    // image's would all be in the next drain, which would read the whole file again
    for (const d of this.#disks) if (d.kind === "file") extentsOfFile(d.path);
    TracefsWriteTracker.persistent(instance, this.#disks, {
      ...this.#trackerOptions(),
      ...(this.#bufferKbPerCpu !== undefined ? { bufferKbPerCpu: this.#bufferKbPerCpu } : {}),
    }).tracker.detach();
    // an image file's extents, taken once its writes are traced: a place that changes after this is
    // told by the next drain's extents; kept in memory until the point commits (`committed`)
    const extents = this.#disks.map((d) => (d.kind === "file" ? extentsOfFile(d.path) : null));
    const unmapped = this.#disks.findIndex((d, i) => d.kind === "file" && extents[i] === null);
    if (unmapped >= 0) {
      this.warnings.push(
        `no write journal: the extents of ${this.#disks[unmapped]!.path} cannot be read; the disks are read whole`,
      );
      TracefsWriteTracker.removeInstance(instance);
      this.#state = null;
      return;
    }
    if (extents.some((m) => m !== null)) {
      // (not fsynced either: a file lost or torn does not match the hash the commit writes)
      const bytes = encodeExtents(instance, extents);
      writeFileAtomic(this.#extentsFile, bytes, 0o644, EPHEMERAL);
      state.extentsHash = sha256(bytes);
    }
  }

  /** Drains a filling trace buffer every second while the point runs (not while paused). */
  #startDuring(): void {
    this.#sinceEnd = this.#state!.pendingBytes;
    this.#during = setInterval(() => {
      const state = this.#state;
      if (state === null || this.#paused || this.#duringDrain !== null) return;
      if (bufferFill(state.instance) < DRAIN_AT) return;
      this.#duringDrain = (async () => {
        try {
          const r = await this.#drain(state, "during");
          if ("lost" in r) throw new Error(r.lost);
          this.#state = r.state;
        } catch (err) {
          // the file vouches for nothing now (or never will): the commit must not either
          this.warnings.push(`${(err as Error).message}; the next point reads the disks whole`);
          this.#state = null;
          clearInterval(this.#during);
        }
      })().finally(() => {
        this.#duringDrain = null;
      });
    }, DRAIN_EVERY_MS);
    this.#during.unref();
  }

  /** Stops draining during the point; resolves once a drain under way is done. */
  async #stopDuring(): Promise<void> {
    clearInterval(this.#during);
    this.#during = undefined;
    await this.#duringDrain;
  }

  async pause(): Promise<void> {
    this.#paused = true;
    await this.#duringDrain;
  }

  resume(): void {
    this.#paused = false;
  }

  async absorb(last?: PointId): Promise<string | null> {
    // (a journal that vouches for nothing, or covers since another point than the agent's last, is
    // the next point's to replace)
    const peek = readJournalFile(this.#file);
    if (peek === null || peek.coversSince === null || (last !== undefined && peek.coversSince !== last))
      return null;
    if (bufferFill(peek.instance) < DRAIN_AT) return null;
    if (!this.#lock()) return null; // a point is under way: it drains
    try {
      // read again under the lock: a point may have just re-armed or advanced it
      const saved = readJournalFile(this.#file);
      if (saved === null || saved.coversSince === null) return null;
      const plan = this.#keys();
      // (a journal that no longer fits its disks, or an old one, is the next point's to replace)
      if ("refused" in plan || !this.#fits(saved, plan.keys) || Date.now() - saved.armedAt > this.#maxAgeMs)
        return null;
      if (last !== undefined && saved.coversSince !== last) return null;
      const r = await this.#drain(saved, "between");
      return "lost" in r ? `${r.lost}; the next point reads the disks whole` : null;
    } finally {
      this.release();
    }
  }

  /**
   * The disks' trace plans' keys (image files are traced through the device of the file system that
   * holds them), or why they cannot have a journal (null: no warning, a block device that cannot be
   * traced reads whole quietly, as it always did).
   */
  #keys(): { keys: string[] } | { refused: string | null } {
    const plans = this.#disks.map((d) => planDisk(d, "file-system"));
    const untrackable = plans.findIndex((p) => p.untrackable !== null);
    if (untrackable >= 0)
      return { refused: this.#disks[untrackable]!.kind === "file" ? plans[untrackable]!.untrackable : null };
    const ids = this.#disks.map((d, i) => {
      const fs = plans[i]!.fileSystemDevice;
      return journalIdentity(
        fs === null
          ? d
          : {
              path: `the device of the file system that holds ${d.path}`,
              kind: "block",
              sizeBytes: 0,
              sectorSize: 512,
              devno: fs,
            },
      );
    });
    const refused = ids.find((x) => "refused" in x);
    if (refused !== undefined && "refused" in refused) return { refused: refused.refused };
    // (the tracker attached next takes these plans rather than making them again)
    this.#plans = plans;
    return { keys: plans.map((p, i) => `${p.key}|${"key" in ids[i]! ? ids[i].key : ""}`) };
  }

  /** Image files traced through the device of the file system that holds them, with #keys' plans. */
  #trackerOptions(): TracefsTrackerOptions {
    return { files: "file-system", ...(this.#plans !== undefined ? { plans: this.#plans } : {}) };
  }

  /** Whether a saved journal is of these disks, as they are now. */
  #fits(saved: JournalFile, keys: string[]): boolean {
    return (
      this.#disks.some((d) => d.kind === "file") === (saved.extentsHash !== null) &&
      sameKeys(saved.keys, keys)
    );
  }

  /**
   * Drains the kernel's events into the pending blocks of a journal and saves them (durably): the new
   * state and, for a point's own drain, every block pending now; or why it lost track, in which case
   * the file vouches for nothing any more. A point's drain rewrites what is pending, merged; a drain
   * during a point only appends (the commit keeps those records: they came after the point's own
   * drain); one between points appends, and merges and rewrites once it is past COMPACT_BYTES.
   */
  async #drain(
    saved: JournalFile,
    how: "point" | "during" | "between",
  ): Promise<{ state: JournalFile; pending: [number, number][][] | null } | { lost: string }> {
    const { tracker, fresh } = TracefsWriteTracker.persistent(
      saved.instance,
      this.#disks,
      this.#trackerOptions(),
    );
    try {
      // Draining consumes the events: until what is drained is saved, the file must not vouch for
      // anything, so that a crash (or a failed save) in between re-arms instead.
      writeFileAtomic(this.#file, JSON.stringify({ ...saved, coversSince: null }));
      if (fresh) {
        // (made just now under the old name: it must not pass for the journal that was there)
        TracefsWriteTracker.removeInstance(saved.instance);
        return { lost: `write journal ${saved.instance} was gone` };
      }
      const merge = how === "point" || (how === "between" && saved.pendingBytes > COMPACT_BYTES);
      const before = readPending(this.#pendingFile, saved, this.#disks.length, merge);
      if (before === null)
        return { lost: `write journal ${saved.instance} cannot read its ${PENDING} (damaged or gone)` };
      const bases = readExtents(this.#extentsFile, saved, this.#disks);
      if (bases === null)
        return { lost: `write journal ${saved.instance} cannot read its ${EXTENTS} (damaged or gone)` };
      // an image file's dirty pages are written out first, so that its writes are in the trace when
      // it is drained, and its extents taken, which place them in the file
      const maps = this.#disks.map((d) => (d.kind === "file" ? extentsOfFile(d.path) : null));
      const drained = await tracker.collect(BLOCK_SIZE);
      let unordered: string | null = null;
      const written = drained.map((r, i) => {
        const d = this.#disks[i]!;
        if (r === null || d.kind !== "file") return r;
        const now = maps[i];
        const base = bases[i];
        if (now == null || base == null) return null;
        // writes that landed in the file's extents, and every block whose place moved (allocated,
        // punched, zeroed, cloned over, defragmented) since the last drain
        const moved = changedByExtents(base, now, d.sizeBytes, true);
        if (moved === null) {
          unordered = d.path;
          return null;
        }
        return mergeRanges([...blocksAtSectors(now, r, d.sizeBytes), ...moved]);
      });
      if (!written.every((r) => r !== null)) {
        const why = !drained.every((r) => r !== null)
          ? tracker.warnings.join("; ")
          : unordered !== null
            ? `the extents of ${unordered} overlapped: they changed while they were read`
            : "the extents of an image file could not be read";
        return { lost: `write journal ${saved.instance} lost track of writes (${why})` };
      }
      const ranges = written as [number, number][][];
      let pending: [number, number][][] | null = null;
      let pendingBytes: number;
      if (before !== true) {
        pending = ranges.map((r, i) => mergeRanges([...r, ...before[i]!]));
        const count = pending.reduce((n, r) => n + r.length, 0);
        if (count > MAX_PENDING_RANGES)
          return {
            lost: `write journal ${saved.instance} holds ${count} block ranges pending, more than ${MAX_PENDING_RANGES}`,
          };
        pendingBytes = writePending(this.#pendingFile, saved.instance, pending);
      } else pendingBytes = appendPending(this.#pendingFile, saved.pendingBytes, ranges);
      let { extentsHash } = saved;
      if (maps.some((m, i) => !sameExtents(m, bases[i]!))) {
        const bytes = encodeExtents(saved.instance, maps);
        writeFileAtomic(this.#extentsFile, bytes);
        extentsHash = sha256(bytes);
      }
      const state = { ...saved, pendingBytes, extentsHash };
      writeFileAtomic(this.#file, JSON.stringify(state));
      return { state, pending };
    } finally {
      tracker.detach(); // what comes after stays in the kernel for the next drain
    }
  }

  async committed(point: PointId): Promise<void> {
    await this.#stopDuring();
    if (this.#state === null || this.#held === null) return;
    // Writes recorded after `since` drained are still in the kernel's buffer for the next point, or
    // were drained during the point into records past #sinceEnd: those stay pending.
    const { instance, pendingBytes } = this.#state;
    const after = pendingBytes - this.#sinceEnd;
    if (after > 0) {
      const kept = Buffer.allocUnsafe(PENDING_HEADER + after);
      pendingHeader(instance).copy(kept);
      const fd = openSync(this.#pendingFile, "r");
      try {
        if (readSync(fd, kept, PENDING_HEADER, after, this.#sinceEnd) !== after)
          throw new Error(`${PENDING} is shorter than its journal says`);
      } finally {
        closeSync(fd);
      }
      // durable before the journal file names its length (which need not be: an older file names an older point)
      writeFileAtomic(this.#pendingFile, kept);
    }
    this.#state = { ...this.#state, coversSince: point, pendingBytes: PENDING_HEADER + after };
    writeFileAtomic(this.#file, JSON.stringify(this.#state), 0o644, EPHEMERAL);
    if (after > 0) return;
    // what the file says is pending is the header alone from now on: the rest may go
    try {
      truncateSync(this.#pendingFile, PENDING_HEADER);
    } catch {
      // (bytes past pendingBytes are not read)
    }
  }

  async release(): Promise<void> {
    await this.#stopDuring();
    this.#held?.release();
    this.#held = null;
  }

  /** Takes the agent state's journal lock (a file holding our pid); a dead holder's lock is taken over. */
  #lock(): boolean {
    this.#held ??= takeLock(this.#lockFile);
    return this.#held !== null;
  }
}

/**
 * What, besides its devices, makes a disk the same disk for the journal: the kernel's disk sequence
 * number (new at every attach; a kernel without it cannot tell a detach and attach under the same
 * device number), and for a loop device the inode of its backing file, which no other loop device
 * may share (its writes would reach the file unseen).
 */
function journalIdentity(d: DiskInfo): { key: string } | { refused: string } {
  const sys = `/sys/dev/block/${d.devno}`;
  // a partition's sequence number is its disk's (its sysfs folder is inside the disk's; the
  // /sys/dev/block entry is a link, so the parent is taken of where it leads)
  const whole = readTrimmed(`${sys}/partition`) === null ? sys : path.dirname(realpathSync(sys));
  const seq = readTrimmed(`${whole}/diskseq`);
  if (seq === null) return { refused: `${d.path} has no disk sequence number (Linux 5.15 or later has)` };
  const backing = readTrimmed(`${whole}/loop/backing_file`);
  if (backing === null) return { key: `seq ${seq}` };
  let ino: string;
  try {
    const st = statSync(backing);
    ino = `${st.dev}:${st.ino}`;
  } catch {
    return { refused: `the backing file of loop device ${d.path} is gone` };
  }
  let loops: string[] = [];
  try {
    loops = readdirSync("/sys/block").filter((n) => n.startsWith("loop"));
  } catch {
    // no sysfs: nothing else to find
  }
  const self = realpathSync(whole);
  for (const l of loops) {
    if (realpathSync(`/sys/block/${l}`) === self) continue;
    if (readTrimmed(`/sys/block/${l}/loop/backing_file`) === backing)
      return { refused: `loop device /dev/${l} shares the backing file of ${d.path}` };
  }
  return { key: `seq ${seq} file ${ino}` };
}

/**
 * How full the fullest CPU's trace buffer of a journal instance is (0 to 1); 1 when it cannot be
 * told (the instance gone: the drain then finds out).
 */
function bufferFill(instance: string): number {
  const tracefs = findTracefs();
  if (tracefs === null) return 1;
  const dir = path.join(tracefs, "instances", instance);
  const kb = Number(readTrimmed(path.join(dir, "buffer_size_kb")) ?? "NaN");
  if (!(kb > 0)) return 1;
  let cpus: string[];
  try {
    cpus = readdirSync(path.join(dir, "per_cpu"));
  } catch {
    return 1;
  }
  let fullest = 0;
  for (const c of cpus) {
    const m = /^bytes: (\d+)$/m.exec(readTrimmed(path.join(dir, "per_cpu", c, "stats")) ?? "");
    if (m === null) return 1;
    fullest = Math.max(fullest, Number(m[1]) / (kb * 1024));
  }
  return fullest;
}

/** An open file descriptor for reading, or null when the file cannot be opened (gone, say). */
function openForReading(file: string): number | null {
  try {
    return openSync(file, "r");
  } catch {
    return null;
  }
}

/** An image file's extents, its dirty pages written out first (FIEMAP_FLAG_SYNC), or null. */
function extentsOfFile(file: string): Float64Array | null {
  const fd = openForReading(file);
  if (fd === null) return null;
  try {
    return extentsOf(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The blocks an agent state's journal holds pending (drained, not yet in a committed point), per
 * disk; null when it has no readable journal. For tests and diagnostics.
 */
export function journalPending(stateDir: string, disks: number): [number, number][][] | null {
  const saved = readJournalFile(path.join(stateDir, FILE));
  if (saved === null) return null;
  const r = readPending(path.join(stateDir, PENDING), saved, disks, true);
  return r === true ? null : r;
}

/** Stops the journal of an agent state folder, if it has one (replication disabled). */
export function removeJournal(stateDir: string): void {
  const saved = readJournalFile(path.join(stateDir, FILE));
  if (saved !== null) {
    TracefsWriteTracker.removeInstance(saved.instance);
    rmSync(path.join(REGISTRY, saved.instance), { force: true });
  }
}

// Journals outlive their processes, so the kernel instances are registered in /run (gone at reboot,
// like the instances themselves) with the journal file that owns them; an instance whose journal file
// is gone or names another instance is removed by the next journal armed on this host.
const REGISTRY = "/run/switchback/journals";

function register(instance: string, file: string): void {
  mkdirSync(REGISTRY, { recursive: true });
  writeFileAtomic(path.join(REGISTRY, instance), file);
}

/** Removes journal instances nobody owns any more (their agent state was deleted or re-armed). */
export function sweepJournals(): string[] {
  const tracefs = findTracefs();
  if (tracefs === null) return [];
  const removed: string[] = [];
  const instances = readdirSync(path.join(tracefs, "instances"));
  for (const n of instances) {
    if (!n.startsWith("switchback-journal-")) continue;
    let owner: string | null = null;
    try {
      owner = readFileSync(path.join(REGISTRY, n), "utf8");
    } catch {
      // unregistered: a journal whose registry entry is lost is as good as lost
    }
    if (owner !== null) {
      let text: string | null = null;
      try {
        text = readFileSync(owner, "utf8");
      } catch (err) {
        // only an owner file that is not there gives its journal away; one we cannot read is left be
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") continue;
      }
      if (text !== null && parseJournalFile(text)?.instance === n) continue;
    }
    TracefsWriteTracker.removeInstance(n);
    rmSync(path.join(REGISTRY, n), { force: true });
    removed.push(n);
  }
  // registry entries whose instance is gone
  let entries: string[] = [];
  try {
    entries = readdirSync(REGISTRY);
  } catch {
    // no registry yet
  }
  // (a minute old at least: a journal is registered a moment before its instance is made)
  for (const e of entries) {
    if (instances.includes(e)) continue;
    try {
      if (Date.now() - statSync(path.join(REGISTRY, e)).mtimeMs > 60_000)
        rmSync(path.join(REGISTRY, e), { force: true });
    } catch {
      // gone meanwhile
    }
  }
  return removed;
}

function readJournalFile(file: string): JournalFile | null {
  if (!existsSync(file)) return null;
  try {
    return parseJournalFile(readFileSync(file, "utf8"));
  } catch {
    return null;
  }
}

function parseJournalFile(text: string): JournalFile | null {
  try {
    // (a file of an older version reads as none: the next point arms a journal of this one, and the
    // sweep removes the old instance, which no file names any more)
    const j = JSON.parse(text) as JournalFile;
    if (
      j.version !== 4 ||
      typeof j.instance !== "string" ||
      !/^switchback-journal-[0-9a-f]+$/.test(j.instance)
    )
      return null;
    if (!Array.isArray(j.keys) || !j.keys.every((k) => typeof k === "string")) return null;
    if (j.coversSince !== null && typeof j.coversSince !== "string") return null;
    if (!Number.isFinite(j.armedAt)) return null;
    if (!Number.isSafeInteger(j.pendingBytes) || j.pendingBytes < PENDING_HEADER) return null;
    if (
      j.extentsHash !== null &&
      !(typeof j.extentsHash === "string" && /^[0-9a-f]{64}$/.test(j.extentsHash))
    )
      return null;
    return j;
  } catch {
    return null;
  }
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

function encodeExtents(instance: string, maps: readonly (Float64Array | null)[]): Buffer {
  const parts: Buffer[] = [header(EXTENTS_MAGIC, instance)];
  maps.forEach((m, disk) => {
    if (m === null) return;
    const h = Buffer.allocUnsafe(8);
    h.writeUInt32LE(disk, 0);
    h.writeUInt32LE(m.length / 4, 4);
    parts.push(h, Buffer.from(m.buffer, m.byteOffset, m.byteLength));
  });
  return Buffer.concat(parts);
}

/**
 * The image files' extents a journal saved, per disk (null for a block device); null when the file
 * is not the one journal.json names (by its hash), or lacks an image file's extents.
 */
function readExtents(
  file: string,
  saved: JournalFile,
  disks: readonly DiskInfo[],
): (Float64Array | null)[] | null {
  const out: (Float64Array | null)[] = disks.map(() => null);
  if (saved.extentsHash === null) return disks.some((d) => d.kind === "file") ? null : out;
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    return null;
  }
  if (sha256(buf) !== saved.extentsHash) return null;
  let at = HEADER_BYTES;
  while (at + 8 <= buf.length) {
    const disk = buf.readUInt32LE(at);
    const n = buf.readUInt32LE(at + 4);
    at += 8;
    if (disk >= disks.length || at + n * 32 > buf.length) return null;
    // (copied out: a Float64Array needs 8-byte alignment)
    out[disk] = new Float64Array(buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + n * 32));
    at += n * 32;
  }
  if (at !== buf.length || disks.some((d, i) => d.kind === "file" && out[i] === null)) return null;
  return out;
}

function sameExtents(a: Float64Array | null, b: Float64Array | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.length === b.length &&
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    )
  );
}

/** A journal file's header: its 8-byte magic and the instance name it belongs to. */
function header(magic: string, instance: string): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.write(magic, 0, 8, "latin1");
  h.write(instance, 8, 32, "latin1");
  return h;
}

function pendingHeader(instance: string): Buffer {
  return header(PENDING_MAGIC, instance);
}

/**
 * The blocks pending in a journal's pending file, per disk (ascending, merged), as far as
 * `pendingBytes` says; with `all` false only whether the file is whole (true). Null when it is not
 * this journal's, is shorter, or its records do not end exactly there.
 */
function readPending(
  file: string,
  saved: JournalFile,
  disks: number,
  all: boolean,
): [number, number][][] | true | null {
  const fd = openForReading(file);
  if (fd === null) return null;
  try {
    const size = fstatSync(fd).size;
    if (size < saved.pendingBytes) return null;
    const buf = Buffer.allocUnsafe(all ? saved.pendingBytes : PENDING_HEADER);
    if (readSync(fd, buf, 0, buf.length, 0) !== buf.length) return null;
    if (!buf.subarray(0, PENDING_HEADER).equals(pendingHeader(saved.instance))) return null;
    if (!all) return true;
    const out: [number, number][][] = Array.from({ length: disks }, () => []);
    let at = PENDING_HEADER;
    while (at < buf.length) {
      if (at + 8 > buf.length) return null;
      const disk = buf.readUInt32LE(at);
      const n = buf.readUInt32LE(at + 4);
      at += 8;
      if (disk >= disks || at + n * 16 > buf.length) return null;
      for (let k = 0; k < n; k++, at += 16) {
        const a = buf.readDoubleLE(at);
        const b = buf.readDoubleLE(at + 8);
        if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b <= a) return null;
        out[disk]!.push([a, b]);
      }
    }
    return out.map((r) => mergeRanges(r));
  } finally {
    closeSync(fd);
  }
}

/** Rewrites what is pending as one record per disk, durably: the new length. */
function writePending(file: string, instance: string, ranges: [number, number][][]): number {
  const data = Buffer.concat([pendingHeader(instance), encodeRanges(ranges)]);
  writeFileAtomic(file, data);
  return data.length;
}

function encodeRanges(ranges: [number, number][][]): Buffer {
  const parts: Buffer[] = [];
  ranges.forEach((r, disk) => {
    if (r.length === 0) return;
    const b = Buffer.allocUnsafe(8 + r.length * 16);
    b.writeUInt32LE(disk, 0);
    b.writeUInt32LE(r.length, 4);
    r.forEach(([x, y], k) => {
      b.writeDoubleLE(x, 8 + k * 16);
      b.writeDoubleLE(y, 16 + k * 16);
    });
    parts.push(b);
  });
  return Buffer.concat(parts);
}

/** Writes one drain's blocks at `at` (past what is pending) and makes them durable: the new length. */
function appendPending(file: string, at: number, ranges: [number, number][][]): number {
  const data = encodeRanges(ranges);
  if (data.length === 0) return at;
  const fd = openSync(file, "r+");
  try {
    // (at a given place, not appended: bytes a lost truncate left past `at` are overwritten)
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done, data.length - done, at + done);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return at + data.length;
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i] && k !== "");
}

/**
 * The journal for replicate, following `--track`: none (no journal), tracefs (failures are errors), or
 * auto (root only; a failure is a warning and the pass reads everything).
 */
export function changeJournalFactory(
  mode: TrackMode,
  maxAgeMs = JOURNAL_MAX_AGE_MS,
  bufferKbPerCpu?: number,
): ChangeJournalFactory | undefined {
  if (mode === "none") return undefined;
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (mode === "auto" && !root) return undefined;
  return async (stateDir, disks) => {
    const j = new WriteJournal(stateDir, disks, maxAgeMs, bufferKbPerCpu);
    if (mode === "tracefs") return j;
    const warnings: string[] = [];
    return {
      warnings,
      since: async (last) => {
        try {
          const r = await j.since(last);
          warnings.push(...j.warnings);
          return r;
        } catch (err) {
          warnings.push(`write journal unavailable (${(err as Error).message}); the disks were read whole`);
          return disks.map(() => null);
        }
      },
      committed: async (point) => {
        try {
          await j.committed(point);
        } catch (err) {
          warnings.push(`write journal not advanced (${(err as Error).message})`);
        }
        warnings.push(...j.warnings.filter((w) => !warnings.includes(w)));
      },
      release: () => j.release(),
      pause: () => j.pause(),
      resume: () => j.resume(),
      absorb: async (last) => {
        try {
          return await j.absorb(last);
        } catch (err) {
          return `write journal not drained between points (${(err as Error).message})`;
        }
      },
    };
  };
}

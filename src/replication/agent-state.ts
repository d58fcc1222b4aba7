// What the agent remembers about a protected machine between points: the disks' identities (UUIDs
// recorded at enable time), sizes, the per-disk hashing seed, the last committed point, and for each
// disk the xxh64 of every 4 KiB block and 64 KiB unit as of that point (2 MiB + 128 KiB per GiB).
// Hashes are only replaced after the point they describe is committed.
//
// Only the unit hashes are held in memory during a point (128 MiB per TiB of disk); block hashes are
// read from the hash file as the passes need them and this point's go to a scratch file
// (block-hashes.ts). The hash file stays open under a shared flock(2) from loadHashes to the commit.
//
// A disk's hash file is updated in place, the pages of records the point wrote and the unit pages
// that changed (a point of a 1 TiB disk that changed 20 MB rewrites a few MB of its 2 GiB of hashes,
// not all of it): its tag first says "being updated", then the pages go in, then the tag names the new
// point, each step fdatasynced. A crash in between leaves a tag that names no point, which no point
// trusts: the next point hashes the disks whole (a resync), it never takes mixed hashes for true ones.
// An update in place needs the file's lock exclusive: no other process is reading it. When another is
// (or without the addon's flock), the file is written anew from the last point's and renamed into
// place; a reader keeps reading the file it opened.
import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { SwitchbackError } from "../domain/errors.ts";
import type { DiskUuid, ItemName, PointId } from "../domain/ids.ts";
import { preadFully, pwriteFully, writeFileAtomic } from "../platform/files.ts";
import { native } from "../platform/native.ts";
import {
  allBlockHashes,
  applyBlockHashes,
  type BlockHashes,
  closeBlockHashes,
  openBlockHashes,
} from "./block-hashes.ts";
import type { DiskInfo } from "./disk-source.ts";
import { blockCount, unitCount } from "./scan.ts";

const HASHES_MAGIC = Buffer.from("SBHASH\x00\x01", "latin1");
const HEADER_BYTES = 16; // magic, then the tag of the point the hashes describe
/** the tag while a file is being updated in place: names no point (a point's tag is a 64-bit hash) */
const UPDATING_TAG = Buffer.from("updating", "latin1");
const PAGE = 4096;
const COMPARE_CHUNK = 1024 * 1024;
/** how long loading hashes waits for another process's update in place to end */
const LOCK_WAIT_MS = 5000;

export interface DiskState {
  uuid: DiskUuid;
  path: string;
  sizeBytes: number;
  sectorSize: number;
  /** xxh64 seed, hex */
  seed: string;
}

export interface MachineState {
  version: 1;
  item: ItemName;
  enabledAt: string;
  /** the datastore (or process server's datastore) the hashes were shipped to */
  target: string | null;
  lastPointId: PointId | null;
  disks: DiskState[];
}

/**
 * A disk's hashes during a point: the unit hashes in memory (updated in place by the passes), the
 * block hashes in files (block-hashes.ts). Release them with AgentState.release.
 */
export interface DiskHashes {
  unit: BigUint64Array;
  blocks: BlockHashes;
  /** the hash file's header when it was loaded (magic and the last point's tag); null: fresh */
  loaded: Buffer | null;
}

function sharedUnits(sizeBytes: number): BigUint64Array {
  return new BigUint64Array(new SharedArrayBuffer(unitCount(sizeBytes) * 8));
}

export class AgentState {
  readonly dir: string;
  machine: MachineState;

  private constructor(dir: string, machine: MachineState) {
    this.dir = dir;
    this.machine = machine;
  }

  static load(dir: string): AgentState | null {
    const file = path.join(dir, "machine.json");
    if (!existsSync(file)) return null;
    let m: MachineState;
    try {
      m = JSON.parse(readFileSync(file, "utf8")) as MachineState;
    } catch (err) {
      throw new SwitchbackError(
        "AGENT_STATE_DAMAGED",
        `agent state ${file} is not readable JSON (${(err as Error).message}); restore it, or remove the folder to resync`,
      );
    }
    if (m.version !== 1)
      throw new SwitchbackError(
        "AGENT_STATE_VERSION",
        `agent state ${file} has unknown version ${m.version}`,
      );
    sweepStale(dir);
    return new AgentState(dir, m);
  }

  /** Enable: records each disk's identity. */
  /** `uuids`: the disks' identities when the machine has them (its identity label); else new ones */
  static enable(dir: string, item: ItemName, disks: DiskInfo[], uuids?: readonly string[]): AgentState {
    mkdirSync(dir, { recursive: true });
    const machine: MachineState = {
      version: 1,
      item,
      enabledAt: new Date().toISOString(),
      target: null,
      lastPointId: null,
      disks: disks.map((d, i) => ({
        uuid: (uuids?.[i] ?? randomUUID()) as DiskUuid,
        path: d.path,
        sizeBytes: d.sizeBytes,
        sectorSize: d.sectorSize,
        seed: randomBytes(8).toString("hex"),
      })),
    };
    const s = new AgentState(dir, machine);
    s.saveMachine();
    return s;
  }

  /** Checks that the disks given now are the disks recorded at enable time. */
  checkDisks(disks: DiskInfo[]): void {
    const known = this.machine.disks;
    if (disks.length !== known.length) {
      throw new SwitchbackError(
        "DISK_COUNT_CHANGED",
        `item ${this.machine.item} was enabled with ${known.length} disk(s) (${known.map((d) => d.path).join(", ")}), now ${disks.length} were given; give the same disks in the same order`,
      );
    }
    disks.forEach((d, i) => {
      const k = known[i]!;
      if (d.sizeBytes !== k.sizeBytes) {
        throw new SwitchbackError(
          "DISK_SIZE_CHANGED",
          `disk ${i} (${d.path}, uuid ${k.uuid}) is now ${d.sizeBytes} bytes but was ${k.sizeBytes} at enable time; a resized disk needs replication disabled and enabled again`,
        );
      }
    });
  }

  seed(disk: number): bigint {
    return BigInt(`0x${this.machine.disks[disk]!.seed}`);
  }

  #hashFile(disk: number): string {
    return path.join(this.dir, `${this.machine.disks[disk]!.uuid}.hashes`);
  }

  /**
   * The hashes as of lastPointId, or null when there are none to trust. The hash file stays open,
   * under a shared flock(2), until `release`: an in-place update by another process (which needs the
   * lock exclusive) cannot change it under the pass that reads its block hashes.
   */
  loadHashes(disk: number): DiskHashes | null {
    const d = this.machine.disks[disk]!;
    const file = this.#hashFile(disk);
    if (this.machine.lastPointId === null) return null;
    const nb = blockCount(d.sizeBytes);
    const nu = unitCount(d.sizeBytes);
    let fd: number;
    try {
      fd = openSync(file, "r+");
    } catch {
      return null;
    }
    let keep = false;
    try {
      // an update in place holds the lock for a few fsyncs: wait for it rather than resync
      if (native !== null && !waitFor(() => native!.flock(fd, false), LOCK_WAIT_MS)) return null;
      const head = Buffer.alloc(HEADER_BYTES);
      if (
        fstatSync(fd).size !== HEADER_BYTES + (nb + nu) * 8 ||
        readSync(fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES ||
        !head.subarray(0, 8).equals(HASHES_MAGIC) ||
        !head.subarray(8).equals(pointTag(this.machine.lastPointId))
      )
        return null;
      const unit = sharedUnits(d.sizeBytes);
      const units = Buffer.from(unit.buffer as SharedArrayBuffer);
      if (preadFully(fd, units, HEADER_BYTES + nb * 8) < units.length) return null;
      const blocks = openBlockHashes(this.dir, nb, { fd, at: HEADER_BYTES });
      keep = true;
      return { unit, blocks, loaded: head };
    } finally {
      if (!keep) closeSync(fd);
    }
  }

  /** Hashes for a point that compares with no earlier one (the first, or a resync). */
  freshHashes(disk: number): DiskHashes {
    const d = this.machine.disks[disk]!;
    const blocks = openBlockHashes(this.dir, blockCount(d.sizeBytes), null);
    return { unit: sharedUnits(d.sizeBytes), blocks, loaded: null };
  }

  /**
   * Whether the hash file `h` was loaded from still says what it said then. Without the addon no lock
   * keeps another process from updating it in place while a pass reads it; such an update changes
   * the tag before any page (and never back), so a pass that read it meanwhile is found out here.
   */
  stillAsLoaded(h: DiskHashes): boolean {
    const fd = h.blocks.prevFd;
    if (h.loaded === null || fd < 0) return true;
    const now = Buffer.alloc(HEADER_BYTES);
    return readSync(fd, now, 0, HEADER_BYTES, 0) === HEADER_BYTES && now.equals(h.loaded);
  }

  /** Closes the files of `hashes` (and drops the lock on the last point's). */
  release(hashes: DiskHashes): void {
    closeBlockHashes(hashes.blocks);
    if (hashes.blocks.prevFd >= 0) {
      closeSync(hashes.blocks.prevFd);
      hashes.blocks.prevFd = -1;
    }
  }

  /** The block hashes the hash file of `disk` holds for lastPointId (tests and tools; 8 bytes a block). */
  readBlockHashes(disk: number): BigUint64Array | null {
    const h = this.loadHashes(disk);
    if (h === null) return null;
    try {
      return allBlockHashes(h.blocks);
    } finally {
      this.release(h);
    }
  }

  /**
   * Records a committed point: hashes first (tagged with the point), then machine.json. Each disk's
   * hash file is updated in place when this process holds the only lock on it, else written anew from
   * the last point's and renamed into place. `hashes` are released.
   */
  commit(pointId: PointId, target: string, hashes: DiskHashes[]): void {
    const now = pointTag(pointId);
    try {
      hashes.forEach((h, i) => {
        const file = this.#hashFile(i);
        const r = this.#updateInPlace(file, h, now);
        if (r === "written") return;
        // another process is updating the file this point's pass read: no file is tagged with this
        // point, so the next one resyncs (unless that process's point, tagged in the file, is the last)
        if (r === "untrusted") return;
        this.#writeAnew(file, h, now);
      });
    } finally {
      for (const h of hashes) this.release(h);
    }
    this.machine.lastPointId = pointId;
    this.machine.target = target;
    this.saveMachine();
  }

  /** Pages written by the last in-place updates (for tests and figures). */
  pagesWritten = 0;

  /**
   * Updates the hash file `h` was read from in place to the new point's hashes (tagged `now`): the
   * records the passes wrote and the unit pages that differ. "anew" when it cannot, having changed
   * nothing (no addon for flock(2), no last point, another process holds a lock on the file, or the
   * file is no longer the one at `file`): the caller writes the file anew from the last point's, which
   * this process still holds a lock on. "untrusted" when not even that lock could be kept.
   */
  #updateInPlace(file: string, h: DiskHashes, now: Buffer): "written" | "anew" | "untrusted" {
    const fd = h.blocks.prevFd;
    if (native === null || fd < 0) return "anew";
    // shared to exclusive: only when no other process is reading it. A refused conversion leaves no
    // lock at all (flock(2)), so take the shared one back: without it another process could start to
    // update the file while this one copies from it
    // (and between the two, another process may have taken it exclusive and updated the file: the
    // header read after either says whether it is still what this point's pass read)
    if (!native.flock(fd, true))
      return native.flock(fd, false) && this.stillAsLoaded(h) ? "anew" : "untrusted";
    if (!this.stillAsLoaded(h)) return "untrusted";
    try {
      if (statSync(file).ino !== fstatSync(fd).ino) return "anew"; // renamed over since it was read
    } catch {
      return "anew";
    }
    writeSync(fd, UPDATING_TAG, 0, 8, 8);
    fdatasyncSync(fd);
    const section = { fd, at: HEADER_BYTES };
    this.pagesWritten += applyBlockHashes(h.blocks, section, section);
    this.pagesWritten += writeChangedPages(fd, Buffer.from(h.unit.buffer as SharedArrayBuffer), unitsAt(h));
    fdatasyncSync(fd);
    writeSync(fd, now, 0, 8, 8);
    fdatasyncSync(fd);
    return "written";
  }

  /**
   * Writes the hash file whole: the last point's block hashes (if any), this point's over them, the
   * units. Writes nothing when the last point's file changed while it was copied (another process,
   * without the addon's locks): no file is then tagged with this point, and the next one resyncs.
   */
  #writeAnew(file: string, h: DiskHashes, now: Buffer): void {
    const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    const fd = openSync(tmp, "w+", 0o644);
    try {
      pwriteFully(fd, Buffer.concat([HASHES_MAGIC, now]), 0);
      // units no pass wrote keep the last point's hashes; without a last point they are zeros: unknown,
      // compared block by block
      const { prevFd, prevAt } = h.blocks;
      applyBlockHashes(h.blocks, { fd, at: HEADER_BYTES }, prevFd >= 0 ? { fd: prevFd, at: prevAt } : null);
      if (!this.stillAsLoaded(h)) {
        closeSync(fd);
        rmSync(tmp, { force: true });
        return;
      }
      pwriteFully(fd, Buffer.from(h.unit.buffer as SharedArrayBuffer), unitsAt(h));
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    closeSync(fd);
    renameSync(tmp, file);
    const dfd = openSync(this.dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }

  saveMachine(): void {
    atomicWrite(path.join(this.dir, "machine.json"), [
      Buffer.from(JSON.stringify(this.machine, null, 2) + "\n"),
    ]);
  }
}

function pointTag(id: PointId): Buffer {
  // 8 bytes that change with every point: the tail of the id (time in ms + random) hashed down
  const b = Buffer.alloc(8);
  let h = 0xcbf29ce484222325n;
  for (const c of Buffer.from(id)) h = ((h ^ BigInt(c)) * 0x100000001b3n) & 0xffffffffffffffffn;
  b.writeBigUInt64LE(h);
  return b;
}

function atomicWrite(file: string, parts: Buffer[]): void {
  writeFileAtomic(file, Buffer.concat(parts));
}

/**
 * Removes what a process that died left in `dir`: a hash file it was writing anew (named
 * `<uuid>.hashes.tmp-<pid>-…`, as big as the hash file) or a scratch file it had not unlinked yet.
 */
function sweepStale(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^(?:.+\.hashes\.tmp-|\.point-(?:hashes|entries)-)(\d+)-[0-9a-f]+$/.exec(name);
    if (m === null || pidAlive(Number(m[1]))) continue;
    rmSync(path.join(dir, name), { force: true });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Where a hash file's unit hashes start. */
function unitsAt(h: DiskHashes): number {
  return HEADER_BYTES + h.blocks.blocks * 8;
}

/** Writes the 4 KiB pages of `data` that differ from what `fd` holds at `at` (runs of them in one write each); returns the pages written. */
function writeChangedPages(fd: number, data: Buffer, at: number): number {
  const old = Buffer.allocUnsafe(COMPARE_CHUNK);
  let pages = 0;
  for (let p = 0; p < data.length; p += COMPARE_CHUNK) {
    const n = Math.min(COMPARE_CHUNK, data.length - p);
    if (preadFully(fd, old.subarray(0, n), at + p) < n) throw new Error("a hash file ended early");
    const put = (from: number, to: number): void => {
      pwriteFully(fd, data.subarray(p + from, p + to), at + p + from);
      pages += Math.ceil((to - from) / PAGE);
    };
    let run = -1;
    for (let q = 0; q < n; q += PAGE) {
      const end = Math.min(n, q + PAGE);
      if (!old.subarray(q, end).equals(data.subarray(p + q, p + end))) {
        if (run < 0) run = q;
      } else if (run >= 0) {
        put(run, q);
        run = -1;
      }
    }
    if (run >= 0) put(run, n);
  }
  return pages;
}

/** Calls `attempt` until it is true, for up to `ms` milliseconds; whether it became true. */
function waitFor(attempt: () => boolean, ms: number): boolean {
  const until = performance.now() + ms;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    if (attempt()) return true;
    if (performance.now() >= until) return false;
    Atomics.wait(nap, 0, 0, 5);
  }
}

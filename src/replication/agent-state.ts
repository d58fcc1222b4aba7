// What the agent remembers about a protected machine between points: the disks' identities (UUIDs
// recorded at enable time), sizes, the per-disk hashing seed, the last committed point, and for each
// disk the xxh64 of every 4 KiB block and 64 KiB unit as of that point (2 MiB + 128 KiB per GiB).
// Hashes are only replaced after the point they describe is committed.
//
// A disk's hash file is updated in place, 4 KiB pages that changed only (a point of a 1 TiB disk that
// changed 20 MB rewrites ~20 MB of its 2 GiB of hashes, not all of it): its tag first says "being
// updated", then the pages go in, then the tag names the new point, each step fdatasynced. A crash in
// between leaves a tag that names no point, which no point trusts: the next point hashes the disks
// whole (a resync), it never takes mixed hashes for true ones. A reader checks the tag again after it
// has read the file, so an update that ran meanwhile is never read as the old point's hashes. Two
// updaters are kept apart by a flock(2) on `hashes.lock` (the native addon's); without the addon, or
// when the file is not the one the last point left, or another process is updating it, the whole file
// is written anew and renamed into place, as before.
import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { SwitchbackError } from "../domain/errors.ts";
import type { DiskUuid, ItemName, PointId } from "../domain/ids.ts";
import { writeFileAtomic } from "../platform/files.ts";
import { native } from "../platform/native.ts";
import { takeLock } from "../platform/process.ts";
import type { DiskInfo } from "./disk-source.ts";
import { blockCount, unitCount } from "./scan.ts";

const HASHES_MAGIC = Buffer.from("SBHASH\x00\x01", "latin1");
const HEADER_BYTES = 16; // magic, then the tag of the point the hashes describe
/** the tag while a file is being updated in place: names no point (a point's tag is a 64-bit hash) */
const UPDATING_TAG = Buffer.from("updating", "latin1");
const PAGE = 4096;
const COMPARE_CHUNK = 1024 * 1024;

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

export interface DiskHashes {
  block: BigUint64Array;
  unit: BigUint64Array;
}

export function sharedHashes(sizeBytes: number): DiskHashes {
  return {
    block: new BigUint64Array(new SharedArrayBuffer(blockCount(sizeBytes) * 8)),
    unit: new BigUint64Array(new SharedArrayBuffer(unitCount(sizeBytes) * 8)),
  };
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

  /** The hashes as of lastPointId, or null when there are none to trust. */
  loadHashes(disk: number): DiskHashes | null {
    const d = this.machine.disks[disk]!;
    const file = this.#hashFile(disk);
    if (this.machine.lastPointId === null) return null;
    const nb = blockCount(d.sizeBytes);
    const nu = unitCount(d.sizeBytes);
    let fd: number;
    try {
      fd = openSync(file, "r");
    } catch {
      return null;
    }
    try {
      const head = Buffer.alloc(HEADER_BYTES);
      if (
        fstatSync(fd).size !== HEADER_BYTES + (nb + nu) * 8 ||
        readSync(fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES ||
        !head.subarray(0, 8).equals(HASHES_MAGIC) ||
        !head.subarray(8).equals(pointTag(this.machine.lastPointId))
      )
        return null;
      // straight into the shared arrays the passes use: no second copy of a file of 2 MiB per GiB
      const h = sharedHashes(d.sizeBytes);
      const block = Buffer.from(h.block.buffer as SharedArrayBuffer);
      const unit = Buffer.from(h.unit.buffer as SharedArrayBuffer);
      if (!readFully(fd, block, HEADER_BYTES) || !readFully(fd, unit, HEADER_BYTES + nb * 8)) return null;
      // an in-place update that ran while the file was being read changed its tag before any page, and
      // never back: the tag read now (by path: a file renamed in meanwhile fails too) must still be it
      return sameTagNow(file, head.subarray(8)) ? h : null;
    } finally {
      closeSync(fd);
    }
  }

  /** Records a committed point: hashes first (tagged with the point), then machine.json. */
  commit(pointId: PointId, target: string, hashes: DiskHashes[]): void {
    const was = this.machine.lastPointId === null ? null : pointTag(this.machine.lastPointId);
    hashes.forEach((h, i) => {
      const data = [
        Buffer.from(h.block.buffer as SharedArrayBuffer),
        Buffer.from(h.unit.buffer as SharedArrayBuffer),
      ];
      const file = this.#hashFile(i);
      if (was !== null && this.#updateInPlace(file, was, pointTag(pointId), data)) return;
      atomicWrite(file, [HASHES_MAGIC, pointTag(pointId), ...data]);
    });
    this.machine.lastPointId = pointId;
    this.machine.target = target;
    this.saveMachine();
  }

  /** Pages written by the last in-place updates (for tests and figures). */
  pagesWritten = 0;

  /**
   * Updates a hash file in place from the hashes of point `was` to `data` (the new point's, tagged
   * `now`), writing only the 4 KiB pages that differ. False, having changed nothing, when the file is
   * not exactly `was`'s or another process holds the update lock.
   */
  #updateInPlace(file: string, was: Buffer, now: Buffer, data: Buffer[]): boolean {
    // without flock(2) two updaters could both find the old tag and interleave their pages
    if (native === null) return false;
    const lock = takeLock(path.join(this.dir, "hashes.lock"));
    if (lock === null) return false;
    let fd = -1;
    try {
      try {
        fd = openSync(file, "r+");
      } catch {
        return false;
      }
      const bytes = data.reduce((n, d) => n + d.length, HEADER_BYTES);
      const head = Buffer.alloc(HEADER_BYTES);
      if (
        fstatSync(fd).size !== bytes ||
        readSync(fd, head, 0, HEADER_BYTES, 0) !== HEADER_BYTES ||
        !head.subarray(0, 8).equals(HASHES_MAGIC) ||
        !head.subarray(8).equals(was)
      )
        return false;
      writeSync(fd, UPDATING_TAG, 0, 8, 8);
      fdatasyncSync(fd);
      const old = Buffer.allocUnsafe(COMPARE_CHUNK);
      let at = HEADER_BYTES; // where the current part starts in the file
      for (const d of data) {
        for (let p = 0; p < d.length; p += COMPARE_CHUNK) {
          const n = Math.min(COMPARE_CHUNK, d.length - p);
          if (readSync(fd, old, 0, n, at + p) !== n) throw new Error(`${file}: short read`);
          // runs of differing pages go out in one write each
          const put = (from: number, to: number): void => {
            for (let w = from; w < to; ) w += writeSync(fd, d, p + w, to - w, at + p + w);
            this.pagesWritten += Math.ceil((to - from) / PAGE);
          };
          let run = -1;
          for (let q = 0; q < n; q += PAGE) {
            const end = Math.min(n, q + PAGE);
            if (!old.subarray(q, end).equals(d.subarray(p + q, p + end))) {
              if (run < 0) run = q;
            } else if (run >= 0) {
              put(run, q);
              run = -1;
            }
          }
          if (run >= 0) put(run, n);
        }
        at += d.length;
      }
      fdatasyncSync(fd);
      writeSync(fd, now, 0, 8, 8);
      fdatasyncSync(fd);
      return true;
    } finally {
      if (fd >= 0) closeSync(fd);
      lock.release();
    }
  }

  saveMachine(): void {
    atomicWrite(path.join(this.dir, "machine.json"), [
      Buffer.from(JSON.stringify(this.machine, null, 2) + "\n"),
    ]);
  }
}

/** Fills `into` from `fd` at `at`; false at a short read (the file is shorter than it said). */
function readFully(fd: number, into: Buffer, at: number): boolean {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, at + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** Whether the tag in `file` is `tag` (false when it cannot be read). */
function sameTagNow(file: string, tag: Buffer): boolean {
  let fd = -1;
  try {
    fd = openSync(file, "r");
    const now = Buffer.alloc(8);
    return readSync(fd, now, 0, 8, 8) === 8 && now.equals(tag);
  } catch {
    return false;
  } finally {
    if (fd >= 0) closeSync(fd);
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

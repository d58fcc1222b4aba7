// Opening what the agent replicates: a block device (/dev/loopN, /dev/sdX, /dev/nvme…) or a disk image
// file. Block devices are read with O_DIRECT: a buffered read of a device under a mounted file system
// can return stale pages (the device's cache is not the file system's), see docs/consistency.md. A
// loop device is read through its backing file, whose page cache the device itself goes through.
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { SwitchbackError } from "../domain/errors.ts";
import { readTrimmed } from "../platform/files.ts";
import { childProcess } from "../platform/lazy.ts";
import { native } from "../platform/native.ts";

export interface DiskInfo {
  path: string;
  kind: "block" | "file";
  sizeBytes: number;
  sectorSize: number;
  /** "major:minor" for block devices */
  devno?: string;
  /**
   * a loop device's backing file and where the device starts in it: read there (its page cache is the
   * truth the loop device reads and writes through) instead of the device with O_DIRECT, which costs
   * ~50 µs a request here
   */
  backing?: { file: string; offset: number; dev: number; ino: number };
}

export function inspectDisk(path: string): DiskInfo {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new SwitchbackError("DISK_NOT_FOUND", `disk ${path} does not exist`);
    if (code === "EACCES")
      throw new SwitchbackError("DISK_NOT_READABLE", `disk ${path} is not readable by this user`);
    throw err;
  }
  if (st.isBlockDevice()) {
    const devno = devName(st.rdev);
    const sys = `/sys/dev/block/${devno}`;
    const sectors = Number(readFileSync(`${sys}/size`, "utf8").trim());
    let sectorSize = 512;
    try {
      sectorSize = Number(readFileSync(`${sys}/queue/logical_block_size`, "utf8").trim());
    } catch {
      // partitions have no queue/ of their own; 512 is what the kernel counts `size` in anyway
    }
    const sizeBytes = sectors * 512;
    return { path, kind: "block", sizeBytes, sectorSize, devno, backing: loopBacking(path, sys, sizeBytes) };
  }
  if (st.isFile()) {
    if (st.size === 0) throw new SwitchbackError("DISK_EMPTY", `disk image ${path} is empty`);
    if (st.size % 512 !== 0) {
      throw new SwitchbackError(
        "DISK_SIZE_INVALID",
        `disk image ${path} is ${st.size} bytes, not a whole number of 512-byte sectors`,
      );
    }
    return { path, kind: "file", sizeBytes: st.size, sectorSize: 512 };
  }
  throw new SwitchbackError("DISK_NOT_A_DISK", `${path} is neither a block device nor a disk image file`);
}

/** "major:minor" of a device number as stat() gives it. */
export function devName(dev: number | bigint): string {
  const d = BigInt(dev);
  const major = Number((d >> 8n) & 0xfffn) | Number((d >> 32n) & ~0xfffn);
  const minor = Number(d & 0xffn) | Number((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/**
 * A whole loop device's backing file, when it can be read in the device's place: the file the path
 * in sysfs names here must be the very inode the device was set up with (the loop driver's own
 * record, via losetup), not another file at that path in this mount namespace.
 */
function loopBacking(device: string, sys: string, sizeBytes: number): DiskInfo["backing"] {
  const read = (p: string): string | null => readTrimmed(`${sys}/${p}`);
  const file = read("loop/backing_file");
  if (file === null || file === "" || file.endsWith(" (deleted)")) return undefined;
  const offset = Number(read("loop/offset") ?? "NaN");
  const sizelimit = Number(read("loop/sizelimit") ?? "NaN");
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(sizelimit)) return undefined;
  if (sizelimit !== 0 && sizelimit < sizeBytes) return undefined;
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch {
    return undefined;
  }
  if (!st.isFile() || st.size < offset + sizeBytes) return undefined;
  const [ino, majMin] = loopRecord(device) ?? [];
  if (ino !== String(st.ino) || majMin !== devName(st.dev)) return undefined;
  return { file, offset, dev: Number(st.dev), ino: Number(st.ino) };
}

/**
 * The loop driver's record of a loop device's backing file: [inode, "major:minor"], or null; through
 * the addon, else (or with `addon` null) from losetup.
 */
export function loopRecord(device: string, addon = native): [string, string] | null {
  if (addon !== null) {
    // the ioctl losetup makes, without starting it (~10 ms a disk)
    let fd: number;
    try {
      fd = openSync(device, "r");
    } catch {
      return null;
    }
    try {
      const r = addon.loopBacking(fd);
      return r === null ? null : [String(r[1]), devName(r[0])];
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }
  const r = childProcess().spawnSync("losetup", ["-n", "-O", "BACK-INO,BACK-MAJ:MIN", device], {
    encoding: "utf8",
  });
  const [ino, majMin] = r.status === 0 ? r.stdout.trim().split(/\s+/) : [];
  return ino !== undefined && majMin !== undefined ? [ino, majMin] : null;
}

/**
 * A reader over a disk that hands out aligned buffers: O_DIRECT needs the memory, offset and length
 * aligned to the logical block size, and Node's Buffers are not, so we keep one long-lived buffer and
 * read into its aligned view.
 */
export class DiskReader {
  readonly info: DiskInfo;
  readonly #fd: number;
  readonly #direct: boolean;
  /** where byte 0 of the disk is in what #fd reads (a loop device's offset in its backing file) */
  readonly #base: number;
  readonly #raw: Buffer;
  readonly #view: Buffer;
  /** the last extent of the file found (file offsets [from, to)), a hole or data (native.extentAt) */
  #extFrom = 0;
  #extTo = 0;
  #extHole = false;
  /** bytes read that were holes of the file: given as zeros without being read */
  holeBytes = 0;

  constructor(info: DiskInfo, chunkBytes: number) {
    this.info = info;
    let direct = false;
    let fd: number;
    this.#base = 0;
    const backing = info.backing === undefined ? undefined : openBacking(info.backing);
    if (backing !== undefined) {
      fd = backing;
      this.#base = info.backing!.offset;
    } else if (info.kind === "block") {
      try {
        fd = openSync(info.path, constants.O_RDONLY | constants.O_DIRECT);
        direct = true;
      } catch {
        fd = openSync(info.path, constants.O_RDONLY);
      }
    } else fd = openSync(info.path, constants.O_RDONLY);
    this.#fd = fd;
    this.#raw = Buffer.allocUnsafeSlow(chunkBytes + 8192);
    let view = this.#raw.subarray(0, chunkBytes);
    if (direct) {
      const aligned = findAlignedOffset(fd, this.#raw);
      if (aligned < 0) {
        closeSync(fd);
        this.#fd = openSync(info.path, constants.O_RDONLY);
        direct = false;
      } else view = this.#raw.subarray(aligned, aligned + chunkBytes);
    }
    this.#direct = direct;
    this.#view = view;
    if (info.kind === "block" && !direct && backing === undefined) {
      // no O_DIRECT here: drop the device's page cache so that this pass reads what the disk holds
      const r = childProcess().spawnSync("blockdev", ["--flushbufs", info.path], { encoding: "utf8" });
      if (r.status !== 0) {
        closeSync(this.#fd);
        throw new SwitchbackError(
          "DISK_CACHE_UNSAFE",
          `${info.path} cannot be read with O_DIRECT and its cache could not be dropped (${(r.stderr || r.error?.message || "").trim()}); a buffered read could return stale blocks`,
        );
      }
    }
  }

  get direct(): boolean {
    return this.#direct;
  }

  /** the open disk (or loop backing file) and where the disk's byte 0 is in it, for native readers */
  get source(): { fd: number; base: number; direct: boolean } {
    return { fd: this.#fd, base: this.#base, direct: this.#direct };
  }

  /** Reads `length` bytes at `position` into the internal buffer and returns a view of them (valid until the next read). */
  read(position: number, length: number): Buffer {
    const want = Math.min(length, this.info.sizeBytes - position);
    if (!this.#direct && typeof native?.extentAt === "function") {
      // a file's holes read as zeros: only its data is read (a sparse image's holes would cost the
      // kernel a zeroed page of cache for every 4 KiB read)
      for (let done = 0; done < want; ) {
        const at = this.#base + position + done;
        if (at < this.#extFrom || at >= this.#extTo) {
          [this.#extHole, this.#extTo] = native!.extentAt(this.#fd, at);
          this.#extFrom = at;
        }
        const n = Math.min(this.#extTo - at, want - done);
        if (this.#extHole) {
          this.#view.fill(0, done, done + n);
          this.holeBytes += n;
        } else this.#readInto(done, position + done, n);
        done += n;
      }
    } else {
      // O_DIRECT wants whole sectors; disks are whole sectors long, so rounding up stays inside the disk
      const ask = this.#direct ? Math.ceil(want / this.info.sectorSize) * this.info.sectorSize : want;
      this.#readInto(0, position, ask);
    }
    if (want < length) this.#view.fill(0, want, length);
    return this.#view.subarray(0, length);
  }

  /** Reads `n` bytes of the disk at `position` into the view at `at`: all of them, or it throws. */
  #readInto(at: number, position: number, n: number): void {
    for (let done = 0; done < n; ) {
      let got: number;
      try {
        got = readSync(this.#fd, this.#view, at + done, n - done, this.#base + position + done);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new SwitchbackError(
          "DISK_READ_FAILED",
          `reading disk ${this.info.path} at byte ${position + done} failed: ${e.message}`,
          { cause: err },
        );
      }
      if (got === 0) {
        throw new SwitchbackError(
          "DISK_SHRUNK",
          `disk ${this.info.path} ended at byte ${position + done}, expected ${this.info.sizeBytes} bytes`,
        );
      }
      done += got;
    }
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Opens a loop device's backing file if it is still the inode the device was found on, else undefined. */
function openBacking(b: NonNullable<DiskInfo["backing"]>): number | undefined {
  let fd: number;
  try {
    fd = openSync(b.file, constants.O_RDONLY);
  } catch {
    return undefined;
  }
  const st = fstatSync(fd);
  if (st.ino === b.ino && st.dev === b.dev) return fd;
  closeSync(fd);
  return undefined;
}

/** Finds where in `buf` a 4 KiB O_DIRECT read succeeds: the first address aligned for the device. */
function findAlignedOffset(fd: number, buf: Buffer): number {
  for (let off = 0; off <= 4096; off += 16) {
    try {
      readSync(fd, buf, off, 4096, 0);
      return off;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
    }
  }
  return -1;
}

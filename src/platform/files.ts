// Small file-system facts: writing a file so that a crash leaves the old or the new one, never half.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statfsSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";

/** Reads into all of `into` from `fd` at `pos`, up to the end of the file: the bytes read. */
export function preadFully(fd: number, into: Uint8Array, pos: number): number {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** `length` bytes of `fh` from `at`, in as few reads as the kernel allows: fewer only where the file ends. */
export async function readFullyAt(fh: FileHandle, at: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, length - done, at + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? out : out.subarray(0, done);
}

/** `length` bytes of `fh` from `at`; a file that ends before is an error naming `name`. */
export async function readExactlyAt(
  fh: FileHandle,
  name: string,
  at: number,
  length: number,
): Promise<Buffer> {
  const buf = await readFullyAt(fh, at, length);
  if (buf.length < length) {
    throw new Error(`${name}: short read at ${at + buf.length} (wanted ${length} bytes from ${at})`);
  }
  return buf;
}

/**
 * `size` bytes of `fh` from its start, in pieces of at most `pieceBytes` (each a new buffer); a file
 * shorter than that is an error naming `name`. `fh` is closed when the pieces end or their iteration
 * is ended.
 */
export async function* piecesOf(
  fh: FileHandle,
  name: string,
  size: number,
  pieceBytes: number,
): AsyncGenerator<Buffer> {
  try {
    for (let at = 0; at < size; at += pieceBytes) {
      yield await readExactlyAt(fh, name, at, Math.min(pieceBytes, size - at));
    }
  } finally {
    await fh.close();
  }
}

/** Writes all of `data` to `fd` at `pos`. */
export function pwriteFully(fd: number, data: Uint8Array, pos: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, pos + done);
}

/**
 * A scratch file of `size` bytes (a hole until written) in `dir`, unlinked at once so that it goes
 * with its descriptor: named `.<kind>-<pid>-<random>` for the moment it has a name, so that what a
 * process killed in that moment leaves can be told by its pid and swept.
 */
export function openScratch(dir: string, kind: string, size: number): number {
  const file = path.join(dir, `.${kind}-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fd = openSync(file, "wx+", 0o600);
  try {
    unlinkSync(file);
    // sized from the start: a write past the end of a file updates its size, a journaled change of
    // its inode on ext4 (~15-50 µs a write here, against a few µs for one within it)
    ftruncateSync(fd, size);
  } catch (err) {
    closeSync(fd);
    rmSync(file, { force: true });
    throw err;
  }
  return fd;
}

/** A small text file's content, trimmed (a sysfs or procfs attribute), or null when it cannot be read. */
export function readTrimmed(file: string): string | null {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return null;
  }
}

/**
 * Writes `data` to `file` atomically: a temporary file, fsync, rename, fsync of the folder. With
 * `durable` false, the two fsyncs are left out: a crashed process still leaves the old or the new
 * file, but a power loss may leave either, or the old one after the new was read; only for files that
 * a reboot makes moot anyway (the write journal's, whose kernel instance a reboot removes).
 */
export function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  mode = 0o644,
  o: { durable?: boolean } = {},
): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  if (o.durable === false) {
    renameSync(tmp, file);
    return;
  }
  const fd = openSync(tmp, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dfd = openSync(path.dirname(file), "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * File systems whose writes a power loss can only lose together with the processes that made them:
 * the machine's own disks (ext2/3/4, XFS, Btrfs, F2FS, ZFS, bcachefs, JFS) and memory (tmpfs, ramfs).
 * On anything else (NFS, SMB, Ceph, FUSE, 9p, overlay of who knows what) a server can lose a write
 * whose writer lives on.
 */
const LOCAL_FILE_SYSTEMS = new Set([
  0xef53, 0x58465342, 0x9123683e, 0xf2f52010, 0x2fc12fc1, 0xca451a4e, 0x3153464a, 0x01021994, 0x858458f6,
]);

/** Whether `dir` is on one of LOCAL_FILE_SYSTEMS (false when it cannot be told). */
export function onLocalFileSystem(dir: string): boolean {
  try {
    return LOCAL_FILE_SYSTEMS.has(Number(statfsSync(dir).type));
  } catch {
    return false;
  }
}

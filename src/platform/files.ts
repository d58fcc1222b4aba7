// Small file-system facts: writing a file so that a crash leaves the old or the new one, never half.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";

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

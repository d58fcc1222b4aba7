// Sizes of folders and the units the benchmark prints: MB = 10^6 bytes (as rsync and restic count),
// MiB for memory.
import { lstatSync, readdirSync } from "node:fs";
import path from "node:path";

/** Apparent bytes of every regular file under `p` (0 when it does not exist). */
export function treeBytes(p: string): number {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let sum = 0;
  for (const name of readdirSync(p)) sum += treeBytes(path.join(p, name));
  return sum;
}

/** Parses "2G", "512M", "512MiB", "1073741824" into bytes (powers of 1024 for the suffixes). */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(s.trim());
  if (m === null) throw new Error(`--size ${JSON.stringify(s)} is not a size; write e.g. 2G or 512M`);
  const pow = { "": 0, K: 1, M: 2, G: 3, T: 4 }[m[2]!.toUpperCase() as "" | "K" | "M" | "G" | "T"];
  return Math.round(Number(m[1]) * 1024 ** pow);
}

export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return "n/a";
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

export function fmtRate(bytes: number, seconds: number): string {
  if (!Number.isFinite(seconds) || seconds <= 0) return "n/a";
  return `${Math.round(bytes / 1e6 / seconds).toLocaleString("en-US")} MB/s`;
}

export function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return "n/a";
  return s < 10 ? s.toFixed(2) : s.toFixed(1);
}

export function fmtMiB(kib: number): string {
  return Number.isFinite(kib) ? `${Math.round(kib / 1024)} MiB` : "n/a";
}

export function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

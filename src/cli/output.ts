// Printing results: one JSON document with --json (the API's own shapes), or aligned tables and
// "key: value" blocks for people. Also the operator-facing units: sizes in and out, durations out.
import { formatDuration } from "../domain/duration.ts";
import { SwitchbackError } from "../domain/errors.ts";

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** Aligned columns, two spaces apart; the last column is not padded. */
export function printTable(rows: string[][]): void {
  if (rows.length === 0) return;
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  for (const r of rows)
    process.stdout.write(r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join("  ") + "\n");
}

/** A table of records, or `empty` when there are none. */
export function printRecords<T>(
  list: readonly T[],
  columns: readonly [header: string, cell: (x: T) => string][],
  empty: string,
): void {
  if (list.length === 0) {
    process.stdout.write(`${empty}\n`);
    return;
  }
  printTable([columns.map(([h]) => h), ...list.map((x) => columns.map(([, cell]) => cell(x)))]);
}

/** "key: value" lines with the keys aligned; null and undefined show as "-". */
export function printFields(
  fields: readonly [key: string, value: string | number | null | undefined][],
): void {
  const w = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) process.stdout.write(`${`${k}:`.padEnd(w + 2)}${v ?? "-"}\n`);
}

export function bytes(n: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}

/** Seconds as an operator writes them (900 → "15m", 0 → "never" where `zeroIsNever`). */
export function seconds(s: number, zeroIsNever = false): string {
  return s === 0 && zeroIsNever ? "never" : formatDuration(s * 1000);
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** A size as operators write it: 1048576, 512M, 10G, 1.5GiB (binary units). */
export function parseSize(s: string, what = "size"): number {
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(s.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (m === null || unit === undefined) {
    throw new SwitchbackError(
      "INVALID_SIZE",
      `${what} ${JSON.stringify(s)} is not a size; write bytes or a number with K, M, G or T (binary: 10G = 10 GiB)`,
    );
  }
  const n = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n))
    throw new SwitchbackError("INVALID_SIZE", `${what} ${JSON.stringify(s)} is too large`);
  return n;
}

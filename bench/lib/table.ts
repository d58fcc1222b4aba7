// The one table the benchmark prints (Markdown, so it can go into docs/benchmarks.md as it is): a goal
// row, one row per tool (best of its runs), and the changed data itself as the reference row.
import { BENCH_BLOCK } from "./image.ts";
import type { Step, ToolRun } from "./scenario.ts";
import { fmtBytes, fmtInt, fmtMiB, fmtRate, fmtSeconds } from "./sizes.ts";

export const GOALS = { fullCopyBytesPerSecond: 1e9, incrementalSeconds: 0.25, sentOverChanged: 1.2 };

/** The best of a tool's runs: each step from its fastest run; peak memory over all runs; notes of the last. */
export function bestOf(runs: ToolRun[]): ToolRun {
  const fastest = <T extends Step>(steps: T[]): T => steps.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const optional = <T extends Step & { correct: boolean }>(steps: (T | null)[]): T | null => {
    if (steps.some((x) => x === null)) return null;
    const ok = steps as T[];
    return { ...fastest(ok), correct: ok.every((x) => x.correct) };
  };
  const peak = (xs: (number | undefined)[]) => Math.max(...xs.map((x) => x ?? Number.NaN));
  const last = runs[runs.length - 1]!;
  return {
    tool: last.tool,
    full: { ...fastest(runs.map((r) => r.full)), maxRssKiB: peak(runs.map((r) => r.full.maxRssKiB)) },
    incremental: {
      ...fastest(runs.map((r) => r.incremental)),
      maxRssKiB: peak(runs.map((r) => r.incremental.maxRssKiB)),
    },
    fullRestore: optional(runs.map((r) => r.fullRestore)),
    deltaRestore: optional(runs.map((r) => r.deltaRestore)),
    stateBytes: last.stateBytes,
    notes: last.notes,
  };
}

function seconds(step: Step): string {
  const own = step.toolSeconds === undefined ? "" : ` (${fmtSeconds(step.toolSeconds)})`;
  return `${fmtSeconds(step.seconds)}${own}`;
}

function restoreRate(step: (Step & { correct: boolean }) | null, sizeBytes: number): string {
  if (step === null) return "n/a";
  if (!step.correct) return "WRONG CONTENT";
  return fmtRate(sizeBytes, step.seconds);
}

/** `diskSeconds`: how long a plain fsynced copy of the image to a new file took (the restore yardstick). */
export function resultTable(
  tools: ToolRun[],
  sizeBytes: number,
  changedBlocks: number,
  diskSeconds: number,
): string[][] {
  const changedBytes = changedBlocks * BENCH_BLOCK;
  const gib = sizeBytes / 1024 ** 3;
  const header = [
    "tool",
    "full copy s (own)",
    "full copy MB/s",
    "store after full",
    "incremental s (own)",
    "incr. sent",
    "incr. written to store",
    "incr. metadata",
    "full restore MB/s",
    "delta restore MB/s",
    "peak RSS full / incr.",
    "agent state per GiB",
  ];
  const goal = [
    "goal (Switchback)",
    "",
    `≥ ${fmtInt(GOALS.fullCopyBytesPerSecond / 1e6)} MB/s`,
    "",
    `≤ ${GOALS.incrementalSeconds}`,
    `≤ ${fmtBytes(changedBytes * GOALS.sentOverChanged)}`,
    "",
    "grows with change",
    `disk: ${fmtRate(sizeBytes, diskSeconds)}`,
    `disk: ${fmtRate(sizeBytes, diskSeconds)}`,
    "",
    "",
  ];
  const rows = tools.map((t) => [
    t.tool,
    seconds(t.full),
    fmtRate(sizeBytes, t.full.seconds),
    fmtBytes(t.full.storeBytes),
    seconds(t.incremental),
    fmtBytes(t.incremental.sentBytes),
    fmtBytes(t.incremental.storeGrowthBytes),
    Number.isNaN(t.incremental.metadataBytes) ? "n/a" : fmtBytes(t.incremental.metadataBytes),
    restoreRate(t.fullRestore, sizeBytes),
    restoreRate(t.deltaRestore, sizeBytes),
    `${fmtMiB(t.full.maxRssKiB ?? Number.NaN)} / ${fmtMiB(t.incremental.maxRssKiB ?? Number.NaN)}`,
    Number.isNaN(t.stateBytes) ? "n/a" : fmtBytes(t.stateBytes / gib),
  ]);
  const reference = [
    `changed data (${fmtInt(changedBlocks)} × 4 KiB)`,
    "",
    "",
    "",
    "",
    fmtBytes(changedBytes),
    fmtBytes(changedBytes),
    "",
    "",
    "",
    "",
    "",
  ];
  return [header, goal, ...rows, reference];
}

export function markdown(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((v, c) => v.padEnd(widths[c]!)).join(" | ")} |`;
  const rule = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

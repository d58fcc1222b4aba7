// The retention options shared by `datastore prune` and `process-server`.
import type { Command } from "commander";
import { parseDuration } from "../domain/duration.ts";
import type { RetentionPolicy } from "../domain/retention.ts";

export interface RetentionFlags {
  keepWithin?: string;
  keepAllWithin?: string;
  keepAppEvery?: string;
  keepCrashEvery?: string;
}

export function addRetentionOptions(c: Command, required: boolean): Command {
  const within = "--keep-within <duration>";
  const withinHelp =
    "keep every point newer than this (e.g. 72h); older ones are pruned, but never the newest";
  (required ? c.requiredOption(within, withinHelp) : c.option(within, withinHelp))
    .option(
      "--keep-all-within <duration>",
      "keep every point newer than this; older ones are thinned (default: the whole window)",
    )
    .option(
      "--keep-app-every <duration>",
      "beyond --keep-all-within, keep one app-consistent point per period",
    )
    .option(
      "--keep-crash-every <duration>",
      "beyond --keep-all-within, keep one crash-consistent point per period",
    );
  return c;
}

export function parseRetention(o: RetentionFlags): RetentionPolicy | undefined {
  if (o.keepWithin === undefined) return undefined;
  return {
    keepWithinMs: parseDuration(o.keepWithin, "--keep-within"),
    keepAllWithinMs: o.keepAllWithin ? parseDuration(o.keepAllWithin, "--keep-all-within") : undefined,
    appEveryMs: o.keepAppEvery ? parseDuration(o.keepAppEvery, "--keep-app-every") : undefined,
    crashEveryMs: o.keepCrashEvery ? parseDuration(o.keepCrashEvery, "--keep-crash-every") : undefined,
  };
}

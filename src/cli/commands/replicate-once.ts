// switchback replicate-once: one recovery point of a machine's disks straight into a datastore.
import { mkdirSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import type { Command } from "commander";
import { parseDuration } from "../../domain/duration.ts";
import { SwitchbackError } from "../../domain/errors.ts";
import { parseItemName } from "../../domain/ids.ts";
import type { SnapshotMode } from "../../replication/replicate.ts";
import type { TrackMode } from "../../replication/write-tracker.ts";
import { bytes, printJson } from "../output.ts";

export function defaultStateDir(): string {
  return (
    process.env.SWITCHBACK_STATE_DIR ??
    path.join(process.env.XDG_STATE_HOME ?? path.join(homedir(), ".local", "state"), "switchback", "agent")
  );
}

export function register(program: Command): void {
  program
    .command("replicate-once")
    .description(
      "take one recovery point of a machine's disks into a datastore (first time: full copy; then only changes)",
    )
    .requiredOption("--datastore <dir>", "the datastore")
    .requiredOption("--item <name>", "the replicated item (the machine's name)")
    .requiredOption(
      "--disk <path>",
      "a disk: block device or image file (repeat for each disk, in a fixed order)",
      collect,
      [],
    )
    .option("--consistency <kind>", "crash or app", "crash")
    .option("--hooks <dir>", "folder with pre-snapshot/post-snapshot hooks (for --consistency app)")
    .option("--hook-timeout <duration>", "time limit of each hook", "30s")
    .option("--snapshot <mode>", "how to reach one instant: auto, freeze, reflink or none", "auto")
    .option(
      "--freeze <mount>",
      "freeze this mount point (repeatable; default: found from the disks)",
      collect,
      [],
    )
    .option(
      "--track <mode>",
      "kernel write tracking (the freeze's re-read, and the journal of writes between points): auto (tracefs when root), tracefs or none",
      "auto",
    )
    .option("--state <dir>", "agent state folder (disk identities and hashes)")
    .option("--json", "print the result as one JSON object")
    .action(
      async (o: {
        datastore: string;
        item: string;
        disk: string[];
        consistency: string;
        hooks?: string;
        hookTimeout: string;
        snapshot: string;
        freeze: string[];
        track: string;
        state?: string;
        json?: boolean;
      }) => {
        // this process's start-up until the command runs (Node.js, the program's modules): reported
        // beside the point's own time
        const startupMs = Math.round(performance.now());
        const item = parseItemName(o.item);
        if (o.consistency !== "crash" && o.consistency !== "app") {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--consistency ${JSON.stringify(o.consistency)} is not valid; use crash or app`,
          );
        }
        if (!["auto", "freeze", "reflink", "none"].includes(o.snapshot)) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--snapshot ${JSON.stringify(o.snapshot)} is not valid; use auto, freeze, reflink or none`,
          );
        }
        if (!["auto", "tracefs", "none"].includes(o.track)) {
          throw new SwitchbackError(
            "INVALID_OPTION",
            `--track ${JSON.stringify(o.track)} is not valid; use auto, tracefs or none`,
          );
        }
        const [
          { Datastore },
          { replicateOnce },
          { LocalSink },
          { writeTrackerFactory },
          { changeJournalFactory },
        ] = await Promise.all([
          import("../../datastore/datastore.ts"),
          import("../../replication/replicate.ts"),
          import("../../replication/sink.ts"),
          import("../../replication/write-tracker.ts"),
          import("../../replication/journal.ts"),
        ]);
        const ds = await Datastore.open(o.datastore);
        const lock = await ds.lock("shared", `replicate-once ${item}`);
        try {
          const stateDir = path.join(o.state ?? defaultStateDir(), item);
          mkdirSync(stateDir, { recursive: true });
          const sink = new LocalSink(ds, undefined, stateDir);
          const r = await replicateOnce({
            item,
            disks: o.disk,
            stateDir,
            sink,
            consistency: o.consistency,
            hooksDir: o.hooks,
            hookTimeoutMs: parseDuration(o.hookTimeout, "--hook-timeout"),
            snapshot: o.snapshot as SnapshotMode,
            freezeMounts: o.freeze.length > 0 ? o.freeze : undefined,
            tracker: writeTrackerFactory(o.track as TrackMode),
            journal: changeJournalFactory(o.track as TrackMode),
          });
          if (o.json) printJson({ ...r, bytesStored: sink.bytesStored, startupMs });
          else {
            console.log(
              `point ${r.pointId} of ${item} (${r.mode}, ${r.consistency}-consistent, snapshot ${r.snapshot})`,
            );
            console.log(
              `  read ${bytes(r.bytesRead)}, ${r.changedBlocks} changed block(s), sent ${bytes(r.bytesSent)}, stored ${bytes(sink.bytesStored)} in ${r.durationMs} ms; longest freeze ${r.maxFreezeMs} ms${r.snapshot === "freeze" ? ` (${r.frozenUnits} unit(s) re-read while frozen)` : ""}`,
            );
            for (const w of r.warnings) console.log(`  warning: ${w}`);
          }
        } finally {
          await lock.release();
          await ds.close();
        }
      },
    );
}

function collect(v: string, acc: string[]): string[] {
  return [...acc, v];
}

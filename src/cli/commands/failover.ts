// switchback failover ITEM [--point P] [--shutdown-source] [--planned]
// Fails the machine over to its target site (a failback when the target is its home site).
import type { Command } from "commander";
import {
  checkedPoint,
  type OperationFlags,
  operationCommand,
  POINT_OPTION_HELP,
  runOperation,
} from "../job-progress.ts";

interface Flags extends OperationFlags {
  point?: string;
  shutdownSource?: boolean;
  planned?: boolean;
}

export function register(program: Command): void {
  operationCommand(
    program
      .command("failover")
      .description(
        "fail the machine over to its target site (a failback when that is its home site); replication stops first and the failover cannot be cancelled after that",
      ),
    (c) =>
      c
        .option("--point <point>", "the recovery point to start from (default latest)")
        .option(
          "--shutdown-source",
          "shut the source machine down first (best effort; the job records what happened)",
        )
        .option(
          "--planned",
          "planned: drain the running source, take a final point and shut it down, so nothing is lost",
        ),
  )
    .addHelpText("after", POINT_OPTION_HELP)
    .action((item: string, o: Flags) =>
      runOperation(
        item,
        "failover",
        { point: checkedPoint(o.point), shutdownSource: o.shutdownSource, planned: o.planned },
        o,
      ),
    );
}

// switchback test-failover ITEM [--point P] [--test-network N] | test-failover-cleanup ITEM [--notes T]
// A drill: a copy of the machine at the target site on its test network while replication goes on,
// and its cleanup with the operator's notes.
import type { Command } from "commander";
import {
  checkedPoint,
  type OperationFlags,
  operationCommand,
  POINT_OPTION_HELP,
  runOperation,
} from "../job-progress.ts";

export function register(program: Command): void {
  operationCommand(
    program
      .command("test-failover")
      .description(
        "start a drill: a copy of the machine at the target site on its test network; replication goes on",
      ),
    (c) =>
      c
        .option("--point <point>", "the recovery point to start the copy from (default latest-processed)")
        .option(
          "--test-network <name>",
          "the isolated network for this drill (default: the item's test network)",
        ),
  )
    .addHelpText("after", POINT_OPTION_HELP)
    .action((item: string, o: OperationFlags & { point?: string; testNetwork?: string }) =>
      runOperation(item, "test-failover", { point: checkedPoint(o.point), testNetwork: o.testNetwork }, o),
    );
  operationCommand(
    program
      .command("test-failover-cleanup")
      .description("end a drill: remove the test copy of the machine and its disks, keeping your notes"),
    (c) => c.option("--notes <text>", "what the drill showed (kept in the cleanup job's record)"),
  ).action((item: string, o: OperationFlags & { notes?: string }) =>
    runOperation(item, "test-failover-cleanup", { notes: o.notes }, o),
  );
}

// switchback change-point ITEM --point P
// Before commit: moves the failed-over machine to another recovery point (only differing blocks).
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
      .command("change-point")
      .description(
        "before commit: restart the failed-over machine from another recovery point (rewrites only the blocks that differ)",
      ),
    (c) => c.requiredOption("--point <point>", "the recovery point to move to"),
  )
    .addHelpText("after", POINT_OPTION_HELP)
    .action((item: string, o: OperationFlags & { point: string }) =>
      runOperation(item, "change-point", { point: checkedPoint(o.point) }, o),
    );
}

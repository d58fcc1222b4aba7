// switchback commit ITEM
// Makes a failover final (its recovery points go) or a failback final (the machine left is removed).
import type { Command } from "commander";
import { type OperationFlags, operationCommand, runOperation } from "../job-progress.ts";

export function register(program: Command): void {
  operationCommand(
    program
      .command("commit")
      .description(
        "make a failover final: deletes the item's recovery points (after a failback: removes the machine at the site it left, keeping its disks for the next reprotect)",
      ),
  ).action((item: string, o: OperationFlags) => runOperation(item, "commit", {}, o));
}

// switchback disable ITEM
// Stops protecting a machine and deletes its recovery points (refused while they may be its last copy).
import type { Command } from "commander";
import { type OperationFlags, operationCommand, runOperation } from "../job-progress.ts";

export function register(program: Command): void {
  operationCommand(
    program
      .command("disable")
      .description("stop protecting the machine and delete its recovery points at the target site"),
  ).action((item: string, o: OperationFlags) => runOperation(item, "disable", {}, o));
}

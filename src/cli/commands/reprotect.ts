// switchback reprotect ITEM [--location original|alternate] [--master-target A] [--process-server A]
//                           [--datastore D]
// After a committed failover: replicates the machine back from where it now runs.
import { type Command, Option } from "commander";
import { type OperationFlags, operationCommand, runOperation } from "../job-progress.ts";

interface Flags extends OperationFlags {
  location?: "original" | "alternate";
  masterTarget?: string;
  processServer?: string;
  datastore?: string;
}

export function register(program: Command): void {
  operationCommand(
    program
      .command("reprotect")
      .description(
        "after a committed failover: replicate the machine back from the site it runs at now, towards the site it left",
      ),
    (c) =>
      c
        .addOption(
          new Option(
            "--location <where>",
            "original: onto the disks still at the site it left, shipping only the blocks that differ; alternate: into new disks (a full copy)",
          ).choices(["original", "alternate"]),
        )
        .option(
          "--master-target <appliance>",
          "alternate location: the master target that writes the new disks",
        )
        .option("--process-server <appliance>", "the process server that receives the replication")
        .option("--datastore <datastore>", "alternate location: the datastore for the new disks and points"),
  ).action((item: string, o: Flags) =>
    runOperation(
      item,
      "reprotect",
      {
        location: o.location,
        masterTarget: o.masterTarget,
        processServer: o.processServer,
        datastore: o.datastore,
      },
      o,
    ),
  );
}

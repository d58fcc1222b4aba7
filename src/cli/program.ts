// The switchback command line: one file per command under commands/.
import { Command, CommanderError } from "commander";
import { SwitchbackError } from "../domain/errors.ts";
import * as agent from "./commands/agent.ts";
import * as alerts from "./commands/alerts.ts";
import * as appliance from "./commands/appliance.ts";
import * as appliances from "./commands/appliances.ts";
import * as changePoint from "./commands/change-point.ts";
import * as commit from "./commands/commit.ts";
import * as datastore from "./commands/datastore.ts";
import * as datastores from "./commands/datastores.ts";
import * as disable from "./commands/disable.ts";
import * as failover from "./commands/failover.ts";
import * as items from "./commands/items.ts";
import * as jobs from "./commands/jobs.ts";
import * as lab from "./commands/lab.ts";
import * as machines from "./commands/machines.ts";
import * as plans from "./commands/plans.ts";
import * as points from "./commands/points.ts";
import * as policies from "./commands/policies.ts";
import * as processServer from "./commands/process-server.ts";
import * as protect from "./commands/protect.ts";
import * as replicateOnce from "./commands/replicate-once.ts";
import * as reprotect from "./commands/reprotect.ts";
import * as restore from "./commands/restore.ts";
import * as server from "./commands/server.ts";
import * as sites from "./commands/sites.ts";
import * as testFailover from "./commands/test-failover.ts";
import * as tokens from "./commands/tokens.ts";

export function buildProgram(): Command {
  const program = new Command("switchback")
    .description("Switchback: disaster recovery for servers")
    .version("0.1.0")
    .showHelpAfterError(false)
    .exitOverride();
  for (const m of [datastore, replicateOnce, points, restore, processServer, agent]) m.register(program);
  // the vault and the commands that ask it
  for (const m of [server, appliance, sites, appliances, datastores, policies, machines]) m.register(program);
  // replicated items and their lifecycle, each operation a job
  for (const m of [
    protect,
    items,
    testFailover,
    failover,
    changePoint,
    commit,
    reprotect,
    disable,
    jobs,
    plans,
  ])
    m.register(program);
  alerts.register(program);
  tokens.register(program);
  lab.register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof SwitchbackError) {
      process.stderr.write(`switchback: ${err.message} [${err.code}]\n`);
      return 1;
    }
    const e = err as NodeJS.ErrnoException;
    if (e.code !== undefined && e.path !== undefined) {
      process.stderr.write(`switchback: ${e.path}: ${e.message} [${e.code}]\n`);
      return 1;
    }
    if (typeof e.code === "string" && /^E[A-Z]+$/.test(e.code)) {
      // a system error (a full disk, a file-size limit, an I/O error): its message says what happened
      process.stderr.write(`switchback: ${e.message} [${e.code}]\n`);
      return 1;
    }
    process.stderr.write(`switchback: unexpected error: ${e.stack ?? String(err)}\n`);
    return 70;
  }
}

// The switchback command line: one file per command under commands/.
import { Command, CommanderError } from "commander";
import { SwitchbackError } from "../domain/errors.ts";

/**
 * The command modules, in the order help lists them; each registers the command of its own name
 * (and those in ALSO). A run loads only the module of the command it runs: ~25 ms of every start
 * was loading all 26 with their imports.
 */
const MODULES = [
  "datastore",
  "replicate-once",
  "points",
  "restore",
  "process-server",
  "agent",
  // the vault and the commands that ask it
  "server",
  "appliance",
  "sites",
  "appliances",
  "datastores",
  "policies",
  "machines",
  // replicated items and their lifecycle, each operation a job
  "protect",
  "items",
  "test-failover",
  "failover",
  "change-point",
  "commit",
  "reprotect",
  "disable",
  "jobs",
  "plans",
  "alerts",
  "tokens",
  "lab",
] as const;

/** Commands a module registers besides the one of its name. */
export const ALSO: Record<string, (typeof MODULES)[number]> = { "test-failover-cleanup": "test-failover" };

export const COMMAND_MODULES: readonly string[] = MODULES;

/** The program with every command, or with just `command`'s when it names one. */
export async function buildProgram(command?: string): Promise<Command> {
  const program = new Command("switchback")
    .description("Switchback: disaster recovery for servers")
    .version("0.1.0")
    .showHelpAfterError(false)
    .exitOverride();
  const one = command === undefined ? undefined : (MODULES.find((m) => m === command) ?? ALSO[command]);
  const names = one === undefined ? MODULES : [one];
  const modules = await Promise.all(
    names.map((n) => import(`./commands/${n}.ts`) as Promise<{ register(p: Command): void }>),
  );
  for (const m of modules) m.register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv[2]);
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

// switchback jobs [list [--item I] [--state S] [--limit N] | show JOB | watch JOB | cancel JOB |
//                  retry JOB | logs JOB]
// Every long operation is a durable job of named steps; these show, follow and steer them.
import { type Command, Option } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";
import type { JobLogView } from "../../vault/jobs/types.ts";
import { type FollowFlags, followJob, type Job, took } from "../job-progress.ts";
import { printFields, printJson, printRecords, printTable } from "../output.ts";
import { seg, type VaultClient, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };
type Log = Omit<JobLogView, "jobId">;

const STATES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];
const SHOWN_LOG_LINES = 10;

/** A step's output in one line: its scalar fields, `key=value`, cut at `max` characters. */
export function summarize(output: unknown, max = 80): string {
  if (output === null || output === undefined) return "-";
  if (typeof output !== "object") return String(output);
  const parts = Object.entries(output as Record<string, unknown>)
    .filter(([, v]) => v === null || typeof v !== "object")
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  const text = parts.join(" ") || "{…}";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function logLine(l: Log): string {
  return `${l.at}  ${l.level.padEnd(5)}  ${l.step === null ? "-" : `#${l.step + 1}`}  ${l.message}`;
}

async function allLogs(client: VaultClient, id: string): Promise<Log[]> {
  const out: Log[] = [];
  for (;;) {
    const page = await client.get<Log[]>(`/v1/jobs/${seg(id)}/logs`, {
      after: String(out.at(-1)?.id ?? 0),
    });
    out.push(...page);
    if (page.length === 0) return out;
  }
}

function showJob(j: Job, logs: Log[]): void {
  printFields([
    ["job", j.id],
    ["kind", j.kind],
    ["item", j.itemId],
    ["plan", j.planId],
    ["state", j.waitingFor === null ? j.state : `${j.state} for ${j.waitingFor}`],
    ["progress", `${Math.round(j.progress * 100)}%`],
    ["error", j.error === null ? null : `${j.error.message} [${j.error.code}]`],
    ["created", `${j.createdAt}${j.createdBy === null ? "" : ` by ${j.createdBy}`}`],
    ["started", j.startedAt],
    ["finished", j.finishedAt],
    ["duration", took(j.durationMs)],
  ]);
  if (j.steps.length > 0) {
    process.stdout.write("\n");
    printTable([
      ["#", "STEP", "STATE", "TRIES", "TOOK", "OUTPUT"],
      ...j.steps.map((s) => [
        String(s.idx + 1),
        s.name,
        s.state,
        String(s.attempts),
        took(s.durationMs),
        summarize(s.output),
      ]),
    ]);
  }
  if (logs.length > 0) {
    process.stdout.write(`\nlast ${Math.min(logs.length, SHOWN_LOG_LINES)} of ${logs.length} log lines\n`);
    for (const l of logs.slice(-SHOWN_LOG_LINES)) process.stdout.write(`${logLine(l)}\n`);
  }
}

function jobArg(cmd: Command): Command {
  return withVault(cmd.argument("<job>", "the job id (see 'jobs list')"));
}

export function register(program: Command): void {
  const jobs = program.command("jobs").description("durable jobs: list, show, watch, cancel, retry");
  withVault(jobs.command("list", { isDefault: true }).description("list jobs, newest first"))
    .option("--item <item>", "only the jobs of this replicated item")
    .addOption(new Option("--state <state>", "only jobs in this state").choices(STATES))
    .option("--limit <n>", "at most this many (1 to 1000)", "50")
    .option("--json", "print the result as JSON")
    .action(async (o: Flags & { item?: string; state?: string; limit: string }) => {
      if (!/^\d+$/.test(o.limit) || Number(o.limit) < 1 || Number(o.limit) > 1000) {
        throw new SwitchbackError(
          "INVALID_LIMIT",
          `--limit ${JSON.stringify(o.limit)} is not a number from 1 to 1000`,
        );
      }
      const list = await vaultClient(o).get<Job[]>("/v1/jobs", {
        item: o.item,
        state: o.state,
        limit: o.limit,
      });
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["JOB", (j) => j.id],
          ["KIND", (j) => j.kind],
          ["ITEM", (j) => j.itemId ?? j.planId ?? "-"],
          ["STATE", (j) => j.state],
          ["PROGRESS", (j) => `${Math.round(j.progress * 100)}%`],
          ["CREATED", (j) => j.createdAt],
          ["TOOK", (j) => took(j.durationMs)],
          ["ERROR", (j) => (j.error === null ? "-" : j.error.code)],
        ],
        "no jobs",
      );
    });
  jobArg(
    jobs.command("show").description("show a job: its steps with timings and outputs, its last log lines"),
  )
    .option("--json", "print the result as JSON")
    .action(async (id: string, o: Flags) => {
      const client = vaultClient(o);
      const j = await client.get<Job>(`/v1/jobs/${seg(id)}`);
      if (o.json) return printJson(j);
      showJob(j, await allLogs(client, id));
    });
  jobArg(jobs.command("watch").description("follow a job live until it finishes (exit 0 done, 1 failed)"))
    .option("--json", "print the finished job as JSON")
    .action(async (id: string, o: FollowFlags) => {
      await followJob(vaultClient(o), o, id);
    });
  jobArg(jobs.command("cancel").description("cancel a job that has not passed its point of no return"))
    .option("--json", "print the result as JSON")
    .action(async (id: string, o: Flags) => {
      const j = await vaultClient(o).post<Job>(`/v1/jobs/${seg(id)}/cancel`, {});
      if (o.json) return printJson(j);
      process.stdout.write(`job ${j.id} (${j.kind}) ${j.state}\n`);
    });
  jobArg(jobs.command("retry").description("run a failed job again from the step that failed"))
    .option("--wait", "follow the job until it finishes (exit 0 done, 1 failed)")
    .option("--json", "print the result (with --wait: the finished job) as JSON")
    .action(async (id: string, o: FollowFlags & { wait?: boolean }) => {
      const client = vaultClient(o);
      const j = await client.post<Job>(`/v1/jobs/${seg(id)}/retry`, {});
      if (o.wait) {
        if (!o.json) process.stdout.write(`retrying job ${j.id} (${j.kind}) from step ${j.step + 1}\n`);
        await followJob(client, o, j.id);
      } else if (o.json) printJson(j);
      else
        process.stdout.write(
          `job ${j.id} (${j.kind}) ${j.state}; follow it with 'switchback jobs watch ${j.id}'\n`,
        );
    });
  jobArg(jobs.command("logs").description("print a job's log lines"))
    .option("--json", "print the result as JSON")
    .action(async (id: string, o: Flags) => {
      const logs = await allLogs(vaultClient(o), id);
      if (o.json) return printJson(logs);
      for (const l of logs) process.stdout.write(`${logLine(l)}\n`);
    });
}

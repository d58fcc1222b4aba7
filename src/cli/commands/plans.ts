// switchback plans [list | show PLAN | create NAME [--group ITEM,ITEM …] | add-group PLAN ITEM… |
//                  add-action PLAN --group N --when pre|post --kind K (--run CMD | --message TEXT) |
//                  confirm PLAN | <operation> PLAN [--point P] [--shutdown-source] [--wait]]
// Recovery plans: ordered groups of items (a group's machines at once, groups in order) with actions
// before and after each group. A plan operation is one job; --wait follows it group by group and
// says when it waits for an operator ('plans confirm').
import { type Command, Option } from "commander";
import { SwitchbackError } from "../../domain/errors.ts";
import { ACTION_KINDS, PLAN_OPERATIONS, type PlanOperation } from "../../domain/plan.ts";
import type { PlanView } from "../../vault/plans/schema.ts";
import { checkedPoint, type Job, POINT_OPTION_HELP } from "../job-progress.ts";
import { printFields, printJson, printRecords, printTable } from "../output.ts";
import { seg, type VaultClient, type VaultFlags, vaultClient, withVault } from "../vault-client.ts";

type Flags = VaultFlags & { json?: boolean };

const POLL_MS = 500;
const UNREACHABLE_GRACE_MS = 120_000;

const DESCRIPTIONS: Record<PlanOperation, string> = {
  "test-failover": "drill the plan: test failover of every item, group by group, with the plan's actions",
  "test-failover-cleanup": "remove the drill copies of the plan's items (all groups at once)",
  failover: "fail the plan's items over, group by group; cannot be cancelled once an item's failover began",
  commit: "make the failover (or failback) of every item final (all groups at once)",
  reprotect: "reprotect every item of the plan to its original location, group by group",
  failback: "fail the plan's reprotected items back home, group by group, with the failback actions",
};

function lastRunLine(p: PlanView): string {
  const r = p.lastRun;
  if (r === null) return "never run";
  const when = r.finishedAt ?? r.startedAt ?? r.createdAt;
  return `${r.operation} ${r.state}${r.waiting !== null ? ` at ${r.waiting.step}` : ""} (${r.jobId}, ${when})`;
}

function actionText(a: PlanView["groups"][number]["pre"][number]): string {
  const what = a.kind === "manual" ? JSON.stringify(a.message) : JSON.stringify(a.run);
  const limit = a.timeoutSeconds !== undefined ? `, ${a.timeoutSeconds}s limit` : "";
  return `${a.kind} ${what} on ${a.on.join(",")}${limit}`;
}

function show(p: PlanView, o: Flags): void {
  if (o.json) {
    printJson(p);
    return;
  }
  printFields([
    ["plan", p.name],
    ["id", p.id],
    ["on a machine's failure", p.continueOnError ? "go on" : "stop"],
    ["last run", lastRunLine(p)],
  ]);
  if (p.groups.length === 0) {
    process.stdout.write(`\nno groups yet; add one with 'switchback plans add-group ${p.name} ITEM…'\n`);
  }
  for (const g of p.groups) {
    process.stdout.write(
      `\ngroup ${g.n}${g.continueOnError !== p.continueOnError ? ` (on failure: ${g.continueOnError ? "go on" : "stop"})` : ""}\n`,
    );
    const rows: string[][] = [];
    for (const [i, a] of g.pre.entries()) rows.push(["  pre", String(i + 1), actionText(a)]);
    for (const it of g.items) rows.push(["  item", it.name, `${it.phase}, ${it.direction}`]);
    for (const [i, a] of g.post.entries()) rows.push(["  post", String(i + 1), actionText(a)]);
    printTable(rows);
  }
  const r = p.lastRun;
  if (r !== null) {
    process.stdout.write(`\nlast run: ${r.operation}, job ${r.jobId}, ${r.state}\n`);
    printTable([
      ["  STEP", "STATE", "RESULT"],
      ...r.steps.map((s) => [`  ${s.name}`, s.state, stepResult(s.output)]),
    ]);
    if (r.waiting !== null) {
      process.stdout.write(
        `waiting at ${r.waiting.step}: ${r.waiting.message}\n  confirm with 'switchback plans confirm ${p.name}'\n`,
      );
    }
    if (r.error !== null) process.stdout.write(`error: ${r.error.message} [${r.error.code}]\n`);
  }
}

interface MachineOut {
  item: string;
  job: string | null;
  state: string;
  error: { code: string; message: string } | null;
  phase: string | null;
}

function stepResult(output: unknown): string {
  if (output === null || typeof output !== "object") return "-";
  const o = output as { machines?: unknown; failures?: number; kind?: string; succeeded?: number };
  if (Array.isArray(o.machines) && o.kind === undefined) {
    const ms = o.machines as MachineOut[];
    return ms.map((m) => `${m.item} ${m.state}`).join(", ");
  }
  if (typeof o.succeeded === "number") {
    const s = output as { machines: number; succeeded: number; actionFailures: number };
    return `${s.succeeded} of ${s.machines} machines succeeded${s.actionFailures > 0 ? `, ${s.actionFailures} action failures` : ""}`;
  }
  if (o.kind !== undefined) return `${o.kind}${o.failures ? `, ${o.failures} failed` : ", done"}`;
  return "-";
}

// ---- following a plan job ----

type Definition = {
  groups: {
    items: string[];
    pre: { kind: string; message?: string }[];
    post: { kind: string; message?: string }[];
  }[];
};

function describeStep(name: string): string {
  const a = /^group-(\d+)-(pre|post)-(\d+)$/.exec(name);
  if (a !== null) return `group ${a[1]}: ${a[2]} action ${a[3]}`;
  const i = /^group-(\d+)-items$/.exec(name);
  if (i !== null) return `group ${i[1]}: items`;
  if (name === "all-groups-items") return "all groups: items";
  return name;
}

function manualMessage(job: Job, step: string): string {
  const a = /^group-(\d+)-(pre|post)-(\d+)$/.exec(step);
  const def = (job.params as { definition?: Definition } | null)?.definition;
  if (a === null || def === undefined) return "";
  return def.groups[Number(a[1]) - 1]?.[a[2] as "pre" | "post"][Number(a[3]) - 1]?.message ?? "";
}

/** Polls the plan's job and prints each step as it ends, each machine's outcome, and the waits. */
async function followPlanJob(client: VaultClient, plan: string, id: string, o: Flags): Promise<Job> {
  const w = (s: string) => {
    if (!o.json) process.stdout.write(`${s}\n`);
  };
  const printed = new Set<string>();
  let failingSince: number | null = null;
  for (;;) {
    let job: Job;
    try {
      job = await client.get<Job>(`/v1/jobs/${seg(id)}`);
      failingSince = null;
    } catch (err) {
      if (!(err instanceof SwitchbackError && err.code === "VAULT_UNREACHABLE")) throw err;
      failingSince ??= Date.now();
      if (Date.now() - failingSince > UNREACHABLE_GRACE_MS) throw err;
      await new Promise((r) => setTimeout(r, POLL_MS));
      continue;
    }
    for (const s of job.steps) {
      const key = `${s.name}:${s.state}:${s.attempts}`;
      if (printed.has(key)) continue;
      if (s.state === "running" && s.name.endsWith("-items")) {
        printed.add(key);
        w(`${describeStep(s.name)} started`);
      } else if (s.state === "waiting") {
        printed.add(key);
        w(`${describeStep(s.name)}: waiting for an operator: ${manualMessage(job, s.name)}`);
        w(`  confirm with 'switchback plans confirm ${plan}'`);
      } else if (s.state === "succeeded") {
        printed.add(key);
        const out = s.output as { machines?: MachineOut[]; kind?: string } | null;
        if (s.name === "summary") w(`summary: ${stepResult(s.output)}`);
        else if (out?.kind === undefined && Array.isArray(out?.machines)) {
          for (const m of out.machines) {
            const err = m.error !== null ? ` (${m.error.code}: ${m.error.message})` : "";
            w(
              `  ${m.item}: ${m.state}${m.job !== null ? ` (${m.job})` : ""}${m.phase !== null ? `, now ${m.phase}` : ""}${err}`,
            );
          }
          w(`${describeStep(s.name)} done`);
        } else w(`${describeStep(s.name)}: ${stepResult(s.output)}`);
      } else if (s.state === "failed") {
        printed.add(key);
        w(`${describeStep(s.name)} failed`);
      }
    }
    if (job.state === "succeeded" || job.state === "failed" || job.state === "cancelled") return job;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

interface Started {
  job: { id: string; kind: string; state: string };
  plan: string;
  operation: string;
  steps: string[];
}

interface Previewed {
  plan: string;
  operation: string;
  machines: {
    group: number;
    item: string;
    operation: string | null;
    decision: { label: string; direction: string; irreversible: boolean; consequences: string[] } | null;
    refused: { code: string; message: string } | null;
  }[];
}

/** --dry-run: what each machine's own operation would do, group by group; nothing starts. */
async function previewPlanOperation(
  plan: string,
  op: PlanOperation,
  body: Record<string, unknown>,
  o: Flags,
): Promise<void> {
  const client = vaultClient(o);
  const r = await client.post<Previewed>(`/v1/plans/${seg(plan)}/${op}?dryRun=true`, body);
  if (o.json) return printJson(r);
  const refused = r.machines.filter((m) => m.refused !== null).length;
  process.stdout.write(
    `plan ${r.plan} ${op} (dry run): ${r.machines.length - refused} of ${r.machines.length} machines would run${refused > 0 ? `, ${refused} refused` : ""}\n`,
  );
  for (const m of r.machines) {
    if (m.refused !== null) {
      process.stdout.write(
        `  group ${m.group}  ${m.item}: refused: ${m.refused.message} [${m.refused.code}]\n`,
      );
    } else if (m.decision !== null) {
      process.stdout.write(
        `  group ${m.group}  ${m.item}: ${m.decision.label} ${m.decision.direction}${m.decision.irreversible ? " (cannot be cancelled once started)" : ""}\n`,
      );
      for (const c of m.decision.consequences) process.stdout.write(`      - ${c}\n`);
    }
  }
}

async function runPlanOperation(
  plan: string,
  op: PlanOperation,
  body: Record<string, unknown>,
  o: Flags & { wait?: boolean; dryRun?: boolean },
): Promise<void> {
  const clean = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
  if (o.dryRun === true) return previewPlanOperation(plan, op, clean, o);
  const client = vaultClient(o);
  const r = await client.post<Started>(`/v1/plans/${seg(plan)}/${op}`, clean);
  if (!o.json) {
    process.stdout.write(`plan ${r.plan} ${op}: started job ${r.job.id} (${r.steps.length} steps)\n`);
  }
  if (!o.wait) {
    if (o.json) printJson(r);
    return;
  }
  const job = await followPlanJob(client, r.plan, r.job.id, o);
  if (o.json) printJson(job);
  else process.stdout.write(`job ${job.id} (${job.kind}) ${job.state}\n`);
  if (job.state !== "succeeded") {
    const e = job.error ?? { code: "JOB_CANCELLED", message: `job ${job.id} was ${job.state}` };
    throw new SwitchbackError(e.code, e.message);
  }
}

function collect(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}

function items(list: string): string[] {
  return list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

export function register(program: Command): void {
  const plans = program.command("plans").description("recovery plans: ordered groups of items with actions");
  withVault(plans.command("list", { isDefault: true }).description("list the recovery plans"))
    .option("--json", "print the result as JSON")
    .action(async (o: Flags) => {
      const list = await vaultClient(o).get<PlanView[]>("/v1/plans");
      if (o.json) return printJson(list);
      printRecords(
        list,
        [
          ["NAME", (p) => p.name],
          ["GROUPS", (p) => String(p.groups.length)],
          ["ITEMS", (p) => p.groups.flatMap((g) => g.items.map((i) => i.name)).join(",") || "-"],
          ["LAST RUN", lastRunLine],
        ],
        "no recovery plans; create one with 'switchback plans create NAME --group ITEM,ITEM'",
      );
    });
  withVault(
    plans.command("show").argument("<plan>", "name or id").description("show a plan and its last run"),
  )
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags) =>
      show(await vaultClient(o).get<PlanView>(`/v1/plans/${seg(ref)}`), o),
    );
  withVault(
    plans
      .command("create")
      .argument("<name>", "the new plan's name")
      .description("create a plan; each --group is the next group (its items run at once)"),
  )
    .option("--group <items>", "ITEM,ITEM…: the items of the next group (repeat for more groups)", collect)
    .option("--continue-on-error", "a machine's failure is reported and the plan goes on (default: it stops)")
    .option("--json", "print the result as JSON")
    .action(async (name: string, o: Flags & { group?: string[]; continueOnError?: boolean }) => {
      const groups = (o.group ?? []).map((g) => ({ items: items(g) }));
      const p = await vaultClient(o).post<PlanView>("/v1/plans", {
        name,
        groups,
        ...(o.continueOnError ? { continueOnError: true } : {}),
      });
      show(p, o);
    });
  withVault(
    plans
      .command("add-group")
      .argument("<plan>", "name or id")
      .argument("<items...>", "the items of the new group (names or ids)")
      .description("add a group after the plan's last one"),
  )
    .option("--continue-on-error", "a failure in this group is reported and the plan goes on")
    .option("--json", "print the result as JSON")
    .action(async (ref: string, list: string[], o: Flags & { continueOnError?: boolean }) => {
      const p = await vaultClient(o).post<PlanView>(`/v1/plans/${seg(ref)}/groups`, {
        items: list.flatMap(items),
        ...(o.continueOnError ? { continueOnError: true } : {}),
      });
      show(p, o);
    });
  withVault(
    plans
      .command("add-action")
      .argument("<plan>", "name or id")
      .description("add an action before (pre) or after (post) a group's items"),
  )
    .requiredOption("--group <n>", "the group, counted from 1")
    .addOption(
      new Option("--when <when>", "before or after the group's items")
        .choices(["pre", "post"])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--kind <kind>", "what the action is").choices([...ACTION_KINDS]).makeOptionMandatory(),
    )
    .option("--run <command>", "script, machine-script: the command (sh -c)")
    .option("--message <text>", "manual: what the operator must do before 'plans confirm'")
    .option("--timeout <seconds>", "script, machine-script: time limit in seconds (default 300)")
    .option(
      "--on <operations>",
      `the operations it runs for, comma-separated (default failover,test-failover): ${PLAN_OPERATIONS.join(", ")}`,
    )
    .option("--json", "print the result as JSON")
    .action(
      async (
        ref: string,
        o: Flags & {
          group: string;
          when: string;
          kind: string;
          run?: string;
          message?: string;
          timeout?: string;
          on?: string;
        },
      ) => {
        const n = Number(o.group);
        if (!Number.isInteger(n) || n < 1) {
          throw new SwitchbackError(
            "INVALID_REQUEST",
            `--group ${JSON.stringify(o.group)} is not a group number; groups count from 1`,
          );
        }
        const timeout = o.timeout === undefined ? undefined : Number(o.timeout);
        if (timeout !== undefined && !Number.isInteger(timeout)) {
          throw new SwitchbackError(
            "INVALID_REQUEST",
            `--timeout ${JSON.stringify(o.timeout)} is not a whole number of seconds`,
          );
        }
        const body = {
          when: o.when,
          kind: o.kind,
          ...(o.run !== undefined ? { run: o.run } : {}),
          ...(o.message !== undefined ? { message: o.message } : {}),
          ...(timeout !== undefined ? { timeoutSeconds: timeout } : {}),
          ...(o.on !== undefined ? { on: items(o.on) } : {}),
        };
        show(await vaultClient(o).post<PlanView>(`/v1/plans/${seg(ref)}/groups/${n}/actions`, body), o);
      },
    );
  withVault(
    plans
      .command("confirm")
      .argument("<plan>", "name or id")
      .description("confirm the manual action the plan's running job waits at"),
  )
    .option("--step <step>", "the step you were shown (default: the one the job waits at now, shown first)")
    .option("--json", "print the result as JSON")
    .action(async (ref: string, o: Flags & { step?: string }) => {
      const client = vaultClient(o);
      let step = o.step;
      if (step === undefined) {
        // say what is being confirmed, and confirm exactly that (not a later action reached meanwhile)
        const p = await client.get<PlanView>(`/v1/plans/${seg(ref)}`);
        const w = p.lastRun?.waiting ?? null;
        if (w !== null) {
          step = w.step;
          if (!o.json) process.stdout.write(`${describeStep(w.step)}: ${w.message}\n`);
        }
      }
      const r = await client.post<{ job: string; step: string; message: string; accepted: boolean }>(
        `/v1/plans/${seg(ref)}/confirm`,
        step === undefined ? {} : { step },
      );
      if (o.json) return printJson(r);
      process.stdout.write(
        `${r.accepted ? "confirmed" : "already confirmed"}: ${describeStep(r.step)} of job ${r.job} (${r.message}); the plan goes on\n`,
      );
    });
  for (const op of PLAN_OPERATIONS) {
    let cmd = plans.command(op).argument("<plan>", "name or id").description(DESCRIPTIONS[op]);
    if (op === "test-failover" || op === "failover" || op === "failback") {
      cmd = cmd.option("--point <point>", "the recovery point for every item (see below)");
    }
    if (op === "failover" || op === "failback") {
      cmd = cmd
        .option("--shutdown-source", "shut each source machine down first (best effort)")
        .option("--planned", "planned: drain each running machine, shut it down, no data loss");
    }
    if (op === "test-failover-cleanup")
      cmd = cmd.option("--notes <text>", "notes on the drill, kept in each job");
    withVault(cmd)
      .option("--wait", "follow the plan's job group by group until it finishes (exit 0 done, 1 failed)")
      .option("--dry-run", "say what each machine's operation would do now, group by group; start nothing")
      .option("--json", "print the vault's answer (with --wait: the finished job) as JSON")
      .addHelpText(
        "after",
        op === "test-failover" || op === "failover" || op === "failback" ? POINT_OPTION_HELP : "",
      )
      .action(
        (
          ref: string,
          o: Flags & {
            wait?: boolean;
            dryRun?: boolean;
            point?: string;
            shutdownSource?: boolean;
            planned?: boolean;
            notes?: string;
          },
        ) =>
          runPlanOperation(
            ref,
            op,
            {
              point: checkedPoint(o.point),
              shutdownSource: o.shutdownSource,
              planned: o.planned,
              notes: o.notes,
            },
            o,
          ),
      );
  }
}

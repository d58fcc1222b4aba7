// switchback protect MACHINE --to SITE [--policy P] [--process-server A] [--datastore D] [target settings]
// Enables replication of a machine to another site: creates the replicated item and its enable job.
import type { Command } from "commander";
import type { ItemView } from "../../vault/items-view.ts";
import { type FollowFlags, followJob } from "../job-progress.ts";
import { printJson } from "../output.ts";
import { vaultClient, withVault } from "../vault-client.ts";
import { type TargetFlags, targetSettingsOf, targetSettingsOptions } from "./items.ts";

interface Flags extends FollowFlags, TargetFlags {
  to: string;
  policy: string;
  processServer?: string;
  datastore?: string;
  wait?: boolean;
}

export function register(program: Command): void {
  withVault(
    targetSettingsOptions(
      program
        .command("protect")
        .argument("<machine>", "the machine to protect (name or id)")
        .description("enable replication of a machine to another site (starts the enable job)")
        .requiredOption("--to <site>", "the site to replicate to (where it fails over to)")
        .option("--policy <policy>", "the replication policy", "default")
        .option("--process-server <appliance>", "the process server at the target site (default: the site's)")
        .option("--datastore <datastore>", "the datastore at the target site (default: the site's first)"),
      { diskRoles: false },
    ),
  )
    .option("--wait", "follow the enable job until it finishes (exit 0 done, 1 failed)")
    .option("--json", "print the vault's answer (with --wait: the finished job) as JSON")
    .action(async (machine: string, o: Flags) => {
      const client = vaultClient(o);
      const settings = targetSettingsOf(o);
      const r = await client.post<{ item: ItemView; job: { id: string; kind: string; state: string } }>(
        "/v1/items",
        {
          machine,
          to: o.to,
          policy: o.policy,
          ...(o.processServer !== undefined ? { processServer: o.processServer } : {}),
          ...(o.datastore !== undefined ? { datastore: o.datastore } : {}),
          ...(Object.keys(settings).length > 0 ? { targetSettings: settings } : {}),
        },
      );
      const it = r.item;
      if (!o.json) {
        process.stdout.write(
          `protecting ${it.name}: ${it.direction}, policy ${it.policy}, process server ${it.processServer}, datastore ${it.datastore} (item ${it.id})\n`,
        );
        process.stdout.write(`started job ${r.job.id} (${r.job.kind})\n`);
      }
      if (!o.wait) {
        if (o.json) printJson(r);
        return;
      }
      await followJob(client, o, r.job.id);
      if (!o.json) {
        process.stdout.write(
          `initial replication goes on; 'switchback items show ${it.name}' shows its progress\n`,
        );
      }
    });
}

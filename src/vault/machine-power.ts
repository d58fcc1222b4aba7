// Starting and stopping machines the vault defined (`machines create`): the site's compute provider
// makes the machine's blank disks the first time, with the machine's identity label on the OS disk
// (so its agent registers as this machine), records the instance, then boots it.
import { SwitchbackError } from "../domain/errors.ts";
import { getMachineRow, machineLayout, mountsOf } from "./inventory/machines.ts";
import {
  instancesAt,
  markInstance,
  newInstanceId,
  type OpsContext,
  recordInstance,
  siteRuntime,
} from "./operations/context.ts";

export async function startMachine(
  ctx: OpsContext,
  ref: string,
): Promise<{ instanceId: string; pid: number | null }> {
  const m = await getMachineRow(ctx.db, ref);
  if (m.site_id === null || m.boot_command === null) {
    throw new SwitchbackError(
      "MACHINE_NOT_STARTABLE",
      `machine ${m.name} was not defined with a site and a boot command; the vault can start only machines it defined ('machines create')`,
    );
  }
  const site = siteRuntime(ctx, m.site_id);
  const existing = (await instancesAt(ctx, m.id, m.site_id, ["production"]))[0];
  let id = existing?.id;
  if (id === undefined) {
    const disks = JSON.parse(m.disks) as { uuid: string; sizeBytes: number }[];
    id = newInstanceId();
    // recorded first: the agent registers with this instance id as soon as the machine boots
    await recordInstance(ctx, {
      id,
      item_id: null,
      machine_id: m.id,
      site_id: m.site_id,
      purpose: "production",
      provider: site.provider.kind,
      disks: [],
    });
    const layout = machineLayout(m);
    const mounts = mountsOf(layout);
    const info = await site.provider.create({
      id,
      name: m.name,
      disks: disks.map((d, n) => {
        const fs = layout?.disks[n]?.filesystem;
        return { from: "blank", sizeBytes: d.sizeBytes, ...(fs !== undefined ? { filesystem: fs } : {}) };
      }),
      bootCommand: m.boot_command,
      env: { SWITCHBACK_MACHINE_NAME: m.name },
      ...(layout?.network !== undefined ? { network: layout.network } : {}),
      ...(mounts !== undefined ? { mounts } : {}),
    });
    await site.labelInstance(id, {
      machineId: m.id,
      name: m.name,
      disks: disks.map((d, index) => ({ index, uuid: d.uuid })),
      createdAt: ctx.now().toISOString(),
    });
    await markInstance(ctx, id, { disks: info.disks });
  }
  const info = await site.provider.start(id);
  await ctx.db
    .updateTable("machines")
    .set({ instance_id: id, power_state: "running", updated_at: ctx.now().toISOString() })
    .where("id", "=", m.id)
    .execute();
  return { instanceId: id, pid: info.pid };
}

export async function stopMachine(
  ctx: OpsContext,
  ref: string,
): Promise<{ instanceId: string; graceful: boolean }> {
  const m = await getMachineRow(ctx.db, ref);
  const site = m.site_id === null ? undefined : ctx.sites.get(m.site_id);
  const inst = m.site_id === null ? undefined : (await instancesAt(ctx, m.id, m.site_id, ["production"]))[0];
  if (site === undefined || inst === undefined) {
    throw new SwitchbackError(
      "MACHINE_NOT_STOPPABLE",
      `machine ${m.name} does not run in an instance of this vault; shut it down where it runs`,
    );
  }
  const r = await site.provider.stop(inst.id);
  await ctx.db
    .updateTable("machines")
    .set({ power_state: "stopped", updated_at: ctx.now().toISOString() })
    .where("id", "=", m.id)
    .execute();
  return { instanceId: inst.id, graceful: r.graceful };
}

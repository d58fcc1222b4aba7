// Bringing a machine up from a recovery point at a site: onto the disks it left there (only the blocks
// that differ are written) or onto new disks made from the point (sparse, reflink where possible).
import type { DiskSpec, InstanceNetwork, InstanceSpec, PointDiskSource } from "../../compute/provider.ts";
import type { MachineRow } from "../db/schema.ts";
import { machineLayout, mountsOf } from "../inventory/machines.ts";
import type { LoadedItem } from "../items.ts";
import {
  disksLeftAt,
  machineOf,
  markInstance,
  type OpsContext,
  recordInstance,
  siteRuntime,
} from "./context.ts";

export interface Materialized {
  instanceId: string;
  mode: "delta" | "full";
  blocksWritten: number | null;
}

/**
 * How a copy of the machine boots at `siteId`: its environment, its network and its mounts. The item's
 * target settings describe the machine away from home (after a failover, and for drills); at its home
 * site (failback, alternate-location disks) it comes back as its layout says, at its own address.
 */
export function copySpec(
  it: LoadedItem,
  machine: MachineRow,
  siteId: string,
  o: { drill: boolean; testNetwork?: string | undefined },
): Pick<InstanceSpec, "env" | "network" | "mounts"> {
  const s =
    o.drill && o.testNetwork !== undefined ? { ...it.settings, testNetwork: o.testNetwork } : it.settings;
  const layout = machineLayout(machine);
  const atHome = siteId === it.state.home && !o.drill;
  const env: Record<string, string> = {
    SWITCHBACK_MACHINE_NAME: atHome ? it.row.name : (s.targetName ?? it.row.name),
    SWITCHBACK_ITEM: it.row.id,
  };
  let network: InstanceNetwork;
  if (o.drill) {
    env.SWITCHBACK_DRILL = "1";
    if (s.testNetwork !== undefined) env.SWITCHBACK_NETWORK = s.testNetwork;
    // the drill copy keeps the production address: on the isolated test network it clashes with nothing
    network = {
      drill: true,
      ...(s.testNetwork !== undefined ? { name: s.testNetwork } : {}),
      ...(s.ip !== undefined ? { ip: s.ip } : {}),
      ...(s.subnet !== undefined ? { subnet: s.subnet } : {}),
    };
  } else if (atHome) {
    network = { ...(layout?.network ?? {}) };
    if (network.name !== undefined) env.SWITCHBACK_NETWORK = network.name;
    if (network.ip !== undefined) env.SWITCHBACK_IP = network.ip;
  } else {
    if (s.network !== undefined) env.SWITCHBACK_NETWORK = s.network;
    if (s.ip !== undefined) env.SWITCHBACK_IP = s.ip;
    if (s.subnet !== undefined) env.SWITCHBACK_SUBNET = s.subnet;
    network = {
      ...(s.network !== undefined ? { name: s.network } : {}),
      ...(s.ip !== undefined ? { ip: s.ip } : {}),
      ...(s.subnet !== undefined ? { subnet: s.subnet } : {}),
      ...(s.publicPort !== undefined ? { publicPort: s.publicPort } : {}),
      ...(s.servicePort !== undefined ? { servicePort: s.servicePort } : {}),
    };
  }
  const mounts = mountsOf(layout);
  return {
    env,
    ...(Object.keys(network).length > 0 ? { network } : {}),
    ...(mounts !== undefined ? { mounts } : {}),
  };
}

/**
 * Makes the machine's disks at `siteId` equal to `point` of the item in `datastoreId` (at that site).
 * `reuse`: write onto the disks the machine left there when it has some (failover back home, change
 * of point); otherwise (and for drills) a new instance `newId` gets disks made from the point.
 */
export async function materialize(
  ctx: OpsContext,
  it: LoadedItem,
  o: {
    siteId: string;
    datastoreId: string;
    point: string;
    newId: string;
    purpose: "production" | "drill";
    reuse: boolean;
    /** a drill on another test network than the item's own */
    testNetwork?: string | undefined;
  },
  progress?: (f: number) => void,
): Promise<Materialized> {
  const site = siteRuntime(ctx, o.siteId);
  const machine = await machineOf(ctx, it);
  // points are named by the datastore's id: the site knows where it lives
  const from = { datastore: o.datastoreId, item: it.row.id, point: o.point };
  const adopt = (id: string, disks: string[]) =>
    site.provider.create({
      id,
      name: it.settings.targetName ?? it.row.name,
      disks: disks.map((p) => ({ from: "adopt", path: p }) as DiskSpec),
      bootCommand: machine.boot_command,
      ...copySpec(it, machine, o.siteId, { drill: false }),
    });
  if (o.reuse) {
    const left = await disksLeftAt(ctx, machine.id, o.siteId);
    if (left !== null && left.instance.id !== o.newId) {
      // disks of a removed machine (seed) get an instance again, adopting them in place
      let id = left.instance.id;
      if (left.instance.purpose === "seed" || (await site.provider.status(id)) === null) {
        id = o.newId;
        // the instance first (idempotent per id), then its record: a record never names an
        // instance the provider does not have, whatever moment a kill -9 picks
        await adopt(id, left.disks);
        await recordInstance(ctx, {
          id,
          item_id: it.row.id,
          machine_id: machine.id,
          site_id: o.siteId,
          purpose: o.purpose,
          provider: site.provider.kind,
          disks: left.disks,
        });
        if (left.instance.id !== id) await markInstance(ctx, left.instance.id, { deleted: true });
      }
      await site.provider.stop(id);
      const r = await site.provider.changePoint(id, { ...from, ...(await seededBase(ctx, it, machine, o)) });
      await markInstance(ctx, id, { purpose: o.purpose });
      progress?.(1);
      return { instanceId: id, mode: "delta", blocksWritten: r.blocksWritten };
    }
    if (left !== null) {
      // this job made the instance before a restart: make sure it exists and its disks hold the point
      if ((await site.provider.status(left.instance.id)) === null) await adopt(left.instance.id, left.disks);
      await site.provider.stop(left.instance.id);
      const r = await site.provider.changePoint(left.instance.id, {
        ...from,
        ...(await seededBase(ctx, it, machine, o)),
      });
      return { instanceId: left.instance.id, mode: "delta", blocksWritten: r.blocksWritten };
    }
  }
  const header = await site.pointHeader(o.datastoreId, it.row.id, o.point);
  const disks: DiskSpec[] = header.disks.map((disk) => ({
    from: "point",
    datastore: o.datastoreId,
    item: it.row.id,
    point: o.point,
    diskUuid: disk.uuid,
    sizeBytes: disk.sizeBytes,
  }));
  const info = await site.provider.create(
    {
      id: o.newId,
      name: it.settings.targetName ?? it.row.name,
      disks,
      bootCommand: machine.boot_command,
      ...copySpec(it, machine, o.siteId, { drill: o.purpose === "drill", testNetwork: o.testNetwork }),
    },
    progress,
  );
  await recordInstance(ctx, {
    id: o.newId,
    item_id: it.row.id,
    machine_id: machine.id,
    site_id: o.siteId,
    purpose: o.purpose,
    provider: site.provider.kind,
    disks: info.disks,
  });
  return { instanceId: o.newId, mode: "full", blocksWritten: null };
}

/**
 * The reprotect's seed as the base of a failback onto the disks it was read from: the provider then
 * writes only where the failback point differs from the seed (if the disks were neither run nor
 * rewritten since). Nothing when there is no seed in this datastore (any more).
 */
async function seededBase(
  ctx: OpsContext,
  it: LoadedItem,
  machine: MachineRow,
  o: { siteId: string; datastoreId: string },
): Promise<Pick<PointDiskSource, "base">> {
  const seed = it.row.seed_point_id;
  if (seed === null) return {};
  try {
    const header = await siteRuntime(ctx, o.siteId).pointHeader(o.datastoreId, it.row.id, seed);
    const diskUuids = (JSON.parse(machine.disks) as { uuid: string }[]).map((d) => d.uuid);
    return { base: { point: seed, at: header.createdAt, diskUuids } };
  } catch {
    return {}; // pruned, or another datastore: compare the disks instead
  }
}

// What the vault asks of a compute provider: make an instance's disks, boot it, stop it, say whether
// it runs, rewrite its disks to another recovery point, remove it. One folder per provider under
// src/compute/ implements this interface (`process/` first); every call is idempotent per instance id,
// because a job step that calls it may run again after a vault restart.

/** Where an instance's disk comes from. */
export type DiskSpec =
  /** materialized from a recovery point in a local datastore (the point's disk with this uuid) */
  | {
      from: "point";
      /** the datastore's folder; a site's provider (src/appliance/site-provider.ts) takes the vault's datastore id */
      datastore: string;
      item: string;
      /** a point id, or "latest" (resolved once, when the disk is made) */
      point: string;
      diskUuid: string;
      sizeBytes: number;
    }
  /** a copy of an image file: a reflink clone where the file system has them, else a sparse copy */
  | { from: "clone"; path: string }
  /** an existing image file used in place (a machine's own disks at its home site); never deleted */
  | { from: "adopt"; path: string }
  /** a new all-zero (sparse) image; `filesystem`: made with that file system (privileged machines mount it) */
  | { from: "blank"; sizeBytes: number; filesystem?: "ext4" | "xfs" };

/** Where a privileged machine attaches to its site's networks (the unprivileged mode only passes it on in env). */
export interface InstanceNetwork {
  /** the site network to join; default: the site's default network, or its test network for a drill */
  name?: string;
  /** its address there; default: one kept from its last run, else the first free one */
  ip?: string;
  /** the subnet it must be on (a.b.c.d/n): picks the site network with it when no name is given */
  subnet?: string;
  /** a drill copy: joins the test network */
  drill?: boolean;
  /** forwarded from the site's edge address to the machine's address (`servicePort`, default the same port) */
  publicPort?: number;
  servicePort?: number;
}

export interface InstanceSpec {
  /** the compute instance id: 1-128 letters, digits, '.', '_' or '-' (it names a folder) */
  id: string;
  /** the machine's name, for people */
  name: string;
  /** in order; disk 0 is the OS disk */
  disks: DiskSpec[];
  /** what boots the machine (`sh -c`); null: the provider keeps its disks but cannot start it */
  bootCommand: string | null;
  /** added to the boot command's environment */
  env?: Record<string, string>;
  /** privileged mode: the network it joins */
  network?: InstanceNetwork;
  /** privileged mode: disk `disk` is mounted at `at` under the machine's root (SWITCHBACK_ROOT); "/" is the root file system */
  mounts?: { disk: number; at: string }[];
}

export interface InstanceInfo {
  id: string;
  state: "running" | "stopped";
  /** the boot command's process (its process group leader) while running */
  pid: number | null;
  /** the disk image paths, in order */
  disks: string[];
  /** the instance's folder: logs, state, and the disks it made */
  folder: string;
  /** when the current or last run started (ISO 8601), null when never started */
  startedAt: string | null;
  /** exit status of the last run when it is known (the provider that started it saw it end); null: killed by a signal */
  exitCode?: number | null;
  /** privileged mode: the network and address of the current or last run */
  network?: { name: string; ip: string; netns: string } | null;
}

/** The recovery point an instance's disks are rewritten to: its disk i is the point's disk i. */
export interface PointDiskSource {
  /** local datastore folder (a site's provider: the vault's datastore id) */
  datastore: string;
  item: string;
  /** a point id, or "latest" */
  point: string;
  /**
   * The disks held exactly this point of the item when a master target read them (a reprotect's
   * seed at `at`): if the instance has not run and its disks were not rewritten since, only the
   * blocks where the two points differ are written, found from their maps without reading the disks.
   * Otherwise (or without it) the disks are compared block by block. `diskUuids`: the disks' uuids in
   * the item's points, in the instance's disk order.
   */
  base?: { point: string; at: string; diskUuids: string[] };
}

export interface ComputeProvider {
  readonly kind: string;
  /** Creates an instance's disks: from a recovery point (materialize), by cloning image files (reflink, falling back to a sparse copy), or adopting existing image files in place. Idempotent per instance id. */
  create(spec: InstanceSpec, progress?: (fraction: number) => void): Promise<InstanceInfo>;
  /** Boots the instance; already running: nothing to do. */
  start(id: string): Promise<InstanceInfo>;
  /** Asks the instance to stop, then forces it after timeoutMs. */
  stop(id: string, o?: { timeoutMs?: number }): Promise<{ graceful: boolean; wasRunning: boolean }>;
  /** null: no such instance */
  status(id: string): Promise<InstanceInfo | null>;
  /** Rewrites the disks to another point writing only the blocks that differ (change recovery point); instance must be stopped. */
  changePoint(id: string, from: PointDiskSource): Promise<{ blocksWritten: number; bytesWritten: number }>;
  /** Stops the instance first; idempotent. keepDisks: the disk images it made stay in its folder. */
  delete(id: string, o?: { keepDisks?: boolean; timeoutMs?: number }): Promise<void>;
}

// What the vault's operations ask of a site's appliance, wherever it runs: in the vault process
// (LocalSite, the embedded default) or as its own `switchback appliance` process (the vault's
// RemoteSite client of its control API). Datastores are named by the vault's datastore ids; the
// site knows where each one lives. Instances of the site's compute provider are made from points of
// the site's own datastores: a DiskSpec `{ from: "point", datastore: <datastore id> }` is resolved by
// the site, so no path of a datastore ever leaves it.
import type { MachineIdentity } from "../agent/identity.ts";
import type { ComputeProvider } from "../compute/provider.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import type { RetentionPolicy } from "../domain/retention.ts";

export interface SiteDatastore {
  /** the vault's datastore id */
  id: string;
  name: string;
  /** where agents reach the process server that writes into it */
  url: string;
}

/** A disk at the site with its uuid in the item's points (seed, apply). */
export interface SiteDisk {
  path: string;
  uuid: string;
}

export interface RetentionRequest {
  item: string;
  policy: RetentionPolicy;
}

export interface RetentionResult {
  /** items whose points were looked at */
  items: number;
  pruned: number;
  bytesFreed: number;
}

export interface SiteRuntime {
  readonly id: string;
  readonly name: string;
  /** "in-process": inside the vault; "remote": a `switchback appliance` process */
  readonly kind: "in-process" | "remote";
  /** the site's compute provider; DiskSpec and PointDiskSource name datastores by id */
  readonly provider: ComputeProvider;
  /** the datastores it serves now (a remote site: as its appliance last said) */
  datastores(): SiteDatastore[];
  serves(datastoreId: string): boolean;
  /** true when the appliance answers now */
  ping(): Promise<boolean>;
  /** The item's points in a datastore, oldest first (none: the item has no points there). */
  points(datastoreId: string, item: string): Promise<PointHeader[]>;
  pointHeader(datastoreId: string, item: string, point: string): Promise<PointHeader>;
  /** Master target: a point of stopped local disks into the datastore (original-location reprotect). */
  seed(datastoreId: string, item: string, disks: SiteDisk[]): Promise<{ pointId: string; bytesRead: number }>;
  /** Master target: writes a point onto existing disks, only the blocks that differ. */
  apply(
    datastoreId: string,
    item: string,
    point: string,
    disks: SiteDisk[],
  ): Promise<{ blocksWritten: number; bytesWritten: number }>;
  /** Deletes every point of an item (commit, disable); blocks are freed by the next GC. */
  deletePoints(datastoreId: string, item: string): Promise<string[]>;
  /** Prunes each item by its policy, then collects garbage, with the datastore to itself. */
  retention(datastoreId: string, items: RetentionRequest[], now: Date): Promise<RetentionResult>;
  /** Free bytes of the datastore's file system; null when it cannot be read. */
  freeBytes(datastoreId: string): Promise<number | null>;
  /** Whether every one of these disk images (of instances at this site) still exists. */
  disksPresent(paths: string[]): Promise<boolean>;
  /** Writes the machine's identity label on the OS disk of an instance of the site's provider. */
  labelInstance(instanceId: string, identity: MachineIdentity): Promise<void>;
  stop(): Promise<void>;
}

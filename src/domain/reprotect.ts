// What reprotect must check before it starts, each with a named refusal. Pure: the facts the vault
// gathered (inventory rows, appliance probes, datastore capacity) in, every failed check out, so an
// operator sees all of them at once rather than one per attempt. The list follows what operators of
// the incumbents learn the hard way: the machine must run where it now lives and be known, the site
// it returns to must have reachable appliances and room, no drill leftovers on the master target,
// replication-group members agree on OS and master target, and disk identities must not clash.
import type { Refusal } from "./refusal.ts";
import { refuse } from "./refusal.ts";

export interface ApplianceFacts {
  name: string;
  site: string;
  reachable: boolean;
  /** for a master target: the OS family it serves ("linux", "windows") */
  os?: string | null;
  /** disk identities the master target's own machine uses */
  diskUuids?: readonly string[];
  /** drill copies (test failover instances) the master target still holds */
  drillArtefacts?: readonly string[];
}

export interface ReprotectFacts {
  item: string;
  /** the site the machine runs at now (the reprotect's source) */
  runningSite: string;
  /** the site replication goes back to */
  returnSite: string;
  location: "original" | "alternate";
  machine: {
    /** the vault has the machine in its inventory */
    known: boolean;
    /** the agent reported from this site, and recently */
    reportingFrom: string | null;
    running: boolean;
    os: string | null;
    diskUuids: readonly string[];
    /** the size of all its disks */
    sizeBytes: number;
  };
  processServer: ApplianceFacts;
  masterTarget: ApplianceFacts;
  datastore: { name: string; site: string; reachable: boolean; freeBytes: number | null };
  /** for the original location: the machine's disks are still at the return site */
  disksAtReturnSite: boolean;
  /** other members of the item's replication group (empty when it has none) */
  group: readonly { item: string; os: string | null; masterTarget: string }[];
}

/** Every check that fails, in the order an operator would fix them; empty: reprotect may start. */
export function checkReprotect(f: ReprotectFacts): Refusal[] {
  const out: Refusal[] = [];
  const m = f.machine;
  if (!m.known) {
    out.push(
      refuse(
        "REPROTECT_MACHINE_UNKNOWN",
        `the vault does not know the machine of item ${f.item}; start its agent so it registers, then retry`,
      ),
    );
  } else {
    if (!m.running) {
      out.push(
        refuse(
          "REPROTECT_MACHINE_NOT_RUNNING",
          `the machine of item ${f.item} is not running at ${f.runningSite}; start it, then retry`,
        ),
      );
    }
    if (m.reportingFrom !== f.runningSite) {
      out.push(
        refuse(
          "REPROTECT_MACHINE_NOT_AT_SITE",
          m.reportingFrom === null
            ? `the agent of item ${f.item} has not reported from ${f.runningSite}; check that it runs there and reaches the vault`
            : `the agent of item ${f.item} reports from ${m.reportingFrom}, not from ${f.runningSite} where the item failed over to`,
        ),
      );
    }
  }
  for (const [role, a] of [
    ["process server", f.processServer],
    ["master target", f.masterTarget],
  ] as const) {
    if (a.site !== f.returnSite) {
      out.push(
        refuse(
          "REPROTECT_APPLIANCE_WRONG_SITE",
          `${role} "${a.name}" is at ${a.site}, but replication goes back to ${f.returnSite}; choose one at ${f.returnSite}`,
        ),
      );
    } else if (!a.reachable) {
      out.push(
        refuse(
          "REPROTECT_APPLIANCE_UNREACHABLE",
          `${role} "${a.name}" at ${a.site} did not answer; check that its appliance is running and the sites are linked`,
        ),
      );
    }
  }
  const drills = f.masterTarget.drillArtefacts ?? [];
  if (drills.length > 0) {
    out.push(
      refuse(
        "REPROTECT_DRILL_ARTEFACTS",
        `master target "${f.masterTarget.name}" still holds test failover copies (${drills.join(", ")}); clean them up first (test-failover-cleanup)`,
      ),
    );
  }
  if (m.os !== null && f.masterTarget.os != null && m.os !== f.masterTarget.os) {
    out.push(
      refuse(
        "REPROTECT_MASTER_TARGET_OS_MISMATCH",
        `master target "${f.masterTarget.name}" serves ${f.masterTarget.os} machines, the machine runs ${m.os}; choose a ${m.os} master target`,
      ),
    );
  }
  for (const g of f.group) {
    if (g.os !== m.os) {
      out.push(
        refuse(
          "REPROTECT_GROUP_OS_MISMATCH",
          `replication group member ${g.item} runs ${g.os ?? "an unknown OS"}, this machine ${m.os ?? "an unknown OS"}; members of a group must share an OS`,
        ),
      );
    }
    if (g.masterTarget !== f.masterTarget.name) {
      out.push(
        refuse(
          "REPROTECT_GROUP_MASTER_TARGET_MISMATCH",
          `replication group member ${g.item} uses master target "${g.masterTarget}", not "${f.masterTarget.name}"; members of a group must use the same one`,
        ),
      );
    }
  }
  const own = new Set(f.masterTarget.diskUuids ?? []);
  const clash = m.diskUuids.filter((u) => own.has(u));
  if (clash.length > 0) {
    out.push(
      refuse(
        "REPROTECT_DISK_UUID_CLASH",
        `disk ${clash.join(", ")} of the machine has the same identity as a disk of master target "${f.masterTarget.name}" (cloned from one template?); give the master target new disk identities`,
      ),
    );
  }
  const ds = f.datastore;
  if (ds.site !== f.returnSite) {
    out.push(
      refuse(
        "REPROTECT_DATASTORE_WRONG_SITE",
        `datastore "${ds.name}" is at ${ds.site}, but replication goes back to ${f.returnSite}; choose one at ${f.returnSite}`,
      ),
    );
  } else if (!ds.reachable) {
    out.push(
      refuse(
        "REPROTECT_DATASTORE_UNREACHABLE",
        `datastore "${ds.name}" at ${ds.site} cannot be reached; check its path or bucket and the site link`,
      ),
    );
  } else if (ds.freeBytes !== null && f.location === "alternate" && ds.freeBytes < m.sizeBytes) {
    out.push(
      refuse(
        "REPROTECT_DATASTORE_TOO_SMALL",
        `datastore "${ds.name}" has ${formatBytes(ds.freeBytes)} free, the machine's disks need up to ${formatBytes(m.sizeBytes)}; free space or choose another datastore`,
      ),
    );
  }
  if (f.location === "original" && !f.disksAtReturnSite) {
    out.push(
      refuse(
        "REPROTECT_ORIGINAL_DISKS_GONE",
        `the machine's disks at ${f.returnSite} are gone; reprotect to an alternate location (--location alternate) to create new ones`,
      ),
    );
  }
  return out;
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

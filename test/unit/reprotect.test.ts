import assert from "node:assert/strict";
import { test } from "node:test";
import { checkReprotect, type ReprotectFacts } from "../../src/domain/reprotect.ts";

function good(): ReprotectFacts {
  return {
    item: "web-1",
    runningSite: "recovery",
    returnSite: "primary",
    location: "original",
    machine: {
      known: true,
      reportingFrom: "recovery",
      running: true,
      os: "linux",
      diskUuids: ["11111111-1111-4111-8111-111111111111"],
      sizeBytes: 8 * 2 ** 30,
    },
    processServer: { name: "ps-primary", site: "primary", reachable: true },
    masterTarget: {
      name: "mt-primary",
      site: "primary",
      reachable: true,
      os: "linux",
      diskUuids: [],
      drillArtefacts: [],
    },
    datastore: { name: "ds-primary", site: "primary", reachable: true, freeBytes: 100 * 2 ** 30 },
    disksAtReturnSite: true,
    group: [],
  };
}

test("a reprotect with everything in place passes", () => {
  assert.deepEqual(checkReprotect(good()), []);
});

test("every check the seed lists refuses with its own code, all at once", () => {
  const f = good();
  f.machine.running = false;
  f.machine.reportingFrom = "primary";
  f.processServer.reachable = false;
  f.masterTarget.drillArtefacts = ["drill-web-1"];
  f.masterTarget.diskUuids = ["11111111-1111-4111-8111-111111111111"];
  f.masterTarget.os = "windows";
  f.group = [{ item: "db-1", os: "windows", masterTarget: "mt-other" }];
  f.datastore.reachable = false;
  f.disksAtReturnSite = false;
  const codes = checkReprotect(f).map((r) => r.code);
  assert.deepEqual(codes, [
    "REPROTECT_MACHINE_NOT_RUNNING",
    "REPROTECT_MACHINE_NOT_AT_SITE",
    "REPROTECT_APPLIANCE_UNREACHABLE",
    "REPROTECT_DRILL_ARTEFACTS",
    "REPROTECT_MASTER_TARGET_OS_MISMATCH",
    "REPROTECT_GROUP_OS_MISMATCH",
    "REPROTECT_GROUP_MASTER_TARGET_MISMATCH",
    "REPROTECT_DISK_UUID_CLASH",
    "REPROTECT_DATASTORE_UNREACHABLE",
    "REPROTECT_ORIGINAL_DISKS_GONE",
  ]);
  const clash = checkReprotect(f).find((r) => r.code === "REPROTECT_DISK_UUID_CLASH");
  assert.match(clash?.message ?? "", /11111111-1111-4111-8111-111111111111.*mt-primary/);
});

test("unknown machine, wrong sites and a small datastore are named", () => {
  const f = good();
  f.machine.known = false;
  f.location = "alternate";
  f.masterTarget.site = "recovery";
  f.datastore.freeBytes = 2 ** 30;
  const codes = checkReprotect(f).map((r) => r.code);
  assert.deepEqual(codes, [
    "REPROTECT_MACHINE_UNKNOWN",
    "REPROTECT_APPLIANCE_WRONG_SITE",
    "REPROTECT_DATASTORE_TOO_SMALL",
  ]);
  const small = checkReprotect(f).at(-1);
  assert.match(small?.message ?? "", /1\.0 GiB free.*8\.0 GiB/);
});

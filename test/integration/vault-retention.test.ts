// Retention by the item's policy inside the vault: with a 3 s window and a point a second, old points
// are pruned (and their data collected) while replication goes on; what is kept is whole.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { cli, tempDir } from "../helpers/env.ts";
import {
  apiOf,
  defineMachine,
  type Json,
  killMachines,
  restorePoint,
  startVaultProcess,
  until,
  type VaultProcess,
} from "../helpers/vault.ts";

describe("retention by the item's policy", { timeout: 300_000 }, () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: VaultProcess;
  let api: ReturnType<typeof apiOf>;
  const data = () => path.join(tmp.dir, "data");

  before(async () => {
    tmp = tempDir("sb-retention-");
    vault = await startVaultProcess(data(), { env: { SWITCHBACK_RETENTION_EVERY_MS: "1000" } });
    api = apiOf(vault);
    const p = await api("POST", "/v1/policies", {
      name: "short",
      rpoThreshold: "1m",
      retention: "3s",
      appConsistentEvery: "0",
      crashConsistentEvery: "1s",
    });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    await defineMachine(api, { name: "web4", ackLog: path.join(tmp.dir, "acks.log"), osMiB: 4, dataMiB: 8 });
    assert.equal((await api("POST", "/v1/machines/web4/start", {})).status, 200);
    await until(
      "the agent registers",
      async () => (await api("GET", "/v1/machines/web4")).body.disks.length === 2,
    );
    assert.equal(
      (await api("POST", "/v1/items", { machine: "web4", to: "recovery", policy: "short" })).status,
      202,
    );
  });

  after(async () => {
    await vault?.stop();
    if (tmp !== undefined) killMachines(data());
    tmp?.cleanup();
  });

  it("keeps only the window's points and leaves the datastore whole", async (t) => {
    const seen = new Set<string>();
    const deadline = Date.now() + 12_000;
    let points: Json[] = [];
    while (Date.now() < deadline) {
      points = (await api("GET", "/v1/items/web4/points")).body as Json[];
      for (const p of points) seen.add(p.id);
      await new Promise((r) => setTimeout(r, 500));
    }
    t.diagnostic(`${seen.size} points taken, ${points.length} kept`);
    assert.ok(seen.size >= 8, `points were taken (${seen.size})`);
    assert.ok(points.length <= 6, `old points were pruned: ${points.length} kept`);
    assert.ok(points.length >= 1);
    const oldest = points[points.length - 1];
    assert.ok(oldest.ageSeconds < 8, `the oldest kept point is ${oldest.ageSeconds} s old`);
    const item = (await api("GET", "/v1/items/web4")).body;
    const check = await cli([
      "datastore",
      "check",
      "--datastore",
      path.join(data(), "sites", "recovery", "datastore"),
      "--read-data",
      "--json",
    ]);
    assert.equal(check.code, 0, check.stderr + check.stdout);
    await restorePoint({
      datastore: path.join(data(), "sites", "recovery", "datastore"),
      item: item.id,
      point: "latest", // retention never removes the newest point (older ones may go while this runs)
      disk: 1,
      out: path.join(tmp.dir, "newest.img"),
    });
  });
});

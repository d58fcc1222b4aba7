// A lost site raises an alert per machine in one round: 10,000 alerts are written and cleared in one
// round on SQLite and PostgreSQL (one statement binds at most 32,766 or 65,535 values).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AlertSubject } from "../../src/domain/alerts.ts";
import { applyAlertDecision } from "../../src/vault/alerts/store.ts";
import { openDatabase, type VaultDb } from "../../src/vault/db/database.ts";
import { migrateToLatest } from "../../src/vault/db/migrations.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";

const N = 10_000;

for (const d of databases) {
  describe(`10,000 alerts in one round on ${d.name}`, { skip: d.skip }, () => {
    let created: CreatedDatabase;
    let vdb: VaultDb;
    before(async () => {
      created = await d.create();
      vdb = await openDatabase(created.url);
      await migrateToLatest(vdb);
    });
    after(async () => {
      await vdb?.close();
      await created?.drop();
    });

    it("raises them all, then clears them all", async () => {
      const now = () => new Date();
      const raised = await applyAlertDecision(vdb, now, async () => ({
        raise: Array.from({ length: N }, (_, i) => ({
          kind: "agent-lost" as const,
          subject: `machine:m-${i}` as AlertSubject,
          severity: "critical" as const,
          message: `the agent of machine m-${i} is silent`,
        })),
        clear: [],
      }));
      assert.equal(raised.raised.length, N);
      const open = await vdb.db.selectFrom("alerts").select("id").where("cleared_at", "is", null).execute();
      assert.equal(open.length, N);
      const cleared = await applyAlertDecision(vdb, now, async (_trx, openAlerts) => ({
        raise: [],
        clear: openAlerts.map((a) => ({ id: a.id, kind: a.kind, subject: a.subject, reason: "back" })),
      }));
      assert.equal(cleared.cleared.length, N);
    });
  });
}

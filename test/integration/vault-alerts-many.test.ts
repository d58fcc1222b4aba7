// A lost site raises an alert per machine in one round: 10,000 alerts are written and cleared in one
// round on SQLite and PostgreSQL (one statement binds at most 32,766 or 65,535 values). Two vault
// processes' webhook senders post each event once.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import type { AlertSubject } from "../../src/domain/alerts.ts";
import { applyAlertDecision, setAlertWebhook } from "../../src/vault/alerts/store.ts";
import { AlertWebhook } from "../../src/vault/alerts/webhook.ts";
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

    it("two vault processes' webhook senders post each event once", async () => {
      await vdb.db.updateTable("alerts").set({ delivered_at: new Date().toISOString() }).execute();
      const got: string[] = [];
      const server = createServer((req, res) => {
        let body = "";
        req.on("data", (d: Buffer) => {
          body += d.toString();
        });
        req.on("end", () => {
          const e = JSON.parse(body) as { alert: { id: string }; event: string };
          got.push(`${e.alert.id} ${e.event}`);
          setTimeout(() => res.end("ok"), 20); // a receiver that takes a moment: both senders overlap
        });
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const { port } = server.address() as AddressInfo;
      await setAlertWebhook(vdb.db, `http://127.0.0.1:${port}/hook`);
      await applyAlertDecision(
        vdb,
        () => new Date(),
        async () => ({
          raise: Array.from({ length: 20 }, (_, i) => ({
            kind: "appliance-lost" as const,
            subject: `appliance:a-${i}` as AlertSubject,
            severity: "critical" as const,
            message: `appliance a-${i} is silent`,
          })),
          clear: [],
        }),
      );
      const log = pino({ level: "silent" });
      const senders = [1, 2].map(
        () => new AlertWebhook({ db: vdb.db, now: () => new Date(), log, pollMs: 50 }),
      );
      for (const w of senders) w.start();
      const deadline = Date.now() + 20_000;
      while (got.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 500)); // room for a duplicate to show up
      for (const w of senders) await w.stop();
      await new Promise<void>((r) => server.close(() => r()));
      assert.equal(got.length, 20, `each event once: ${got.length} posts`);
      assert.equal(new Set(got).size, 20);
    });
  });
}

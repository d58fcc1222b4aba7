// What the portal reads, over real HTTP from a vault on SQLite and PostgreSQL: the item list by pages
// (filters, sort, search, total, counts; 400s that name the field), each item's RPO history after
// points committed through the commit path (replication.pointCommitted) on the vault's clock, and the
// overview (sites with their appliances' liveness, counts, alerts, jobs). Items are seeded by
// bench/lib/seed-items.ts, which the portal benchmark uses too.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type SeededItem, seedItems } from "../../bench/lib/seed-items.ts";
import type { PointHeader } from "../../src/datastore/manifest.ts";
import { PHASES } from "../../src/domain/lifecycle.ts";
import { insertDatastoreRow } from "../../src/vault/inventory/datastores.ts";
import { HEALTH_SUMMARIES } from "../../src/vault/items-view.ts";
import { RPO_HISTORY_KEEP_HOURS, trimRpoHistory } from "../../src/vault/rpo-history.ts";
import { type RunningVault, startVault } from "../../src/vault/server.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { tempDir } from "../helpers/env.ts";
import { type Answer, apiOf } from "../helpers/vault.ts";

type Reply = Answer;

const N = 150;
const MIN = 60_000;
const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

for (const d of databases) {
  describe(`the portal's API on ${d.name}`, { skip: d.skip }, () => {
    let db: CreatedDatabase;
    let tmp: { dir: string; cleanup: () => void };
    let vault: RunningVault;
    let admin: string;
    let seeded: SeededItem[];
    let edgeId: string;
    // a minute and 10 s: buckets and minutes below are easy to name
    let clock = Date.parse("2026-11-26T03:00:10.000Z");
    const now = () => new Date(clock);

    const api = (method: string, url: string, body?: unknown): Promise<Reply> =>
      apiOf({ url: vault.url, token: admin })(method, url, body);
    const get = (url: string) => api("GET", url);

    function assertProblem(r: Reply, status: number, code: string, detail?: RegExp): void {
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.code, code);
      if (detail) assert.match(r.body.detail, detail);
    }

    /** Every item of a filter, page by page (small pages: the paging itself is under test). */
    async function allPages(query: string, limit = 7): Promise<{ names: string[]; totals: number[] }> {
      const names: string[] = [];
      const totals: number[] = [];
      for (let offset = 0; ; offset += limit) {
        const r = await get(`/v1/items-page?limit=${limit}&offset=${offset}${query ? `&${query}` : ""}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        totals.push(r.body.total);
        names.push(...r.body.items.map((i: { name: string }) => i.name));
        if (r.body.items.length < limit) return { names, totals };
      }
    }

    const namesOf = (items: readonly SeededItem[]) => items.map((i) => i.name).sort(byText);

    before(async () => {
      db = await d.create();
      tmp = tempDir("sb-portal-api-");
      vault = await startVault({ data: tmp.dir, db: db.url, port: 0, log: false, now });
      assert.ok(vault.adminToken);
      admin = vault.adminToken;
      // a third site with a remote appliance that has not been heard from in an hour, and a datastore
      const site = await api("POST", "/v1/sites", { name: "edge" });
      assert.equal(site.status, 201, JSON.stringify(site.body));
      edgeId = site.body.id;
      const app = await api("POST", "/v1/appliances", {
        name: "edge-appliance",
        site: "edge",
        roles: ["process-server", "master-target"],
        url: "http://127.0.0.1:9",
      });
      assert.equal(app.status, 201, JSON.stringify(app.body));
      await vault.vdb.db
        .updateTable("appliances")
        .set({ last_heartbeat_at: new Date(clock - 3_600_000).toISOString() })
        .where("id", "=", app.body.id)
        .execute();
      await insertDatastoreRow(
        vault.vdb.db,
        { name: "edge-local", siteId: edgeId, siteName: "edge", location: tmp.dir },
        now(),
      );
      seeded = await seedItems(vault.vdb, N, {
        sites: ["primary", "recovery", "edge"],
        seed: 11,
        nowMs: clock,
        mix: {
          initialReplication: 0.12,
          failedOver: 0.08,
          failoverCommitted: 0.04,
          enabling: 0.03,
          disabled: 0.03,
          rpoWarning: 0.1,
          rpoCritical: 0.1,
        },
      });
      for (const h of HEALTH_SUMMARIES) {
        assert.ok(
          seeded.some((s) => s.health === h),
          `the seed has an item of health ${h}`,
        );
      }
      // one machine named apart from its item: search finds items by their machine's name too
      await vault.vdb.db
        .updateTable("machines")
        .set({ name: "Billing-Ledger" })
        .where("id", "=", seeded[4]!.machineId)
        .execute();
    });

    after(async () => {
      await vault?.close();
      await db?.drop();
      tmp?.cleanup();
    });

    it("the three operations are in the OpenAPI document", async () => {
      const doc = (await get("/openapi.json")).body;
      const ids = Object.values(doc.paths as Record<string, Record<string, { operationId: string }>>)
        .flatMap((ops) => Object.values(ops))
        .map((op) => op.operationId);
      for (const id of ["listItemsPage", "getItemRpoHistory", "getOverview", "listItems"]) {
        assert.ok(ids.includes(id), `${id} is documented`);
      }
    });

    it("items-page: the first page by name, the total, and the counts over every item", async () => {
      const r = await get("/v1/items-page");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const sorted = namesOf(seeded);
      assert.equal(r.body.items.length, 100, "limit defaults to 100");
      assert.deepEqual(
        r.body.items.map((i: { name: string }) => i.name),
        sorted.slice(0, 100),
      );
      assert.equal(r.body.total, N);
      const c = r.body.counts;
      assert.equal(c.all, N);
      for (const h of HEALTH_SUMMARIES) {
        assert.equal(c.byHealth[h], seeded.filter((s) => s.health === h).length, `byHealth.${h}`);
      }
      for (const p of PHASES) {
        assert.equal(c.byPhase[p], seeded.filter((s) => s.phase === p).length, `byPhase.${p}`);
      }
      // each view says the same health as the counts and filters use
      const byName = new Map(seeded.map((s) => [s.name, s]));
      for (const v of r.body.items) {
        const s = byName.get(v.name)!;
        assert.equal(v.health.summary, s.health, v.name);
        assert.equal(v.phase, s.phase);
        assert.equal(v.pointCount, -1, "list views do not count points at the datastore");
        if (s.health === "ok" || s.health === "warning" || s.health === "critical") {
          assert.equal(v.health.rpoStatus, s.health === "ok" ? "healthy" : s.health);
        }
        if (s.health === "n/a") assert.equal(v.health.rpoStatus, "n/a");
        if (s.health === "initial") assert.ok(v.health.initialReplication.percent > 0);
      }
      // the list the CLI reads is unchanged: an array of every item
      const list = await get("/v1/items");
      assert.equal(list.status, 200);
      assert.ok(Array.isArray(list.body));
      assert.equal(list.body.length, N);
    });

    it("items-page: pages put together are the whole list, past the end is empty", async () => {
      const { names, totals } = await allPages("");
      assert.deepEqual(names, namesOf(seeded));
      assert.ok(totals.every((t) => t === N));
      const past = await get(`/v1/items-page?offset=${N + 5}`);
      assert.equal(past.status, 200);
      assert.deepEqual(past.body.items, []);
      assert.equal(past.body.total, N);
      const last = await get(`/v1/items-page?limit=500&offset=${N - 3}`);
      assert.equal(last.body.items.length, 3);
    });

    it("items-page: filters by phase, health, site and search, alone and together", async () => {
      const cases: [string, SeededItem[]][] = [
        ["phase=initial-replication", seeded.filter((s) => s.phase === "initial-replication")],
        ["phase=failed-over", seeded.filter((s) => s.phase === "failed-over")],
        ...HEALTH_SUMMARIES.map(
          (h) =>
            [`health=${encodeURIComponent(h)}`, seeded.filter((s) => s.health === h)] as [
              string,
              SeededItem[],
            ],
        ),
        ["site=edge", seeded.filter((s) => s.source === edgeId || s.target === edgeId)],
        [`site=${edgeId}`, seeded.filter((s) => s.source === edgeId || s.target === edgeId)],
        // names are web-001, db-002, …: case does not matter
        ["search=WEB-0", seeded.filter((s) => s.name.startsWith("web-0"))],
        ["search=billing", [seeded[4]!]],
        ["search=ledger", [seeded[4]!]],
        [
          "phase=protected&health=critical&site=edge",
          seeded.filter(
            (s) =>
              s.phase === "protected" &&
              s.health === "critical" &&
              (s.source === edgeId || s.target === edgeId),
          ),
        ],
        ["search=no-such-item", []],
      ];
      for (const [query, expected] of cases) {
        const { names, totals } = await allPages(query, 5);
        assert.deepEqual(names, namesOf(expected), query);
        assert.ok(
          totals.every((t) => t === expected.length),
          `${query}: total ${totals} ≠ ${expected.length}`,
        );
      }
      // the counts stay those of every item, whatever the filter
      const f = await get("/v1/items-page?health=critical&limit=1");
      assert.equal(f.body.counts.all, N);
      assert.equal(f.body.counts.byHealth.ok, seeded.filter((s) => s.health === "ok").length);
      const sites = new Set(seeded.map((s) => s.source));
      assert.equal(sites.size, 3, "the seed spreads the items over the three sites");
    });

    it("items-page: sorts by rpo (largest first, none last) and by phase (lifecycle order)", async () => {
      const rpo = (await get("/v1/items-page?sort=rpo&limit=500")).body.items as {
        name: string;
        health: { rpoSeconds: number | null };
      }[];
      assert.equal(rpo.length, N);
      const values = rpo.map((i) => i.health.rpoSeconds);
      const firstNull = values.indexOf(null);
      assert.ok(firstNull > 0);
      assert.ok(
        values.slice(firstNull).every((v) => v === null),
        "items without an RPO come last",
      );
      const numbers = values.slice(0, firstNull) as number[];
      for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i - 1]! >= numbers[i]!, `rpo order at ${i}`);
      assert.ok(numbers[0]! > 900, "the worst RPO (a critical item) comes first");

      const phase = (await get("/v1/items-page?sort=phase&limit=500")).body.items as {
        name: string;
        phase: string;
      }[];
      const order = phase.map((i) => PHASES.indexOf(i.phase as never));
      for (let i = 1; i < order.length; i++) {
        assert.ok(
          order[i - 1]! < order[i]! || (order[i - 1] === order[i] && phase[i - 1]!.name < phase[i]!.name),
          `phase order at ${i}`,
        );
      }
      const page = (await get("/v1/items-page?sort=rpo&health=warning&limit=2&offset=1")).body;
      const warnings = seeded.filter((s) => s.health === "warning").length;
      assert.equal(page.total, warnings);
      assert.equal(page.items.length, Math.min(2, warnings - 1));
    });

    it("items-page: bad input is a 400 naming the parameter; an unknown site is a 404", async () => {
      const bad: [string, RegExp][] = [
        ["limit=0", /"limit".*>= 1/],
        ["limit=501", /"limit".*<= 500/],
        ["limit=ten", /"limit"/],
        ["offset=-1", /"offset".*>= 0/],
        ["phase=running", /"phase".*allowed values.*protected/],
        ["health=bad", /"health".*allowed values.*critical/],
        ["sort=size", /"sort".*allowed values/],
        ["site=no%20spaces", /"site"/],
        [`search=${"x".repeat(65)}`, /"search"/],
        ["colour=red", /"colour" is not allowed/],
      ];
      for (const [query, detail] of bad) {
        assertProblem(await get(`/v1/items-page?${query}`), 400, "INVALID_REQUEST", detail);
      }
      assertProblem(await get("/v1/items-page?site=atlantis"), 404, "SITE_NOT_FOUND", /atlantis/);
    });

    it("overview: sites with their appliances as /v1/appliances judges them, counts, alerts, jobs", async () => {
      // jobs another vault process holds (leased far ahead, so this one's engine leaves them be)
      const lease = { lease_owner: "elsewhere:1", lease_until: "2999-01-01T00:00:00.000Z" };
      const job = (id: string, state: string, finished: boolean) => ({
        id,
        kind: "noop",
        item_id: null,
        plan_id: null,
        state,
        waiting_for: state === "waiting" ? "approval" : null,
        params: "{}",
        step: 0,
        progress: 0,
        error_code: null,
        error_message: null,
        ...(finished ? { lease_owner: null, lease_until: null } : lease),
        created_by: "test",
        created_at: now().toISOString(),
        started_at: now().toISOString(),
        finished_at: finished ? now().toISOString() : null,
      });
      await vault.vdb.db
        .insertInto("jobs")
        .values([
          job("job-ov-run1", "running", false),
          job("job-ov-run2", "running", false),
          job("job-ov-wait", "waiting", false),
          job("job-ov-queue", "queued", false),
          job("job-ov-done", "succeeded", true),
        ])
        .execute();
      const openAlerts = async () =>
        (await vault.vdb.db.selectFrom("alerts").select("id").where("cleared_at", "is", null).execute())
          .length;
      // the alert service works beside the request: read until the count held still around it
      let r: Reply | undefined;
      for (let attempt = 0; attempt < 10; attempt++) {
        const before = await openAlerts();
        r = await get("/v1/overview");
        if (before === (await openAlerts())) {
          assert.equal(r.body.alerts.open, before);
          break;
        }
        r = undefined;
      }
      assert.ok(r, "the open alerts held still once in ten reads");
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const o = r.body;
      assert.equal(o.at, now().toISOString());
      assert.deepEqual(
        o.sites.map((s: { name: string }) => s.name),
        ["edge", "primary", "recovery"],
      );
      const appliances = (await get("/v1/appliances")).body as {
        id: string;
        name: string;
        kind: string;
        lastHeartbeatAt: string | null;
        health: { liveness: string };
      }[];
      assert.equal(o.sites.flatMap((s: { appliances: unknown[] }) => s.appliances).length, appliances.length);
      for (const a of appliances) {
        const site = o.sites.find((s: { appliances: { id: string }[] }) =>
          s.appliances.some((x) => x.id === a.id),
        );
        const mine = site.appliances.find((x: { id: string }) => x.id === a.id);
        assert.equal(mine.liveness, a.health.liveness, `${a.name}: the rule of /v1/appliances`);
        assert.equal(mine.kind, a.kind);
        assert.equal(mine.lastHeartbeatAt, a.lastHeartbeatAt);
      }
      const edge = o.sites.find((s: { name: string }) => s.name === "edge");
      assert.equal(edge.liveness, "lost");
      assert.equal(edge.appliances[0].silentForSeconds, 3600);
      for (const name of ["primary", "recovery"]) {
        const s = o.sites.find((x: { name: string }) => x.name === name);
        assert.equal(s.liveness, "online", `${name}: its in-process appliance beats`);
      }
      const page = (await get("/v1/items-page?limit=1")).body;
      assert.deepEqual(o.items, page.counts);
      const sum = Object.values(o.alerts.bySeverity as Record<string, number>).reduce((a, b) => a + b, 0);
      assert.equal(sum, o.alerts.open);
      assert.deepEqual(o.jobs, { unfinished: 4, running: 2, waiting: 1, queued: 1 });
      await vault.vdb.db.deleteFrom("jobs").where("id", "like", "job-ov-%").execute();
    });

    it("rpo-history: commits draw the RPO by bucket, growing between them; null before the first point", async () => {
      const item = seeded.find((s) => s.phase === "initial-replication")!;
      const row = await vault.vdb.db
        .selectFrom("items")
        .select(["datastore_id"])
        .where("id", "=", item.id)
        .executeTakeFirstOrThrow();
      const replication = vault.deps.dr!.replication;
      let n = 0;
      /** a point taken `ageMs` before now, committed now, through the commit path */
      const commit = (ageMs: number) =>
        replication.pointCommitted(row.datastore_id, item.id, {
          id: `p-${++n}`,
          createdAt: new Date(clock - ageMs).toISOString(),
          consistency: "crash",
        } as unknown as PointHeader);
      const history = async (hours?: number) => {
        const r = await get(
          `/v1/items/${item.name}/rpo-history${hours === undefined ? "" : `?hours=${hours}`}`,
        );
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return r.body;
      };

      // before its first point: replicating, every bucket null
      const empty = await history(2);
      assert.equal(empty.replicating, true);
      assert.equal(empty.phase, "initial-replication");
      assert.equal(empty.bucketSeconds, 60);
      assert.equal(empty.buckets.length, 120);
      assert.ok(empty.buckets.every((b: { rpoSeconds: unknown }) => b.rpoSeconds === null));

      // the first point (taken at 03:00:00, committed at 03:00:10), then one every 5 minutes for an
      // hour, each committed 10 s after it was taken; then 40 minutes without any
      const start = clock;
      await commit(10_000);
      assert.equal((await get(`/v1/items/${item.id}`)).body.phase, "protected", "the first point protects");
      for (let k = 1; k <= 12; k++) {
        clock = start + k * 5 * MIN;
        await commit(10_000);
      }
      // a second commit in the same minute with a smaller peak keeps the minute's larger one
      clock += 20_000;
      await commit(5_000);
      const rows = await vault.vdb.db
        .selectFrom("rpo_history")
        .selectAll()
        .where("item_id", "=", item.id)
        .orderBy("minute")
        .execute();
      assert.equal(rows.length, 13, "one row per minute with commits");
      assert.equal(rows[0]!.minute, "2026-11-26T03:00:00.000Z");
      assert.equal(rows[0]!.peak_rpo_s, 10, "the first point: its age at commit");
      assert.equal(rows[1]!.minute, "2026-11-26T03:05:00.000Z");
      assert.equal(rows[1]!.peak_rpo_s, 310, "commit 03:05:10 − the point before, 03:00:00");
      const last = rows[12]!;
      assert.equal(last.minute, "2026-11-26T04:00:00.000Z");
      assert.equal(last.peak_rpo_s, 310, "the larger of the minute's two peaks (310 s, then 30 s)");
      assert.equal(last.last_point_at, "2026-11-26T04:00:25.000Z", "the newest point of the minute");

      clock = start + 100 * MIN; // 04:40:10
      const h = await history(2);
      assert.equal(h.thresholdSeconds, 15 * 60);
      assert.equal(h.bucketSeconds, 60);
      assert.equal(h.buckets.length, 120);
      assert.equal(h.to, "2026-11-26T04:40:10.000Z");
      assert.equal(h.from, "2026-11-26T02:41:00.000Z");
      const at = (t: string) => h.buckets.find((b: { at: string }) => b.at === t)?.rpoSeconds;
      assert.equal(at("2026-11-26T02:59:00.000Z"), null, "before the first point");
      assert.equal(at("2026-11-26T03:00:00.000Z"), 60, "the bucket's end minus the first point");
      assert.equal(at("2026-11-26T03:04:00.000Z"), 300, "growing: 03:05 − 03:00");
      assert.equal(at("2026-11-26T03:05:00.000Z"), 310, "the peak just before the commit at 03:05:10");
      assert.equal(at("2026-11-26T03:06:00.000Z"), 60 + 60, "03:07 − the point of 03:05:00");
      assert.equal(at("2026-11-26T04:01:00.000Z"), 95, "04:02 − the newest point, 04:00:25");
      assert.equal(at("2026-11-26T04:39:00.000Z"), 40 * 60 - 25, "no commits: 04:40 − 04:00:25");
      assert.equal(at("2026-11-26T04:40:00.000Z"), 40 * 60 - 25 + 10, "the last: now − 04:00:25");
      const view = (await get(`/v1/items/${item.id}`)).body;
      assert.equal(
        h.buckets.at(-1).rpoSeconds,
        view.health.rpoSeconds,
        "the last bucket is the item's RPO now",
      );

      // 24 h: 5-minute buckets; 72 h: 15-minute ones; never more than 300
      const day = await history();
      assert.equal(day.bucketSeconds, 300);
      assert.equal(day.buckets.length, 288);
      const b = (t: string) => day.buckets.find((x: { at: string }) => x.at === t)?.rpoSeconds;
      assert.equal(b("2026-11-26T03:00:00.000Z"), 300, "the worst of 03:00–03:05: growing to 03:05");
      assert.equal(b("2026-11-26T03:05:00.000Z"), 310, "the peak at 03:05:10");
      assert.equal(b("2026-11-26T02:55:00.000Z"), null);
      const three = await history(72);
      assert.equal(three.bucketSeconds, 900);
      assert.equal(three.buckets.length, 288);
      const five = await history(5);
      assert.equal(five.bucketSeconds, 60);
      assert.equal(five.buckets.length, 300);

      assertProblem(await get(`/v1/items/${item.id}/rpo-history?hours=0`), 400, "INVALID_REQUEST", /"hours"/);
      assertProblem(
        await get(`/v1/items/${item.id}/rpo-history?hours=73`),
        400,
        "INVALID_REQUEST",
        /"hours"/,
      );
      assertProblem(await get("/v1/items/nothing-here/rpo-history"), 404, "ITEM_NOT_FOUND");

      // an item that does not replicate: every bucket null
      const failed = seeded.find((s) => s.phase === "failed-over")!;
      const f = (await get(`/v1/items/${failed.name}/rpo-history`)).body;
      assert.equal(f.replicating, false);
      assert.equal(f.phase, "failed-over");
      assert.ok(f.buckets.every((x: { rpoSeconds: unknown }) => x.rpoSeconds === null));
    });

    it("rpo-history: an item with no commit in the kept hours counts from its newest point", async () => {
      const item = seeded.find((s) => s.health === "critical")!;
      const it = (await get(`/v1/items/${item.id}`)).body;
      const h = (await get(`/v1/items/${item.id}/rpo-history?hours=1`)).body;
      const lastPoint = Date.parse(it.latestPoint.createdAt);
      for (const b of h.buckets as { at: string; rpoSeconds: number | null }[]) {
        const end = Math.min(Date.parse(b.at) + MIN, clock);
        if (end <= lastPoint) assert.equal(b.rpoSeconds, null, b.at);
        else assert.equal(b.rpoSeconds, (end - lastPoint) / 1000, b.at);
      }
      assert.equal(h.buckets.at(-1).rpoSeconds, it.health.rpoSeconds);
    });

    it(`rpo-history: minutes older than ${RPO_HISTORY_KEEP_HOURS} h are trimmed as commits go on`, async () => {
      const item = seeded.find((s) => s.phase === "initial-replication")!; // protected since the test above
      const ds = await vault.vdb.db
        .selectFrom("items")
        .select("datastore_id")
        .where("id", "=", item.id)
        .executeTakeFirstOrThrow();
      const count = async () =>
        (
          await vault.vdb.db
            .selectFrom("rpo_history")
            .select("minute")
            .where("item_id", "=", item.id)
            .execute()
        ).length;
      assert.equal(await count(), 13);
      clock += (RPO_HISTORY_KEEP_HOURS + 1) * 3_600_000;
      await vault.deps.dr!.replication.pointCommitted(ds.datastore_id, item.id, {
        id: "p-late",
        createdAt: new Date(clock - 10_000).toISOString(),
        consistency: "app",
      } as unknown as PointHeader);
      // the trim runs beside the commit's record
      for (let i = 0; i < 100 && (await count()) !== 1; i++) await new Promise((r) => setTimeout(r, 20));
      const rows = await vault.vdb.db
        .selectFrom("rpo_history")
        .selectAll()
        .where("item_id", "=", item.id)
        .execute();
      assert.equal(rows.length, 1, "only the new minute is left");
      assert.ok(rows[0]!.peak_rpo_s > RPO_HISTORY_KEEP_HOURS * 3600, "its peak: the long silence before it");
      const h = (await get(`/v1/items/${item.id}/rpo-history?hours=48`)).body;
      const known = h.buckets.filter((b: { rpoSeconds: unknown }) => b.rpoSeconds !== null);
      assert.equal(known.length, 1, "nothing is known of the hours before the history kept");

      // a backlog goes a few rows at a time, oldest minutes first, a minute always whole
      const old = (hoursAgo: number) =>
        new Date(clock - hoursAgo * 3_600_000).toISOString().slice(0, 17) + "00.000Z";
      const row = (id: string, minute: string) => ({
        item_id: id,
        minute,
        peak_rpo_s: 1,
        last_point_at: minute,
      });
      await vault.vdb.db
        .insertInto("rpo_history")
        .values([
          row("gone-1", old(30)),
          row("gone-2", old(30)),
          ...["a", "b", "c", "d", "e"].map((x) => row(`gone-${x}`, old(29))),
        ])
        .execute();
      const gone = async () =>
        (
          await vault.vdb.db
            .selectFrom("rpo_history")
            .select("item_id")
            .where("item_id", "like", "gone-%")
            .execute()
        ).length;
      assert.equal(await trimRpoHistory(vault.vdb.db, now(), 3), 2, "the minutes before the third row");
      assert.equal(await gone(), 5);
      assert.equal(await trimRpoHistory(vault.vdb.db, now(), 3), 5, "one minute of more rows than the limit");
      assert.equal(await gone(), 0);
      assert.equal(await trimRpoHistory(vault.vdb.db, now(), 3), 0);
      assert.equal(await count(), 1, "the kept minute stays");
    });
  });
}

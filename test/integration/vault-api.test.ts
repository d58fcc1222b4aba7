// The vault's HTTP API over real HTTP (a vault listening on port 0) on SQLite and PostgreSQL:
// authentication of every documented route, the OpenAPI document, bootstrap, each inventory area,
// 400s that name the field and change nothing, agents (register, heartbeat, what their tokens may do),
// and health figures driven by the vault's injected clock.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { bootstrap } from "../../src/vault/bootstrap.ts";
import { openDatabase } from "../../src/vault/db/database.ts";
import { migrateToLatest } from "../../src/vault/db/migrations.ts";
import type { VaultDatabase } from "../../src/vault/db/schema.ts";
import { ROUTES } from "../../src/vault/http/app.ts";
import { problemStatus } from "../../src/vault/http/problems.ts";
import { route } from "../../src/vault/http/route.ts";
import { ensureReversePolicy } from "../../src/vault/inventory/policies.ts";
import { tokenDigest } from "../../src/vault/inventory/tokens.ts";
import { type RunningVault, startVault } from "../../src/vault/server.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { tempDir } from "../helpers/env.ts";

interface Reply {
  status: number;
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: responses are checked field by field
  body: any;
}

/** A route that fails the way a bug would: its message must not reach the client. */
function faultyRoutes(app: FastifyInstance): void {
  route(app, {
    method: "GET",
    url: "/v1/test/boom",
    operationId: "testBoom",
    tags: ["test"],
    summary: "fails unexpectedly",
    response: Type.Object({}),
    handler: async () => {
      throw new Error("secret detail at /etc/switchback/key");
    },
  });
}

const TABLES: (keyof VaultDatabase)[] = [
  "sites",
  "appliances",
  "datastores",
  "policies",
  "machines",
  "tokens",
];

const MY_OPERATIONS = [
  "getOpenApi",
  "listSites",
  "getSite",
  "createSite",
  "listAppliances",
  "getAppliance",
  "createAppliance",
  "heartbeatAppliance",
  "listDatastores",
  "getDatastore",
  "createDatastore",
  "listPolicies",
  "getPolicy",
  "createPolicy",
  "updatePolicy",
  "listMachines",
  "getMachine",
  "createMachine",
  "createEnrolToken",
  "registerAgent",
  "agentHeartbeat",
];

describe("problem statuses", () => {
  it("map codes to statuses by the table and the rules", () => {
    const cases: [string, number][] = [
      ["INVALID_REQUEST", 400],
      ["POINT_REQUEST_INVALID", 400],
      ["UNAUTHENTICATED", 401],
      ["FORBIDDEN", 403],
      ["SITE_NOT_FOUND", 404],
      ["POINT_NOT_FOUND", 404],
      ["SITE_EXISTS", 409],
      ["ITEM_BUSY", 409],
      ["OPERATION_NOT_ALLOWED", 409],
      ["REPROTECT_APPLIANCE_UNREACHABLE", 409],
      ["FAILOVER_PLANNED_POINT", 409],
      ["POINT_NO_APP_CONSISTENT", 409],
      ["POLICY_UPDATE_REFUSED", 409],
      ["GENERATION_FENCED", 409],
      ["DB_UNREACHABLE", 503],
      ["DB_CORRUPT_ROW", 500],
      ["INTERNAL", 500],
    ];
    for (const [code, status] of cases) assert.equal(problemStatus(code), status, code);
  });
});

for (const d of databases) {
  describe(`vault API on ${d.name}`, { skip: d.skip }, () => {
    let db: CreatedDatabase;
    let tmp: { dir: string; cleanup: () => void };
    let vault: RunningVault;
    let admin: string;
    let clock = Date.parse("2026-11-26T03:00:00.000Z");
    const now = () => new Date(clock);

    const start = () =>
      startVault({ data: tmp.dir, db: db.url, port: 0, log: false, now, routes: [...ROUTES, faultyRoutes] });

    async function api(
      method: string,
      url: string,
      o: { body?: unknown; token?: string | null; raw?: string } = {},
    ): Promise<Reply> {
      const headers: Record<string, string> = {};
      const token = o.token === undefined ? admin : o.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let body: string | undefined;
      if (o.raw !== undefined || o.body !== undefined) {
        headers["content-type"] = "application/json";
        body = o.raw ?? JSON.stringify(o.body);
      }
      const r = await fetch(vault.url + url, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await r.text();
      return {
        status: r.status,
        type: r.headers.get("content-type") ?? "",
        body: text === "" ? null : JSON.parse(text),
      };
    }

    async function counts(): Promise<Record<string, number>> {
      const out: Record<string, number> = {};
      for (const t of TABLES) {
        const r = await vault.vdb.db
          .selectFrom(t)
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .executeTakeFirstOrThrow();
        out[t] = Number(r.n);
      }
      return out;
    }

    function assertProblem(r: Reply, status: number, code: string, detail?: RegExp): void {
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.match(r.type, /^application\/problem\+json/);
      assert.equal(r.body.code, code);
      assert.equal(r.body.status, status);
      assert.equal(r.body.type, `urn:switchback:problem:${code}`);
      assert.equal(typeof r.body.title, "string");
      assert.equal(typeof r.body.instance, "string");
      if (detail) assert.match(r.body.detail, detail);
    }

    before(async () => {
      db = await d.create();
      tmp = tempDir("sb-vault-api-");
      vault = await start();
      assert.ok(vault.adminToken, "first start returns the admin token");
      admin = vault.adminToken;
    });

    after(async () => {
      await vault?.close();
      await db?.drop();
      tmp?.cleanup();
    });

    it("bootstrap creates the sites, appliances, datastores, default policy and one admin token", async () => {
      const sites = (await api("GET", "/v1/sites")).body;
      assert.deepEqual(
        sites.map((s: { name: string }) => s.name),
        ["primary", "recovery"],
      );
      const appliances = (await api("GET", "/v1/appliances")).body;
      assert.equal(appliances.length, 2);
      for (const a of appliances) {
        assert.deepEqual(a.roles, ["process-server", "master-target"]);
        assert.equal(a.kind, "in-process");
        assert.equal(a.health.liveness, "online", "the in-process appliances heartbeat while the vault runs");
      }
      assert.deepEqual(appliances.map((a: { site: string }) => a.site).sort(), ["primary", "recovery"]);
      const datastores = (await api("GET", "/v1/datastores")).body;
      assert.equal(datastores.length, 2);
      for (const ds of datastores) {
        assert.equal(ds.location, path.join(tmp.dir, "sites", ds.site, "datastore"));
        assert.ok(existsSync(path.join(ds.location, "config.json")), "the datastore folder is initialised");
        assert.ok(ds.capacityBytes > 0 && ds.usedBytes > 0 && ds.usedBytes <= ds.capacityBytes);
        assert.equal(ds.health.reachable, true);
      }
      const policy = (await api("GET", "/v1/policies/default")).body;
      assert.deepEqual(
        [
          policy.rpoThresholdSeconds,
          policy.retentionSeconds,
          policy.appConsistentEverySeconds,
          policy.crashConsistentEverySeconds,
        ],
        [15 * 60, 72 * 3600, 4 * 3600, 5 * 60],
      );
      // the vault also makes an enrol token for the machines it boots; one admin token
      const tokens = await vault.vdb.db
        .selectFrom("tokens")
        .selectAll()
        .where("role", "=", "admin")
        .execute();
      assert.equal(tokens.length, 1);
      assert.equal(tokens[0]!.role, "admin");
      assert.equal(tokens[0]!.sha256, tokenDigest(admin));
      assert.ok(!JSON.stringify(tokens).includes(admin), "the token itself is not stored");
      assert.equal(Buffer.from(admin, "base64url").length, 32);
    });

    it("bootstrap is idempotent: a restart creates nothing and prints no token", async () => {
      const before = await counts();
      await vault.close();
      vault = await start();
      assert.equal(vault.adminToken, null);
      assert.deepEqual(await counts(), before);
      assert.equal((await api("GET", "/v1/sites")).status, 200, "the first token still works");
    });

    it("two vault processes bootstrapping one new database at once: exactly one does it", async () => {
      const fresh = await d.create();
      const [a, b] = [await openDatabase(fresh.url), await openDatabase(fresh.url)];
      try {
        await migrateToLatest(a);
        const data = path.join(tmp.dir, "race");
        const r = await Promise.all([bootstrap(a, { data, now: now() }), bootstrap(b, { data, now: now() })]);
        assert.deepEqual(r.map((x) => x.bootstrapped).sort(), [false, true]);
        assert.equal(r.filter((x) => x.adminToken !== null).length, 1);
        assert.equal((await a.db.selectFrom("sites").selectAll().execute()).length, 2);
        assert.equal((await a.db.selectFrom("tokens").selectAll().execute()).length, 1);
      } finally {
        await a.close();
        await b.close();
        await fresh.drop();
      }
    });

    it("the OpenAPI document is 3.1 and documents every route with id, tags, summary and responses", async () => {
      const r = await api("GET", "/openapi.json");
      assert.equal(r.status, 200);
      const doc = r.body;
      assert.equal(doc.openapi, "3.1.0");
      assert.deepEqual(doc.components.securitySchemes.bearer, { type: "http", scheme: "bearer" });
      const ids: string[] = [];
      for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, Reply["body"]>>)) {
        for (const [method, op] of Object.entries(ops)) {
          const where = `${method.toUpperCase()} ${p}`;
          assert.equal(typeof op.operationId, "string", where);
          assert.ok(op.tags?.length > 0, `${where} has tags`);
          assert.ok(op.summary, `${where} has a summary`);
          const ok = Object.keys(op.responses).filter((s) => s.startsWith("2"));
          assert.equal(ok.length, 1, `${where} has one success response`);
          const content = op.responses[ok[0]!].content;
          assert.ok(
            (content["application/json"] ?? content["text/event-stream"]).schema,
            `${where} success schema`,
          );
          for (const s of ["400", "401", "403", "500"])
            assert.ok(op.responses[s].content["application/problem+json"].schema, `${where} documents ${s}`);
          ids.push(op.operationId);
        }
      }
      assert.equal(new Set(ids).size, ids.length, "operationIds are unique");
      for (const id of [...MY_OPERATIONS, "testBoom"]) assert.ok(ids.includes(id), `${id} is documented`);
    });

    it("every documented route refuses a missing or unknown token with 401", async () => {
      const doc = (await api("GET", "/openapi.json")).body;
      let checked = 0;
      for (const [p, ops] of Object.entries(doc.paths as Record<string, object>)) {
        const url = p.replace(/\{[^}]+\}/g, "primary");
        for (const method of Object.keys(ops)) {
          for (const token of [null, "not-a-token", `${admin}x`]) {
            const r = await api(method.toUpperCase(), url, {
              token,
              ...(method === "get" ? {} : { body: {} }),
            });
            assertProblem(r, 401, "UNAUTHENTICATED", /bearer token/);
            checked++;
          }
        }
      }
      assert.ok(checked >= MY_OPERATIONS.length * 3);
      assertProblem(await api("GET", "/v1/nowhere", { token: null }), 401, "UNAUTHENTICATED");
      assertProblem(await api("GET", "/v1/nowhere"), 404, "ROUTE_NOT_FOUND", /GET \/v1\/nowhere/);
    });

    it("an unexpected error is a 500 INTERNAL that leaks nothing", async () => {
      const r = await api("GET", "/v1/test/boom");
      assertProblem(r, 500, "INTERNAL", /GET \/v1\/test\/boom/);
      assert.doesNotMatch(JSON.stringify(r.body), /secret|etc\/switchback|at .*\.ts/);
    });

    it("sites: create, list, show by name or id; duplicates and unknown names are named refusals", async () => {
      const c = await api("POST", "/v1/sites", { body: { name: "branch-1", subnet: "10.30.0.0/24" } });
      assert.equal(c.status, 201);
      assert.match(c.body.id, /^site-[0-9a-z]{12}$/);
      assert.equal(c.body.subnet, "10.30.0.0/24");
      assert.deepEqual((await api("GET", `/v1/sites/${c.body.id}`)).body, c.body);
      assert.deepEqual((await api("GET", "/v1/sites/branch-1")).body, c.body);
      assert.ok((await api("GET", "/v1/sites")).body.some((s: { id: string }) => s.id === c.body.id));
      assertProblem(
        await api("POST", "/v1/sites", { body: { name: "branch-1" } }),
        409,
        "SITE_EXISTS",
        /branch-1/,
      );
      assertProblem(await api("GET", "/v1/sites/atlantis"), 404, "SITE_NOT_FOUND", /"atlantis".*sites list/);
    });

    it("appliances: register a remote one, filter by site, heartbeat makes it online", async () => {
      const c = await api("POST", "/v1/appliances", {
        body: {
          name: "ps-branch",
          site: "branch-1",
          roles: ["process-server"],
          url: "http://10.30.0.5:8471",
        },
      });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      assert.equal(c.body.kind, "remote");
      assert.equal(c.body.health.liveness, "unknown");
      const list = (await api("GET", "/v1/appliances?site=branch-1")).body;
      assert.deepEqual(
        list.map((a: { name: string }) => a.name),
        ["ps-branch"],
      );
      const hb = await api("POST", "/v1/appliances/ps-branch/heartbeat", {
        body: { url: "http://10.30.0.5:9000" },
      });
      assert.equal(hb.status, 200);
      assert.equal(hb.body.health.liveness, "online");
      assert.equal(hb.body.url, "http://10.30.0.5:9000");
      clock += 46_000; // more than 3 heartbeats of 15 s
      assert.equal((await api("GET", "/v1/appliances/ps-branch")).body.health.liveness, "lost");
      assertProblem(
        await api("POST", "/v1/appliances", {
          body: { name: "ps-branch", site: "primary", roles: ["master-target"], url: "http://x:1" },
        }),
        409,
        "APPLIANCE_EXISTS",
      );
      assertProblem(
        await api("POST", "/v1/appliances", {
          body: { name: "ps-2", site: "nowhere", roles: ["master-target"], url: "http://x:1" },
        }),
        404,
        "SITE_NOT_FOUND",
      );
      assertProblem(await api("GET", "/v1/appliances?site=nowhere"), 404, "SITE_NOT_FOUND");
    });

    it("datastores: create initialises the folder and reads its capacity; refusals change nothing", async () => {
      const dir = path.join(tmp.dir, "extra-ds");
      const c = await api("POST", "/v1/datastores", {
        body: { name: "branch-ds", site: "branch-1", path: dir },
      });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      assert.match(c.body.id, /^ds-/);
      assert.equal(c.body.location, dir);
      assert.ok(existsSync(path.join(dir, "config.json")));
      assert.ok(c.body.capacityBytes > 0);
      assert.equal((await api("GET", "/v1/datastores/branch-ds")).body.id, c.body.id);
      assert.deepEqual(
        (await api("GET", "/v1/datastores?site=branch-1")).body.map((x: { name: string }) => x.name),
        ["branch-ds"],
      );
      const before = await counts();
      assertProblem(
        await api("POST", "/v1/datastores", {
          body: { name: "branch-ds", site: "branch-1", path: `${dir}-2` },
        }),
        409,
        "DATASTORE_EXISTS",
      );
      assert.ok(!existsSync(`${dir}-2`), "a refused create leaves no folder behind");
      assertProblem(
        await api("POST", "/v1/datastores", { body: { name: "other", site: "branch-1", path: dir } }),
        409,
        "DATASTORE_LOCATION_IN_USE",
      );
      assertProblem(
        await api("POST", "/v1/datastores", { body: { name: "other", site: "branch-1", path: tmp.dir } }),
        409,
        "DATASTORE_PATH_NOT_EMPTY",
      );
      assert.deepEqual(await counts(), before);
    });

    it("policies: create, show, update with the rules checked on the result; the failback policy is derived", async () => {
      const body = {
        name: "gold",
        rpoThreshold: "5m",
        retention: "24h",
        appConsistentEvery: "none",
        crashConsistentEvery: "1m",
      };
      const c = await api("POST", "/v1/policies", { body });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      assert.equal(c.body.appConsistentEverySeconds, 0);
      assert.equal(c.body.retentionSeconds, 86_400);
      const u = await api("PATCH", "/v1/policies/gold", {
        body: { appConsistentEvery: "1h", retention: "48h" },
      });
      assert.equal(u.status, 200, JSON.stringify(u.body));
      assert.equal(u.body.appConsistentEverySeconds, 3600);
      assert.equal(u.body.retentionSeconds, 172_800);
      assert.equal(u.body.crashConsistentEverySeconds, 60, "unnamed fields keep their values");
      assertProblem(
        await api("PATCH", "/v1/policies/gold", { body: { crashConsistentEvery: "2h" } }),
        400,
        "INVALID_REQUEST",
        /field "appConsistentEvery" is 1h, more often than crash-consistent points \(every 2h\)/,
      );
      assert.equal((await api("GET", "/v1/policies/gold")).body.crashConsistentEverySeconds, 60);
      assertProblem(await api("POST", "/v1/policies", { body }), 409, "POLICY_EXISTS");

      const fb = await ensureReversePolicy(vault.vdb.db, "gold", now());
      assert.equal(fb.name, "gold-failback");
      assert.equal(fb.derivedFrom, c.body.id);
      assert.equal(fb.rpoThresholdSeconds, 300);
      assert.equal(fb.appConsistentEverySeconds, 3600);
      assert.equal((await ensureReversePolicy(vault.vdb.db, "gold", now())).id, fb.id, "idempotent");
      assert.equal(
        (await ensureReversePolicy(vault.vdb.db, fb.id, now())).id,
        c.body.id,
        "reverse of reverse",
      );
      assertProblem(
        await api("PATCH", "/v1/policies/gold-failback", { body: { retention: "96h" } }),
        409,
        "POLICY_UPDATE_REFUSED",
        /change "gold" instead/,
      );
    });

    it("machines: define one for the process provider, list and show it", async () => {
      const c = await api("POST", "/v1/machines", {
        body: {
          name: "web-1",
          site: "primary",
          bootCommand: "exec switchback agent",
          disks: [{ sizeBytes: 1 << 30 }, { sizeBytes: 1 << 29, sectorSize: 4096 }],
        },
      });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      assert.match(c.body.id, /^[0-9a-f-]{36}$/, "a uuid, as the identity label carries it");
      assert.deepEqual(
        c.body.disks.map((x: { role: string; sizeBytes: number; sectorSize: number }) => [
          x.role,
          x.sizeBytes,
          x.sectorSize,
        ]),
        [
          ["os", 1 << 30, 512],
          ["data", 1 << 29, 4096],
        ],
      );
      assert.equal(c.body.powerState, "stopped");
      assert.equal(c.body.health.liveness, "unknown");
      assert.equal((await api("GET", "/v1/machines/web-1")).body.id, c.body.id);
      assert.equal((await api("GET", `/v1/machines/${c.body.id}`)).body.name, "web-1");
      assert.ok(
        (await api("GET", "/v1/machines?site=primary")).body.some((m: { id: string }) => m.id === c.body.id),
      );
      assert.deepEqual((await api("GET", "/v1/machines?site=recovery")).body, []);
      assertProblem(
        await api("POST", "/v1/machines", {
          body: { name: "web-1", site: "primary", bootCommand: "x", disks: [{ sizeBytes: 4096 }] },
        }),
        409,
        "MACHINE_EXISTS",
      );
    });

    it("bad input on every POST and PATCH is a 400 naming the field, and changes nothing", async () => {
      const machine = {
        name: "m-bad",
        site: "primary",
        bootCommand: "true",
        disks: [{ sizeBytes: 1 << 20 }],
      };
      const policy = {
        name: "p-bad",
        rpoThreshold: "15m",
        retention: "72h",
        appConsistentEvery: "4h",
        crashConsistentEvery: "5m",
      };
      const hb = { machineId: "x", hostname: "h", os: "linux", cpus: 1, memoryBytes: 1, disks: [], nics: [] };
      const cases: [method: string, url: string, body: unknown, detail: RegExp][] = [
        ["POST", "/v1/sites", { name: "no spaces" }, /field "name" \(got "no spaces"\) must match pattern/],
        ["POST", "/v1/sites", { name: "s", subnet: "10.0.0.0/33" }, /field "subnet".*not an IPv4 subnet/],
        ["POST", "/v1/sites", { name: "s", subnet: "300.0.0.0/24" }, /field "subnet"/],
        ["POST", "/v1/sites", { name: "s", colour: "red" }, /field "colour" is not allowed/],
        ["POST", "/v1/sites", {}, /field "name" is required/],
        ["POST", "/v1/sites", [1], /request body must be a JSON object/],
        [
          "POST",
          "/v1/appliances",
          { name: "a", site: "primary", roles: ["chef"], url: "http://x:1" },
          /field "roles\[0\]"/,
        ],
        [
          "POST",
          "/v1/appliances",
          { name: "a", site: "primary", roles: [], url: "http://x:1" },
          /field "roles"/,
        ],
        [
          "POST",
          "/v1/appliances",
          { name: "a", site: "primary", roles: ["master-target"], url: "ftp://x" },
          /field "url"/,
        ],
        ["POST", "/v1/appliances/primary-appliance/heartbeat", { url: 5 }, /field "url"/],
        ["POST", "/v1/datastores", { name: "d", site: "primary", path: "relative/dir" }, /field "path"/],
        [
          "POST",
          "/v1/datastores",
          { name: "d", site: "primary", path: "/tmp/x", kind: "s3" },
          /field "kind"/,
        ],
        ["POST", "/v1/policies", { ...policy, rpoThreshold: "soon" }, /field "rpoThreshold" \(got "soon"\)/],
        [
          "POST",
          "/v1/policies",
          { ...policy, rpoThreshold: "0s" },
          /field "rpoThreshold" is 0s; it must be at least 1s/,
        ],
        ["POST", "/v1/policies", { ...policy, retention: "1m" }, /field "retention" is 1m, shorter than/],
        ["POST", "/v1/policies", { ...policy, appConsistentEvery: "1m" }, /field "appConsistentEvery" is 1m/],
        ["POST", "/v1/policies", { ...policy, crashConsistentEvery: "0" }, /field "crashConsistentEvery"/],
        ["PATCH", "/v1/policies/default", {}, /names no field to change/],
        ["PATCH", "/v1/policies/default", { name: "renamed" }, /field "name" is not allowed/],
        ["PATCH", "/v1/policies/default", { retention: "1m" }, /field "retention" is 1m/],
        [
          "POST",
          "/v1/machines",
          { ...machine, disks: [] },
          /field "disks" .*must NOT have fewer than 1 items/,
        ],
        [
          "POST",
          "/v1/machines",
          { ...machine, disks: [{ sizeBytes: 10 }] },
          /field "disks\[0\].sizeBytes" \(got 10\)/,
        ],
        [
          "POST",
          "/v1/machines",
          { ...machine, disks: [{ sizeBytes: 4096, sectorSize: 1000 }] },
          /disks\[0\].sectorSize/,
        ],
        ["POST", "/v1/machines", { ...machine, bootCommand: "" }, /field "bootCommand"/],
        ["POST", "/v1/enrol-tokens", { machine: "../etc" }, /field "machine"/],
        ["POST", "/v1/agent/register", { machineId: "m/1" }, /field "machineId"/],
        ["POST", "/v1/agent/register", { machineId: "m1", name: "a b" }, /field "name"/],
        ["POST", "/v1/agent/heartbeat", { ...hb, cpus: 0 }, /field "cpus" \(got 0\) must be >= 1/],
        [
          "POST",
          "/v1/agent/heartbeat",
          { ...hb, nics: [{ name: "eth0", mac: "nope", addresses: [] }] },
          /nics\[0\].mac/,
        ],
        [
          "POST",
          "/v1/agent/heartbeat",
          { ...hb, replication: { bytesDone: -1, bytesTotal: 1, bytesPerSecond: 0 } },
          /field "replication.bytesDone"/,
        ],
      ];
      const before = await counts();
      for (const [method, url, body, detail] of cases) {
        const r = await api(method, url, { body });
        assertProblem(r, 400, "INVALID_REQUEST", detail);
      }
      const bad = await api("POST", "/v1/sites", { raw: "{not json" });
      assertProblem(bad, 400, "INVALID_REQUEST", /not valid JSON/);
      const noBody = await api("POST", "/v1/sites");
      assertProblem(noBody, 400, "INVALID_REQUEST", /request body must be a JSON object/);
      assertProblem(
        await api("GET", "/v1/machines?site=a%20b"),
        400,
        "INVALID_REQUEST",
        /query parameter "site"/,
      );
      assert.deepEqual(await counts(), before);
    });

    it("agents: enrol, register, heartbeat properties; an agent token reaches only its own machine", async () => {
      const web1 = (await api("GET", "/v1/machines/web-1")).body;
      const enrol = await api("POST", "/v1/enrol-tokens", { body: { machine: "web-1" } });
      assert.equal(enrol.status, 201);
      assert.equal(enrol.body.machineId, web1.id);
      const reg = await api("POST", "/v1/agent/register", {
        token: enrol.body.token,
        body: { machineId: web1.id, site: "primary" },
      });
      assert.equal(reg.status, 200, JSON.stringify(reg.body));
      assert.equal(reg.body.machineId, web1.id);
      assert.equal(reg.body.heartbeatIntervalSeconds, 15);
      const agent: string = reg.body.agentToken;
      assertProblem(
        await api("POST", "/v1/agent/register", {
          token: enrol.body.token,
          body: { machineId: "someone-else" },
        }),
        403,
        "FORBIDDEN",
        /may not act for machine someone-else/,
      );

      const heartbeat = {
        machineId: web1.id,
        hostname: "web-1.example",
        os: "Debian GNU/Linux 12",
        cpus: 4,
        memoryBytes: 8 << 30,
        disks: [{ uuid: web1.disks[0].uuid, path: "/dev/vda", sizeBytes: 1 << 30, sectorSize: 512 }],
        nics: [{ name: "eth0", mac: "52:54:00:12:34:56", addresses: ["10.10.0.11/24"] }],
        replication: { bytesDone: 100 << 20, bytesTotal: 1 << 30, bytesPerSecond: 50 << 20 },
      };
      const hb1 = await api("POST", "/v1/agent/heartbeat", { token: agent, body: heartbeat });
      assert.equal(hb1.status, 200, JSON.stringify(hb1.body));
      assert.deepEqual(hb1.body, {
        assignment: { replicate: null, commands: [], accepted: [] },
        heartbeatIntervalSeconds: 15,
      });

      // what the agent reports beyond properties reaches the assignment seam, and its answer the agent
      const seen: unknown[] = [];
      const original = vault.deps.assignmentFor;
      vault.deps.assignmentFor = async (machineId, hb) => {
        seen.push({ machineId, results: hb?.results, lastPoint: hb?.lastPoint, instanceId: hb?.instanceId });
        return { replicate: null, commands: [{ id: "cmd-1", kind: "point-now" }] };
      };
      const lastPoint = {
        item: "web-1",
        pointId: "20261126T030000000Z-a1b2c3",
        mode: "incremental",
        consistency: "crash",
        bytesRead: 1,
        bytesSent: 1,
        changedBlocks: 1,
        durationMs: 5,
        maxFreezeMs: 0,
        warnings: [],
      };
      const results = [{ id: "cmd-0", ok: true, pointId: lastPoint.pointId }];
      const hbx = await api("POST", "/v1/agent/heartbeat", {
        token: agent,
        body: { ...heartbeat, instanceId: "inst-1", results, lastPoint },
      });
      vault.deps.assignmentFor = original;
      assert.equal(hbx.status, 200, JSON.stringify(hbx.body));
      assert.deepEqual(hbx.body.assignment, {
        replicate: null,
        commands: [{ id: "cmd-1", kind: "point-now" }],
      });
      assert.deepEqual(seen, [{ machineId: web1.id, results, lastPoint, instanceId: "inst-1" }]);
      clock += 10_000;
      const hb2 = await api("POST", "/v1/agent/heartbeat", {
        token: agent,
        body: { ...heartbeat, replication: { ...heartbeat.replication, bytesDone: 300 << 20 } },
      });
      assert.equal(hb2.status, 200);

      const m = (await api("GET", `/v1/machines/${web1.id}`)).body;
      assert.equal(m.hostname, "web-1.example");
      assert.equal(m.os, "Debian GNU/Linux 12");
      assert.equal(m.cpus, 4);
      assert.equal(m.memoryBytes, 8 << 30);
      assert.equal(m.powerState, "running");
      assert.deepEqual(m.nics, heartbeat.nics);
      assert.deepEqual(m.disks, [{ ...heartbeat.disks[0], role: "os" }]);
      assert.equal(m.health.liveness, "online");
      const rep = m.health.replication;
      assert.equal(rep.bytesDone, 300 << 20);
      assert.equal(rep.bytesPerSecond, (200 << 20) / 10, "throughput measured between the two heartbeats");
      assert.ok(Math.abs(rep.percent - (300 / 1024) * 100) < 1e-9);
      assert.ok(Math.abs(rep.etaSeconds - (1024 - 300) / 20) < 1e-9);
      clock += 46_000;
      assert.equal((await api("GET", `/v1/machines/${web1.id}`)).body.health.liveness, "lost");

      assertProblem(
        await api("POST", "/v1/agent/heartbeat", {
          token: agent,
          body: { ...heartbeat, machineId: "other" },
        }),
        403,
        "FORBIDDEN",
        /belongs to machine/,
      );
      for (const [method, url] of [
        ["GET", "/v1/sites"],
        ["GET", `/v1/machines/${web1.id}`],
        ["POST", "/v1/enrol-tokens"],
        ["GET", "/openapi.json"],
      ] as const) {
        const body = method === "GET" ? {} : { body: {} };
        assertProblem(await api(method, url, { token: agent, ...body }), 403, "FORBIDDEN", /role agent/);
        assertProblem(
          await api(method, url, { token: enrol.body.token, ...body }),
          403,
          "FORBIDDEN",
          /role enrol/,
        );
      }
      assertProblem(
        await api("POST", "/v1/agent/heartbeat", { token: enrol.body.token, body: heartbeat }),
        403,
        "FORBIDDEN",
      );
    });

    it("agents: the same machine registering from the other site is the same row with the new site", async () => {
      const web1 = (await api("GET", "/v1/machines/web-1")).body;
      const before = await counts();
      const enrol = (await api("POST", "/v1/enrol-tokens", { body: {} })).body;
      assert.equal(enrol.machineId, null);
      const reg = await api("POST", "/v1/agent/register", {
        token: enrol.token,
        body: { machineId: web1.id, site: "recovery" },
      });
      assert.equal(reg.status, 200, JSON.stringify(reg.body));
      const m = (await api("GET", "/v1/machines/web-1")).body;
      assert.equal(m.id, web1.id);
      assert.equal(m.site, "recovery");
      const after = await counts();
      assert.equal(after.machines, before.machines);
      assert.equal(after.tokens, before.tokens! + 2, "one enrol token, one agent token");

      // an unknown machine registering is created, under the name it gives
      const fresh = await api("POST", "/v1/agent/register", {
        token: enrol.token,
        body: { machineId: "0b7c6e1a-2f51-4f0e-9d1e-2b4f7a8c9d10", name: "db-1", site: "primary" },
      });
      assert.equal(fresh.status, 200);
      assert.equal((await api("GET", "/v1/machines/db-1")).body.site, "primary");
      assertProblem(
        await api("POST", "/v1/agent/register", {
          token: enrol.token,
          body: { machineId: "0c7c6e1a-2f51-4f0e-9d1e-2b4f7a8c9d10", name: "db-1" },
        }),
        409,
        "MACHINE_EXISTS",
      );
      assertProblem(
        await api("POST", "/v1/agent/register", {
          token: enrol.token,
          body: { machineId: web1.id, instanceId: "inst-unknown" },
        }),
        404,
        "INSTANCE_NOT_FOUND",
      );
      assertProblem(
        await api("POST", "/v1/agent/heartbeat", {
          body: {
            machineId: "never-registered",
            hostname: "h",
            os: "o",
            cpus: 1,
            memoryBytes: 1,
            disks: [],
            nics: [],
          },
        }),
        404,
        "MACHINE_NOT_FOUND",
      );
    });
  });
}

// Operators' named tokens over real HTTP, from a vault on SQLite and PostgreSQL: the viewer role
// (every documented route tried: the reads pass, settings, the machines' routes and every write are
// 403 with a sentence that names the token), GET /v1/whoami, GET/POST/DELETE /v1/tokens (a secret
// works once created and stops once revoked, names are unique, the last admin token is never
// revoked, also when two admins revoke each other at once), jobs recording the name of the token
// that started them, and `switchback tokens` as a real process.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { seedItems } from "../../bench/lib/seed-items.ts";
import { problemStatus } from "../../src/vault/http/problems.ts";
import { tokenDigest } from "../../src/vault/inventory/tokens.ts";
import { type RunningVault, startVault } from "../../src/vault/server.ts";
import { type CreatedDatabase, databases } from "../helpers/databases.ts";
import { cli, cliJson, tempDir } from "../helpers/env.ts";
import { type Answer, apiOf } from "../helpers/vault.ts";

type Reply = Answer;

/** The reads a viewer may not make, by operationId: a setting that can carry a secret, the appliances' own. */
const VIEWER_REFUSED_READS = new Set(["getAlertWebhook", "applianceDirectory"]);

describe("token problem statuses", () => {
  it("map the tokens' refusals to 409 and 404", () => {
    assert.equal(problemStatus("TOKEN_NAME_TAKEN"), 409);
    assert.equal(problemStatus("TOKEN_LAST_ADMIN"), 409);
    assert.equal(problemStatus("TOKEN_NOT_OPERATOR"), 409);
    assert.equal(problemStatus("TOKEN_NOT_FOUND"), 404);
  });
});

for (const d of databases) {
  describe(`operator tokens on ${d.name}`, { skip: d.skip }, () => {
    let db: CreatedDatabase;
    let tmp: { dir: string; cleanup: () => void };
    let vault: RunningVault;
    /** the first admin token, printed at the first start (revoked by a test below) */
    let admin: string;
    /** tokens made by the tests, by name */
    const secret: Record<string, string> = {};
    let itemName: string;

    const api = (method: string, url: string, token: string, body?: unknown): Promise<Reply> =>
      apiOf({ url: vault.url, token })(method, url, body);

    function assertProblem(r: Reply, status: number, code: string, detail?: RegExp): void {
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.code, code, JSON.stringify(r.body));
      if (detail) assert.match(r.body.detail, detail);
    }

    async function create(name: string, role: string, by = admin): Promise<Reply> {
      const r = await api("POST", "/v1/tokens", by, { name, role });
      if (r.status === 201) secret[name] = r.body.token;
      return r;
    }

    before(async () => {
      db = await d.create();
      tmp = tempDir("sb-vault-tokens-");
      vault = await startVault({ data: tmp.dir, db: db.url, port: 0, log: false });
      assert.ok(vault.adminToken);
      admin = vault.adminToken;
      const seeded = await seedItems(vault.vdb, 6, {
        seed: 3,
        mix: { initialReplication: 0, failedOver: 0 },
      });
      const protectedItem = seeded.find((s) => s.phase === "protected");
      assert.ok(protectedItem, "the seed has a protected item");
      itemName = protectedItem.name;
    });

    after(async () => {
      await vault?.close();
      await db?.drop();
      tmp?.cleanup();
    });

    it("admin creates a named viewer token: 201 with the secret once, only its digest stored", async () => {
      const r = await create("alice", "viewer");
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.deepEqual(Object.keys(r.body).sort(), ["id", "name", "role", "token"]);
      assert.match(r.body.id, /^tok-[0-9a-z]{12}$/);
      assert.equal(r.body.name, "alice");
      assert.equal(r.body.role, "viewer");
      assert.equal(Buffer.from(r.body.token, "base64url").length, 32);
      const row = await vault.vdb.db
        .selectFrom("tokens")
        .selectAll()
        .where("id", "=", r.body.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.sha256, tokenDigest(r.body.token));
      assert.equal(row.created_by, "admin");
      assert.ok(!JSON.stringify(row).includes(r.body.token), "the secret itself is not stored");
    });

    it("the new secret works at once: whoami names the token", async () => {
      const me = await api("GET", "/v1/whoami", secret.alice!);
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.deepEqual(Object.keys(me.body).sort(), ["createdAt", "lastUsedAt", "name", "role", "tokenId"]);
      assert.equal(me.body.name, "alice");
      assert.equal(me.body.role, "viewer");
      assert.match(me.body.tokenId, /^tok-/);
      assert.ok(Date.parse(me.body.createdAt) > 0);
      assert.ok(Date.parse(me.body.lastUsedAt) >= Date.parse(me.body.createdAt), "this use is recorded");
      const mine = await api("GET", "/v1/whoami", admin);
      assert.equal(mine.body.name, "admin");
      assert.equal(mine.body.role, "admin");
      // harmless for machines' tokens too: an enrol token learns only about itself
      const enrol = await api("POST", "/v1/enrol-tokens", admin, {});
      assert.equal(enrol.status, 201, JSON.stringify(enrol.body));
      const e = await api("GET", "/v1/whoami", enrol.body.token);
      assert.equal(e.status, 200, JSON.stringify(e.body));
      assert.equal(e.body.role, "enrol");
      assert.equal(e.body.tokenId, enrol.body.id);
    });

    it("a viewer reads items, pages, the overview, jobs, plans, inventory, alerts, metrics and the API document", async () => {
      const v = secret.alice!;
      for (const url of [
        "/v1/items",
        `/v1/items/${itemName}`,
        `/v1/items/${itemName}/points`,
        `/v1/items/${itemName}/rpo-history`,
        "/v1/items-page?limit=5",
        "/v1/overview",
        "/v1/jobs",
        "/v1/plans",
        "/v1/sites",
        "/v1/appliances",
        "/v1/datastores",
        "/v1/policies",
        "/v1/machines",
        "/v1/alerts",
        "/openapi.json",
        "/metrics",
      ]) {
        const r = await api("GET", url, v);
        assert.equal(r.status, 200, `${url}: ${JSON.stringify(r.body)}`);
      }
      const items = await api("GET", "/v1/items", v);
      assert.ok(items.body.some((i: { name: string }) => i.name === itemName));
      assert.equal((await api("GET", "/v1/items-page?limit=100", v)).body.total, 6);
    });

    it("a viewer is refused every write, the settings and the machines' routes: 403 naming the token", async () => {
      const v = secret.alice!;
      const refusedRead =
        /token "alice" has role viewer, which may not call GET .*viewer token may only read, and not this/;
      const refusedWrite =
        /token "alice" has role viewer, which may not call (POST|PATCH|PUT|DELETE) .*may only read/;
      assertProblem(await api("GET", "/v1/settings/alert-webhook", v), 403, "FORBIDDEN", refusedRead);
      assertProblem(
        await api("PUT", "/v1/settings/alert-webhook", v, { url: null }),
        403,
        "FORBIDDEN",
        refusedWrite,
      );
      assertProblem(
        await api("POST", `/v1/items/${itemName}/test-failover`, v, {}),
        403,
        "FORBIDDEN",
        refusedWrite,
      );
      assertProblem(
        await api("POST", `/v1/items/${itemName}/failover`, v, { shutdownSource: true }),
        403,
        "FORBIDDEN",
        refusedWrite,
      );
      assertProblem(
        await api("PATCH", `/v1/items/${itemName}`, v, { notes: "viewer was here" }),
        403,
        "FORBIDDEN",
        refusedWrite,
      );
      assertProblem(await api("POST", "/v1/tokens", v, { name: "mallory", role: "admin" }), 403, "FORBIDDEN");
      assertProblem(await api("DELETE", "/v1/tokens/admin", v), 403, "FORBIDDEN");
      assertProblem(await api("GET", "/v1/tokens", v), 403, "FORBIDDEN", refusedRead);
      assertProblem(await api("POST", "/v1/sites", v, { name: "viewer-site" }), 403, "FORBIDDEN");
      // nothing changed
      assert.equal((await api("GET", `/v1/items/${itemName}`, admin)).body.notes ?? null, null);
      assert.ok(
        !(await api("GET", "/v1/sites", admin)).body.some((s: { name: string }) => s.name === "viewer-site"),
      );
      assert.equal(
        (await vault.vdb.db.selectFrom("tokens").select("id").where("name", "=", "mallory").execute()).length,
        0,
      );
    });

    it("every documented route: a viewer passes the reads but settings and the machines', and no write", async () => {
      const v = secret.alice!;
      const doc = (await api("GET", "/openapi.json", admin)).body;
      let reads = 0;
      let writes = 0;
      for (const [p, ops] of Object.entries(
        doc.paths as Record<string, Record<string, { operationId: string }>>,
      )) {
        const url = p.replace(/\{[^}]+\}/g, "nothing-here");
        for (const [method, op] of Object.entries(ops)) {
          const m = method.toUpperCase();
          const r = await api(m, url, v, m === "GET" ? undefined : {});
          if (m === "GET" && !VIEWER_REFUSED_READS.has(op.operationId) && op.operationId !== "listTokens") {
            assert.notEqual(
              r.status,
              403,
              `viewer may ${m} ${p} (${op.operationId}): ${JSON.stringify(r.body)}`,
            );
            assert.notEqual(r.status, 401, `${m} ${p}`);
            reads++;
          } else {
            assertProblem(
              r,
              403,
              "FORBIDDEN",
              new RegExp(`token "alice" has role viewer, which may not call ${m} .*may only read`),
            );
            writes++;
          }
        }
      }
      assert.ok(reads >= 25, `${reads} reads tried`);
      assert.ok(writes >= 30, `${writes} refusals tried`);
    });

    it("a viewer follows a job's events (server-sent events)", async () => {
      // a plan whose drill waits at a manual action before touching any machine: a job that waits
      const plan = await api("POST", "/v1/plans", admin, {
        name: "tokens-drill",
        groups: [
          { items: [itemName], pre: [{ kind: "manual", message: "wait here", on: ["test-failover"] }] },
        ],
      });
      assert.equal(plan.status, 201, JSON.stringify(plan.body));
      await create("ops-bob", "admin");
      const started = await api("POST", "/v1/plans/tokens-drill/test-failover", secret["ops-bob"]!, {});
      assert.equal(started.status, 202, JSON.stringify(started.body));
      const jobId = started.body.job.id as string;
      // jobs record the name of the token that started them: a per-operator audit
      const job = await api("GET", `/v1/jobs/${jobId}`, secret.alice!);
      assert.equal(job.status, 200, JSON.stringify(job.body));
      assert.equal(job.body.createdBy, "ops-bob");
      const ac = new AbortController();
      const res = await fetch(`${vault.url}/v1/jobs/${jobId}/events`, {
        headers: { authorization: `Bearer ${secret.alice}` },
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
      const reader = res.body!.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      ac.abort();
      assert.match(first, /^data: \{"type":"job"/);
      assert.ok(first.includes(jobId));
      // the viewer may not cancel it; ops-bob's colleague the admin may, once it waits
      const deadline = Date.now() + 30_000;
      while ((await api("GET", `/v1/jobs/${jobId}`, secret.alice!)).body.state !== "waiting") {
        assert.ok(Date.now() < deadline, "the plan's job waits at its manual action");
        await new Promise((r) => setTimeout(r, 50));
      }
      assertProblem(await api("POST", `/v1/jobs/${jobId}/cancel`, secret.alice!, {}), 403, "FORBIDDEN");
      const cancelled = await api("POST", `/v1/jobs/${jobId}/cancel`, admin, {});
      assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    });

    it("lists the operator tokens with who made them and which is the caller's; never a secret or digest", async () => {
      const r = await api("GET", "/v1/tokens", admin);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(
        r.body.map((t: { name: string; role: string; createdBy: string | null; current: boolean }) => [
          t.name,
          t.role,
          t.createdBy,
          t.current,
        ]),
        [
          ["admin", "admin", null, true],
          ["alice", "viewer", "admin", false],
          ["ops-bob", "admin", "admin", false],
        ],
      );
      for (const t of r.body) {
        assert.deepEqual(Object.keys(t).sort(), [
          "createdAt",
          "createdBy",
          "current",
          "id",
          "lastUsedAt",
          "machineId",
          "name",
          "role",
        ]);
      }
      assert.ok(r.body.find((t: { name: string }) => t.name === "alice").lastUsedAt !== null);
      const text = JSON.stringify(r.body);
      for (const s of [admin, ...Object.values(secret)]) {
        assert.ok(!text.includes(s), "no secret");
        assert.ok(!text.includes(tokenDigest(s)), "no digest");
      }
      // as ops-bob, ops-bob is current
      const asBob = (await api("GET", "/v1/tokens", secret["ops-bob"]!)).body;
      assert.deepEqual(
        asBob.filter((t: { current: boolean }) => t.current).map((t: { name: string }) => t.name),
        ["ops-bob"],
      );
      // all=true: the machines' tokens too (the enrol tokens made above and at the vault's start)
      const all = (await api("GET", "/v1/tokens?all=true", admin)).body;
      assert.ok(all.length > r.body.length);
      assert.ok(all.some((t: { role: string }) => t.role === "enrol"));
      assert.ok(!JSON.stringify(all).includes(tokenDigest(admin)));
    });

    it("names are unique among operator tokens; names and roles are validated", async () => {
      assertProblem(await create("alice", "admin"), 409, "TOKEN_NAME_TAKEN", /"alice".*role viewer/);
      assertProblem(await create("admin", "viewer"), 409, "TOKEN_NAME_TAKEN", /"admin"/);
      assertProblem(await create("al ice", "viewer"), 400, "INVALID_REQUEST", /name/);
      assertProblem(await create("robot", "agent"), 400, "INVALID_REQUEST", /role/);
      assertProblem(
        await api("POST", "/v1/tokens", admin, { name: "x", role: "viewer", extra: 1 }),
        400,
        "INVALID_REQUEST",
      );
      // at once: one of two requests for a name gets it
      const race = await Promise.all([create("twin", "viewer"), create("twin", "admin")]);
      assert.deepEqual(race.map((r) => r.status).sort(), [201, 409]);
      assert.equal(
        (await vault.vdb.db.selectFrom("tokens").select("id").where("name", "=", "twin").execute()).length,
        1,
      );
      assert.equal((await api("DELETE", "/v1/tokens/twin", admin)).status, 200);
    });

    it("revoking (by name or id) stops the secret at once; the name is free again", async () => {
      const carol = await create("carol", "viewer");
      assert.equal((await api("GET", "/v1/items", secret.carol!)).status, 200);
      const r = await api("DELETE", "/v1/tokens/carol", admin);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { revoked: carol.body.id });
      assertProblem(await api("GET", "/v1/items", secret.carol!), 401, "UNAUTHENTICATED", /revoked/);
      assertProblem(await api("DELETE", "/v1/tokens/carol", admin), 404, "TOKEN_NOT_FOUND", /"carol"/);
      assertProblem(await api("DELETE", `/v1/tokens/${carol.body.id}`, admin), 404, "TOKEN_NOT_FOUND");
      const again = await create("carol", "viewer");
      assert.equal(again.status, 201, "the name is free once the token is revoked");
      assert.equal((await api("DELETE", `/v1/tokens/${again.body.id}`, admin)).status, 200, "by id");
      assertProblem(await api("GET", "/v1/whoami", secret.carol!), 401, "UNAUTHENTICATED");
      // machines' tokens are not revoked here
      const enrol = (await api("GET", "/v1/tokens?all=true", admin)).body.find(
        (t: { role: string }) => t.role === "enrol",
      );
      assertProblem(await api("DELETE", `/v1/tokens/${enrol.id}`, admin), 409, "TOKEN_NOT_OPERATOR", /enrol/);
    });

    it("the last admin token is never revoked; one's own is, while another admin remains", async () => {
      // two admins: admin and ops-bob. admin revokes itself
      const me = (await api("GET", "/v1/whoami", admin)).body.tokenId;
      const self = await api("DELETE", "/v1/tokens/admin", admin);
      assert.equal(self.status, 200, JSON.stringify(self.body));
      assert.deepEqual(self.body, { revoked: me });
      assertProblem(await api("GET", "/v1/whoami", admin), 401, "UNAUTHENTICATED");
      // ops-bob is the last admin: refused, by name and by id, whoever asks
      const bob = secret["ops-bob"]!;
      const bobId = (await api("GET", "/v1/whoami", bob)).body.tokenId;
      assertProblem(
        await api("DELETE", "/v1/tokens/ops-bob", bob),
        409,
        "TOKEN_LAST_ADMIN",
        /"ops-bob".*last admin token.*Create another admin token first/,
      );
      assertProblem(await api("DELETE", `/v1/tokens/${bobId}`, bob), 409, "TOKEN_LAST_ADMIN");
      assert.equal((await api("GET", "/v1/whoami", bob)).status, 200, "still works");
      // a viewer does not count: alice stays a viewer, bob the last admin
      assertProblem(await api("DELETE", "/v1/tokens/ops-bob", bob), 409, "TOKEN_LAST_ADMIN");

      // two admins revoking each other at once: one wins, one admin is left
      await create("dave", "admin", bob);
      const r = await Promise.all([
        api("DELETE", "/v1/tokens/dave", bob),
        api("DELETE", "/v1/tokens/ops-bob", secret.dave!),
      ]);
      const statuses = r.map((x) => x.status);
      assert.equal(statuses.filter((s) => s === 200).length, 1, JSON.stringify(r.map((x) => x.body)));
      for (const x of r)
        if (x.status !== 200) assert.ok([401, 409].includes(x.status), JSON.stringify(x.body));
      const admins = await vault.vdb.db
        .selectFrom("tokens")
        .select("name")
        .where("role", "=", "admin")
        .execute();
      assert.equal(admins.length, 1, "exactly one admin token is left");
      const survivor = admins[0]!.name;
      const token = survivor === "dave" ? secret.dave! : bob;
      assert.equal((await api("GET", "/v1/tokens", token)).status, 200, "the survivor still administers");
      admin = token;
    });

    it("switchback tokens: create, list, whoami, revoke, with --json and refusals", async () => {
      const env = { SWITCHBACK_VAULT: vault.url, SWITCHBACK_TOKEN: admin };
      const made = await cliJson<{ id: string; name: string; role: string; token: string }>(
        ["tokens", "create", "erin"],
        { env },
      );
      assert.equal(made.name, "erin");
      assert.equal(made.role, "viewer", "viewer unless --role says otherwise");
      const human = await cli(["tokens", "create", "frank", "--role", "admin"], { env });
      assert.equal(human.code, 0, human.stderr);
      const lines = human.stdout.trim().split("\n");
      assert.match(
        lines[0]!,
        /^created admin token frank \(tok-[0-9a-z]{12}\); its secret, shown this once:$/,
      );
      assert.match(lines[1]!, /^[A-Za-z0-9_-]{43}$/);
      const who = await cliJson<{ name: string; role: string }>(["tokens", "whoami"], {
        env: { ...env, SWITCHBACK_TOKEN: made.token },
      });
      assert.deepEqual([who.name, who.role], ["erin", "viewer"]);
      const list = await cli(["tokens", "list"], { env });
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^NAME\s+ROLE\s+ID\s+CREATED\s+BY\s+LAST USED$/m);
      assert.match(list.stdout, /^erin\s+viewer\s+tok-/m);
      assert.match(list.stdout, /^frank\s+admin\s+tok-/m);
      assert.match(list.stdout, /\(you\)\s+admin/);
      const listed = await cliJson<{ id: string; name: string }[]>(["tokens", "list"], { env });
      assert.ok(listed.some((t) => t.name === "erin"));
      // a viewer's CLI is refused with the vault's sentence
      const refused = await cli(["tokens", "create", "gina"], {
        env: { ...env, SWITCHBACK_TOKEN: made.token },
      });
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /token "erin" has role viewer.*\[FORBIDDEN\]\n$/);
      const dup = await cli(["tokens", "create", "erin"], { env });
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /\[TOKEN_NAME_TAKEN\]\n$/);
      const bad = await cli(["tokens", "create", "hal", "--role", "agent"], { env });
      assert.equal(bad.code, 2, "commander refuses a role that is not admin or viewer");
      const revoked = await cli(["tokens", "revoke", "erin"], { env });
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.equal(revoked.stdout, `revoked token erin (${made.id})\n`);
      const frank = listed.find((t) => t.name === "frank");
      assert.ok(frank);
      assert.deepEqual(await cliJson(["tokens", "revoke", "frank"], { env }), { revoked: frank.id });
      const gone = await cli(["tokens", "whoami"], { env: { ...env, SWITCHBACK_TOKEN: made.token } });
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /\[UNAUTHENTICATED\]\n$/);
    });
  });
}

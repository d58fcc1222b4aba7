// The vault serves the built portal at / without a token (the page signs in itself), with a strict
// Content-Security-Policy, hashed assets cached for good (gzip when asked), index.html never cached,
// and the API behind it still refusing requests without a token.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { type RunningVault, startVault } from "../../src/vault/server.ts";
import { tempDir } from "../helpers/env.ts";

describe("the portal served by the vault", () => {
  let tmp: { dir: string; cleanup: () => void };
  let vault: RunningVault;
  let bare: RunningVault;
  before(async () => {
    tmp = tempDir("sb-portal-serve-");
    const dist = path.join(tmp.dir, "dist");
    mkdirSync(path.join(dist, "assets"), { recursive: true });
    writeFileSync(
      path.join(dist, "index.html"),
      '<!doctype html><script type="module" src="/assets/app-ABC.js"></script>',
    );
    writeFileSync(path.join(dist, "assets/app-ABC.js"), "console.log('portal');\n".repeat(50));
    writeFileSync(path.join(dist, "assets/app-ABC.js.gz"), gzipSync("console.log('portal');\n".repeat(50)));
    // the real app with another portal folder: a test build, then none at all
    vault = await startVault({
      data: path.join(tmp.dir, "v1"),
      port: 0,
      services: [],
      log: false,
      portalDir: dist,
    });
    bare = await startVault({
      data: path.join(tmp.dir, "v2"),
      port: 0,
      services: [],
      log: false,
      portalDir: path.join(tmp.dir, "missing"),
    });
  });
  after(async () => {
    await vault?.close();
    await bare?.close();
    tmp?.cleanup();
  });

  it("serves index.html and assets without a token, with security headers", async () => {
    const index = await fetch(`${vault.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type") ?? "", /text\/html/);
    assert.equal(index.headers.get("cache-control"), "no-cache");
    const csp = index.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.match(await index.text(), /app-ABC\.js/);

    const js = await fetch(`${vault.url}/assets/app-ABC.js`, { headers: { "accept-encoding": "gzip" } });
    assert.equal(js.status, 200);
    assert.equal(js.headers.get("content-encoding"), "gzip");
    assert.match(js.headers.get("cache-control") ?? "", /immutable/);
    assert.match(js.headers.get("content-type") ?? "", /javascript/);
    assert.match(await js.text(), /console\.log\('portal'\)/);

    const missing = await fetch(`${vault.url}/assets/nope.js`);
    assert.equal(missing.status, 404);
    // assets are looked up by name in memory: no path leads out of the build
    for (const p of [
      "/assets/..%2F..%2Fpackage.json",
      "/assets/..%2Findex.html",
      "/assets/%2e%2e%2fvault.db",
    ]) {
      const r = await fetch(`${vault.url}${p}`);
      assert.equal(r.status, 404, p);
      assert.doesNotMatch(await r.text(), /"name"|<!doctype/i, p);
    }
  });

  it("keeps the API behind a token and out of the OpenAPI document", async () => {
    const sites = await fetch(`${vault.url}/v1/sites`);
    assert.equal(sites.status, 401);
    const doc = (await (
      await fetch(`${vault.url}/openapi.json`, {
        headers: { authorization: `Bearer ${vault.adminToken ?? ""}` },
      })
    ).json()) as { paths: Record<string, unknown> };
    assert.equal(doc.paths["/"], undefined);
    assert.equal(doc.paths["/assets/{file}"], undefined);
    assert.ok(doc.paths["/v1/items"] !== undefined);
  });

  it("refuses to build an app with a public route other than the portal's", async () => {
    const { buildVaultApp } = await import("../../src/vault/http/app.ts");
    const sneaky = async (app: import("fastify").FastifyInstance) => {
      app.get("/v1/secrets", { config: { public: true }, schema: { hide: true } }, async () => ({}));
    };
    await assert.rejects(
      buildVaultApp(vault.deps, { routes: [sneaky], portalDir: null }),
      /is marked public; only the portal's GET/,
    );
  });

  it("says how to build the portal when it is not built", async () => {
    const r = await fetch(`${bare.url}/`);
    assert.equal(r.status, 503);
    assert.match(await r.text(), /npm run build:portal/);
  });
});

describe("a job's live events and the vault's shutdown", () => {
  it("ends open event streams when the vault closes, instead of waiting for the watchers to leave", async () => {
    const tmp = tempDir("sb-portal-events-");
    const vault = await startVault({ data: tmp.dir, port: 0, log: false });
    try {
      // a job of a kind no engine runs stays queued: its stream would stay open for ever
      const now = new Date().toISOString();
      await vault.vdb.db
        .insertInto("jobs")
        .values({
          id: "job-0000watching",
          kind: "never-runs",
          item_id: null,
          plan_id: null,
          state: "queued",
          waiting_for: null,
          params: "{}",
          step: 0,
          progress: 0,
          error_code: null,
          error_message: null,
          lease_owner: null,
          lease_until: null,
          created_by: "test",
          created_at: now,
          started_at: null,
          finished_at: null,
        })
        .execute();
      const res = await fetch(`${vault.url}/v1/jobs/job-0000watching/events`, {
        headers: { authorization: `Bearer ${vault.adminToken ?? ""}` },
      });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      assert.match(first, /"type":"job"/);
      const t0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        vault.close(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("the vault did not close within 10 s of a watcher attached")),
            10_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      const closeMs = performance.now() - t0;
      assert.ok(closeMs < 5000, `the vault closed in ${Math.round(closeMs)} ms with a watcher attached`);
      // and the watcher sees its stream end
      for (;;) if ((await reader.read()).done) break;
    } finally {
      await vault.close();
      tmp.cleanup();
    }
  });
});

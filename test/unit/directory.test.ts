import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import type { FastifyRequest } from "fastify";
import {
  authenticateFrom,
  emptyDirectory,
  fromSiteDirectory,
  siteDirectory,
} from "../../src/appliance/directory.ts";

const sha = (t: string) => createHash("sha256").update(t).digest("hex");
const req = (token: string, generation: number) =>
  ({
    headers: { authorization: `Bearer ${token}`, "switchback-generation": String(generation) },
  }) as unknown as FastifyRequest;

// one machine, two copies: the old one at primary (back after a failover), the recovered one at
// recovery; the item now replicates recovery → primary at generation 2
const dir = emptyDirectory();
dir.tokens.set(sha("old-copy"), { machineId: "m1", site: "primary" });
dir.tokens.set(sha("new-copy"), { machineId: "m1", site: "recovery" });
dir.tokens.set(sha("legacy"), { machineId: "m1", site: null });
dir.grants.set(
  "m1",
  new Map([["item-1", { generation: 2, targetSite: "primary", sourceSite: "recovery", replicating: true }]]),
);

test("only the copy at the item's source, with the current generation, may write", () => {
  const auth = authenticateFrom(
    () => dir,
    () => "primary",
  );
  const fresh = auth(req("new-copy", 2));
  assert.deepEqual([...(fresh?.items ?? [])], ["item-1"]);
  const old = auth(req("old-copy", 2));
  assert.deepEqual([...(old?.items ?? [])], [], "the old copy is refused even with the current generation");
  assert.deepEqual([...(old?.fenced ?? [])], ["item-1"]);
  const stale = auth(req("new-copy", 1));
  assert.deepEqual([...(stale?.fenced ?? [])], ["item-1"], "an old generation is fenced");
  assert.equal(auth(req("nobody", 2)), null);
  assert.deepEqual(
    [...(auth(req("legacy", 2))?.items ?? [])],
    ["item-1"],
    "a token without a site: generation only",
  );
});

test("a site's part of the directory keeps the copies apart on a remote appliance", () => {
  const part = fromSiteDirectory(siteDirectory(dir, "primary", new Date()));
  const auth = authenticateFrom(
    () => part,
    () => "primary",
  );
  assert.deepEqual([...(auth(req("new-copy", 2))?.items ?? [])], ["item-1"]);
  assert.deepEqual([...(auth(req("old-copy", 2))?.items ?? [])], []);
});

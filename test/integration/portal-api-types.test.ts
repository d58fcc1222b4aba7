// The portal's API types (portal/src/api/schema.d.ts) are generated from the vault's OpenAPI document;
// this fails when the API changed and `npm run gen:api` was not run, so the portal cannot drift from it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { it } from "node:test";
import { openApiDigest, vaultOpenApi } from "../../scripts/openapi-doc.ts";
import { ROOT } from "../helpers/env.ts";

it("portal/src/api/schema.d.ts was generated from the current OpenAPI document", async () => {
  const first = readFileSync(path.join(ROOT, "portal/src/api/schema.d.ts"), "utf8").split("\n", 1)[0] ?? "";
  const recorded = /^\/\/ openapi-digest: ([0-9a-f]+)$/.exec(first)?.[1];
  assert.ok(
    recorded !== undefined,
    `schema.d.ts has no digest line (its first line is ${JSON.stringify(first)})`,
  );
  assert.equal(
    recorded,
    openApiDigest(await vaultOpenApi()),
    "the vault's API changed since the portal's types were generated: run `npm run gen:api` and commit portal/src/api/schema.d.ts",
  );
});

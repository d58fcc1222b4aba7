// The vault's OpenAPI document as a running vault serves it (built in-process on a throw-away data
// folder, no services), and a digest of it that does not depend on key order.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startVault } from "../src/vault/server.ts";

export async function vaultOpenApi(): Promise<Record<string, unknown>> {
  const data = mkdtempSync(path.join(os.tmpdir(), "sb-openapi-"));
  const vault = await startVault({ data, port: 0, services: [], log: false });
  try {
    const res = await fetch(`${vault.url}/openapi.json`, {
      headers: { authorization: `Bearer ${vault.adminToken}` },
    });
    if (!res.ok) throw new Error(`GET /openapi.json answered ${res.status}`);
    return (await res.json()) as Record<string, unknown>;
  } finally {
    await vault.close();
    rmSync(data, { recursive: true, force: true });
  }
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

export function openApiDigest(doc: unknown): string {
  return createHash("sha256")
    .update(JSON.stringify(canonical(doc)))
    .digest("hex")
    .slice(0, 16);
}

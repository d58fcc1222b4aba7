// Bearer tokens: the vault stores only each token's SHA-256 (hex), so a copy of the database does not
// let anyone in. Roles: "admin" (everything), "agent" (its own machine's /v1/agent/* routes; bound to
// machine_id), "enrol" (only registration: what a machine boots with, optionally bound to one machine).
import { createHash } from "node:crypto";
import type { Kysely } from "kysely";
import type { TokenRow, VaultDatabase } from "../db/schema.ts";
import { newId, newTokenSecret } from "../ids.ts";

export type TokenRole = "admin" | "agent" | "enrol" | "appliance";
const ROLES: readonly string[] = ["admin", "agent", "enrol", "appliance"];

export function tokenDigest(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export interface NewToken {
  id: string;
  /** the secret itself: give it to its holder now, it is not stored */
  token: string;
}

export async function createToken(
  db: Kysely<VaultDatabase>,
  o: {
    role: TokenRole;
    name: string;
    machineId?: string | null;
    /** agent tokens: the copy of the machine it is for */
    siteId?: string | null;
    instanceId?: string | null;
    now: Date;
  },
): Promise<NewToken> {
  const token = newTokenSecret();
  const id = newId("token");
  await db
    .insertInto("tokens")
    .values({
      id,
      name: o.name,
      role: o.role,
      sha256: tokenDigest(token),
      machine_id: o.machineId ?? null,
      created_at: o.now.toISOString(),
      last_used_at: null,
      site_id: o.siteId ?? null,
      instance_id: o.instanceId ?? null,
    })
    .execute();
  return { id, token };
}

export interface TokenHolder {
  tokenId: string;
  name: string;
  role: TokenRole;
  machineId: string | null;
  /** agent tokens: the site of the copy of the machine that registered with it */
  siteId: string | null;
}

/** Last use is recorded at most this often per token, so that reads do not each cost a write. */
const TOUCH_EVERY_MS = 60_000;

/** Who holds this token, or null when no token has this digest. */
export async function findTokenHolder(
  db: Kysely<VaultDatabase>,
  token: string,
  now: Date,
): Promise<TokenHolder | null> {
  const row: TokenRow | undefined = await db
    .selectFrom("tokens")
    .selectAll()
    .where("sha256", "=", tokenDigest(token))
    .executeTakeFirst();
  if (row === undefined || !ROLES.includes(row.role)) return null;
  if (row.last_used_at === null || now.getTime() - Date.parse(row.last_used_at) > TOUCH_EVERY_MS) {
    await db
      .updateTable("tokens")
      .set({ last_used_at: now.toISOString() })
      .where("id", "=", row.id)
      .execute();
  }
  return {
    tokenId: row.id,
    name: row.name,
    role: row.role as TokenRole,
    machineId: row.machine_id,
    siteId: row.site_id,
  };
}

export async function countTokens(db: Kysely<VaultDatabase>, role: TokenRole): Promise<number> {
  const r = await db
    .selectFrom("tokens")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("role", "=", role)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

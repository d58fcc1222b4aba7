// Bearer tokens: the vault stores only each token's SHA-256 (hex), so a copy of the database does not
// let anyone in. Roles: "admin" (everything), "viewer" (every read an operator makes, nothing else;
// src/vault/http/auth.ts decides), "agent" (its own machine's /v1/agent/* routes; bound to
// machine_id), "enrol" (only registration: what a machine boots with, optionally bound to one
// machine), "appliance" (what a `switchback appliance` process calls).
// Operator tokens (admin, viewer) are named, one name per live token, and revoked by deleting their
// row; the vault never lets the last admin token go, so nobody is ever locked out.
import { createHash } from "node:crypto";
import { type Kysely, sql } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import type { VaultDb } from "../db/database.ts";
import type { TokenRow, VaultDatabase } from "../db/schema.ts";
import { newId, newTokenSecret } from "../ids.ts";

export type TokenRole = "admin" | "viewer" | "agent" | "enrol" | "appliance";
const ROLES: readonly string[] = ["admin", "viewer", "agent", "enrol", "appliance"];
/** The roles of people's tokens (the others are machines'): listed, created and revoked by operators. */
export type OperatorRole = "admin" | "viewer";
export const OPERATOR_ROLES: readonly OperatorRole[] = ["admin", "viewer"];

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
    /** the name of the token that asked for it (null: the vault itself) */
    createdBy?: string | null;
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
      created_by: o.createdBy ?? null,
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

/** A token as operators see it: never its secret nor its digest. */
export interface TokenInfo {
  id: string;
  name: string;
  role: TokenRole;
  createdAt: string;
  lastUsedAt: string | null;
  /** the name of the token that created it; null for the vault's own (the first admin token, machines') */
  createdBy: string | null;
  /** agent and enrol tokens: the machine they are bound to */
  machineId: string | null;
}

function info(row: TokenRow): TokenInfo {
  return {
    id: row.id,
    name: row.name,
    role: row.role as TokenRole,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    createdBy: row.created_by,
    machineId: row.machine_id,
  };
}

/** One token by id (any role), or null. */
export async function getToken(db: Kysely<VaultDatabase>, id: string): Promise<TokenInfo | null> {
  const row = await db.selectFrom("tokens").selectAll().where("id", "=", id).executeTakeFirst();
  return row === undefined ? null : info(row);
}

/** The operator tokens (admin, viewer), or with `all` every token; oldest first. */
export async function listTokens(db: Kysely<VaultDatabase>, o: { all?: boolean } = {}): Promise<TokenInfo[]> {
  let q = db.selectFrom("tokens").selectAll();
  if (o.all !== true) q = q.where("role", "in", [...OPERATOR_ROLES]);
  const rows = await q.orderBy("created_at").orderBy("id").execute();
  return rows.filter((r) => ROLES.includes(r.role)).map(info);
}

/** A fixed key for PostgreSQL's transaction-level advisory lock over operator tokens ("SBTOKENS"). */
const TOKENS_LOCK = 0x5342_544f_4b45_4e53n;

/**
 * Runs `f` in a transaction that holds the operator tokens' lock (SQLite's write lock, taken by
 * BEGIN IMMEDIATE; PostgreSQL's advisory lock), so that two requests cannot both take one name, nor
 * each revoke one of the last two admin tokens.
 */
function withTokensLock<T>(vdb: VaultDb, f: (trx: Kysely<VaultDatabase>) => Promise<T>): Promise<T> {
  return vdb.db.transaction().execute(async (trx) => {
    if (vdb.dialect === "postgres") await sql`select pg_advisory_xact_lock(${TOKENS_LOCK})`.execute(trx);
    return f(trx);
  });
}

export interface NewOperatorToken extends NewToken {
  name: string;
  role: OperatorRole;
}

/** A named admin or viewer token; the name is unique among operator tokens (TOKEN_NAME_TAKEN). */
export async function createOperatorToken(
  vdb: VaultDb,
  o: { name: string; role: OperatorRole; createdBy: string | null; now: Date },
): Promise<NewOperatorToken> {
  return withTokensLock(vdb, async (trx) => {
    const same = await trx
      .selectFrom("tokens")
      .select(["id", "role"])
      .where("name", "=", o.name)
      .where("role", "in", [...OPERATOR_ROLES])
      .executeTakeFirst();
    if (same !== undefined) {
      throw new SwitchbackError(
        "TOKEN_NAME_TAKEN",
        `an operator token is already named "${o.name}" (${same.id}, role ${same.role}); choose another name, or revoke that token first`,
      );
    }
    const t = await createToken(trx, { role: o.role, name: o.name, createdBy: o.createdBy, now: o.now });
    return { ...t, name: o.name, role: o.role };
  });
}

/** The operator token an id or name refers to (TOKEN_NOT_FOUND, TOKEN_NOT_OPERATOR). */
async function findOperatorToken(db: Kysely<VaultDatabase>, ref: string): Promise<TokenRow> {
  const byId = await db.selectFrom("tokens").selectAll().where("id", "=", ref).executeTakeFirst();
  if (byId !== undefined) {
    if (!(OPERATOR_ROLES as readonly string[]).includes(byId.role)) {
      throw new SwitchbackError(
        "TOKEN_NOT_OPERATOR",
        `token ${byId.id} ("${byId.name}") has role ${byId.role}: only operator tokens (admin, viewer) are revoked here; a machine's tokens go with the machine`,
      );
    }
    return byId;
  }
  const byName = await db
    .selectFrom("tokens")
    .selectAll()
    .where("name", "=", ref)
    .where("role", "in", [...OPERATOR_ROLES])
    .executeTakeFirst();
  if (byName === undefined) {
    throw new SwitchbackError(
      "TOKEN_NOT_FOUND",
      `no operator token has the id or name "${ref}" (it may have been revoked already); GET /v1/tokens lists them`,
    );
  }
  return byName;
}

/**
 * Revokes an operator token by id or name: its row goes, so it stops working at once. The last
 * admin token is never revoked (TOKEN_LAST_ADMIN); revoking one's own is allowed while another
 * admin token remains.
 */
export async function revokeOperatorToken(vdb: VaultDb, ref: string): Promise<TokenInfo> {
  return withTokensLock(vdb, async (trx) => {
    const row = await findOperatorToken(trx, ref);
    if (row.role === "admin") {
      const admins = await trx
        .selectFrom("tokens")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("role", "=", "admin")
        .executeTakeFirstOrThrow();
      if (Number(admins.n) <= 1) {
        throw new SwitchbackError(
          "TOKEN_LAST_ADMIN",
          `token "${row.name}" (${row.id}) is the vault's last admin token; revoking it would lock every operator out. Create another admin token first (POST /v1/tokens, 'switchback tokens create NAME --role admin')`,
        );
      }
    }
    await trx.deleteFrom("tokens").where("id", "=", row.id).execute();
    return info(row);
  });
}

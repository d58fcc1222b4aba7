// Identifiers of the vault's records: a kind prefix and 12 random base32 characters (60 bits), e.g.
// "site-7k3q9m2x4d1c". Short enough to read out and type, random so that two vault processes on one
// PostgreSQL never collide in practice (birthday bound: ~1e9 ids of one kind for a 1 % chance).
// Machines are the exception: their id comes from the identity label on their own OS disk.
import { randomBytes } from "node:crypto";

export const ID_PREFIX = {
  site: "site",
  appliance: "app",
  datastore: "ds",
  policy: "pol",
  machine: "mach",
  token: "tok",
  item: "item",
  plan: "plan",
} as const;
export type IdKind = keyof typeof ID_PREFIX;

// Crockford's base32 alphabet in lower case: no i, l, o, u to misread.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export function newId(kind: IdKind, random: Uint8Array = randomBytes(8)): string {
  // 8 random bytes, 5 bits per character, the first 60 bits used
  let bits = 0n;
  for (const b of random.subarray(0, 8)) bits = (bits << 8n) | BigInt(b);
  let s = "";
  for (let i = 0; i < 12; i++) s += ALPHABET[Number((bits >> BigInt(59 - i * 5)) & 31n)];
  return `${ID_PREFIX[kind]}-${s}`;
}

/** A fresh secret for a bearer token: 32 random bytes, base64url. */
export function newTokenSecret(): string {
  return randomBytes(32).toString("base64url");
}

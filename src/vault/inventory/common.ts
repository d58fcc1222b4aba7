// Shared by the inventory modules: names, lookups by id or name, and turning a unique-constraint
// violation into the named refusal (SITE_EXISTS, …) whichever database raised it.
import type { Kysely, Selectable } from "kysely";
import { SwitchbackError } from "../../domain/errors.ts";
import { isUniqueViolation } from "../db/migrations.ts";
import type { VaultDatabase } from "../db/schema.ts";

export const NAME = /^[A-Za-z0-9._-]{1,64}$/;

export function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) {
    throw new SwitchbackError(
      "INVALID_REQUEST",
      `field "name": ${kind} name ${JSON.stringify(name)} is not valid; use 1 to 64 letters, digits, '.', '_' or '-'`,
    );
  }
}

/** Runs an insert; a unique violation becomes `<KIND>_EXISTS` naming the value. */
export async function insertUnique<T>(kind: string, name: string, insert: () => Promise<T>): Promise<T> {
  try {
    return await insert();
  } catch (err) {
    if (isUniqueViolation(err)) throw exists(kind, name);
    throw err;
  }
}

export function exists(kind: string, name: string): SwitchbackError {
  return new SwitchbackError(
    `${kind.toUpperCase().replaceAll(" ", "_")}_EXISTS`,
    `a ${kind} named ${JSON.stringify(name)} already exists; choose another name or use the existing one`,
  );
}

export function notFound(kind: string, ref: string, listCommand: string): SwitchbackError {
  return new SwitchbackError(
    `${kind.toUpperCase().replaceAll(" ", "_")}_NOT_FOUND`,
    `no ${kind} has the id or name ${JSON.stringify(ref)}; '${listCommand}' lists them`,
  );
}

export function iso(d: Date): string {
  return d.toISOString();
}

export function dateOrNull(s: string | null): Date | null {
  return s === null ? null : new Date(s);
}

/** The tables whose rows an operator names by id or by name. */
export type NamedTable = "sites" | "appliances" | "datastores" | "policies" | "machines";

/** The row with this id, or else this name (ids carry a kind prefix or are uuids, so names rarely shadow them). */
export async function findByRef<T extends NamedTable>(
  db: Kysely<VaultDatabase>,
  table: T,
  ref: string,
): Promise<Selectable<VaultDatabase[T]> | undefined> {
  // every NamedTable has text id and name columns; Kysely cannot see that through a generic table
  const q = db as unknown as Kysely<Record<NamedTable, { id: string; name: string }>>;
  const by = (column: "id" | "name") =>
    q
      .selectFrom(table as NamedTable)
      .selectAll()
      .where(column, "=", ref)
      .executeTakeFirst();
  return ((await by("id")) ?? (await by("name"))) as Selectable<VaultDatabase[T]> | undefined;
}

// JSON text columns are parsed at the boundary through a TypeBox schema: a row that does not match is
// reported as DB_CORRUPT_ROW naming the table, column and row, never passed on half-trusted.
import type { Static, TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { SwitchbackError } from "../../domain/errors.ts";

export interface RowRef {
  table: string;
  column: string;
  id: string | number;
}

/** Parses `text` (a JSON column's value) and checks it against `schema`. */
export function readJson<S extends TSchema>(schema: S, text: string, where: RowRef): Static<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(where, `is not JSON (${(err as Error).message})`, err);
  }
  if (!Value.Check(schema, value)) {
    const first = Value.Errors(schema, value).First();
    const at = first ? `${first.path || "/"}: ${first.message}` : "does not match its schema";
    throw corrupt(where, `does not match its schema at ${at}`);
  }
  return value as Static<S>;
}

/** Like readJson, for a nullable column: null stays null. */
export function readJsonOrNull<S extends TSchema>(
  schema: S,
  text: string | null,
  where: RowRef,
): Static<S> | null {
  return text === null ? null : readJson(schema, text, where);
}

/** Serialises a value for a JSON column; refuses values JSON cannot carry (BigInt, cycles). */
export function writeJson(value: unknown): string {
  const text = JSON.stringify(value ?? null) as string | undefined;
  if (text === undefined) throw new TypeError(`a ${typeof value} cannot be stored as JSON`);
  return text;
}

function corrupt(where: RowRef, problem: string, cause?: unknown): SwitchbackError {
  return new SwitchbackError(
    "DB_CORRUPT_ROW",
    `${where.table}.${where.column} of row ${JSON.stringify(where.id)} ${problem}; the row was written by another program or an incompatible version — restore it from a backup or fix it by hand`,
    { cause },
  );
}

/** The vault's clock as ISO 8601 UTC text, the form every time column holds. */
export function now(): string {
  return new Date().toISOString();
}

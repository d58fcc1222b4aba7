// Branded identifiers: a PointId cannot be passed where an ItemId is expected.
import { SwitchbackError } from "./errors.ts";

declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type ItemName = Brand<string, "ItemName">;
export type PointId = Brand<string, "PointId">;
export type DiskUuid = Brand<string, "DiskUuid">;

const ITEM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const POINT_ID = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function parseItemName(s: string): ItemName {
  if (!ITEM_NAME.test(s)) {
    throw new SwitchbackError(
      "INVALID_ITEM_NAME",
      `item name ${JSON.stringify(s)} is not valid; use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return s as ItemName;
}

export function isValidPointId(s: string): boolean {
  return POINT_ID.test(s);
}

export function parsePointId(s: string): PointId {
  if (!POINT_ID.test(s)) {
    throw new SwitchbackError(
      "INVALID_POINT_ID",
      `recovery point id ${JSON.stringify(s)} is not valid; ids look like 20261126T034512123Z-a1b2c3 (see 'points list')`,
    );
  }
  return s as PointId;
}

export function parseDiskUuid(s: string): DiskUuid {
  if (!UUID.test(s))
    throw new SwitchbackError("INVALID_DISK_UUID", `disk uuid ${JSON.stringify(s)} is not valid`);
  return s as DiskUuid;
}

/** Point ids sort by creation time: UTC timestamp to the millisecond, then random hex. */
export function newPointId(at: Date, random: Uint8Array): PointId {
  const iso = at.toISOString(); // 2026-11-26T03:45:12.123Z
  const stamp = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + "T" + iso.slice(11, 13);
  const rest = iso.slice(14, 16) + iso.slice(17, 19) + iso.slice(20, 23) + "Z";
  const hex = Buffer.from(random.subarray(0, 3)).toString("hex");
  return `${stamp}${rest}-${hex}` as PointId;
}

export function pointIdTime(id: PointId): Date {
  const s = id as string;
  return new Date(
    `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}.${s.slice(15, 18)}Z`,
  );
}

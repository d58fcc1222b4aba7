// A machine's Switchback identity, kept where the machine's data is so that a recovered copy is
// recognised as the same machine (docs/vault.md, "Identity travels on the OS disk").
//
// Unprivileged machines: block 0 (the first 4096 bytes) of the OS disk holds the label, byte for byte
// (integers little-endian):
//   0   8  magic "SWBKID01"
//   8   2  label version (1)
//   10  2  reserved, zero
//   12  4  length n of the JSON that follows
//   16  n  UTF-8 JSON { machineId, name, disks: [{ index, uuid }], createdAt }
//   16+n 32 BLAKE3-256 of bytes [0, 16+n)
//   the rest of the block is zero
// The label is replicated like any other block; workloads leave block 0 alone. A block 0 holding
// anything else (a partition table, a boot sector) is never overwritten.
// Privileged machines keep the same JSON in a file on their root file system, replaced atomically.
import { randomUUID } from "node:crypto";
import { closeSync, constants, fsyncSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { hashParts, isAllZero } from "../datastore/hash.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { writeFileAtomic } from "../platform/files.ts";

export const LABEL_BYTES = 4096;
const MAGIC = Buffer.from("SWBKID01", "latin1");
const LABEL_VERSION = 1;
const HEADER_BYTES = 16;
const CHECKSUM_BYTES = 32;
const MAX_JSON_BYTES = LABEL_BYTES - HEADER_BYTES - CHECKSUM_BYTES;

const UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

export const MachineIdentitySchema = Type.Object({
  machineId: Type.String({ pattern: UUID_PATTERN }),
  name: Type.String({ minLength: 1, maxLength: 256 }),
  disks: Type.Array(
    Type.Object({ index: Type.Integer({ minimum: 0 }), uuid: Type.String({ pattern: UUID_PATTERN }) }),
  ),
  createdAt: Type.String(),
});
export type MachineIdentity = Static<typeof MachineIdentitySchema>;

/** A fresh identity for a machine with `diskCount` disks: new machine id, one new UUID per disk. */
export function newIdentity(name: string, diskCount: number, now = new Date()): MachineIdentity {
  return {
    machineId: randomUUID(),
    name,
    disks: Array.from({ length: diskCount }, (_, index) => ({ index, uuid: randomUUID() })),
    createdAt: now.toISOString(),
  };
}

export function encodeIdentityLabel(identity: MachineIdentity): Buffer {
  checkIdentity(identity, "the identity to write");
  const json = Buffer.from(JSON.stringify(identity), "utf8");
  if (json.length > MAX_JSON_BYTES) {
    throw new SwitchbackError(
      "IDENTITY_TOO_LARGE",
      `the identity of machine ${identity.name} is ${json.length} bytes of JSON; a label holds at most ${MAX_JSON_BYTES} (shorten the name or use fewer disks)`,
    );
  }
  const block = Buffer.alloc(LABEL_BYTES);
  MAGIC.copy(block, 0);
  block.writeUInt16LE(LABEL_VERSION, 8);
  block.writeUInt32LE(json.length, 12);
  json.copy(block, HEADER_BYTES);
  const end = HEADER_BYTES + json.length;
  hashParts([block.subarray(0, end)]).copy(block, end);
  return block;
}

/**
 * Decodes block 0 of `disk`: null when it does not start with the magic (no label), the identity
 * when the label checks out. A label whose checksum or content is wrong is an error, not "no
 * label": treating it as blank would give the machine a new identity and split its history.
 */
export function decodeIdentityLabel(block: Buffer, disk: string): MachineIdentity | null {
  if (block.length < HEADER_BYTES || !block.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  const version = block.readUInt16LE(8);
  if (version !== LABEL_VERSION) {
    throw new SwitchbackError(
      "IDENTITY_LABEL_VERSION",
      `disk ${disk} has an identity label of version ${version}; this Switchback reads version ${LABEL_VERSION} (upgrade Switchback)`,
    );
  }
  const n = block.readUInt32LE(12);
  const end = HEADER_BYTES + n;
  if (n > MAX_JSON_BYTES || end + CHECKSUM_BYTES > block.length) {
    throw corrupt(disk, `its length field says ${n} bytes of JSON, more than a label holds`);
  }
  if (!hashParts([block.subarray(0, end)]).equals(block.subarray(end, end + CHECKSUM_BYTES))) {
    throw corrupt(disk, "its BLAKE3 checksum does not match");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(block.subarray(HEADER_BYTES, end).toString("utf8"));
  } catch (err) {
    throw corrupt(disk, `its JSON does not parse (${(err as Error).message})`);
  }
  if (!Value.Check(MachineIdentitySchema, raw)) {
    throw corrupt(disk, `its JSON does not match the schema (${firstError(raw)})`);
  }
  return raw;
}

/** The identity label on block 0 of `disk` (image file or block device), or null when there is none. */
export function readIdentityLabel(disk: string): MachineIdentity | null {
  return decodeIdentityLabel(readBlock0(disk), disk);
}

/**
 * Writes the label onto block 0 of `disk` and fsyncs it. Refuses when block 0 holds data that is not
 * a label (a partition table, a boot sector): the label would destroy it.
 */
export function writeIdentityLabel(disk: string, identity: MachineIdentity): void {
  const label = encodeIdentityLabel(identity);
  const current = readBlock0(disk);
  if (!current.subarray(0, MAGIC.length).equals(MAGIC) && !isAllZero(current)) {
    throw new SwitchbackError(
      "IDENTITY_BLOCK_IN_USE",
      `block 0 of disk ${disk} holds data that is not a Switchback identity label; keep the identity in a file (privileged machines) or give the machine an OS disk whose first 4 KiB are free`,
    );
  }
  const fd = openDisk(disk, constants.O_WRONLY);
  try {
    const n = writeSync(fd, label, 0, LABEL_BYTES, 0);
    if (n !== LABEL_BYTES) {
      throw new SwitchbackError(
        "IDENTITY_WRITE_SHORT",
        `writing the identity label to ${disk} wrote ${n} of ${LABEL_BYTES} bytes; check the disk`,
      );
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The machine's identity from the label on its OS disk (`disks[0]`), created and written there when
 * the disk has none. A label listing fewer disks than given gains a UUID for each new disk.
 */
export function ensureIdentity(
  disks: string[],
  name: string,
): { identity: MachineIdentity; created: boolean } {
  const os = disks[0];
  if (os === undefined) {
    throw new SwitchbackError("IDENTITY_NO_DISKS", `machine ${name} has no disks; give its OS disk first`);
  }
  const found = readIdentityLabel(os);
  if (found !== null) {
    if (found.disks.length >= disks.length) return { identity: found, created: false };
    const grown: MachineIdentity = {
      ...found,
      disks: [
        ...found.disks,
        ...Array.from({ length: disks.length - found.disks.length }, (_, i) => ({
          index: found.disks.length + i,
          uuid: randomUUID(),
        })),
      ],
    };
    writeIdentityLabel(os, grown);
    return { identity: grown, created: false };
  }
  const identity = newIdentity(name, disks.length);
  writeIdentityLabel(os, identity);
  return { identity, created: true };
}

/**
 * A privileged machine's identity from its file (on its root file system), created there when absent.
 * A file listing fewer disks than the machine has gains a UUID for each new disk.
 */
export function ensureIdentityFile(
  file: string,
  diskCount: number,
  name: string,
): { identity: MachineIdentity; created: boolean } {
  const found = readIdentityFile(file);
  if (found !== null) {
    if (found.disks.length >= diskCount) return { identity: found, created: false };
    const grown: MachineIdentity = {
      ...found,
      disks: [
        ...found.disks,
        ...Array.from({ length: diskCount - found.disks.length }, (_, i) => ({
          index: found.disks.length + i,
          uuid: randomUUID(),
        })),
      ],
    };
    writeIdentityFile(file, grown);
    return { identity: grown, created: false };
  }
  const identity = newIdentity(name, diskCount);
  writeIdentityFile(file, identity);
  return { identity, created: true };
}

/** The identity file of a privileged machine (`/etc/switchback/identity.json`), or null when absent. */
export function readIdentityFile(file: string): MachineIdentity | null {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SwitchbackError(
      "IDENTITY_FILE_CORRUPT",
      `identity file ${file} is not valid JSON (${(err as Error).message}); restore it from the machine's last recovery point`,
    );
  }
  if (!Value.Check(MachineIdentitySchema, raw)) {
    throw new SwitchbackError(
      "IDENTITY_FILE_CORRUPT",
      `identity file ${file} does not match the identity schema (${firstError(raw)}); restore it from the machine's last recovery point`,
    );
  }
  return raw;
}

/** Writes the identity file atomically: a temporary file, fsync, rename, fsync of the folder. */
export function writeIdentityFile(file: string, identity: MachineIdentity): void {
  checkIdentity(identity, `the identity to write to ${file}`);
  writeFileAtomic(file, `${JSON.stringify(identity, null, 2)}\n`, 0o644);
}

function readBlock0(disk: string): Buffer {
  const fd = openDisk(disk, constants.O_RDONLY);
  try {
    const block = Buffer.alloc(LABEL_BYTES);
    let got = 0;
    while (got < LABEL_BYTES) {
      const n = readSync(fd, block, got, LABEL_BYTES - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got < LABEL_BYTES) {
      throw new SwitchbackError(
        "IDENTITY_DISK_TOO_SMALL",
        `disk ${disk} is ${got} bytes; an identity label needs a disk of at least ${LABEL_BYTES}`,
      );
    }
    return block;
  } finally {
    closeSync(fd);
  }
}

function openDisk(disk: string, flags: number): number {
  try {
    return openSync(disk, flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new SwitchbackError("DISK_NOT_FOUND", `disk ${disk} does not exist`);
    if (code === "EACCES") {
      throw new SwitchbackError(
        "DISK_NOT_ACCESSIBLE",
        `disk ${disk} cannot be opened by this user for the identity label; check its permissions`,
      );
    }
    throw err;
  }
}

function checkIdentity(identity: MachineIdentity, what: string): void {
  if (!Value.Check(MachineIdentitySchema, identity)) {
    throw new SwitchbackError(
      "IDENTITY_INVALID",
      `${what} does not match the identity schema (${firstError(identity)})`,
    );
  }
}

function corrupt(disk: string, why: string): SwitchbackError {
  return new SwitchbackError(
    "IDENTITY_LABEL_CORRUPT",
    `the identity label on block 0 of disk ${disk} is damaged: ${why}; restore the disk from a recovery point, or clear block 0 to give the machine a new identity`,
  );
}

function firstError(v: unknown): string {
  const e = [...Value.Errors(MachineIdentitySchema, v)][0];
  return e === undefined ? "?" : `${e.path || "/"}: ${e.message}`;
}

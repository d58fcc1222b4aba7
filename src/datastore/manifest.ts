// Point manifests: one file per recovery point. A point is either a base (lists every non-zero block
// of each disk) or a delta over its parent point (lists only blocks that changed, ZERO_HASH for
// blocks that became zero), so the metadata a point writes grows with what changed, not with the disk.
//
//   magic "SBPOINT\1" | header length u32 | header JSON | per disk: (blockIndex u64, hash[32]) × n | BLAKE3[32]
import { SwitchbackError } from "../domain/errors.ts";
import type { DiskUuid, ItemName, PointId } from "../domain/ids.ts";
import { POINT_MAGIC } from "./format.ts";
import { HASH_BYTES, hashParts } from "./hash.ts";

export type Consistency = "crash" | "app";

export interface DiskHeader {
  uuid: DiskUuid;
  sizeBytes: number;
  sectorSize: number;
  blockSize: number;
  /** number of (blockIndex, hash) entries in this manifest for this disk */
  entries: number;
  /** where the disk was read from, for operators */
  source?: string;
}

export interface PointHeader {
  version: 1;
  item: ItemName;
  id: PointId;
  /** null for a base point */
  parent: PointId | null;
  createdAt: string;
  consistency: Consistency;
  warnings: string[];
  disks: DiskHeader[];
  /** figures about how the point was taken (bytes read, sent, freeze time…) */
  stats: Record<string, number>;
}

export const ENTRY = 8 + HASH_BYTES;

/** Sorted (blockIndex, hash) pairs for one disk. */
export interface DiskEntries {
  /** blockIndex as float64-safe integers */
  blocks: Float64Array;
  /** hashes, 32 bytes each, aligned with blocks */
  hashes: Buffer;
}

export interface PointManifest {
  header: PointHeader;
  disks: DiskEntries[];
}

export function encodeManifest(m: PointManifest): Buffer[] {
  const header: PointHeader = {
    ...m.header,
    disks: m.header.disks.map((d, i) => ({ ...d, entries: m.disks[i]!.blocks.length })),
  };
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length, 0);
  const parts: Buffer[] = [POINT_MAGIC, len, json];
  for (const d of m.disks) {
    const n = d.blocks.length;
    const body = Buffer.alloc(n * ENTRY);
    for (let i = 0; i < n; i++) {
      const b = d.blocks[i]!;
      if (i > 0 && b <= d.blocks[i - 1]!) throw new Error("manifest entries must be sorted and unique");
      body.writeBigUInt64LE(BigInt(b), i * ENTRY);
      d.hashes.copy(body, i * ENTRY + 8, i * HASH_BYTES, (i + 1) * HASH_BYTES);
    }
    parts.push(body);
  }
  parts.push(hashParts(parts));
  return parts;
}

export function decodeManifestHeader(name: string, buf: Buffer): { header: PointHeader; bodyAt: number } {
  if (buf.length < POINT_MAGIC.length + 4 + HASH_BYTES || !buf.subarray(0, 8).equals(POINT_MAGIC)) {
    throw new SwitchbackError("DATASTORE_CORRUPT", `manifest ${name}: not a point manifest (bad magic)`);
  }
  const len = buf.readUInt32LE(8);
  if (12 + len > buf.length)
    throw new SwitchbackError("DATASTORE_CORRUPT", `manifest ${name}: header is truncated`);
  let header: PointHeader;
  try {
    header = JSON.parse(buf.subarray(12, 12 + len).toString("utf8")) as PointHeader;
  } catch {
    throw new SwitchbackError("DATASTORE_CORRUPT", `manifest ${name}: header is not valid JSON`);
  }
  if (header.version !== 1 || !Array.isArray(header.disks)) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `manifest ${name}: unsupported manifest version ${header.version}`,
    );
  }
  return { header, bodyAt: 12 + len };
}

export function decodeManifest(name: string, buf: Buffer): PointManifest {
  const sum = hashParts([buf.subarray(0, buf.length - HASH_BYTES)]);
  if (!sum.equals(buf.subarray(buf.length - HASH_BYTES))) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `manifest ${name}: checksum mismatch (the file is damaged)`,
    );
  }
  const { header, bodyAt } = decodeManifestHeader(name, buf);
  let at = bodyAt;
  const disks: DiskEntries[] = [];
  for (const d of header.disks) {
    const n = d.entries;
    if (at + n * ENTRY > buf.length - HASH_BYTES) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `manifest ${name}: entries of disk ${d.uuid} are truncated`,
      );
    }
    const blocks = new Float64Array(n);
    const hashes = Buffer.allocUnsafe(n * HASH_BYTES);
    const total = Math.ceil(d.sizeBytes / d.blockSize);
    for (let i = 0; i < n; i++) {
      const b = Number(buf.readBigUInt64LE(at));
      if (b >= total || (i > 0 && b <= blocks[i - 1]!)) {
        throw new SwitchbackError(
          "DATASTORE_CORRUPT",
          `manifest ${name}: disk ${d.uuid} entry ${i} is out of order`,
        );
      }
      blocks[i] = b;
      buf.copy(hashes, i * HASH_BYTES, at + 8, at + ENTRY);
      at += ENTRY;
    }
    disks.push({ blocks, hashes });
  }
  if (at !== buf.length - HASH_BYTES) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `manifest ${name}: ${buf.length - HASH_BYTES - at} stray bytes`,
    );
  }
  return { header, disks };
}

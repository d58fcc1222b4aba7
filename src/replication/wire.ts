// The agent ↔ process server wire protocol (docs/transport.md): the JSON schemas of every route (one
// source of truth for the server's validation and the client's parsing) and the binary bodies: frames,
// the "missing" bitmap and a disk map. Binary integers are little-endian.
import { type Static, Type } from "@sinclair/typebox";
import { DIGEST_BYTES } from "../datastore/digests.ts";
import { COMPRESSION_NONE, COMPRESSION_ZSTD, FRAME_MAX_BLOCKS } from "../datastore/format.ts";
import { HASH_BYTES } from "../datastore/hash.ts";
import type { Frame } from "../datastore/pack.ts";
import { SwitchbackError } from "../domain/errors.ts";

export const WIRE_VERSION = 3;
export const PROBLEM_TYPE_PREFIX = "urn:switchback:problem:";
/** A frame on the wire holds at most this many blocks (8 scanner frames): 1 MiB raw. */
export const WIRE_FRAME_MAX_BLOCKS = FRAME_MAX_BLOCKS * 8;
/**
 * Body limit of every route. A point manifest bigger than this (a base manifest costs 40 bytes per
 * non-zero 4 KiB block, ~10 MiB per GiB of data) is staged in parts of at most this size.
 */
export const BODY_LIMIT_BYTES = 8 * 1024 * 1024;

export const routes = {
  status: "/v1/status",
  latest: (item: string) => `/v1/items/${item}/latest`,
  /** the block digests of a disk at a point: GET ?from=N&count=C */
  digests: (item: string, point: string, disk: number | string) =>
    `/v1/items/${item}/points/${point}/disks/${disk}/digests`,
  points: (item: string) => `/v1/items/${item}/points`,
  /** a part of a point's manifest, staged: PUT ?offset=N&size=S */
  manifestPart: (item: string, point: string) => `/v1/items/${item}/points/${point}/manifest`,
  /** commits a point from its staged manifest */
  commitStaged: (item: string, point: string) => `/v1/items/${item}/points/${point}/commit`,
  missing: "/v1/blocks/missing",
  frames: "/v1/frames",
};

// ---- JSON schemas ----

export const ItemNameSchema = Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$" });
export const PointIdSchema = Type.String({ pattern: "^\\d{8}T\\d{9}Z-[0-9a-f]{6}$" });

export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String(),
  instance: Type.Optional(Type.String()),
});
export type Problem = Static<typeof ProblemSchema>;

export const DiskHeaderSchema = Type.Object({
  uuid: Type.String(),
  sizeBytes: Type.Integer({ minimum: 0 }),
  sectorSize: Type.Integer({ minimum: 1 }),
  blockSize: Type.Integer({ minimum: 1 }),
  entries: Type.Integer({ minimum: 0 }),
  source: Type.Optional(Type.String()),
});

export const PointHeaderSchema = Type.Object({
  version: Type.Literal(1),
  item: ItemNameSchema,
  id: PointIdSchema,
  parent: Type.Union([PointIdSchema, Type.Null()]),
  createdAt: Type.String(),
  consistency: Type.Union([Type.Literal("crash"), Type.Literal("app")]),
  warnings: Type.Array(Type.String()),
  disks: Type.Array(DiskHeaderSchema),
  stats: Type.Record(Type.String(), Type.Number()),
});

export const ItemParamsSchema = Type.Object({ item: ItemNameSchema });
export const DiskParamsSchema = Type.Object({
  item: ItemNameSchema,
  point: PointIdSchema,
  disk: Type.Integer({ minimum: 0, maximum: 1023 }),
});
export const DigestsQuerySchema = Type.Object({
  from: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  count: Type.Integer({ minimum: 1, maximum: 1 << 20 }),
});

export const PointParamsSchema = Type.Object({ item: ItemNameSchema, point: PointIdSchema });

export const ManifestPartQuerySchema = Type.Object({
  /** where the part's bytes lie in the manifest */
  offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  /** the whole manifest's size: the same in every part of one upload */
  size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
});

export const ManifestPartResponseSchema = Type.Object({
  size: Type.Integer(),
  /** bytes of the manifest staged so far (each counted once) */
  received: Type.Integer(),
});
export type ManifestPartResponse = Static<typeof ManifestPartResponseSchema>;

export const StagedCommitRequestSchema = Type.Object({
  /** the manifest's size */
  size: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  /** its last 32 bytes in hex: the BLAKE3 of all before them */
  checksum: Type.String({ pattern: "^[0-9a-f]{64}$" }),
});
export type StagedCommitRequest = Static<typeof StagedCommitRequestSchema>;

export const LatestResponseSchema = Type.Object({ point: PointHeaderSchema });

export const FrameResponseSchema = Type.Object({
  /** frames in the body */
  frames: Type.Integer(),
  blocks: Type.Integer(),
  /** blocks these frames added to the datastore (the others were already there) */
  stored: Type.Integer(),
});
export type FrameResponse = Static<typeof FrameResponseSchema>;

export const CommitResponseSchema = Type.Object({
  pointId: PointIdSchema,
  /** true when this exact point was committed before (a retried request) */
  alreadyCommitted: Type.Boolean(),
});
export type CommitResponse = Static<typeof CommitResponseSchema>;

export const StatusSchema = Type.Object({
  version: Type.Literal(WIRE_VERSION),
  datastoreId: Type.String(),
  startedAt: Type.String(),
  pid: Type.Integer(),
  /** bytes of frame bodies received (accepted or not) */
  bytesReceived: Type.Integer(),
  /** frames requests (each of one or more frames) */
  frameBodies: Type.Integer(),
  framesReceived: Type.Integer(),
  framesRejected: Type.Integer(),
  blocksStored: Type.Integer(),
  blocksAlreadyStored: Type.Integer(),
  missingQueries: Type.Integer(),
  /** hashes asked about in those queries */
  hashesAsked: Type.Integer(),
  /** block digests sent to resyncs */
  digestsServed: Type.Integer(),
  pointsCommitted: Type.Integer(),
  pointsRejected: Type.Integer(),
  /** parts of manifests staged (PUT …/manifest), accepted or not */
  manifestPartsReceived: Type.Integer(),
  flushes: Type.Integer(),
  pointsPruned: Type.Integer(),
  bytesFreed: Type.Integer(),
});
export type Status = Static<typeof StatusSchema>;

// ---- frame bodies ----
//   frame: magic "SBFRAME\1" | blocks u16 | compression u8 | reserved u8 | payload length u32 | hash[32] × blocks | payload
// A frames body is one or more frames back to back (protocol 3; 2 took exactly one).

const FRAME_MAGIC = Buffer.from("SBFRAME\x01", "latin1");
const FRAME_HEAD = FRAME_MAGIC.length + 8;

/** A frame's bytes on the wire, in three pieces (its header, its hashes, its payload: not copied). */
export function frameBodyParts(frame: Frame): [Buffer, Buffer, Buffer] {
  const head = Buffer.alloc(FRAME_HEAD);
  FRAME_MAGIC.copy(head);
  head.writeUInt16LE(frame.blocks, 8);
  head[10] = frame.compression;
  head.writeUInt32LE(frame.payload.length, 12);
  return [head, frame.hashes.subarray(0, frame.blocks * HASH_BYTES), frame.payload];
}

export function encodeFrameBody(frame: Frame): Buffer {
  return Buffer.concat(frameBodyParts(frame));
}

/**
 * Parses the structure of a frames body (one or more frames); the caller opens each payload and
 * verifies every block's hash. The frames are views of `body`.
 */
export function decodeFrameBodies(body: Buffer): Frame[] {
  const out: Frame[] = [];
  for (let at = 0; at < body.length || out.length === 0; ) {
    const bad = (why: string) =>
      new SwitchbackError(
        "FRAME_INVALID",
        `frame ${out.length} (at byte ${at}) of the body is not valid: ${why}`,
      );
    if (body.length - at < FRAME_HEAD || !body.subarray(at, at + FRAME_MAGIC.length).equals(FRAME_MAGIC))
      throw bad("it does not start with the frame magic SBFRAME\\1");
    const blocks = body.readUInt16LE(at + 8);
    const compression = body[at + 10]!;
    const payloadLength = body.readUInt32LE(at + 12);
    if (blocks < 1 || blocks > WIRE_FRAME_MAX_BLOCKS)
      throw bad(`it holds ${blocks} blocks; a frame holds 1 to ${WIRE_FRAME_MAX_BLOCKS}`);
    if (compression !== COMPRESSION_NONE && compression !== COMPRESSION_ZSTD)
      throw bad(`unknown compression ${compression} (0 = none, 1 = zstd)`);
    const hashesEnd = at + FRAME_HEAD + blocks * HASH_BYTES;
    const end = hashesEnd + payloadLength;
    if (end > body.length)
      throw bad(`its header announces ${end - at} bytes but only ${body.length - at} are left`);
    out.push({
      blocks,
      compression,
      hashes: body.subarray(at + FRAME_HEAD, hashesEnd),
      payload: body.subarray(hashesEnd, end),
    });
    at = end;
  }
  return out;
}

// ---- the "missing" bitmap: bit i (byte i >> 3, bit i & 7) set = block i is missing ----

export function encodeBitmap(bits: readonly boolean[]): Buffer {
  const out = Buffer.alloc(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => {
    if (b) out[i >> 3]! |= 1 << (i & 7);
  });
  return out;
}

export function decodeBitmap(buf: Buffer, n: number): boolean[] {
  if (buf.length !== Math.ceil(n / 8)) {
    throw new SwitchbackError(
      "PROTOCOL_ERROR",
      `missing-blocks answer is ${buf.length} bytes; ${Math.ceil(n / 8)} were expected for ${n} hashes`,
    );
  }
  const out: boolean[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = (buf[i >> 3]! & (1 << (i & 7))) !== 0;
  return out;
}

// ---- block digests (a resync compares the disk with its parent point's) ----
//   magic "SBDGST\0\1" | from u64 | count u32 | bitmap (a bit per block, 1: not all zeros) | digest[16] × ones
// 16 zero bytes stand for an all-zero block; a disk's zeros cost a bit each on the wire.

const DIGESTS_MAGIC = Buffer.from("SBDGST\x00\x01", "latin1");
/** blocks of one digests request at most (16 MiB of digests) */
export const DIGESTS_MAX_BLOCKS = 1 << 20;

export function encodeDigests(from: number, digests: Buffer): Buffer {
  const count = digests.length / DIGEST_BYTES;
  const bitmap = Buffer.alloc(Math.ceil(count / 8));
  let ones = 0;
  for (let b = 0; b < count; b++) {
    if (isZeroDigest(digests, b * DIGEST_BYTES)) continue;
    bitmap[b >>> 3]! |= 1 << (b & 7);
    ones++;
  }
  const out = Buffer.allocUnsafe(DIGESTS_MAGIC.length + 12 + bitmap.length + ones * DIGEST_BYTES);
  DIGESTS_MAGIC.copy(out);
  out.writeBigUInt64LE(BigInt(from), 8);
  out.writeUInt32LE(count, 16);
  bitmap.copy(out, 20);
  let at = 20 + bitmap.length;
  for (let b = 0; b < count; b++) {
    if ((bitmap[b >>> 3]! & (1 << (b & 7))) === 0) continue;
    digests.copy(out, at, b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES);
    at += DIGEST_BYTES;
  }
  return out;
}

/** The digests of blocks [from, from + count) from the server's answer: count × 16 bytes. */
export function decodeDigests(buf: Buffer, from: number, count: number): Buffer {
  const bad = (why: string) => new SwitchbackError("PROTOCOL_ERROR", `block digests from the server: ${why}`);
  if (buf.length < 20 || !buf.subarray(0, DIGESTS_MAGIC.length).equals(DIGESTS_MAGIC)) throw bad("bad magic");
  const gotFrom = Number(buf.readBigUInt64LE(8));
  const n = buf.readUInt32LE(16);
  if (gotFrom !== from || n !== count)
    throw bad(`blocks [${gotFrom}, ${gotFrom + n}) instead of [${from}, ${from + count})`);
  const bitmapBytes = Math.ceil(n / 8);
  if (buf.length < 20 + bitmapBytes) throw bad(`${buf.length} bytes are too few for ${n} blocks`);
  let ones = 0;
  for (let b = 0; b < n; b++) if ((buf[20 + (b >>> 3)]! & (1 << (b & 7))) !== 0) ones++;
  if (buf.length !== 20 + bitmapBytes + ones * DIGEST_BYTES)
    throw bad(`${buf.length} bytes do not match its bitmap`);
  const out = Buffer.alloc(n * DIGEST_BYTES);
  let at = 20 + bitmapBytes;
  for (let b = 0; b < n; b++) {
    if ((buf[20 + (b >>> 3)]! & (1 << (b & 7))) === 0) continue;
    buf.copy(out, b * DIGEST_BYTES, at, at + DIGEST_BYTES);
    at += DIGEST_BYTES;
  }
  return out;
}

function isZeroDigest(d: Buffer, at: number): boolean {
  for (let i = 0; i < DIGEST_BYTES; i++) if (d[at + i] !== 0) return false;
  return true;
}

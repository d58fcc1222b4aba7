// Content addresses: BLAKE3-256 of a block's bytes. All-zero blocks are never stored; the
// reserved address ZERO_HASH (32 zero bytes) stands for them in manifests.
//
// With the native addon loaded every hash here is the addon's; the npm BLAKE3 binding is loaded only
// without it (loading a second native library costs every CLI start ~5 ms).
import { createRequire } from "node:module";
import type * as Blake3Npm from "@napi-rs/blake-hash";
import { native } from "../platform/native.ts";
import { BLOCK_SIZE } from "./format.ts";

export const HASH_BYTES = 32;
export const ZERO_HASH: Buffer = Buffer.alloc(HASH_BYTES);

/** The addon's incremental BLAKE3, when the addon has it. */
const b3 =
  native?.blake3Init !== undefined &&
  native.blake3Update !== undefined &&
  native.blake3Digest !== undefined &&
  native.blake3StateBytes !== undefined
    ? {
        init: native.blake3Init,
        update: native.blake3Update,
        digest: native.blake3Digest,
        stateBytes: native.blake3StateBytes,
      }
    : null;

let npm: typeof Blake3Npm | undefined;
/** The npm BLAKE3 binding, loaded at its first use (only without the addon, and by tests). */
export function blake3Npm(): typeof Blake3Npm {
  npm ??= createRequire(import.meta.url)("@napi-rs/blake-hash") as typeof Blake3Npm;
  return npm;
}

/** BLAKE3 of bytes given part by part as they come: the same as hashParts over all the parts. */
export class PartsHash {
  readonly #state: Buffer | null = b3 === null ? null : Buffer.alloc(b3.stateBytes);
  readonly #npm: Blake3Npm.Blake3Hasher | null = b3 === null ? new (blake3Npm().Blake3Hasher)() : null;

  constructor() {
    if (this.#state !== null) b3!.init(this.#state);
  }

  update(part: Uint8Array): void {
    if (this.#state !== null) b3!.update(this.#state, part);
    else this.#npm!.update(part as Buffer);
  }

  /** The hash of everything given so far, into `out` at `at` (32 bytes) or a new Buffer. */
  digest(out: Buffer = Buffer.allocUnsafe(HASH_BYTES), at = 0): Buffer {
    if (this.#state !== null) b3!.digest(this.#state, out.subarray(at, at + HASH_BYTES));
    else this.#npm!.digestBuffer().copy(out, at);
    return out;
  }
}

// Without the addon a block's hash travels out of the npm binding as its base64 text, not as the
// binding's Buffer: each Buffer it returns is a new external backing store for V8 to track and free
// (~1 µs of a 3.1 µs call on a 4 KiB block), while 43 characters decode into Node's buffer pool or
// straight into place.

export function blockHash(data: Uint8Array): Buffer {
  if (b3 !== null) {
    const out = Buffer.allocUnsafe(HASH_BYTES);
    blockHashInto(data, out, 0);
    return out;
  }
  return Buffer.from(blake3Npm().blake3UrlSafeBase64(data), "base64url");
}

/** Writes the BLAKE3 hash of `data` into `out` at byte `at`. */
export function blockHashInto(data: Uint8Array, out: Buffer, at: number): void {
  if (b3 !== null) {
    if (data.length === BLOCK_SIZE) native!.hashBlocks(data, out, at);
    else {
      const h = new PartsHash();
      h.update(data);
      h.digest(out, at);
    }
    return;
  }
  out.write(blake3Npm().blake3UrlSafeBase64(data), at, HASH_BYTES, "base64url");
}

/**
 * Writes the BLAKE3 hash of each 4 KiB block of `data` into `out` from byte `at` on, 32 bytes each: in
 * one call of the native addon when it is there (many blocks through BLAKE3's SIMD lanes at once),
 * else block by block.
 */
export function hashBlocksInto(data: Uint8Array, out: Buffer, at: number): void {
  if (native !== null) {
    native.hashBlocks(data, out, at);
    return;
  }
  if (data.length % BLOCK_SIZE !== 0) throw new TypeError("hashBlocksInto: data must be whole 4 KiB blocks");
  for (let p = 0, o = at; p < data.length; p += BLOCK_SIZE, o += HASH_BYTES) {
    blockHashInto(data.subarray(p, p + BLOCK_SIZE), out, o);
  }
}

/** Whether hashBlocksInto hashes many blocks at the cost of few (the addon): worth hashing a run whole. */
export const HASHES_IN_BATCHES = native !== null;

/** The BLAKE3 hashes of the 4 KiB blocks of `data`, 32 bytes each. */
export function hashBlocks(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe((data.length / BLOCK_SIZE) * HASH_BYTES);
  hashBlocksInto(data, out, 0);
  return out;
}

export function hashParts(parts: readonly Uint8Array[]): Buffer {
  const h = new PartsHash();
  for (const p of parts) h.update(p);
  return h.digest();
}

export function isZeroHash(h: Uint8Array, offset = 0): boolean {
  for (let i = 0; i < HASH_BYTES; i++) if (h[offset + i] !== 0) return false;
  return true;
}

const ZERO_64K = Buffer.alloc(65536);

/** True when every byte of `data` is zero; compares against a zero buffer (memcmp speed). */
export function isAllZero(data: Uint8Array): boolean {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < b.length; off += ZERO_64K.length) {
    const end = Math.min(b.length, off + ZERO_64K.length);
    if (!b.subarray(off, end).equals(ZERO_64K.subarray(0, end - off))) return false;
  }
  return true;
}

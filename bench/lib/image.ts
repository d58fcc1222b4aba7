// The benchmark's test disk: a deterministic image of mixed content (1/3 zeros, 1/3 text-like,
// 1/3 random) in interleaved 1 MiB stretches, and the "1 % of 4 KiB blocks overwritten at random
// positions" change applied to it. Everything follows from one seed, so every tool sees the same
// bytes and a run can be repeated. Random bytes come from AES-256-CTR (a few GB/s); text comes from a
// seeded generator over a generated vocabulary with numbers mixed in: compressible (zstd ~2-3x) but
// no two 4 KiB blocks alike, so neither zero-detection nor deduplication makes it trivial.
import { createCipheriv, createHash } from "node:crypto";
import { closeSync, openSync, readSync, writeSync } from "node:fs";

export const BENCH_BLOCK = 4096;
export const STRETCH_BYTES = 1024 * 1024;

export type StretchKind = "zero" | "text" | "random";

export interface ImageLayout {
  sizeBytes: number;
  zeroBytes: number;
  textBytes: number;
  randomBytes: number;
}

export interface Change {
  /** 4 KiB block numbers, ascending, distinct */
  blocks: Uint32Array;
  /** the new content, BENCH_BLOCK bytes per block, in the order of `blocks` */
  data: Buffer;
}

/** mulberry32: a small, fast, seeded 32-bit generator (enough for layout and text, not for crypto). */
export function rng32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A deterministic stream of random bytes: AES-256-CTR over zeros, keyed by the seed and a purpose. */
export class RandomStream {
  readonly #cipher;
  readonly #zeros = Buffer.alloc(STRETCH_BYTES);
  constructor(seed: number, purpose: string) {
    const key = createHash("sha256").update(`switchback-bench:${seed}:${purpose}`).digest();
    this.#cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  }
  /** Fills `out` with the next bytes of the stream. */
  fill(out: Buffer): void {
    for (let p = 0; p < out.length; p += this.#zeros.length) {
      const n = Math.min(this.#zeros.length, out.length - p);
      this.#cipher.update(this.#zeros.subarray(0, n)).copy(out, p);
    }
  }
}

/** Text-like bytes: words from a skewed vocabulary, numbers, punctuation and line breaks. */
export class TextStream {
  readonly #rng: () => number;
  readonly #words: Uint8Array;
  readonly #start: Uint32Array;
  readonly #len: Uint8Array;

  constructor(seed: number, vocabulary = 8192) {
    this.#rng = rng32(seed ^ 0x5bd1e995);
    const rng = this.#rng;
    this.#start = new Uint32Array(vocabulary);
    this.#len = new Uint8Array(vocabulary);
    // frequent words are short, as in natural language: rank r gets about 2 + log2(r) / 1.5 letters
    const bytes: number[] = [];
    for (let w = 0; w < vocabulary; w++) {
      const len = Math.min(14, 1 + Math.floor(Math.log2(w + 2) / 1.5) + (rng() % 3));
      this.#start[w] = bytes.length;
      this.#len[w] = len;
      for (let i = 0; i < len; i++) bytes.push(97 + (rng() % 26));
    }
    this.#words = Uint8Array.from(bytes);
  }

  fill(out: Buffer): void {
    const rng = this.#rng;
    const words = this.#words;
    const n = this.#start.length;
    const logN = Math.log(n);
    const end = out.length;
    let p = 0;
    while (p < end) {
      // Zipf's law (frequency ~ 1/rank): rank = n^u - 1 for uniform u, so the 100 most frequent words
      // make up about half of the text, as in natural language
      const w = Math.min(n - 1, Math.floor(Math.exp((rng() / 2 ** 32) * logN)) - 1);
      const s = this.#start[w]!;
      const len = this.#len[w]!;
      for (let i = 0; i < len && p < end; i++) out[p++] = words[s + i]!;
      const r = rng();
      if ((r & 15) === 0) {
        // a number: " 4821"
        if (p < end) out[p++] = 32;
        let v = (r >>> 8) % 10000;
        const digits = v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5;
        for (let i = digits - 1; i >= 0; i--) {
          if (p + i < end) out[p + i] = 48 + (v % 10);
          v = Math.floor(v / 10);
        }
        p += digits;
      }
      const sep = (r >>> 4) & 63;
      if (sep === 0 && p < end) out[p++] = 46; // "."
      if (p < end) out[p++] = sep === 1 ? 10 : 32; // "\n" or " "
    }
  }
}

/** The kind of each 1 MiB stretch: every group of three holds one of each kind, in a seeded order. */
export function stretchKinds(sizeBytes: number, seed: number): StretchKind[] {
  const rng = rng32(seed ^ 0x1b873593);
  const count = Math.ceil(sizeBytes / STRETCH_BYTES);
  const out: StretchKind[] = [];
  while (out.length < count) {
    const group: StretchKind[] = ["zero", "text", "random"];
    for (let i = 2; i > 0; i--) {
      const j = rng() % (i + 1);
      [group[i], group[j]] = [group[j]!, group[i]!];
    }
    out.push(...group);
  }
  return out.slice(0, count);
}

/** Writes the image (not sparse: zeros are written, as on a real disk). */
export function writeImage(file: string, sizeBytes: number, seed: number): ImageLayout {
  const kinds = stretchKinds(sizeBytes, seed);
  const random = new RandomStream(seed, "image");
  const text = new TextStream(seed);
  const zero = Buffer.alloc(STRETCH_BYTES);
  const buf = Buffer.allocUnsafe(STRETCH_BYTES);
  const layout: ImageLayout = { sizeBytes, zeroBytes: 0, textBytes: 0, randomBytes: 0 };
  const fd = openSync(file, "w");
  try {
    kinds.forEach((kind, i) => {
      const pos = i * STRETCH_BYTES;
      const n = Math.min(STRETCH_BYTES, sizeBytes - pos);
      let data = zero;
      if (kind === "text") {
        text.fill(buf);
        data = buf;
        layout.textBytes += n;
      } else if (kind === "random") {
        random.fill(buf);
        data = buf;
        layout.randomBytes += n;
      } else layout.zeroBytes += n;
      writeSync(fd, data, 0, n, pos);
    });
  } finally {
    closeSync(fd);
  }
  return layout;
}

/** `fraction` of the image's 4 KiB blocks, distinct and at seeded random positions, with random new content. */
export function makeChange(sizeBytes: number, seed: number, fraction: number): Change {
  const total = Math.floor(sizeBytes / BENCH_BLOCK);
  const want = Math.min(total, Math.round(total * fraction));
  const rng = rng32(seed ^ 0x68e31da4);
  const picked = new Set<number>();
  while (picked.size < want) picked.add(rng() % total);
  const blocks = Uint32Array.from(picked).sort();
  const data = Buffer.allocUnsafe(want * BENCH_BLOCK);
  new RandomStream(seed, "change").fill(data);
  return { blocks, data };
}

/** Overwrites the changed blocks in place (what a running machine's writes do to its disk). */
export function applyChange(file: string, change: Change): void {
  const fd = openSync(file, "r+");
  try {
    change.blocks.forEach((b, i) => {
      writeSync(fd, change.data, i * BENCH_BLOCK, BENCH_BLOCK, b * BENCH_BLOCK);
    });
  } finally {
    closeSync(fd);
  }
}

/** True when two files hold the same bytes. */
export function sameContent(a: string, b: string): boolean {
  const fa = openSync(a, "r");
  const fb = openSync(b, "r");
  const ba = Buffer.allocUnsafe(STRETCH_BYTES);
  const bb = Buffer.allocUnsafe(STRETCH_BYTES);
  try {
    for (let pos = 0; ; pos += STRETCH_BYTES) {
      const na = readSync(fa, ba, 0, STRETCH_BYTES, pos);
      const nb = readSync(fb, bb, 0, STRETCH_BYTES, pos);
      if (na !== nb) return false;
      if (na === 0) return true;
      if (!ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

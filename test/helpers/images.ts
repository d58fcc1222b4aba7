// Disk images for tests: mixed content (zeros, text-like, random) made from a seed, and scattered
// 4 KiB overwrites that say which blocks they changed.
import { closeSync, openSync, writeSync } from "node:fs";

/** A small deterministic PRNG (xorshift32), so that a failing test can be replayed. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

export function randomBuffer(n: number, next: () => number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(next() * 0x100000000), i);
  return b;
}

/** Text-like bytes (words and numbers, ~2.5× with zstd -1). */
export function textBuffer(n: number, next: () => number): Buffer {
  const words = [
    "replica",
    "failover",
    "point",
    "disk",
    "site",
    "vault",
    "block",
    "commit",
    "drill",
    "agent",
  ];
  let s = "";
  while (s.length < n) s += `${words[Math.floor(next() * words.length)]} ${Math.floor(next() * 100000)}\n`;
  return Buffer.from(s.slice(0, n));
}

/** Writes an image of `mib` MiB: 256 KiB stretches of zeros, text and random data in turn. */
export function makeImage(path: string, mib: number, seed = 1): void {
  const next = rng(seed);
  const fd = openSync(path, "w");
  const stretch = 256 * 1024;
  try {
    for (let i = 0; i < (mib * 1024 * 1024) / stretch; i++) {
      const kind = i % 3;
      const buf =
        kind === 0
          ? Buffer.alloc(stretch)
          : kind === 1
            ? textBuffer(stretch, next)
            : randomBuffer(stretch, next);
      writeSync(fd, buf, 0, stretch, i * stretch);
    }
  } finally {
    closeSync(fd);
  }
}

/** Overwrites `count` distinct 4 KiB blocks at random positions with random data; returns them sorted. */
export function scatter(path: string, sizeBytes: number, count: number, seed = 2): number[] {
  const next = rng(seed);
  const total = sizeBytes / 4096;
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(next() * total));
  const fd = openSync(path, "r+");
  try {
    for (const b of chosen) writeSync(fd, randomBuffer(4096, next), 0, 4096, b * 4096);
  } finally {
    closeSync(fd);
  }
  return [...chosen].sort((a, b) => a - b);
}

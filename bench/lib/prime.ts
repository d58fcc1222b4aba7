// Touches memory once before anything is timed. On a VM whose memory the host backs lazily (this
// one: the first write to a page ran at ~0.35 GB/s, later ones at several GB/s), whichever tool first
// fills the page cache would otherwise pay for the host's page faults and the others would not.
import { spawnSync } from "node:child_process";
import os from "node:os";

const CHUNK = 256 * 1024 * 1024;

/** Allocates and writes `bytes` (capped at 80 % of free memory) in a child process that then exits. */
export function primeMemory(bytes: number): { bytes: number; seconds: number } {
  const chunks = Math.max(1, Math.floor(Math.min(bytes, os.freemem() * 0.8) / CHUNK));
  const t = performance.now();
  const r = spawnSync(
    process.execPath,
    ["-e", `const a = []; for (let i = 0; i < ${chunks}; i++) a.push(Buffer.alloc(${CHUNK}, 1));`],
    { stdio: "inherit" },
  );
  if (r.status !== 0) throw new Error(`priming ${chunks * CHUNK} bytes of memory failed`);
  return { bytes: chunks * CHUNK, seconds: (performance.now() - t) / 1000 };
}

// Compares a disk (or image) with a point's disk map: which blocks differ. Used by delta restore to
// write only what differs (how failback ships little data) and to verify every restore afterwards.
// Runs in worker threads; the map is passed in SharedArrayBuffers so workers do not copy it.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { BLOCK_SIZE } from "../datastore/format.ts";
import { blockHash, HASH_BYTES, isAllZero } from "../datastore/hash.ts";
import { type DiskInfo, DiskReader } from "./disk-source.ts";

const CHUNK_BLOCKS = 64; // 256 KiB reads

export interface CompareJob {
  info: DiskInfo;
  /** the point's disk size: blocks beyond it are not compared */
  sizeBytes: number;
  from: number;
  to: number;
  refs: Uint32Array;
  arena: Uint8Array;
}

/** Block numbers in [from, to) whose content on the disk is not what the map says. */
export function compareRange(job: CompareJob): number[] {
  const reader = new DiskReader(job.info, CHUNK_BLOCKS * BLOCK_SIZE);
  const arena = Buffer.from(job.arena.buffer, job.arena.byteOffset, job.arena.byteLength);
  const out: number[] = [];
  try {
    for (let b0 = job.from; b0 < job.to; b0 += CHUNK_BLOCKS) {
      const n = Math.min(CHUNK_BLOCKS, job.to - b0);
      const buf = reader.read(b0 * BLOCK_SIZE, n * BLOCK_SIZE);
      for (let k = 0; k < n; k++) {
        const b = b0 + k;
        const block = buf.subarray(k * BLOCK_SIZE, (k + 1) * BLOCK_SIZE);
        const r = job.refs[b]!;
        if (r === 0) {
          if (!isAllZero(block)) out.push(b);
        } else if (!blockHash(block).equals(arena.subarray((r - 1) * HASH_BYTES, r * HASH_BYTES)))
          out.push(b);
      }
    }
  } finally {
    reader.close();
  }
  return out;
}

export async function compareDisk(
  info: DiskInfo,
  sizeBytes: number,
  refs: Uint32Array,
  arena: Buffer,
  workers = Math.min(4, availableParallelism()),
): Promise<number[]> {
  const blocks = Math.ceil(sizeBytes / BLOCK_SIZE);
  // share the map with workers without copying it once per worker
  const sharedRefs = new Uint32Array(new SharedArrayBuffer(refs.byteLength));
  sharedRefs.set(refs);
  const sharedArena = new Uint8Array(new SharedArrayBuffer(Math.max(1, arena.length)));
  sharedArena.set(arena);
  if (workers <= 1 || blocks < 32768) {
    return compareRange({ info, sizeBytes, from: 0, to: blocks, refs: sharedRefs, arena: sharedArena });
  }
  const per = Math.ceil(blocks / workers / CHUNK_BLOCKS) * CHUNK_BLOCKS;
  const parts: Promise<number[]>[] = [];
  for (let from = 0; from < blocks; from += per) {
    const job: CompareJob = {
      info,
      sizeBytes,
      from,
      to: Math.min(blocks, from + per),
      refs: sharedRefs,
      arena: sharedArena,
    };
    parts.push(
      new Promise((resolve, reject) => {
        const w = new Worker(new URL("./compare-worker.ts", import.meta.url), { workerData: job });
        w.once("message", (m: { ok: boolean; blocks?: number[]; message?: string }) => {
          if (m.ok) resolve(m.blocks!);
          else reject(new Error(m.message));
          void w.terminate();
        });
        w.once("error", reject);
      }),
    );
  }
  return (await Promise.all(parts)).flat();
}

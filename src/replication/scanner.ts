// Runs disk passes across worker threads (or inline for small disks) and yields their batches.
import { availableParallelism } from "node:os";
import { BLOCK_SIZE } from "../datastore/format.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { workerThreads } from "../platform/lazy.ts";
import { UNIT_BLOCKS, unitOf } from "./block-hashes.ts";
import { DiskReader } from "./disk-source.ts";
import {
  type Batch,
  type BatchGroup,
  jobBytes,
  READ_BYTES,
  type ScanJob,
  scanRanges,
  UNIT_BYTES,
  unpackGroup,
} from "./scan.ts";
import { nativeBlockBatches, nativeBlockPass } from "./unit-pass.ts";

const INLINE_BELOW_BYTES = 128 * 1024 * 1024;
/** what an inline pass reads before it lets the event loop run */
const INLINE_CHUNK_BYTES = 4 * 1024 * 1024;
/** groups (of up to 8 frames) a worker may have posted and the main thread not yet taken */
const CREDITS = 3;

export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/**
 * Splits the jobs' ranges into `n` shards of about equal bytes, keeping each shard's ranges ascending.
 * A journal's block ranges are cut only between units: one unit's block hashes are never in two
 * shards, which run at once.
 */
export function shard(jobs: ScanJob[], n: number): ScanJob[][] {
  const total = jobs.reduce((s, j) => s + jobBytes(j), 0);
  const per = Math.max(1, Math.ceil(total / n));
  const shards: ScanJob[][] = Array.from({ length: n }, () => []);
  let w = 0;
  let room = per;
  for (const job of jobs) {
    const blocks = job.blocks === true;
    const size = blocks ? BLOCK_SIZE : UNIT_BYTES; // bytes a range step stands for
    let cur: [number, number][] = [];
    let last = -1; // the last step taken
    let cut = false; // the shard is full: the next step in another unit begins the next one
    const close = (): void => {
      if (cur.length > 0) shards[w]!.push({ ...job, ranges: cur });
      cur = [];
    };
    for (const [a0, b] of job.ranges) {
      for (let a = a0; a < b; ) {
        if (cut && (!blocks || unitOf(a) !== unitOf(last))) {
          close();
          w++;
          room = per;
          cut = false;
        }
        let end = Math.min(b, a + Math.max(1, Math.ceil(room / size)));
        if (blocks && end < b) end = Math.min(b, Math.ceil(end / UNIT_BLOCKS) * UNIT_BLOCKS);
        cur.push([a, end]);
        room -= (end - a) * size;
        last = end - 1;
        a = end;
        if (room <= 0 && w < n - 1) cut = true;
      }
    }
    close();
    if (cut) {
      w++;
      room = per;
    }
  }
  return shards.filter((s) => s.length > 0);
}

export async function* scan(all: ScanJob[], workers = defaultWorkers()): AsyncGenerator<Batch> {
  let jobs = all;
  if (nativeBlockPass()) {
    // a journal's blocks (or those a native comparing pass found): read and hashed in the addon
    for (const job of jobs) if (job.blocks === true) yield* nativeBlockBatches(job, workers);
    jobs = jobs.filter((j) => j.blocks !== true);
    if (jobs.length === 0) return;
  }
  const bytes = jobs.reduce((s, j) => s + jobBytes(j), 0);
  if (workers <= 1 || bytes < INLINE_BELOW_BYTES) {
    // a few MiB at a time, back to the event loop in between: the index load, the `missing` answers
    // and the pack writes under way go on while the disk is read, instead of after all of it
    // (and the frames shipped meanwhile hand their buffers back for the next ones); one reader per
    // disk for all its chunks
    const readers = new Map<number, DiskReader>();
    try {
      for (const chunk of shard(jobs, Math.max(1, Math.ceil(bytes / INLINE_CHUNK_BYTES)))) {
        for (const job of chunk) {
          let reader = readers.get(job.disk);
          if (reader === undefined) {
            reader = new DiskReader(job.info, READ_BYTES);
            readers.set(job.disk, reader);
          }
          const out: Batch[] = [];
          scanRanges(job, (g) => out.push(...unpackGroup(g)), reader);
          yield* out;
        }
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      for (const r of readers.values()) r.close();
    }
    return;
  }
  const shards = shard(jobs, workers);
  const queue: Batch[][] = [];
  let wake: (() => void) | null = null;
  let running = shards.length;
  let failure: Error | null = null;
  const threads: { worker: import("node:worker_threads").Worker; credits: Int32Array }[] = [];
  const creditOwners: { credits: Int32Array }[] = [];
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  for (const s of shards) {
    const credits = new Int32Array(new SharedArrayBuffer(4));
    credits[0] = CREDITS;
    const worker = new (workerThreads().Worker)(new URL("./scan-worker.ts", import.meta.url));
    let finished = false;
    const t = { worker, credits };
    threads.push(t);
    worker.on("message", (m: { type: string; group?: BatchGroup; message?: string; code?: string }) => {
      if (m.type === "group") {
        queue.push(unpackGroup(m.group!));
        creditOwners.push(t);
      } else if (m.type === "done") {
        finished = true;
        running--;
      } else if (m.type === "error") {
        finished = true;
        failure = m.code ? new SwitchbackError(m.code, m.message!) : new Error(m.message);
        running--;
      }
      notify();
    });
    worker.on("error", (err: Error) => {
      finished = true;
      failure = err;
      running--;
      notify();
    });
    worker.on("exit", (code) => {
      if (finished) return;
      finished = true;
      failure ??= new Error(`a disk scan worker exited with code ${code} before it finished`);
      running--;
      notify();
    });
    worker.postMessage({ jobs: s, credits });
  }
  try {
    for (;;) {
      if (failure !== null) throw failure;
      const group = queue.shift();
      if (group !== undefined) {
        const owner = creditOwners.shift()!;
        Atomics.add(owner.credits, 0, 1);
        Atomics.notify(owner.credits, 0);
        yield* group;
        continue;
      }
      if (running === 0) break;
      await new Promise<void>((r) => {
        wake = r;
      });
    }
    if (failure !== null) throw failure;
  } finally {
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }
}

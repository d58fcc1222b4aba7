// Worker-thread entry for scanRanges: hashing and compression are CPU-bound, so a disk pass uses
// every core. Flow control: the worker takes one credit from a shared counter per batch it posts and
// waits while there are none, so a slow consumer bounds the memory held in flight.
import { parentPort } from "node:worker_threads";
import { type Batch, type ScanJob, scanRanges } from "./scan.ts";

interface Start {
  jobs: ScanJob[];
  credits: Int32Array;
}

parentPort!.once("message", (msg: Start) => {
  const { jobs, credits } = msg;
  try {
    for (const job of jobs) {
      scanRanges(job, (b: Batch) => {
        for (;;) {
          const c = Atomics.load(credits, 0);
          if (c > 0) {
            if (Atomics.compareExchange(credits, 0, c, c - 1) === c) break;
          } else Atomics.wait(credits, 0, c, 1000);
        }
        // every buffer of a batch is its own (never Node's shared pool): move them, do not copy
        const transfer = new Set<ArrayBuffer>();
        for (const v of [b.blocks, b.hashes, b.dataHashes, b.payload]) {
          const ab = v.buffer as ArrayBuffer;
          if (ab.byteLength > 0 && ab.byteLength !== Buffer.poolSize) transfer.add(ab);
        }
        parentPort!.postMessage({ type: "batch", batch: b }, [...transfer]);
      });
    }
    parentPort!.postMessage({ type: "done" });
  } catch (err) {
    const e = err as Error & { code?: string };
    parentPort!.postMessage({ type: "error", message: e.message, code: e.code });
  }
});

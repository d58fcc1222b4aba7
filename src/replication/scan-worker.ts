// Worker-thread entry for scanRanges: hashing and compression are CPU-bound, so a disk pass uses
// every core. Flow control: the worker takes one credit from a shared counter per group it posts and
// waits while there are none, so a slow consumer bounds the memory held in flight.
import { parentPort } from "node:worker_threads";
import { type BatchGroup, type ScanJob, scanRanges } from "./scan.ts";

interface Start {
  jobs: ScanJob[];
  credits: Int32Array;
}

parentPort!.once("message", (msg: Start) => {
  const { jobs, credits } = msg;
  try {
    for (const job of jobs) {
      scanRanges(job, (g: BatchGroup) => {
        for (;;) {
          const c = Atomics.load(credits, 0);
          if (c > 0) {
            if (Atomics.compareExchange(credits, 0, c, c - 1) === c) break;
          } else Atomics.wait(credits, 0, c, 1000);
        }
        // the group's buffers are its own (never Node's shared pool): move them, do not copy
        const transfer = g.meta.byteLength > 0 ? [g.meta, ...g.payloads] : g.payloads;
        parentPort!.postMessage({ type: "group", group: g }, transfer);
      });
    }
    parentPort!.postMessage({ type: "done" });
  } catch (err) {
    const e = err as Error & { code?: string };
    parentPort!.postMessage({ type: "error", message: e.message, code: e.code });
  }
});

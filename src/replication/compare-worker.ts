// Worker-thread entry for compareRange.
import { parentPort, workerData } from "node:worker_threads";
import { type CompareJob, compareRange } from "./compare.ts";

try {
  parentPort!.postMessage({ ok: true, blocks: compareRange(workerData as CompareJob) });
} catch (err) {
  parentPort!.postMessage({ ok: false, message: (err as Error).message });
}

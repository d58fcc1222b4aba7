// Worker-thread entry for compareRange.
import { parentPort, workerData } from "node:worker_threads";
import { answerOf } from "../platform/workers.ts";
import { type CompareJob, compareRange } from "./compare.ts";

parentPort!.postMessage(answerOf(() => compareRange(workerData as CompareJob)));

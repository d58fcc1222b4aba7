// Runs one worker thread per job and collects their results. The first failure terminates the
// others (a restore must not go on writing after it has failed) and keeps its error code; a worker
// that exits without an answer is a failure too, not a hang.
import { Worker } from "node:worker_threads";
import { SwitchbackError } from "../domain/errors.ts";

/** What a worker posts once: its result, or its error. */
export type WorkerAnswer<T> = { ok: true; result: T } | { ok: false; code?: string; message: string };

export function answerOf<T>(fn: () => T): WorkerAnswer<T> {
  try {
    return { ok: true, result: fn() };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { ok: false, code: e instanceof SwitchbackError ? e.code : e.code, message: e.message };
  }
}

export function runWorkers<J, T>(script: URL, jobs: readonly J[]): Promise<T[]> {
  const workers: Worker[] = [];
  const stopAll = () => {
    for (const w of workers) void w.terminate();
  };
  const runs = jobs.map(
    (job) =>
      new Promise<T>((resolve, reject) => {
        const w = new Worker(script, { workerData: job });
        workers.push(w);
        let answered = false;
        w.once("message", (m: WorkerAnswer<T>) => {
          answered = true;
          if (m.ok) resolve(m.result);
          else
            reject(
              m.code && /^[A-Z][A-Z_]+$/.test(m.code)
                ? new SwitchbackError(m.code, m.message)
                : Object.assign(new Error(m.message), { code: m.code }),
            );
          void w.terminate();
        });
        w.once("error", reject);
        w.once("exit", (code) => {
          if (!answered)
            reject(
              new Error(
                `a worker thread (${script.pathname.split("/").pop()}) exited with code ${code} without an answer`,
              ),
            );
        });
      }),
  );
  return Promise.all(runs).catch((err: unknown) => {
    stopAll();
    throw err;
  });
}

// Node.js modules that only some paths need, loaded when first used rather than at import: a
// command's start-up paid ~8 ms for child_process (it brings net and dgram along), ~2 ms each for
// zlib and worker_threads, on every replicate-once, although a point usually needs none of them.

export function childProcess(): typeof import("node:child_process") {
  return process.getBuiltinModule("node:child_process");
}

export function zlib(): typeof import("node:zlib") {
  return process.getBuiltinModule("node:zlib");
}

export function workerThreads(): typeof import("node:worker_threads") {
  return process.getBuiltinModule("node:worker_threads");
}

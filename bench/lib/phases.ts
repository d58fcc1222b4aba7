// node bench/lib/phases.ts [--size 2G] [--seed 1] [--tmp DIR]
//
// Where Switchback's time goes, phase by phase, in one process (no CLI start-up, no profiler): the
// disk pass alone (read + xxh64 + BLAKE3 + zstd in the workers, batches dropped), then the same
// replication through a LocalSink whose calls are timed (missing, send, commit), for the full copy
// and for the incremental after the benchmark's 1 % change. Complements `bench:replication --profile`.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Datastore } from "../../src/datastore/datastore.ts";
import type { ItemName } from "../../src/domain/ids.ts";
import { AgentState, type DiskHashes } from "../../src/replication/agent-state.ts";
import { closeBlockHashes, openBlockHashes } from "../../src/replication/block-hashes.ts";
import { inspectDisk } from "../../src/replication/disk-source.ts";
import { replicateOnce } from "../../src/replication/replicate.ts";
import { unitCount } from "../../src/replication/scan.ts";
import { scan } from "../../src/replication/scanner.ts";
import { LocalSink, type PointSink } from "../../src/replication/sink.ts";
import { applyChange, makeChange, writeImage } from "./image.ts";
import { settle, warm } from "./scenario.ts";
import { parseSize } from "./sizes.ts";

const startedAt = performance.now(); // time since process start: Node's own start-up and the imports above

const { values: opt } = parseArgs({
  options: {
    size: { type: "string", default: "2G" },
    seed: { type: "string", default: "1" },
    tmp: { type: "string", default: os.tmpdir() },
  },
});
const sizeBytes = parseSize(opt.size);
const seed = Number(opt.seed);
const item = "phases" as ItemName;
const base = mkdtempSync(path.join(opt.tmp, "switchback-phases-"));

const ms = (t: number) => `${(performance.now() - t).toFixed(0)} ms`;

/** A LocalSink whose calls are timed (time awaited by the replication loop, on the main thread). */
class TimedSink implements PointSink {
  readonly inner: LocalSink;
  readonly spent = { latestPoint: 0, digests: 0, missing: 0, send: 0, commit: 0 };
  constructor(inner: LocalSink) {
    this.inner = inner;
  }
  get target() {
    return this.inner.target;
  }
  async #t<T>(k: keyof TimedSink["spent"], f: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await f();
    } finally {
      this.spent[k] += performance.now() - t;
    }
  }
  latestPoint(i: ItemName) {
    return this.#t("latestPoint", () => this.inner.latestPoint(i));
  }
  digests(i: ItemName, p: Parameters<PointSink["digests"]>[1], d: number, from: number, count: number) {
    return this.#t("digests", () => this.inner.digests(i, p, d, from, count));
  }
  missing(h: Buffer) {
    return this.#t("missing", () => this.inner.missing(h));
  }
  send(f: Parameters<PointSink["send"]>[0], k?: readonly boolean[]) {
    return this.#t("send", () => this.inner.send(f, k));
  }
  commit(m: Parameters<PointSink["commit"]>[0]) {
    return this.#t("commit", () => this.inner.commit(m));
  }
  close() {
    return this.inner.close();
  }
}

/** The disk pass alone: workers read, hash and compress; the batches are dropped. */
async function passOnly(disk: string, seedHex: bigint, prev: DiskHashes | null): Promise<string> {
  const info = inspectDisk(disk);
  // this pass's hashes go to a scratch file of their own: `prev` stays as the last point left it
  const hashes = openBlockHashes(
    os.tmpdir(),
    Math.ceil(info.sizeBytes / 4096),
    prev === null ? null : { fd: prev.blocks.prevFd, at: prev.blocks.prevAt },
  );
  const nextUnit = new BigUint64Array(new SharedArrayBuffer(unitCount(info.sizeBytes) * 8));
  const t = performance.now();
  let batches = 0;
  let candidates = 0;
  try {
    for await (const b of scan([
      {
        disk: 0,
        info,
        seed: seedHex,
        ranges: [[0, unitCount(info.sizeBytes)]],
        hashes,
        compare: prev !== null,
        prevUnit: prev?.unit ?? null,
        nextUnit,
      },
    ])) {
      batches++;
      candidates += b.blocks.length;
    }
  } finally {
    closeBlockHashes(hashes);
  }
  return `${ms(t)} (${batches} batches, ${candidates} candidate blocks)`;
}

async function replicate(disk: string, state: string, dsDir: string, label: string): Promise<void> {
  warm(disk);
  settle();
  let t = performance.now();
  const ds = await Datastore.open(dsDir);
  const open = ms(t);
  t = performance.now();
  const idx = await ds.index();
  const index = `${ms(t)} (${idx.size} blocks)`;
  const st = AgentState.load(path.join(state, item));
  t = performance.now();
  const prev = st?.loadHashes(0) ?? null;
  const hashes = ms(t);
  const seedHex = st?.seed(0) ?? 1n;
  let pass: string;
  try {
    pass = await passOnly(disk, seedHex, prev);
  } finally {
    if (prev !== null) st?.release(prev);
  }
  warm(disk);
  settle();
  const sink = new TimedSink(new LocalSink(ds));
  t = performance.now();
  const r = await replicateOnce({
    item,
    disks: [disk],
    stateDir: path.join(state, item),
    sink,
    consistency: "crash",
    snapshot: "none",
  });
  const total = performance.now() - t;
  await ds.close();
  const s = sink.spent;
  const f = (x: number) => `${x.toFixed(0)} ms`;
  process.stdout.write(
    [
      `${label}:`,
      `  Datastore.open ${open}; index load ${index}; agent hashes load ${hashes}`,
      `  disk pass alone (workers: read, xxh64, BLAKE3, zstd; batches dropped): ${pass}`,
      `  replicateOnce (index already loaded): ${f(total)} (its own durationMs ${r.durationMs}), ${r.mode}, ${r.changedBlocks} blocks, ${r.bytesSent} bytes sent`,
      `    awaited on the main thread: missing ${f(s.missing)}, send ${f(s.send)} (pack sealing + writes, 2 in flight), commit ${f(s.commit)} (last packs, index file, manifest), latestPoint ${f(s.latestPoint)}`,
      "",
    ].join("\n"),
  );
}

try {
  process.stdout.write(`process start + imports: ${startedAt.toFixed(0)} ms\n`);
  const v1 = path.join(base, "v1.img");
  const disk = path.join(base, "disk.img");
  writeImage(v1, sizeBytes, seed);
  copyFileSync(v1, disk);
  const dsDir = path.join(base, "datastore");
  const state = path.join(base, "agent-state");
  mkdirSync(state);
  await (await Datastore.init(dsDir)).close();
  await replicate(disk, state, dsDir, "full copy");
  applyChange(disk, makeChange(sizeBytes, seed, 0.01));
  await replicate(disk, state, dsDir, "incremental (1 % of 4 KiB blocks changed)");
} finally {
  rmSync(base, { recursive: true, force: true });
}

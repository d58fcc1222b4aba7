// The write trace's raw pages, parsed in JavaScript (RawTraceReader.drain, then each event placed as
// the write tracker places it) and in the native addon (drainPlaced: the same in one call), from the
// same made-up tracefs instance: regular files stand in for the per-CPU pipes, a page per read.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { native } from "../../src/platform/native.ts";
import { RawTraceReader } from "../../src/replication/trace-raw.ts";
import { tempDir } from "../helpers/env.ts";
import { rng } from "../helpers/images.ts";

/** Whole numbers below `k` from a seeded generator. */
function ints(seed: number): (k: number) => number {
  const next = rng(seed);
  return (k) => Math.floor(next() * k);
}

const PAGE = 4096;
const DATA = 16;
const EVENTS = ["block_bio_queue", "block_rq_complete"];
const IDS = [1101, 1102];
// a record: common fields (8 bytes), dev u32 @8, sector u64 @16, nr_sector u32 @24, rwbs char[8] @28
const RECORD = 36;

function format(id: number): string {
  return [
    `name: x`,
    `ID: ${id}`,
    "format:",
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;",
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;",
    "",
    "\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;",
    "\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;",
    "\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;",
    "\tfield:char rwbs[8];\toffset:28;\tsize:8;\tsigned:0;",
    "",
  ].join("\n");
}

interface Event {
  type: number;
  dev: number;
  sector: number;
  nr: number;
  rwbs: string;
}

/** Pages of events, each event in one of the encodings the ring buffer uses, with time extends and padding. */
function pages(events: Event[], int: (k: number) => number, plain = false): Buffer[] {
  const out: Buffer[] = [];
  let page = Buffer.alloc(PAGE);
  let at = DATA;
  const close = () => {
    page.writeUInt32LE(at - DATA, 8);
    out.push(page);
    page = Buffer.alloc(PAGE);
    at = DATA;
  };
  for (const e of events) {
    if (at + 8 + 8 + 4 + RECORD + 16 > PAGE) close();
    const r = plain ? 9 : int(10);
    if (r === 0) {
      page.writeUInt32LE(30 | (5 << 5), at); // time extend
      at += 8;
    } else if (r === 1) {
      page.writeUInt32LE(29, at); // padding of 12 bytes, then the event
      page.writeUInt32LE(8, at + 4);
      at += 12;
    }
    const rec = Buffer.alloc(RECORD);
    rec.writeUInt16LE(e.type, 0);
    rec.writeUInt32LE(e.dev, 8);
    rec.writeUInt32LE(e.sector % 2 ** 32, 16);
    rec.writeUInt32LE(Math.floor(e.sector / 2 ** 32), 20);
    rec.writeUInt32LE(e.nr, 24);
    rec.write(e.rwbs, 28, "latin1");
    if (!plain && int(3) === 0) {
      page.writeUInt32LE(0, at); // type_len 0: the length follows
      page.writeUInt32LE(RECORD + 4, at + 4);
      rec.copy(page, at + 8);
      at += 8 + RECORD;
    } else {
      page.writeUInt32LE(RECORD / 4, at);
      rec.copy(page, at + 4);
      at += 4 + RECORD;
    }
  }
  if (at > DATA) {
    // a page that ends in zero padding
    if (int(2) === 0 && at + 8 <= PAGE) page.writeUInt32LE(29, at);
    close();
  }
  return out;
}

function instance(dir: string, cpus: Buffer[][]): string {
  const inst = path.join(dir, "instances", "t");
  mkdirSync(path.join(inst, "events"), { recursive: true });
  writeFileSync(
    path.join(inst, "events", "header_page"),
    "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;\n",
  );
  EVENTS.forEach((e, i) => {
    mkdirSync(path.join(inst, "events", "block", e), { recursive: true });
    writeFileSync(path.join(inst, "events", "block", e, "format"), format(IDS[i]!));
  });
  cpus.forEach((p, c) => {
    mkdirSync(path.join(inst, "per_cpu", `cpu${c}`), { recursive: true });
    writeFileSync(path.join(inst, "per_cpu", `cpu${c}`, "trace_pipe_raw"), Buffer.concat(p));
  });
  return inst;
}

/** The JavaScript drain, each event placed as the write tracker's #event places it. */
function placedInJs(inst: string, dir: string, windows: number[][], disks: number) {
  const reader = RawTraceReader.open(inst, dir, EVENTS);
  const pairs: number[][] = Array.from({ length: disks }, () => []);
  let passthrough: string | null = null;
  const problem = reader.drain((dev, sector, nr, rwbs) => {
    if (nr === 0) {
      if (rwbs.includes("N") && windows.some((w) => w[0] === dev)) passthrough ??= rwbs;
      return;
    }
    for (const [wdev, disk, shift, add, limit] of windows) {
      if (wdev !== dev) continue;
      const from = Math.max(0, (sector + shift!) * 512 + add!);
      const to = Math.min(limit!, (sector + shift! + nr) * 512 + add!);
      if (to > from) pairs[disk!]!.push(from, to);
    }
  });
  reader.close();
  return { pairs, problem, passthrough };
}

function placedNatively(inst: string, dir: string, windows: number[][], disks: number) {
  const reader = RawTraceReader.open(inst, dir, EVENTS);
  const r = reader.drainPlaced(Float64Array.from(windows.flat()), disks)!;
  reader.close();
  return { pairs: r.pairs.map((p) => [...p]), problem: r.problem, passthrough: r.passthrough };
}

const skip = typeof native?.traceDrain === "function" ? false : "the native addon is not built";

test("the native trace drain places the events the JavaScript one does", { skip }, () => {
  const int = ints(17);
  const devs = [8388608, 8388609, 7340032, 99];
  // two disks; dev 8388609 lands on both (a partition), 99 on neither
  const windows = [
    [8388608, 0, 0, 0, 2 ** 34],
    [8388609, 0, 2048, 0, 2 ** 34],
    [8388609, 1, 0, 4096, 2 ** 20],
    [7340032, 1, -100, 0, 2 ** 30],
  ];
  for (let round = 0; round < 20; round++) {
    const events: Event[] = [];
    const n = round === 0 ? 3000 : int(3000);
    for (let i = 0; i < n; i++) {
      const flush = int(40) === 0;
      events.push({
        type: IDS[int(2)]!,
        dev: devs[int(devs.length)]!,
        sector: int(5) === 0 ? 2 ** 33 + int(100000) : int(4_000_000),
        nr: flush ? 0 : 1 + int(256),
        rwbs: flush ? ["FWS", "N", "WS", "FN"][int(4)]! : "WS",
      });
    }
    const { dir, cleanup } = tempDir("sb-trace-raw-");
    try {
      const half = Math.floor(events.length / 2);
      const inst = instance(dir, [pages(events.slice(0, half), int), pages(events.slice(half), int)]);
      const js = placedInJs(inst, dir, windows, 2);
      assert.deepEqual(placedNatively(inst, dir, windows, 2), js, `round ${round}`);
      if (round === 0) {
        assert.equal(js.problem, null);
        // both disks got writes, and a passthrough request was seen
        assert.ok(js.pairs[0]!.length > 1000 && js.pairs[1]!.length > 300 && /N/.test(js.passthrough ?? ""));
      }
    } finally {
      cleanup();
    }
  }
});

test("the native trace drain finds what is wrong with a page as the JavaScript one does", { skip }, () => {
  const int = ints(5);
  const events: Event[] = Array.from({ length: 40 }, (_, i) => ({
    type: IDS[0]!,
    dev: 8388608,
    sector: i * 8,
    nr: 8,
    rwbs: "WS",
  }));
  const windows = [[8388608, 0, 0, 0, 2 ** 40]];
  /** `p` with `put` done to it */
  const edited = (put: (p: Buffer) => void) => (p: Buffer) => {
    put(p);
    return p;
  };
  const damaged: [string, (p: Buffer) => Buffer][] = [
    ["events lost", edited((p) => p.writeUInt32LE(p.readUInt32LE(8) + 2 ** 31, 8))],
    ["more bytes claimed than held", (p) => p.subarray(0, 600)],
    ["a page shorter than its header", (p) => p.subarray(0, 10)],
    ["an unknown event", edited((p) => p.writeUInt16LE(4242, DATA + 4))],
    ["an event past the page", edited((p) => p.writeUInt32LE(28, DATA))],
    ["a record shorter than its format", edited((p) => p.writeUInt32LE(4, DATA))],
  ];
  for (const [what, damage] of damaged) {
    const { dir, cleanup } = tempDir("sb-trace-bad-");
    try {
      const good = pages(events, int, true); // (each page starts with an event's header and record)
      const inst = instance(dir, [[damage(Buffer.from(good[0]!)), ...good.slice(1)], good]);
      const js = placedInJs(inst, dir, windows, 1);
      assert.ok(js.problem !== null, `${what}: JavaScript finds a problem`);
      assert.deepEqual(placedNatively(inst, dir, windows, 1), js, what);
    } finally {
      cleanup();
    }
  }
});

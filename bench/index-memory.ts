// npm run bench:index [-- --blocks 16M --lookups 1M --tmp DIR --keep]
//
// What a datastore's block index costs a process that loads it (a process server, replicate-once, a
// restore), as the data stored grows: index files naming --blocks blocks (16M by default, what 64 GiB
// of unique data needs) are written into a new datastore, then loaded in a child process twice, side by
// side: with the index files mapped (the default: their records stay the page cache's) and read into
// the process's memory (SWITCHBACK_MAP_INDEX=0, as before). Each child looks up --lookups blocks the
// index holds (their locations, as a restore does) and as many it does not (as a writer asks whether a
// block is stored), and reports its memory: anonymous (the process's own, what the kernel cannot take
// back but by killing it) and file-backed (the page cache's pages it maps, which the kernel may drop
// and read again). The records are synthetic: random hashes in packs of 2,048 blocks, so that no pack
// has to be written.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Datastore } from "../src/datastore/datastore.ts";
import { ENTRY_BYTES } from "../src/datastore/format.ts";
import { HASH_BYTES } from "../src/datastore/hash.ts";
import { busyness, describeMachine, fileSystemOf } from "./lib/machine.ts";
import { fmtBytes, fmtInt, fmtMiB, fmtSeconds } from "./lib/sizes.ts";
import { markdown } from "./lib/table.ts";
import { benchWorkdir } from "./lib/workdir.ts";

const PACK_BLOCKS = 2048;
const FILE_BLOCKS = 1 << 20;

function count(s: string, what: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(s);
  if (m === null) {
    process.stderr.write(
      `bench:index: ${what} must be a count such as 16M or 500000, not ${JSON.stringify(s)}\n`,
    );
    process.exit(1);
  }
  return Number(m[1]) * (m[2]?.toUpperCase() === "M" ? 1 << 20 : m[2]?.toUpperCase() === "K" ? 1024 : 1);
}

const { values: opt } = parseArgs({
  options: {
    blocks: { type: "string", default: "16M" },
    lookups: { type: "string", default: "1M" },
    tmp: { type: "string", default: os.tmpdir() },
    keep: { type: "boolean", default: false },
    child: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

interface ChildResult {
  loadMs: number;
  hitMs: number;
  missMs: number;
  found: number;
  anonKiB: number;
  fileKiB: number;
  hwmKiB: number;
}

function memory(): { anonKiB: number; fileKiB: number; hwmKiB: number } {
  const status = readFileSync("/proc/self/status", "utf8");
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { anonKiB: kib("RssAnon"), fileKiB: kib("RssFile"), hwmKiB: kib("VmHWM") };
}

async function child(dir: string): Promise<void> {
  const sample = readFileSync(path.join(dir, "..", "sample.bin"));
  const lookups = sample.length / HASH_BYTES;
  const ds = await Datastore.open(dir);
  const before = memory();
  let t = performance.now();
  const idx = await ds.index();
  const loadMs = performance.now() - t;
  t = performance.now();
  let found = 0;
  for (let at = 0; at < sample.length; at += HASH_BYTES) if (idx.get(sample, at) !== undefined) found++;
  const hitMs = performance.now() - t;
  const absent = randomBytes(sample.length);
  t = performance.now();
  for (let at = 0; at < absent.length; at += HASH_BYTES) if (idx.has(absent, at)) found += lookups;
  const missMs = performance.now() - t;
  const m = memory();
  const r: ChildResult = {
    loadMs,
    hitMs,
    missMs,
    found,
    anonKiB: m.anonKiB - before.anonKiB,
    fileKiB: m.fileKiB - before.fileKiB,
    hwmKiB: m.hwmKiB,
  };
  process.stdout.write(`${JSON.stringify(r)}\n`);
  await ds.close();
}

async function main(): Promise<void> {
  if (opt.help) {
    process.stdout.write(
      [
        "usage: npm run bench:index [-- options]",
        "  --blocks 16M     blocks the index names (4 KiB each: 16M is 64 GiB of unique data)",
        "  --lookups 1M     blocks looked up that it holds, and as many that it does not",
        "  --tmp DIR        where the temp folder goes (default the system's temp folder)",
        "  --keep           keep the temp folder",
        "",
      ].join("\n"),
    );
    return;
  }
  if (opt.child !== undefined) return child(opt.child);
  const blocks = count(opt.blocks, "--blocks");
  const lookups = Math.min(count(opt.lookups, "--lookups"), blocks);
  const { base: work, cleanup } = benchWorkdir(opt.tmp, "switchback-bench-index-", opt.keep);
  try {
    const dir = path.join(work, "ds");
    const ds = await Datastore.init(dir);
    let t = performance.now();
    // every file gets FILE_BLOCKS records, in sections of PACK_BLOCKS; the sample takes random ones
    const sample = Buffer.alloc(lookups * HASH_BYTES);
    const every = blocks / lookups;
    let taken = 0;
    for (let from = 0; from < blocks; from += FILE_BLOCKS) {
      const n = Math.min(FILE_BLOCKS, blocks - from);
      const sections: { packId: string; entries: Buffer }[] = [];
      for (let s = 0; s < n; s += PACK_BLOCKS) {
        const k = Math.min(PACK_BLOCKS, n - s);
        const entries = Buffer.alloc(k * ENTRY_BYTES);
        const hashes = randomBytes(k * HASH_BYTES);
        for (let i = 0; i < k; i++) {
          const e = i * ENTRY_BYTES;
          hashes.copy(entries, e, i * HASH_BYTES, (i + 1) * HASH_BYTES);
          entries.writeUInt32LE((i >> 5) * 65_536, e + 32); // frame offset
          entries.writeUInt32LE(65_536, e + 36); // frame length
          entries.writeUInt16LE(i & 31, e + 40); // slot
          entries.writeUInt16LE(32, e + 42); // blocks in the frame
          entries[e + 44] = 1; // zstd
          const b = from + s + i;
          if (taken < lookups && b >= taken * every)
            hashes.copy(sample, taken++ * HASH_BYTES, i * HASH_BYTES, (i + 1) * HASH_BYTES);
        }
        sections.push({ packId: randomBytes(32).toString("hex"), entries });
      }
      await ds.writeIndexFile(sections);
    }
    await ds.close();
    writeFileSync(path.join(work, "sample.bin"), sample.subarray(0, taken * HASH_BYTES));
    const writeSeconds = (performance.now() - t) / 1000;
    const indexBytes = blocks * ENTRY_BYTES;
    process.stderr.write(
      `index files for ${fmtInt(blocks)} blocks (${fmtBytes(indexBytes)}) written in ${fmtSeconds(writeSeconds)} s\n`,
    );
    const m = describeMachine(fileSystemOf(work));
    const rows: string[][] = [];
    for (const [name, env] of [
      ["mapped (default)", "1"],
      ["read into memory (SWITCHBACK_MAP_INDEX=0)", "0"],
    ] as const) {
      // the files in the page cache for both: warm, as on a server that has run for a while
      for (const n of readdirSync(path.join(dir, "index"))) readFileSync(path.join(dir, "index", n));
      t = performance.now();
      const r = spawnSync(process.execPath, [import.meta.filename, "--child", dir], {
        env: { ...process.env, SWITCHBACK_MAP_INDEX: env },
        encoding: "utf8",
        maxBuffer: 1 << 20,
      });
      if (r.status !== 0) throw new Error(`the ${name} child failed: ${r.stderr}`);
      const c = JSON.parse(r.stdout.trim().split("\n").pop()!) as ChildResult;
      if (c.found !== taken) throw new Error(`the ${name} child found ${c.found} of ${taken} blocks`);
      const perBlock = (kib: number) => ((kib * 1024) / blocks).toFixed(1);
      rows.push([
        name,
        fmtSeconds(c.loadMs / 1000),
        ((c.hitMs * 1e6) / taken / 1000).toFixed(2),
        ((c.missMs * 1e6) / taken / 1000).toFixed(2),
        `${fmtMiB(c.anonKiB)} (${perBlock(c.anonKiB)})`,
        fmtMiB(c.fileKiB),
        fmtMiB(c.hwmKiB),
      ]);
    }
    process.stdout.write(
      [
        `Block index of ${fmtInt(blocks)} blocks (${fmtBytes(blocks * 4096)} of unique data; index files ${fmtBytes(indexBytes)}), ${fmtInt(taken)} lookups of each kind, page cache warm`,
        "",
        markdown([
          [
            "index",
            "load s",
            "µs per lookup, held",
            "µs per lookup, not held",
            "anonymous MiB added (bytes per block)",
            "file-backed MiB added",
            "peak RSS MiB",
          ],
          ...rows,
        ]),
        "",
        `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.kernel}, Node ${m.node}, ${m.fileSystem}; ${busyness()}.`,
        "",
      ].join("\n"),
    );
  } finally {
    cleanup();
  }
}

await main();

// `datastore check`: proves the store. Without --read-data: every index file's name matches its bytes,
// every pack an index names exists and its trailer agrees with the index, every manifest's checksum,
// parent chain and blocks are known. With --read-data: every pack's bytes hash to its name and every
// block in it hashes to its address. Each problem names the object it is about.

import type { ItemName, PointId } from "../domain/ids.ts";
import { BlockIndex, decodeIndexFile } from "./block-index.ts";
import type { Datastore } from "./datastore.ts";
import { ENTRY_BYTES, paths } from "./format.ts";
import { HASH_BYTES, hashBlocks, hashParts, isZeroHash } from "./hash.ts";
import { openFrame, readEntry } from "./pack.ts";

export interface CheckProblem {
  object: string;
  message: string;
}

export interface CheckResult {
  ok: boolean;
  readData: boolean;
  packs: number;
  indexFiles: number;
  blocks: number;
  points: number;
  unindexedPacks: string[];
  problems: CheckProblem[];
}

export async function checkDatastore(ds: Datastore, o: { readData: boolean }): Promise<CheckResult> {
  const lock = await ds.lock("shared", "check");
  try {
    return await check(ds, o.readData);
  } finally {
    await lock.release();
  }
}

async function check(ds: Datastore, readData: boolean): Promise<CheckResult> {
  const be = ds.backend;
  const problems: CheckProblem[] = [];
  // messages from the readers often start with the object's own name: say it once
  const problem = (object: string, message: string) =>
    problems.push({
      object,
      message: message.startsWith(`${object}: `) ? message.slice(object.length + 2) : message,
    });

  // the points first: a point is written after its packs and their index (format.md), so every block
  // of a point listed now is in an index file listed after it, while a writer goes on committing
  // points (check holds a shared lock: writers run, prune and GC wait)
  const pointLists: { item: ItemName; ids: PointId[] }[] = [];
  for (const item of await ds.items()) pointLists.push({ item, ids: await ds.pointIds(item) });

  // index files
  const indexNames = await be.list("index");
  const byPack = new Map<string, Buffer[]>();
  const index = new BlockIndex(1 << 16);
  for (const n of indexNames) {
    // read, not mapped: check is what finds a damaged file, and a page that cannot be read is a
    // SIGBUS for a mapping
    const buf = await be.read(`index/${n}`);
    const id = n.replace(/\.idx$/, "");
    if (hashParts([buf]).toString("hex") !== id) {
      problem(`index ${n}`, "contents do not match the file's name (damaged)");
      continue;
    }
    try {
      for (const s of decodeIndexFile(n, buf))
        byPack.set(s.packId, [...(byPack.get(s.packId) ?? []), s.entries]);
      index.addIndexFile(n, buf);
    } catch (err) {
      problem(`index ${n}`, (err as Error).message);
    }
  }

  // packs
  const onDisk = await ds.packsOnDisk();
  let blocks = 0;
  for (const [packId, lists] of byPack) {
    const obj = `pack ${packId}`;
    const size = onDisk.get(packId);
    if (size === undefined) {
      problem(obj, "is named by the index but missing");
      continue;
    }
    let pack: Buffer | null = null;
    let trailer: Buffer;
    try {
      if (readData) pack = await be.read(paths.pack(packId));
      trailer = (await ds.readPackTrailer(packId, size, pack ?? undefined)).entries;
    } catch (err) {
      problem(obj, (err as Error).message);
      continue;
    }
    const listed = Buffer.concat(lists);
    if (!sameRecords(listed, trailer)) problem(obj, "its trailer does not agree with the index");
    const frameEnd = size - trailer.length - 12;
    for (let at = 0; at < trailer.length; at += ENTRY_BYTES) {
      const e = readEntry(trailer, at);
      if (
        e.loc.frameOffset < 8 ||
        e.loc.frameOffset + e.loc.frameLength > frameEnd ||
        e.loc.slot >= e.loc.frameBlocks
      ) {
        problem(obj, `entry for block ${e.hash.toString("hex")} points outside the pack's frames`);
      }
    }
    blocks += trailer.length / ENTRY_BYTES;
    if (pack !== null) {
      if (hashParts([pack]).toString("hex") !== packId)
        problem(obj, "contents do not match the pack's name (damaged)");
      const frames = new Map<number, number[]>();
      for (let at = 0; at < trailer.length; at += ENTRY_BYTES) {
        const off = trailer.readUInt32LE(at + 32);
        frames.set(off, [...(frames.get(off) ?? []), at]);
      }
      for (const [off, ats] of frames) {
        const first = readEntry(trailer, ats[0]!).loc;
        let raw: Buffer;
        try {
          raw = openFrame(
            pack.subarray(off, off + first.frameLength),
            first.compression,
            first.frameBlocks,
            `frame @${off}`,
          );
        } catch (err) {
          problem(obj, (err as Error).message);
          continue;
        }
        const got = hashBlocks(raw);
        for (const at of ats) {
          const e = readEntry(trailer, at);
          if (!got.subarray(e.loc.slot * HASH_BYTES, (e.loc.slot + 1) * HASH_BYTES).equals(e.hash)) {
            problem(
              `block ${e.hash.toString("hex")}`,
              `in pack ${packId} (frame @${off}, slot ${e.loc.slot}) does not match its hash`,
            );
          }
        }
      }
    }
  }
  const unindexedPacks = [...onDisk.keys()].filter((p) => !byPack.has(p));

  // manifests
  let points = 0;
  for (const { item, ids } of pointLists) {
    const idSet = new Set<string>(ids);
    for (const id of ids) {
      points++;
      const obj = `point ${item}/${id}`;
      try {
        const m = await ds.readPoint(item, id);
        if (m.header.parent !== null && !idSet.has(m.header.parent))
          problem(obj, `its parent ${m.header.parent} is missing`);
        let missing = 0;
        let firstMissing = "";
        for (const d of m.disks) {
          for (let i = 0; i < d.blocks.length; i++) {
            if (isZeroHash(d.hashes, i * HASH_BYTES) || index.has(d.hashes, i * HASH_BYTES)) continue;
            if (missing++ === 0)
              firstMissing = d.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES).toString("hex");
          }
        }
        if (missing > 0)
          problem(obj, `${missing} block(s) it references are not in the index (first: ${firstMissing})`);
      } catch (err) {
        problem(obj, (err as Error).message);
      }
    }
  }
  return {
    ok: problems.length === 0,
    readData,
    packs: byPack.size,
    indexFiles: indexNames.length,
    blocks,
    points,
    unindexedPacks,
    problems,
  };
}

/** Same set of records: several index files may name a pack (gc writes the new index before removing the old). */
function sameRecords(a: Buffer, b: Buffer): boolean {
  if (a.length === b.length && a.equals(b)) return true;
  const key = (buf: Buffer) => {
    const out = new Set<string>();
    for (let at = 0; at < buf.length; at += ENTRY_BYTES)
      out.add(buf.subarray(at, at + ENTRY_BYTES).toString("hex"));
    return [...out].sort().join();
  };
  return key(a) === key(b);
}

// Rebuilds the index from the packs alone: every pack's trailer lists the blocks it holds. Writes one
// new index file first, then removes the old ones, so a kill -9 leaves a usable (if redundant) index.
import type { Datastore } from "./datastore.ts";
import { paths } from "./format.ts";
import { hashParts } from "./hash.ts";

export interface RebuildResult {
  packs: number;
  blocks: number;
  damagedPacks: string[];
  indexFilesRemoved: number;
}

export async function rebuildIndex(ds: Datastore, o: { readData?: boolean } = {}): Promise<RebuildResult> {
  const lock = await ds.lock("exclusive", "rebuild-index");
  try {
    const be = ds.backend;
    const old = await be.list("index");
    const sections: { packId: string; entries: Buffer }[] = [];
    const damaged: string[] = [];
    let blocks = 0;
    for (const [packId, size] of await ds.packsOnDisk()) {
      try {
        const whole = o.readData ? await be.read(paths.pack(packId)) : undefined;
        const t = await ds.readPackTrailer(packId, size, whole);
        // a damaged pack whose trailer still reads stays indexed: its good blocks are still good
        // (every block is checked against its address when read), and its damage is reported
        sections.push({ packId, entries: t.entries });
        blocks += t.count;
        if (whole && hashParts([whole]).toString("hex") !== packId) damaged.push(packId);
      } catch {
        damaged.push(packId);
      }
    }
    const fresh = sections.length > 0 ? `${await ds.writeIndexFile(sections)}.idx` : null;
    let removed = 0;
    // with damage found, the old index files stay: they may name blocks that no readable trailer does
    for (const n of damaged.length > 0 ? [] : old) {
      if (n === fresh) continue;
      await be.remove(`index/${n}`);
      removed++;
    }
    await ds.reloadIndex();
    return { packs: sections.length, blocks, damagedPacks: damaged, indexFilesRemoved: removed };
  } finally {
    await lock.release();
  }
}

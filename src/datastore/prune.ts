// Prune: delete the points a retention policy does not keep. Deltas make this a rewrite: a kept point
// whose parent goes is first rewritten over its nearest kept ancestor (or as a base), atomically,
// and only then are points deleted, newest first. A kill -9 at any moment leaves every point that
// still exists whole: rewritten points are equivalent, and no existing point loses an ancestor.

import type { ItemName, PointId } from "../domain/ids.ts";
import { type RetentionPolicy, selectRetained } from "../domain/retention.ts";
import type { Datastore } from "./datastore.ts";
import { DiskMap, mergeEntries } from "./disk-map.ts";
import type { PointManifest } from "./manifest.ts";

export interface PruneResult {
  item: ItemName;
  kept: PointId[];
  deleted: PointId[];
  rewritten: PointId[];
  reasons: Record<string, string>;
}

export async function prune(
  ds: Datastore,
  item: ItemName,
  policy: RetentionPolicy,
  o: { now: Date; dryRun?: boolean; afterStep?: (step: string) => void; lockWaitMs?: number },
): Promise<PruneResult> {
  const lock = o.dryRun
    ? null
    : await ds.lock("exclusive", `prune ${item}`, o.lockWaitMs !== undefined ? { waitMs: o.lockWaitMs } : {});
  try {
    const headers = await ds.listPoints(item);
    const decision = selectRetained(
      headers.map((h) => ({ id: h.id, createdAtMs: Date.parse(h.createdAt), consistency: h.consistency })),
      policy,
      o.now.getTime(),
    );
    const drop = new Set<string>(decision.drop);
    const byId = new Map(headers.map((h) => [h.id as string, h]));
    const rewritten: PointId[] = [];
    if (!o.dryRun && drop.size > 0) {
      for (const id of decision.keep) {
        const h = byId.get(id)!;
        if (h.parent === null || !drop.has(h.parent)) continue;
        await ds.rewritePoint(await reparent(ds, item, id, drop));
        rewritten.push(id);
        o.afterStep?.(`rewrote ${id}`);
      }
      for (const id of [...decision.drop].reverse()) {
        await ds.removePoint(item, id);
        o.afterStep?.(`deleted ${id}`);
      }
    }
    return { item, kept: decision.keep, deleted: decision.drop, rewritten, reasons: decision.reasons };
  } finally {
    await lock?.release();
  }
}

/** The manifest of `id` over its nearest ancestor that is not being dropped (or as a base). */
async function reparent(
  ds: Datastore,
  item: ItemName,
  id: PointId,
  drop: Set<string>,
): Promise<PointManifest> {
  const chain = await ds.chain(item, id); // oldest first, ends with id
  const top = chain[chain.length - 1]!;
  let k = chain.length - 2;
  while (k >= 0 && drop.has(chain[k]!.header.id)) k--;
  if (k < 0) {
    // no kept ancestor: the point becomes a base holding its whole disks
    const disks = top.header.disks.map((d, i) => {
      const map = new DiskMap(Math.ceil(d.sizeBytes / d.blockSize));
      for (const m of chain) map.apply(m.disks[i]!);
      return map.toEntries();
    });
    return { header: { ...top.header, parent: null }, disks };
  }
  const ancestor = chain[k]!;
  const between = chain.slice(k + 1); // dropped points, then id itself
  const disks = top.header.disks.map((_, i) => {
    let e = between[0]!.disks[i]!;
    for (const m of between.slice(1)) e = mergeEntries(e, m.disks[i]!);
    return e;
  });
  return { header: { ...top.header, parent: ancestor.header.id }, disks };
}

/**
 * Deletes every point of an item (commit of a failover, disable), newest first so that a kill -9
 * midway leaves the remaining points whole. Blocks are freed by the next GC.
 */
export async function deleteItemPoints(
  ds: Datastore,
  item: ItemName,
  o: { lockWaitMs?: number } = {},
): Promise<PointId[]> {
  const lock = await ds.lock(
    "exclusive",
    `delete points of ${item}`,
    o.lockWaitMs !== undefined ? { waitMs: o.lockWaitMs } : {},
  );
  try {
    const ids = await ds.pointIds(item);
    const deleted: PointId[] = [];
    for (const id of [...ids].reverse()) {
      await ds.removePoint(item, id);
      deleted.push(id);
    }
    return deleted;
  } finally {
    await lock.release();
  }
}

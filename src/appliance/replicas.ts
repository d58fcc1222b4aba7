// Replica images (docs/vault.md, "Replicas: drills and failovers by copy-on-write"): for every item
// whose points a site's process server receives, the site keeps the item's disks as image files at
// its latest point, brought forward after every commit by writing only the blocks that changed
// between the two points (found from the points' maps; the images are not read). A drill or a
// failover then makes a machine's disk as a clone of the replica (a reflink where the file system
// has them: instant and copy-on-write; else a sparse copy) and rewrites only the blocks where the
// chosen point differs from the replica's. Data is never touched in the datastore, which stays the
// source of truth: a replica that is missing, behind, damaged or half-updated is rebuilt, and a
// disk is made from the datastore as before whenever no replica can serve it.
//
//   <root>/<datastore hash>-<item>/replica.json    { point, state, disks: [{ uuid, sizeBytes, file }] }
//   <root>/<datastore hash>-<item>/disk-<uuid>.img
//
// `state` is "updating" while images are written: a replica found so (a crash) is rebuilt whole.
// Updates and clones of one item take turns (a clone never sees a half-written image).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import {
  applyPointSince,
  type CloneMethod,
  cloneImage,
  materializePointDisk,
  withPoint,
} from "../compute/images.ts";
import { writeJsonAtomic } from "../compute/process/record.ts";
import type { Datastore } from "../datastore/datastore.ts";
import { KeyedTurns } from "../platform/turns.ts";
import type { Gate } from "./gate.ts";

interface ReplicaState {
  version: 1;
  datastore: string;
  item: string;
  point: string;
  state: "ready" | "updating";
  disks: { uuid: string; sizeBytes: number; file: string }[];
  updatedAt: string;
}

export interface PointDisk {
  /** the datastore's folder */
  datastore: string;
  item: string;
  /** a point id (not "latest") */
  point: string;
  diskUuid: string;
  sizeBytes: number;
}

export class Replicas {
  readonly root: string;
  readonly #log: Logger;
  /** per replica: the newest point asked for and not applied yet */
  readonly #wanted = new Map<string, { datastore: string; item: string; point: string }>();
  readonly #draining = new Map<string, Promise<void>>();
  /** an item's updates and clones take turns */
  readonly #turns = new KeyedTurns();

  readonly #gate: Gate | undefined;

  readonly #open: (dir: string) => Datastore | undefined;

  /**
   * `gate`: updates read the site's datastores (copies run inside the provider's own turn);
   * `datastoreOf`: the site's open datastore of a folder (its process server's: locked, its index
   * current), so an update after every point does not load the index again
   */
  constructor(o: {
    root: string;
    log: Logger;
    gate?: Gate;
    datastoreOf?: (dir: string) => Datastore | undefined;
  }) {
    this.root = path.resolve(o.root);
    this.#log = o.log;
    this.#gate = o.gate;
    this.#open = o.datastoreOf ?? (() => undefined);
  }

  #with(dir: string): { ds?: Datastore } {
    const ds = this.#open(dir);
    return ds === undefined ? {} : { ds };
  }

  #key(datastore: string, item: string): string {
    return `${createHash("sha256").update(path.resolve(datastore)).digest("hex").slice(0, 12)}-${item}`;
  }

  #folder(key: string): string {
    return path.join(this.root, key);
  }

  /** A point of the item was committed: bring its replica to it (in the background, newest first). */
  committed(datastore: string, item: string, point: string): void {
    const key = this.#key(datastore, item);
    const cur = this.#wanted.get(key);
    if (cur === undefined || point > cur.point) this.#wanted.set(key, { datastore, item, point });
    if (!this.#draining.has(key)) this.#drain(key);
  }

  #drain(key: string): void {
    const run = (async () => {
      for (;;) {
        const w = this.#wanted.get(key);
        if (w === undefined) return;
        this.#wanted.delete(key);
        // a failed update removes the replica within its own turn: a clone never meets half of one
        const update = () =>
          this.#turns.run(key, () =>
            this.#update(key, w).catch((err: unknown) => {
              this.#log.warn(
                { item: w.item, point: w.point, error: (err as Error).message },
                "replica update failed; it is rebuilt from the datastore at the next point",
              );
              rmSync(this.#folder(key), { recursive: true, force: true });
            }),
          );
        await (this.#gate === undefined ? update() : this.#gate.shared(update)).catch((err: unknown) => {
          this.#log.warn({ item: w.item, error: (err as Error).message }, "replica update did not run");
        });
      }
    })().finally(() => {
      this.#draining.delete(key);
      if (this.#wanted.has(key)) this.#drain(key); // asked for while it was finishing
    });
    this.#draining.set(key, run);
  }

  #read(key: string): ReplicaState | null {
    try {
      return JSON.parse(readFileSync(path.join(this.#folder(key), "replica.json"), "utf8")) as ReplicaState;
    } catch {
      return null;
    }
  }

  #save(key: string, st: ReplicaState): void {
    st.updatedAt = new Date().toISOString();
    writeJsonAtomic(path.join(this.#folder(key), "replica.json"), st);
  }

  async #update(key: string, w: { datastore: string; item: string; point: string }): Promise<void> {
    const st = this.#read(key);
    if (st !== null && st.state === "ready" && st.point >= w.point) return;
    const header = await withPoint(
      { datastore: w.datastore, item: w.item, point: w.point },
      "replica",
      async (_ds, _item, _id, h) => h,
      this.#with(w.datastore),
    );
    const folder = this.#folder(key);
    const disks = header.disks.map((d) => ({
      uuid: d.uuid,
      sizeBytes: d.sizeBytes,
      file: path.join(folder, `disk-${d.uuid}.img`),
    }));
    const same =
      st !== null &&
      st.state === "ready" &&
      st.disks.length === disks.length &&
      st.disks.every((d, i) => d.uuid === disks[i]!.uuid && d.sizeBytes === disks[i]!.sizeBytes) &&
      disks.every((d) => existsSync(d.file));
    const next: ReplicaState = {
      version: 1,
      datastore: w.datastore,
      item: w.item,
      point: w.point,
      state: "updating",
      disks,
      updatedAt: "",
    };
    if (same) {
      this.#save(key, { ...st, state: "updating" });
      await applyPointSince(
        { datastore: w.datastore, item: w.item, point: w.point },
        st.point,
        disks.map((d) => ({ path: d.file, uuid: d.uuid })),
        this.#with(w.datastore),
      );
    } else {
      rmSync(folder, { recursive: true, force: true });
      mkdirSync(folder, { recursive: true });
      this.#save(key, next);
      for (const d of disks) {
        const tmp = `${d.file}.partial`;
        await materializePointDisk(
          { datastore: w.datastore, item: w.item, point: w.point, diskUuid: d.uuid, sizeBytes: d.sizeBytes },
          tmp,
          this.#with(w.datastore),
        );
        renameSync(tmp, d.file);
      }
    }
    this.#save(key, { ...next, state: "ready" });
  }

  /**
   * Makes `to` disk `d.diskUuid` of point `d.point`: a clone of the replica, then the blocks where
   * the point differs from the replica's. null (and nothing at `to`) when no replica can serve it.
   */
  async copyDisk(d: PointDisk, to: string): Promise<{ method: CloneMethod; point: string } | null> {
    const key = this.#key(d.datastore, d.item);
    const base = await this.#turns.run(key, async () => {
      const st = this.#read(key);
      if (st === null || st.state !== "ready") return null;
      const disk = st.disks.find((x) => x.uuid === d.diskUuid && x.sizeBytes === d.sizeBytes);
      if (disk === undefined || !existsSync(disk.file)) return null;
      rmSync(to, { force: true });
      try {
        return { method: await cloneImage(disk.file, to), point: st.point };
      } catch (err) {
        this.#log.warn({ item: d.item, error: (err as Error).message }, "cloning the replica failed");
        rmSync(to, { force: true });
        return null;
      }
    });
    if (base === null) return null;
    try {
      if (base.point !== d.point) {
        await applyPointSince(
          { datastore: d.datastore, item: d.item, point: d.point },
          base.point,
          [{ path: to, uuid: d.diskUuid }],
          this.#with(d.datastore),
        );
      }
      return { method: base.method, point: d.point };
    } catch (err) {
      // the replica's point may be gone (pruned): the disk is made from the datastore instead
      this.#log.warn(
        { item: d.item, point: d.point, replicaPoint: base.point, error: (err as Error).message },
        "a copy from the replica failed; making the disk from the datastore",
      );
      rmSync(to, { force: true });
      return null;
    }
  }

  /** The item's points are gone (commit, disable): so is its replica. */
  async drop(datastore: string, item: string): Promise<void> {
    const key = this.#key(datastore, item);
    this.#wanted.delete(key);
    await this.#draining.get(key);
    await this.#turns.run(key, async () => rmSync(this.#folder(key), { recursive: true, force: true }));
  }

  /** Waits for the updates under way (stop, tests). */
  async idle(): Promise<void> {
    while (this.#draining.size > 0) await Promise.all([...this.#draining.values()]);
  }
}

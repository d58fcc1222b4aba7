// Where a replication session sends its point: straight into a datastore (replicate-once) or over
// the network to a process server (the agent daemon). Both see the same calls, so one engine serves both.

import { tmpdir } from "node:os";
import type { BlockWriter, Datastore } from "../datastore/datastore.ts";
import { DigestFiles } from "../datastore/digests.ts";
import type { ManifestSource, PointHeader } from "../datastore/manifest.ts";
import { type Frame, preparePackBuffers } from "../datastore/pack.ts";
import type { ItemName, PointId } from "../domain/ids.ts";

export interface PointSink {
  /** identifies the target (datastore id or process server) in the agent state */
  readonly target: string;
  latestPoint(item: ItemName): Promise<PointHeader | null>;
  /**
   * The block digests of one disk at a point, blocks [from, from + count) (count ≤ DIGESTS_MAX_BLOCKS):
   * count × 16 bytes, the first 16 of each block's address (zeros: an all-zero block). What a resync
   * compares the disk with.
   */
  digests(item: ItemName, point: PointId, disk: number, from: number, count: number): Promise<Buffer>;
  /** the digests asked for are no longer needed (a point that asked for them has ended) */
  releaseDigests?(): Promise<void>;
  /** true for each 32-byte hash in `hashes` that the target does not hold yet */
  missing(hashes: Buffer): Promise<boolean[]>;
  /** ships a frame (keep[slot] false: already stored, do not store again); returns bytes put on the wire */
  send(frame: Frame, keep?: readonly boolean[]): Promise<number>;
  /** true when send() has copied the frame's bytes by the time it resolves: the caller may reuse them */
  readonly copiesFrames?: boolean;
  /** a point that failed and will not commit: what the sink holds open for it may go */
  abandon?(): Promise<void>;
  /** makes everything sent durable, then the point visible (its manifest read from `manifest` as it is sent) */
  commit(manifest: ManifestSource): Promise<void>;
  close(): Promise<void>;
}

/**
 * A local sink writes an index file for what it has stored every this many bytes of packs: the
 * writer's record of a stored block (~110 bytes until its index file is written, ~57 in the
 * datastore's index after) is what a full copy of a big disk holds per block, and blocks in an index
 * file are not sent again by a point retried after a failure.
 */
const LOCAL_FLUSH_BYTES = 1024 * 1024 * 1024;

export class LocalSink implements PointSink {
  readonly #ds: Datastore;
  readonly #writer: BlockWriter;
  readonly #flushEvery: number;
  #flushedAt = 0;
  readonly target: string;
  /** the pack builder copies each frame into its pack as it is added */
  readonly copiesFrames = true;

  /** a resync's digests of the parent point, per item, point and disk: built once, read by range */
  readonly #digests: DigestFiles;

  /**
   * `flushEveryBytes`: how often an index file is written during a point (tests make it small);
   * `scratchDir`: where a resync's digests of the parent point go, an unlinked file of 16 bytes a
   * block of the disk (the agent state's folder, rather than a temp folder that may be in memory)
   */
  constructor(ds: Datastore, flushEveryBytes = LOCAL_FLUSH_BYTES, scratchDir = tmpdir()) {
    this.#digests = new DigestFiles(ds, () => scratchDir);
    this.#flushEvery = flushEveryBytes;
    this.#ds = ds;
    this.#writer = ds.writer();
    this.target = `datastore:${ds.config.id}`;
    // start loading the index now: its file reads overlap with the disk pass starting up
    ds.index().catch(() => {}); // a failure shows again, awaited, at the first `missing`
    // and two packs' buffers, their pages in place, so that filling them takes no page faults
    void preparePackBuffers(2);
  }

  get bytesStored(): number {
    return this.#writer.bytesWritten;
  }

  async latestPoint(item: ItemName): Promise<PointHeader | null> {
    const ids = await this.#ds.pointIds(item);
    const last = ids[ids.length - 1];
    return last === undefined ? null : this.#ds.readPointHeader(item, last);
  }

  async digests(item: ItemName, point: PointId, disk: number, from: number, count: number): Promise<Buffer> {
    return (await this.#digests.get(item, point, disk)).read(from, count);
  }

  missing(hashes: Buffer): Promise<boolean[]> {
    return this.#writer.missing(hashes);
  }

  async send(frame: Frame, keep?: readonly boolean[]): Promise<number> {
    await this.#writer.add(frame, keep);
    if (this.#writer.bytesWritten - this.#flushedAt >= this.#flushEvery) {
      this.#flushedAt = this.#writer.bytesWritten;
      await this.#writer.flush();
    }
    return frame.payload.length + frame.hashes.length;
  }

  async commit(manifest: ManifestSource): Promise<void> {
    // the manifest is written and fsynced while the last pack and the index file are, and is seen
    // only once every block it names is in a durable pack and index file
    const flushed = this.#writer.flush();
    try {
      await this.#ds.commitPoint(manifest, flushed);
    } finally {
      await flushed.catch(() => {}); // (settled either way before this returns)
    }
  }

  async close(): Promise<void> {
    await this.releaseDigests();
  }

  /** A point that failed: a pack its writer was writing out is dropped (its temporary file goes). */
  abandon(): Promise<void> {
    return this.#writer.discard();
  }

  releaseDigests(): Promise<void> {
    return this.#digests.close();
  }
}

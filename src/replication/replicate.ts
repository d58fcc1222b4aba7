// One recovery point of a machine: read its disks at one instant, ship what changed since the last
// point, commit the point, remember the hashes. Used by `replicate-once` (straight into a datastore)
// and by the agent daemon (to a process server); the sink makes the difference.
//
// How "one instant" is reached depends on what the disks are (docs/operations.md, "Consistency"):
//  - freeze: mounted file systems. A pre-copy pass runs while the machine writes; then all file
//    systems are frozen together and only what was written meanwhile is read again; then thawed.
//  - reflink: image files on a file system with copy-on-write clones: clone them all at one instant
//    (frozen, if they are mounted), read the clones at leisure.
//  - none: a raw device nobody can freeze; each block is read as it was at some moment of the pass.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  constants as fsc,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import path from "node:path";
import { BLOCK_SIZE, COMPRESSION_ZSTD } from "../datastore/format.ts";
import { HASH_BYTES, isZeroHash } from "../datastore/hash.ts";
import type { DiskHeader, EntrySource, ManifestSource } from "../datastore/manifest.ts";
import { type Frame, makeFrameOffThread, openFrame } from "../datastore/pack.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { type ItemName, newPointId, type PointId } from "../domain/ids.ts";
import { AgentState, type DiskHashes } from "./agent-state.ts";
import { type DiskInfo, inspectDisk } from "./disk-source.ts";
import { changedByExtents, extentsOf, extentsVouch } from "./extent-changes.ts";
import { Freezer, isRoot, mountPointsOf } from "./freeze.ts";
import { type HookRun, runHooks } from "./hooks.ts";
import type { ChangeJournalFactory } from "./journal.ts";
import { ParentDigests } from "./parent-digests.ts";
import { PointEntries } from "./point-entries.ts";
import { type Batch, blockCount, recycleFrame, type ScanJob, unitCount } from "./scan.ts";
import { defaultWorkers, scan } from "./scanner.ts";
import type { PointSink } from "./sink.ts";
import { changedBlocks, nativeUnitPass } from "./unit-pass.ts";

export type SnapshotMode = "auto" | "freeze" | "reflink" | "none";

/**
 * The stretch from the pre-snapshot hooks to the post-snapshot hooks (file systems frozen in between).
 * A process that has to exit waits for it to end rather than leave an application quiesced.
 */
let quiescedUntil: Promise<void> | null = null;

export function quiescedSection(): Promise<void> | null {
  return quiescedUntil;
}

async function quiesced<T>(fn: () => Promise<T>): Promise<T> {
  let done = () => {};
  quiescedUntil = new Promise<void>((r) => {
    done = r;
  });
  try {
    return await fn();
  } finally {
    quiescedUntil = null;
    done();
  }
}

/** Batches being shipped at once (each asks `missing`, then sends its frame). */
const SHIP_WINDOW = 16;

/** Seam for kernel change tracking: which 64 KiB units were written since start. */
export interface WriteTracker {
  /** per disk, ascending [fromUnit, toUnit) ranges written since start, or null when it cannot vouch for them */
  collect(): Promise<([number, number][] | null)[]>;
  stop(): Promise<void>;
  /** why it could not vouch for a disk, or could not start; copied into the point's warnings */
  readonly warnings?: readonly string[];
}
export type WriteTrackerFactory = (disks: DiskInfo[]) => Promise<WriteTracker | null>;

export interface ReplicateOptions {
  item: ItemName;
  disks: string[];
  stateDir: string;
  sink: PointSink;
  consistency: "crash" | "app";
  hooksDir?: string;
  hookTimeoutMs?: number;
  snapshot?: SnapshotMode;
  /** explicit mount points to freeze (default: found from the disks) */
  freezeMounts?: string[];
  tracker?: WriteTrackerFactory;
  /** change tracking between points (journal.ts): a pass then reads only what was written since the last point */
  journal?: ChangeJournalFactory;
  workers?: number;
  /** entries a disk keeps in memory before they move to a scratch file (point-entries.ts); for tests */
  entriesInMemory?: number;
  /**
   * false: compare whole-disk passes in JavaScript even where the addon could (unit-pass.ts); for
   * tests that hold the two to the same results
   */
  nativeUnitPass?: boolean;
  onProgress?: (p: { bytesRead: number; totalBytes: number }) => void;
  /**
   * the disks' identities from the machine's identity label: a point then describes its disks by
   * them, so that the machine's copy at another site is recognised by the same ones
   */
  diskUuids?: readonly string[];
}

export interface ReplicateResult {
  pointId: PointId;
  parent: PointId | null;
  item: ItemName;
  mode: "full" | "incremental" | "resync";
  consistency: "crash" | "app";
  snapshot: "freeze" | "reflink" | "none";
  bytesRead: number;
  bytesSent: number;
  /**
   * bytes of data blocks compressed (zstd) for the point, by the passes' workers or, for a resync's
   * blocks that differ from its parent's, after the comparison
   */
  bytesCompressed: number;
  changedBlocks: number;
  blockSize: number;
  durationMs: number;
  /** longest time the file systems stayed frozen: from the first freeze to the last thaw */
  maxFreezeMs: number;
  /** 64 KiB units read again while frozen (freeze mode; the whole disks without a write tracker) */
  frozenUnits: number;
  /** disks whose frozen re-read the write tracker narrowed down */
  trackedDisks: number;
  /** disks whose pass the write journal narrowed down to what was written since the last point */
  journaledDisks: number;
  /** image files whose changes the extents of the last point's reflink clone told (read only where they moved) */
  extentDisks: number;
  /** where `durationMs` went, in ms: see `PointPhases` */
  phasesMs: PointPhases;
  warnings: string[];
  hooks: HookRun[];
  disks: { uuid: string; path: string; sizeBytes: number; changedBlocks: number }[];
}

/**
 * Where a point's time went, in milliseconds (rounded): `prepare` (disks, history, agent state, the
 * write journal opened), `journal` (the journal drained), `passes` (reading, hashing, compressing and
 * shipping, freezes and hooks included), `commit` (the point's last packs, index and manifest made
 * durable) and `state` (the agent state and the journal advanced).
 */
export interface PointPhases {
  prepare: number;
  journal: number;
  passes: number;
  commit: number;
  state: number;
}

/**
 * Collects the entries of one disk across passes; a later pass's entry for a block wins. For a base
 * point (the item's first), a zero block that has no entry yet is not kept at all: a base point lists
 * no zeros, and holding 44 bytes for each block of an empty disk was ~1 GB for a sparse 64 GiB image.
 */
export async function replicateOnce(o: ReplicateOptions): Promise<ReplicateResult> {
  const started = performance.now();
  const createdAt = new Date();
  const pointId = newPointId(createdAt, randomBytes(3));
  const infos = o.disks.map(inspectDisk);
  const warnings: string[] = [];
  const hookRuns: HookRun[] = [];

  // identity and history
  const latest = await o.sink.latestPoint(o.item);
  let state = AgentState.load(o.stateDir);
  if (state === null) {
    state = AgentState.enable(o.stateDir, o.item, infos, o.diskUuids);
    if (latest !== null && o.diskUuids === undefined) adoptIdentity(state, latest.disks, infos);
  }
  state.checkDisks(infos);
  const diskUuids = infos.map((_, i) => state.machine.disks[i]!.uuid);
  if (latest !== null) {
    const mismatch = latest.disks.some((d, i) => state.machine.disks[i]?.uuid !== d.uuid);
    if (mismatch || latest.disks.length !== infos.length) {
      throw new SwitchbackError(
        "ITEM_IDENTITY_MISMATCH",
        `the datastore's points of item ${o.item} belong to other disks (uuids ${latest.disks.map((d) => d.uuid).join(", ")}); use another item name or the agent state that enabled it`,
      );
    }
  }
  /** every disk's hashes opened (files and a lock): released by the commit, or at the end if it fails */
  const opened: DiskHashes[] = [];
  const open = <T extends DiskHashes | null>(h: T): T => {
    if (h !== null) opened.push(h);
    return h;
  };
  /** every disk's entries (a scratch file when they outgrew memory): closed at the end */
  const collectors: PointEntries[] = [];
  let committed = false;
  /**
   * a reflink point's clones until they become the next point's bases (removed if the point fails),
   * and the last point's bases they replace
   */
  let reflink: { clones: string[]; bases: string[] } | null = null;
  /** disks whose changes the extents of the last point's clone told */
  let extentDisks = 0;
  try {
    let prev: (DiskHashes | null)[] = infos.map(() => null);
    let mode: ReplicateResult["mode"] = "full";
    if (latest !== null) {
      const trusted = state.machine.lastPointId === latest.id && state.machine.target === o.sink.target;
      prev = trusted ? infos.map((_, i) => open(state.loadHashes(i))) : prev;
      mode = prev.every((p) => p !== null) ? "incremental" : "resync";
      if (mode === "resync") {
        for (const p of prev) if (p !== null) state.release(p);
        prev = infos.map(() => null);
      }
    }
    // a pass updates the previous unit hashes in place (it reads a slot before it writes it), so
    // units it skips keep theirs, and reads block hashes from the last point's file or from what this
    // point wrote; they are saved only once the point is committed
    const next = infos.map((_, i) => prev[i] ?? open(state.freshHashes(i)));
    for (const d of infos) {
      collectors.push(
        new PointEntries(blockCount(d.sizeBytes), latest === null, o.stateDir, o.entriesInMemory),
      );
    }

    const threads = o.workers ?? defaultWorkers();
    // shipping
    let bytesRead = 0;
    let bytesSent = 0;
    let bytesCompressed = 0;
    const totalBytes = infos.reduce((s, d) => s + d.sizeBytes, 0);
    /** `missing` for the blocks not `held` (those are not missing); all of them without `held` */
    const missingOf = async (hashes: Buffer, held: Uint8Array | null): Promise<boolean[]> => {
      if (held === null) return o.sink.missing(hashes);
      const ask: number[] = [];
      for (let k = 0; k < held.length; k++) if (held[k] === 0) ask.push(k);
      const out: boolean[] = new Array(held.length).fill(false);
      if (ask.length === 0) return out;
      const sub = Buffer.allocUnsafe(ask.length * HASH_BYTES);
      ask.forEach((k, j) => {
        hashes.copy(sub, j * HASH_BYTES, k * HASH_BYTES, (k + 1) * HASH_BYTES);
      });
      const answer = await o.sink.missing(sub);
      ask.forEach((k, j) => {
        out[k] = answer[j]!;
      });
      return out;
    };
    /**
     * A resync's parent, per disk: its block digests, fetched as the first pass reaches them. A block
     * as it was in the parent is neither an entry of the point nor asked about (`missing`): the
     * parent's blocks are stored. Only a point's first pass compares, which reads every disk whole (a
     * resync has no journal to trust); the frozen re-read after it makes each block it reads an entry,
     * as in any pass: a few of them may be as in the parent, which costs them a `missing` question and
     * an entry, never a wrong point.
     */
    const parents =
      mode === "resync" && latest !== null
        ? infos.map(
            (d, i) =>
              new ParentDigests(
                (from, count) => o.sink.digests(o.item, latest.id, i, from, count),
                blockCount(d.sizeBytes),
              ),
          )
        : null;
    /** per disk: the pass under way compares it with its parent */
    let comparing = infos.map(() => false);
    let passes = 0;
    const ship = async (b: Batch): Promise<void> => {
      bytesRead += b.bytesRead;
      const c = collectors[b.disk]!;
      const parent = comparing[b.disk] ? parents![b.disk]! : null;
      // per data block: the parent has it at this very place (so the target holds it)
      let held: Uint8Array | null = null;
      if (parent === null || b.blocks.length === 0) {
        for (let i = 0; i < b.blocks.length; i++) c.add(b.blocks[i]!, b.hashes, i * HASH_BYTES);
      } else {
        const same = await parent.same(b.blocks, b.hashes);
        held = new Uint8Array(b.dataBlocks);
        for (let i = 0, k = 0; i < b.blocks.length; i++) {
          const at = i * HASH_BYTES;
          if (same[i] === 1) c.drop(b.blocks[i]!);
          else c.add(b.blocks[i]!, b.hashes, at);
          if (isZeroHash(b.hashes, at)) continue;
          if (same[i] === 1) held[k] = 1;
          k++;
        }
      }
      if (b.dataBlocks > 0) {
        const missing = await missingOf(b.dataHashes, held);
        const n = missing.filter(Boolean).length;
        let frame: Frame | null = null;
        if (n === b.dataBlocks && (parent === null || b.compression === COMPRESSION_ZSTD)) {
          frame = {
            hashes: b.dataHashes,
            payload: b.payload,
            compression: b.compression,
            blocks: b.dataBlocks,
          };
        } else if (n === b.dataBlocks) {
          // a comparing pass's frames come raw, not yet compressed (`compress: false`)
          frame = await makeFrameOffThread(b.dataHashes, b.payload);
        } else if (n > 0) {
          // some blocks are stored already (dedup), or as in the parent: ship a frame of the others only
          const all = openFrame(b.payload, b.compression, b.dataBlocks, "batch");
          const hs = Buffer.allocUnsafe(n * HASH_BYTES);
          const raw = Buffer.allocUnsafe(n * BLOCK_SIZE);
          let k = 0;
          missing.forEach((m, s) => {
            if (!m) return;
            b.dataHashes.copy(hs, k * HASH_BYTES, s * HASH_BYTES, (s + 1) * HASH_BYTES);
            all.copy(raw, k * BLOCK_SIZE, s * BLOCK_SIZE, (s + 1) * BLOCK_SIZE);
            k++;
          });
          frame = await makeFrameOffThread(hs, raw);
        }
        if (b.compression === COMPRESSION_ZSTD) bytesCompressed += b.dataBlocks * BLOCK_SIZE;
        if (frame?.compression === COMPRESSION_ZSTD && frame.payload !== b.payload) {
          bytesCompressed += frame.blocks * BLOCK_SIZE;
        }
        if (frame !== null) {
          // not `bytesSent += await …`: that reads bytesSent before the await and loses concurrent updates
          const sent = await o.sink.send(frame);
          bytesSent += sent;
        }
        // the batch's payload was copied where it goes (or not needed): its buffer stages the next frames
        if (o.sink.copiesFrames === true || frame === null || frame.payload.buffer !== b.payload.buffer) {
          recycleFrame(b.payload);
        }
      }
      o.onProgress?.({ bytesRead, totalBytes });
    };
    /** `ranges`: per disk, the units to read (null: all of them); with `blocks`, the 4 KiB blocks */
    const pass = async (
      disks: DiskInfo[],
      ranges: ([number, number][] | null)[],
      from: (DiskHashes | null)[],
      blocks = false,
    ) => {
      comparing = disks.map((_, i) => parents !== null && passes === 0 && ranges[i] == null);
      passes++;
      // every disk's comparing pass settles before a failure is thrown: the files they read stay open
      const settled = await Promise.allSettled(
        disks.map(async (info, i): Promise<ScanJob> => {
          const units = ranges[i] == null || !blocks;
          const job: ScanJob = {
            disk: i,
            info,
            seed: state.seed(i),
            ...(ranges[i] == null
              ? { ranges: [[0, unitCount(info.sizeBytes)]] as [number, number][] }
              : { ranges: ranges[i]!, blocks }),
            hashes: next[i]!.blocks,
            compare: from[i] != null,
            compress: !comparing[i],
            prevUnit: from[i]?.unit ?? null,
            nextUnit: next[i]!.unit,
          };
          const was = from[i];
          // (the native pass writes no hash of an unchanged unit or block: it relies on the pass
          // updating the previous hashes in place)
          if (!units || was == null || was !== next[i] || !nativeUnitPass() || o.nativeUnitPass === false)
            return job;
          // compared natively; then only the changed blocks are read again, as a journal's are, and
          // compared with nothing: each of them is an entry of the point
          const changed = await changedBlocks(info, job.ranges, job.seed, was, threads, (n) => {
            bytesRead += n;
            o.onProgress?.({ bytesRead, totalBytes });
          });
          return { ...job, ranges: changed, blocks: true, compare: false, prevUnit: null };
        }),
      );
      const refused = settled.find((r) => r.status === "rejected");
      if (refused !== undefined) throw refused.reason;
      const jobs = settled.map((r) => (r as PromiseFulfilledResult<ScanJob>).value);
      // batches are shipped with a window of them in flight: over a WAN, asking `missing` and waiting
      // for the answer batch by batch would cost a round trip per 128 KiB
      const inflight = new Set<Promise<void>>();
      let failed: unknown = null;
      try {
        for await (const b of scan(jobs, o.workers)) {
          if (failed !== null) throw failed;
          const p: Promise<void> = ship(b).then(
            () => {
              inflight.delete(p);
            },
            (err: unknown) => {
              inflight.delete(p);
              failed ??= err;
            },
          );
          inflight.add(p);
          if (inflight.size >= SHIP_WINDOW) await Promise.race(inflight);
        }
      } finally {
        // a failed pass ends only once its ships have: none may still ask the sink for anything (a
        // resync's digests are released as the point ends)
        await Promise.all(inflight);
      }
      if (failed !== null) throw failed;
    };

    const hookEnv = { SWITCHBACK_ITEM: o.item, SWITCHBACK_POINT_ID: pointId };
    let consistency = o.consistency;
    const preHooks = async () => {
      if (o.consistency !== "app") return;
      if (o.hooksDir === undefined) {
        warnings.push(
          "app-consistent point requested but no hooks folder is configured; the point is crash-consistent",
        );
        consistency = "crash";
        return;
      }
      const runs = await runHooks(o.hooksDir, "pre-snapshot", hookEnv, o.hookTimeoutMs ?? 30_000);
      hookRuns.push(...runs);
      const bad = runs.filter((r) => !r.ok);
      if (runs.length === 0) {
        warnings.push(`no pre-snapshot hooks found in ${o.hooksDir}; the point is crash-consistent`);
        consistency = "crash";
      }
      for (const r of bad) {
        warnings.push(`pre-snapshot hook ${r.hook} ${r.detail}; the point is crash-consistent`);
        consistency = "crash";
      }
    };
    const postHooks = async () => {
      if (o.consistency !== "app" || o.hooksDir === undefined) return;
      const runs = await runHooks(o.hooksDir, "post-snapshot", hookEnv, o.hookTimeoutMs ?? 30_000);
      hookRuns.push(...runs);
      for (const r of runs.filter((x) => !x.ok)) warnings.push(`post-snapshot hook ${r.hook} ${r.detail}`);
    };

    // the instant
    const snapshot = chooseSnapshot(o.snapshot ?? "auto", infos, o.freezeMounts);
    // clones a reflink point kept for the next one are of no use to a point taken otherwise
    if (snapshot.kind !== "reflink") warnings.push(...sweepStaleClones(infos, diskUuids, []));
    // the write journal follows block devices (and loop-attached images); a reflink point reads its clones
    const journal =
      o.journal !== undefined && snapshot.kind !== "reflink" ? await o.journal(o.stateDir, infos) : null;
    let journaledDisks = 0;
    /** what a pass reads first: per disk, the 4 KiB blocks written since the last point, or null (everything) */
    const phases: PointPhases = { prepare: 0, journal: 0, passes: 0, commit: 0, state: 0 };
    let mark = started;
    /** ends the phase under way: adds its time to `phases[name]` */
    const lap = (name: keyof PointPhases): void => {
      const now = performance.now();
      phases[name] += now - mark;
      mark = now;
    };
    lap("prepare");
    const sinceLast = async (): Promise<([number, number][] | null)[]> => {
      if (journal === null) return infos.map(() => null);
      const r = await journal.since(mode === "incremental" ? state.machine.lastPointId : null);
      journaledDisks = r.filter((x) => x !== null).length;
      warnings.push(...journal.warnings);
      lap("journal");
      return r;
    };
    try {
      let maxFreezeMs = 0;
      let frozenUnits = 0;
      let trackedDisks = 0;
      if (snapshot.kind === "freeze") {
        // the write tracker starts before the journal is read: between them they miss no write
        const tracker = o.tracker ? await o.tracker(infos) : null;
        try {
          await pass(infos, await sinceLast(), prev, true); // pre-copy while the machine runs
          await quiesced(async () => {
            await preHooks();
            // post hooks run even when the freeze or the frozen copy fails: never leave an application quiesced
            try {
              const freezer = new Freezer(snapshot.mounts);
              // nothing may write to a file system that may be frozen: the journal stops draining
              // (and a drain under way ends) before the freeze
              await journal?.pause?.();
              try {
                freezer.freeze();
                try {
                  await faultPauseFrozen();
                  // the tracker is drained only now: the freeze has flushed the file systems, so their last
                  // writes are in the trace (docs/consistency.md)
                  const written = tracker ? await tracker.collect() : infos.map(() => null);
                  frozenUnits = written.reduce(
                    (s, r, i) =>
                      s +
                      (r === null ? unitCount(infos[i]!.sizeBytes) : r.reduce((t, [a, b]) => t + (b - a), 0)),
                    0,
                  );
                  trackedDisks = written.filter((r) => r !== null).length;
                  await pass(infos, written, next); // only what changed during the pre-copy (everything, without a tracker)
                } finally {
                  maxFreezeMs = freezer.thaw();
                }
              } finally {
                journal?.resume?.();
              }
            } finally {
              await postHooks();
            }
          });
        } finally {
          if (tracker?.warnings) warnings.push(...tracker.warnings);
          await tracker?.stop();
        }
      } else if (snapshot.kind === "reflink") {
        // the last point's clones, kept: where their extents and this point's agree, nothing changed
        const bases =
          mode === "incremental"
            ? infos.map((d, i) => cloneOf(d, baseTag(state.machine.lastPointId!, diskUuids[i]!)))
            : [];
        warnings.push(...sweepStaleClones(infos, diskUuids, bases));
        const clones = infos.map((d, i) => cloneOf(d, `${pointId}-${diskUuids[i]}`));
        reflink = { clones, bases };
        await quiesced(async () => {
          await preHooks();
          try {
            const freezer = snapshot.mounts.length > 0 ? new Freezer(snapshot.mounts) : null;
            freezer?.freeze();
            try {
              infos.forEach((d, i) => {
                copyFileSync(d.path, clones[i]!, fsc.COPYFILE_FICLONE_FORCE);
              });
            } finally {
              if (freezer) maxFreezeMs = freezer.thaw();
            }
          } finally {
            await postHooks();
          }
        });
        const moved = infos.map((d, i) =>
          bases[i] === undefined ? null : changedSince(bases[i], clones[i]!, d.sizeBytes),
        );
        extentDisks = moved.filter((m) => m !== null).length;
        await pass(
          infos.map((d, i) => ({ ...d, path: clones[i]! })),
          moved,
          prev,
          true,
        );
      } else {
        await quiesced(async () => {
          await preHooks();
          try {
            await pass(infos, await sinceLast(), prev, true);
          } finally {
            await postHooks();
          }
        });
        if (snapshot.why) warnings.push(snapshot.why);
      }

      lap("passes");
      // the point (a resync's entries are only what differs from the parent: the rest was dropped)
      const disks: EntrySource[] = collectors.map((c) => c.source(latest === null));
      const headers: DiskHeader[] = infos.map((d, i) => ({
        uuid: state.machine.disks[i]!.uuid,
        sizeBytes: d.sizeBytes,
        sectorSize: d.sectorSize,
        blockSize: BLOCK_SIZE,
        entries: disks[i]!.count,
        source: d.path,
      }));
      const changedBlocks = disks.reduce((s, d) => s + d.count, 0);
      const durationMs = Math.round(performance.now() - started);
      const manifest: ManifestSource = {
        header: {
          version: 1,
          item: o.item,
          id: pointId,
          parent: latest?.id ?? null,
          createdAt: createdAt.toISOString(),
          consistency,
          warnings,
          disks: headers,
          stats: {
            bytesRead,
            bytesSent,
            changedBlocks,
            durationMs,
            maxFreezeMs: round2(maxFreezeMs),
            frozenUnits,
            trackedDisks,
          },
        },
        disks,
      };
      // without the addon's locks another process could have updated a hash file in place under the
      // passes: then they may have compared with mixed hashes, and the point must not be
      for (const h of next) {
        if (!state.stillAsLoaded(h)) {
          throw new SwitchbackError(
            "AGENT_STATE_CHANGED",
            `another point of item ${o.item} updated the agent state in ${o.stateDir} while this one ran; this point was not committed (run one point of an item at a time)`,
          );
        }
      }
      await o.sink.commit(manifest);
      lap("commit");
      committed = true;
      state.commit(pointId, o.sink.target, next);
      // this point's clones become the bases the next one compares extents with (the last bases go)
      if (reflink !== null) {
        const { clones, bases } = reflink;
        reflink = null;
        infos.forEach((d, i) => {
          try {
            renameSync(clones[i]!, cloneOf(d, baseTag(pointId, diskUuids[i]!)));
          } catch (err) {
            rmSync(clones[i]!, { force: true });
            warnings.push(
              `clone of ${d.path} not kept (${(err as Error).message}); the next point reads the disk whole`,
            );
          }
          const old = bases[i];
          if (old === undefined) return;
          try {
            rmSync(old, { force: true });
          } catch (err) {
            warnings.push(`old clone ${old} not removed (${(err as Error).message})`);
          }
        });
      }
      // the point is committed whatever happens here: a journal not advanced is re-armed next time
      try {
        await journal?.committed(pointId);
      } catch (err) {
        warnings.push(
          `write journal not advanced (${(err as Error).message}); the next point reads the disks whole`,
        );
      }
      // (what the journal found while the point ran: a drain that lost track, say)
      for (const w of journal?.warnings ?? []) if (!warnings.includes(w)) warnings.push(w);
      lap("state");
      return {
        pointId,
        parent: latest?.id ?? null,
        item: o.item,
        mode,
        consistency,
        snapshot: snapshot.kind,
        bytesRead,
        bytesSent,
        bytesCompressed,
        changedBlocks,
        blockSize: BLOCK_SIZE,
        durationMs: Math.round(performance.now() - started),
        maxFreezeMs: round2(maxFreezeMs),
        frozenUnits,
        trackedDisks,
        journaledDisks,
        extentDisks,
        phasesMs: {
          prepare: Math.round(phases.prepare),
          journal: Math.round(phases.journal),
          passes: Math.round(phases.passes),
          commit: Math.round(phases.commit),
          state: Math.round(phases.state),
        },
        warnings,
        hooks: hookRuns,
        disks: infos.map((d, i) => ({
          uuid: state.machine.disks[i]!.uuid,
          path: d.path,
          sizeBytes: d.sizeBytes,
          changedBlocks: disks[i]!.count,
        })),
      };
    } finally {
      await journal?.release(); // a point that failed leaves the journal to the next one
    }
  } finally {
    // a point that failed leaves the hash files as they were (commit releases them otherwise)
    if (!committed) for (const h of opened) state.release(h);
    if (!committed) await o.sink.abandon?.();
    for (const c of collectors) c.close();
    for (const c of reflink?.clones ?? []) rmSync(c, { force: true });
    await o.sink.releaseDigests?.();
  }
}

/**
 * Test-only fault injection: SWITCHBACK_FAULT_PAUSE_FROZEN_MS=N sleeps N ms while the file systems are
 * frozen (after saying so on stderr), so a test can kill -9 the process there and watch the freeze
 * watchdog thaw them. Never set it in production.
 */
async function faultPauseFrozen(): Promise<void> {
  const ms = Number(process.env.SWITCHBACK_FAULT_PAUSE_FROZEN_MS ?? 0);
  if (!(ms > 0)) return;
  process.stderr.write(`switchback: fault injection: frozen, pausing ${ms} ms\n`);
  await new Promise((r) => setTimeout(r, ms));
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** With no agent state but points in the datastore (a lost state, or reprotect), take the disks' identities from the points. */
function adoptIdentity(state: AgentState, disks: DiskHeader[], infos: DiskInfo[]): void {
  if (disks.length !== infos.length) return;
  if (disks.some((d, i) => d.sizeBytes !== infos[i]!.sizeBytes)) return;
  state.machine.disks.forEach((d, i) => {
    d.uuid = disks[i]!.uuid;
  });
  state.saveMachine();
}

type Snapshot =
  | { kind: "freeze"; mounts: string[] }
  | { kind: "reflink"; mounts: string[] }
  | { kind: "none"; why?: string };

function chooseSnapshot(mode: SnapshotMode, infos: DiskInfo[], explicit?: string[]): Snapshot {
  const mounts = explicit ?? (isRoot() ? safeMounts(infos) : []);
  switch (mode) {
    case "none":
      return { kind: "none" };
    case "freeze":
      if (mounts.length === 0) {
        throw new SwitchbackError(
          "FREEZE_NOTHING_MOUNTED",
          `snapshot mode freeze: no mounted file system found on ${infos.map((d) => d.path).join(", ")}`,
        );
      }
      return { kind: "freeze", mounts };
    case "reflink":
      if (infos.some((d) => d.kind !== "file")) {
        throw new SwitchbackError(
          "REFLINK_NEEDS_FILES",
          "snapshot mode reflink works on disk image files only",
        );
      }
      return { kind: "reflink", mounts };
    case "auto": {
      if (mounts.length > 0) return { kind: "freeze", mounts };
      if (infos.every((d) => d.kind === "file") && infos.every(canReflink))
        return { kind: "reflink", mounts: [] };
      return { kind: "none" };
    }
    default: {
      const never: never = mode;
      throw new Error(`unknown snapshot mode ${String(never)}`);
    }
  }
}

function safeMounts(infos: DiskInfo[]): string[] {
  try {
    return mountPointsOf(infos);
  } catch {
    return [];
  }
}

const reflinkCache = new Map<string, boolean>();
function canReflink(d: DiskInfo): boolean {
  const dir = path.dirname(d.path);
  let ok = reflinkCache.get(dir);
  if (ok === undefined) {
    const probe = path.join(dir, `.switchback-reflink-probe-${process.pid}`);
    try {
      copyFileSync(d.path, probe, fsc.COPYFILE_FICLONE_FORCE);
      ok = true;
    } catch {
      ok = false;
    } finally {
      rmSync(probe, { force: true });
    }
    reflinkCache.set(dir, ok);
  }
  return ok;
}

/** a clone of another machine's disk (another agent state's uuid) is left alone for this long */
const FOREIGN_CLONE_STALE_MS = 7 * 24 * 3600 * 1000;

/**
 * Removes the clones of this machine's disks beside the images but `keep` (those an agent killed
 * during a reflink point left, and kept ones of no more use): a clone's name ends with its disk's
 * uuid. Another machine's (another item replicating the same image) are left to it, unless nothing
 * wrote them for FOREIGN_CLONE_STALE_MS (their item is gone); so are names this version does not
 * make, older versions' clones (no uuid) but for the same week. Returns a warning for each clone it
 * could not remove (they only cost space).
 */
function sweepStaleClones(infos: DiskInfo[], uuids: readonly string[], keep: readonly string[]): string[] {
  const warnings: string[] = [];
  const now = Date.now();
  for (const d of infos) {
    if (d.kind !== "file") continue;
    const dir = path.dirname(d.path);
    const prefix = `.${path.basename(d.path)}.switchback-`;
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const f = path.join(dir, n);
      if (!n.startsWith(prefix) || keep.includes(f)) continue;
      if (!uuids.some((u) => n.endsWith(`-${u}`))) {
        let age = 0;
        try {
          age = now - statSync(f).mtimeMs;
        } catch {
          continue;
        }
        if (age < FOREIGN_CLONE_STALE_MS) continue;
      }
      try {
        rmSync(f, { force: true });
      } catch (err) {
        warnings.push(`old clone ${f} not removed (${(err as Error).message})`);
      }
    }
  }
  return warnings;
}

/**
 * The clone of an image file beside it: `.<name>.switchback-<tag>`, the tag a point's id and the disk's
 * uuid (a point's own clone) or baseTag (a committed point's, kept). The uuid ties a kept clone to the
 * disk whose hashes the agent state holds: the same image given as another disk finds none.
 */
function cloneOf(d: DiskInfo, tag: string): string {
  return path.join(path.dirname(d.path), `.${path.basename(d.path)}.switchback-${tag}`);
}

function baseTag(pointId: string, uuid: string): string {
  return `base-${pointId}-${uuid}`;
}

/**
 * The blocks of `clone` placed otherwise than in `base` (the last point's clone of the same image), as
 * block ranges; null (read it whole) when there is no such base or its extents cannot be had.
 */
function changedSince(base: string, clone: string, sizeBytes: number): [number, number][] | null {
  let b = -1;
  let c = -1;
  try {
    b = openSync(base, "r");
    c = openSync(clone, "r");
    const was = extentsOf(b);
    const now = was === null ? null : extentsOf(c);
    // (read again: a defragmenter that moved the kept clone's blocks meanwhile makes its first answer worthless)
    const still = now === null ? null : extentsOf(b);
    if (was === null || now === null || still === null || !sameExtents(was, still)) return null;
    if (!extentsVouch(b, c)) return null;
    return changedByExtents(was, now, sizeBytes);
  } catch {
    return null;
  } finally {
    if (b >= 0) closeSync(b);
    if (c >= 0) closeSync(c);
  }
}

function sameExtents(a: Float64Array, b: Float64Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

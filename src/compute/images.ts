// Disk image files for compute providers and the master target: clone one (reflink, or a sparse copy),
// make a blank one, write a recovery point into one (full: a new sparse image; delta: only the blocks
// that differ). Point writes go through restoreDisk, so every block taken from the datastore is
// checked against its address and the image is read back and compared afterwards.
import { constants as fsc } from "node:fs";
import { copyFile, open, rm } from "node:fs/promises";
import { Datastore } from "../datastore/datastore.ts";
import { BLOCK_SIZE } from "../datastore/format.ts";
import { isAllZero } from "../datastore/hash.ts";
import type { PointHeader } from "../datastore/manifest.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { type ItemName, type PointId, parseItemName, parsePointId } from "../domain/ids.ts";
import { inspectDisk } from "../replication/disk-source.ts";
import { latestPoint, restoreDisk } from "../replication/restore.ts";

export type CloneMethod = "reflink" | "sparse-copy";

/**
 * Copies `src` to `dst` (which must not exist): a reflink clone when the file system shares extents
 * (btrfs, XFS: instant, no space), else a copy that leaves all-zero 4 KiB blocks as holes. Not
 * COPYFILE_FICLONE: its fallback is a plain copy that writes every zero block.
 */
export async function cloneImage(
  src: string,
  dst: string,
  onBytes?: (done: number, total: number) => void,
): Promise<CloneMethod> {
  const info = inspectDisk(src);
  if (info.kind === "file") {
    try {
      await copyFile(src, dst, fsc.COPYFILE_EXCL | fsc.COPYFILE_FICLONE_FORCE);
      onBytes?.(info.sizeBytes, info.sizeBytes);
      return "reflink";
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EXDEV: another file system; the others: no reflink here
      if (!["ENOTSUP", "EOPNOTSUPP", "EXDEV", "EINVAL", "ENOSYS", "ENOTTY"].includes(code ?? "")) throw err;
      await rm(dst, { force: true });
    }
  }
  await sparseCopy(src, dst, info.sizeBytes, onBytes);
  return "sparse-copy";
}

const COPY_CHUNK = 1024 * 1024;

/** Copies `size` bytes of `src` into a new file `dst`, skipping all-zero 4 KiB blocks (they stay holes); fsyncs. */
export async function sparseCopy(
  src: string,
  dst: string,
  size: number,
  onBytes?: (done: number, total: number) => void,
): Promise<{ bytesWritten: number }> {
  const from = await open(src, "r");
  try {
    const to = await open(dst, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    try {
      await to.truncate(size);
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      let bytesWritten = 0;
      for (let pos = 0; pos < size; pos += COPY_CHUNK) {
        const want = Math.min(COPY_CHUNK, size - pos);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await from.read(buf, got, want - got, pos + got);
          if (bytesRead === 0) {
            throw new SwitchbackError(
              "CLONE_SOURCE_SHORT",
              `${src} ended at byte ${pos + got} while copying ${size} bytes; was it truncated during the copy?`,
            );
          }
          got += bytesRead;
        }
        // runs of non-zero blocks go out in one write each
        let b = 0;
        while (b < want) {
          const end = Math.min(b + BLOCK_SIZE, want);
          if (isAllZero(buf.subarray(b, end))) {
            b = end;
            continue;
          }
          let runEnd = end;
          while (runEnd < want) {
            const next = Math.min(runEnd + BLOCK_SIZE, want);
            if (isAllZero(buf.subarray(runEnd, next))) break;
            runEnd = next;
          }
          await writeAll(to, buf.subarray(b, runEnd), pos + b, dst);
          bytesWritten += runEnd - b;
          b = runEnd;
        }
        onBytes?.(pos + want, size);
      }
      await to.sync();
      return { bytesWritten };
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/** A new all-zero image of `size` bytes that takes no space (a hole). */
export async function blankImage(dst: string, size: number): Promise<void> {
  if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
    throw new SwitchbackError(
      "DISK_SIZE_INVALID",
      `a blank disk of ${size} bytes cannot be made; give a positive whole number of 512-byte sectors`,
    );
  }
  const f = await open(dst, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
  try {
    await f.truncate(size);
    await f.sync();
  } finally {
    await f.close();
  }
}

async function writeAll(
  f: Awaited<ReturnType<typeof open>>,
  data: Buffer,
  at: number,
  name: string,
): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await f.write(data, done, data.length - done, at + done);
    if (bytesWritten === 0) {
      throw new SwitchbackError(
        "DISK_WRITE_SHORT",
        `writing ${name} at byte ${at + done} wrote nothing; is the disk full?`,
      );
    }
    done += bytesWritten;
  }
}

/** A recovery point in a local datastore. */
export interface PointRef {
  datastore: string;
  item: string;
  /** a point id, or "latest" */
  point: string;
}

/**
 * Opens the datastore, takes a shared lock (prune and GC must not remove the point's blocks while
 * they are read), resolves the point once ("latest" means the same point for every disk), runs `fn`.
 */
export async function withPoint<T>(
  ref: PointRef,
  purpose: string,
  fn: (ds: Datastore, item: ItemName, pointId: PointId, header: PointHeader) => Promise<T>,
  o: { ds?: Datastore } = {},
): Promise<T> {
  const item = parseItemName(ref.item);
  const run = async (ds: Datastore) => {
    const pointId = ref.point === "latest" ? await latestPoint(ds, item) : parsePointId(ref.point);
    const header = await ds.readPointHeader(item, pointId);
    return fn(ds, item, pointId, header);
  };
  // an open datastore given: its owner (a site's process server) holds the lock and keeps its index
  if (o.ds !== undefined) return run(o.ds);
  const ds = await Datastore.open(ref.datastore);
  try {
    const lock = await ds.lock("shared", `${purpose} ${item}`);
    try {
      return await run(ds);
    } finally {
      await lock.release();
    }
  } finally {
    await ds.close();
  }
}

/** The point id `ref` means now ("latest" resolved). */
export async function resolvePoint(ref: PointRef): Promise<PointId> {
  return withPoint(ref, "resolve point", async (_ds, _item, pointId) => pointId);
}

/** The position of the disk with `uuid` in a point. */
export function diskIndexOf(header: PointHeader, uuid: string, datastore: string): number {
  const i = header.disks.findIndex((d) => d.uuid === uuid);
  if (i < 0) {
    throw new SwitchbackError(
      "POINT_DISK_NOT_FOUND",
      `point ${header.id} of item ${header.item} in ${datastore} has no disk with uuid ${uuid} (its disks: ${header.disks.map((d) => d.uuid).join(", ")}); check the item and the disk`,
    );
  }
  return i;
}

/**
 * Writes the point's disk `diskUuid` into a new sparse image `to` (zero blocks are never written)
 * and verifies it. `sizeBytes` must be the disk's size at that point.
 */
export async function materializePointDisk(
  ref: PointRef & { diskUuid: string; sizeBytes: number },
  to: string,
  o: { ds?: Datastore } = {},
): Promise<{ pointId: PointId; bytesWritten: number }> {
  return withPoint(
    ref,
    "materialize",
    async (ds, item, pointId, header) => {
      const disk = diskIndexOf(header, ref.diskUuid, ref.datastore);
      const size = header.disks[disk]!.sizeBytes;
      if (size !== ref.sizeBytes) {
        throw new SwitchbackError(
          "DISK_SIZE_MISMATCH",
          `disk ${ref.diskUuid} of point ${pointId} (item ${item}) is ${size} bytes, not the ${ref.sizeBytes} asked for; ask for the point's size`,
        );
      }
      const r = await restoreDisk(ds, { item, point: pointId, disk, to, delta: false, verify: true });
      return { pointId, bytesWritten: r.bytesWritten };
    },
    o,
  );
}

/**
 * Rewrites existing images to a point, writing only the blocks that differ (delta restore), and
 * verifies what it wrote. Each image is the point's disk with its `uuid`; without a uuid, the
 * point's disk at the same position.
 */
export async function applyPointToImages(
  ref: PointRef,
  disks: { path: string; uuid?: string | null }[],
): Promise<{ pointId: PointId; blocksWritten: number; bytesWritten: number; blocksCompared: number }> {
  return withPoint(ref, "apply point", async (ds, item, pointId, header) => {
    if (disks.length !== header.disks.length) {
      throw new SwitchbackError(
        "POINT_DISK_COUNT_MISMATCH",
        `point ${pointId} of item ${item} has ${header.disks.length} disk(s) but ${disks.length} image(s) were given (${disks.map((d) => d.path).join(", ")}); give one image per disk of the point`,
      );
    }
    const order = disks.map((d, i) => (d.uuid ? diskIndexOf(header, d.uuid, ref.datastore) : i));
    let blocksWritten = 0;
    let bytesWritten = 0;
    let blocksCompared = 0;
    for (const [i, d] of disks.entries()) {
      const r = await restoreDisk(ds, {
        item,
        point: pointId,
        disk: order[i]!,
        to: d.path,
        delta: true,
        verify: true,
      });
      blocksWritten += r.blocksWritten;
      bytesWritten += r.bytesWritten;
      blocksCompared += r.blocksCompared;
    }
    return { pointId, blocksWritten, bytesWritten, blocksCompared };
  });
}

/**
 * Rewrites images that hold exactly point `base` of the item to point `ref`, writing only the blocks
 * whose content differs between the two points (found from their maps: the images are not read),
 * and verifies what it wrote.
 */
export async function applyPointSince(
  ref: PointRef,
  base: string,
  disks: { path: string; uuid: string }[],
  o: { ds?: Datastore } = {},
): Promise<{ pointId: PointId; blocksWritten: number; bytesWritten: number }> {
  return withPoint(
    ref,
    "apply point",
    async (ds, item, pointId, header) => {
      let blocksWritten = 0;
      let bytesWritten = 0;
      for (const d of disks) {
        const r = await restoreDisk(ds, {
          item,
          point: pointId,
          disk: diskIndexOf(header, d.uuid, ref.datastore),
          to: d.path,
          delta: true,
          base: parsePointId(base),
          verify: true,
        });
        blocksWritten += r.blocksWritten;
        bytesWritten += r.bytesWritten;
      }
      return { pointId, blocksWritten, bytesWritten };
    },
    o,
  );
}

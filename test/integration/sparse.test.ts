// Sparse image files (thin-provisioned raw disks): their holes read as zeros without being read, in
// the JavaScript passes and in the addon's, and points and restores are the same as if every byte had
// been read: a hole that gets data, data punched out to a hole, and data overwritten are all found.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, cpSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Datastore } from "../../src/datastore/datastore.ts";
import { type PointId, parseItemName } from "../../src/domain/ids.ts";
import { native } from "../../src/platform/native.ts";
import { openBlockHashes } from "../../src/replication/block-hashes.ts";
import { DiskReader, inspectDisk } from "../../src/replication/disk-source.ts";
import { restoreDisk } from "../../src/replication/restore.ts";
import { tempDir } from "../helpers/env.ts";
import { randomBuffer, rng } from "../helpers/images.ts";
import { imagePoint } from "../helpers/points.ts";

const item = parseItemName("web1");
const BLOCK = 4096;
const SIZE = 64 * 1024 * 1024;
const skip = native === null ? "the native addon is not built (npm run build:native)" : false;

function write(file: string, block: number, data: Buffer): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, data, 0, data.length, block * BLOCK);
  } finally {
    closeSync(fd);
  }
}

test("a sparse image's holes are not read, and its points and restores are exact", { skip }, async () => {
  const { dir, cleanup } = tempDir("sb-sparse-");
  try {
    const image = path.join(dir, "disk.img");
    const fd = openSync(image, "w");
    ftruncateSync(fd, SIZE);
    closeSync(fd);
    const next = rng(21);
    // data at a few places, holes everywhere else
    for (const b of [0, 1, 2, 300, 4096, 4097, 9000, 16383]) write(image, b, randomBuffer(BLOCK, next));
    const sync = () => spawnSync("sync");
    sync();

    // the readers skip the holes
    const reader = new DiskReader(inspectDisk(image), 2 * 1024 * 1024);
    reader.read(8 * 1024 * 1024, 1024 * 1024); // 8-9 MiB: a hole
    assert.equal(reader.holeBytes, 1024 * 1024);
    // 0-2 MiB: blocks 0-2 and 300 are data, the rest holes: only the data is read
    const both = Buffer.from(reader.read(0, 2 * 1024 * 1024));
    assert.ok(both.equals(readFileSync(image).subarray(0, 2 * 1024 * 1024)), "what was read is the file");
    assert.ok(reader.holeBytes >= 3 * 1024 * 1024 - 64 * 1024, `${reader.holeBytes} bytes of holes`);
    reader.close();
    const info = inspectDisk(image);
    const h = openBlockHashes(dir, SIZE / BLOCK, null);
    const rfd = openSync(image, "r");
    const units = SIZE / 65536;
    const r = await native!.unitChanges(
      ...[rfd, 0, info.sizeBytes, info.sectorSize, false],
      ...[0, units, 7n, new BigUint64Array(units), new BigUint64Array(units)],
      ...[-1, 0, h.nextFd, h.written],
    );
    closeSync(rfd);
    assert.equal(r.bytesRead, SIZE);
    assert.ok(r.holeBytes >= SIZE - 8 * 64 * 1024, `${r.holeBytes} bytes of holes not read`);

    const ds0 = path.join(dir, "ds");
    const st0 = path.join(dir, "state");
    await (await Datastore.init(ds0)).close();
    const point = (ds: string, state: string, nativePass: boolean) =>
      imagePoint(image, ds, state, nativePass, item);
    const restored = async (ds: string, id: string): Promise<Buffer> => {
      const to = path.join(dir, `restored-${id}.img`);
      const d = await Datastore.open(ds);
      try {
        await restoreDisk(d, { item, point: id as PointId, disk: 0, to, delta: false });
      } finally {
        await d.close();
      }
      return readFileSync(to);
    };
    const full = await point(ds0, st0, true);
    assert.equal(full.mode, "full");
    assert.equal(full.changedBlocks, 8, "a base point lists the data blocks only");
    assert.ok((await restored(ds0, full.pointId)).equals(readFileSync(image)));

    // a hole gets data, a data block is punched out to a hole, another is overwritten
    write(image, 12000, randomBuffer(BLOCK, next));
    const punch = spawnSync("fallocate", [
      "--punch-hole",
      "--offset",
      String(4096 * BLOCK),
      "--length",
      String(BLOCK),
      image,
    ]);
    assert.equal(punch.status, 0, punch.stderr?.toString());
    write(image, 300, randomBuffer(BLOCK, next));
    sync();
    for (const nativePass of [true, false]) {
      const ds = path.join(dir, `ds-${nativePass}`);
      const st = path.join(dir, `state-${nativePass}`);
      cpSync(ds0, ds, { recursive: true });
      cpSync(st0, st, { recursive: true });
      const incr = await point(ds, st, nativePass);
      assert.equal(incr.mode, "incremental");
      assert.equal(
        incr.changedBlocks,
        3,
        `the three changes, no more (${nativePass ? "native" : "JavaScript"})`,
      );
      assert.ok((await restored(ds, incr.pointId)).equals(readFileSync(image)), "the point is the image");
    }
  } finally {
    cleanup();
  }
});

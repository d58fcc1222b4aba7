// A disk's block digests at a point, for a resync to compare the disk with: per block the first 16
// bytes of its address, 16 zero bytes for an all-zero block. A resync used to take the point's whole
// map (4 bytes a block and 32 an entry, built and sent whole); the digests are built once into a
// scratch file, a window of the chain at a time (DiskWindows), and read back by range as the
// resync's passes reach them.
//
// 16 bytes of a BLAKE3 address are a 128-bit hash of the block: a changed block taken for an
// unchanged one needs a collision of 128 bits (about 2^-128 a block by chance; no known way to make
// one on purpose), as against the 256 bits of the address itself.
//
// A block of the point that the datastore's index does not hold (lost with a pack, the index rebuilt
// since) gets NOT_HELD instead of its digest: no block's address begins with it but by the same
// chance, so the resync takes the disk's block for a changed one, asks about it and sends it again,
// and every point that names that block is whole again.
import { closeSync, read } from "node:fs";
import { promisify } from "node:util";
import type { ItemName, PointId } from "../domain/ids.ts";
import { openScratch, pwriteFully } from "../platform/files.ts";
import type { Datastore } from "./datastore.ts";
import { DiskWindows } from "./disk-windows.ts";

export const DIGEST_BYTES = 16;
/** the digest of a block the datastore does not hold */
export const NOT_HELD: Buffer = Buffer.alloc(DIGEST_BYTES, 0xff);
/** blocks of the chain resolved at a time while the file is built: a 4 MiB map */
const BUILD_BLOCKS = 1 << 20;
/** blocks written at a time; a stretch of all-zero blocks is not written (the file keeps a hole) */
const WRITE_BLOCKS = 4096;

const readAsync = promisify(read);

export class DigestFile {
  readonly blockCount: number;
  #fd: number;
  /** reads under way: the descriptor is closed only once none is (a closed number may be reused) */
  #reading = 0;
  #closing = false;

  private constructor(fd: number, blockCount: number) {
    this.#fd = fd;
    this.blockCount = blockCount;
  }

  /**
   * Builds the digests of disk `disk` of `item`'s point `id` in an unlinked scratch file in `dir`
   * (nothing is left behind by a crash). Every manifest of the chain is checked first (DiskWindows).
   */
  static async build(
    ds: Datastore,
    item: ItemName,
    id: PointId,
    disk: number,
    dir: string,
  ): Promise<DigestFile> {
    const windows = await DiskWindows.open(ds, item, id, disk);
    const index = await ds.index().catch(async (err: unknown) => {
      await windows.close();
      throw err;
    });
    let fd = -1;
    try {
      const n = windows.blockCount;
      fd = openScratch(dir, "digests", n * DIGEST_BYTES);
      const out = Buffer.alloc(WRITE_BLOCKS * DIGEST_BYTES);
      for (let from = 0; from < n; from += BUILD_BLOCKS) {
        const to = Math.min(n, from + BUILD_BLOCKS);
        const map = await windows.window(from, to);
        for (let w = from; w < to; w += WRITE_BLOCKS) {
          const end = Math.min(to, w + WRITE_BLOCKS);
          let any = false;
          for (let b = w; b < end; b++) {
            const h = map.hashOf(b);
            const at = (b - w) * DIGEST_BYTES;
            if (h === undefined) out.fill(0, at, at + DIGEST_BYTES);
            else {
              if (index.has(h)) h.copy(out, at, 0, DIGEST_BYTES);
              else NOT_HELD.copy(out, at);
              any = true;
            }
          }
          if (any) pwriteFully(fd, out.subarray(0, (end - w) * DIGEST_BYTES), w * DIGEST_BYTES);
        }
      }
      return new DigestFile(fd, n);
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      await windows.close();
      throw err;
    }
  }

  /** The digests of blocks [from, from + count): count × 16 bytes. */
  async read(from: number, count: number): Promise<Buffer> {
    if (this.#closing) throw new Error("DigestFile.read after close");
    if (
      !Number.isSafeInteger(from) ||
      !Number.isSafeInteger(count) ||
      from < 0 ||
      count < 0 ||
      from + count > this.blockCount
    )
      throw new RangeError(
        `digests: blocks [${from}, ${from + count}) are not within the disk's ${this.blockCount}`,
      );
    const out = Buffer.allocUnsafe(count * DIGEST_BYTES);
    this.#reading++;
    try {
      let got = 0;
      while (got < out.length) {
        const { bytesRead } = await readAsync(
          this.#fd,
          out,
          got,
          out.length - got,
          from * DIGEST_BYTES + got,
        );
        if (bytesRead === 0) throw new Error("digests: the scratch file is shorter than the disk");
        got += bytesRead;
      }
    } finally {
      this.#reading--;
      if (this.#closing && this.#reading === 0) this.#release();
    }
    return out;
  }

  /** Closes the file once the reads under way have ended; no read may start after. */
  close(): void {
    this.#closing = true;
    if (this.#reading === 0) this.#release();
  }

  #release(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}

/**
 * Digest files by item, point and disk, each built at its first use and kept until closed: what a
 * resync's requests read, window after window. A build that failed is forgotten (the next use tries
 * again); one that succeeded counts as used when it ends, so a build longer than an idle limit is not
 * closed under the requests waiting for it.
 */
export class DigestFiles {
  readonly #ds: Datastore;
  /** where the scratch files go (asked at each build) */
  readonly #dir: () => string;
  readonly #files = new Map<string, { file: Promise<DigestFile>; used: number; building: boolean }>();

  constructor(ds: Datastore, dir: () => string) {
    this.#ds = ds;
    this.#dir = dir;
  }

  get(item: ItemName, point: PointId, disk: number): Promise<DigestFile> {
    const key = `${item}/${point}/${disk}`;
    let d = this.#files.get(key);
    if (d === undefined) {
      const entry = {
        file: DigestFile.build(this.#ds, item, point, disk, this.#dir()),
        used: 0,
        building: true,
      };
      entry.file.then(
        () => {
          entry.building = false;
          entry.used = Date.now();
        },
        () => {
          if (this.#files.get(key) === entry) this.#files.delete(key);
        },
      );
      this.#files.set(key, entry);
      d = entry;
    }
    d.used = Date.now();
    return d.file;
  }

  /**
   * Closes the files last used before `before` (all of them, builds under way included, without it);
   * resolves once they are closed.
   */
  async close(before = Number.POSITIVE_INFINITY): Promise<void> {
    const closing: Promise<DigestFile>[] = [];
    for (const [key, d] of this.#files) {
      if (d.used >= before || (d.building && before !== Number.POSITIVE_INFINITY)) continue;
      this.#files.delete(key);
      closing.push(d.file);
    }
    for (const f of await Promise.allSettled(closing)) if (f.status === "fulfilled") f.value.close();
  }
}

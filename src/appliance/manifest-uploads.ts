// Point manifests uploaded in parts (docs/transport.md, "Manifests in parts"): a base point's manifest
// costs 40 bytes per non-zero block, far more than one request body, so the agent stages it in parts
// at byte offsets and then commits it by name. Each upload is one file in this process server's own
// staging folder, `<root>/<pid>@<host>/<item>@<point>.manifest`, and a record in memory of the byte
// ranges received. Nothing here is durable, on purpose: a process server that dies leaves a folder
// that the next one (same host, pid gone) removes at start, and the agent sends its parts again.
// Operations on one upload take turns (a part is compared with what is staged, then written).
import { mkdir, open, readdir, rm, rmdir, stat } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import { piecesOf, readFullyAt } from "../platform/files.ts";
import { pidAlive } from "../platform/process.ts";
import { KeyedTurns } from "../platform/turns.ts";

/**
 * Staged files of process servers on other hosts that nobody wrote for this long are removed: a
 * server that came back under another hostname (a recreated container) never will. An upload lives
 * for minutes (an agent gives a point 60 s, and the next point discards older uploads).
 */
export const STAGED_STALE_MS = 7 * 24 * 3600 * 1000;

/** One manifest being staged. */
export interface StagedUpload {
  readonly item: ItemName;
  readonly point: PointId;
  /** the manifest's size, as its first part announced */
  readonly size: number;
  /** the staging file */
  readonly file: string;
  /** bytes received (each once) */
  received: number;
  /** received byte ranges [start, end), sorted and merged, flattened */
  ranges: number[];
}

export class ManifestUploads {
  /** this process server's folder */
  readonly dir: string;
  readonly #uploads = new Map<string, StagedUpload>();
  readonly #turns = new KeyedTurns();

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Takes `<root>/<pid>@<host>` as this server's staging folder (emptied), and sweeps the others
   * (see sweep).
   */
  static async open(root: string, now = Date.now()): Promise<ManifestUploads> {
    await mkdir(root, { recursive: true });
    const dir = path.join(root, `${process.pid}@${hostname()}`);
    await rm(dir, { recursive: true, force: true });
    const uploads = new ManifestUploads(dir);
    await uploads.sweep(now);
    await mkdir(dir, { recursive: true });
    return uploads;
  }

  /**
   * Removes the folders of process servers on this host whose process is gone (their uploads died
   * with them), and the files of other hosts' folders not written for STAGED_STALE_MS (a folder too,
   * once that leaves it empty and it is itself that old). Returns the files removed. What cannot be
   * removed (another host's files on a shared file system that this one may not touch) is left: it
   * never stops a server from starting.
   */
  async sweep(now = Date.now()): Promise<number> {
    const root = path.dirname(this.dir);
    const host = hostname();
    let removed = 0;
    for (const name of await readdir(root).catch(() => [])) {
      const folder = path.join(root, name);
      if (folder === this.dir) continue;
      const m = /^(\d+)@(.+)$/.exec(name);
      if (m === null) continue;
      if (m[2] === host) {
        if (pidAlive(Number(m[1]))) continue;
        const files = (await readdir(folder).catch(() => [])).length;
        if (await done(rm(folder, { recursive: true, force: true }))) removed += files;
        continue;
      }
      const stale = async (p: string) => {
        const st = await stat(p).catch(() => null);
        return st !== null && now - st.mtimeMs > STAGED_STALE_MS;
      };
      // (before its files go: removing them makes the folder new again)
      const oldFolder = await stale(folder);
      for (const f of await readdir(folder).catch(() => [])) {
        const file = path.join(folder, f);
        if (!(await stale(file))) continue;
        if (await done(rm(file, { force: true }))) removed++;
      }
      // (rmdir refuses a folder its server has written into meanwhile)
      if (oldFolder) await rmdir(folder).catch(() => {});
    }
    return removed;
  }

  /**
   * Stages `bytes` at `offset` of the manifest of `item`'s point `point`, `size` bytes in all.
   * `starting` runs before a new upload is taken on (it throws to refuse it). Bytes that were staged
   * already must be the same (MANIFEST_PART_CONFLICT otherwise, and nothing is written).
   */
  put(
    item: ItemName,
    point: PointId,
    size: number,
    offset: number,
    bytes: Buffer,
    starting: () => Promise<void>,
  ): Promise<StagedUpload> {
    const key = keyOf(item, point);
    return this.#turns.run(key, async () => {
      let u = this.#uploads.get(key);
      if (u !== undefined && u.size !== size) {
        throw new SwitchbackError(
          "MANIFEST_PART_CONFLICT",
          `the manifest of point ${point} of item ${item} being staged is ${u.size} bytes; this part says ${size}; a point's manifest never changes, so this part is not of it`,
        );
      }
      if (offset + bytes.length > size) {
        throw new SwitchbackError(
          "REQUEST_INVALID",
          `a part of ${bytes.length} bytes at offset ${offset} ends past the manifest's ${size} bytes`,
        );
      }
      let fh = u === undefined ? null : await open(u.file, "r+").catch(gone);
      if (u === undefined || fh === null) {
        // new, or its file was removed under it (by hand, or by a server that took it for stale):
        // what was staged is gone, the commit will ask for it again
        await starting();
        u = { item, point, size, file: path.join(this.dir, `${key}.manifest`), received: 0, ranges: [] };
        await mkdir(this.dir, { recursive: true });
        fh = await open(u.file, "w+", 0o600);
        this.#uploads.set(key, u);
      }
      try {
        const end = offset + bytes.length;
        for (const [a, b] of overlaps(u.ranges, offset, end)) {
          const staged = await readFullyAt(fh, a, b - a);
          if (!staged.equals(bytes.subarray(a - offset, b - offset))) {
            let at = 0;
            while (staged[at] === bytes[a - offset + at]) at++;
            throw new SwitchbackError(
              "MANIFEST_PART_CONFLICT",
              `byte ${a + at} of the manifest of point ${point} of item ${item} was staged with another value; a part sent again must be the same bytes; nothing of this part was written`,
            );
          }
        }
        if (!within(u.ranges, offset, end)) {
          for (let done = 0; done < bytes.length; ) {
            const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, offset + done);
            done += bytesWritten;
          }
          u.ranges = addRange(u.ranges, offset, end);
        }
        u.received = covered(u.ranges);
      } finally {
        await fh.close();
      }
      return u;
    });
  }

  /**
   * Runs `fn` with the upload of `item`'s point `point` (undefined when nothing is staged for it),
   * in its turn: no part is staged meanwhile. `drop` discards the upload (its file and record).
   */
  with<T>(
    item: ItemName,
    point: PointId,
    fn: (u: StagedUpload | undefined, drop: () => Promise<void>) => Promise<T>,
  ): Promise<T> {
    const key = keyOf(item, point);
    return this.#turns.run(key, () => {
      const u = this.#uploads.get(key);
      return fn(u, async () => {
        if (u !== undefined && this.#uploads.get(key) === u) await this.#drop(key, u);
      });
    });
  }

  /** Discards the item's uploads of points up to `point`: the item's history has moved past them. */
  async discardUpTo(item: ItemName, point: PointId): Promise<void> {
    const old = [...this.#uploads.entries()].filter(([, u]) => u.item === item && u.point <= point);
    await Promise.all(
      old.map(([key, u]) =>
        this.#turns.run(key, async () => {
          if (this.#uploads.get(key) === u) await this.#drop(key, u);
        }),
      ),
    );
  }

  /** Removes this server's staging folder (its uploads end with it). */
  async close(): Promise<void> {
    this.#uploads.clear();
    await rm(this.dir, { recursive: true, force: true });
  }

  async #drop(key: string, u: StagedUpload): Promise<void> {
    this.#uploads.delete(key);
    await rm(u.file, { force: true });
  }
}

/** Whether `p` fulfilled: what could not be removed is left. */
function done(p: Promise<unknown>): Promise<boolean> {
  return p.then(
    () => true,
    () => false,
  );
}

/** null for a file that is not there (ENOENT); any other error is thrown */
function gone(err: NodeJS.ErrnoException): null {
  if (err.code === "ENOENT") return null;
  throw err;
}

function keyOf(item: ItemName, point: PointId): string {
  // '@' is in neither an item name nor a point id
  return `${item}@${point}`;
}

/** The staged file, `size` bytes, in pieces of at most `pieceBytes` (each a new buffer). */
export async function* readStaged(file: string, size: number, pieceBytes: number): AsyncGenerator<Buffer> {
  yield* piecesOf(await open(file, "r"), file, size, pieceBytes);
}

// ---- byte ranges: [s0, e0, s1, e1, …], sorted, disjoint and not touching ----

function* overlaps(ranges: readonly number[], start: number, end: number): Generator<[number, number]> {
  for (let i = 0; i < ranges.length; i += 2) {
    const a = Math.max(start, ranges[i]!);
    const b = Math.min(end, ranges[i + 1]!);
    if (a < b) yield [a, b];
  }
}

function within(ranges: readonly number[], start: number, end: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) if (ranges[i]! <= start && end <= ranges[i + 1]!) return true;
  return false;
}

function addRange(ranges: readonly number[], start: number, end: number): number[] {
  const out: number[] = [];
  let s = start;
  let e = end;
  let placed = false;
  for (let i = 0; i < ranges.length; i += 2) {
    const a = ranges[i]!;
    const b = ranges[i + 1]!;
    if (b < s) out.push(a, b);
    else if (a > e) {
      if (!placed) out.push(s, e);
      placed = true;
      out.push(a, b);
    } else {
      s = Math.min(s, a);
      e = Math.max(e, b);
    }
  }
  if (!placed) out.push(s, e);
  return out;
}

function covered(ranges: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < ranges.length; i += 2) n += ranges[i + 1]! - ranges[i]!;
  return n;
}

/** The first byte range of [0, size) not received, or null when all was. */
export function firstGap(u: StagedUpload): [number, number] | null {
  const r = u.ranges;
  if (r.length === 0) return u.size === 0 ? null : [0, u.size];
  if (r[0]! > 0) return [0, r[0]!];
  if (r[1]! < u.size) return [r[1]!, r.length > 2 ? r[2]! : u.size];
  return null;
}

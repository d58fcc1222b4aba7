// Local-directory backend: write to a temporary file, fsync, rename into place, fsync the folder.
// A crash leaves at most a stray "*.tmp-*" file, which `list` hides and GC removes.
//
// Big objects (packs) are written with O_DIRECT when the file system takes it and the native addon
// can align memory: a pack is written once, fsynced at once and not read again soon, so copying it
// into the page cache first only costs CPU (on this VM a buffered 1 GiB write took 0.45-3.3 s of
// kernel time, O_DIRECT 0.2-0.3 s) and pushes the disk being replicated out of the cache.
import { randomBytes } from "node:crypto";
import { constants, type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import path from "node:path";
import { ALIGN, giveBack, isAligned, takeAligned } from "../../platform/aligned.ts";
import { onLocalFileSystem, piecesOf, readExactlyAt } from "../../platform/files.ts";
import { native } from "../../platform/native.ts";
import type { Backend, ObjectData, ObjectStream, WriteOptions } from "../backend.ts";

const TMP_MARK = ".tmp-";
/** objects at least this big are written with O_DIRECT (when they can be) */
const DIRECT_MIN_BYTES = 1024 * 1024;
/** an object written from parts as they come is written in steps of about this much */
const STREAM_WRITE_BYTES = 1024 * 1024;
/**
 * view() maps files of at least this size; smaller ones are read (a mapping costs a whole page and one
 * of the process's ~65,000 memory areas). A process server's index file of 32 MiB of packs is ~380 kB.
 */
const MAP_MIN_BYTES = 256 * 1024;
/**
 * views mapped at once in this process at most; past it, files are read (vm.max_map_count is 65,530).
 * Tests lower it.
 */
export const MAP_LIMIT = { views: 32_768 };
let maps = 0;
/** views of files mapped (or being mapped) and still alive in this process (what MAP_LIMIT bounds) */
export function mappedViews(): number {
  return maps;
}
const unmapped = new FinalizationRegistry<undefined>(() => {
  maps--;
});

export class LocalBackend implements Backend {
  readonly location: string;
  readonly #root: string;
  readonly #handles = new Map<string, Promise<FileHandle>>();
  readonly #knownDirs = new Set<string>();
  /**
   * false once the file system has refused O_DIRECT (tmpfs, some FUSE): buffered writes from then on.
   * SWITCHBACK_DIRECT_IO=0 turns it off from the start (a file system that takes O_DIRECT but is slow with it).
   */
  #direct = native !== null && constants.O_DIRECT !== undefined && process.env.SWITCHBACK_DIRECT_IO !== "0";
  /**
   * how view() maps a file: on the machine's own file systems only (a page that cannot be read is a
   * SIGBUS for a mapping, where a read throws; an NFS server that goes away is not a bad sector);
   * SWITCHBACK_MAP_INDEX=0 reads index files into memory instead (to compare). Decided at the first view.
   */
  #map: ((fd: number, length: number) => Promise<Buffer>) | false | undefined =
    process.env.SWITCHBACK_MAP_INDEX === "0" ? false : undefined;
  /** objects written with O_DIRECT so far */
  directWrites = 0;

  constructor(root: string) {
    this.#root = path.resolve(root);
    this.location = this.#root;
  }

  #path(name: string): string {
    if (name.includes("..") || path.isAbsolute(name)) throw new Error(`invalid object name ${name}`);
    return path.join(this.#root, name);
  }

  async #ensureDir(dir: string): Promise<void> {
    if (this.#knownDirs.has(dir)) return;
    const created = await mkdir(dir, { recursive: true });
    if (created !== undefined) {
      // every folder mkdir made, and the one above the first of them, must reach the disk
      for (let d = dir; ; d = path.dirname(d)) {
        await fsyncDir(path.dirname(d));
        if (d === created || path.dirname(d) === d) break;
      }
    }
    this.#knownDirs.add(dir);
  }

  async write(name: string, data: ObjectData, o: WriteOptions = {}): Promise<void> {
    this.#dropHandle(name);
    const final = this.#path(name);
    const dir = path.dirname(final);
    await this.#ensureDir(dir);
    const tmp = `${final}${TMP_MARK}${randomBytes(6).toString("hex")}`;
    try {
      if (Buffer.isBuffer(data) || Array.isArray(data)) {
        const parts: readonly Buffer[] = Buffer.isBuffer(data) ? [data] : data;
        if (o.durable === false) await writeBuffered(tmp, parts, name, false);
        else if (!(await this.#writeDirect(tmp, parts, name))) await writeBuffered(tmp, parts, name);
      } else {
        await writeBuffered(tmp, data as Iterable<Buffer> | AsyncIterable<Buffer>, name, o.durable !== false);
      }
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    let visible = false;
    const make = async () => {
      await rename(tmp, final);
      visible = true;
      if (o.durable !== false) await fsyncDir(dir);
    };
    try {
      await (o.publish ?? ((m) => m()))(make);
    } finally {
      if (!visible) await unlink(tmp).catch(() => {});
    }
  }

  /**
   * Writes `parts` into the new file `tmp` with O_DIRECT, the last partial 4 KiB through the page
   * cache, and fsyncs it. False (and no file left) when the object is small or the file system
   * refuses O_DIRECT: the caller then writes it the ordinary way.
   */
  async #writeDirect(tmp: string, parts: readonly Buffer[], name: string): Promise<boolean> {
    const total = parts.reduce((n, p) => n + p.length, 0);
    if (total < DIRECT_MIN_BYTES) return false;
    const fh = await this.#createDirect(tmp);
    if (fh === null) return false;
    // one aligned buffer (a pack builder's own) is written as it is; anything else is copied into one
    const own = parts.length === 1 && isAligned(parts[0]!) ? parts[0]! : null;
    const staging = own ?? takeAligned(total);
    try {
      if (own === null) {
        let at = 0;
        for (const p of parts) at += p.copy(staging, at);
      }
      const head = total - (total % ALIGN);
      let wrote: number;
      try {
        ({ bytesWritten: wrote } = await fh.write(staging, 0, head, 0));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
        // the file system opened it but will not write it directly: start again, buffered
        this.#direct = false;
        await unlink(tmp);
        return false;
      }
      if (wrote < head) {
        // a short direct write (a full disk, a size limit): this object goes the ordinary way, whose
        // error says why; O_DIRECT stays on for the next
        await unlink(tmp);
        return false;
      }
      if (head < total) {
        const tail = await open(tmp, constants.O_WRONLY);
        try {
          await writeAll(tail, [staging.subarray(head, total)], name, head);
        } finally {
          await tail.close();
        }
      }
      await fh.sync(); // the file's, whichever descriptor wrote it
      this.directWrites++;
    } finally {
      await fh.close();
      if (own === null) giveBack(staging);
    }
    return true;
  }

  async begin(folder: string): Promise<ObjectStream> {
    const dir = this.#path(folder);
    await this.#ensureDir(dir);
    const tmp = path.join(dir, `stream${TMP_MARK}${randomBytes(6).toString("hex")}`);
    const direct = await this.#createDirect(tmp);
    let plain: FileHandle;
    try {
      plain = await open(
        tmp,
        constants.O_WRONLY | (direct === null ? constants.O_CREAT | constants.O_EXCL : 0),
        0o644,
      );
    } catch (err) {
      // (EMFILE, say): nothing of it is left open or on disk
      await direct?.close().catch(() => {});
      if (direct !== null) await unlink(tmp).catch(() => {});
      throw err;
    }
    return new LocalStream(tmp, direct, plain, {
      pathOf: (name) => this.#path(name),
      ensureDir: (d) => this.#ensureDir(d),
      directRefused: () => {
        this.#direct = false;
      },
    });
  }

  /**
   * Creates the new file `tmp` for O_DIRECT writes; null (and no file left) when O_DIRECT is off or
   * the file system refuses it, which turns it off from then on.
   */
  async #createDirect(tmp: string): Promise<FileHandle | null> {
    if (!this.#direct) return null;
    try {
      return await open(
        tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT,
        0o644,
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
      // some file systems (ramfs) create the file and only then refuse the flag: the name is ours, free it
      await unlink(tmp).catch(() => {});
      this.#direct = false;
      return null;
    }
  }

  async #handle(name: string): Promise<FileHandle> {
    let h = this.#handles.get(name);
    if (h === undefined) {
      h = open(this.#path(name), "r");
      this.#handles.set(name, h);
      h.catch(() => this.#handles.delete(name));
      if (this.#handles.size > 256) {
        const [oldest] = this.#handles.keys();
        if (oldest !== undefined && oldest !== name) this.#dropHandle(oldest);
      }
    }
    return h;
  }

  #dropHandle(name: string): void {
    const h = this.#handles.get(name);
    this.#handles.delete(name);
    h?.then((fh) => fh.close()).catch(() => {});
  }

  async read(name: string): Promise<Buffer> {
    // one read for the whole object (objects are replaced by rename, never written in place), not
    // readFile's 512 KiB steps: each step waits for the main thread, which during a pass is busy, so
    // a 20 MB index file took ~40 turns of the event loop to arrive
    const fh = await open(this.#path(name), "r");
    try {
      return await readExactlyAt(fh, name, 0, (await fh.stat()).size);
    } finally {
      await fh.close();
    }
  }

  async view(name: string): Promise<Buffer> {
    if (this.#map === undefined) this.#map = (onLocalFileSystem(this.#root) && native?.mapFile) || false;
    const map = this.#map;
    if (map === false) return this.read(name);
    const fh = await open(this.#path(name), "r");
    try {
      const { size } = await fh.stat();
      if (size >= MAP_MIN_BYTES && maps < MAP_LIMIT.views) {
        maps++; // (taken before the wait: views are asked for many at a time)
        try {
          const view = await map(fh.fd, size); // (the mapping outlives the descriptor)
          // (on the memory, not this Buffer: an index keeps views of parts of it, and the mapping
          // lives as long as any of them)
          unmapped.register(view.buffer, undefined);
          return view;
        } catch {
          // out of memory areas, or a file system that cannot map: read it
          maps--;
        }
      }
      return await readExactlyAt(fh, name, 0, size);
    } finally {
      await fh.close();
    }
  }

  async readRange(name: string, offset: number, length: number): Promise<Buffer> {
    // only packs are immutable under their name: their handles are cached; a manifest can be
    // replaced (prune rewrites one atomically), so it is opened afresh every time
    const cached = name.startsWith("packs/");
    const fh = cached ? await this.#handle(name) : await open(this.#path(name), "r");
    try {
      return await readExactlyAt(fh, name, offset, length);
    } finally {
      if (!cached) await fh.close();
    }
  }

  async readStream(
    name: string,
    pieceBytes: number,
  ): Promise<{ size: number; pieces: AsyncIterable<Buffer> }> {
    const fh = await open(this.#path(name), "r");
    let size: number;
    try {
      size = (await fh.stat()).size;
    } catch (err) {
      await fh.close();
      throw err;
    }
    return { size, pieces: piecesOf(fh, name, size, pieceBytes) };
  }

  async size(name: string): Promise<number> {
    return (await stat(this.#path(name))).size;
  }

  async exists(name: string): Promise<boolean> {
    try {
      await stat(this.#path(name));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    try {
      const entries = await readdir(this.#path(prefix), { withFileTypes: true });
      return entries
        .filter((e) => e.isFile() && !e.name.includes(TMP_MARK))
        .map((e) => e.name)
        .sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
  }

  /** Subfolders directly under `prefix`, sorted. */
  async listDirs(prefix: string): Promise<string[]> {
    try {
      const entries = await readdir(this.#path(prefix), { withFileTypes: true });
      return entries
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
  }

  /** Leftover temporary files from interrupted writes, for GC to remove. */
  async listTemporary(prefix: string): Promise<string[]> {
    try {
      const entries = await readdir(this.#path(prefix), { withFileTypes: true, recursive: true });
      return entries
        .filter((e) => e.isFile() && e.name.includes(TMP_MARK))
        .map((e) => path.relative(this.#root, path.join(e.parentPath, e.name)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
  }

  async remove(name: string, o: WriteOptions = {}): Promise<void> {
    this.#dropHandle(name);
    const p = this.#path(name);
    await rm(p, { force: true });
    if (o.durable === false) return;
    try {
      await fsyncDir(path.dirname(p));
    } catch (err) {
      // the folder itself is gone: nothing of it can come back
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  async close(): Promise<void> {
    const all = [...this.#handles.keys()];
    for (const n of all) this.#dropHandle(n);
  }
}

/**
 * A pack written as it fills (LocalBackend.begin): whole aligned 4 KiB blocks with O_DIRECT where the
 * file system takes it, anything else through the page cache (a second descriptor of the same file);
 * at the end fsynced, renamed into place and its folder fsynced, as write() does.
 */
/** What of its backend a LocalStream uses: names to paths, folders made, O_DIRECT refused. */
interface StreamBackend {
  pathOf(name: string): string;
  ensureDir(dir: string): Promise<void>;
  directRefused(): void;
}

class LocalStream implements ObjectStream {
  readonly #tmp: string;
  /** the O_DIRECT descriptor as opened (closed with the stream), and whether appends still use it */
  readonly #directFh: FileHandle | null;
  #direct: boolean;
  readonly #plain: FileHandle;
  readonly #backend: StreamBackend;
  #at = 0;
  #open = true;

  constructor(tmp: string, direct: FileHandle | null, plain: FileHandle, backend: StreamBackend) {
    this.#tmp = tmp;
    this.#directFh = direct;
    this.#direct = direct !== null;
    this.#plain = plain;
    this.#backend = backend;
  }

  async append(data: Buffer): Promise<void> {
    // its place is taken now: appends may run at once, each writing its own bytes
    let at = this.#at;
    this.#at += data.length;
    if (data.length === 0) return;
    const d = this.#directFh;
    if (d !== null && this.#direct && at % ALIGN === 0 && data.length % ALIGN === 0 && isAligned(data)) {
      let wrote = 0;
      try {
        ({ bytesWritten: wrote } = await d.write(data, 0, data.length, at));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EINVAL") throw err;
        // the file system opened it but will not write it directly: buffered from here on (the
        // descriptor is closed with the stream: another append may be using it)
        this.#backend.directRefused();
        this.#direct = false;
      }
      if (wrote === data.length) return;
      // a short direct write (a full disk, a size limit): the rest goes the ordinary way, whose error says why
      at += wrote;
      data = data.subarray(wrote);
    }
    await writeAll(this.#plain, [data], this.#tmp, at);
  }

  async finish(name: string, tail: Buffer): Promise<void> {
    try {
      await writeAll(this.#plain, [tail], name, this.#at);
      this.#at += tail.length;
      await this.#plain.sync(); // the file's, whichever descriptor wrote it
      await this.#close();
      const final = this.#backend.pathOf(name);
      const dir = path.dirname(final);
      await this.#backend.ensureDir(dir);
      await rename(this.#tmp, final);
      await fsyncDir(dir);
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  async abort(): Promise<void> {
    await this.#close();
    await unlink(this.#tmp).catch(() => {});
  }

  async #close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    await Promise.allSettled([this.#directFh?.close(), this.#plain.close()]);
  }
}

/**
 * Writes every byte of `parts`: writev may write less than asked without an error (a full disk, a
 * file-size limit); what it did not write is written again, and a write that makes no progress fails.
 */
async function writeAll(fh: FileHandle, parts: readonly Buffer[], name: string, from = 0): Promise<void> {
  let rest = parts.filter((p) => p.length > 0);
  let position = from;
  while (rest.length > 0) {
    const want = rest.reduce((n, p) => n + p.length, 0);
    const { bytesWritten } = await fh.writev(rest as Buffer[], position);
    if (bytesWritten === 0) throw new Error(`${name}: no space left to write ${want} more bytes`);
    position += bytesWritten;
    if (bytesWritten === want) return;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const p of rest) {
      if (skip >= p.length) {
        skip -= p.length;
        continue;
      }
      next.push(skip > 0 ? p.subarray(skip) : p);
      skip = 0;
    }
    rest = next;
  }
}

/** Writes `parts` (all at once, or as they come) into the new file `file`, and fsyncs it when `sync`. */
async function writeBuffered(
  file: string,
  parts: readonly Buffer[] | Iterable<Buffer> | AsyncIterable<Buffer>,
  name: string,
  sync = true,
): Promise<void> {
  const fh = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    if (Array.isArray(parts)) await writeAll(fh, parts, name);
    else {
      // parts as they come, a writev for each MiB or so
      let at = 0;
      let batch: Buffer[] = [];
      let batched = 0;
      for await (const p of parts as Iterable<Buffer> | AsyncIterable<Buffer>) {
        batch.push(p);
        batched += p.length;
        if (batched < STREAM_WRITE_BYTES) continue;
        await writeAll(fh, batch, name, at);
        at += batched;
        batch = [];
        batched = 0;
      }
      await writeAll(fh, batch, name, at);
    }
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

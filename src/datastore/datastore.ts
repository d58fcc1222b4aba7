// A datastore: packs of content-addressed blocks, index files that locate them, and one manifest per
// recovery point. Writers add blocks through a BlockWriter (packs, then index, then manifest: nothing
// is referenced before it is durable); readers resolve a point to a DiskMap and read verified blocks.
import { randomBytes, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import { onLocalFileSystem } from "../platform/files.ts";
import { pidAlive } from "../platform/process.ts";
import type { Backend, ObjectStream, WriteOptions } from "./backend.ts";
import { BlockIndex, encodeIndexFile, indexFileParts, NO_LOCATION } from "./block-index.ts";
import { DiskMap } from "./disk-map.ts";
import { BLOCK_SIZE, FORMAT_NAME, FORMAT_VERSION, PACK_TARGET_BYTES, paths } from "./format.ts";
import { blockHash, HASH_BYTES, PartsHash } from "./hash.ts";
import { LocalBackend } from "./local/local-backend.ts";
import {
  decodeManifestHeader,
  type EntryChunk,
  encodeManifest,
  MANIFEST_PIECE_BYTES,
  ManifestCollector,
  ManifestParser,
  type ManifestSource,
  manifestParts,
  type PointHeader,
  type PointManifest,
} from "./manifest.ts";
import {
  type BlockLocation,
  type FinishedPack,
  type Frame,
  openFrame,
  PackBuilder,
  parsePackTrailer,
} from "./pack.ts";

export interface DatastoreConfig {
  format: typeof FORMAT_NAME;
  version: number;
  id: string;
  blockSize: number;
  createdAt: string;
}

export class Datastore {
  readonly backend: Backend;
  readonly config: DatastoreConfig;
  #index: BlockIndex | undefined;
  #loading: Promise<BlockIndex> | undefined;
  #indexFiles = new Set<string>();

  /**
   * Lock markers need no fsync where a power loss also ends every holder (a datastore on the
   * machine's own disk); on a network file system a server can lose a marker whose holder lives on,
   * and GC could then run beside it.
   */
  readonly #markers: WriteOptions;

  private constructor(backend: Backend, config: DatastoreConfig) {
    this.backend = backend;
    this.config = config;
    const local = backend instanceof LocalBackend && onLocalFileSystem(backend.location);
    this.#markers = { durable: !local };
  }

  get blockSize(): number {
    return this.config.blockSize;
  }

  static async init(dir: string): Promise<Datastore> {
    const backend = new LocalBackend(dir);
    if (await backend.exists(paths.config)) {
      throw new SwitchbackError(
        "DATASTORE_EXISTS",
        `${dir} already holds a datastore; use it as it is or choose an empty folder`,
      );
    }
    const config: DatastoreConfig = {
      format: FORMAT_NAME,
      version: FORMAT_VERSION,
      id: randomUUID(),
      blockSize: BLOCK_SIZE,
      createdAt: new Date().toISOString(),
    };
    await backend.write(paths.config, Buffer.from(JSON.stringify(config, null, 2) + "\n"));
    return new Datastore(backend, config);
  }

  static async open(dir: string): Promise<Datastore> {
    const backend = new LocalBackend(dir);
    let raw: Buffer;
    try {
      raw = await backend.read(paths.config);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new SwitchbackError(
          "NOT_A_DATASTORE",
          `${dir} is not a datastore (no ${paths.config}); create one with 'switchback datastore init --path ${dir}'`,
        );
      }
      throw err;
    }
    let config: DatastoreConfig;
    try {
      config = JSON.parse(raw.toString("utf8")) as DatastoreConfig;
    } catch {
      throw new SwitchbackError(
        "NOT_A_DATASTORE",
        `${dir} is not a datastore: ${paths.config} is not valid JSON`,
      );
    }
    if (config.format !== FORMAT_NAME) {
      throw new SwitchbackError(
        "NOT_A_DATASTORE",
        `${dir} is not a datastore: ${paths.config} has format ${JSON.stringify(config.format)}`,
      );
    }
    if (config.version !== FORMAT_VERSION) {
      throw new SwitchbackError(
        "DATASTORE_VERSION",
        `${dir} is datastore format version ${config.version}; this Switchback reads version ${FORMAT_VERSION}`,
      );
    }
    if (config.blockSize !== BLOCK_SIZE) {
      throw new SwitchbackError(
        "DATASTORE_VERSION",
        `${dir} uses block size ${config.blockSize}; only ${BLOCK_SIZE} is supported`,
      );
    }
    return new Datastore(backend, config);
  }

  async close(): Promise<void> {
    await this.backend.close();
  }

  // ---- index ----

  /** The index, loaded once: concurrent callers share the one load under way. */
  async index(): Promise<BlockIndex> {
    if (this.#index !== undefined) return this.#index;
    this.#loading ??= this.reloadIndex().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async reloadIndex(): Promise<BlockIndex> {
    const names = await this.backend.list("index");
    const files = await Promise.all(
      // views (the local backend maps them): the records stay the page cache's, not this process's
      names.map(async (name) => ({ name, buf: await this.backend.view(`index/${name}`) })),
    );
    const idx = await BlockIndex.load(files);
    this.#index = idx;
    this.#indexFiles = new Set(names);
    return idx;
  }

  get indexFiles(): ReadonlySet<string> {
    return this.#indexFiles;
  }

  /**
   * Writes one index file of `sections`. `after`: what must be durable before it may be seen (its
   * packs): the file is written and fsynced meanwhile, under a temporary name, and renamed only once
   * `after` resolves (if it rejects, the file is removed and that is the error).
   */
  async writeIndexFile(
    sections: readonly { packId: string; entries: Buffer }[],
    after?: Promise<unknown>,
  ): Promise<string> {
    const { id, parts } = encodeIndexFile(sections);
    await this.backend.write(paths.index(id), parts, publishAfter(after));
    return this.#indexed(id);
  }

  /**
   * Writes one index file of the sections `sections()` gives, never all in memory: it is called
   * twice, to name the file (the BLAKE3 of its bytes) and to write it, and must give the same both times.
   */
  async writeIndexFileFrom(sections: () => Iterable<{ packId: string; entries: Buffer }>): Promise<string> {
    const sum = new PartsHash();
    for (const part of indexFileParts(sections())) sum.update(part);
    const id = sum.digest().toString("hex");
    await this.backend.write(paths.index(id), indexFileParts(sections()));
    return this.#indexed(id);
  }

  /** Index file `id` is written: the index, when loaded, takes it in. */
  async #indexed(id: string): Promise<string> {
    this.#indexFiles.add(`${id}.idx`);
    // the written file, not the sections given: a long-lived index (a process server's) keeps no
    // copy of the records it adds
    if (this.#index !== undefined) {
      const view = await this.backend.view(paths.index(id));
      this.#index?.addIndexFile(`${id}.idx`, view);
    }
    return id;
  }

  /**
   * The entries of a point's manifest, chunk by chunk as they are read, never the whole manifest in
   * memory; its checksum is verified at the end (a damaged manifest throws there, after its chunks).
   */
  async *pointEntries(item: ItemName, id: PointId): AsyncGenerator<EntryChunk> {
    const { name, stream } = await this.#openPoint(item, id);
    const parser = new ManifestParser(name, stream.size);
    for await (const piece of stream.pieces) yield* parser.push(piece);
    parser.end();
  }

  /**
   * A point's manifest as it is when opened, piece by piece, through one open file: the file's bytes
   * are never all in memory beside the entries decoded from them, and prune may replace a manifest
   * (with an equivalent one) meanwhile.
   */
  async #openPoint(
    item: ItemName,
    id: PointId,
  ): Promise<{ name: string; stream: Awaited<ReturnType<Backend["readStream"]>> }> {
    const name = paths.point(item, id);
    try {
      return { name, stream: await this.backend.readStream(name, MANIFEST_PIECE_BYTES) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") await this.pointSize(item, id); // says so
      throw err;
    }
  }

  /** The packs on disk (id → size), whether or not an index names them. */
  async packsOnDisk(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const prefix of await this.backend.listDirs("packs")) {
      for (const f of await this.backend.list(paths.packDir(prefix))) {
        if (f.endsWith(".pack")) out.set(f.slice(0, -5), await this.backend.size(`packs/${prefix}/${f}`));
      }
    }
    return out;
  }

  /** A pack's trailer records: read from its last 64 KiB (or the whole pack), or from `whole` when given. */
  async readPackTrailer(
    packId: string,
    size: number,
    whole?: Buffer,
  ): Promise<{ entries: Buffer; count: number }> {
    const name = paths.pack(packId);
    const tail =
      whole ?? (await this.backend.readRange(name, Math.max(0, size - 65536), Math.min(size, 65536)));
    const t = parsePackTrailer(packId, tail, size);
    return t.count >= 0 ? t : parsePackTrailer(packId, await this.backend.read(name), size);
  }

  /**
   * A writer of new blocks. `copy: true` is for GC: it stores blocks even though the index still
   * names them (their old pack is about to go), instead of skipping them as already stored.
   */
  writer(o: { copy?: boolean } = {}): BlockWriter {
    return new BlockWriter(this, o.copy === true);
  }

  // ---- reading blocks ----

  /** Reads and decompresses one frame; callers verify the blocks they take from it. */
  async readFrame(loc: BlockLocation): Promise<Buffer> {
    const name = paths.pack(loc.packId);
    let payload: Buffer;
    try {
      payload = await this.backend.readRange(name, loc.frameOffset, loc.frameLength);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new SwitchbackError("DATASTORE_CORRUPT", `pack ${loc.packId} is missing from the datastore`);
      }
      throw err;
    }
    return openFrame(
      payload,
      loc.compression,
      loc.frameBlocks,
      `pack ${loc.packId} frame @${loc.frameOffset}`,
    );
  }

  /** Reads one block and checks it against its hash. */
  async readBlock(hash: Buffer): Promise<Buffer> {
    const loc = (await this.index()).get(hash);
    if (loc === undefined) {
      throw new SwitchbackError("DATASTORE_CORRUPT", `block ${hash.toString("hex")} is not in the index`);
    }
    const frame = await this.readFrame(loc);
    const data = frame.subarray(loc.slot * BLOCK_SIZE, (loc.slot + 1) * BLOCK_SIZE);
    verifyBlock(data, hash, loc);
    return data;
  }

  // ---- points ----

  async items(): Promise<ItemName[]> {
    return (await this.backend.listDirs("points")) as ItemName[];
  }

  async pointIds(item: ItemName): Promise<PointId[]> {
    return (await this.backend.list(paths.pointDir(item)))
      .filter((n) => n.endsWith(".point"))
      .map((n) => n.slice(0, -".point".length) as PointId)
      .sort();
  }

  async readPointHeader(item: ItemName, id: PointId): Promise<PointHeader> {
    return (await this.#headerAndSize(item, id)).header;
  }

  async #headerAndSize(item: ItemName, id: PointId): Promise<{ header: PointHeader; size: number }> {
    const name = paths.point(item, id);
    // headers are small and lead the file; read the first 64 KiB and fall back to the whole file
    const size = await this.pointSize(item, id);
    const head = await this.backend.readRange(name, 0, Math.min(size, 65536));
    const need = head.length >= 12 ? 12 + head.readUInt32LE(8) : 0;
    const buf = need > head.length ? await this.backend.read(name) : head;
    return { header: decodeManifestHeader(name, buf).header, size };
  }

  /** The size of a point's manifest in bytes (POINT_NOT_FOUND when there is none). */
  async pointSize(item: ItemName, id: PointId): Promise<number> {
    try {
      return await this.backend.size(paths.point(item, id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new SwitchbackError(
          "POINT_NOT_FOUND",
          `recovery point ${id} of item ${item} does not exist; list points with 'switchback points list'`,
        );
      }
      throw err;
    }
  }

  async listPoints(item: ItemName): Promise<PointHeader[]> {
    const ids = await this.pointIds(item);
    return Promise.all(ids.map((id) => this.readPointHeader(item, id)));
  }

  async readPoint(item: ItemName, id: PointId): Promise<PointManifest> {
    const { name, stream } = await this.#openPoint(item, id);
    const c = new ManifestCollector(name, stream.size);
    for await (const piece of stream.pieces) c.push(piece);
    return c.end();
  }

  /**
   * The headers and manifest sizes of the chain from the base up to `id`, oldest first, from the
   * headers alone (no entries read).
   */
  async chainOf(item: ItemName, id: PointId): Promise<{ header: PointHeader; size: number }[]> {
    const out: { header: PointHeader; size: number }[] = [];
    const seen = new Set<string>();
    for (let cur: PointId | null = id; cur !== null; ) {
      if (seen.has(cur))
        throw new SwitchbackError(
          "DATASTORE_CORRUPT",
          `point ${id} of ${item}: parent chain loops at ${cur}`,
        );
      seen.add(cur);
      let link: { header: PointHeader; size: number };
      try {
        link = await this.#headerAndSize(item, cur);
      } catch (err) {
        if (err instanceof SwitchbackError && err.code === "POINT_NOT_FOUND" && cur !== id) {
          throw new SwitchbackError(
            "DATASTORE_CORRUPT",
            `point ${id} of ${item}: its ancestor ${cur} is missing`,
          );
        }
        throw err;
      }
      out.push(link);
      cur = link.header.parent;
    }
    return out.reverse();
  }

  /** Chain of manifests from the base up to `id`, oldest first. */
  async chain(item: ItemName, id: PointId): Promise<PointManifest[]> {
    const out: PointManifest[] = [];
    for (const { header } of await this.chainOf(item, id)) out.push(await this.readPoint(item, header.id));
    return out;
  }

  async resolveDisk(
    item: ItemName,
    id: PointId,
    disk: number,
  ): Promise<{ map: DiskMap; header: PointHeader }> {
    const chain = await this.chain(item, id);
    const top = chain[chain.length - 1]!;
    const d = diskOfChain(
      chain.map((m) => m.header),
      disk,
    );
    const map = new DiskMap(Math.ceil(d.sizeBytes / d.blockSize));
    for (const m of chain) map.apply(m.disks[disk]!);
    return { map, header: top.header };
  }

  /**
   * Makes a point visible. Every block it references must already be in a durable pack and index.
   * The manifest is written a part at a time as its sources give their entries.
   */
  async commitPoint(m: ManifestSource, after?: Promise<unknown>): Promise<void> {
    await this.backend.write(paths.point(m.header.item, m.header.id), manifestParts(m), publishAfter(after));
  }

  /** Replaces a point's manifest with an equivalent one (prune rewrites a child when its parent goes). */
  async rewritePoint(m: PointManifest): Promise<void> {
    await this.backend.write(paths.point(m.header.item, m.header.id), encodeManifest(m));
  }

  async removePoint(item: ItemName, id: PointId): Promise<void> {
    await this.backend.remove(paths.point(item, id));
  }

  // ---- locks ----

  /**
   * Shared locks for writers and readers, an exclusive lock for prune and GC: GC must not free a
   * block that a running replication has just found already stored.
   */
  async lock(kind: "shared" | "exclusive", purpose: string, o: { waitMs?: number } = {}): Promise<Lock> {
    // a shared locker waits a while for an exclusive holder (prune and GC are short); an exclusive
    // locker does not wait for shared holders, which can be a process server that runs for months,
    // unless it says how long (a site's own exclusive work, its process server's lock released
    // first: the readers left are restores and applies that end)
    const deadline = Date.now() + (o.waitMs ?? (kind === "shared" ? LOCK_WAIT_MS : 0));
    for (;;) {
      const r = await this.#tryLock(kind, purpose);
      if ("lock" in r) return r.lock;
      if (
        Date.now() >= deadline ||
        (o.waitMs === undefined && r.conflicts.some((c) => c.kind === "shared"))
      ) {
        throw new SwitchbackError(
          "DATASTORE_LOCKED",
          `datastore ${this.backend.location} is in use by ${r.conflicts.map((c) => c.who).join(", ")}; wait for it to finish and try again`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async #tryLock(
    kind: "shared" | "exclusive",
    purpose: string,
  ): Promise<{ lock: Lock } | { conflicts: { kind: string; who: string }[] }> {
    const id = `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
    const body = { kind, purpose, pid: process.pid, host: hostname(), createdAt: new Date().toISOString() };
    // on the machine's own disk a lock marker need not survive a power loss, which ends its holder
    // too: no fsyncs there (~5 ms a lock)
    await this.backend.write(paths.lock(id), Buffer.from(JSON.stringify(body)), this.#markers);
    const conflicts: { kind: string; who: string }[] = [];
    for (const n of await this.backend.list("locks")) {
      if (n === `${id}.json`) continue;
      let other: typeof body;
      try {
        other = JSON.parse((await this.backend.read(`locks/${n}`)).toString("utf8")) as typeof body;
      } catch {
        continue; // removed meanwhile
      }
      if (other.host === body.host && !pidAlive(other.pid)) {
        await this.backend.remove(`locks/${n}`, this.#markers);
        continue;
      }
      if (kind === "exclusive" || other.kind === "exclusive") {
        conflicts.push({ kind: other.kind, who: `${other.purpose} (pid ${other.pid} on ${other.host})` });
      }
    }
    if (conflicts.length > 0) {
      await this.backend.remove(paths.lock(id), this.#markers);
      return { conflicts };
    }
    return { lock: { release: () => this.backend.remove(paths.lock(id), this.#markers) } };
  }
}

/** How long a shared locker (replication, restore, check) waits for prune or GC to finish. */
const LOCK_WAIT_MS = 30_000;

export interface Lock {
  release(): Promise<void>;
}

/**
 * Disk `disk` of the last point of `chain` (headers, base first), checked to be the same disk (uuid
 * and size) in every point of the chain.
 */
export function diskOfChain(chain: readonly PointHeader[], disk: number): PointHeader["disks"][number] {
  const top = chain[chain.length - 1]!;
  const d = top.disks[disk];
  if (d === undefined) {
    throw new SwitchbackError(
      "DISK_NOT_FOUND",
      `point ${top.id} of ${top.item} has ${top.disks.length} disk(s); disk ${disk} does not exist (disks are numbered from 0)`,
    );
  }
  for (const h of chain) {
    const md = h.disks[disk];
    if (md === undefined || md.uuid !== d.uuid || md.sizeBytes !== d.sizeBytes) {
      throw new SwitchbackError(
        "DATASTORE_CORRUPT",
        `point ${h.id} of ${top.item}: disk ${disk} does not match its child ${top.id}`,
      );
    }
  }
  return d;
}

export function verifyBlock(data: Buffer, hash: Buffer, loc: BlockLocation): void {
  if (!blockHash(data).equals(hash)) {
    throw new SwitchbackError(
      "DATASTORE_CORRUPT",
      `block ${hash.toString("hex")} in pack ${loc.packId} (frame @${loc.frameOffset}, slot ${loc.slot}) does not match its hash`,
    );
  }
}

/** Waits for a pack stream's writes, then writes its last bytes and makes it visible; or drops it when one failed. */
async function finishStream(st: PackStream, name: string, tail: () => Buffer): Promise<void> {
  const done = await Promise.allSettled(st.writes);
  const failed = done.find((r) => r.status === "rejected");
  if (failed === undefined) return (await st.open).finish(name, tail());
  await abortStream(st);
  throw failed.reason;
}

/** Drops a pack stream once its writes have settled: its temporary file goes (never rejects). */
async function abortStream(st: PackStream): Promise<void> {
  await Promise.allSettled(st.writes);
  await (await st.open.catch(() => null))?.abort();
}

/**
 * Write options that make an object visible only once `after` has resolved (its file written and
 * fsynced meanwhile): what it names must be durable first. Nothing when `after` is not given.
 */
function publishAfter(after: Promise<unknown> | undefined): WriteOptions {
  if (after === undefined) return {};
  return {
    publish: async (make) => {
      await after;
      await make();
    },
  };
}

/**
 * A pack is written out as it fills, in steps of this much (where the backend can: Backend.begin), so
 * that the disk writes it while the pass goes on and a point's commit waits only for its last step.
 * Before, a point's last pack (up to 8 MiB) was all written at the commit, and the packs before it
 * while the commit waited for room for it: ~15-20 ms of a 21 MB incremental's commit here.
 */
const STREAM_STEP = 1024 * 1024;

/** A pack being written as it fills: the stream, the writes issued so far (they run at once), the bytes they cover. */
interface PackStream {
  open: Promise<ObjectStream>;
  writes: Promise<void>[];
  sent: number;
}

/**
 * Adds frames to a datastore: packs are written out as they fill and closed at ~8 MiB (fsync, rename)
 * in the background; flush() writes one index file that covers them, seen once they are durable.
 * Blocks become visible to other writers only after flush().
 */
export class BlockWriter {
  readonly #ds: Datastore;
  #builder = new PackBuilder();
  #stream: PackStream | null = null;
  #pending = new BlockIndex(1 << 12);
  readonly #inflight: Promise<void>[] = [];
  /** the packs sealed (written or being written) that no index file names yet, in the order sealed, and their writes */
  readonly #unindexed: { packId: string; entries: Buffer; written: Promise<void> }[] = [];
  /** seals under way (a pack taken from the builder, not yet in #unindexed) */
  #sealing = 0;
  #error: unknown;
  #flushing: Promise<void> = Promise.resolve();
  bytesWritten = 0;
  blocksWritten = 0;
  packsWritten = 0;

  readonly #copy: boolean;

  constructor(ds: Datastore, copy = false) {
    this.#copy = copy;
    this.#ds = ds;
  }

  /** For each hash in `hashes` (32 bytes each): true when the datastore does not have that block yet. */
  async missing(hashes: Buffer): Promise<boolean[]> {
    const idx = await this.#ds.index();
    const n = hashes.length / HASH_BYTES;
    const out: boolean[] = new Array(n);
    for (let i = 0; i < n; i++)
      out[i] = !idx.has(hashes, i * HASH_BYTES) && !this.#pending.has(hashes, i * HASH_BYTES);
    return out;
  }

  /** Adds a frame; `keep[slot]` false drops a block that is already stored (it still occupies the frame). */
  async add(frame: Frame, keep?: readonly boolean[]): Promise<void> {
    if (this.#error !== undefined) throw this.#error;

    // a block goes in only once: not when the datastore or this writer already holds it
    const idx = await this.#ds.index();
    const take: boolean[] = new Array(frame.blocks);
    let kept = 0;
    for (let s = 0; s < frame.blocks; s++) {
      take[s] =
        (keep === undefined || keep[s] === true) &&
        (this.#copy || !idx.has(frame.hashes, s * HASH_BYTES)) &&
        this.#pending.add(frame.hashes, s * HASH_BYTES, NO_LOCATION);
      if (take[s]) kept++;
    }
    if (kept === 0) return;
    this.#builder.add(frame, take);
    this.blocksWritten += kept;
    this.#streamOut();
    if (this.#builder.bytes >= PACK_TARGET_BYTES) await this.#seal();
  }

  /** Writes out the pack's whole steps not written yet (not waiting for them: a failure shows at the seal). */
  #streamOut(): void {
    const backend = this.#ds.backend;
    if (backend.begin === undefined) return;
    const upTo = Math.floor(this.#builder.bytes / STREAM_STEP) * STREAM_STEP;
    if (upTo === 0 || upTo <= (this.#stream?.sent ?? 0)) return;
    this.#stream ??= { open: backend.begin("packs"), writes: [], sent: 0 };
    const st = this.#stream;
    const bytes = this.#builder.bytesIn(st.sent, upTo);
    st.sent = upTo;
    // (appends are made in the order they are issued: reactions to one promise run in that order)
    const w = st.open.then((s) => s.append(bytes));
    w.catch(() => {}); // (awaited at the seal, which reports it)
    st.writes.push(w);
  }

  /** Drops a pack being written (a writer given up after a failure): its temporary file goes. */
  async discard(): Promise<void> {
    const st = this.#stream;
    this.#stream = null;
    if (st !== null) await abortStream(st);
  }

  async #seal(): Promise<void> {
    if (this.#builder.blockCount === 0) return;
    const builder = this.#builder;
    const stream = this.#stream;
    this.#builder = new PackBuilder();
    this.#stream = null;
    this.#sealing++;
    try {
      let finished: FinishedPack;
      try {
        finished = await builder.finish();
      } catch (err) {
        if (stream !== null) await abortStream(stream);
        throw err;
      }
      const { id, parts, entries, size, release } = finished;
      // at most two packs in flight: bounded memory, and the disk stays busy while we hash
      while (this.#inflight.length >= 2) await Promise.race(this.#inflight);
      const write =
        stream === null
          ? this.#ds.backend.write(paths.pack(id), parts)
          : finishStream(stream, paths.pack(id), () => builder.bytesIn(stream.sent, size));
      const p: Promise<void> = write
        .then(() => {
          this.bytesWritten += size;
          this.packsWritten++;
        })
        .catch((err: unknown) => {
          this.#error = err;
        })
        .finally(() => {
          release();
          const k = this.#inflight.indexOf(p);
          if (k >= 0) this.#inflight.splice(k, 1);
        });
      this.#inflight.push(p);
      // the index file that names it waits for exactly this write (it never rejects: a failure is
      // kept in #error)
      this.#unindexed.push({ packId: id, entries, written: p });
    } finally {
      this.#sealing--;
    }
  }

  /** Writes every pending pack and one index file for them. Returns when all of it is durable. */
  flush(): Promise<void> {
    // one flush at a time: a second caller must not return while the first still awaits its packs
    const next = this.#flushing.then(() => this.#flush());
    this.#flushing = next.catch(() => {});
    return next;
  }

  async #flush(): Promise<void> {
    await this.#seal();
    const sections = this.#unindexed.splice(0);
    // the writes of exactly these packs (a pack sealed meanwhile goes into the next index file)
    const written = Promise.all(sections.map((x) => x.written)).then(() => {
      if (this.#error !== undefined) throw this.#error;
    });
    written.catch(() => {}); // (awaited below; a pack may fail before the index file waits for it)
    if (sections.length === 0) return written;
    // the index file is written and fsynced while the last packs are, and seen only once they are
    // durable (an index never names a pack that is not)
    try {
      await this.#ds.writeIndexFile(sections, written);
    } finally {
      await written.catch(() => {}); // (settled either way before this returns)
    }
    // what was pending is in the datastore's index now; a long-lived writer must not keep a second copy
    if (
      this.#unindexed.length === 0 &&
      this.#inflight.length === 0 &&
      this.#sealing === 0 &&
      this.#builder.blockCount === 0
    ) {
      this.#pending = new BlockIndex(1 << 12);
    }
  }
}

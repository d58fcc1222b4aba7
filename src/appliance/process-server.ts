// The process server: the appliance role that receives agents' replication streams over HTTP and
// writes them into its site's datastore (docs/transport.md). Invariants:
//  - every block of every frame is checked against its BLAKE3 address before it is stored;
//  - a point is committed only when its parent is the item's latest point (no forked history) and
//    every block it references is durable and indexed;
//  - every request is idempotent, so an agent retries anything it did not see acknowledged.
// Blocks go through one shared BlockWriter, serialized by a mutex; it is flushed (packs + an index
// file, fsynced) before each commit, every FLUSH_EVERY_BYTES, after FLUSH_IDLE_MS without frames and
// at shutdown. A kill -9 loses only blocks received since the last flush; commit then names them
// missing (POINT_BLOCKS_MISSING) and the agent sends them again. A point's manifest comes in one body or
// staged in parts (manifest-uploads.ts); either way it is read in pieces and never held whole, and
// checked outside the mutex (only the history check and the rename that makes it visible are under
// it), so that one big manifest does not hold every other agent's frames back.
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { BlockWriter, Datastore, Lock } from "../datastore/datastore.ts";
import { DigestFiles } from "../datastore/digests.ts";
import { BLOCK_SIZE, paths } from "../datastore/format.ts";
import { collectGarbage } from "../datastore/gc.ts";
import { HASH_BYTES, hashBlocks, isZeroHash } from "../datastore/hash.ts";
import { LocalBackend } from "../datastore/local/local-backend.ts";
import {
  type EntryChunk,
  MANIFEST_MIN_BYTES,
  MANIFEST_PIECE_BYTES,
  ManifestParser,
  type PointHeader,
} from "../datastore/manifest.ts";
import { type Frame, openFrame } from "../datastore/pack.ts";
import { prune } from "../datastore/prune.ts";
import { SwitchbackError } from "../domain/errors.ts";
import { type ItemName, type PointId, parseItemName, parsePointId } from "../domain/ids.ts";
import type { RetentionPolicy } from "../domain/retention.ts";
import { readFullyAt } from "../platform/files.ts";
import { Mutex } from "../platform/turns.ts";
import {
  BODY_LIMIT_BYTES,
  CommitResponseSchema,
  DigestsQuerySchema,
  DiskParamsSchema,
  decodeFrameBodies,
  encodeBitmap,
  encodeDigests,
  FrameResponseSchema,
  ItemParamsSchema,
  LatestResponseSchema,
  ManifestPartQuerySchema,
  ManifestPartResponseSchema,
  PointHeaderSchema,
  PointParamsSchema,
  PROBLEM_TYPE_PREFIX,
  ProblemSchema,
  routes,
  StagedCommitRequestSchema,
  type Status,
  StatusSchema,
  WIRE_VERSION,
} from "../replication/wire.ts";
import { Gate } from "./gate.ts";
import { firstGap, ManifestUploads, readStaged, type StagedUpload } from "./manifest-uploads.ts";

const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;
const FLUSH_IDLE_MS = 1000;
/** a resync's parent digests are dropped this long after they were last asked for */
const DIGESTS_IDLE_MS = 10 * 60_000;
/** how often the staging folders of other servers are swept (manifest-uploads.ts, STAGED_STALE_MS) */
const SWEEP_EVERY_MS = 3600 * 1000;

// ---- authentication: the one seam (mTLS will replace tokenAuthenticator) ----

/** Who is calling, and which items it may write. */
export interface Principal {
  agent: string;
  /** item names this agent may replicate, or "*" for any */
  items: ReadonlySet<string> | "*";
  /**
   * items this agent replicated before, with a generation that is no longer current: a machine that
   * came back after a failover (docs/vault.md, fencing). Refused with GENERATION_FENCED.
   */
  fenced?: ReadonlySet<string>;
}

/** Decides who a request comes from; null = not authenticated. */
export type Authenticate = (req: FastifyRequest) => Principal | null;

const TokensFileSchema = Type.Object({
  version: Type.Literal(1),
  agents: Type.Array(
    Type.Object({
      name: Type.String({ minLength: 1 }),
      /** the token itself (at least 16 characters)… */
      token: Type.Optional(Type.String({ minLength: 16 })),
      /** …or, better, its SHA-256 in hex: `printf %s "$TOKEN" | sha256sum` */
      tokenSha256: Type.Optional(Type.String({ pattern: "^[0-9a-f]{64}$" })),
      items: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    }),
  ),
});
export type TokensFile = Static<typeof TokensFileSchema>;

export function loadTokensFile(file: string): TokensFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new SwitchbackError(
      "TOKENS_FILE_INVALID",
      `tokens file ${file} cannot be read as JSON (${(err as Error).message}); see docs/transport.md for its format`,
    );
  }
  if (!Value.Check(TokensFileSchema, raw)) {
    const e = [...Value.Errors(TokensFileSchema, raw)][0];
    throw new SwitchbackError(
      "TOKENS_FILE_INVALID",
      `tokens file ${file}: ${e?.path || "/"} ${e?.message ?? "is not valid"}; see docs/transport.md for its format`,
    );
  }
  for (const a of raw.agents) {
    if ((a.token === undefined) === (a.tokenSha256 === undefined)) {
      throw new SwitchbackError(
        "TOKENS_FILE_INVALID",
        `tokens file ${file}: agent ${JSON.stringify(a.name)} needs exactly one of "token" or "tokenSha256"`,
      );
    }
  }
  return raw;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** Bearer-token authentication against a tokens file. */
export function tokenAuthenticator(tokens: TokensFile): Authenticate {
  const known = tokens.agents.map((a) => ({
    digest: a.tokenSha256 !== undefined ? Buffer.from(a.tokenSha256, "hex") : sha256(a.token!),
    principal: {
      agent: a.name,
      items: a.items.includes("*") ? ("*" as const) : new Set(a.items),
    },
  }));
  return (req) => {
    const h = req.headers.authorization;
    if (h === undefined || !h.startsWith("Bearer ")) return null;
    const digest = sha256(h.slice("Bearer ".length).trim());
    // compare against every entry in constant time: no early exit tells which prefix matched
    let found: Principal | null = null;
    for (const k of known) if (timingSafeEqual(k.digest, digest)) found = k.principal;
    return found;
  };
}

function mayWrite(p: Principal, item: string): boolean {
  return p.items === "*" || p.items.has(item);
}

function checkAccess(p: Principal, item: string, verb: "write" | "access"): void {
  if (mayWrite(p, item)) return;
  if (p.fenced?.has(item)) {
    throw new SwitchbackError(
      "GENERATION_FENCED",
      `item ${item} failed over since agent ${p.agent} was told to replicate it; its replication is fenced until the item is reprotected`,
    );
  }
  throw new SwitchbackError("ITEM_NOT_ALLOWED", `agent ${p.agent} may not ${verb} item ${item}`);
}

// ---- errors as problem documents ----

const STATUS_OF: Record<string, number> = {
  UNAUTHORIZED: 401,
  ITEM_NOT_ALLOWED: 403,
  GENERATION_FENCED: 409,
  ITEM_HAS_NO_POINTS: 404,
  POINT_NOT_FOUND: 404,
  DISK_NOT_FOUND: 404,
  DIGESTS_RANGE_INVALID: 400,
  ROUTE_NOT_FOUND: 404,
  REQUEST_INVALID: 400,
  FRAME_INVALID: 400,
  HASHES_INVALID: 400,
  MANIFEST_INVALID: 400,
  POINT_EXISTS: 409,
  MANIFEST_PART_CONFLICT: 409,
  MANIFEST_UPLOAD_INCOMPLETE: 409,
  POINT_PARENT_NOT_LATEST: 409,
  POINT_ID_NOT_NEWER: 409,
  ITEM_IDENTITY_MISMATCH: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  FRAME_HASH_MISMATCH: 422,
  FRAME_UNREADABLE: 422,
  POINT_BLOCKS_MISSING: 422,
  SHUTTING_DOWN: 503,
  STORE_WRITE_FAILED: 503,
};

function sendProblem(reply: FastifyReply, code: string, detail: string, instance?: string): FastifyReply {
  const status = STATUS_OF[code] ?? 500;
  const body = {
    type: `${PROBLEM_TYPE_PREFIX}${code}`,
    title: code,
    status,
    detail,
    code,
    ...(instance !== undefined ? { instance } : {}),
  };
  if (status === 401) reply.header("www-authenticate", 'Bearer realm="switchback"');
  return reply.code(status).type("application/problem+json").send(JSON.stringify(body));
}

// ---- the server ----

export interface ProcessServerOptions {
  ds: Datastore;
  authenticate: Authenticate;
  host: string;
  port: number;
  jsonLogs?: boolean;
  /** prune every item by this policy (then GC) every `everyMs`; the server owns its datastore */
  retention?: { policy: RetentionPolicy; everyMs: number };
  /** told about every point committed (not about idempotent repeats) */
  onCommit?: (item: ItemName, header: PointHeader, agent: string) => void;
  /**
   * where manifests uploaded in parts are staged (this server takes the subfolder `<pid>@<host>`);
   * default: the folder `staging` of a datastore on a local file system
   */
  stagingDir?: string;
}

/** A manifest's bytes for a commit: a request body, or an upload staged in parts. */
interface ManifestBytes {
  /** for messages */
  readonly name: string;
  readonly size: number;
  /** its last 32 bytes: the BLAKE3 of all before them */
  readonly trailer: Buffer;
  /** its bytes from the start, in pieces of at most MANIFEST_PIECE_BYTES */
  pieces(): AsyncGenerator<Buffer>;
}

function bodyBytes(body: Buffer): ManifestBytes {
  return {
    name: "(request body)",
    size: body.length,
    trailer: body.subarray(Math.max(0, body.length - HASH_BYTES)),
    async *pieces() {
      for (let at = 0; at < body.length; at += MANIFEST_PIECE_BYTES)
        yield body.subarray(at, at + MANIFEST_PIECE_BYTES);
    },
  };
}

function stagedBytes(u: StagedUpload, trailer: Buffer): ManifestBytes {
  return {
    name: `(staged upload of point ${u.point})`,
    size: u.size,
    trailer,
    pieces: () => readStaged(u.file, u.size, MANIFEST_PIECE_BYTES),
  };
}

/** A refusal that settles the request for good (4xx); after any other failure the agent retries it. */
function isFinal(err: unknown): boolean {
  return err instanceof SwitchbackError && (STATUS_OF[err.code] ?? 500) < 500;
}

export class ProcessServer {
  readonly #ds: Datastore;
  readonly #auth: Authenticate;
  readonly #app: FastifyInstance;
  readonly #mutex = new Mutex();
  /** commits (shared) against work that needs the datastore to itself (exclusive): see #commit */
  readonly #commits = new Gate();
  #writer: BlockWriter;
  #lock: Lock | null = null;
  #bytesSinceFlush = 0;
  #idleTimer: NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;
  #retentionTimer: NodeJS.Timeout | null = null;
  #sweepTimer: NodeJS.Timeout | null = null;
  /** resyncs' parent digests by item/point/disk, and when each was last asked for */
  readonly #digests: DigestFiles;
  #digestTimer: NodeJS.Timeout | null = null;
  #uploads: ManifestUploads | null = null;
  readonly #opts: ProcessServerOptions;
  readonly status: Status;

  constructor(o: ProcessServerOptions) {
    this.#opts = o;
    this.#ds = o.ds;
    this.#auth = o.authenticate;
    this.#writer = o.ds.writer();
    this.#digests = new DigestFiles(o.ds, () => this.#staging.dir);
    this.status = {
      version: WIRE_VERSION,
      datastoreId: o.ds.config.id,
      startedAt: new Date().toISOString(),
      pid: process.pid,
      bytesReceived: 0,
      frameBodies: 0,
      framesReceived: 0,
      framesRejected: 0,
      blocksStored: 0,
      blocksAlreadyStored: 0,
      missingQueries: 0,
      hashesAsked: 0,
      digestsServed: 0,
      pointsCommitted: 0,
      pointsRejected: 0,
      manifestPartsReceived: 0,
      flushes: 0,
      pointsPruned: 0,
      bytesFreed: 0,
    };
    this.#app = Fastify({
      // JSON lines on stdout with --json-logs; otherwise only warnings and errors, on stderr
      logger: {
        level: o.jsonLogs ? "info" : "warn",
        base: { role: "process-server" },
        stream: o.jsonLogs ? process.stdout : process.stderr,
      },
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: BODY_LIMIT_BYTES,
      keepAliveTimeout: 30_000,
      return503OnClosing: true,
    });
    this.#routes();
  }

  get log(): FastifyInstance["log"] {
    return this.#app.log;
  }

  /**
   * Takes the shared datastore lock, sweeps the staging folder (uploads of process servers that are
   * gone died with them) and listens; returns the URL it listens on.
   */
  async start(): Promise<string> {
    this.#lock = await this.#ds.lock("shared", `process-server ${this.#opts.host}:${this.#opts.port}`);
    try {
      this.#uploads = await ManifestUploads.open(this.#stagingRoot());
      await this.#app.listen({ host: this.#opts.host, port: this.#opts.port });
    } catch (err) {
      await this.#uploads?.close();
      await this.#lock.release();
      this.#lock = null;
      throw err;
    }
    const a = this.#app.server.address() as AddressInfo;
    const host = a.family === "IPv6" ? `[${a.address}]` : a.address;
    // staged files of other hosts' servers turn stale while this one runs
    this.#sweepTimer = setInterval(() => {
      this.#staging
        .sweep()
        .catch((err: unknown) => this.#app.log.error({ err }, "sweeping the staging folder failed"));
    }, SWEEP_EVERY_MS);
    this.#sweepTimer.unref();
    const r = this.#opts.retention;
    if (r !== undefined) {
      this.#retentionTimer = setInterval(() => {
        this.runRetention(new Date()).catch((err: unknown) =>
          this.#app.log.error({ err }, "retention failed"),
        );
      }, r.everyMs);
      this.#retentionTimer.unref();
    }
    return `http://${host}:${a.port}`;
  }

  /**
   * Prunes every item by the retention policy, then collects garbage. Prune and GC need the
   * datastore to themselves, so frames and commits wait (under the mutex) while this runs, and the
   * server's shared lock is set down and taken again. A block that an agent was told is stored but
   * that GC frees meanwhile is caught at commit (every referenced block must be indexed) and re-sent.
   */
  async runRetention(now: Date): Promise<{ pruned: number; bytesFreed: number }> {
    const r = this.#opts.retention;
    if (r === undefined) return { pruned: 0, bytesFreed: 0 };
    return this.exclusive("retention", async () => {
      let pruned = 0;
      let bytesFreed = 0;
      for (const item of await this.#ds.items()) {
        const res = await prune(this.#ds, item, r.policy, { now });
        pruned += res.deleted.length;
      }
      if (pruned > 0) bytesFreed = (await collectGarbage(this.#ds)).bytesFreed;
      this.status.pointsPruned += pruned;
      this.status.bytesFreed += bytesFreed;
      this.#app.log.info({ pruned, bytesFreed }, "retention");
      return { pruned, bytesFreed };
    });
  }

  /**
   * Runs `fn` with the datastore to itself: the commits under way end first and new ones wait, then
   * frames wait too (under the mutex), blocks received so far are flushed, and the server's shared
   * lock is set down so that `fn` may take the exclusive one (prune, GC, deleting an item's points)
   * or write points of its own (a seed).
   */
  async exclusive<T>(purpose: string, fn: () => Promise<T>): Promise<T> {
    return this.#commits.exclusive(() =>
      this.#mutex.run(async () => {
        this.#app.log.info({ purpose }, "taking the datastore to itself");
        await this.#flush();
        await this.#lock?.release();
        this.#lock = null;
        try {
          return await fn();
        } finally {
          this.#lock = await this.#ds.lock("shared", `process-server ${this.#opts.host}:${this.#opts.port}`);
          // another process may have pruned or collected while the lock was down
          await this.#ds.reloadIndex();
        }
      }),
    );
  }

  /** Graceful stop: refuse new requests, finish the ones under way, flush, release the lock. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#idleTimer) clearTimeout(this.#idleTimer);
      if (this.#retentionTimer) clearInterval(this.#retentionTimer);
      if (this.#sweepTimer) clearInterval(this.#sweepTimer);
      if (this.#digestTimer) clearInterval(this.#digestTimer);
      await this.#app.close();
      void this.#digests.close(); // (a build under way is closed when it ends: shutdown does not wait for it)
      try {
        await this.#mutex.run(() => this.#flush());
        // an upload under way is sent again to the next process server (docs/transport.md)
        await this.#uploads?.close();
      } finally {
        await this.#lock?.release();
        this.#lock = null;
      }
    })();
    return this.#closing;
  }

  #stagingRoot(): string {
    if (this.#opts.stagingDir !== undefined) return this.#opts.stagingDir;
    if (this.#ds.backend instanceof LocalBackend) return path.join(this.#ds.backend.location, "staging");
    throw new SwitchbackError(
      "INVALID_OPTION",
      `datastore ${this.#ds.backend.location} is not a local folder; give the process server a staging folder for manifests uploaded in parts`,
    );
  }

  get #staging(): ManifestUploads {
    if (this.#uploads === null) throw new Error("the process server was not started");
    return this.#uploads;
  }

  // ---- the store side, always under the mutex ----

  async #flush(): Promise<void> {
    if (this.#bytesSinceFlush === 0) return;
    try {
      await this.#writer.flush();
    } catch (err) {
      this.#writerFailed(err);
    }
    // everything it held is in the datastore's index now; a fresh writer keeps its pending set
    // (which never shrinks) from growing with all the server ever received
    this.#writer = this.#ds.writer();
    this.#bytesSinceFlush = 0;
    this.status.flushes++;
  }

  /** A failed pack write poisons its writer: start a fresh one; what it held is sent again by agents. */
  #writerFailed(err: unknown): never {
    this.#app.log.error({ err }, "writing to the datastore failed; blocks not yet flushed are dropped");
    void this.#writer.discard(); // (a pack it was writing out: its temporary file goes)
    this.#writer = this.#ds.writer();
    throw new SwitchbackError(
      "STORE_WRITE_FAILED",
      `the process server could not write to datastore ${this.#ds.backend.location}: ${(err as Error).message}; retry later`,
    );
  }

  #scheduleIdleFlush(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#closing !== null) return; // close() flushes last
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      this.#mutex
        .run(() => this.#flush())
        .catch((err: unknown) => this.#app.log.error({ err }, "idle flush failed"));
    }, FLUSH_IDLE_MS);
    this.#idleTimer.unref();
  }

  /** Stores the blocks of `frames` that the datastore lacks; resolves with how many that was. */
  async #storeFrames(frames: readonly Frame[]): Promise<number> {
    return this.#mutex.run(async () => {
      let stored = 0;
      for (const frame of frames) {
        const keep = await this.#writer.missing(frame.hashes);
        const n = keep.filter(Boolean).length;
        if (n === 0) continue;
        try {
          await this.#writer.add(frame, keep);
        } catch (err) {
          this.#writerFailed(err);
        }
        stored += n;
        this.#bytesSinceFlush += frame.payload.length;
        if (this.#bytesSinceFlush >= FLUSH_EVERY_BYTES) await this.#flush();
      }
      return stored;
    });
  }

  /**
   * Commits a point from its manifest's bytes, read once, in pieces: the header first (checked, then
   * against the item's history), then the entries, each chunk checked against the index on its way
   * into the datastore. The point's file is renamed into place only once the checksum and every
   * block have been verified; a refusal leaves nothing. `staged`: the point id it was staged under.
   */
  async #commit(
    principal: Principal,
    item: ItemName,
    src: ManifestBytes,
    staged?: PointId,
  ): Promise<{ alreadyCommitted: boolean; header: PointHeader }> {
    const parser = new ManifestParser(src.name, src.size);
    const pieces = src.pieces();
    let ended = false;
    const invalid = (err: unknown) =>
      new SwitchbackError("MANIFEST_INVALID", `the point manifest is not valid: ${(err as Error).message}`);
    const end = (): void => {
      ended = true;
      try {
        parser.end();
      } catch (err) {
        throw invalid(err);
      }
    };
    // the header leads the file; the pieces read to reach it are written first
    const head: Buffer[] = [];
    const early: EntryChunk[] = [];
    try {
      // (until the parser fails: a damaged prefix would have every piece kept here)
      while (parser.header === null && !parser.failed) {
        const n = await pieces.next();
        if (n.done) break;
        head.push(n.value);
        early.push(...parser.push(n.value));
      }
      const h = parser.header;
      if (h === null) {
        // the rest only hashed, so that damage is reported as damage
        for (let n = await pieces.next(); !n.done; n = await pieces.next()) parser.push(n.value);
        end(); // throws: no valid header
        throw invalid(new Error("it has no header"));
      }
      if (!Value.Check(PointHeaderSchema, h) || h.disks.some((d) => d.blockSize !== BLOCK_SIZE)) {
        const e = [...Value.Errors(PointHeaderSchema, h)][0];
        throw new SwitchbackError(
          "MANIFEST_INVALID",
          `the point header is not valid: ${e ? `${e.path} ${e.message}` : `block size must be ${BLOCK_SIZE}`}`,
        );
      }
      if (h.item !== item) {
        throw new SwitchbackError(
          "MANIFEST_INVALID",
          `the manifest is for item ${JSON.stringify(h.item)} but was posted to item ${item}`,
        );
      }
      if (staged !== undefined && h.id !== staged) {
        throw new SwitchbackError(
          "MANIFEST_INVALID",
          `the manifest is of point ${h.id} but was staged as point ${staged}`,
        );
      }
      let id: PointId;
      try {
        id = parsePointId(h.id);
        if (h.parent !== null) parsePointId(h.parent);
      } catch (err) {
        throw new SwitchbackError("MANIFEST_INVALID", (err as Error).message);
      }
      checkAccess(principal, item, "write");
      // Checking a big manifest takes a while (a base point of a 10 TiB disk: ~100 s): it runs
      // outside the mutex, so that other agents' frames and commits go on meanwhile. Under the
      // mutex are only the history (here, and again when the point is made visible), the flush of
      // what the agent sent before it asked to commit, and a reload of the index. Work that needs
      // the datastore to itself (GC could free a block this commit has found) waits for the
      // commits under way and holds new ones back (#commits).
      return await this.#commits.shared(async () => {
        const done = await this.#mutex.run(async () => {
          if (await this.#history(item, id, h, src)) return true;
          await this.#flush();
          return false;
        });
        if (done) return { alreadyCommitted: true, header: h };
        // what a flush has indexed is durable, and stays so: GC waits for this commit to end
        let idx = await this.#ds.index();
        let reloaded = false;
        let missing = 0;
        let first = "";
        const check = async (chunks: readonly EntryChunk[]) => {
          for (const { entries: e } of chunks) {
            for (let at = 0; at < e.hashes.length; at += HASH_BYTES) {
              if (isZeroHash(e.hashes, at) || idx.has(e.hashes, at)) continue;
              // another writer (replicate-once, a second process server) may have indexed it meanwhile
              if (!reloaded) {
                reloaded = true;
                idx = await this.#mutex.run(() => this.#ds.reloadIndex());
                if (idx.has(e.hashes, at)) continue;
              }
              if (missing++ === 0) first = e.hashes.toString("hex", at, at + HASH_BYTES);
            }
          }
        };
        // the bytes go into the datastore as they are checked; the write makes the file visible
        // only when this generator ends without throwing, and the history still allows it
        async function* checked(): AsyncGenerator<Buffer> {
          await check(early);
          yield* head;
          for (let n = await pieces.next(); !n.done; n = await pieces.next()) {
            await check(parser.push(n.value));
            yield n.value;
          }
          end();
          if (missing > 0) {
            throw new SwitchbackError(
              "POINT_BLOCKS_MISSING",
              `point ${id} of item ${item} references ${missing} block(s) the datastore does not hold (first: ${first}); they were lost before a flush (process server restarted?); send them again and retry the point`,
            );
          }
        }
        let already = false;
        await this.#ds.backend.write(paths.point(item, id), checked(), {
          // another commit of this item (or of this very point, asked again) may have won meanwhile
          publish: (make) =>
            this.#mutex.run(async () => {
              already = await this.#history(item, id, h, src);
              if (!already) await make();
            }),
        });
        return { alreadyCommitted: already, header: h };
      });
    } catch (err) {
      // a refusal of a damaged manifest says that it is damaged: what looked wrong may be the damage
      if (!ended && isFinal(err)) {
        for (let n = await pieces.next(); !n.done; n = await pieces.next()) parser.push(n.value);
        end();
      }
      throw err;
    } finally {
      await pieces.return(undefined);
    }
  }

  /**
   * Whether point `id` (header `h`, bytes `src`) may become `item`'s latest: false when it may, true
   * when it is there already with these bytes; throws when it may not (another point is in its
   * place, it builds on another point than the latest, it is not newer, its disks are not the item's).
   */
  async #history(
    item: ItemName,
    id: PointId,
    h: PointHeader,
    src: { size: number; trailer: Buffer },
  ): Promise<boolean> {
    const ids = await this.#ds.pointIds(item);
    if (await this.#stored(item, id, src, ids)) return true;
    const latest = ids[ids.length - 1] ?? null;
    if (h.parent !== latest) {
      throw new SwitchbackError(
        "POINT_PARENT_NOT_LATEST",
        `point ${id} of item ${item} builds on ${h.parent ?? "nothing"} but the item's latest point is ${latest ?? "none"}; take a new point on top of the latest`,
      );
    }
    if (latest === null) return false;
    if (id <= latest) {
      throw new SwitchbackError(
        "POINT_ID_NOT_NEWER",
        `point ${id} of item ${item} is not newer than the latest point ${latest}; check the agent's clock`,
      );
    }
    const parent = await this.#ds.readPointHeader(item, latest);
    const same =
      parent.disks.length === h.disks.length &&
      parent.disks.every((d, i) => d.uuid === h.disks[i]!.uuid && d.sizeBytes === h.disks[i]!.sizeBytes);
    if (!same) {
      throw new SwitchbackError(
        "ITEM_IDENTITY_MISMATCH",
        `point ${id} describes disks (${h.disks.map((d) => d.uuid).join(", ")}) other than item ${item}'s (${parent.disks.map((d) => d.uuid).join(", ")})`,
      );
    }
    return false;
  }

  /**
   * True when point `id` is stored as `src` (a commit asked again), false when it is not stored;
   * POINT_EXISTS when it is stored with other bytes. `ids`: the item's points, when known.
   */
  async #stored(
    item: ItemName,
    id: PointId,
    src: { size: number; trailer: Buffer },
    ids?: readonly PointId[],
  ): Promise<boolean> {
    if (!(ids ?? (await this.#ds.pointIds(item))).includes(id)) return false;
    // the same size and the same checksum (which covers all before it)
    const name = paths.point(item, id);
    const size = await this.#ds.backend.size(name);
    if (size === src.size && size >= HASH_BYTES) {
      if ((await this.#ds.backend.readRange(name, size - HASH_BYTES, HASH_BYTES)).equals(src.trailer))
        return true;
    }
    throw new SwitchbackError(
      "POINT_EXISTS",
      `point ${id} of item ${item} already exists with other content; take a new point`,
    );
  }

  /** Commits `item`'s point `point` from the manifest staged for it, which must be `size` bytes ending in `checksum`. */
  #commitStaged(
    principal: Principal,
    item: ItemName,
    point: PointId,
    size: number,
    checksum: Buffer,
  ): Promise<{ alreadyCommitted: boolean; header: PointHeader }> {
    return this.#staging.with(item, point, async (u, drop) => {
      if (u === undefined) {
        // nothing staged: a commit that succeeded and is asked again (its upload is gone with it),
        // or an upload this process server never had or lost (it restarted)
        if (await this.#stored(item, point, { size, trailer: checksum }))
          return { alreadyCommitted: true, header: await this.#ds.readPointHeader(item, point) };
        throw new SwitchbackError(
          "MANIFEST_UPLOAD_INCOMPLETE",
          `nothing is staged for point ${point} of item ${item} (the process server restarted since, or never received a part); send the manifest's parts again, then commit`,
        );
      }
      try {
        if (size < MANIFEST_MIN_BYTES) {
          throw new SwitchbackError(
            "MANIFEST_INVALID",
            `the manifest staged for point ${point} of item ${item} is ${size} bytes; no manifest is shorter than ${MANIFEST_MIN_BYTES}; the upload is discarded`,
          );
        }
        if (u.size !== size) {
          throw new SwitchbackError(
            "MANIFEST_INVALID",
            `the manifest staged for point ${point} of item ${item} is ${u.size} bytes; the commit says ${size}; the upload is discarded`,
          );
        }
        const gap = firstGap(u);
        if (gap !== null) {
          // kept: the agent sends the parts again (those staged already are accepted again)
          throw new SwitchbackError(
            "MANIFEST_UPLOAD_INCOMPLETE",
            `${size - u.received} of the ${size} bytes of point ${point}'s manifest never arrived (first: bytes ${gap[0]} to ${gap[1]}); send the missing parts, then commit`,
          );
        }
        const fh = await open(u.file, "r").catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") throw err;
          await drop();
          throw new SwitchbackError(
            "MANIFEST_UPLOAD_INCOMPLETE",
            `the parts staged for point ${point} of item ${item} were removed from the staging folder; send the manifest's parts again, then commit`,
          );
        });
        const trailer = await readFullyAt(fh, size - HASH_BYTES, HASH_BYTES).finally(() => fh.close());
        if (!trailer.equals(checksum)) {
          throw new SwitchbackError(
            "MANIFEST_INVALID",
            `the manifest staged for point ${point} of item ${item} ends in checksum ${trailer.toString("hex")}, not in the ${checksum.toString("hex")} its commit names: parts were damaged on the way; the upload is discarded`,
          );
        }
        const r = await this.#commit(principal, item, stagedBytes(u, trailer), point);
        await drop();
        return r;
      } catch (err) {
        if (isFinal(err) && !(err instanceof SwitchbackError && err.code === "MANIFEST_UPLOAD_INCOMPLETE"))
          await drop();
        throw err;
      }
    });
  }

  /** Answers a commit; counts, logs and tells about a point that is new. */
  async #answerCommit(
    req: FastifyRequest,
    reply: FastifyReply,
    item: ItemName,
    agent: string,
    commit: () => Promise<{ alreadyCommitted: boolean; header: PointHeader }>,
  ): Promise<FastifyReply> {
    try {
      const { alreadyCommitted, header: h } = await commit();
      if (!alreadyCommitted) {
        this.status.pointsCommitted++;
        this.#opts.onCommit?.(item, h, agent);
        req.log.info(
          {
            agent,
            item,
            pointId: h.id,
            parent: h.parent,
            consistency: h.consistency,
            changedBlocks: h.disks.reduce((s, d) => s + d.entries, 0),
          },
          "point committed",
        );
      }
      // uploads of this point or older ones are of no use any more
      await this.#staging.discardUpTo(item, h.id);
      return reply.code(alreadyCommitted ? 200 : 201).send({ pointId: h.id, alreadyCommitted });
    } catch (err) {
      this.status.pointsRejected++;
      throw err;
    }
  }

  // ---- HTTP ----

  #routes(): void {
    const app = this.#app;
    app.addContentTypeParser("application/octet-stream", { parseAs: "buffer" }, (_req, body, done) => {
      done(null, body);
    });
    app.decorateRequest("principal", null);

    app.addHook("onRequest", async (req, reply) => {
      const p = this.#auth(req);
      if (p === null) {
        return sendProblem(
          reply,
          "UNAUTHORIZED",
          "no valid agent token; send 'Authorization: Bearer <token>' with a token listed in the process server's tokens file",
          req.url,
        );
      }
      (req as FastifyRequest & { agentPrincipal: Principal }).agentPrincipal = p;
    });

    app.setNotFoundHandler((req, reply) => {
      sendProblem(
        reply,
        "ROUTE_NOT_FOUND",
        `no route ${req.method} ${req.url} (wire protocol v${WIRE_VERSION})`,
      );
    });

    app.setErrorHandler((err: unknown, req, reply) => {
      if (err instanceof SwitchbackError) {
        const status = STATUS_OF[err.code] ?? 500;
        if (status >= 500) req.log.error({ err }, err.message);
        else req.log.warn({ code: err.code, url: req.url }, err.message);
        return sendProblem(reply, err.code, err.message, req.url);
      }
      const e = err as { code?: string; statusCode?: number; validation?: unknown; message?: string };
      if (e.validation !== undefined)
        return sendProblem(reply, "REQUEST_INVALID", e.message ?? "invalid request", req.url);
      if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE")
        return sendProblem(
          reply,
          "BODY_TOO_LARGE",
          `the request body is larger than this route accepts`,
          req.url,
        );
      if (e.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" || e.code === "FST_ERR_CTP_INVALID_CONTENT_LENGTH")
        return sendProblem(reply, "UNSUPPORTED_MEDIA_TYPE", e.message ?? "unsupported content type", req.url);
      if (e.statusCode !== undefined && e.statusCode < 500)
        return sendProblem(reply, "REQUEST_INVALID", e.message ?? "invalid request", req.url);
      req.log.error({ err }, "unexpected error");
      return sendProblem(reply, "INTERNAL", `unexpected error: ${e.message ?? String(err)}`, req.url);
    });

    const problems = { 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema };
    const principal = (req: FastifyRequest) =>
      (req as FastifyRequest & { agentPrincipal: Principal }).agentPrincipal;
    const mayRead = (req: FastifyRequest, item: string) => checkAccess(principal(req), item, "access");

    app.get(routes.status, { schema: { response: { 200: StatusSchema } } }, async () => this.status);

    app.get<{ Params: Static<typeof ItemParamsSchema> }>(
      routes.latest(":item"),
      { schema: { params: ItemParamsSchema, response: { 200: LatestResponseSchema, ...problems } } },
      async (req, reply) => {
        const item = parseItemName(req.params.item);
        mayRead(req, item);
        const ids = await this.#ds.pointIds(item);
        const last = ids[ids.length - 1];
        if (last === undefined)
          return sendProblem(reply, "ITEM_HAS_NO_POINTS", `item ${item} has no recovery points yet`, req.url);
        return { point: await this.#ds.readPointHeader(item, last) };
      },
    );

    app.get<{ Params: Static<typeof DiskParamsSchema>; Querystring: Static<typeof DigestsQuerySchema> }>(
      routes.digests(":item", ":point", ":disk"),
      { schema: { params: DiskParamsSchema, querystring: DigestsQuerySchema } },
      async (req, reply) => {
        const item = parseItemName(req.params.item);
        mayRead(req, item);
        // a parent's digests are built into this server's staging folder at the first request, and
        // closed DIGESTS_IDLE_MS after the last
        const file = await this.#digests.get(item, parsePointId(req.params.point), req.params.disk);
        this.#digestTimer ??= setInterval(() => {
          void this.#digests.close(Date.now() - DIGESTS_IDLE_MS);
        }, 60_000).unref();
        const { from, count } = req.query;
        if (from + count > file.blockCount) {
          throw new SwitchbackError(
            "DIGESTS_RANGE_INVALID",
            `blocks [${from}, ${from + count}) are past the end of disk ${req.params.disk} (${file.blockCount} blocks)`,
          );
        }
        const digests = await file.read(from, count);
        this.status.digestsServed += count;
        return reply.type("application/octet-stream").send(encodeDigests(from, digests));
      },
    );

    app.post(routes.missing, async (req, reply) => {
      const body = req.body;
      if (!Buffer.isBuffer(body) || body.length % HASH_BYTES !== 0) {
        throw new SwitchbackError(
          "HASHES_INVALID",
          `the body must be application/octet-stream, a whole number of 32-byte hashes`,
        );
      }
      this.status.missingQueries++;
      this.status.hashesAsked += body.length / HASH_BYTES;
      // not under the mutex, so that an answer never waits for a flush: a frame being stored at this
      // moment may be reported missing and sent twice, which is harmless
      const missing = await this.#writer.missing(body);
      return reply.type("application/octet-stream").send(encodeBitmap(missing));
    });

    app.put(routes.frames, { schema: { response: { 200: FrameResponseSchema } } }, async (req) => {
      const body = req.body;
      if (!Buffer.isBuffer(body))
        throw new SwitchbackError("FRAME_INVALID", "a frame must be sent as application/octet-stream");
      this.status.bytesReceived += body.length;
      this.status.frameBodies++;
      let frames: Frame[] = [];
      try {
        try {
          frames = decodeFrameBodies(body);
        } finally {
          // a body that is not frames counts as one frame, received and rejected
          this.status.framesReceived += Math.max(1, frames.length);
        }
        // every frame of the body is checked before any of it is stored; other requests are answered
        // between every 8 MiB of it (a body of well-compressed frames may open to many times its size)
        let blocks = 0;
        let sinceTurn = 0;
        for (const [f, frame] of frames.entries()) {
          if (sinceTurn >= 2048) {
            sinceTurn = 0;
            await new Promise<void>((r) => setImmediate(r));
          }
          sinceTurn += frame.blocks;
          const which = frames.length === 1 ? "the frame" : `frame ${f} of the body`;
          let raw: Buffer;
          try {
            raw = openFrame(frame.payload, frame.compression, frame.blocks, "frame");
          } catch (err) {
            throw new SwitchbackError(
              "FRAME_UNREADABLE",
              `${which}: ${(err as Error).message}; nothing of the body was stored`,
            );
          }
          const got = hashBlocks(raw);
          for (let s = 0; s < frame.blocks; s++) {
            const h = got.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES);
            if (!h.equals(frame.hashes.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES))) {
              throw new SwitchbackError(
                "FRAME_HASH_MISMATCH",
                `block ${s} of ${which} hashes to ${h.toString("hex")}, not to the announced ${frame.hashes.subarray(s * HASH_BYTES, (s + 1) * HASH_BYTES).toString("hex")}; the body was damaged on the way and nothing of it was stored; send it again`,
              );
            }
          }
          blocks += frame.blocks;
        }
        const stored = await this.#storeFrames(frames);
        this.status.blocksStored += stored;
        this.status.blocksAlreadyStored += blocks - stored;
        this.#scheduleIdleFlush();
        return { frames: frames.length, blocks, stored };
      } catch (err) {
        this.status.framesRejected += Math.max(1, frames.length);
        throw err;
      }
    });

    const commitResponses = { 200: CommitResponseSchema, 201: CommitResponseSchema };

    app.post<{ Params: Static<typeof ItemParamsSchema> }>(
      routes.points(":item"),
      { schema: { params: ItemParamsSchema, response: commitResponses } },
      async (req, reply) => {
        const body = req.body;
        if (!Buffer.isBuffer(body))
          throw new SwitchbackError("MANIFEST_INVALID", "a point must be sent as application/octet-stream");
        const item = parseItemName(req.params.item);
        const p = principal(req);
        return this.#answerCommit(req, reply, item, p.agent, () => this.#commit(p, item, bodyBytes(body)));
      },
    );

    app.put<{
      Params: Static<typeof PointParamsSchema>;
      Querystring: Static<typeof ManifestPartQuerySchema>;
    }>(
      routes.manifestPart(":item", ":point"),
      {
        schema: {
          params: PointParamsSchema,
          querystring: ManifestPartQuerySchema,
          response: { 200: ManifestPartResponseSchema },
        },
      },
      async (req) => {
        const body = req.body;
        if (!Buffer.isBuffer(body) || body.length === 0) {
          throw new SwitchbackError(
            "REQUEST_INVALID",
            "a part of a manifest must be a non-empty application/octet-stream body",
          );
        }
        this.status.manifestPartsReceived++;
        const item = parseItemName(req.params.item);
        const point = parsePointId(req.params.point);
        checkAccess(principal(req), item, "write");
        const { offset, size } = req.query;
        const u = await this.#staging.put(item, point, size, offset, body, async () => {
          const ids = await this.#ds.pointIds(item);
          const latest = ids[ids.length - 1];
          if (latest === undefined || point > latest) return;
          throw ids.includes(point)
            ? new SwitchbackError(
                "POINT_EXISTS",
                `point ${point} of item ${item} is committed already; its manifest is not staged again`,
              )
            : new SwitchbackError(
                "POINT_ID_NOT_NEWER",
                `point ${point} of item ${item} is not newer than the item's latest point ${latest}; its manifest is not staged`,
              );
        });
        return { size: u.size, received: u.received };
      },
    );

    app.post<{ Params: Static<typeof PointParamsSchema>; Body: Static<typeof StagedCommitRequestSchema> }>(
      routes.commitStaged(":item", ":point"),
      { schema: { params: PointParamsSchema, body: StagedCommitRequestSchema, response: commitResponses } },
      async (req, reply) => {
        const item = parseItemName(req.params.item);
        const point = parsePointId(req.params.point);
        const p = principal(req);
        return this.#answerCommit(req, reply, item, p.agent, async () => {
          checkAccess(p, item, "write");
          return this.#commitStaged(p, item, point, req.body.size, Buffer.from(req.body.checksum, "hex"));
        });
      },
    );
  }
}

// A PointSink that ships a point to a process server over HTTP (docs/transport.md). Every call is
// idempotent and retried with backoff on connection errors and 5xx answers until a deadline, so a
// dropped connection or a restarted process server costs a retry, not a failure. Frames go in bodies
// of about a MiB (several frames each) with a small window of requests in flight, and `missing`
// questions asked meanwhile go together in one request: a request costs each side ~0.5 ms of CPU,
// and one per 128 KiB frame and batch was most of a full copy's time. Commit waits for all of them. A commit the server refuses
// because blocks went missing (it restarted before flushing them) fails with POINT_BLOCKS_MISSING: the
// agent runs the point again, and `missing` then asks for exactly what the server lacks. A manifest
// bigger than one part is staged in parts as it is encoded (never whole in memory), then committed.
import type { Static, TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { HASH_BYTES } from "../datastore/hash.ts";
import { type ManifestSource, manifestParts, manifestSize, type PointHeader } from "../datastore/manifest.ts";
import type { Frame } from "../datastore/pack.ts";
import { SwitchbackError } from "../domain/errors.ts";
import type { ItemName, PointId } from "../domain/ids.ts";
import { HttpClient, HttpFailure } from "../platform/http-client.ts";
import type { PointSink } from "./sink.ts";
import {
  BODY_LIMIT_BYTES,
  type CommitResponse,
  CommitResponseSchema,
  decodeBitmap,
  decodeDigests,
  frameBodyParts,
  LatestResponseSchema,
  ManifestPartResponseSchema,
  ProblemSchema,
  routes,
  type Status,
  StatusSchema,
} from "./wire.ts";

export interface RemoteSinkOptions {
  /** base URL of the process server, e.g. http://10.0.0.5:7443 */
  server: string;
  token: string;
  /** how long one call keeps retrying before it fails (default 60 s) */
  deadlineMs?: number;
  /** time limit of one HTTP attempt (default 30 s) */
  attemptTimeoutMs?: number;
  /** requests of frames in flight at once, of `missing` questions, and parts of a manifest (default 4) */
  window?: number;
  /**
   * a frames request is sent once its frames reach this many bytes (default 1 MiB, and less on a
   * link too slow to move the requests in flight well within an attempt's time limit), or at the commit
   */
  framesBodyBytes?: number;
  /**
   * a manifest bigger than this is staged in parts of this size, a smaller one is sent in the commit
   * (default and most: the server's body limit, 8 MiB)
   */
  manifestPartBytes?: number;
  /** extra headers on every request (the vault's agent sends its replication generation) */
  headers?: Record<string, string>;
  /** told about every retry */
  onRetry?: (e: { what: string; attempt: number; delayMs: number; error: string }) => void;
}

interface Answer {
  status: number;
  body: Buffer;
}

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
/** hashes in one `missing` request at most (2 MiB) */
const MISSING_MAX_HASHES = 65_536;
/**
 * The smallest frames request: where it starts, and what a slow link keeps to (one scanner frame:
 * what version 2 sent a request, with the same time limit)
 */
const FRAMES_BODY_MIN = 128 * 1024;
/** blocks in one frames request at most (32 MiB raw: what the server opens and hashes for it) */
const FRAMES_BODY_MAX_BLOCKS = 8192;

interface Question {
  hashes: Buffer;
  resolve: (missing: boolean[]) => void;
  reject: (err: unknown) => void;
}
/**
 * A staged commit reads, checks and writes the whole manifest on the server: its time limits grow by
 * a millisecond for every this many bytes, a second per 50 MiB (10 GiB: ~3.5 min)
 */
const COMMIT_BYTES_PER_MS = 50 * 1024;
/**
 * The first request for a parent's block digests waits while the server reads and checks every
 * manifest of the parent's chain and builds them (a base of 1 TiB of data: ~11 GB of manifest, a few
 * minutes at worst); the requests after it answer at once. Its deadline grows by this much.
 */
const DIGESTS_BUILD_MS = 10 * 60_000;
/** times a staged manifest is sent again when the server lost it (it restarted) before it is given up */
const UPLOAD_ROUNDS = 3;

export class RemoteSink implements PointSink {
  readonly target: string;
  readonly #base: string;
  readonly #http: HttpClient;
  readonly #auth: string;
  readonly #headers: Record<string, string>;
  readonly #deadlineMs: number;
  readonly #attemptMs: number;
  readonly #window: number;
  readonly #framesBodyBytes: number;
  readonly #partBytes: number;
  readonly #onRetry: RemoteSinkOptions["onRetry"];
  readonly #inflight = new Set<Promise<void>>();
  /** hashes of frames in flight: `missing` reports them as held, so a block is not sent twice */
  readonly #inflightHashes = new Map<string, number>();
  /** frames waiting for the next frames request (their bodies' parts), their bytes and their hashes' keys */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #pendingKeys: string[] = [];
  /**
   * the size frames requests are sent at: from FRAMES_BODY_MIN up to framesBodyBytes, as fast as the
   * link moves them (the requests in flight share it, and each must finish well within its time limit)
   */
  #bodyTarget = FRAMES_BODY_MIN;
  /** `missing` questions waiting for a request, and the requests of them in flight */
  #questions: Question[] = [];
  #asking = 0;
  #askScheduled = false;
  #failure: unknown = null;
  /** body bytes sent again after a failed attempt */
  bytesResent = 0;
  retries = 0;

  private constructor(o: RemoteSinkOptions, datastoreId: string) {
    this.#base = o.server.replace(/\/+$/, "");
    try {
      this.#http = new HttpClient(this.#base);
    } catch (err) {
      throw new SwitchbackError(
        "PROCESS_SERVER_URL_INVALID",
        `${o.server} is not a process server URL (${(err as Error).message}); give one like http://10.0.0.5:7443`,
      );
    }
    this.#auth = `Bearer ${o.token}`;
    this.#headers = o.headers ?? {};
    this.#deadlineMs = o.deadlineMs ?? 60_000;
    this.#attemptMs = o.attemptTimeoutMs ?? 30_000;
    this.#window = Math.max(1, o.window ?? 4);
    this.#framesBodyBytes = Math.min(BODY_LIMIT_BYTES / 2, Math.max(1, o.framesBodyBytes ?? 1024 * 1024));
    this.#partBytes = Math.min(BODY_LIMIT_BYTES, Math.max(1, o.manifestPartBytes ?? BODY_LIMIT_BYTES));
    this.#onRetry = o.onRetry;
    // the agent's hashes describe what a datastore holds, whichever process server wrote it there
    this.target = `datastore:${datastoreId}`;
  }

  /** Reaches the process server (retrying until the deadline) and learns which datastore it writes. */
  static async connect(o: RemoteSinkOptions): Promise<RemoteSink> {
    const probe = new RemoteSink(o, "");
    try {
      return new RemoteSink(o, (await probe.status()).datastoreId);
    } finally {
      probe.#http.close();
    }
  }

  async status(): Promise<Status> {
    return this.#json(await this.#call("GET", routes.status, "status"), StatusSchema, "status");
  }

  async latestPoint(item: ItemName): Promise<PointHeader | null> {
    const a = await this.#call("GET", routes.latest(item), `latest point of ${item}`, { allow: [404] });
    if (a.status === 404) {
      const p = this.#problem(a);
      if (p?.code === "ITEM_HAS_NO_POINTS") return null;
      throw this.#refusal(a, `latest point of ${item}`);
    }
    return this.#json(a, LatestResponseSchema, "latest point").point as PointHeader;
  }

  async digests(item: ItemName, point: PointId, disk: number, from: number, count: number): Promise<Buffer> {
    const a = await this.#call(
      "GET",
      `${routes.digests(item, point, disk)}?from=${from}&count=${count}`,
      `block digests of ${item}/${point}/${disk}`,
      { deadlineMs: this.#deadlineMs + DIGESTS_BUILD_MS },
    );
    return decodeDigests(a.body, from, count);
  }

  /**
   * Which of `hashes` the server lacks. Questions asked while `window` requests are in flight (or in
   * the same turn of the event loop) go together in the next request.
   */
  missing(hashes: Buffer): Promise<boolean[]> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#questions.push({ hashes, resolve, reject });
      if (!this.#askScheduled) {
        this.#askScheduled = true;
        setImmediate(() => {
          this.#askScheduled = false;
          this.#ask();
        });
      }
    });
  }

  /** Sends the questions waiting, up to MISSING_MAX_HASHES a request, while fewer than `window` are in flight. */
  #ask(): void {
    while (this.#asking < this.#window && this.#questions.length > 0) {
      const batch: Question[] = [];
      let n = 0;
      while (this.#questions.length > 0) {
        const k = this.#questions[0]!.hashes.length / HASH_BYTES;
        if (batch.length > 0 && n + k > MISSING_MAX_HASHES) break;
        batch.push(this.#questions.shift()!);
        n += k;
      }
      this.#asking++;
      const body = batch.length === 1 ? batch[0]!.hashes : Buffer.concat(batch.map((q) => q.hashes));
      this.#call("POST", routes.missing, "missing blocks", { body })
        .then((a) => {
          const out = decodeBitmap(a.body, n);
          // a block in a frame in flight (or waiting to go) is held as far as the point goes, and so
          // is one this answer already gives another question as missing: that question's frame
          // sends it (every block answered missing is sent, or the point fails)
          const answered = new Set<string>();
          let at = 0;
          for (const q of batch) {
            const k = q.hashes.length / HASH_BYTES;
            const mine = out.slice(at, at + k);
            for (let i = 0; i < k; i++) {
              if (!mine[i]) continue;
              const key = hashKey(q.hashes, i);
              if (this.#inflightHashes.has(key) || answered.has(key)) mine[i] = false;
              else answered.add(key);
            }
            at += k;
            q.resolve(mine);
          }
        })
        .catch((err: unknown) => {
          for (const q of batch) q.reject(err);
        })
        .finally(() => {
          this.#asking--;
          this.#ask();
        });
    }
  }

  /**
   * Queues a frame for the next frames request (sent once the frames waiting reach framesBodyBytes,
   * at most `window` requests in flight) and returns its body length: the bytes it puts on the wire.
   */
  async send(frame: Frame, keep?: readonly boolean[]): Promise<number> {
    this.#throwFailure();
    // the wire carries only what the server should keep; `keep` exists for the local writer
    const f = keep === undefined || keep.every(Boolean) ? frame : null;
    if (f === null)
      throw new Error("RemoteSink.send: partial frames are not supported; send a frame of missing blocks");
    for (let i = 0; i < f.blocks; i++) {
      const k = hashKey(f.hashes, i);
      this.#pendingKeys.push(k);
      this.#inflightHashes.set(k, (this.#inflightHashes.get(k) ?? 0) + 1);
    }
    // views of the frame's buffers, written to the connection as they are (the sink does not copy
    // frames by the time send resolves: `copiesFrames` is not set, so the caller does not reuse them)
    const parts = frameBodyParts(f);
    const bytes = parts[0].length + parts[1].length + parts[2].length;
    this.#pending.push(...parts);
    this.#pendingBytes += bytes;
    if (
      this.#pendingBytes >= Math.min(this.#bodyTarget, this.#framesBodyBytes) ||
      this.#pendingKeys.length >= FRAMES_BODY_MAX_BLOCKS
    )
      await this.#sendPending();
    return bytes;
  }

  /** Sends the frames waiting in one request, once fewer than `window` are in flight. */
  async #sendPending(): Promise<void> {
    if (this.#pending.length === 0) return;
    const parts = this.#pending;
    const bytes = this.#pendingBytes;
    const keys = this.#pendingKeys;
    this.#pending = [];
    this.#pendingKeys = [];
    this.#pendingBytes = 0;
    const release = () => this.#release(keys);
    try {
      while (this.#inflight.size >= this.#window) await Promise.race(this.#inflight);
      this.#throwFailure();
    } catch (err) {
      release();
      throw err;
    }
    const started = Date.now();
    const p: Promise<void> = this.#call("PUT", routes.frames, `frames of ${keys.length} blocks`, {
      body: parts,
      onAttemptFailed: () => {
        this.#bodyTarget = FRAMES_BODY_MIN;
      },
    })
      .then(
        () => {
          // the rate this request saw (sharing the link with the others in flight): the next ones are
          // sized so that `window` of them move in a quarter of an attempt's time limit
          const rate = bytes / Math.max(1, Date.now() - started);
          this.#bodyTarget = Math.max(
            FRAMES_BODY_MIN,
            Math.min(this.#framesBodyBytes, (rate * this.#attemptMs) / 4),
          );
        },
        (err: unknown) => {
          this.#failure ??= err;
        },
      )
      .finally(() => {
        this.#inflight.delete(p);
        release();
      });
    this.#inflight.add(p);
  }

  /**
   * Waits for every frame, then asks the server to commit the point: with the manifest in the request
   * when it fits in one part, else after staging it in parts.
   */
  async commit(manifest: ManifestSource): Promise<void> {
    await this.flush();
    const h = manifest.header;
    const size = manifestSize(manifest);
    const r =
      size <= this.#partBytes
        ? this.#json(
            await this.#call("POST", routes.points(h.item), `commit of point ${h.id}`, {
              body: Buffer.concat([...manifestParts(manifest)]),
            }),
            CommitResponseSchema,
            "commit",
          )
        : await this.#commitStaged(manifest, size);
    if (r.pointId !== h.id)
      throw new SwitchbackError("PROTOCOL_ERROR", `the server committed ${r.pointId} instead of ${h.id}`);
  }

  /**
   * Stages the manifest in parts, then commits it. A server that restarted meanwhile lost what it
   * had staged (MANIFEST_UPLOAD_INCOMPLETE): every part is sent again, up to UPLOAD_ROUNDS times.
   */
  async #commitStaged(manifest: ManifestSource, size: number): Promise<CommitResponse> {
    const h = manifest.header;
    const what = `commit of point ${h.id}`;
    // the server reads the whole manifest before it answers
    const extraMs = Math.ceil(size / COMMIT_BYTES_PER_MS);
    for (let round = 1; ; round++) {
      const checksum = await this.#stage(manifest, size, round > 1);
      const a = await this.#call("POST", routes.commitStaged(h.item, h.id), what, {
        json: { size, checksum: checksum.toString("hex") },
        allow: [409],
        deadlineMs: this.#deadlineMs + extraMs,
        attemptMs: this.#attemptMs + extraMs,
      });
      if (a.status === 409) {
        const p = this.#problem(a);
        if (p?.code === "MANIFEST_UPLOAD_INCOMPLETE" && round < UPLOAD_ROUNDS) {
          this.#onRetry?.({
            what: `${what}: staging its manifest again`,
            attempt: round,
            delayMs: 0,
            error: p.detail,
          });
          continue;
        }
        throw this.#refusal(a, what);
      }
      return this.#json(a, CommitResponseSchema, "commit");
    }
  }

  /**
   * Sends the manifest in parts of #partBytes as it is encoded, up to `window` at once; returns its
   * checksum (its last 32 bytes). `again`: every part was sent before (counted in bytesResent).
   */
  async #stage(manifest: ManifestSource, size: number, again: boolean): Promise<Buffer> {
    const h = manifest.header;
    const inflight = new Set<Promise<void>>();
    let failure: unknown = null;
    const send = (part: Buffer, offset: number) => {
      const p: Promise<void> = this.#call(
        "PUT",
        `${routes.manifestPart(h.item, h.id)}?offset=${offset}&size=${size}`,
        `part at ${offset} of point ${h.id}'s manifest`,
        { body: part },
      )
        .then((a) => {
          this.#json(a, ManifestPartResponseSchema, "manifest part");
        })
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    };
    let part = Buffer.allocUnsafe(Math.min(this.#partBytes, size));
    let filled = 0;
    let offset = 0;
    // the manifest's last 32 bytes: its checksum
    const tail = Buffer.alloc(HASH_BYTES);
    try {
      for (const piece of manifestParts(manifest)) {
        if (piece.length >= HASH_BYTES) piece.copy(tail, 0, piece.length - HASH_BYTES);
        else {
          tail.copy(tail, 0, piece.length);
          piece.copy(tail, HASH_BYTES - piece.length);
        }
        for (let at = 0; at < piece.length; ) {
          if (offset >= size)
            throw new Error(`manifest of point ${h.id}: more than the ${size} bytes announced`);
          const n = piece.copy(part, filled, at);
          at += n;
          filled += n;
          if (filled < part.length) continue;
          while (inflight.size >= this.#window) await Promise.race(inflight);
          if (failure !== null) throw failure;
          send(part, offset);
          if (again) this.bytesResent += part.length;
          offset += filled;
          part = Buffer.allocUnsafe(Math.min(this.#partBytes, size - offset));
          filled = 0;
        }
      }
      if (offset !== size || filled !== 0)
        throw new Error(
          `manifest of point ${h.id}: encoded ${offset + filled} bytes, ${size} were announced`,
        );
      while (inflight.size > 0) await Promise.race(inflight);
      if (failure !== null) throw failure;
    } finally {
      await Promise.allSettled([...inflight]);
    }
    return tail;
  }

  /** Sends the frames waiting, waits for every frames request, and throws the first that failed. */
  async flush(): Promise<void> {
    await this.#drain();
    this.#throwFailure();
  }

  /**
   * Ends the sink: frames not sent yet are dropped (a point that commits sends them first; one that
   * failed has no use for them, and sending them could take another whole deadline), those in flight
   * are waited for.
   */
  async close(): Promise<void> {
    this.#release(this.#pendingKeys);
    this.#pending = [];
    this.#pendingKeys = [];
    this.#pendingBytes = 0;
    try {
      await this.#drain();
    } finally {
      this.#http.close();
    }
  }

  async #drain(): Promise<void> {
    try {
      await this.#sendPending();
    } finally {
      while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    }
  }

  /** The frames of `keys` are no longer waiting or in flight: their blocks no longer count as held. */
  #release(keys: readonly string[]): void {
    for (const k of keys) {
      const c = this.#inflightHashes.get(k)! - 1;
      if (c === 0) this.#inflightHashes.delete(k);
      else this.#inflightHashes.set(k, c);
    }
  }

  #throwFailure(): void {
    if (this.#failure !== null) throw this.#failure;
  }

  // ---- HTTP with retries ----

  async #call(
    method: "GET" | "POST" | "PUT",
    path: string,
    what: string,
    o: {
      body?: Buffer | readonly Buffer[];
      json?: unknown;
      allow?: number[];
      deadlineMs?: number;
      attemptMs?: number;
      /** told when an attempt fails and is to be retried */
      onAttemptFailed?: () => void;
    } = {},
  ): Promise<Answer> {
    const deadline = Date.now() + (o.deadlineMs ?? this.#deadlineMs);
    const attemptMs = o.attemptMs ?? this.#attemptMs;
    const body = o.json !== undefined ? Buffer.from(JSON.stringify(o.json)) : o.body;
    let bodyBytes = 0;
    if (body !== undefined) for (const p of Buffer.isBuffer(body) ? [body] : body) bodyBytes += p.length;
    const type = o.json !== undefined ? "application/json" : "application/octet-stream";
    let delay = 100;
    let lastError = "";
    for (let attempt = 1; ; attempt++) {
      const left = deadline - Date.now();
      let answer: Answer | null = null;
      try {
        answer = await this.#http.request({
          method,
          path,
          headers: {
            ...this.#headers,
            authorization: this.#auth,
            ...(body !== undefined ? { "content-type": type } : {}),
          },
          ...(body !== undefined ? { body } : {}),
          timeoutMs: Math.max(1000, Math.min(attemptMs, left)),
        });
        if (RETRYABLE_STATUS.has(answer.status))
          lastError = `HTTP ${answer.status} ${this.#problem(answer)?.code ?? ""}`.trim();
      } catch (err) {
        // a request that could not even be made (a header the token makes invalid, say) fails at once
        if (!(err instanceof HttpFailure)) throw err;
        lastError = describe(err);
      }
      if (answer !== null && !RETRYABLE_STATUS.has(answer.status)) {
        if (answer.status < 300 || o.allow?.includes(answer.status)) return answer;
        throw this.#refusal(answer, what);
      }
      if (Date.now() + delay > deadline) {
        throw new SwitchbackError(
          "PROCESS_SERVER_UNREACHABLE",
          `process server ${this.#base} did not complete ${what} within ${Math.round((o.deadlineMs ?? this.#deadlineMs) / 1000)} s (${attempt} attempt(s), last: ${lastError}); check that it is running and reachable`,
        );
      }
      this.retries++;
      this.bytesResent += bodyBytes;
      o.onAttemptFailed?.();
      const wait = Math.round(delay * (0.75 + Math.random() * 0.5));
      this.#onRetry?.({ what, attempt, delayMs: wait, error: lastError });
      await new Promise((r) => setTimeout(r, wait));
      delay = Math.min(delay * 2, 2000);
    }
  }

  #problem(a: Answer): { code: string; detail: string } | null {
    try {
      const p: unknown = JSON.parse(a.body.toString("utf8"));
      return Value.Check(ProblemSchema, p) ? p : null;
    } catch {
      return null;
    }
  }

  #refusal(a: Answer, what: string): SwitchbackError {
    const p = this.#problem(a);
    if (p === null) {
      return new SwitchbackError(
        "PROTOCOL_ERROR",
        `process server ${this.#base} answered ${what} with HTTP ${a.status} and no problem document`,
      );
    }
    return new SwitchbackError(p.code, `process server ${this.#base} refused ${what}: ${p.detail}`);
  }

  #json<S extends TSchema>(a: Answer, schema: S, what: string): Static<S> {
    let v: unknown;
    try {
      v = JSON.parse(a.body.toString("utf8"));
    } catch {
      throw new SwitchbackError("PROTOCOL_ERROR", `process server ${this.#base}: ${what} answer is not JSON`);
    }
    if (!Value.Check(schema, v)) {
      throw new SwitchbackError(
        "PROTOCOL_ERROR",
        `process server ${this.#base}: ${what} answer does not match its schema (${[...Value.Errors(schema, v)][0]?.message ?? "?"})`,
      );
    }
    return v as Static<S>;
  }
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string };
  if (e.code === "TIMEOUT") return "timed out";
  return e.code ?? e.message;
}

/** The key of the i-th hash of `hashes` in the map of hashes in flight. */
function hashKey(hashes: Buffer, i: number): string {
  return hashes.toString("latin1", i * HASH_BYTES, (i + 1) * HASH_BYTES);
}

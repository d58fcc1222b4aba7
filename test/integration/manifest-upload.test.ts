// A point's manifest bigger than one request body is staged in parts, then committed by name
// (docs/transport.md, "Manifests in parts"): the agent's RemoteSink against a real process server
// process on loopback, with a small part size so that a manifest of a few MiB takes many parts. The
// point must come out byte for byte as a local commit writes it, whatever the faults on the way.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { hostname } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { ManifestUploads, STAGED_STALE_MS } from "../../src/appliance/manifest-uploads.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { BLOCK_SIZE, paths } from "../../src/datastore/format.ts";
import { blockHash, HASH_BYTES } from "../../src/datastore/hash.ts";
import {
  type DiskEntries,
  type ManifestSource,
  manifestParts,
  manifestSize,
} from "../../src/datastore/manifest.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { type DiskUuid, type ItemName, newPointId, type PointId } from "../../src/domain/ids.ts";
import { RemoteSink } from "../../src/replication/remote-sink.ts";
import { encodeFrameBody, type Status } from "../../src/replication/wire.ts";
import { tempDir } from "../helpers/env.ts";
import { killChildren, type Server, startServer } from "../helpers/processes.ts";

const TOKEN = "upload-token-0123456789abcdef";
/** parts this small make a manifest of 40,000 entries (1.6 MB) 32 parts, split inside entries */
const PART = 50_000;
/** distinct blocks in the datastore: the manifests name them again and again */
const STORED = 16;

const { dir: root, cleanup } = tempDir("sb-manifest-upload-");
after(() => {
  killChildren();
  cleanup();
});

/** A datastore holding STORED blocks, and a tokens file. */
async function setup(name: string) {
  const dir = path.join(root, name);
  const ds = path.join(dir, "ds");
  const d = await Datastore.init(ds);
  const raw = randomBytes(STORED * BLOCK_SIZE);
  const stored = Buffer.concat(
    Array.from({ length: STORED }, (_, i) => blockHash(raw.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))),
  );
  const w = d.writer();
  await w.add(makeFrame(stored, raw));
  await w.flush();
  await d.close();
  const tokens = path.join(dir, "tokens.json");
  writeFileSync(
    tokens,
    JSON.stringify({ version: 1, agents: [{ name: "agent", token: TOKEN, items: ["web1"] }] }),
  );
  return { dir, ds, tokens, stored, uuid: randomUUID() as DiskUuid };
}

interface ManifestOptions {
  stored: Buffer;
  uuid: DiskUuid;
  parent?: PointId | null;
  /** entries, one per block from 0 */
  entries: number;
  /** the disk's size in blocks (100,000 unless given) */
  diskBlocks?: number;
  /** this entry names a block nobody stored */
  unknownAt?: number;
  /** called with (pass, chunk) as the entries are given: a pass for each time the manifest is encoded */
  onChunk?: (pass: number, chunk: number) => void;
}

/** A one-disk manifest whose entries are given 2,000 at a time, as they are encoded. */
function manifest(o: ManifestOptions): ManifestSource {
  const unknown = randomBytes(HASH_BYTES);
  let passes = 0;
  return {
    header: {
      version: 1,
      item: "web1" as ItemName,
      id: newPointId(new Date(), randomBytes(3)),
      parent: o.parent ?? null,
      createdAt: new Date().toISOString(),
      consistency: "crash",
      warnings: [],
      disks: [
        {
          uuid: o.uuid,
          sizeBytes: (o.diskBlocks ?? 100_000) * BLOCK_SIZE,
          sectorSize: 512,
          blockSize: BLOCK_SIZE,
          entries: o.entries,
        },
      ],
      stats: {},
    },
    disks: [
      {
        count: o.entries,
        *chunks(): Generator<DiskEntries> {
          const pass = ++passes;
          for (let from = 0, c = 0; from < o.entries; from += 2000, c++) {
            o.onChunk?.(pass, c);
            const n = Math.min(2000, o.entries - from);
            const blocks = new Float64Array(n);
            const hashes = Buffer.alloc(n * HASH_BYTES);
            for (let i = 0; i < n; i++) {
              blocks[i] = from + i;
              const src = from + i === o.unknownAt ? unknown : o.stored;
              const at = from + i === o.unknownAt ? 0 : ((from + i) % STORED) * HASH_BYTES;
              src.copy(hashes, i * HASH_BYTES, at, at + HASH_BYTES);
            }
            yield { blocks, hashes };
          }
        },
      },
    ],
  };
}

const encoded = (m: ManifestSource) => Buffer.concat([...manifestParts(m)]);

function client(server: Server) {
  const call = (method: string, route: string, body?: Buffer | object) =>
    fetch(server.url + route, {
      method,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body === undefined
          ? {}
          : { "content-type": Buffer.isBuffer(body) ? "application/octet-stream" : "application/json" }),
      },
      body:
        body === undefined ? undefined : Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body),
    });
  return {
    call,
    put: (m: ManifestSource, bytes: Buffer, offset: number, size: number) =>
      call("PUT", `/v1/items/web1/points/${m.header.id}/manifest?offset=${offset}&size=${size}`, bytes),
    /** every part of `bytes`, in order */
    putAll: async (m: ManifestSource, bytes: Buffer) => {
      for (let at = 0; at < bytes.length; at += PART) {
        const r = await call(
          "PUT",
          `/v1/items/web1/points/${m.header.id}/manifest?offset=${at}&size=${bytes.length}`,
          bytes.subarray(at, at + PART),
        );
        assert.equal(r.status, 200, await r.text());
      }
    },
    commit: (m: ManifestSource, bytes: Buffer) =>
      call("POST", `/v1/items/web1/points/${m.header.id}/commit`, {
        size: bytes.length,
        checksum: bytes.subarray(bytes.length - HASH_BYTES).toString("hex"),
      }),
    status: async (): Promise<Status> => (await (await call("GET", "/v1/status")).json()) as Status,
  };
}

async function problem(r: Response, status: number, code: string): Promise<{ detail: string }> {
  const p = (await r.json()) as { code: string; detail: string };
  assert.equal(r.status, status, JSON.stringify(p));
  assert.equal(p.code, code, p.detail);
  return p;
}

/**
 * The answer to a request that announces a body of `length` bytes and sends none: the server refuses
 * one over its limit from the announced length alone. (Sending the bytes raced with the server's
 * answer: it closes the connection once it has answered, and the client's write then failed with
 * EPIPE before the answer was read.)
 */
function announce(server: Server, method: string, route: string, length: number): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(
      server.url + route,
      {
        method,
        headers: {
          authorization: `Bearer ${TOKEN}`,
          "content-type": "application/octet-stream",
          "content-length": length,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          req.destroy();
          resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0 }));
        });
      },
    );
    req.on("error", reject);
    req.flushHeaders();
  });
}

/** Files in the datastore's staging folder, at any depth. */
function staged(ds: string): string[] {
  const dir = path.join(ds, "staging");
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

function pointFile(ds: string, m: ManifestSource): string {
  return path.join(ds, paths.point(m.header.item, m.header.id));
}

/** The manifest as a local commit writes it into a datastore of its own. */
async function localCommit(dir: string, m: ManifestSource): Promise<Buffer> {
  const local = path.join(dir, `local-${randomBytes(3).toString("hex")}`);
  const d = await Datastore.init(local);
  await d.commitPoint(m);
  await d.close();
  return readFileSync(path.join(local, paths.point(m.header.item, m.header.id)));
}

const connect = (server: Server, more: Partial<Parameters<typeof RemoteSink.connect>[0]> = {}) =>
  RemoteSink.connect({
    server: server.url,
    token: TOKEN,
    manifestPartBytes: PART,
    deadlineMs: 30_000,
    ...more,
  });

describe("manifests uploaded in parts", { timeout: 120_000 }, () => {
  test("a manifest bigger than a part is staged in parts and committed; the point is byte-identical to a local commit; a small one goes in one request", async () => {
    const s = await setup("identical");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    const sink = await connect(server);
    const base = manifest({ ...s, entries: 40_000 });
    const size = manifestSize(base);
    assert.ok(size > 30 * PART, `${size} bytes`);
    await sink.commit(base);
    let st = await c.status();
    assert.equal(st.manifestPartsReceived, Math.ceil(size / PART));
    assert.equal(st.pointsCommitted, 1);
    assert.ok(readFileSync(pointFile(s.ds, base)).equals(await localCommit(s.dir, base)));
    assert.deepEqual(staged(s.ds), []);

    // an incremental point's manifest fits in one part: one request, no staging
    await new Promise((r) => setTimeout(r, 2));
    const child = manifest({ ...s, entries: 100, parent: base.header.id });
    assert.ok(manifestSize(child) <= PART);
    await sink.commit(child);
    st = await c.status();
    assert.equal(st.manifestPartsReceived, Math.ceil(size / PART));
    assert.equal(st.pointsCommitted, 2);
    assert.ok(readFileSync(pointFile(s.ds, child)).equals(await localCommit(s.dir, child)));

    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    // a server that stops removes its staging folder
    assert.deepEqual(readdirSync(path.join(s.ds, "staging")), []);
  });

  test("a commit asked again after it succeeded answers alreadyCommitted; one naming other bytes is refused", async () => {
    const s = await setup("again");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    const base = manifest({ ...s, entries: 10_000 });
    const bytes = encoded(base);
    await c.putAll(base, bytes);
    const first = await c.commit(base, bytes);
    assert.equal(first.status, 201, await first.clone().text());
    assert.deepEqual(await first.json(), { pointId: base.header.id, alreadyCommitted: false });
    assert.deepEqual(staged(s.ds), []);
    // the answer was lost: the agent asks again, and nothing is staged any more
    const again = await c.commit(base, bytes);
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), { pointId: base.header.id, alreadyCommitted: true });
    const other = Buffer.from(bytes);
    other[other.length - 1]! ^= 1;
    await problem(await c.commit(base, other), 409, "POINT_EXISTS");
    // and a part of a point that is committed is not staged again
    await problem(await c.put(base, bytes.subarray(0, PART), 0, bytes.length), 409, "POINT_EXISTS");
    assert.deepEqual(staged(s.ds), []);
    assert.equal((await c.status()).pointsCommitted, 1);
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("a part sent twice is harmless; a part that disagrees with what is staged is refused", async () => {
    const s = await setup("twice");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    const base = manifest({ ...s, entries: 10_000 });
    const bytes = encoded(base);
    const part = (at: number) => bytes.subarray(at, at + PART);
    for (let i = 0; i < 2; i++) {
      const r = await c.put(base, part(PART), PART, bytes.length);
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { size: bytes.length, received: PART });
    }
    // overlapping what is staged, with one byte changed: refused, and nothing of it is written
    const wrong = Buffer.from(bytes.subarray(PART / 2, PART / 2 + PART));
    wrong[PART - 7]! ^= 0x40;
    const p = await problem(await c.put(base, wrong, PART / 2, bytes.length), 409, "MANIFEST_PART_CONFLICT");
    assert.match(p.detail, new RegExp(`byte ${PART / 2 + PART - 7} `));
    // the same bytes at the same offset, for a manifest of another size: not this manifest's part
    await problem(await c.put(base, part(PART), PART, bytes.length + 1), 409, "MANIFEST_PART_CONFLICT");
    // a part past the end
    await problem(await c.put(base, part(0), bytes.length - 10, bytes.length), 400, "REQUEST_INVALID");
    // committed before every part is in: refused, the upload is kept
    const early = await problem(await c.commit(base, bytes), 409, "MANIFEST_UPLOAD_INCOMPLETE");
    assert.match(early.detail, /first: bytes 0 to 50000/);
    await c.putAll(base, bytes);
    const r = await c.commit(base, bytes);
    assert.equal(r.status, 201, await r.clone().text());
    assert.ok(readFileSync(pointFile(s.ds, base)).equals(bytes));
    assert.deepEqual(staged(s.ds), []);
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("a damaged part fails the commit with a clear error and leaves no point and no staged file", async () => {
    const s = await setup("damaged");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    const cases: {
      what: string;
      at: (b: Buffer) => number;
      mask?: number;
      detail: RegExp;
      entries?: number;
    }[] = [
      {
        what: "an entry",
        at: (b) => Math.floor(b.length / 2),
        detail: /checksum mismatch \(the file is damaged\)/,
      },
      // the last entry's block 9,999 becomes 10,015: still in order, its hash still stored
      {
        what: "the last block number",
        at: (b) => b.length - HASH_BYTES - 40,
        mask: 0x10,
        detail: /checksum mismatch \(the file is damaged\)/,
      },
      // the damaged header still parses, for another item: it is reported as damaged, not as that item
      {
        what: "the header",
        at: (b) => b.indexOf('"item":"web1"') + '"item":"web'.length,
        detail: /checksum mismatch \(the file is damaged\)/,
      },
      { what: "the checksum", at: (b) => b.length - 5, detail: /ends in checksum [0-9a-f]{64}, not in the/ },
      // no header can be read at all: the server stops gathering pieces for one and reports damage (a
      // manifest of more than one of the 4 MiB pieces the server reads it in)
      {
        what: "the magic",
        at: () => 0,
        detail: /checksum mismatch \(the file is damaged\)/,
        entries: 120_000,
      },
      {
        what: "the header's length",
        at: () => 11,
        mask: 0x40,
        detail: /checksum mismatch \(the file is damaged\)/,
      },
    ];
    for (const k of cases) {
      const m = manifest({ ...s, entries: k.entries ?? 10_000 });
      const bytes = encoded(m);
      const damaged = Buffer.from(bytes);
      damaged[k.at(bytes)]! ^= k.mask ?? 0x02;
      await c.putAll(m, damaged);
      assert.ok(staged(s.ds).length === 1, k.what);
      const p = await problem(await c.commit(m, bytes), 400, "MANIFEST_INVALID");
      assert.match(p.detail, k.detail, k.what);
      assert.equal(existsSync(pointFile(s.ds, m)), false, k.what);
      assert.deepEqual(staged(s.ds), [], k.what);
    }
    // shorter than any manifest: refused as such (not a server error, which the agent would retry)
    const tiny = manifest({ ...s, entries: 1 });
    assert.equal((await c.put(tiny, Buffer.alloc(10, 1), 0, 10)).status, 200);
    const short = await problem(await c.commit(tiny, Buffer.alloc(40, 1)), 400, "MANIFEST_INVALID");
    assert.match(short.detail, /no manifest is shorter than 44/);
    assert.deepEqual(staged(s.ds), []);
    // nothing at all was committed, and no half-written point lies in the datastore
    await problem(await c.call("GET", "/v1/items/web1/latest"), 404, "ITEM_HAS_NO_POINTS");
    assert.deepEqual(readdirSync(path.join(s.ds, "points", "web1")), []);
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("a staged manifest naming a block the datastore does not hold fails with POINT_BLOCKS_MISSING", async () => {
    const s = await setup("missing");
    const server = await startServer(s.ds, s.tokens);
    const sink = await connect(server);
    const base = manifest({ ...s, entries: 40_000, unknownAt: 31_234 });
    await assert.rejects(sink.commit(base), (err: Error & { code?: string }) => {
      assert.equal(err.code, "POINT_BLOCKS_MISSING");
      assert.match(err.message, /references 1 block\(s\)/);
      return true;
    });
    assert.equal(existsSync(pointFile(s.ds, base)), false);
    assert.deepEqual(readdirSync(path.join(s.ds, "points", "web1")), []);
    assert.deepEqual(staged(s.ds), []);
    assert.equal((await client(server).status()).pointsRejected, 1);
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("kill -9 of the process server in the middle of an upload: restarted on the same port, the agent's retry commits the point", async (t) => {
    const s = await setup("restart");
    let server = await startServer(s.ds, s.tokens);
    const { pid } = await client(server).status();
    const sent: string[] = [];
    const sink = await connect(server, { onRetry: (e) => sent.push(e.what) });
    let killed = false;
    const base = manifest({
      ...s,
      entries: 40_000,
      // a third of the way through the first encoding, parts staged and some in flight
      onChunk: (pass, chunk) => {
        if (pass === 1 && chunk === 7) {
          server.child.kill("SIGKILL");
          killed = true;
        }
      },
    });
    const committing = sink.commit(base);
    committing.catch(() => {});
    const before = server;
    while (!killed) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await before.exited).signal, "SIGKILL");
    assert.ok(
      existsSync(path.join(s.ds, "staging", `${pid}@${hostname()}`)),
      "the dead server's staging folder",
    );
    server = await startServer(s.ds, s.tokens, before.port);
    await committing;
    t.diagnostic(
      `retried: ${[...new Set(sent)].length} distinct calls; ${sent.filter((w) => w.includes("again")).join(", ")}`,
    );
    assert.ok(sent.some((w) => w.endsWith("staging its manifest again")));
    assert.ok(readFileSync(pointFile(s.ds, base)).equals(await localCommit(s.dir, base)));
    // what the dead server had staged was swept when the new one started
    assert.equal(existsSync(path.join(s.ds, "staging", `${pid}@${hostname()}`)), false);
    assert.deepEqual(staged(s.ds), []);
    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
  });

  test("uploads of points older than the item's latest are discarded; parts for them are refused", async () => {
    const s = await setup("older");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    // an agent that died with its upload half sent
    const abandoned = manifest({ ...s, entries: 10_000 });
    const ab = encoded(abandoned);
    assert.equal((await c.put(abandoned, ab.subarray(0, PART), 0, ab.length)).status, 200);
    assert.equal(staged(s.ds).length, 1);
    // its next run commits a newer point
    await new Promise((r) => setTimeout(r, 2));
    const base = manifest({ ...s, entries: 10_000 });
    await (await connect(server)).commit(base);
    assert.deepEqual(staged(s.ds), []);
    await problem(
      await c.put(abandoned, ab.subarray(PART, 2 * PART), PART, ab.length),
      409,
      "POINT_ID_NOT_NEWER",
    );
    await problem(await c.commit(abandoned, ab), 409, "MANIFEST_UPLOAD_INCOMPLETE");
    assert.deepEqual(staged(s.ds), []);
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("stale staging folders of process servers that are gone are removed at start; one body is at most 8 MiB", async () => {
    const s = await setup("stale");
    // a pid that cannot be alive (above pid_max), on this host; one of another host, written lately,
    // left alone; and one of another host that nobody wrote for over STAGED_STALE_MS
    const dead = path.join(s.ds, "staging", `4194305@${hostname()}`);
    const elsewhere = path.join(s.ds, "staging", `4194305@not-${hostname()}`);
    const abandoned = path.join(s.ds, "staging", `4194306@gone-${hostname()}`);
    for (const d of [dead, elsewhere, abandoned]) {
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, "web1@20260101T000000000Z-abcdef.manifest"), "x");
    }
    const old = new Date(Date.now() - STAGED_STALE_MS - 60_000);
    utimesSync(path.join(abandoned, "web1@20260101T000000000Z-abcdef.manifest"), old, old);
    utimesSync(abandoned, old, old);
    const server = await startServer(s.ds, s.tokens);
    assert.equal(existsSync(dead), false);
    assert.deepEqual(readdirSync(elsewhere), ["web1@20260101T000000000Z-abcdef.manifest"]);
    assert.equal(existsSync(abandoned), false);
    const big = 8 * 1024 * 1024 + 1;
    await problem(await announce(server, "POST", "/v1/items/web1/points", big), 413, "BODY_TOO_LARGE");
    const m = manifest({ ...s, entries: 10 });
    const part = `/v1/items/web1/points/${m.header.id}/manifest?offset=0&size=${big}`;
    await problem(await announce(server, "PUT", part, big), 413, "BODY_TOO_LARGE");
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("parts removed from the staging folder under a running server are asked for again, and the point then commits", async () => {
    const s = await setup("removed");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    const base = manifest({ ...s, entries: 40_000 });
    const bytes = encoded(base);
    await c.putAll(base, bytes);
    // by hand, or by another host's server that took them for stale: the whole folder
    rmSync(path.join(s.ds, "staging"), { recursive: true });
    const p = await problem(await c.commit(base, bytes), 409, "MANIFEST_UPLOAD_INCOMPLETE");
    assert.match(p.detail, /were removed from the staging folder/);
    const first = await c.put(base, bytes.subarray(0, PART), 0, bytes.length);
    assert.equal(first.status, 200, await first.text());
    // a part whose file went meanwhile starts the upload again, with its folder
    rmSync(path.join(s.ds, "staging"), { recursive: true });
    await c.putAll(base, bytes);
    const r = await c.commit(base, bytes);
    assert.equal(r.status, 201, await r.text());
    assert.ok(readFileSync(pointFile(s.ds, base)).equals(bytes));
    server.child.kill("SIGTERM");
    await server.exited;
  });

  test("a big manifest is checked beside other agents' frames, not in front of them; of two bases of one item committed at once, one becomes the point", async () => {
    const s = await setup("beside");
    const server = await startServer(s.ds, s.tokens);
    const c = client(server);
    // 2.5M entries, 100 MB each: about a second to read, check and write on this machine
    const entries = 2_500_000;
    const ms = [0, 1].map(() => manifest({ ...s, entries, diskBlocks: entries }));
    const bytes = ms.map(encoded);
    for (const [i, m] of ms.entries()) {
      const b = bytes[i]!;
      for (let at = 0; at < b.length; at += 8 << 20) {
        const r = await c.put(m, b.subarray(at, at + (8 << 20)), at, b.length);
        assert.equal(r.status, 200, await r.text());
      }
    }
    const dir = path.join(s.ds, "points", "web1");
    const commits = ms.map((m, i) => c.commit(m, bytes[i]!).then(async (r) => ({ r, body: await r.text() })));
    // a commit is under way once its point's temporary file exists
    for (let t = 0; !existsSync(dir) || !readdirSync(dir).some((f) => f.includes(".tmp-")); t++) {
      assert.ok(t < 2000, "no commit started writing its point in 10 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    const raw = randomBytes(4 * BLOCK_SIZE);
    const hashes = Buffer.concat(
      [0, 1, 2, 3].map((i) => blockHash(raw.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))),
    );
    const sent = performance.now();
    const f = await c.call("PUT", "/v1/frames", encodeFrameBody(makeFrame(hashes, raw)));
    // answered while the commits were still reading and checking: no point is in place yet
    const then = readdirSync(dir);
    const took = performance.now() - sent;
    assert.equal(f.status, 200, await f.text());
    assert.ok(
      then.every((n) => n.includes(".tmp-")),
      `the frame was answered in ${Math.round(took)} ms, once a commit had ended (${then.join(", ")})`,
    );
    const done = await Promise.all(commits);
    // both were read and checked beside each other; the second to finish found the first in place
    const codes = done.map((d) => d.r.status).sort();
    assert.deepEqual(codes, [201, 409], done.map((d) => d.body).join("\n"));
    const refused = done.find((d) => d.r.status === 409)!;
    assert.equal((JSON.parse(refused.body) as { code: string }).code, "POINT_PARENT_NOT_LATEST");
    const won = ms[done.findIndex((d) => d.r.status === 201)]!;
    assert.deepEqual(readdirSync(dir), [`${won.header.id}.point`]);
    assert.ok(readFileSync(pointFile(s.ds, won)).equals(bytes[ms.indexOf(won)]!));
    assert.equal((await c.status()).blocksStored, 4);
    server.child.kill("SIGTERM");
    await server.exited;
  });
});

// Another host's stale files on a shared file system may not be this server's to remove (another uid
// over NFS): here a folder made immutable. The server starts anyway and leaves them.
test("stale staged files this server may not remove do not stop it from starting", {
  skip: process.getuid?.() !== 0 ? "needs root (chattr +i stands for a file another host owns)" : false,
}, async () => {
  const root2 = path.join(root, "immutable", "staging");
  const other = path.join(root2, `4242@other-${hostname()}`);
  mkdirSync(other, { recursive: true });
  const file = path.join(other, "db1@20260101T000000000Z-abcdef.manifest");
  writeFileSync(file, "x");
  const old = new Date(Date.now() - STAGED_STALE_MS - 60_000);
  utimesSync(file, old, old);
  const chattr = (flag: string) => spawnSync("chattr", [flag, other], { encoding: "utf8" });
  const set = chattr("+i");
  if (set.status !== 0) return; // a file system without the flag: nothing to show here
  try {
    const u = await ManifestUploads.open(root2);
    assert.ok(existsSync(file), "left as it is");
    await u.close();
  } finally {
    chattr("-i");
  }
});

// gc sweeps the leftovers of interrupted writes ("….tmp-…") anywhere in the datastore, but staging/ is
// the process servers': an item may be named "db.tmp-1", and its staged manifest must survive gc.
test("gc leaves staged uploads alone, whatever their item is named", async () => {
  const dir = path.join(root, "gc-staging");
  const ds = await Datastore.init(dir);
  try {
    const folder = path.join(dir, "staging", `${process.pid}@${hostname()}`);
    mkdirSync(folder, { recursive: true });
    const upload = path.join(folder, "db.tmp-1@20261126T034512123Z-a1b2c3.manifest");
    writeFileSync(upload, Buffer.alloc(100, 7));
    mkdirSync(path.join(dir, "index"), { recursive: true });
    const leftover = path.join(dir, "index", "0123.idx.tmp-abcdef");
    writeFileSync(leftover, "half an index file");
    const { collectGarbage } = await import("../../src/datastore/gc.ts");
    await collectGarbage(ds); // (it takes the exclusive lock itself)
    assert.equal(existsSync(leftover), false, "an interrupted write is swept");
    assert.ok(existsSync(upload), "the staged upload is kept");
  } finally {
    await ds.close();
  }
});

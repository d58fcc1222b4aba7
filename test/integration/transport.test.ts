// Agent → process server over real sockets, as real processes: a point on a schedule, then the faults
// the transport must survive (kill -9 of either side, dropped connections) and the requests it must
// refuse (a bad token, a damaged frame). Every restored image is compared byte for byte.
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, describe, test } from "node:test";
import { BLOCK_SIZE } from "../../src/datastore/format.ts";
import { blockHash, HASH_BYTES } from "../../src/datastore/hash.ts";
import { encodeManifest, type PointManifest } from "../../src/datastore/manifest.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { type DiskUuid, type ItemName, newPointId, type PointId, pointIdTime } from "../../src/domain/ids.ts";
import { encodeFrameBody, type Status } from "../../src/replication/wire.ts";
import { cli, cliJson, tempDir } from "../helpers/env.ts";
import { makeImage, scatter } from "../helpers/images.ts";
import { killChildren, type Proc, spawnCli, startServer } from "../helpers/processes.ts";

const MiB = 1024 * 1024;
const TOKEN = "test-token-0123456789abcdef";
const OTHER_TOKEN = "other-token-0123456789abcdef";

const { dir: root, cleanup } = tempDir("sb-transport-");
after(() => {
  killChildren();
  cleanup();
});

function startAgent(
  server: string,
  o: { item: string; disk: string; state: string; tokenFile: string },
  extra: string[] = [],
): Proc {
  return spawnCli([
    "agent",
    "--server",
    server,
    "--token-file",
    o.tokenFile,
    "--item",
    o.item,
    "--disk",
    o.disk,
    "--state",
    o.state,
    "--snapshot",
    "none",
    "--deadline",
    "60s",
    ...extra,
  ]);
}

interface PointLog {
  pointId: string;
  mode: string;
  consistency: string;
  bytesRead: number;
  bytesSent: number;
  changedBlocks: number;
  durationMs: number;
  maxFreezeMs: number;
  msg: string;
  code?: string;
}

function logs(p: Proc): PointLog[] {
  return p.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as PointLog);
}

const committed = (l: string) => l.includes('"msg":"point committed"');

async function status(url: string, token = TOKEN): Promise<Status> {
  const r = await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  return (await r.json()) as Status;
}

async function waitUntil<T>(
  fn: () => Promise<T | null>,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function assertSameFile(a: string, b: string): void {
  assert.equal(statSync(a).size, statSync(b).size, `${a} and ${b} differ in size`);
  const fa = openSync(a, "r");
  const fb = openSync(b, "r");
  try {
    const ba = Buffer.alloc(MiB);
    const bb = Buffer.alloc(MiB);
    for (let off = 0; ; off += MiB) {
      const na = readSync(fa, ba, 0, MiB, off);
      const nb = readSync(fb, bb, 0, MiB, off);
      assert.equal(na, nb);
      if (na === 0) break;
      if (!ba.subarray(0, na).equals(bb.subarray(0, nb)))
        assert.fail(`${a} and ${b} differ in the MiB at ${off}`);
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** Restores the item's latest point, compares it with the image, and proves the datastore. */
async function assertRestoresAndChecks(ds: string, item: string, image: string): Promise<void> {
  const out = path.join(path.dirname(ds), `restored-${randomBytes(3).toString("hex")}.img`);
  await cliJson([
    "restore",
    "--datastore",
    ds,
    "--item",
    item,
    "--point",
    "latest",
    "--disk",
    "0",
    "--to",
    out,
  ]);
  assertSameFile(image, out);
  const c = await cliJson<{ ok: boolean; problems: unknown[] }>([
    "datastore",
    "check",
    "--datastore",
    ds,
    "--read-data",
  ]);
  assert.deepEqual(c.problems, []);
  assert.equal(c.ok, true);
}

/** A folder with a datastore, a tokens file, an agent token file and a disk image. */
async function setup(name: string, imageMiB: number, seed: number) {
  const dir = path.join(root, name);
  const ds = path.join(dir, "ds");
  await cliJson(["datastore", "init", "--path", ds]);
  const tokens = path.join(dir, "tokens.json");
  writeFileSync(
    tokens,
    JSON.stringify({
      version: 1,
      agents: [
        { name: "agent-web1", token: TOKEN, items: ["web1"] },
        {
          name: "agent-db1",
          tokenSha256: (await import("node:crypto")).createHash("sha256").update(OTHER_TOKEN).digest("hex"),
          items: ["db1"],
        },
      ],
    }),
  );
  const tokenFile = path.join(dir, "token");
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const disk = path.join(dir, "disk0.img");
  makeImage(disk, imageMiB, seed);
  return { dir, ds, tokens, tokenFile, disk, state: path.join(dir, "state"), item: "web1" };
}

describe("transport: agent and process server as real processes", { timeout: 300_000 }, () => {
  test("an agent on a schedule replicates a disk; changes make a new point; restore is identical", async () => {
    const s = await setup("schedule", 128, 11);
    // an app-consistent point every hour (the first one), crash-consistent ones every second
    const hooks = path.join(s.dir, "hooks");
    mkdirSync(hooks);
    const hookLog = path.join(s.dir, "hooks.log");
    writeFileSync(
      path.join(hooks, "pre-snapshot"),
      `#!/bin/sh\necho "$SWITCHBACK_POINT_ID" >> ${hookLog}\n`,
      {
        mode: 0o755,
      },
    );
    const server = await startServer(s.ds, s.tokens);
    const agent = startAgent(server.url, s, ["--crash-every", "1s", "--app-every", "1h", "--hooks", hooks]);
    const first = JSON.parse(await agent.waitForLine(committed, 60_000, "the first point")) as PointLog;
    assert.equal(first.mode, "full");
    assert.equal(first.consistency, "app");
    assert.equal(first.bytesRead, 128 * MiB);
    for (const k of ["pointId", "bytesSent", "changedBlocks", "durationMs", "maxFreezeMs"])
      assert.ok(k in first, k);
    // frames travel a MiB or so to a request, and `missing` questions asked together share one
    const full = await status(server.url);
    assert.ok(full.framesReceived > 500, `${full.framesReceived} frames`);
    assert.ok(
      full.frameBodies * 4 <= full.framesReceived,
      `${full.framesReceived} frames came in ${full.frameBodies} requests`,
    );
    assert.ok(
      full.missingQueries * 2 <= full.framesReceived,
      `${full.missingQueries} missing queries for ${full.framesReceived} frames`,
    );

    const changed = scatter(s.disk, 128 * MiB, 300, 5);
    const changedAt = Date.now();
    const changedPoint = JSON.parse(
      await agent.waitForLine(
        (l) => committed(l) && pointIdTime(JSON.parse(l).pointId as PointId).getTime() > changedAt,
        30_000,
        "a point taken after the change",
      ),
    ) as PointLog;
    assert.equal(changedPoint.mode, "incremental");
    agent.child.kill("SIGTERM");
    assert.deepEqual(await agent.exited, { code: 0, signal: null });

    // every change was shipped by some point after the first, and little else
    const incrementals = logs(agent).filter(
      (l) => l.msg === "point committed" && l.pointId !== first.pointId,
    );
    assert.ok(incrementals.every((l) => l.consistency === "crash"));
    assert.deepEqual(readFileSync(hookLog, "utf8").trim().split("\n"), [first.pointId]);
    const shipped = incrementals.reduce((n, l) => n + l.changedBlocks, 0);
    assert.ok(shipped >= changed.length, `${shipped} blocks shipped for ${changed.length} changed`);
    const sent = incrementals.reduce((n, l) => n + l.bytesSent, 0);
    assert.ok(sent < 1.3 * changed.length * BLOCK_SIZE + 64 * 1024, `incrementals sent ${sent} bytes`);
    const st = await status(server.url);
    assert.equal(st.pointsCommitted, incrementals.length + 1);

    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    await assertRestoresAndChecks(s.ds, s.item, s.disk);
  });

  test("the process server prunes by its retention policy while agents replicate, and keeps the newest point whole", async () => {
    const s = await setup("retention", 16, 14);
    const server = await startServer(s.ds, s.tokens, 0, ["--keep-within", "2s", "--prune-every", "1s"]);
    const agent = startAgent(server.url, s, ["--crash-every", "300ms"]);
    await agent.waitForLine(committed, 30_000, "the first point");
    // the same 160 KiB rewritten again and again: old versions die with the points that held them
    for (let i = 0; i < 12; i++) {
      const fd = openSync(s.disk, "r+");
      writeSync(fd, randomBytes(160 * 1024), 0, 160 * 1024, MiB);
      closeSync(fd);
      await new Promise((r) => setTimeout(r, 300));
    }
    await waitUntil(
      async () => ((await status(server.url)).pointsPruned > 3 ? true : null),
      30_000,
      "pruning",
      200,
    );
    agent.child.kill("SIGTERM");
    assert.equal((await agent.exited).code, 0);
    // one more point of the final disk, then retention leaves the newest points only
    const taken = logs(agent).filter((l) => l.msg === "point committed").length;
    const last = startAgent(server.url, s, ["--once"]);
    assert.equal((await last.exited).code, 0);
    const points = await cliJson<{ id: string }[]>(["points", "list", "--datastore", s.ds, "--item", s.item]);
    assert.ok(points.length < taken, `${points.length} points kept of ${taken + 1} taken`);
    assert.ok((await status(server.url)).bytesFreed > 0, "gc freed data");
    // stopped first: its retention takes the datastore's exclusive lock every second
    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    await assertRestoresAndChecks(s.ds, s.item, s.disk);
  });

  test("kill -9 of the agent in the middle of the first copy: the rerun sends only the rest", async () => {
    const s = await setup("agent-kill", 128, 12);
    // what a whole first copy of this image puts on the wire
    const scratch = path.join(s.dir, "scratch-ds");
    await cliJson(["datastore", "init", "--path", scratch]);
    const full = (
      await cliJson<{ bytesSent: number }>([
        "replicate-once",
        "--datastore",
        scratch,
        "--item",
        "web1",
        "--disk",
        s.disk,
        "--state",
        path.join(s.dir, "scratch-state"),
        "--snapshot",
        "none",
      ])
    ).bytesSent;

    const server = await startServer(s.ds, s.tokens);
    const agent = startAgent(server.url, s, ["--crash-every", "1h"]);
    const atKill = await waitUntil(
      async () => {
        const st = await status(server.url);
        return st.bytesReceived >= full / 4 ? st : null;
      },
      60_000,
      "a quarter of the first copy at the server",
    );
    agent.child.kill("SIGKILL");
    await agent.exited;
    const st = await status(server.url);
    assert.equal(st.pointsCommitted, 0, "the point must still be under way when the agent is killed");

    const rerun = startAgent(server.url, s, ["--once"]);
    assert.deepEqual(await rerun.exited, { code: 0, signal: null }, rerun.stderr());
    const point = logs(rerun).find((l) => l.msg === "point committed")!;
    assert.equal(point.mode, "full");
    assert.ok(
      point.bytesSent < full - atKill.bytesReceived / 2,
      `rerun sent ${point.bytesSent} bytes; a full copy is ${full}, ${atKill.bytesReceived} had arrived before the kill`,
    );
    // the point's own record says the same
    const listed = await cliJson<{ id: string; stats: { bytesSent: number } }[]>([
      "points",
      "list",
      "--datastore",
      s.ds,
      "--item",
      "web1",
    ]);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.stats.bytesSent, point.bytesSent);

    // an agent that lost its state resyncs against the server's block digests: it ships what differs
    // only, and asks about nothing else
    const changed = scatter(s.disk, 128 * MiB, 20, 4);
    const was = await status(server.url);
    const fresh = startAgent(server.url, { ...s, state: path.join(s.dir, "fresh-state") }, ["--once"]);
    assert.deepEqual(await fresh.exited, { code: 0, signal: null }, fresh.stderr());
    const resync = logs(fresh).find((l) => l.msg === "point committed")!;
    assert.equal(resync.mode, "resync");
    assert.equal(resync.changedBlocks, changed.length);
    assert.ok(resync.bytesSent < 1.3 * changed.length * BLOCK_SIZE + 4096, `resync sent ${resync.bytesSent}`);
    const now = await status(server.url);
    assert.equal(
      now.hashesAsked - was.hashesAsked,
      changed.length,
      "only the changed blocks were asked about",
    );
    assert.equal(
      now.digestsServed - was.digestsServed,
      (128 * MiB) / BLOCK_SIZE,
      "each block's digest was sent once",
    );

    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    await assertRestoresAndChecks(s.ds, s.item, s.disk);
  });

  test("kill -9 of the process server mid-point: restarted on the same port, the point completes", async (t) => {
    const s = await setup("server-kill", 128, 13);
    const server = await startServer(s.ds, s.tokens);
    const agent = startAgent(server.url, s, ["--crash-every", "1h"]);
    await waitUntil(
      async () => {
        const st = await status(server.url);
        return st.bytesReceived >= 8 * MiB ? st : null;
      },
      60_000,
      "8 MiB at the server",
    );
    server.child.kill("SIGKILL");
    await server.exited;
    await new Promise((r) => setTimeout(r, 1000)); // the agent meets a refused connection meanwhile
    const again = await startServer(s.ds, s.tokens, server.port);
    const line = await agent.waitForLine(committed, 90_000, "the point after the restart");
    const failures = logs(agent).filter((l) => l.msg === "point failed");
    t.diagnostic(`failed attempts before the commit: ${failures.map((f) => f.code).join(", ") || "none"}`);
    t.diagnostic(`committed: ${line}`);
    assert.ok(
      failures.every((f) => f.code === "POINT_BLOCKS_MISSING"),
      JSON.stringify(failures),
    );

    agent.child.kill("SIGTERM");
    assert.deepEqual(await agent.exited, { code: 0, signal: null });
    again.child.kill("SIGTERM");
    assert.deepEqual(await again.exited, { code: 0, signal: null });
    await assertRestoresAndChecks(s.ds, s.item, s.disk);
  });

  test("connections cut in the middle of requests cost retries, not the point", async (t) => {
    const s = await setup("proxy", 64, 14);
    const server = await startServer(s.ds, s.tokens);
    // a proxy that cuts each of its first CUTS connections once CUT_AFTER bytes went through it (both ways)
    const CUTS = 6;
    const CUT_AFTER = 1 * MiB;
    let cuts = 0;
    let connections = 0;
    // later: swallow the server's answer to one commit, as if the connection died right after it
    let dropCommitAnswer = false;
    let commitAnswersDropped = 0;
    const sockets = new Set<net.Socket>();
    const proxy = net.createServer((down) => {
      const cutThis = connections++ < CUTS;
      const up = net.connect(server.port, "127.0.0.1");
      sockets.add(down).add(up);
      let bytes = 0;
      let cut = false;
      let commitUnderWay = false;
      const close = () => {
        down.destroy();
        up.destroy();
        sockets.delete(down);
        sockets.delete(up);
      };
      const pass = (to: net.Socket) => (d: Buffer) => {
        if (cut) return;
        bytes += d.length;
        if (cutThis && bytes > CUT_AFTER) {
          cut = true;
          cuts++;
          to.write(d.subarray(0, d.length >> 1)); // half a chunk, then the connection drops
          close();
          return;
        }
        to.write(d);
      };
      down.on("data", (d: Buffer) => {
        if (dropCommitAnswer && d.includes("POST /v1/items/web1/points")) commitUnderWay = true;
        pass(up)(d);
      });
      up.on("data", (d: Buffer) => {
        if (commitUnderWay) {
          dropCommitAnswer = false;
          commitAnswersDropped++;
          close();
          return;
        }
        pass(down)(d);
      });
      down.on("error", close).on("close", close);
      up.on("error", close).on("close", close);
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const proxyPort = (proxy.address() as net.AddressInfo).port;
    try {
      const agent = startAgent(`http://127.0.0.1:${proxyPort}`, s, ["--once"]);
      assert.deepEqual(await agent.exited, { code: 0, signal: null }, agent.stderr());
      const retries = agent.lines.filter((l) => l.includes("retrying a call")).length;
      t.diagnostic(
        `${cuts} connection(s) cut, ${retries} call(s) retried, ${connections} connection(s) in all`,
      );
      assert.ok(cuts >= 3, `only ${cuts} connection(s) were cut`);
      assert.ok(retries >= 1);
      assert.equal((await status(server.url)).pointsCommitted, 1);

      // the server commits a point but its answer is lost: the retried commit is recognised
      scatter(s.disk, 64 * MiB, 50, 9);
      dropCommitAnswer = true;
      const second = startAgent(`http://127.0.0.1:${proxyPort}`, s, ["--once"]);
      assert.deepEqual(await second.exited, { code: 0, signal: null }, second.stderr());
      assert.equal(commitAnswersDropped, 1);
      assert.ok(second.lines.some((l) => l.includes("retrying a call") && l.includes("commit of point")));
      const p2 = logs(second).find((l) => l.msg === "point committed")!;
      assert.equal(p2.mode, "incremental");
      assert.equal((await status(server.url)).pointsCommitted, 2);
    } finally {
      for (const so of sockets) so.destroy();
      await new Promise((r) => proxy.close(r));
    }
    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    await assertRestoresAndChecks(s.ds, s.item, s.disk);
  });

  test("refusals: a bad token, a damaged frame, a forked history, a missing block, another agent's item", async () => {
    const s = await setup("refusals", 1, 15);
    const server = await startServer(s.ds, s.tokens);
    const call = (method: string, route: string, body?: Buffer, token = TOKEN) =>
      fetch(server.url + route, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body ? { "content-type": "application/octet-stream" } : {}),
        },
        body: body === undefined ? undefined : new Uint8Array(body),
      });
    const problem = async (r: Response, status: number, code: string) => {
      assert.equal(r.status, status);
      assert.match(r.headers.get("content-type") ?? "", /^application\/problem\+json/);
      const p = (await r.json()) as {
        code: string;
        status: number;
        type: string;
        title: string;
        detail: string;
      };
      assert.equal(p.code, code, p.detail);
      assert.equal(p.status, status);
      assert.ok(p.type.endsWith(code) && p.title && p.detail);
      return p;
    };

    // bad or no token
    await problem(await call("GET", "/v1/status", undefined, "not-a-token-at-all-123"), 401, "UNAUTHORIZED");
    await problem(await fetch(`${server.url}/v1/items/web1/latest`), 401, "UNAUTHORIZED");

    // a frame whose payload does not match its hashes: refused, nothing stored
    const raw = randomBytes(4 * BLOCK_SIZE);
    const hashes = Buffer.concat(
      [0, 1, 2, 3].map((i) => blockHash(raw.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))),
    );
    const good = makeFrame(hashes, raw);
    const tampered = Buffer.from(raw);
    tampered[2 * BLOCK_SIZE + 100]! ^= 1;
    const bad = { ...makeFrame(hashes, tampered) };
    const p = await problem(
      await call("PUT", "/v1/frames", encodeFrameBody(bad)),
      422,
      "FRAME_HASH_MISMATCH",
    );
    assert.match(p.detail, /block 2/);
    let st = await status(server.url);
    assert.equal(st.blocksStored, 0);
    assert.equal(st.framesRejected, 1);
    const missing = await call("POST", "/v1/blocks/missing", hashes);
    assert.deepEqual([...Buffer.from(await missing.arrayBuffer())], [0b1111]);
    // a body that is not a frame at all, and a good frame followed by something that is not one
    await problem(await call("PUT", "/v1/frames", Buffer.from("garbage")), 400, "FRAME_INVALID");
    const trailing = await problem(
      await call("PUT", "/v1/frames", Buffer.concat([encodeFrameBody(good), Buffer.from("garbage")])),
      400,
      "FRAME_INVALID",
    );
    assert.match(trailing.detail, /frame 1 \(at byte \d+\)/);
    // a body of frames is checked whole before any of it is stored: a damaged second frame refuses the first too
    const both = await problem(
      await call("PUT", "/v1/frames", Buffer.concat([encodeFrameBody(good), encodeFrameBody(bad)])),
      422,
      "FRAME_HASH_MISMATCH",
    );
    assert.match(both.detail, /block 2 of frame 1 of the body/);
    assert.equal((await status(server.url)).blocksStored, 0);

    // the good frame is stored once, however often it is sent
    for (const expect of [4, 0]) {
      const r = await call("PUT", "/v1/frames", encodeFrameBody(good));
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { stored: number }).stored, expect);
    }
    st = await status(server.url);
    assert.equal(st.blocksStored, 4);
    // several frames in one body: each stored, the blocks held already counted as such
    const raw2 = randomBytes(2 * BLOCK_SIZE);
    const hashes2 = Buffer.concat(
      [0, 1].map((i) => blockHash(raw2.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE))),
    );
    const two = await call(
      "PUT",
      "/v1/frames",
      Buffer.concat([encodeFrameBody(makeFrame(hashes2, raw2)), encodeFrameBody(good)]),
    );
    assert.equal(two.status, 200);
    assert.deepEqual(await two.json(), { frames: 2, blocks: 6, stored: 2 });
    st = await status(server.url);
    assert.equal(st.blocksStored, 6);
    assert.equal(st.blocksAlreadyStored, 8);

    // points
    const disk = {
      uuid: randomUUID() as DiskUuid,
      sizeBytes: 16 * BLOCK_SIZE,
      sectorSize: 512,
      blockSize: BLOCK_SIZE,
      entries: 4,
    };
    const point = (parent: string | null, h: Buffer, item = "web1"): PointManifest => ({
      header: {
        version: 1,
        item: item as ItemName,
        id: newPointId(new Date(), randomBytes(3)),
        parent: parent as PointId | null,
        createdAt: new Date().toISOString(),
        consistency: "crash",
        warnings: [],
        disks: [disk],
        stats: {},
      },
      disks: [{ blocks: Float64Array.from([0, 3, 7, 8]), hashes: h }],
    });
    const body = (m: PointManifest) => Buffer.concat(encodeManifest(m));
    await problem(await call("GET", "/v1/items/web1/latest"), 404, "ITEM_HAS_NO_POINTS");
    // a block the server never received
    const unknown = Buffer.from(hashes);
    randomBytes(HASH_BYTES).copy(unknown, 3 * HASH_BYTES);
    await problem(
      await call("POST", "/v1/items/web1/points", body(point(null, unknown))),
      422,
      "POINT_BLOCKS_MISSING",
    );
    // another agent's item
    const forDb = point(null, hashes, "db1");
    await problem(await call("POST", "/v1/items/db1/points", body(forDb)), 403, "ITEM_NOT_ALLOWED");
    // a good point, committed once even when the request is repeated
    const base = point(null, hashes);
    const r1 = await call("POST", "/v1/items/web1/points", body(base));
    assert.equal(r1.status, 201);
    const r2 = await call("POST", "/v1/items/web1/points", body(base));
    assert.equal(r2.status, 200);
    assert.deepEqual(await r2.json(), { pointId: base.header.id, alreadyCommitted: true });
    const latest = (await (await call("GET", "/v1/items/web1/latest")).json()) as { point: { id: string } };
    assert.equal(latest.point.id, base.header.id);
    // a second writer that still believes there is no point cannot fork the history
    await new Promise((r) => setTimeout(r, 2));
    await problem(
      await call("POST", "/v1/items/web1/points", body(point(null, hashes))),
      409,
      "POINT_PARENT_NOT_LATEST",
    );
    // the other agent's token works for its own item only
    await problem(
      await call("GET", "/v1/items/web1/latest", undefined, OTHER_TOKEN),
      403,
      "ITEM_NOT_ALLOWED",
    );
    await problem(
      await call("GET", "/v1/items/db1/latest", undefined, OTHER_TOKEN),
      404,
      "ITEM_HAS_NO_POINTS",
    );

    server.child.kill("SIGTERM");
    assert.deepEqual(await server.exited, { code: 0, signal: null });
    const c = await cliJson<{ ok: boolean; points: number; blocks: number }>([
      "datastore",
      "check",
      "--datastore",
      s.ds,
      "--read-data",
    ]);
    assert.equal(c.ok, true);
    assert.equal(c.points, 1);
    assert.equal(c.blocks, 6, "the good frame's 4 blocks and the 2 sent beside it");
    const listed = await cli(["points", "list", "--datastore", s.ds, "--item", "web1", "--json"]);
    assert.equal((JSON.parse(listed.stdout) as unknown[]).length, 1);
  });
});

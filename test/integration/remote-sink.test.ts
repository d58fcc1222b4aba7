// RemoteSink on links of their own: frames requests shrink on a slow link so that each finishes well
// within an attempt's time limit, and a sink closed after a failure does not send what it held back.
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { describe, type TestContext, test } from "node:test";
import { ProcessServer } from "../../src/appliance/process-server.ts";
import { Datastore } from "../../src/datastore/datastore.ts";
import { hashBlocks } from "../../src/datastore/hash.ts";
import { makeFrame } from "../../src/datastore/pack.ts";
import { RemoteSink } from "../../src/replication/remote-sink.ts";
import { tempDir } from "../helpers/env.ts";
import { randomBuffer, rng } from "../helpers/images.ts";

const BLOCK = 4096;

/**
 * A proxy to `port` that passes at most `bytesPerSecond` upward (agent → server) over all its
 * connections together, in 10 ms slices, as one slow link does.
 */
async function slowProxy(port: number, bytesPerSecond: number) {
  const links = new Set<{ down: net.Socket; up: net.Socket; queue: Buffer[] }>();
  const slice = Math.max(1, Math.round(bytesPerSecond / 100));
  const timer = setInterval(() => {
    let room = slice;
    // round robin over the connections with data waiting, a share each
    while (room > 0) {
      const busy = [...links].filter((l) => l.queue.length > 0);
      if (busy.length === 0) break;
      const share = Math.max(1, Math.floor(room / busy.length));
      for (const l of busy) {
        let mine = Math.min(share, room);
        while (mine > 0 && l.queue.length > 0) {
          const b = l.queue[0]!;
          const n = Math.min(mine, b.length);
          l.up.write(b.subarray(0, n));
          mine -= n;
          room -= n;
          if (n === b.length) l.queue.shift();
          else l.queue[0] = b.subarray(n);
        }
        // the agent is held back as a slow link would hold it: its data waits in its own socket
        if (l.queue.length < 2) l.down.resume();
      }
    }
  }, 10);
  const proxy = net.createServer((down) => {
    const link = { down, up: net.connect(port, "127.0.0.1"), queue: [] as Buffer[] };
    links.add(link);
    down.on("data", (d: Buffer) => {
      link.queue.push(d);
      if (link.queue.length >= 2) down.pause();
    });
    link.up.on("data", (d: Buffer) => down.write(d));
    const close = () => {
      links.delete(link);
      down.destroy();
      link.up.destroy();
    };
    down.on("error", close).on("close", close);
    link.up.on("error", close).on("close", close);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    close: async () => {
      clearInterval(timer);
      for (const l of links) {
        l.down.destroy();
        l.up.destroy();
      }
      await new Promise((r) => proxy.close(r));
    },
  };
}

/** A process server in the test's process, on a datastore of a folder removed after the test. */
async function serverIn(t: TestContext, prefix: string) {
  const { dir, cleanup } = tempDir(prefix);
  t.after(cleanup);
  await Datastore.init(path.join(dir, "ds"));
  const ds = await Datastore.open(path.join(dir, "ds"));
  const server = new ProcessServer({
    ds,
    authenticate: () => ({ agent: "test", items: "*" }),
    host: "127.0.0.1",
    port: 0,
    stagingDir: path.join(dir, "staging"),
  });
  const url = await server.start();
  return { ds, server: Object.assign(server, { url }) };
}

describe("RemoteSink", () => {
  test("a slow link gets small frames requests, each within the attempt's time limit", async (t) => {
    const { ds, server } = await serverIn(t, "sb-remote-sink-");
    const url = new URL(server.url);
    // 600 kB/s: 1 MiB bodies, four in flight, would each take ~7 s against a 2 s limit
    const proxy = await slowProxy(Number(url.port), 600_000);
    try {
      const sink = await RemoteSink.connect({
        server: `http://127.0.0.1:${proxy.port}`,
        token: "unused-by-this-server",
        attemptTimeoutMs: 2000,
        deadlineMs: 20_000,
      });
      // 3 MiB of random (incompressible) blocks, 32 to a frame
      const next = rng(3);
      let sent = 0;
      for (let i = 0; i < 24; i++) {
        const raw = randomBuffer(32 * BLOCK, next);
        sent += await sink.send(makeFrame(hashBlocks(raw), raw));
      }
      await sink.flush();
      await sink.close();
      assert.ok(sent > 3_000_000);
      assert.equal(sink.retries, 0, "no request outlasted its attempt's time limit");
      assert.equal(server.status.blocksStored, 24 * 32);
      assert.ok(
        server.status.frameBodies >= 8,
        `${server.status.frameBodies} requests: small ones on this link`,
      );
    } finally {
      await proxy.close();
      await server.close();
      await ds.close();
    }
  });

  test("a sink closed after its server went away drops the frames it held back, at once", async (t) => {
    const { ds, server } = await serverIn(t, "sb-remote-sink-gone-");
    const sink = await RemoteSink.connect({
      server: server.url,
      token: "unused-by-this-server",
      deadlineMs: 5000,
    });
    const raw = randomBuffer(4 * BLOCK, rng(4));
    await sink.send(makeFrame(hashBlocks(raw), raw)); // 16 KiB: held back for a bigger request
    await server.close();
    await ds.close();
    await assert.rejects(sink.missing(hashBlocks(raw)), /did not complete missing blocks/);
    const t0 = performance.now();
    await sink.close();
    assert.ok(performance.now() - t0 < 1000, `close took ${Math.round(performance.now() - t0)} ms`);
    assert.equal(server.status.frameBodies, 0);
  });

  test("questions asked together: a block missing for two of them is sent by the first alone", async (t) => {
    const { ds, server } = await serverIn(t, "sb-remote-sink-ask-");
    const sink = await RemoteSink.connect({ server: server.url, token: "unused-by-this-server" });
    try {
      const next = rng(5);
      const [a, b, c] = [0, 1, 2].map(() => hashBlocks(randomBuffer(BLOCK, next)));
      // in one turn of the event loop: one request, and b is given to the first question only
      const answers = await Promise.all([
        sink.missing(Buffer.concat([a!, b!])),
        sink.missing(Buffer.concat([b!, c!, c!])),
      ]);
      assert.deepEqual(answers, [
        [true, true],
        [false, true, false],
      ]);
      assert.equal(server.status.missingQueries, 1);
    } finally {
      await sink.close();
      await server.close();
      await ds.close();
    }
  });
});

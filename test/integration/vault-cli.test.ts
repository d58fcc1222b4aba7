// `switchback server` and the inventory commands as real processes: the server prints its URL, the
// admin token once and the export line; the CLI reads them from the environment, prints tables or
// --json, and turns a vault refusal into one line with its code and exit status 1.
import assert from "node:assert/strict";
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import path from "node:path";
import type { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { CLI, cli, cliJson, tempDir } from "../helpers/env.ts";

interface RunningServer {
  child: ChildProcessByStdio<null, Readable, Readable>;
  lines: string[];
  stderr: () => string;
}

/** Starts `switchback server` and waits for its announcement (the line with the export). */
async function startServer(data: string): Promise<RunningServer> {
  const child = spawn(process.execPath, [CLI, "server", "--data", data, "--port", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const lines = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 20 s: ${out} ${err}`)), 20_000);
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (/^point the CLI at it: .*$/m.test(out)) {
        clearTimeout(timer);
        resolve(out.trim().split("\n"));
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited ${code}: ${out} ${err}`));
    });
  });
  return { child, lines, stderr: () => err };
}

async function stopServer(s: RunningServer): Promise<number | null> {
  if (s.child.exitCode !== null) return s.child.exitCode;
  const exited = once(s.child, "exit");
  s.child.kill("SIGTERM");
  const [code] = (await exited) as [number | null];
  return code;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe("switchback server and the inventory commands", () => {
  let tmp: { dir: string; cleanup: () => void };
  let server: RunningServer;
  let env: NodeJS.ProcessEnv;
  let url: string;
  let token: string;

  before(async () => {
    tmp = tempDir("sb-vault-cli-");
    server = await startServer(path.join(tmp.dir, "data"));
    url = /^vault listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(server.lines[0]!)?.[1] ?? "";
    assert.ok(url, `first line names the URL: ${server.lines[0]}`);
    token = /^admin token \(shown once\): (\S+)$/.exec(server.lines[1]!)?.[1] ?? "";
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(
      server.lines[2],
      `point the CLI at it: export SWITCHBACK_VAULT=${url} SWITCHBACK_TOKEN=${token}`,
    );
    env = { SWITCHBACK_VAULT: url, SWITCHBACK_TOKEN: token };
  });

  after(async () => {
    if (server) await stopServer(server);
    tmp?.cleanup();
  });

  it("lists the bootstrapped inventory as JSON and as tables", async () => {
    const sites = await cliJson<{ name: string }[]>(["sites", "list"], { env });
    assert.deepEqual(
      sites.map((s) => s.name),
      ["primary", "recovery"],
    );
    const table = await cli(["sites"], { env });
    assert.equal(table.code, 0, table.stderr);
    const rows = table.stdout.trim().split("\n");
    assert.match(rows[0]!, /^NAME {6}ID {17}SUBNET {2}CREATED$/);
    assert.match(rows[1]!, /^primary {3}site-[0-9a-z]{12} {2}- {7}\d{4}-/);
    assert.equal(rows.length, 3);

    const appliances = await cli(["appliances", "list"], { env });
    assert.match(
      appliances.stdout,
      /primary-appliance +primary +process-server,master-target +in-process +online/,
    );
    const ds = await cliJson<{ location: string }>(["datastores", "show", "recovery-local"], { env });
    assert.equal(ds.location, path.join(tmp.dir, "data", "sites", "recovery", "datastore"));
    const policy = await cli(["policies", "show", "default"], { env });
    assert.match(policy.stdout, /^rpo threshold: +15m$/m);
    assert.match(policy.stdout, /^retention: +3d$/m);
  });

  it("creates sites, datastores, policies and machines", async () => {
    const site = await cli(["sites", "create", "branch", "--subnet", "10.40.0.0/24"], { env });
    assert.equal(site.code, 0, site.stderr);
    assert.match(site.stdout, /^created site branch \(site-[0-9a-z]{12}\)$/m);

    const dir = path.join(tmp.dir, "branch-ds");
    const ds = await cliJson<{ location: string; site: string }>(
      ["datastores", "create", "branch-ds", "--site", "branch", "--path", dir],
      { env },
    );
    assert.equal(ds.location, dir);
    assert.equal(ds.site, "branch");

    const gold = await cliJson<{ rpoThresholdSeconds: number; retentionSeconds: number }>(
      [
        "policies",
        "create",
        "gold",
        "--rpo",
        "5m",
        "--retention",
        "24h",
        "--app-every",
        "0",
        "--crash-every",
        "1m",
      ],
      { env },
    );
    assert.deepEqual([gold.rpoThresholdSeconds, gold.retentionSeconds], [300, 86_400]);
    const updated = await cliJson<{ retentionSeconds: number }>(
      ["policies", "update", "gold", "--retention", "48h"],
      { env },
    );
    assert.equal(updated.retentionSeconds, 172_800);

    const m = await cliJson<{ id: string; disks: { sizeBytes: number; role: string }[] }>(
      [
        "machines",
        "create",
        "web-1",
        "--site",
        "primary",
        "--boot-command",
        "sleep 1000",
        "--disk",
        "1G",
        "512M",
      ],
      { env },
    );
    assert.deepEqual(
      m.disks.map((d) => [d.role, d.sizeBytes]),
      [
        ["os", 1 << 30],
        ["data", 512 << 20],
      ],
    );
    const list = await cli(["machines"], { env });
    assert.match(
      list.stdout,
      /^web-1 +primary +stopped +unknown +- +1\.0 GiB \+ 512\.0 MiB +- +[0-9a-f-]{36}$/m,
    );
    const show = await cli(["machines", "show", m.id], { env });
    assert.match(show.stdout, /^boot command: +sleep 1000$/m);
  });

  it("a refusal is one line with the vault's code and exit status 1", async () => {
    const r = await cli(["sites", "show", "atlantis"], { env });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      `switchback: no site has the id or name "atlantis"; 'switchback sites list' lists them [SITE_NOT_FOUND]\n`,
    );
    const bad = await cli(["policies", "create", "fast", "--retention", "1m"], { env });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^switchback: field "retention" is 1m, shorter than .* \[INVALID_REQUEST\]\n$/);
    const dup = await cli(["sites", "create", "primary"], { env });
    assert.match(dup.stderr, /^switchback: a site named "primary" already exists.* \[SITE_EXISTS\]\n$/);
    const noToken = await cli(["sites"], { env: { SWITCHBACK_VAULT: url, SWITCHBACK_TOKEN: "" } });
    assert.equal(noToken.code, 1);
    assert.match(noToken.stderr, /\[VAULT_TOKEN_MISSING\]\n$/);
    const wrong = await cli(["sites", "--token", "nope"], { env });
    assert.match(wrong.stderr, /\[UNAUTHENTICATED\]\n$/);
    const port = await closedPort();
    const down = await cli(["sites", "--vault", `http://127.0.0.1:${port}`], { env });
    assert.equal(down.code, 1);
    assert.equal(
      down.stderr,
      `switchback: the vault at http://127.0.0.1:${port} cannot be reached (ECONNREFUSED); start it with 'switchback server' or point --vault / SWITCHBACK_VAULT at it [VAULT_UNREACHABLE]\n`,
    );
  });

  it("stops cleanly on SIGTERM and, restarted, keeps its data and prints no token", async () => {
    assert.equal(await stopServer(server), 0);
    assert.match(server.stderr(), /vault stopped/);
    server = await startServer(path.join(tmp.dir, "data"));
    // the URL, how to point the CLI at it, then (if already read) where the portal is
    assert.ok(
      server.lines.length >= 2 && server.lines.slice(2).every((l) => /^portal: http/.test(l)),
      server.lines.join("\n"),
    );
    assert.doesNotMatch(server.lines.join("\n"), /admin token \(shown once\)/);
    assert.match(server.lines[1]!, /SWITCHBACK_TOKEN=<the admin token printed at the first start>$/);
    const newUrl = /^vault listening on (\S+)$/.exec(server.lines[0]!)?.[1];
    const sites = await cliJson<{ name: string }[]>(["sites"], {
      env: { SWITCHBACK_VAULT: newUrl, SWITCHBACK_TOKEN: token },
    });
    assert.ok(sites.some((s) => s.name === "branch"));
  });

  it("a first start that cannot listen keeps the admin token for the start that can", async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const { port } = busy.address() as { port: number };
    const fresh = path.join(tmp.dir, "fresh");
    try {
      const r = await cli(["server", "--data", fresh, "--port", String(port)]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /\[VAULT_LISTEN_FAILED\]/);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
    const s = await startServer(fresh);
    try {
      assert.match(s.lines.join("\n"), /^admin token \(shown once\): \S+$/m);
    } finally {
      await stopServer(s);
    }
  });
});

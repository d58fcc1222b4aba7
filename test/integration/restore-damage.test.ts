// A restore from a damaged datastore fails by name and never reports success: the same failure
// whether the addon applies the frames (on libuv's thread pool) or worker threads do.
import assert from "node:assert/strict";
import { closeSync, openSync, readdirSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { native } from "../../src/platform/native.ts";
import { cli, cliJson, tempDir } from "../helpers/env.ts";
import { makeImage } from "../helpers/images.ts";

const modes: { name: string; env: Record<string, string> }[] = [
  { name: "addon", env: {} },
  { name: "no addon", env: { SWITCHBACK_NATIVE: "0" } },
];

test("damaged packs fail a restore by name, with or without the addon; an intact store restores byte for byte", {
  skip: native === null ? "the native addon is not built (npm run build:native)" : false,
}, async () => {
  const { dir, cleanup } = tempDir("sb-restore-damage-");
  try {
    const img = path.join(dir, "disk.img");
    const ds = path.join(dir, "ds");
    makeImage(img, 24, 11);
    await cliJson(["datastore", "init", "--path", ds]);
    const args = ["--datastore", ds, "--item", "web1"];
    await cliJson([
      "replicate-once",
      ...args,
      "--disk",
      img,
      "--state",
      path.join(dir, "st"),
      "--snapshot",
      "none",
    ]);
    const restore = (to: string, env: Record<string, string>) =>
      cli(["restore", ...args, "--point", "latest", "--disk", "0", "--to", to, "--json"], { env });

    for (const m of modes) {
      const out = path.join(dir, `ok-${m.name}.img`);
      const r = await restore(out, m.env);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(readFileSync(out).equals(readFileSync(img)), `restored identical (${m.name})`);
    }

    const packs = readdirSync(path.join(ds, "packs"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".pack"))
      .map((f) => path.join(ds, "packs", f));
    assert.ok(packs.length > 0);
    // a flipped byte in the middle of the biggest pack: a frame that decompresses wrong, or not at all,
    // or a block that does not match its hash
    const big = packs.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    const fd = openSync(big, "r+");
    const at = Math.floor(statSync(big).size / 3);
    const was = Buffer.alloc(1);
    try {
      const b = readFileSync(big).subarray(at, at + 1);
      b.copy(was);
      writeSync(fd, Buffer.from([b[0]! ^ 0x5a]), 0, 1, at);
    } finally {
      closeSync(fd);
    }
    const id = path.basename(big, ".pack");
    const messages: string[] = [];
    for (const m of modes) {
      const r = await restore(path.join(dir, `bad-${m.name}.img`), m.env);
      assert.equal(r.code, 1, `a damaged pack fails the restore (${m.name}): ${r.stdout}`);
      assert.match(r.stderr, /\[DATASTORE_CORRUPT\]/);
      assert.ok(r.stderr.includes(`pack ${id}`), `the pack is named (${m.name}): ${r.stderr}`);
      messages.push(r.stderr);
    }
    // the same frame either way (zstd's own words for a broken frame differ between the addon and node:zlib)
    const frames = messages.map((x) => /frame @(\d+)/.exec(x)?.[1]);
    assert.ok(frames[0] !== undefined && frames[0] === frames[1], messages.join(" / "));

    // a pack gone missing
    const fd2 = openSync(big, "r+");
    writeSync(fd2, was, 0, 1, at);
    closeSync(fd2);
    renameSync(big, `${big}.away`);
    for (const m of modes) {
      const r = await restore(path.join(dir, `gone-${m.name}.img`), m.env);
      assert.equal(r.code, 1);
      assert.ok(r.stderr.includes(`pack ${id} is missing from the datastore [DATASTORE_CORRUPT]`), r.stderr);
    }
  } finally {
    cleanup();
  }
});

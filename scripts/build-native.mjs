#!/usr/bin/env node
// Builds Switchback's native addon (native/switchback.c with the vendored BLAKE3 C sources) into
// native/build/switchback.node when it is missing or older than its sources. Plain JavaScript, so it
// also runs as the package's install script (Node strips no types under node_modules).
//
// The addon is an accelerator, not a requirement: without it (no C compiler, another CPU) Switchback
// hashes block by block through @napi-rs/blake-hash, with the same results, more slowly. So a failed
// build is a warning, unless --strict (CI wants to know).
//
//   node scripts/build-native.mjs [--strict] [--force] [--quiet]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { arch } from "node:os";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const src = path.join(root, "native");
const out = path.join(src, "build", "switchback.node");
const args = new Set(process.argv.slice(2));
const say = (m) => args.has("--quiet") || console.error(`native addon: ${m}`);

function sources() {
  const b3 = path.join(src, "blake3");
  const common = ["blake3.c", "blake3_dispatch.c", "blake3_portable.c"].map((f) => path.join(b3, f));
  if (arch() === "x64") {
    // the assembly versions need no per-file compiler flags; BLAKE3 picks one at run time
    const asm = readdirSync(b3).filter((f) => f.endsWith("_x86-64_unix.S"));
    return { files: [...common, ...asm.map((f) => path.join(b3, f))], defines: [] };
  }
  if (arch() === "arm64")
    return { files: [...common, path.join(b3, "blake3_neon.c")], defines: ["-DBLAKE3_USE_NEON=1"] };
  return {
    files: common,
    defines: ["-DBLAKE3_NO_SSE2", "-DBLAKE3_NO_SSE41", "-DBLAKE3_NO_AVX2", "-DBLAKE3_NO_AVX512"],
  };
}

/** node_api.h: beside the running node (the npm node package, a tarball install), else the system's. */
function nodeHeaders() {
  const candidates = [
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, "include", "node"),
    path.join(path.dirname(path.dirname(process.execPath)), "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node",
  ].filter(Boolean);
  // Node-API is the same binary interface across Node versions: any of these headers will do
  return candidates.find((d) => existsSync(path.join(d, "node_api.h"))) ?? null;
}

function isCurrent(files) {
  if (!existsSync(out)) return false;
  const built = statSync(out).mtimeMs;
  const vendored = ["blake3", "xxhash"].flatMap((d) =>
    readdirSync(path.join(src, d)).map((f) => path.join(src, d, f)),
  );
  const all = [path.join(src, "switchback.c"), ...files, ...vendored];
  return all.every((f) => statSync(f).mtimeMs <= built);
}

function build() {
  const { files, defines } = sources();
  if (!args.has("--force") && isCurrent(files)) return true;
  const headers = nodeHeaders();
  if (headers === null) {
    say("not built: no node_api.h found (install Node's headers, or set npm_config_nodedir)");
    return false;
  }
  const cc = process.env.CC ?? "cc";
  mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const started = Date.now();
  try {
    execFileSync(
      cc,
      [
        "-O3",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-Wall",
        `-I${headers}`,
        ...defines,
        "-o",
        tmp,
        path.join(src, "switchback.c"),
        ...files,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { force: true });
    const detail = err.stderr?.toString().trim().split("\n").slice(0, 5).join("\n") || err.message;
    say(`not built with ${cc}: ${detail}`);
    return false;
  }
  say(`built ${path.relative(root, out)} in ${Date.now() - started} ms`);
  return true;
}

const ok = build();
if (!ok) {
  if (args.has("--strict")) process.exit(1);
  say("Switchback will hash blocks one call each (slower, same results)");
}

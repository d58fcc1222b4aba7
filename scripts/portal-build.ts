// Builds the portal with esbuild (see build-portal.ts); also used by tests and bench:portal, which
// rebuild only when a source is newer than the last build (portalIsCurrent).
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const PORTAL_SRC = path.join(ROOT, "portal/src");
export const PORTAL_DIST = path.join(ROOT, "portal/dist");

export interface BuiltFile {
  name: string;
  bytes: number;
  gzipBytes: number;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, statSync(path.join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/** True when portal/dist was built after every file under portal/src and the build scripts changed. */
export function portalIsCurrent(dist = PORTAL_DIST): boolean {
  try {
    const built = statSync(path.join(dist, "index.html")).mtimeMs;
    const inputs = Math.max(
      newestMtime(PORTAL_SRC),
      statSync(path.join(ROOT, "scripts/portal-build.ts")).mtimeMs,
      statSync(path.join(ROOT, "package-lock.json")).mtimeMs,
    );
    return built >= inputs;
  } catch {
    return false;
  }
}

export async function buildPortal(
  o: { entry?: string; dist?: string; title?: string } = {},
): Promise<{ ms: number; files: BuiltFile[] }> {
  const started = performance.now();
  const dist = o.dist ?? PORTAL_DIST;
  // built into a fresh folder and renamed into place, so a running vault never reads half a build
  const next = `${dist}.next`;
  rmSync(next, { recursive: true, force: true });
  mkdirSync(path.join(next, "assets"), { recursive: true });
  const result = await esbuild.build({
    entryPoints: { app: o.entry ?? path.join(PORTAL_SRC, "main.tsx") },
    outdir: path.join(next, "assets"),
    entryNames: "[name]-[hash]",
    bundle: true,
    minify: true,
    sourcemap: "linked",
    format: "esm",
    target: ["es2022", "chrome120", "firefox120", "safari16"],
    jsx: "automatic",
    jsxImportSource: "preact",
    metafile: true,
    legalComments: "linked",
    logLevel: "warning",
  });
  const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
  const js = outputs.find((f) => f.endsWith(".js"));
  const css = outputs.find((f) => f.endsWith(".css"));
  if (js === undefined) throw new Error("the portal build produced no JavaScript");
  const title = o.title ?? "Switchback";
  writeFileSync(
    path.join(next, "index.html"),
    `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${title}</title>
<link rel="icon" href="data:,">
${css !== undefined ? `<link rel="stylesheet" href="/assets/${css}">\n` : ""}<script type="module" src="/assets/${js}"></script>
</head>
<body>
<div id="app"></div>
<noscript>The Switchback portal needs JavaScript. The CLI (switchback --help) does everything the portal does.</noscript>
</body>
</html>
`,
  );
  const files: BuiltFile[] = [];
  for (const name of [js, css].filter((f): f is string => f !== undefined)) {
    const p = path.join(next, "assets", name);
    const body = readFileSync(p);
    const gz = gzipSync(body, { level: 9 });
    writeFileSync(`${p}.gz`, gz);
    files.push({ name, bytes: body.length, gzipBytes: gz.length });
  }
  rmSync(`${dist}.old`, { recursive: true, force: true });
  try {
    renameSync(dist, `${dist}.old`);
  } catch {}
  renameSync(next, dist);
  rmSync(`${dist}.old`, { recursive: true, force: true });
  return { ms: Math.round(performance.now() - started), files };
}

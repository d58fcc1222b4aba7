// The portal: the built single-page app in portal/dist (npm run build:portal), served at / by the
// vault itself. Its files are held in memory, read again when index.html changed on disk (a new
// build shows on the next load without a restart); assets have hashed names and are cached for a
// year, index.html is never cached. These
// routes are public (the page asks for a token and then calls the API like any client) and are left
// out of the OpenAPI document. Every answer carries a strict Content-Security-Policy: scripts and
// styles only from the vault, no inline script, no framing.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply } from "fastify";

export const DEFAULT_PORTAL_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../portal/dist",
);

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

interface Asset {
  body: Buffer;
  gzip: Buffer | null;
  type: string;
}

function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const folder = path.join(dir, "assets");
  if (!existsSync(folder)) return assets;
  for (const name of readdirSync(folder)) {
    if (name.endsWith(".gz")) continue;
    const gz = path.join(folder, `${name}.gz`);
    assets.set(name, {
      body: readFileSync(path.join(folder, name)),
      gzip: existsSync(gz) ? readFileSync(gz) : null,
      type: TYPES[path.extname(name)] ?? "application/octet-stream",
    });
  }
  return assets;
}

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Switchback</title></head>
<body><h1>The portal is not built</h1><p>This vault serves its API, but the portal's files are missing from
portal/dist. Build them with <code>npm run build:portal</code> (./dev demo and ./dev test do it), then reload.
The CLI (<code>switchback --help</code>) works without them.</p></body></html>`;

export function portalRoutes(o: { dir?: string } = {}) {
  const dir = o.dir ?? DEFAULT_PORTAL_DIR;
  return async (app: FastifyInstance) => {
    const indexFile = path.join(dir, "index.html");
    let index: Buffer | null = null;
    let assets = new Map<string, Asset>();
    let builtAt = -1;
    const refresh = () => {
      let mtime = 0;
      try {
        mtime = statSync(indexFile).mtimeMs;
      } catch {}
      if (mtime === builtAt) return;
      builtAt = mtime;
      index = mtime === 0 ? null : readFileSync(indexFile);
      assets = loadAssets(dir);
    };
    refresh();
    const send = (reply: FastifyReply, status: number, type: string, body: Buffer | string) =>
      reply.code(status).headers(SECURITY_HEADERS).type(type).send(body);
    const config = { public: true };
    const schema = { hide: true };
    app.get("/", { config, schema }, async (_req, reply) => {
      refresh();
      reply.header("cache-control", "no-cache");
      return index === null
        ? send(reply, 503, "text/html; charset=utf-8", NOT_BUILT)
        : send(reply, 200, "text/html; charset=utf-8", index);
    });
    app.get<{ Params: { file: string } }>("/assets/:file", { config, schema }, async (req, reply) => {
      const a = assets.get(req.params.file);
      if (a === undefined) {
        reply.header("cache-control", "no-store");
        return send(reply, 404, "text/plain; charset=utf-8", `no portal asset ${req.params.file}`);
      }
      reply.header("cache-control", "public, max-age=31536000, immutable");
      reply.header("vary", "accept-encoding");
      if (a.gzip !== null && /\bgzip\b/.test(req.headers["accept-encoding"] ?? "")) {
        reply.header("content-encoding", "gzip");
        return send(reply, 200, a.type, a.gzip);
      }
      return send(reply, 200, a.type, a.body);
    });
  };
}

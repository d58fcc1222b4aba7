// npm run build:portal: bundles the portal (portal/src, Preact + TypeScript) into portal/dist: one
// hashed JavaScript and one hashed CSS file under assets/, their gzip copies, and index.html naming
// them. The vault serves portal/dist at / (src/vault/http/portal.ts). Run by ./dev before the demo
// and the tests, and by `npm pack` (prepack), so the package ships built assets.
import { buildPortal } from "./portal-build.ts";

const r = await buildPortal();
console.log(
  `portal built in ${r.ms} ms: ${r.files.map((f) => `${f.name} ${(f.bytes / 1024).toFixed(1)} KiB (${(f.gzipBytes / 1024).toFixed(1)} KiB gzip)`).join(", ")}`,
);

// A benchmark's scratch folder: made under --tmp, removed at the end and on Ctrl-C (kept with --keep).
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import path from "node:path";

export function benchWorkdir(
  tmp: string,
  prefix: string,
  keep: boolean,
): { base: string; cleanup: () => void } {
  mkdirSync(tmp, { recursive: true });
  const base = mkdtempSync(path.join(path.resolve(tmp), prefix));
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    if (keep) process.stderr.write(`kept ${base}\n`);
    else rmSync(base, { recursive: true, force: true });
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  return { base, cleanup };
}

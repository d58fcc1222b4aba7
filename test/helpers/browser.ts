// Real headless Chromium for the portal's tests, driven by playwright-core: the system's Chromium
// (apt-get install chromium), a fresh profile per launch, nothing that phones home. Without Chromium
// the browser tests skip and say how to install it, except under CI=true, where they fail.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

export const CHROMIUM = process.env.SWITCHBACK_CHROMIUM ?? "/usr/bin/chromium";

const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

const MISSING = `Chromium is not at ${CHROMIUM}: apt-get install chromium (or set SWITCHBACK_CHROMIUM)`;

/**
 * For `describe(..., { skip: browserSkip() })`: a reason to skip when Chromium is missing, false when
 * the tests can run. Under CI=true a missing Chromium is not skipped: launchBrowser then fails.
 */
export function browserSkip(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === "true") return false;
  return MISSING;
}

export interface Browser {
  context: BrowserContext;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** Launches headless Chromium with a fresh user-data directory, removed again by close(). */
export async function launchBrowser(
  o: {
    viewport?: { width: number; height: number };
    /** let a test inject scripts (axe-core) despite the portal's Content-Security-Policy */
    bypassCSP?: boolean;
  } = {},
): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(MISSING);
  const profile = mkdtempSync(path.join(os.tmpdir(), "sb-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: o.viewport ?? { width: 1280, height: 900 },
      colorScheme: "light",
      reducedMotion: "reduce",
      bypassCSP: o.bypassCSP ?? false,
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    newPage: () => context.newPage(),
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

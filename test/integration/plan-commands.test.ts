// A plan script left running by a vault killed with kill -9 is killed before its step runs it again,
// so two copies of one script never run at once.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { procStat } from "../../src/platform/process.ts";
import { runCommand } from "../../src/vault/plans/commands.ts";
import { ROOT, tempDir } from "../helpers/env.ts";

/** Running, not a zombie waiting for a parent that is gone to reap it. */
const running = (pid: number) => {
  const st = procStat(pid);
  return st !== null && st.state !== "Z";
};

test("a script left behind by a killed vault is killed before it runs again", async () => {
  const tmp = tempDir("sb-plan-cmd-");
  try {
    const marker = path.join(tmp.dir, "step.pgid");
    const pidFile = path.join(tmp.dir, "script.pid");
    const vault = spawn(
      process.execPath,
      [path.join(ROOT, "test/fixtures/plans/run-script.ts"), marker, pidFile],
      {
        stdio: "ignore",
      },
    );
    const deadline = Date.now() + 10_000;
    // both: the script may write its pid before the vault has written the marker that names it, and
    // a vault killed in between leaves nothing to find (a race a loaded machine showed)
    while (!(existsSync(pidFile) && existsSync(marker)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const scriptPid = Number(readFileSync(pidFile, "utf8"));
    vault.kill("SIGKILL");
    await new Promise((r) => vault.once("exit", r));
    assert.ok(running(scriptPid), "the script outlived the vault");
    const r = await runCommand("true", {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      timeoutMs: 10_000,
      signal: new AbortController().signal,
      marker,
    });
    assert.equal(r.exitCode, 0);
    // (SIGKILL is delivered at once; the process is gone when it is next scheduled)
    for (const until = Date.now() + 5_000; running(scriptPid) && Date.now() < until; )
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(running(scriptPid), false, "the leftover was killed before the step ran again");
    assert.equal(existsSync(marker), false, "the marker goes with the run");
  } finally {
    tmp.cleanup();
  }
});

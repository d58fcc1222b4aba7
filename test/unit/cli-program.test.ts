// The CLI loads only the module of the command it runs (src/cli/program.ts): that works only while
// every module registers the command of its own name, and the others it registers are listed in ALSO.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { Command } from "commander";
import { ALSO, buildProgram, COMMAND_MODULES } from "../../src/cli/program.ts";
import { ROOT } from "../helpers/env.ts";

test("every command module is listed and registers its own name, plus exactly what ALSO says", async () => {
  const files = readdirSync(path.join(ROOT, "src/cli/commands"))
    .filter((f) => f.endsWith(".ts"))
    .map((f) => f.slice(0, -3))
    .sort();
  assert.deepEqual([...COMMAND_MODULES].sort(), files, "COMMAND_MODULES lists every file in commands/");
  for (const name of COMMAND_MODULES) {
    const m = (await import(`../../src/cli/commands/${name}.ts`)) as { register(p: Command): void };
    const p = new Command("x");
    m.register(p);
    const expected = [name, ...Object.keys(ALSO).filter((k) => ALSO[k] === name)].sort();
    assert.deepEqual(p.commands.map((c) => c.name()).sort(), expected, `commands/${name}.ts`);
  }
});

test("a run builds only its command; help and unknown words get them all", async () => {
  assert.deepEqual(
    (await buildProgram("replicate-once")).commands.map((c) => c.name()),
    ["replicate-once"],
  );
  assert.deepEqual(
    (await buildProgram("test-failover-cleanup")).commands.map((c) => c.name()),
    ["test-failover", "test-failover-cleanup"],
  );
  const all = (await buildProgram()).commands.length;
  assert.equal(all, COMMAND_MODULES.length + Object.keys(ALSO).length);
  assert.equal((await buildProgram("--help")).commands.length, all);
  assert.equal((await buildProgram("no-such-command")).commands.length, all);
});

// Page-aligned buffers for packs: made ahead of time with their pages in place, then handed out.
import assert from "node:assert/strict";
import { test } from "node:test";
import { giveBack, isAligned, prefillAligned, takeAligned } from "../../src/platform/aligned.ts";
import { native } from "../../src/platform/native.ts";

test("buffers made ahead are aligned, zeroed, as long as asked, and handed out first", {
  skip: typeof native?.populatedPages === "function" ? false : "the native addon is not built",
}, async () => {
  const size = 3 * 1024 * 1024 + 4096;
  const fresh = await native!.populatedPages!(size);
  assert.equal(fresh.length, size);
  assert.ok(isAligned(fresh));
  assert.ok(fresh.every((b) => b === 0));
  fresh.fill(7); // writable
  // an odd size: rounded up to whole pages
  await prefillAligned(size - 100, 2);
  const a = takeAligned(size - 100);
  const b = takeAligned(size - 100);
  for (const x of [a, b]) {
    assert.equal(x.length, size);
    assert.ok(isAligned(x));
    assert.ok(x.subarray(0, 4096).every((v) => v === 0) && x[size - 1] === 0);
  }
  assert.notEqual(a.buffer, b.buffer);
  giveBack(a);
  giveBack(b);
  // spares that fit are counted: no more are made
  await prefillAligned(size - 100, 2);
  const c = takeAligned(size - 100);
  assert.ok(c.buffer === a.buffer || c.buffer === b.buffer);
  giveBack(c);
  assert.throws(() => native!.populatedPages!(0), /populatedPages takes/);
});

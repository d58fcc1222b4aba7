// Page-aligned, reusable byte buffers: packs are assembled in them and written from them with O_DIRECT
// (which wants aligned memory). Reused because fresh memory is not free: every new 4 KiB page costs a
// fault and a zeroing when first touched (~1.7 µs here, ~0.4 s per GB), and a one-shot buffer per
// pack touches every page of every pack.
import { native } from "./native.ts";

export const ALIGN = 4096;
const SPARE_MAX = 4;
const spare: Buffer[] = [];

/** Whether `b`'s memory starts on an ALIGN boundary (known only with the native addon). */
export function isAligned(b: Buffer): boolean {
  return native !== null && native.alignOffset(b, ALIGN) === 0;
}

/**
 * A buffer of at least `bytes` (a multiple of ALIGN), aligned when the native addon can tell where its
 * memory starts, else plain. Its old content is garbage. Give it back when done with it.
 */
export function takeAligned(bytes: number): Buffer {
  // the smallest spare that fits: a big one (a pack with a long trailer) is kept for a big need
  let i = -1;
  spare.forEach((b, k) => {
    if (b.length >= bytes && (i < 0 || b.length < spare[i]!.length)) i = k;
  });
  if (i >= 0) return spare.splice(i, 1)[0]!;
  const size = Math.ceil(bytes / ALIGN) * ALIGN;
  if (native === null) return Buffer.allocUnsafeSlow(size);
  const raw = Buffer.allocUnsafeSlow(size + ALIGN);
  const off = native.alignOffset(raw, ALIGN);
  return raw.subarray(off, off + size);
}

/**
 * Makes `count` buffers of `bytes` for takeAligned to hand out, their pages in place, on libuv's
 * thread pool (where the native addon can): the thread that fills them later takes no page faults
 * (~1.7 us a 4 KiB page here: ~9 ms of a point that stores 21 MB). Resolves when they are there;
 * never rejects (without them, takeAligned makes its own).
 */
export async function prefillAligned(bytes: number, count: number): Promise<void> {
  const addon = native;
  if (addon?.populatedPages === undefined) return;
  const size = Math.ceil(bytes / ALIGN) * ALIGN;
  const have = spare.filter((b) => b.length >= size).length;
  const made = await Promise.allSettled(
    // (a call that throws at once is a rejection here too)
    Array.from({ length: Math.max(0, count - have) }, async () => addon.populatedPages!(size)),
  );
  for (const m of made) if (m.status === "fulfilled") giveBack(m.value);
}

/** Returns a buffer from takeAligned for reuse; nothing may use it afterwards. */
export function giveBack(b: Buffer): void {
  spare.push(b);
  if (spare.length > SPARE_MAX) spare.sort((x, y) => y.length - x.length).pop();
}

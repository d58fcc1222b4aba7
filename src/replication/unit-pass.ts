// The comparing half of a hashing pass, native: where a disk is read whole (an image file, a disk
// without a write journal, the first point after a reboot, a frozen re-read without a tracker), the
// addon reads the units and compares their XXH64 with the agent state's, on libuv's thread pool, and
// hands back only the 4 KiB blocks that changed. The pass then reads those blocks again as it does a
// journal's (scanBlocks), so hashing with BLAKE3, compression and shipping stay in one place.
// Measured on the 2 GiB benchmark image with 1 % of its blocks changed: JavaScript's unit pass took
// ~0.9 CPU-s over two workers; this one reads and hashes at memory speed.
import { SwitchbackError } from "../domain/errors.ts";
import { native } from "../platform/native.ts";
import type { DiskHashes } from "./agent-state.ts";
import { type DiskInfo, DiskReader } from "./disk-source.ts";

/** units one native call compares (256 MiB): progress and the thread pool's turns come this often */
const CALL_UNITS = 4096;

/** Whether the comparing pass can run natively in this process. */
export function nativeUnitPass(): boolean {
  return native !== null && typeof native.unitChanges === "function";
}

/**
 * The 4 KiB blocks of `units` (ascending [from, to) unit ranges) whose content differs from `prev`'s
 * hashes, as ascending, merged [from, to) block ranges. Units whose hash was stale in `prev` while
 * none of their blocks changed get their hash in `next.unit`; nothing else is written. `threads`
 * calls run at once; `onBytes` hears of each call's bytes read.
 */
export async function changedBlocks(
  info: DiskInfo,
  units: readonly (readonly [number, number])[],
  seed: bigint,
  prev: DiskHashes,
  next: DiskHashes,
  threads: number,
  onBytes: (bytes: number) => void,
): Promise<[number, number][]> {
  const addon = native;
  if (addon === null) throw new Error("changedBlocks needs the native addon");
  const calls: [number, number][] = [];
  for (const [a, b] of units)
    for (let u = a; u < b; u += CALL_UNITS) calls.push([u, Math.min(b, u + CALL_UNITS)]);
  const results = await onDisk(info, calls, threads, async ({ fd, base, direct }, [from, to]) => {
    const r = await addon.unitChanges(
      fd,
      base,
      info.sizeBytes,
      info.sectorSize,
      direct,
      from,
      to,
      seed,
      prev.unit,
      prev.block,
      next.unit,
    );
    onBytes(r.bytesRead);
    return r.ranges;
  });
  // calls cover ascending, disjoint units: their ranges only need joining where one ends as the next begins
  const out: [number, number][] = [];
  for (const r of results) {
    for (let k = 0; k < r.length; k += 2) {
      const a = r[k]!;
      const b = r[k + 1]!;
      const last = out[out.length - 1];
      if (last !== undefined && last[1] === a) last[1] = b;
      else out.push([a, b]);
    }
  }
  return out;
}

/**
 * Runs `call` for each of `calls` (in the order given, `threads` at a time) over the disk opened as a
 * pass reads it; the results come back in the order of `calls`. Errors of the addon's reads become
 * SwitchbackErrors naming the disk.
 */
export async function onDisk<C, R>(
  info: DiskInfo,
  calls: readonly C[],
  threads: number,
  call: (source: { fd: number; base: number; direct: boolean }, c: C) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(calls.length);
  const reader = new DiskReader(info, 4096);
  const source = reader.source;
  let next = 0;
  let failed = false;
  const runner = async (): Promise<void> => {
    while (next < calls.length && !failed) {
      const i = next++;
      try {
        results[i] = await call(source, calls[i]!);
      } catch (err) {
        const e = err as Error & { code?: string };
        if (e.code === "DISK_READ_FAILED")
          throw new SwitchbackError(e.code, `reading disk ${info.path} ${e.message}`);
        if (e.code === "DISK_SHRUNK") throw new SwitchbackError(e.code, `disk ${info.path} ${e.message}`);
        throw err;
      }
    }
  };
  // every call must have settled before the descriptor closes: a call still on the thread pool would
  // read whatever file the number is given to next
  const settled = await Promise.allSettled(
    Array.from({ length: Math.max(1, Math.min(threads, calls.length)) }, () =>
      runner().catch((err: unknown) => {
        failed = true;
        throw err;
      }),
    ),
  );
  reader.close();
  const failure = settled.find((x) => x.status === "rejected");
  if (failure !== undefined) throw failure.reason;
  return results;
}

// A disk's 4 KiB block hashes while a point is taken, kept out of memory: a 1 TiB disk has 2 GiB of
// them, and a point needs only those of the units whose unit hash changed. The last point's are read
// from its hash file as a pass needs them (pread, 128 bytes a unit); the ones this point computes go
// to a scratch file beside it (unlinked as soon as it is created, so a crash leaves nothing behind),
// at the same place a unit has in the hash file's block section, and a per-unit flag says which units
// the scratch file holds. Once the point is committed, AgentState copies the flagged units into the
// hash file (applyBlockHashes). The unit hashes (8 bytes per 64 KiB) stay in memory.
//
// A unit's hashes are always read and written whole (its record), by one thread at a time: passes
// never split a unit between two threads (unitAlignedCuts). The native addon reads and writes the
// same records (native/switchback.c).
import { closeSync } from "node:fs";
import { openScratch, preadFully, pwriteFully } from "../platform/files.ts";

/** blocks of a 64 KiB unit, the granularity of a pass's first comparison */
export const UNIT_BLOCKS = 16;
/** bytes of a unit's block hashes (XXH64, 8 bytes each) */
export const RECORD_BYTES = UNIT_BLOCKS * 8;
/** units whose records fill a 4 KiB page; `written` is sized in whole pages */
const PAGE_UNITS = 4096 / RECORD_BYTES;
/** pages of records applyBlockHashes moves in one read and write at most */
const RUN_PAGES = 64;

export interface BlockHashes {
  /** 4 KiB blocks of the disk */
  blocks: number;
  /** the last point's hash file, open (its block section at prevAt), or -1: there is none to trust */
  prevFd: number;
  prevAt: number;
  /** this point's records: an unlinked file, unit u's at u * RECORD_BYTES */
  nextFd: number;
  /** per unit, 1 once nextFd holds its record (shared with the passes' threads) */
  written: Uint8Array;
}

/** Units of a disk of `blocks` blocks. */
function unitsOf(blocks: number): number {
  return Math.ceil(blocks / UNIT_BLOCKS);
}

/**
 * A point's block hashes, its scratch file made in `dir`; `prev` is the last point's hash file (open,
 * trusted, its block section at `at`), which stays the caller's to close.
 */
export function openBlockHashes(
  dir: string,
  blocks: number,
  prev: { fd: number; at: number } | null,
): BlockHashes {
  const fd = openScratch(dir, "point-hashes", unitsOf(blocks) * RECORD_BYTES);
  const pages = Math.ceil(unitsOf(blocks) / PAGE_UNITS);
  return {
    blocks,
    prevFd: prev?.fd ?? -1,
    prevAt: prev?.at ?? 0,
    nextFd: fd,
    written: new Uint8Array(new SharedArrayBuffer(pages * PAGE_UNITS)),
  };
}

/** Closes the scratch file (not prevFd). */
export function closeBlockHashes(h: BlockHashes): void {
  if (h.nextFd < 0) return;
  closeSync(h.nextFd);
  h.nextFd = -1;
}

/**
 * Unit u's block hashes into `into` (RECORD_BYTES; a last, partial unit's missing slots are 0): this
 * point's when a pass has written them, else the last point's. False, with `into` zeroed, when there
 * are none (no last point, and none written yet).
 */
export function readUnitHashes(h: BlockHashes, u: number, into: Uint8Array): boolean {
  if (h.written[u] === 1) {
    preadAll(h.nextFd, into, RECORD_BYTES, u * RECORD_BYTES, "this point's block hashes");
    return true;
  }
  if (h.prevFd < 0) {
    into.fill(0, 0, RECORD_BYTES);
    return false;
  }
  const n = Math.min(UNIT_BLOCKS, h.blocks - u * UNIT_BLOCKS) * 8;
  preadAll(h.prevFd, into, n, h.prevAt + u * RECORD_BYTES, "the last point's block hashes");
  into.fill(0, n, RECORD_BYTES);
  return true;
}

/** Records the block hashes of `units` consecutive units from `u` (RECORD_BYTES each, from `from`). */
export function writeUnitHashes(h: BlockHashes, u: number, from: Uint8Array, units: number): void {
  pwriteFully(h.nextFd, from.subarray(0, units * RECORD_BYTES), u * RECORD_BYTES);
  h.written.fill(1, u, u + units);
}

/** A hash file's block section: the open file and where the section starts in it. */
export interface Section {
  fd: number;
  at: number;
}

/**
 * Writes this point's block hashes into the block section `to`, in runs of whole 4 KiB pages of
 * records: the records the passes wrote, and for every other unit what `base` holds (the last point's
 * section; null: zeros, unknown). With `base` the section `to` itself (an update in place), only the
 * pages holding a record the passes wrote are written; otherwise all of them are (a file written
 * anew). Returns the pages written.
 */
export function applyBlockHashes(h: BlockHashes, to: Section, base: Section | null): number {
  const inPlace = base !== null && base.fd === to.fd && base.at === to.at;
  const units = unitsOf(h.blocks);
  const sectionBytes = h.blocks * 8;
  const flags = new BigUint64Array(h.written.buffer, h.written.byteOffset, h.written.length / 8);
  const pageWritten = (p: number): boolean => {
    for (let k = p * (PAGE_UNITS / 8); k < (p + 1) * (PAGE_UNITS / 8); k++) if (flags[k] !== 0n) return true;
    return false;
  };
  const pages = h.written.length / PAGE_UNITS;
  const runBytes = RUN_PAGES * PAGE_UNITS * RECORD_BYTES;
  const mine = Buffer.allocUnsafe(runBytes);
  const out = Buffer.allocUnsafe(runBytes);
  let written = 0;
  for (let p = 0; p < pages; ) {
    if (inPlace && !pageWritten(p)) {
      p++;
      continue;
    }
    let q = p + 1;
    while (q < pages && q - p < RUN_PAGES && (!inPlace || pageWritten(q))) q++;
    const u0 = p * PAGE_UNITS;
    const u1 = Math.min(units, q * PAGE_UNITS);
    const from = u0 * RECORD_BYTES;
    const bytes = Math.min(sectionBytes, u1 * RECORD_BYTES) - from;
    const was = base === null ? 0 : preadFully(base.fd, out.subarray(0, bytes), base.at + from);
    out.fill(0, was, bytes);
    let any = false;
    for (let u = u0; u < u1; u++) {
      if (h.written[u] !== 1) continue;
      if (!any) {
        // (the scratch file is sized at creation; were it shorter, what lies past its end is zeros)
        mine.fill(0, preadFully(h.nextFd, mine.subarray(0, bytes), from), bytes);
        any = true;
      }
      const a = (u - u0) * RECORD_BYTES;
      mine.copy(out, a, a, Math.min(bytes, a + RECORD_BYTES));
    }
    pwriteFully(to.fd, out.subarray(0, bytes), to.at + from);
    written += q - p;
    p = q;
  }
  return written;
}

function preadAll(fd: number, into: Uint8Array, bytes: number, pos: number, what: string): void {
  const got = preadFully(fd, into.subarray(0, bytes), pos);
  if (got < bytes)
    throw new Error(`${what} end at byte ${pos + got}, short of the ${bytes} bytes asked at ${pos}`);
}

/** Block `b`'s unit. */
export function unitOf(b: number): number {
  return Math.floor(b / UNIT_BLOCKS);
}

/**
 * Cuts ascending [from, to) block ranges into pieces of about `per` blocks, never between two blocks
 * of one unit (so two threads never hold the same unit's record): a piece ends only where the next
 * block to take lies in another unit than the last one taken. With `first`, the first piece is of
 * about `first` blocks and each next one twice the one before, up to `per`.
 */
export function unitAlignedCuts(
  ranges: readonly (readonly [number, number])[],
  maxPer: number,
  first = maxPer,
): [number, number][][] {
  const out: [number, number][][] = [];
  let cur: [number, number][] = [];
  let taken = 0;
  let per = Math.min(first, maxPer);
  let last = -1; // the last block taken
  for (const [a0, b] of ranges) {
    for (let a = a0; a < b; ) {
      if (taken >= per && unitOf(a) !== unitOf(last)) {
        out.push(cur);
        cur = [];
        taken = 0;
        per = Math.min(maxPer, 2 * per);
      }
      // up to `per`, then on to the end of the unit under way
      let end = Math.min(b, a + Math.max(1, per - taken));
      if (end < b) end = Math.min(b, Math.max(end, (unitOf(end - 1) + 1) * UNIT_BLOCKS));
      cur.push([a, end]);
      taken += end - a;
      last = end - 1;
      a = end;
    }
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Every block hash `h` holds now, 8 bytes a block (tests and tools: this is the memory it saves). */
export function allBlockHashes(h: BlockHashes): BigUint64Array {
  const units = unitsOf(h.blocks);
  const out = new BigUint64Array(units * UNIT_BLOCKS);
  const rec = new Uint8Array(out.buffer);
  for (let u = 0; u < units; u++)
    readUnitHashes(h, u, rec.subarray(u * RECORD_BYTES, (u + 1) * RECORD_BYTES));
  return out.subarray(0, h.blocks);
}

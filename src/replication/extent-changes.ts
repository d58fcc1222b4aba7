// What changed in a disk image between two reflink clones of it, from where the file system keeps
// their data (FIEMAP), without reading either. On a file system that shares extents between clones
// (XFS, btrfs), a write to the live image lands in new blocks (copy on write) while every block not
// written since stays shared, at the same physical place, with the previous point's clone, which
// holds it and so keeps it from being reused. Two clones whose block lies at the same physical place
// therefore hold the same bytes there; everywhere else (written, zeroed, punched, or an extent the
// file system does not vouch for) the block is read and compared as usual.

import { fstatSync } from "node:fs";
import { BLOCK_SIZE } from "../datastore/format.ts";
import { native } from "../platform/native.ts";
import { mergeRanges } from "./ranges.ts";

const FIEMAP_EXTENT_UNKNOWN = 0x2;
const FIEMAP_EXTENT_DELALLOC = 0x4;
const FIEMAP_EXTENT_ENCODED = 0x8;
const FIEMAP_EXTENT_DATA_ENCRYPTED = 0x80;
const FIEMAP_EXTENT_NOT_ALIGNED = 0x100;
const FIEMAP_EXTENT_DATA_INLINE = 0x200;
const FIEMAP_EXTENT_DATA_TAIL = 0x400;
const FIEMAP_EXTENT_UNWRITTEN = 0x800;
/** extents whose physical place says nothing about their bytes: always read */
const UNVOUCHED =
  FIEMAP_EXTENT_UNKNOWN |
  FIEMAP_EXTENT_DELALLOC |
  FIEMAP_EXTENT_ENCODED |
  FIEMAP_EXTENT_DATA_ENCRYPTED |
  FIEMAP_EXTENT_NOT_ALIGNED |
  FIEMAP_EXTENT_DATA_INLINE |
  FIEMAP_EXTENT_DATA_TAIL |
  FIEMAP_EXTENT_UNWRITTEN;

/** XFS and btrfs (statfs f_type): where a write to a block a clone shares lands in a new block */
const COPY_ON_WRITE_FILE_SYSTEMS = new Set([0x58465342, 0x9123683e]);

/**
 * Whether the extents of the two open files may be compared: both on one XFS or btrfs file system.
 * Elsewhere FIEMAP may answer with places that say nothing (CIFS reports each range's logical offset
 * as its physical one, and can clone files on some servers).
 */
export function extentsVouch(a: number, b: number): boolean {
  const sa = fstatSync(a);
  const sb = fstatSync(b);
  if (sa.dev !== sb.dev) return false;
  return native?.fileSystemType !== undefined && COPY_ON_WRITE_FILE_SYSTEMS.has(native.fileSystemType(a));
}

/** The extents of an open file (fileExtents' four numbers each), or null where they cannot be had. */
export function extentsOf(fd: number): Float64Array | null {
  if (native?.fileExtents === undefined) return null;
  try {
    return native.fileExtents(fd);
  } catch {
    return null; // (a file system without FIEMAP: the pass reads everything, as without a clone)
  }
}

/**
 * The 4 KiB blocks of the first `sizeBytes` whose place differs between two files' extents (four
 * numbers each: logical, physical, length, flags; logical order), as ascending, merged [from, to)
 * block ranges; null when the extents are not in order (nothing can be concluded from them).
 */
export function changedByExtents(
  base: Float64Array,
  now: Float64Array,
  sizeBytes: number,
  unwrittenSame = false,
): [number, number][] | null {
  if (!ordered(base) || !ordered(now)) return null;
  // an unwritten extent reads as zeros; between two clones it may hold a write's blocks before the
  // write is done, but where every write since the base is traced as well (a write journal), an
  // extent unwritten at the same place in both maps held zeros in both
  const unvouched = unwrittenSame ? UNVOUCHED & ~FIEMAP_EXTENT_UNWRITTEN : UNVOUCHED;
  const out: [number, number][] = [];
  const mark = (x: number, y: number): void => {
    const from = Math.floor(x / BLOCK_SIZE);
    const to = Math.ceil(y / BLOCK_SIZE);
    const last = out[out.length - 1];
    if (last !== undefined && from <= last[1]) last[1] = Math.max(last[1], to);
    else out.push([from, to]);
  };
  let i = 0; // base's first extent that ends after x
  let j = 0;
  for (let x = 0; x < sizeBytes; ) {
    while (i < base.length && base[i]! + base[i + 2]! <= x) i += 4;
    while (j < now.length && now[j]! + now[j + 2]! <= x) j += 4;
    // each file at x: inside an extent, or in a hole up to the next one
    const inBase = i < base.length && base[i]! <= x;
    const inNow = j < now.length && now[j]! <= x;
    const baseEnd = i < base.length ? (inBase ? base[i]! + base[i + 2]! : base[i]!) : sizeBytes;
    const nowEnd = j < now.length ? (inNow ? now[j]! + now[j + 2]! : now[j]!) : sizeBytes;
    const y = Math.min(baseEnd, nowEnd, sizeBytes);
    const same =
      (!inBase && !inNow) ||
      (inBase &&
        inNow &&
        (base[i + 3]! & unvouched) === 0 &&
        (now[j + 3]! & unvouched) === 0 &&
        (base[i + 3]! & FIEMAP_EXTENT_UNWRITTEN) === (now[j + 3]! & FIEMAP_EXTENT_UNWRITTEN) &&
        base[i + 1]! + (x - base[i]!) === now[j + 1]! + (x - now[j]!));
    if (!same) mark(x, y);
    x = y;
  }
  return out;
}

/**
 * The 4 KiB blocks of a file of `sizeBytes` that hold any of the device's `sectors` ([from, to) in
 * 512-byte sectors of the file system's device, ascending and merged), through the file's extents
 * (extentsOf): where a write traced on the device landed in the file. Ascending, merged [from, to)
 * block ranges; sectors that are none of the file's are not counted.
 */
export function blocksAtSectors(
  extents: Float64Array,
  sectors: readonly (readonly [number, number])[],
  sizeBytes: number,
): [number, number][] {
  const n = extents.length / 4;
  // the extents in physical order, for one sweep beside the ascending sectors
  const byPlace = Array.from({ length: n }, (_, k) => k).sort(
    (a, b) => extents[4 * a + 1]! - extents[4 * b + 1]!,
  );
  const hits: [number, number][] = [];
  let k = 0;
  for (const [s0, s1] of sectors) {
    const a = s0 * 512;
    const b = s1 * 512;
    // extents ending at or before a are behind every later range too
    while (k < n && extents[4 * byPlace[k]! + 1]! + extents[4 * byPlace[k]! + 2]! <= a) k++;
    for (let m = k; m < n; m++) {
      const e = 4 * byPlace[m]!;
      const place = extents[e + 1]!;
      if (place >= b) break;
      const from = Math.max(a, place);
      const to = Math.min(b, place + extents[e + 2]!);
      if (to <= from) continue;
      const logical = extents[e]! + (from - place);
      const end = Math.min(sizeBytes, logical + (to - from));
      if (end > logical) hits.push([Math.floor(logical / BLOCK_SIZE), Math.ceil(end / BLOCK_SIZE)]);
    }
  }
  return mergeRanges(hits);
}

/** Extents in logical order, none overlapping the next, lengths above zero. */
function ordered(e: Float64Array): boolean {
  if (e.length % 4 !== 0) return false;
  for (let k = 0; k < e.length; k += 4) {
    if (!(e[k + 2]! > 0) || e[k]! < 0) return false;
    if (k > 0 && e[k]! < e[k - 4]! + e[k - 2]!) return false;
  }
  return true;
}

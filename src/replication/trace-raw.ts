// Reads block trace events from a tracefs instance in the kernel's binary form (per_cpu/cpuN/
// trace_pipe_raw): whole ring-buffer pages, parsed here, instead of `trace_pipe`, where the kernel
// formats every event as a line of text first. For the 10,500 events of 5,243 scattered writes that is
// ~19 ms of kernel time and ~10 ms of parsing saved, at every point.
//
// Layout (Documentation/trace/ring-buffer-design.rst; events/header_page and header_event of tracefs):
// a page is a u64 timestamp, a u64 `commit` (bytes of data; bit 31 set when events were lost before
// this page) and the data. Each event starts with a u32: type_len (5 bits) and time delta (27 bits).
// type_len 1..28: the record is type_len * 4 bytes after the header; 0: a u32 length follows, then
// the record; 29: padding (a u32 length; a zero one ends the page); 30, 31: time extend and time stamp
// (8 bytes in all). A record's layout comes from the event's own `format` file (field offsets).
import { closeSync, constants, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import path from "node:path";
import { native } from "../platform/native.ts";

const RB_MISSED_EVENTS = 2 ** 31;
/** RB_MISSED_STORED, the lower of the two flag bits: below it, the commit word is the data size */
const COMMIT_FLAGS_BIT = 2 ** 30;

interface Layout {
  id: number;
  dev: number;
  sector: number;
  nrSector: number;
  rwbs: number;
  rwbsSize: number;
}

/**
 * What an event says: the device (kernel dev_t), where and how many sectors, and, for a request without
 * sectors, its kind (rwbs: "FWS", "N"…; "" for every other event).
 */
export type TraceEventHandler = (dev: number, sector: number, nrSector: number, rwbs: string) => void;

function rwbsField(format: string): { rwbs: number; rwbsSize: number } {
  const m = /field:char rwbs\[(\d+)\];\s*offset:(\d+);\s*size:(\d+);/.exec(format);
  if (m === null) throw new Error("the trace format has no rwbs field");
  return { rwbs: Number(m[2]), rwbsSize: Number(m[3]) };
}

/** Offset of a field in an event's `format` file, or throws. */
function fieldOffset(format: string, name: string, size: number): number {
  const m = new RegExp(`field:[^;]*\\b${name};\\s*offset:(\\d+);\\s*size:(\\d+);`).exec(format);
  if (m === null || Number(m[2]) !== size)
    throw new Error(`the trace format has no ${size}-byte field ${name}`);
  return Number(m[1]);
}

export class RawTraceReader {
  readonly #fds: number[];
  readonly #layouts: Map<number, Layout>;
  readonly #dataOffset: number;
  readonly #page: Buffer;
  /** the descriptors and event layouts as traceDrain takes them */
  #native: { fds: Int32Array; layouts: Float64Array } | undefined;

  private constructor(fds: number[], layouts: Map<number, Layout>, dataOffset: number, pageSize: number) {
    this.#fds = fds;
    this.#layouts = layouts;
    this.#dataOffset = dataOffset;
    this.#page = Buffer.allocUnsafe(pageSize);
  }

  /** Opens every CPU's raw pipe of an instance for the given block events; throws when it cannot. */
  static open(instanceDir: string, tracefs: string, events: readonly string[]): RawTraceReader {
    // the instance's own page header first (sub-buffer sizes can differ per instance since 6.7)
    let header: string;
    try {
      header = readFileSync(path.join(instanceDir, "events", "header_page"), "utf8");
    } catch {
      header = readFileSync(path.join(tracefs, "events", "header_page"), "utf8");
    }
    const data = /field: char data;\s*offset:(\d+);\s*size:(\d+);/.exec(header);
    const commit = /field: local_t commit;\s*offset:(\d+);\s*size:(\d+);/.exec(header);
    if (data === null || commit === null || Number(commit[1]) !== 8 || Number(commit[2]) !== 8)
      throw new Error("the trace's page header is not the one this reader knows");
    const layouts = new Map<number, Layout>();
    for (const e of events) {
      const format = readFileSync(path.join(instanceDir, "events", "block", e, "format"), "utf8");
      const id = /^ID: (\d+)$/m.exec(format);
      if (id === null) throw new Error(`the trace format of ${e} has no ID`);
      layouts.set(Number(id[1]), {
        id: Number(id[1]),
        dev: fieldOffset(format, "dev", 4),
        sector: fieldOffset(format, "sector", 8),
        nrSector: fieldOffset(format, "nr_sector", 4),
        ...rwbsField(format),
      });
    }
    const cpus = readdirSync(path.join(instanceDir, "per_cpu")).filter((n) => /^cpu\d+$/.test(n));
    const fds: number[] = [];
    try {
      for (const c of cpus)
        fds.push(
          openSync(
            path.join(instanceDir, "per_cpu", c, "trace_pipe_raw"),
            constants.O_RDONLY | constants.O_NONBLOCK,
          ),
        );
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      throw err;
    }
    return new RawTraceReader(fds, layouts, Number(data[1]), Number(data[1]) + Number(data[2]));
  }

  /**
   * What drain() and a handler placing each event through `windows` would give, in the native addon
   * (null where it is not built): per disk the byte ranges the events landed on, in event order, why
   * events may be missing, and the rwbs of a passthrough request on a traced device. `windows`: five
   * numbers each (dev, disk, shiftSectors, addBytes, the disk's limit in bytes); an event lands on
   * [max(0, (sector + shift) * 512 + add), min(limit, (sector + shift + nr) * 512 + add)).
   */
  drainPlaced(
    windows: Float64Array,
    disks: number,
  ): { pairs: Float64Array[]; problem: string | null; passthrough: string | null } | null {
    const addon = native;
    if (addon?.traceDrain === undefined) return null;
    // (made once: the tracker drains every second)
    this.#native ??= {
      fds: Int32Array.from(this.#fds),
      layouts: Float64Array.from(
        [...this.#layouts.values()].flatMap((l) => [l.id, l.dev, l.sector, l.nrSector, l.rwbs, l.rwbsSize]),
      ),
    };
    return addon.traceDrain(
      this.#native.fds,
      this.#page.length,
      this.#dataOffset,
      this.#native.layouts,
      windows,
      disks,
    );
  }

  /**
   * Hands every event the buffers hold now to `onEvent` (consuming them). Returns why events may be
   * missing (lost by the kernel, a page it cannot read), or null.
   */
  drain(onEvent: TraceEventHandler): string | null {
    let problem: string | null = null;
    for (const fd of this.#fds) {
      for (;;) {
        let n: number;
        try {
          n = readSync(fd, this.#page, 0, this.#page.length, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "EAGAIN") break;
          return `reading the trace failed: ${(err as Error).message}`;
        }
        if (n === 0) break;
        problem ??= this.#parsePage(n, onEvent);
      }
    }
    return problem;
  }

  #parsePage(n: number, onEvent: TraceEventHandler): string | null {
    const p = this.#page;
    if (n < this.#dataOffset) return `a trace page of ${n} bytes`;
    const commit = p.readUInt32LE(8); // the low word: the size, and the flags in its top two bits
    if (commit >= RB_MISSED_EVENTS) return "the kernel lost trace events (a page says so)";
    const size = commit % COMMIT_FLAGS_BIT;
    const end = this.#dataOffset + size;
    if (end > n) return `a trace page claims ${size} bytes of events but holds ${n - this.#dataOffset}`;
    let at = this.#dataOffset;
    while (at + 4 <= end) {
      const h = p.readUInt32LE(at);
      const typeLen = h & 0x1f;
      let rec: number;
      let len: number;
      if (typeLen === 0) {
        len = p.readUInt32LE(at + 4) - 4;
        rec = at + 8;
        at = rec + len;
      } else if (typeLen <= 28) {
        len = typeLen * 4;
        rec = at + 4;
        at = rec + len;
      } else if (typeLen === 29) {
        const pad = p.readUInt32LE(at + 4);
        if (pad === 0) break; // the rest of the page is padding
        at += 4 + pad;
        continue;
      } else {
        at += 8; // time extend or time stamp
        continue;
      }
      if (at > end || len < 2) return "a trace event runs past its page";
      const layout = this.#layouts.get(p.readUInt16LE(rec));
      if (layout === undefined) return `an unexpected trace event (type ${p.readUInt16LE(rec)})`;
      if (layout.nrSector + 4 > len || layout.sector + 8 > len || layout.rwbs + layout.rwbsSize > len)
        return "a trace event shorter than its format";
      const nr = p.readUInt32LE(rec + layout.nrSector);
      // the request's kind as text only when a handler can need it: a request without sectors (a
      // flush, or a passthrough command); 10,000 strings a drain cost more than the rest of the parse
      let rwbs = "";
      if (nr === 0) {
        const r0 = rec + layout.rwbs;
        const nul = p.indexOf(0, r0);
        rwbs = p.toString("latin1", r0, nul < 0 || nul > r0 + layout.rwbsSize ? r0 + layout.rwbsSize : nul);
      }
      const s0 = rec + layout.sector;
      onEvent(
        p.readUInt32LE(rec + layout.dev),
        p.readUInt32LE(s0) + p.readUInt32LE(s0 + 4) * 2 ** 32, // a sector number stays below 2^53
        nr,
        rwbs,
      );
    }
    return null;
  }

  close(): void {
    for (const fd of this.#fds) closeSync(fd);
    this.#fds.length = 0;
    this.#native = undefined;
  }
}

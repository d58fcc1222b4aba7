// The storage a datastore lives on. Deliberately small, so that S3 and Azure Blob backends are one
// folder each: whole-object writes that are atomic and durable, ranged reads, list and remove.
// Names are slash-separated relative paths such as "packs/ab/ab12….pack".

export interface Backend {
  /** Human-readable location, used in messages. */
  readonly location: string;
  /**
   * Atomically creates `name` with `data`: durable (fsynced) before the call resolves, never
   * half-visible. `o.durable` false: visible at once and atomic, but a power loss may undo it (lock
   * markers on the machine's own disk, whose holders a power loss ends too).
   */
  write(name: string, data: ObjectData, o?: WriteOptions): Promise<void>;
  read(name: string): Promise<Buffer>;
  readRange(name: string, offset: number, length: number): Promise<Buffer>;
  /**
   * The whole object, as a read-only view that need not be the process's own memory (the local
   * backend maps the file: its pages are the page cache's). Only for objects never changed in place
   * (index files); the same as `read` where a backend cannot do better.
   */
  view(name: string): Promise<Buffer>;
  /**
   * The object as it is when this call opens it (one open file, one GET), in pieces of at most
   * `pieceBytes`: an object replaced meanwhile is not mixed with its replacement. The pieces must be
   * read to the end, or the iteration ended (`return`), for what it holds open to be released.
   */
  readStream(name: string, pieceBytes: number): Promise<{ size: number; pieces: AsyncIterable<Buffer> }>;
  size(name: string): Promise<number>;
  exists(name: string): Promise<boolean>;
  /** Names of the objects directly under `prefix` (a folder), sorted; empty when the folder does not exist. */
  list(prefix: string): Promise<string[]>;
  /** Names of the folders directly under `prefix` (S3: common prefixes), sorted. */
  listDirs(prefix: string): Promise<string[]>;
  /** Leftovers of interrupted writes anywhere under `prefix`, for GC to remove (none where writes are atomic). */
  listTemporary(prefix: string): Promise<string[]>;
  /**
   * A new object written as its bytes come, whose name is known only when it is whole (a pack: named
   * by the hash of all its bytes), in `folder`. Nothing of it is visible until `finish`; a failed
   * finish, or `abort`, leaves nothing (a crash: what listTemporary finds). Optional: a backend
   * without it is given whole objects through `write`.
   */
  begin?(folder: string): Promise<ObjectStream>;
  /** Removes `name`; removing a missing object is not an error. Durable before the call resolves (unless `o.durable` is false). */
  remove(name: string, o?: WriteOptions): Promise<void>;
  close(): Promise<void>;
}

/**
 * What an object is written from: a buffer, buffers, or buffers that come one at a time (a big
 * object, such as a base point's manifest, that is never whole in memory).
 */
export type ObjectData = Buffer | readonly Buffer[] | Iterable<Buffer> | AsyncIterable<Buffer>;

export interface WriteOptions {
  /** false: skip what makes the change survive a power loss (fsyncs); it stays atomic and visible */
  durable?: boolean;
  /**
   * Called once the data is written (and durable), before it becomes visible: makes it visible by
   * calling `make`, or does not, and nothing is written (a writer that must check, under a lock of its
   * own, that the object may still appear). What it throws, write throws. Without it, `make` is called.
   */
  publish?: (make: () => Promise<void>) => Promise<void>;
}

/** An object being written as its bytes come (Backend.begin). */
export interface ObjectStream {
  /**
   * The next bytes: each call's bytes follow the previous call's, and calls may run at once. The
   * buffer must stay unchanged until the call settles. (The local backend writes a 4 KiB-aligned
   * buffer of whole 4 KiB blocks at an aligned place with O_DIRECT.)
   */
  append(data: Buffer): Promise<void>;
  /** The last bytes, once every append has succeeded; then the object is durable and visible as `name`. */
  finish(name: string, tail: Buffer): Promise<void>;
  /** Drops what was written; nothing becomes visible. */
  abort(): Promise<void>;
}

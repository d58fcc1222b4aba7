// On-disk format constants of datastore format version 1 (described in docs/format.md).
export const FORMAT_NAME = "switchback-datastore";
export const FORMAT_VERSION = 1;
export const BLOCK_SIZE = 4096;

export const PACK_MAGIC = Buffer.from("SBPACK\x00\x01", "latin1");
export const PACK_END_MAGIC = Buffer.from("SBPKEND1", "latin1");
export const INDEX_MAGIC = Buffer.from("SBINDX\x00\x01", "latin1");
export const POINT_MAGIC = Buffer.from("SBPOINT\x01", "latin1");

/** Pack files are closed once they hold this many bytes of frames. */
export const PACK_TARGET_BYTES = 8 * 1024 * 1024;
/** A frame compresses up to this many blocks together (128 KiB): big enough for zstd, small for random reads. */
export const FRAME_MAX_BLOCKS = 32;

export const COMPRESSION_NONE = 0;
export const COMPRESSION_ZSTD = 1;
export type Compression = typeof COMPRESSION_NONE | typeof COMPRESSION_ZSTD;

/** One record per block in a pack trailer and in index files. */
export const ENTRY_BYTES = 48;

export const paths = {
  config: "config.json",
  pack: (id: string) => `packs/${id.slice(0, 2)}/${id}.pack`,
  packDir: (prefix: string) => `packs/${prefix}`,
  index: (id: string) => `index/${id}.idx`,
  pointDir: (item: string) => `points/${item}`,
  point: (item: string, id: string) => `points/${item}/${id}.point`,
  lock: (id: string) => `locks/${id}.json`,
};

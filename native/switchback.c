// Switchback's native addon: BLAKE3 of many 4 KiB blocks in one call, zstd frames into and out of the
// caller's buffers with a context kept per thread, and the alignment of a buffer's memory (for O_DIRECT
// writes of packs).
//
// A 4 KiB block is a BLAKE3 tree of four 1 KiB chunks under two parents and a root. Hashing blocks
// one call each (as the npm BLAKE3 bindings do) leaves the SIMD lanes idle: one block's four chunks
// are too few for them, and each call pays its crossing from JavaScript. Here a whole run of blocks
// goes through BLAKE3's own blake3_hash_many (the official C implementation, vendored in blake3/,
// with its runtime choice of SSE2, SSE4.1, AVX2 or AVX-512): every block's first chunk in one
// batch, then every second chunk, and so on, then the parents, then the roots. The result is
// exactly BLAKE3-256 of each block (test/unit/native-hash.test.ts compares it with another
// implementation).
#define _GNU_SOURCE /* strerrorname_np */
#define NAPI_VERSION 8
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/fiemap.h>
#include <sys/vfs.h>

#include "blake3/blake3.h"
#include "blake3/blake3_impl.h"

#define XXH_INLINE_ALL
#include "xxhash/xxhash.h"
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>

/*
 * zstd: Node.js links its own zstd and exports its symbols (as it does zlib's and OpenSSL's for
 * addons). Declared weak, so that this addon still loads on a Node without them: zstdAvailable() then
 * says false and Switchback keeps to node:zlib. Here a thread keeps one compression and one
 * decompression context for all its frames, and frames go straight into the caller's buffers:
 * node:zlib makes a context, output chunks and a concatenated result per call.
 */
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;
extern ZSTD_CCtx *ZSTD_createCCtx(void) __attribute__((weak));
extern size_t ZSTD_freeCCtx(ZSTD_CCtx *) __attribute__((weak));
extern size_t ZSTD_compressCCtx(ZSTD_CCtx *, void *, size_t, const void *, size_t, int) __attribute__((weak));
extern ZSTD_DCtx *ZSTD_createDCtx(void) __attribute__((weak));
extern size_t ZSTD_freeDCtx(ZSTD_DCtx *) __attribute__((weak));
extern size_t ZSTD_decompressDCtx(ZSTD_DCtx *, void *, size_t, const void *, size_t) __attribute__((weak));
extern unsigned ZSTD_isError(size_t) __attribute__((weak));
extern const char *ZSTD_getErrorName(size_t) __attribute__((weak));
extern int ZSTD_getErrorCode(size_t) __attribute__((weak));
#define ZSTD_ERROR_DST_SIZE_TOO_SMALL 70 /* ZSTD_error_dstSize_tooSmall, stable since zstd 1.3 */

static int zstd_present(void) {
  return ZSTD_createCCtx && ZSTD_freeCCtx && ZSTD_compressCCtx && ZSTD_createDCtx && ZSTD_freeDCtx &&
         ZSTD_decompressDCtx && ZSTD_isError && ZSTD_getErrorName && ZSTD_getErrorCode;
}

/* per Node environment (the main thread and each worker have their own): the zstd contexts */
typedef struct {
  ZSTD_CCtx *cctx;
  ZSTD_DCtx *dctx;
} Contexts;

static void free_contexts(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Contexts *c = data;
  if (c->cctx) ZSTD_freeCCtx(c->cctx);
  if (c->dctx) ZSTD_freeDCtx(c->dctx);
  free(c);
}

static Contexts *contexts(napi_env env) {
  Contexts *c = NULL;
  if (napi_get_instance_data(env, (void **)&c) == napi_ok && c != NULL) return c;
  c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  if (napi_set_instance_data(env, c, free_contexts, NULL) != napi_ok) {
    free(c);
    return NULL;
  }
  return c;
}

#define BLOCK_BYTES 4096
#define CHUNKS_PER_BLOCK (BLOCK_BYTES / BLAKE3_CHUNK_LEN)
#define LANES 64 /* blocks per round: enough to fill every SIMD width BLAKE3 has */

/* BLAKE3-256 of `count` consecutive 4 KiB blocks of `data`, 32 bytes each into `out`. */
static void hash_blocks(const uint8_t *data, size_t count, uint8_t *out) {
  const uint8_t *inputs[2 * LANES];
  uint8_t cv[CHUNKS_PER_BLOCK][LANES * BLAKE3_OUT_LEN];
  uint8_t parents[LANES * 2 * BLAKE3_BLOCK_LEN]; /* per block: cv0|cv1, cv2|cv3 */
  uint8_t roots[LANES * BLAKE3_BLOCK_LEN];       /* per block: parent01|parent23 */
  while (count > 0) {
    size_t n = count < LANES ? count : LANES;
    for (size_t c = 0; c < CHUNKS_PER_BLOCK; c++) {
      for (size_t i = 0; i < n; i++) inputs[i] = data + i * BLOCK_BYTES + c * BLAKE3_CHUNK_LEN;
      blake3_hash_many(inputs, n, BLAKE3_CHUNK_LEN / BLAKE3_BLOCK_LEN, IV, c, false, 0, CHUNK_START,
                       CHUNK_END, cv[c]);
    }
    for (size_t i = 0; i < n; i++) {
      uint8_t *p = parents + i * 2 * BLAKE3_BLOCK_LEN;
      for (size_t c = 0; c < CHUNKS_PER_BLOCK; c++)
        memcpy(p + c * BLAKE3_OUT_LEN, cv[c] + i * BLAKE3_OUT_LEN, BLAKE3_OUT_LEN);
      inputs[2 * i] = p;
      inputs[2 * i + 1] = p + BLAKE3_BLOCK_LEN;
    }
    /* the two parents of block i land side by side at roots + i * 64: the root's input */
    blake3_hash_many(inputs, 2 * n, 1, IV, 0, false, PARENT, 0, 0, roots);
    for (size_t i = 0; i < n; i++) inputs[i] = roots + i * BLAKE3_BLOCK_LEN;
    blake3_hash_many(inputs, n, 1, IV, 0, false, PARENT | ROOT, 0, 0, out);
    data += n * BLOCK_BYTES;
    out += n * BLAKE3_OUT_LEN;
    count -= n;
  }
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* errno's name ("ENOSPC"), the code a JavaScript error carries for it; "EIO" where it has none */
static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
#else
  const char *name = err == ENOSPC ? "ENOSPC" : err == EDQUOT ? "EDQUOT" : err == EFBIG ? "EFBIG" : NULL;
#endif
  return name != NULL ? name : "EIO";
}

/* An Error "<what>: <strerror>" with errno's name as its code, to throw or to reject with. */
static napi_value errno_error(napi_env env, int err, const char *what) {
  char text[300];
  snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  napi_value msg, code, e;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &e);
  return e;
}

static int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return 0;
  *data = p;
  return 1;
}

/* hashBlocks(data: Uint8Array, out: Uint8Array, outAt: number): void */
static napi_value js_hash_blocks(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3)
    return throw_type(env, "hashBlocks takes (data, out, outAt)");
  uint8_t *data, *out;
  size_t len, outLen;
  int64_t at;
  if (!bytes_of(env, argv[0], &data, &len)) return throw_type(env, "hashBlocks: data must be a Uint8Array");
  if (!bytes_of(env, argv[1], &out, &outLen)) return throw_type(env, "hashBlocks: out must be a Uint8Array");
  if (napi_get_value_int64(env, argv[2], &at) != napi_ok || at < 0)
    return throw_type(env, "hashBlocks: outAt must be a non-negative integer");
  if (len % BLOCK_BYTES != 0) return throw_type(env, "hashBlocks: data must be whole 4 KiB blocks");
  size_t count = len / BLOCK_BYTES;
  if ((size_t)at > outLen || outLen - (size_t)at < count * BLAKE3_OUT_LEN)
    return throw_type(env, "hashBlocks: out has no room for the hashes");
  hash_blocks(data, count, out + at);
  return NULL;
}

/*
 * alignOffset(bytes: Uint8Array, to: number): number, how many bytes from the start of `bytes` the
 * first address that is a multiple of `to` (a power of two) lies. Memory for O_DIRECT must be aligned;
 * an ArrayBuffer's memory never moves, so the answer holds for its life.
 */
static napi_value js_align_offset(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2)
    return throw_type(env, "alignOffset takes (bytes, to)");
  uint8_t *data;
  size_t len;
  uint32_t to;
  if (!bytes_of(env, argv[0], &data, &len)) return throw_type(env, "alignOffset: bytes must be a Uint8Array");
  if (napi_get_value_uint32(env, argv[1], &to) != napi_ok || to == 0 || (to & (to - 1)) != 0)
    return throw_type(env, "alignOffset: to must be a power of two");
  uintptr_t p = (uintptr_t)data;
  napi_value v;
  napi_create_uint32(env, (uint32_t)((to - (p & (to - 1))) & (to - 1)), &v);
  return v;
}

/* A zstd call's (src, dst[, level]) and this thread's contexts; 0 (an exception pending) when wrong. */
typedef struct {
  napi_value argv[3];
  uint8_t *src, *dst;
  size_t srcLen, dstLen;
  Contexts *c;
} ZstdCall;

static int zstd_call(napi_env env, napi_callback_info info, size_t argc, const char *name, ZstdCall *z) {
  char msg[96];
  size_t got = argc;
  if (napi_get_cb_info(env, info, &got, z->argv, NULL, NULL) != napi_ok || got != argc) {
    snprintf(msg, sizeof msg, "%s takes (src, dst%s)", name, argc == 3 ? ", level" : "");
    throw_type(env, msg);
    return 0;
  }
  if (!bytes_of(env, z->argv[0], &z->src, &z->srcLen) || !bytes_of(env, z->argv[1], &z->dst, &z->dstLen)) {
    snprintf(msg, sizeof msg, "%s: src and dst must be Uint8Arrays", name);
    throw_type(env, msg);
    return 0;
  }
  if (!zstd_present()) {
    snprintf(msg, sizeof msg, "%s: this Node.js exports no zstd", name);
    throw_type(env, msg);
    return 0;
  }
  z->c = contexts(env);
  if (z->c == NULL) {
    napi_throw_error(env, NULL, "zstd: out of memory");
    return 0;
  }
  return 1;
}

/*
 * zstdCompress(src: Uint8Array, dst: Uint8Array, level: number): number, the size of the zstd frame
 * written at the start of dst, or -1 when it does not fit in dst (the caller then keeps src raw).
 */
static napi_value js_zstd_compress(napi_env env, napi_callback_info info) {
  ZstdCall z;
  int32_t level;
  if (!zstd_call(env, info, 3, "zstdCompress", &z)) return NULL;
  if (napi_get_value_int32(env, z.argv[2], &level) != napi_ok)
    return throw_type(env, "zstdCompress: level must be a number");
  if (z.c->cctx == NULL && (z.c->cctx = ZSTD_createCCtx()) == NULL) {
    napi_throw_error(env, NULL, "zstdCompress: out of memory");
    return NULL;
  }
  size_t r = ZSTD_compressCCtx(z.c->cctx, z.dst, z.dstLen, z.src, z.srcLen, level);
  napi_value v;
  if (ZSTD_isError(r)) {
    if (ZSTD_getErrorCode(r) == ZSTD_ERROR_DST_SIZE_TOO_SMALL) {
      napi_create_int32(env, -1, &v);
      return v;
    }
    napi_throw_error(env, NULL, ZSTD_getErrorName(r));
    return NULL;
  }
  napi_create_double(env, (double)r, &v);
  return v;
}

/*
 * zstdDecompress(src: Uint8Array, dst: Uint8Array): number, the bytes written at the start of dst.
 * Throws with zstd's reason when src is not a zstd frame that fits in dst.
 */
static napi_value js_zstd_decompress(napi_env env, napi_callback_info info) {
  ZstdCall z;
  if (!zstd_call(env, info, 2, "zstdDecompress", &z)) return NULL;
  if (z.c->dctx == NULL && (z.c->dctx = ZSTD_createDCtx()) == NULL) {
    napi_throw_error(env, NULL, "zstdDecompress: out of memory");
    return NULL;
  }
  size_t r = ZSTD_decompressDCtx(z.c->dctx, z.dst, z.dstLen, z.src, z.srcLen);
  if (ZSTD_isError(r)) {
    napi_throw_error(env, NULL, ZSTD_getErrorName(r));
    return NULL;
  }
  napi_value v;
  napi_create_double(env, (double)r, &v);
  return v;
}

/* zstdAvailable(): boolean, whether this Node.js exports the zstd the two functions above use */
static napi_value js_zstd_available(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_get_boolean(env, zstd_present(), &v);
  return v;
}

/*
 * flock(fd: number, exclusive: boolean): boolean, takes a flock(2) lock on an open file without
 * waiting: false when another open file description holds a conflicting one. The kernel drops it
 * when the descriptor is closed or the process dies, so a crashed holder never leaves it behind.
 */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  bool exclusive;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &exclusive) != napi_ok)
    return throw_type(env, "flock takes (fd, exclusive)");
  int r;
  do r = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EWOULDBLOCK) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value v;
  napi_get_boolean(env, r == 0, &v);
  return v;
}

/* The one argument of a call that takes an open file: false (a TypeError pending) when it is not one. */
static int fd_arg(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok) {
    throw_type(env, usage);
    return 0;
  }
  return 1;
}

/*
 * loopBacking(fd: number): [device, inode] | null, the loop driver's own record of the file an open
 * loop device was set up with (LOOP_GET_STATUS64, what `losetup -O BACK-INO,BACK-MAJ:MIN` prints):
 * the backing file's device number (the kernel's encoding) and inode; null when the device has no
 * backing file.
 */
static napi_value js_loop_backing(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "loopBacking takes (fd)", &fd)) return NULL;
  struct loop_info64 li;
  memset(&li, 0, sizeof li);
  napi_value v;
  if (ioctl(fd, LOOP_GET_STATUS64, &li) != 0) {
    if (errno == ENXIO) {
      napi_get_null(env, &v);
      return v;
    }
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value dev, ino;
  napi_create_array_with_length(env, 2, &v);
  napi_create_double(env, (double)li.lo_device, &dev);
  napi_create_double(env, (double)li.lo_inode, &ino);
  napi_set_element(env, v, 0, dev);
  napi_set_element(env, v, 1, ino);
  return v;
}

/*
 * Two passes that read a whole disk (or a range of it) off the JavaScript thread, on libuv's thread
 * pool (one call per shard at a time), through the same reads: the disk's byte 0 is at `base` in
 * `fd`, read in 1 MiB steps, sector-rounded when `direct` (O_DIRECT); bytes past the disk's end read
 * as zeros, as DiskReader.read gives them.
 *
 * unitChanges(fd, base, sizeBytes, sectorSize, direct, fromUnit, toUnit, seed, prevUnit, prevBlock,
 * nextUnit): Promise<{ ranges: Float64Array, bytesRead: number }>, the comparing half of a hashing
 * pass. It hashes each 64 KiB unit of [fromUnit, toUnit) with XXH64(seed), exactly as scanUnits does
 * in JavaScript. A unit whose hash is prevUnit's is unchanged. In any other unit, each 4 KiB block
 * whose XXH64 differs from prevBlock's is changed. It resolves with the changed blocks as [from, to)
 * pairs, ascending, and writes nextUnit for a unit only when its hash differed but none of its
 * blocks did (prevUnit was stale); it writes nothing else: the caller reads the changed blocks again
 * and records their hashes as a journal's pass does.
 *
 * checkFingerprints(fd, base, sizeBytes, sectorSize, direct, fromBlock, toBlock, seed, pointBytes,
 * kind, fp[, first]): Promise<{ bad: Float64Array, bytesRead: number }>, the check after a restore
 * (compare.ts): per block b of [fromBlock, toBlock), kind[b - first] 0 skips it, 1 wants it all zeros,
 * 2 wants XXH64(seed) of it to be fp[b - first] (first, 0 unless given: the block the arrays start at,
 * a window of the disk); bytes past `pointBytes` (the point's disk, on a bigger target) count as zeros. Runs of
 * 256 blocks that are all skipped are not read. It resolves with the blocks that fail, ascending.
 */
#define UNIT_BYTES 65536
#define UNIT_BLOCKS (UNIT_BYTES / BLOCK_BYTES)
#define READ_BYTES (16 * UNIT_BYTES)
#define READ_BLOCKS (READ_BYTES / BLOCK_BYTES)

/*
 * The extent of `fd` that byte `pos` is in: a hole (*hole true: it reads as zeros, nothing need be
 * read) or data, and where it ends (SEEK_DATA / SEEK_HOLE). Where the file system cannot tell, or
 * `pos` is past the file's end (a shrunk disk: the read says so), it is data to the end of time.
 */
static int64_t extent_at(int fd, int64_t pos, bool *hole) {
  *hole = false;
  off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
  if (d < 0) {
    struct stat st;
    if (errno != ENXIO || fstat(fd, &st) != 0 || st.st_size <= pos) return INT64_MAX;
    *hole = true; /* no data from pos to the end of the file */
    return st.st_size;
  }
  if (d > pos) {
    *hole = true;
    return d;
  }
  off_t h = lseek(fd, (off_t)pos, SEEK_HOLE);
  return h > pos ? h : INT64_MAX;
}

enum { UNIT_CHANGES, CHECK_FINGERPRINTS, BLOCK_PASS };

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep[8];
  int what;
  int fd;
  bool direct;
  int64_t base, size, sector, from, to;
  uint64_t seed;
  /* UNIT_CHANGES */
  const uint64_t *prev_unit;
  uint64_t *next_unit;
  int64_t blocks_total;
  /* the block hashes (src/replication/block-hashes.ts): the last point's hash file (prev_fd -1: none)
     with its block section at prev_at, this point's scratch file, and which units it holds */
  int prev_fd, next_fd;
  int64_t prev_at;
  uint8_t *written;
  bool compare;
  /* CHECK_FINGERPRINTS: kind[0] and fp[0] are block kind_first's */
  int64_t point_bytes;
  const uint8_t *kind;
  const uint64_t *fp;
  int64_t kind_first;
  /* BLOCK_PASS: the block ranges to read, and where the candidates go */
  const double *ranges;
  size_t n_ranges;
  double *entries;
  uint8_t *zero, *data, *b3;
  uint8_t *random; /* NULL, or per data block: 1 when block_looks_random */
  int64_t cap, n_entries, n_data;
  /* the result: [from, to) pairs of changed blocks, or failing block numbers */
  double *out;
  size_t n_out, cap_out;
  int64_t bytes_read;
  /* the last extent of the file found (file offsets [ext_from, ext_to), a hole or not) and the bytes
     that were holes, given as zeros without being read (regular files only) */
  int64_t ext_from, ext_to, hole_bytes;
  bool ext_hole;
  const char *code; /* set on failure */
  char message[300];
} DiskPass;

static bool push_out(DiskPass *j, double v) {
  if (j->n_out == j->cap_out) {
    size_t cap = j->cap_out ? 2 * j->cap_out : 2048;
    double *p = realloc(j->out, cap * sizeof *p);
    if (p == NULL) {
      j->code = "OUT_OF_MEMORY";
      snprintf(j->message, sizeof j->message, "no memory for the pass's result");
      return false;
    }
    j->out = p;
    j->cap_out = cap;
  }
  j->out[j->n_out++] = v;
  return true;
}

/* block b changed: extends the last [from, to) pair, or starts one */
static bool add_changed_block(DiskPass *j, int64_t b) {
  if (j->n_out > 0 && j->out[j->n_out - 1] == (double)b) {
    j->out[j->n_out - 1] = (double)(b + 1);
    return true;
  }
  return push_out(j, (double)b) && push_out(j, (double)(b + 1));
}

/* `n` bytes of the disk at `pos` into `buf` (pread until done); false with j->code set */
static bool pread_disk(DiskPass *j, uint8_t *buf, int64_t pos, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    ssize_t r = pread(j->fd, buf + done, (size_t)(n - done), (off_t)(j->base + pos + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      j->code = "DISK_READ_FAILED";
      snprintf(j->message, sizeof j->message, "at byte %lld failed: %s", (long long)(pos + done), strerror(errno));
      return false;
    }
    if (r == 0) {
      j->code = "DISK_SHRUNK";
      snprintf(j->message, sizeof j->message, "ended at byte %lld, expected %lld bytes", (long long)(pos + done),
               (long long)j->size);
      return false;
    }
    done += r;
  }
  return true;
}

/* reads `len` bytes (at most READ_BYTES) of the disk at `pos` into `buf`; false with j->code set */
static bool read_span(DiskPass *j, uint8_t *buf, int64_t pos, int64_t len) {
  int64_t want = j->size - pos < len ? j->size - pos : len;
  if (want < 0) want = 0;
  if (!j->direct) {
    /* a file's holes read as zeros: only its data is read (a sparse image's holes would cost the
       kernel a zeroed page of cache for every 4 KiB read) */
    for (int64_t done = 0; done < want;) {
      int64_t a = j->base + pos + done;
      if (a < j->ext_from || a >= j->ext_to) {
        j->ext_from = a;
        j->ext_to = extent_at(j->fd, a, &j->ext_hole);
      }
      int64_t n = j->ext_to - a < want - done ? j->ext_to - a : want - done;
      if (j->ext_hole) {
        memset(buf + done, 0, (size_t)n);
        j->hole_bytes += n;
      } else if (!pread_disk(j, buf + done, pos + done, n))
        return false;
      done += n;
    }
  } else {
    /* O_DIRECT wants whole sectors; disks are whole sectors long, so rounding up stays inside */
    int64_t ask = (want + j->sector - 1) / j->sector * j->sector;
    if (!pread_disk(j, buf, pos, ask)) return false;
  }
  j->bytes_read += want;
  if (want < len) memset(buf + want, 0, (size_t)(len - want));
  return true;
}

/*
 * `len` bytes at `pos` of `fd`, or false with j->code set (`what` names the file); with `some`, a read
 * may end early at the end of the file, the rest zeroed
 */
static bool hashes_io(DiskPass *j, bool write, int fd, uint8_t *p, size_t len, int64_t pos, const char *what,
                      bool some) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = write ? pwrite(fd, p + done, len - done, (off_t)(pos + done))
                      : pread(fd, p + done, len - done, (off_t)(pos + done));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && some && !write) {
      memset(p + done, 0, len - done);
      return true;
    }
    if (n <= 0) {
      j->code = "HASHES_IO";
      snprintf(j->message, sizeof j->message, "%s %s at byte %lld: %s", write ? "writing" : "reading", what,
               (long long)(pos + done), n < 0 ? strerror(errno) : "the file ends there");
      return false;
    }
    done += (size_t)n;
  }
  return true;
}

#define RECORD_BYTES (UNIT_BLOCKS * 8)
/* units whose records a pass holds at once at most (128 KiB), and how far apart two units it works on
   may be and still be read and written together (8 KiB of records between them: copying them costs
   less than another pread and pwrite) */
#define SPAN_UNITS 1024
#define SPAN_GAP 64

/*
 * The records of units [first, first + count) into recs (block-hashes.ts's readUnitHashes for each):
 * this point's where written, else the last point's, zeros past the disk's end or with no last point.
 * `tmp` holds as much as recs. A unit's record is known when it was written or there is a last point.
 */
static bool load_records(DiskPass *j, int64_t first, int64_t count, uint64_t *recs, uint64_t *tmp) {
  size_t bytes = (size_t)count * RECORD_BYTES;
  memset(recs, 0, bytes);
  if (j->prev_fd >= 0) {
    int64_t from = first * RECORD_BYTES, end = from + (int64_t)bytes;
    if (end > j->blocks_total * 8) end = j->blocks_total * 8;
    if (end > from &&
        !hashes_io(j, false, j->prev_fd, (uint8_t *)recs, (size_t)(end - from), j->prev_at + from,
                   "the last point's block hashes", false))
      return false;
  }
  bool any = false;
  for (int64_t u = first; u < first + count && !any; u++) any = j->written[u] != 0;
  if (!any) return true;
  if (!hashes_io(j, false, j->next_fd, (uint8_t *)tmp, bytes, first * RECORD_BYTES, "this point's block hashes",
                 true))
    return false;
  for (int64_t u = first; u < first + count; u++)
    if (j->written[u]) memcpy(recs + (u - first) * UNIT_BLOCKS, tmp + (u - first) * UNIT_BLOCKS, RECORD_BYTES);
  return true;
}

static void unit_changes(DiskPass *j, uint8_t *buf) {
  /* the records of the units of one read, loaded when the first of them has changed */
  uint64_t recs[READ_BYTES / UNIT_BYTES * UNIT_BLOCKS], tmp[READ_BYTES / UNIT_BYTES * UNIT_BLOCKS];
  /* a read that was all hole is all zeros: its hashes are known without hashing 1 MiB of zeros */
  static const uint8_t zero_unit[UNIT_BYTES];
  const uint64_t zero_uh = XXH64(zero_unit, UNIT_BYTES, j->seed), zero_bh = XXH64(zero_unit, BLOCK_BYTES, j->seed);
  for (int64_t u = j->from; u < j->to; u += READ_BYTES / UNIT_BYTES) {
    int64_t units = j->to - u < READ_BYTES / UNIT_BYTES ? j->to - u : READ_BYTES / UNIT_BYTES;
    int64_t holes = j->hole_bytes, read = j->bytes_read;
    if (!read_span(j, buf, u * UNIT_BYTES, units * UNIT_BYTES)) return;
    bool hole = j->hole_bytes - holes == j->bytes_read - read;
    bool loaded = false;
    for (int64_t k = 0; k < units; k++) {
      const uint8_t *unit = buf + k * UNIT_BYTES;
      uint64_t uh = hole ? zero_uh : XXH64(unit, UNIT_BYTES, j->seed);
      int64_t uu = u + k;
      if (j->prev_unit[uu] == uh) continue;
      if (!loaded && !load_records(j, u, units, recs, tmp)) return;
      loaded = true;
      const uint64_t *rec = recs + k * UNIT_BLOCKS;
      bool known = j->prev_fd >= 0 || j->written[uu];
      bool changed = false;
      for (int64_t q = 0; q < UNIT_BLOCKS; q++) {
        int64_t b = uu * UNIT_BLOCKS + q;
        if (b >= j->blocks_total) break;
        if (known && rec[q] == (hole ? zero_bh : XXH64(unit + q * BLOCK_BYTES, BLOCK_BYTES, j->seed))) continue;
        changed = true;
        if (!add_changed_block(j, b)) return;
      }
      if (!changed) j->next_unit[uu] = uh;
    }
  }
}

/* a span's records into this point's scratch file, then the flags of the units a pass touched in it */
static bool store_span(DiskPass *j, int64_t first, int64_t count, const uint64_t *recs, const int64_t *touched,
                       size_t n_touched) {
  if (!hashes_io(j, true, j->next_fd, (uint8_t *)recs, (size_t)count * RECORD_BYTES, first * RECORD_BYTES,
                 "this point's block hashes", false))
    return false;
  for (size_t t = 0; t < n_touched; t++) j->written[touched[t]] = 1;
  return true;
}

static bool all_zero(const uint8_t *p, size_t n) {
  static const uint8_t zeros[BLOCK_BYTES];
  return memcmp(p, zeros, n) == 0;
}

static void check_fingerprints(DiskPass *j, uint8_t *buf) {
  for (int64_t b0 = j->from; b0 < j->to; b0 += READ_BLOCKS) {
    int64_t n = j->to - b0 < READ_BLOCKS ? j->to - b0 : READ_BLOCKS;
    bool any = false;
    for (int64_t k = 0; k < n && !any; k++) any = j->kind[b0 + k - j->kind_first] != 0;
    if (!any) continue; /* nothing to check here: not even read */
    int64_t pos = b0 * BLOCK_BYTES;
    if (!read_span(j, buf, pos, n * BLOCK_BYTES)) return;
    /* a target bigger than the point's disk: what lies past the disk's end is not the disk's */
    int64_t past = j->point_bytes - pos;
    if (past < n * BLOCK_BYTES) {
      if (past < 0) past = 0;
      memset(buf + past, 0, (size_t)(n * BLOCK_BYTES - past));
    }
    for (int64_t k = 0; k < n; k++) {
      int64_t b = b0 + k, f = b - j->kind_first;
      const uint8_t *block = buf + k * BLOCK_BYTES;
      bool ok = j->kind[f] == 0 || (j->kind[f] == 1 ? all_zero(block, BLOCK_BYTES)
                                                    : XXH64(block, BLOCK_BYTES, j->seed) == j->fp[f]);
      if (!ok && !push_out(j, (double)b)) return;
    }
  }
}

/*
 * A journal's pass (scanBlocks in JavaScript): every block of the ranges is read and hashed with
 * XXH64(seed); the hash goes into its unit's record (read when the pass enters the unit, written
 * back when it leaves it) and the unit becomes unknown (0); with `compare`, a block whose hash is the
 * record's is no candidate. Candidates are listed in `entries` (zero[i] 1 for an all-zero block); the
 * others' bytes are packed into `data` in order and their BLAKE3 into `b3`. No other call running at
 * the same time has a block of the same units (unitAlignedCuts).
 */
/*
 * blockLooksRandom of src/datastore/pack.ts, the same judgement: 8 pieces of 32 bytes, one in each
 * 512-byte eighth at an offset chosen by the first byte of the block's hash; random when the 256
 * bytes hold 140 to 185 distinct values and none 16 times or more.
 */
static bool block_looks_random(const uint8_t *block, uint8_t hash_byte) {
  uint16_t counts[256] = {0};
  size_t phase = (size_t)(hash_byte % 15) * 32;
  for (size_t p = 0; p < 8; p++) {
    const uint8_t *piece = block + p * 512 + phase;
    for (size_t i = 0; i < 32; i++) counts[piece[i]]++;
  }
  unsigned distinct = 0, frequent = 0;
  for (size_t v = 0; v < 256; v++) {
    distinct += (counts[v] + 255u) >> 8;
    frequent |= counts[v] >> 4;
  }
  return frequent == 0 && distinct >= 140 && distinct <= 185;
}

static void block_pass(DiskPass *j, uint8_t *buf) {
  /* the units the ranges touch, ascending; they are worked on in spans of nearby ones, each span's
     records read in one go and written back in one go (units in between that no block touches are
     written back as they were read, and not flagged) */
  int64_t *touched = malloc(sizeof *touched * (size_t)(j->cap > 0 ? j->cap : 1));
  uint64_t *recs = malloc(SPAN_UNITS * RECORD_BYTES), *tmp = malloc(SPAN_UNITS * RECORD_BYTES);
  if (touched == NULL || recs == NULL || tmp == NULL) {
    j->code = "OUT_OF_MEMORY";
    snprintf(j->message, sizeof j->message, "no memory for the pass's block hashes");
    goto out;
  }
  size_t n_touched = 0;
  for (size_t r = 0; r < j->n_ranges; r++) {
    int64_t from = (int64_t)j->ranges[2 * r], to = (int64_t)j->ranges[2 * r + 1];
    for (int64_t u = from / UNIT_BLOCKS; from < to && u <= (to - 1) / UNIT_BLOCKS; u++)
      if (n_touched == 0 || touched[n_touched - 1] != u) touched[n_touched++] = u;
  }
  size_t next = 0;              /* the first touched unit of the next span */
  size_t span_from = 0;         /* the current span's touched units: touched[span_from, next) */
  int64_t first = 0, count = 0; /* the current span: units [first, first + count) */
  for (size_t r = 0; r < j->n_ranges; r++) {
    int64_t from = (int64_t)j->ranges[2 * r], to = (int64_t)j->ranges[2 * r + 1];
    for (int64_t b0 = from; b0 < to; b0 += READ_BLOCKS) {
      int64_t n = to - b0 < READ_BLOCKS ? to - b0 : READ_BLOCKS;
      if (!read_span(j, buf, b0 * BLOCK_BYTES, n * BLOCK_BYTES)) goto out;
      for (int64_t k = 0; k < n; k++) {
        int64_t b = b0 + k;
        const uint8_t *block = buf + k * BLOCK_BYTES;
        uint64_t h = XXH64(block, BLOCK_BYTES, j->seed);
        int64_t u = b / UNIT_BLOCKS;
        if (count == 0 || u >= first + count) {
          if (count > 0 && !store_span(j, first, count, recs, touched + span_from, next - span_from)) goto out;
          span_from = next;
          first = touched[next++];
          while (next < n_touched && touched[next] - touched[next - 1] <= SPAN_GAP &&
                 touched[next] - first < SPAN_UNITS)
            next++;
          count = touched[next - 1] - first + 1;
          if (!load_records(j, first, count, recs, tmp)) goto out;
          for (size_t t = span_from; t < next; t++) j->next_unit[touched[t]] = 0;
        }
        uint64_t *rec = recs + (u - first) * UNIT_BLOCKS;
        bool known = j->prev_fd >= 0 || j->written[u];
        bool same = j->compare && known && rec[b % UNIT_BLOCKS] == h;
        rec[b % UNIT_BLOCKS] = h;
        if (same) continue;
        int64_t e = j->n_entries++;
        j->entries[e] = (double)b;
        j->zero[e] = all_zero(block, BLOCK_BYTES);
        if (!j->zero[e]) memcpy(j->data + (j->n_data++) * BLOCK_BYTES, block, BLOCK_BYTES);
      }
    }
  }
  if (count > 0 && !store_span(j, first, count, recs, touched + span_from, next - span_from)) goto out;
  hash_blocks(j->data, (size_t)j->n_data, j->b3);
  if (j->random != NULL)
    for (int64_t i = 0; i < j->n_data; i++)
      j->random[i] = block_looks_random(j->data + i * BLOCK_BYTES, j->b3[i * BLAKE3_OUT_LEN]);
out:
  free(touched);
  free(recs);
  free(tmp);
}

static void disk_pass_execute(napi_env env, void *data) {
  (void)env;
  DiskPass *j = data;
  uint8_t *buf = NULL;
  if (posix_memalign((void **)&buf, 4096, READ_BYTES) != 0) {
    j->code = "OUT_OF_MEMORY";
    snprintf(j->message, sizeof j->message, "no memory for a 1 MiB read buffer");
    return;
  }
  if (j->what == UNIT_CHANGES) unit_changes(j, buf);
  else if (j->what == CHECK_FINGERPRINTS) check_fingerprints(j, buf);
  else block_pass(j, buf);
  free(buf);
}

static void disk_pass_complete(napi_env env, napi_status status, void *data) {
  DiskPass *j = data;
  napi_value v = NULL;
  if (status != napi_ok && j->code == NULL) {
    j->code = "CANCELLED";
    snprintf(j->message, sizeof j->message, "the pass was cancelled");
  }
  if (j->code != NULL) {
    napi_value msg, code;
    napi_create_string_utf8(env, j->message, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, j->code, NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  } else {
    napi_value read, holes;
    napi_create_double(env, (double)j->bytes_read, &read);
    napi_create_double(env, (double)j->hole_bytes, &holes);
    napi_create_object(env, &v);
    napi_set_named_property(env, v, "bytesRead", read);
    napi_set_named_property(env, v, "holeBytes", holes);
    if (j->what == BLOCK_PASS) {
      napi_value n, d;
      napi_create_double(env, (double)j->n_entries, &n);
      napi_create_double(env, (double)j->n_data, &d);
      napi_set_named_property(env, v, "entries", n);
      napi_set_named_property(env, v, "dataBlocks", d);
    }
    void *bytes = NULL;
    napi_value ab, list;
    if (napi_create_arraybuffer(env, j->n_out * sizeof(double), &bytes, &ab) != napi_ok) j->n_out = 0;
    else if (j->n_out > 0) memcpy(bytes, j->out, j->n_out * sizeof(double));
    napi_create_typedarray(env, napi_float64_array, j->n_out, ab, 0, &list);
    if (j->what != BLOCK_PASS)
      napi_set_named_property(env, v, j->what == UNIT_CHANGES ? "ranges" : "bad", list);
    napi_resolve_deferred(env, j->deferred, v);
  }
  for (int i = 0; i < 8; i++)
    if (j->keep[i]) napi_delete_reference(env, j->keep[i]);
  napi_delete_async_work(env, j->work);
  free(j->out);
  free(j);
}

/* the data of a typed array argument of `type` with at least `need` elements, or NULL */
static void *typed_array(napi_env env, napi_value v, napi_typedarray_type want, int64_t need) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != want ||
      (int64_t)length < need)
    return NULL;
  return data;
}

/* the arguments both passes share: (fd, base, sizeBytes, sectorSize, direct, from, to, seed, ...) */
static DiskPass *disk_pass_args(napi_env env, napi_value *argv) {
  DiskPass *j = calloc(1, sizeof *j);
  if (j == NULL) return NULL;
  int32_t fd = -1;
  bool lossless = false;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &j->base) != napi_ok ||
      napi_get_value_int64(env, argv[2], &j->size) != napi_ok ||
      napi_get_value_int64(env, argv[3], &j->sector) != napi_ok ||
      napi_get_value_bool(env, argv[4], &j->direct) != napi_ok ||
      napi_get_value_int64(env, argv[5], &j->from) != napi_ok ||
      napi_get_value_int64(env, argv[6], &j->to) != napi_ok ||
      napi_get_value_bigint_uint64(env, argv[7], &j->seed, &lossless) != napi_ok || !lossless ||
      j->size <= 0 || j->sector <= 0 || j->sector > 4096 || (j->sector & (j->sector - 1)) != 0 ||
      j->base < 0 || j->from < 0 || j->from > j->to || j->to > INT64_MAX / BLOCK_BYTES - j->base / BLOCK_BYTES) {
    free(j);
    return NULL;
  }
  j->fd = fd;
  return j;
}

/* the block hashes' four arguments (NativeHashes): prevFd, prevAt, nextFd, written; false when bad */
static bool hashes_args(napi_env env, napi_value *argv, DiskPass *j) {
  int32_t prev_fd = -1, next_fd = -1;
  int64_t units_total = (j->size + UNIT_BYTES - 1) / UNIT_BYTES;
  if (napi_get_value_int32(env, argv[0], &prev_fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &j->prev_at) != napi_ok ||
      napi_get_value_int32(env, argv[2], &next_fd) != napi_ok || next_fd < 0 || j->prev_at < 0)
    return false;
  j->prev_fd = prev_fd < 0 ? -1 : prev_fd;
  j->next_fd = next_fd;
  j->written = typed_array(env, argv[3], napi_uint8_array, units_total);
  return j->written != NULL;
}

/* `keep` (up to 8 values, NULL-ended when fewer) stay alive until the pass is over */
static napi_value queue_disk_pass(napi_env env, DiskPass *j, napi_value *keep, size_t n_keep,
                                  const char *what) {
  napi_value promise, name;
  for (size_t i = 0; i < n_keep && i < 8; i++) napi_create_reference(env, keep[i], 1, &j->keep[i]);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, disk_pass_execute, disk_pass_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    if (j->work) napi_delete_async_work(env, j->work);
    for (int i = 0; i < 8; i++)
      if (j->keep[i]) napi_delete_reference(env, j->keep[i]);
    free(j);
    napi_throw_error(env, NULL, "a disk pass could not be queued");
    return NULL;
  }
  return promise;
}

static napi_value js_unit_changes(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value argv[14];
  DiskPass *j = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 14 ||
      (j = disk_pass_args(env, argv)) == NULL)
    return throw_type(env, "unitChanges takes (fd, base, sizeBytes, sectorSize, direct, fromUnit, toUnit, "
                           "seed, prevUnit, nextUnit, prevFd, prevAt, nextFd, written)");
  j->what = UNIT_CHANGES;
  int64_t units_total = (j->size + UNIT_BYTES - 1) / UNIT_BYTES;
  j->blocks_total = (j->size + BLOCK_BYTES - 1) / BLOCK_BYTES;
  j->prev_unit = typed_array(env, argv[8], napi_biguint64_array, units_total);
  j->next_unit = typed_array(env, argv[9], napi_biguint64_array, units_total);
  if (j->to > units_total || j->prev_unit == NULL || j->next_unit == NULL || !hashes_args(env, argv + 10, j)) {
    free(j);
    return throw_type(env, "unitChanges: a unit range outside the disk, or hash arrays too short for it");
  }
  napi_value keep[3] = {argv[8], argv[9], argv[13]};
  return queue_disk_pass(env, j, keep, 3, "switchback.unitChanges");
}

static napi_value js_check_fingerprints(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  DiskPass *j = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || (argc != 11 && argc != 12) ||
      (j = disk_pass_args(env, argv)) == NULL)
    return throw_type(env, "checkFingerprints takes (fd, base, sizeBytes, sectorSize, direct, fromBlock, "
                           "toBlock, seed, pointBytes, kind, fp[, first])");
  j->what = CHECK_FINGERPRINTS;
  if (argc == 12 && (napi_get_value_int64(env, argv[11], &j->kind_first) != napi_ok || j->kind_first < 0 ||
                     j->kind_first > j->from)) {
    free(j);
    return throw_type(env, "checkFingerprints: first must be a block at or before fromBlock");
  }
  j->kind = typed_array(env, argv[9], napi_uint8_array, j->to - j->kind_first);
  j->fp = typed_array(env, argv[10], napi_biguint64_array, j->to - j->kind_first);
  if (napi_get_value_int64(env, argv[8], &j->point_bytes) != napi_ok || j->kind == NULL || j->fp == NULL) {
    free(j);
    return throw_type(env, "checkFingerprints: fingerprint arrays too short for the block range");
  }
  return queue_disk_pass(env, j, argv + 9, 2, "switchback.checkFingerprints");
}

/*
 * blockPass(fd, base, sizeBytes, sectorSize, direct, fromBlock, toBlock, seed, ranges, compare,
 * nextUnit, prevFd, prevAt, nextFd, written, entries, zero, data, b3[, random]): Promise<{ entries,
 * dataBlocks, bytesRead }>, a journal's pass over the block ranges (pairs in a Float64Array, within
 * [fromBlock, toBlock)), compare false to take every block as a candidate; the output arrays hold
 * up to the ranges' blocks (entries, zero: one per block; data: 4 KiB, b3: 32 bytes per block);
 * `random` (optional, one byte per block) gets each data block's judgement by the sample of
 * block_looks_random (1: looks random), for makeFrame.
 */
static napi_value js_block_pass(napi_env env, napi_callback_info info) {
  size_t argc = 20;
  napi_value argv[20];
  DiskPass *j = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || (argc != 19 && argc != 20) ||
      (j = disk_pass_args(env, argv)) == NULL)
    return throw_type(env, "blockPass takes (fd, base, sizeBytes, sectorSize, direct, fromBlock, toBlock, seed, "
                           "ranges, compare, nextUnit, prevFd, prevAt, nextFd, written, entries, zero, data, b3)");
  j->what = BLOCK_PASS;
  int64_t units_total = (j->size + UNIT_BYTES - 1) / UNIT_BYTES;
  int64_t blocks_total = (j->size + BLOCK_BYTES - 1) / BLOCK_BYTES;
  j->blocks_total = blocks_total;
  napi_typedarray_type type;
  size_t len;
  void *ranges = NULL;
  bool ok = napi_get_typedarray_info(env, argv[8], &type, &len, &ranges, NULL, NULL) == napi_ok &&
            type == napi_float64_array && len % 2 == 0;
  int64_t total = 0;
  if (ok) {
    j->ranges = ranges;
    j->n_ranges = len / 2;
    /* ascending and disjoint: the pass works on its units in spans, in order */
    double end = (double)j->from;
    for (size_t r = 0; r < j->n_ranges && ok; r++) {
      double a = j->ranges[2 * r], b = j->ranges[2 * r + 1];
      ok = a >= end && b <= (double)j->to && a <= b && b <= (double)blocks_total && a == (double)(int64_t)a &&
           b == (double)(int64_t)b;
      end = b;
      total += (int64_t)(b - a);
    }
  }
  if (napi_get_value_bool(env, argv[9], &j->compare) != napi_ok) ok = false;
  j->next_unit = typed_array(env, argv[10], napi_biguint64_array, units_total);
  if (!hashes_args(env, argv + 11, j)) ok = false;
  j->entries = typed_array(env, argv[15], napi_float64_array, total);
  j->zero = typed_array(env, argv[16], napi_uint8_array, total);
  size_t data_len = 0, b3_len = 0;
  if (napi_get_buffer_info(env, argv[17], (void **)&j->data, &data_len) != napi_ok ||
      napi_get_buffer_info(env, argv[18], (void **)&j->b3, &b3_len) != napi_ok)
    ok = false;
  if (argc == 20) j->random = typed_array(env, argv[19], napi_uint8_array, total);
  if (!ok || j->next_unit == NULL || j->entries == NULL || j->zero == NULL || (argc == 20 && j->random == NULL) ||
      (int64_t)data_len < total * BLOCK_BYTES || (int64_t)b3_len < total * BLAKE3_OUT_LEN) {
    free(j);
    return throw_type(env, "blockPass: ranges not ascending, outside the disk or the block range, or arrays too "
                           "short for them");
  }
  j->cap = total;
  napi_value keep[8] = {argv[8], argv[10], argv[14], argv[15], argv[16], argv[17], argv[18], argv[argc - 1]};
  return queue_disk_pass(env, j, keep, 8, "switchback.blockPass");
}

/*
 * applyFrames(packPaths, tasks, blocks, slots, hashes, target, sizeBytes, seed, kind, fp[, first]):
 * Promise<number>, a restore's share of frames on libuv's thread pool (restore-worker.ts does the
 * same in a worker thread). `tasks` holds 6 numbers a frame: its pack (an index into packPaths),
 * offset, length, compression (0 raw, 1 zstd), blocks in the frame and blocks to take from it; the
 * frame's takers follow one another in `blocks` (disk block), `slots` (slot in the frame) and
 * `hashes` (32 bytes each: the block's BLAKE3, checked before it is written). Each block taken is
 * fingerprinted (kind[b - first] = 2, fp[b - first] = XXH64(seed); first is 0 unless given: the
 * block the arrays start at, a window of the disk) for the check afterwards; runs of consecutive
 * blocks in consecutive slots are written with one pwrite to `target` (an open descriptor), cut at
 * sizeBytes. Resolves with the blocks written. Rejects with code DATASTORE_CORRUPT and `task`,
 * `slot` and `reason` ("missing", "short", "decompress", "size", "compression", "hash") for the
 * caller to name the pack, or with the errno's name as code for a failed read or write.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep[6];
  char **packs;
  size_t n_packs;
  const double *tasks, *blocks;
  const uint32_t *slots;
  const uint8_t *hashes;
  size_t n_tasks;
  int target;
  int64_t size;
  uint64_t seed;
  uint8_t *kind;
  uint64_t *fp;
  int64_t first;
  int64_t written;
  const char *code, *reason;
  int64_t bad_task, bad_slot;
  char message[300];
} ApplyFrames;

static void apply_fail_errno(ApplyFrames *j, const char *what, int err) {
  j->code = errno_name(err);
  snprintf(j->message, sizeof j->message, "%s: %s", what, strerror(err));
}

static void apply_frames_execute(napi_env env, void *data) {
  (void)env;
  ApplyFrames *j = data;
  ZSTD_DCtx *dctx = NULL;
  uint8_t *payload = NULL, *rawbuf = NULL, *got = NULL;
  size_t payload_cap = 0, raw_cap = 0, got_cap = 0;
  int pack_fd = -1;
  int64_t open_pack = -1;
  size_t at = 0; /* where the current task's takers start in blocks/slots/hashes */
  for (size_t t = 0; t < j->n_tasks; t++) {
    const double *task = j->tasks + 6 * t;
    int64_t pack = (int64_t)task[0], offset = (int64_t)task[1], length = (int64_t)task[2];
    int compression = (int)task[3];
    int64_t frame_blocks = (int64_t)task[4], count = (int64_t)task[5];
    int64_t expected = frame_blocks * BLOCK_BYTES;
    j->bad_task = (int64_t)t;
    if (pack != open_pack) {
      if (pack_fd >= 0) close(pack_fd);
      pack_fd = open(j->packs[pack], O_RDONLY | O_CLOEXEC);
      open_pack = pack;
      if (pack_fd < 0) {
        if (errno == ENOENT) {
          j->code = "DATASTORE_CORRUPT";
          j->reason = "missing";
        } else apply_fail_errno(j, j->packs[pack], errno);
        goto out;
      }
    }
    if ((size_t)length > payload_cap) {
      free(payload);
      payload_cap = (size_t)length;
      payload = malloc(payload_cap);
    }
    if ((size_t)expected > raw_cap) {
      free(rawbuf);
      raw_cap = (size_t)expected;
      rawbuf = malloc(raw_cap);
    }
    if ((size_t)frame_blocks * BLAKE3_OUT_LEN > got_cap) {
      free(got);
      got_cap = (size_t)frame_blocks * BLAKE3_OUT_LEN;
      got = malloc(got_cap);
    }
    if ((length > 0 && payload == NULL) || (expected > 0 && rawbuf == NULL) || got == NULL) {
      j->code = "OUT_OF_MEMORY";
      snprintf(j->message, sizeof j->message, "no memory for a frame of %lld bytes", (long long)expected);
      goto out;
    }
    int64_t done = 0;
    while (done < length) {
      ssize_t n = pread(pack_fd, payload + done, (size_t)(length - done), (off_t)(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        apply_fail_errno(j, j->packs[pack], errno);
        goto out;
      }
      if (n == 0) break;
      done += n;
    }
    if (done < length) {
      j->code = "DATASTORE_CORRUPT";
      j->reason = "short";
      snprintf(j->message, sizeof j->message, "%lld", (long long)done);
      goto out;
    }
    const uint8_t *raw;
    if (compression == 0) {
      if (length != expected) {
        j->code = "DATASTORE_CORRUPT";
        j->reason = "size";
        snprintf(j->message, sizeof j->message, "%lld", (long long)length);
        goto out;
      }
      raw = payload;
    } else if (compression == 1) {
      if (dctx == NULL) dctx = ZSTD_createDCtx();
      if (dctx == NULL) {
        j->code = "OUT_OF_MEMORY";
        snprintf(j->message, sizeof j->message, "no memory for a zstd context");
        goto out;
      }
      size_t r = ZSTD_decompressDCtx(dctx, rawbuf, (size_t)expected, payload, (size_t)length);
      if (ZSTD_isError(r)) {
        j->code = "DATASTORE_CORRUPT";
        j->reason = "decompress";
        snprintf(j->message, sizeof j->message, "%s", ZSTD_getErrorName(r));
        goto out;
      }
      if ((int64_t)r != expected) {
        j->code = "DATASTORE_CORRUPT";
        j->reason = "size";
        snprintf(j->message, sizeof j->message, "%lld", (long long)r);
        goto out;
      }
      raw = rawbuf;
    } else {
      j->code = "DATASTORE_CORRUPT";
      j->reason = "compression";
      snprintf(j->message, sizeof j->message, "%d", compression);
      goto out;
    }
    /* every slot hashed in one call when most are taken, else the taken ones one by one */
    bool all = count * 2 >= frame_blocks;
    if (all) hash_blocks(raw, (size_t)frame_blocks, got);
    for (int64_t q = 0; q < count; q++) {
      uint32_t slot = j->slots[at + q];
      const uint8_t *want = j->hashes + (at + q) * BLAKE3_OUT_LEN;
      if (slot >= frame_blocks) {
        j->code = "DATASTORE_CORRUPT";
        j->reason = "hash";
        j->bad_slot = slot;
        goto out;
      }
      uint8_t one[BLAKE3_OUT_LEN];
      const uint8_t *h = all ? got + (size_t)slot * BLAKE3_OUT_LEN : one;
      if (!all) hash_blocks(raw + (size_t)slot * BLOCK_BYTES, 1, one);
      if (memcmp(h, want, BLAKE3_OUT_LEN) != 0) {
        j->code = "DATASTORE_CORRUPT";
        j->reason = "hash";
        j->bad_slot = slot;
        goto out;
      }
      int64_t b = (int64_t)j->blocks[at + q] - j->first;
      j->kind[b] = 2;
      j->fp[b] = XXH64(raw + (size_t)slot * BLOCK_BYTES, BLOCK_BYTES, j->seed);
    }
    for (int64_t k = 0; k < count;) {
      int64_t m = k + 1;
      while (m < count && j->blocks[at + m] == j->blocks[at + m - 1] + 1 && j->slots[at + m] == j->slots[at + m - 1] + 1)
        m++;
      int64_t pos = (int64_t)j->blocks[at + k] * BLOCK_BYTES;
      int64_t len = (m - k) * BLOCK_BYTES;
      if (len > j->size - pos) len = j->size - pos;
      const uint8_t *src = raw + (size_t)j->slots[at + k] * BLOCK_BYTES;
      for (int64_t w = 0; w < len;) {
        ssize_t n = pwrite(j->target, src + w, (size_t)(len - w), (off_t)(pos + w));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          apply_fail_errno(j, "writing the restore target", n < 0 ? errno : EIO);
          goto out;
        }
        w += n;
      }
      j->written += m - k;
      k = m;
    }
    at += (size_t)count;
  }
out:
  if (pack_fd >= 0) close(pack_fd);
  if (dctx != NULL) ZSTD_freeDCtx(dctx);
  free(payload);
  free(rawbuf);
  free(got);
}

static void apply_frames_complete(napi_env env, napi_status status, void *data) {
  ApplyFrames *j = data;
  napi_value v;
  if (status != napi_ok && j->code == NULL) {
    j->code = "CANCELLED";
    snprintf(j->message, sizeof j->message, "the restore was cancelled");
  }
  if (j->code != NULL) {
    napi_value msg, code, task, slot, reason;
    napi_create_string_utf8(env, j->message, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, j->code, NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &v);
    napi_create_double(env, (double)j->bad_task, &task);
    napi_create_double(env, (double)j->bad_slot, &slot);
    napi_set_named_property(env, v, "task", task);
    napi_set_named_property(env, v, "slot", slot);
    if (j->reason != NULL) {
      napi_create_string_utf8(env, j->reason, NAPI_AUTO_LENGTH, &reason);
      napi_set_named_property(env, v, "reason", reason);
    }
    napi_reject_deferred(env, j->deferred, v);
  } else {
    napi_create_double(env, (double)j->written, &v);
    napi_resolve_deferred(env, j->deferred, v);
  }
  for (int i = 0; i < 6; i++)
    if (j->keep[i]) napi_delete_reference(env, j->keep[i]);
  for (size_t i = 0; i < j->n_packs; i++) free(j->packs[i]);
  free(j->packs);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value js_apply_frames(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  if (!zstd_present()) return throw_type(env, "applyFrames needs the zstd that Node.js exports");
  ApplyFrames *j = calloc(1, sizeof *j);
  if (j == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  uint32_t n_packs = 0;
  int32_t target = -1;
  bool lossless = false, ok = true;
  void *tasks = NULL, *blocks = NULL, *slots = NULL, *hashes = NULL, *kind = NULL, *fp = NULL;
  size_t n_tasks = 0, n_blocks = 0, n_slots = 0, n_hashes = 0, n_kind = 0, n_fp = 0;
  napi_typedarray_type type;
  ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && (argc == 10 || argc == 11) &&
       napi_get_array_length(env, argv[0], &n_packs) == napi_ok &&
       napi_get_typedarray_info(env, argv[1], &type, &n_tasks, &tasks, NULL, NULL) == napi_ok &&
       type == napi_float64_array && n_tasks % 6 == 0 &&
       napi_get_typedarray_info(env, argv[2], &type, &n_blocks, &blocks, NULL, NULL) == napi_ok &&
       type == napi_float64_array &&
       napi_get_typedarray_info(env, argv[3], &type, &n_slots, &slots, NULL, NULL) == napi_ok &&
       type == napi_uint32_array && n_slots == n_blocks &&
       napi_get_buffer_info(env, argv[4], &hashes, &n_hashes) == napi_ok &&
       n_hashes >= n_blocks * BLAKE3_OUT_LEN && napi_get_value_int32(env, argv[5], &target) == napi_ok &&
       napi_get_value_int64(env, argv[6], &j->size) == napi_ok &&
       napi_get_value_bigint_uint64(env, argv[7], &j->seed, &lossless) == napi_ok && lossless &&
       napi_get_typedarray_info(env, argv[8], &type, &n_kind, &kind, NULL, NULL) == napi_ok &&
       type == napi_uint8_array &&
       napi_get_typedarray_info(env, argv[9], &type, &n_fp, &fp, NULL, NULL) == napi_ok &&
       type == napi_biguint64_array && n_fp == n_kind &&
       (argc == 10 || (napi_get_value_int64(env, argv[10], &j->first) == napi_ok && j->first >= 0));
  /* every task within its arrays, every block within the fingerprints, every pack named */
  size_t total = 0;
  for (size_t t = 0; ok && t < n_tasks / 6; t++) {
    const double *task = (const double *)tasks + 6 * t;
    ok = task[0] >= 0 && task[0] < n_packs && task[4] >= 1 && task[5] >= 0 && task[2] >= 0 && task[1] >= 0;
    total += (size_t)task[5];
  }
  ok = ok && total == n_blocks;
  for (size_t i = 0; ok && i < n_blocks; i++) {
    double b = ((const double *)blocks)[i];
    ok = b >= (double)j->first && b - (double)j->first < (double)n_kind && b * BLOCK_BYTES < (double)j->size;
  }
  if (ok) {
    j->packs = calloc(n_packs ? n_packs : 1, sizeof *j->packs);
    ok = j->packs != NULL;
    for (uint32_t i = 0; ok && i < n_packs; i++) {
      napi_value p;
      size_t len = 0;
      ok = napi_get_element(env, argv[0], i, &p) == napi_ok &&
           napi_get_value_string_utf8(env, p, NULL, 0, &len) == napi_ok;
      if (ok) {
        j->packs[i] = malloc(len + 1);
        ok = j->packs[i] != NULL && napi_get_value_string_utf8(env, p, j->packs[i], len + 1, &len) == napi_ok;
      }
      j->n_packs = i + 1;
    }
  }
  if (!ok) {
    for (size_t i = 0; i < j->n_packs; i++) free(j->packs[i]);
    free(j->packs);
    free(j);
    return throw_type(env, "applyFrames takes (packPaths, tasks, blocks, slots, hashes, target, sizeBytes, seed, "
                           "kind, fp[, first]), consistent with one another");
  }
  j->n_tasks = n_tasks / 6;
  j->tasks = tasks;
  j->blocks = blocks;
  j->slots = slots;
  j->hashes = hashes;
  j->target = target;
  j->kind = kind;
  j->fp = fp;
  napi_value promise, name;
  int refs[6] = {1, 2, 3, 4, 8, 9};
  for (int i = 0; i < 6; i++) napi_create_reference(env, argv[refs[i]], 1, &j->keep[i]);
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "switchback.applyFrames", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, apply_frames_execute, apply_frames_complete, j, &j->work) !=
          napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    if (j->work) napi_delete_async_work(env, j->work);
    for (int i = 0; i < 6; i++)
      if (j->keep[i]) napi_delete_reference(env, j->keep[i]);
    for (size_t i = 0; i < j->n_packs; i++) free(j->packs[i]);
    free(j->packs);
    free(j);
    napi_throw_error(env, NULL, "applyFrames could not be queued");
    return NULL;
  }
  return promise;
}

/*
 * extentAt(fd, pos): [hole, end], the extent of the open file that byte `pos` is in (extent_at): a
 * hole or data, and where it ends (Infinity: data as far as anyone can tell).
 */
static napi_value js_extent_at(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  int64_t pos;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &pos) != napi_ok ||
      pos < 0)
    return throw_type(env, "extentAt takes (fd, pos)");
  bool hole;
  int64_t end = extent_at(fd, pos, &hole);
  napi_value out, h, e;
  napi_create_array_with_length(env, 2, &out);
  napi_get_boolean(env, hole, &h);
  napi_create_double(env, end == INT64_MAX ? INFINITY : (double)end, &e);
  napi_set_element(env, out, 0, h);
  napi_set_element(env, out, 1, e);
  return out;
}

/*
 * Queues `data`'s work on libuv's thread pool and returns the promise its `done` settles; NULL (with
 * an exception pending) when it could not be queued, and the caller frees `data`.
 */
static napi_value queue_work(napi_env env, const char *name, napi_async_execute_callback run,
                             napi_async_complete_callback done, void *data, napi_async_work *work,
                             napi_deferred *deferred) {
  napi_value promise, label;
  if (napi_create_promise(env, deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &label) != napi_ok ||
      napi_create_async_work(env, NULL, label, run, done, data, work) != napi_ok) {
    napi_throw_error(env, NULL, "the work could not be queued");
    return NULL;
  }
  if (napi_queue_async_work(env, *work) != napi_ok) {
    napi_delete_async_work(env, *work);
    napi_throw_error(env, NULL, "the work could not be queued");
    return NULL;
  }
  return promise;
}

/*
 * zeroOut(fd, offset, length): Promise, the byte range of an open block device made to read as zeros by
 * the device itself (BLKZEROOUT: a thin volume, an SSD or a loop device's file zeroes it without the
 * zeros crossing the bus; elsewhere the kernel writes them). On libuv's thread pool: it may take as
 * long as writing them. Rejects with the errno's name as its code (ENOTTY: not a block device).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  uint64_t range[2];
  int err;
} ZeroOut;

static void zero_out_execute(napi_env env, void *data) {
  (void)env;
  ZeroOut *z = data;
  z->err = ioctl(z->fd, BLKZEROOUT, z->range) == 0 ? 0 : errno;
}

static void zero_out_complete(napi_env env, napi_status status, void *data) {
  ZeroOut *z = data;
  if (status != napi_ok && z->err == 0) z->err = ECANCELED;
  napi_value v;
  if (z->err == 0) {
    napi_get_undefined(env, &v);
    napi_resolve_deferred(env, z->deferred, v);
  } else {
    char what[100];
    snprintf(what, sizeof what, "BLKZEROOUT of %llu bytes at %llu", (unsigned long long)z->range[1],
             (unsigned long long)z->range[0]);
    napi_reject_deferred(env, z->deferred, errno_error(env, z->err, what));
  }
  napi_delete_async_work(env, z->work);
  free(z);
}

static napi_value js_zero_out(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset, length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || offset < 0 || length <= 0)
    return throw_type(env, "zeroOut takes (fd, offset, length)");
  ZeroOut *z = calloc(1, sizeof *z);
  if (z == NULL) return throw_type(env, "zeroOut: out of memory");
  z->fd = fd;
  z->range[0] = (uint64_t)offset;
  z->range[1] = (uint64_t)length;
  napi_value promise = queue_work(env, "switchback:zeroOut", zero_out_execute, zero_out_complete, z, &z->work,
                                  &z->deferred);
  if (promise == NULL) free(z);
  return promise;
}

/*
 * mapFile(fd: number, length: number): Promise<Buffer>, a read-only view of the open file's first
 * `length` bytes (mmap, PROT_READ, MAP_SHARED), unmapped when the Buffer's memory is collected. Its
 * pages are the page cache's: the kernel may drop them again under memory pressure, so a big
 * datastore's block index costs no memory of the process's own. The mapping is populated (its page
 * tables filled in one call, not a fault per page: the index is built by reading every record, and a
 * fault costs microseconds in a virtual machine) on libuv's thread pool, beside the caller's work. The
 * descriptor must stay open until it settles. Only for files never changed in place (index files):
 * a file cut short under the mapping, or a page that cannot be read, ends the process (SIGBUS).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd; /* -1: fresh memory (populatedPages) */
  size_t length;
  void *p;
  int err;
  const char *what; /* the call, for its messages */
} MapFile;

static void unmap_file(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static void map_file_execute(napi_env env, void *data) {
  (void)env;
  MapFile *m = data;
  m->p = mmap(NULL, m->length, PROT_READ, MAP_SHARED | MAP_POPULATE, m->fd, 0);
  m->err = m->p == MAP_FAILED ? errno : 0;
}

static void map_file_complete(napi_env env, napi_status status, void *data) {
  MapFile *m = data;
  napi_value v = NULL, msg;
  const char *why = NULL;
  char cancelled[64];
  snprintf(cancelled, sizeof cancelled, "%s was cancelled", m->what);
  if (status != napi_ok) why = cancelled;
  else if (m->err != 0) why = strerror(m->err);
  else if (napi_create_external_buffer(env, m->length, m->p, unmap_file, (void *)(uintptr_t)m->length, &v) !=
           napi_ok) {
    munmap(m->p, m->length);
    why = "this Node.js does not take external buffers";
  }
  if (why == NULL) napi_resolve_deferred(env, m->deferred, v);
  else {
    napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, m->deferred, v);
  }
  napi_delete_async_work(env, m->work);
  free(m);
}

static napi_value js_map_file(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  int64_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &length) != napi_ok ||
      length <= 0)
    return throw_type(env, "mapFile takes (fd, length), length above 0");
  MapFile *m = calloc(1, sizeof *m);
  if (m == NULL) return throw_type(env, "mapFile: out of memory");
  m->what = "mapFile";
  m->fd = fd;
  m->length = (size_t)length;
  napi_value promise =
      queue_work(env, "switchback:mapFile", map_file_execute, map_file_complete, m, &m->work, &m->deferred);
  if (promise == NULL) free(m);
  return promise;
}

/*
 * bucketTable(runs, shift, dir, ent): Promise<number>, the tables of a BucketTable
 * (src/datastore/prefix-tables.ts) built on libuv's thread pool from the block index's records:
 * `runs` are buffers of whole 48-byte records, in ref order (refs count on from one run to the next).
 * Each record's prefix is its hash's first 4 bytes (little-endian); bucket b is prefix >> shift.
 * `dir` (2^(32 - shift) + 2 zeros) gets bucket b's first entry at dir[b], its end at dir[b + 1];
 * `ent` (2 u32 per record) gets (prefix, ref) pairs bucket by bucket, in ref order within a bucket.
 * Resolves with -1, or with the first run that holds a record whose compression byte (44) is
 * neither 0 nor 1 (the caller names it; nothing of the tables is to be used then).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep;
  size_t n_runs;
  const uint8_t **bufs;
  size_t *counts;
  uint32_t shift;
  uint32_t *dir, *ent;
  size_t dir_len;
  int64_t bad_run;
} BucketBuild;

static void bucket_build_execute(napi_env env, void *data) {
  (void)env;
  BucketBuild *j = data;
  uint32_t *dir = j->dir, *ent = j->ent;
  const uint32_t shift = j->shift;
  j->bad_run = -1;
  for (size_t r = 0; r < j->n_runs; r++) {
    const uint8_t *b = j->bufs[r];
    uint8_t bad = 0;
    for (size_t i = 0; i < j->counts[r]; i++, b += 48) {
      uint32_t p;
      memcpy(&p, b, 4);
      dir[(p >> shift) + 2]++;
      bad |= b[44] & 0xfe;
    }
    if (bad != 0 && j->bad_run < 0) j->bad_run = (int64_t)r;
  }
  for (size_t k = 2; k < j->dir_len; k++) dir[k] += dir[k - 1];
  uint32_t ref = 0;
  for (size_t r = 0; r < j->n_runs; r++) {
    const uint8_t *b = j->bufs[r];
    for (size_t i = 0; i < j->counts[r]; i++, b += 48, ref++) {
      uint32_t p;
      memcpy(&p, b, 4);
      uint32_t at = dir[(p >> shift) + 1]++;
      ent[2 * (size_t)at] = p;
      ent[2 * (size_t)at + 1] = ref;
    }
  }
}

static void bucket_build_complete(napi_env env, napi_status status, void *data) {
  BucketBuild *j = data;
  napi_value v;
  if (status != napi_ok) {
    napi_value msg;
    napi_create_string_utf8(env, "bucketTable was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  } else {
    napi_create_int64(env, j->bad_run, &v);
    napi_resolve_deferred(env, j->deferred, v);
  }
  napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j->bufs);
  free(j->counts);
  free(j);
}

static napi_value js_bucket_table(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  uint32_t shift = 0, n_runs = 0;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 ||
      napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &n_runs) != napi_ok || napi_get_value_uint32(env, argv[1], &shift) != napi_ok ||
      shift < 2 || shift > 31)
    return throw_type(env, "bucketTable takes (runs, shift, dir, ent)");
  BucketBuild *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_type(env, "bucketTable: out of memory");
  j->bufs = calloc(n_runs ? n_runs : 1, sizeof *j->bufs);
  j->counts = calloc(n_runs ? n_runs : 1, sizeof *j->counts);
  bool ok = j->bufs != NULL && j->counts != NULL;
  size_t total = 0;
  for (uint32_t r = 0; r < n_runs && ok; r++) {
    napi_value run;
    uint8_t *p = NULL;
    size_t len = 0;
    ok = napi_get_element(env, argv[0], r, &run) == napi_ok && bytes_of(env, run, &p, &len) == 1 && len % 48 == 0;
    j->bufs[r] = p;
    j->counts[r] = len / 48;
    total += len / 48;
  }
  napi_typedarray_type type;
  size_t dir_len = 0, ent_len = 0;
  void *dir = NULL, *ent = NULL;
  ok = ok && total < UINT32_MAX &&
       napi_get_typedarray_info(env, argv[2], &type, &dir_len, &dir, NULL, NULL) == napi_ok &&
       type == napi_uint32_array && dir_len == ((size_t)1 << (32 - shift)) + 2 &&
       napi_get_typedarray_info(env, argv[3], &type, &ent_len, &ent, NULL, NULL) == napi_ok &&
       type == napi_uint32_array && ent_len == 2 * total;
  if (!ok) {
    free(j->bufs);
    free(j->counts);
    free(j);
    return throw_type(env, "bucketTable: runs must be buffers of whole 48-byte records, dir 2^(32 - shift) + 2 "
                           "u32s and ent two u32s a record");
  }
  memset(dir, 0, dir_len * sizeof(uint32_t));
  j->n_runs = n_runs;
  j->shift = shift;
  j->dir = dir;
  j->ent = ent;
  j->dir_len = dir_len;
  /* the runs, dir and ent stay alive while the work runs: an array holding them, referenced */
  napi_value hold;
  if (napi_create_array_with_length(env, 3, &hold) != napi_ok || napi_set_element(env, hold, 0, argv[0]) != napi_ok ||
      napi_set_element(env, hold, 1, argv[2]) != napi_ok || napi_set_element(env, hold, 2, argv[3]) != napi_ok ||
      napi_create_reference(env, hold, 1, &j->keep) != napi_ok) {
    free(j->bufs);
    free(j->counts);
    free(j);
    return throw_type(env, "bucketTable: the work could not be queued");
  }
  napi_value promise = queue_work(env, "switchback:bucketTable", bucket_build_execute, bucket_build_complete, j,
                                  &j->work, &j->deferred);
  if (promise == NULL) {
    napi_delete_reference(env, j->keep);
    free(j->bufs);
    free(j->counts);
    free(j);
  }
  return promise;
}

/*
 * mergePairs(pairs: Float64Array, granule, count): Float64Array, toRanges of src/replication/ranges.ts:
 * each [from, to) pair of `pairs` (bytes, say) as the [floor(from / granule), min(count, ceil(to /
 * granule))) pieces it touches, empty ones dropped, sorted and merged where they overlap or touch;
 * flat [from, to) pairs again. A write journal's drain hands ~10,000 pairs a point (a cold process's
 * JavaScript took 10-15 ms for them, this ~1 ms).
 */
typedef struct {
  int64_t a, b;
} Piece;

static int piece_order(const void *x, const void *y) {
  const Piece *p = x, *q = y;
  return p->a < q->a ? -1 : p->a > q->a ? 1 : 0;
}

static napi_value js_merge_pairs(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  double granule = 0, count = 0;
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_typedarray_info(env, argv[0], &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || len % 2 != 0 || napi_get_value_double(env, argv[1], &granule) != napi_ok ||
      napi_get_value_double(env, argv[2], &count) != napi_ok || !(granule >= 1) || granule != floor(granule) ||
      !(count >= 0) || (count != INFINITY && count != floor(count)))
    return throw_type(env, "mergePairs takes (pairs: Float64Array of [from, to) pairs, whole granule >= 1, whole "
                           "count >= 0 or Infinity)");
  const double *v = data;
  size_t n = len / 2, m = 0;
  Piece *p = malloc((n ? n : 1) * sizeof *p);
  if (p == NULL) return throw_type(env, "mergePairs: out of memory");
  const double limit = 9007199254740992.0; /* 2^53: every number below is exact */
  for (size_t i = 0; i < n; i++) {
    double from = v[2 * i], to = v[2 * i + 1];
    if (!(from >= 0 && to < limit && from == floor(from) && to == floor(to))) {
      free(p);
      return throw_type(env, "mergePairs: a pair that is not two whole numbers from 0 to 2^53");
    }
    double a = floor(from / granule), b = ceil(to / granule);
    if (b > count) b = count;
    if (b <= a) continue;
    p[m].a = (int64_t)a;
    p[m].b = (int64_t)b;
    m++;
  }
  qsort(p, m, sizeof *p, piece_order);
  size_t k = 0;
  for (size_t i = 0; i < m; i++) {
    if (k > 0 && p[i].a <= p[k - 1].b) {
      if (p[i].b > p[k - 1].b) p[k - 1].b = p[i].b;
    } else p[k++] = p[i];
  }
  napi_value buf, out;
  double *o = NULL;
  if (napi_create_arraybuffer(env, 2 * k * sizeof(double), (void **)&o, &buf) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, 2 * k, buf, 0, &out) != napi_ok) {
    free(p);
    return throw_type(env, "mergePairs: out of memory");
  }
  for (size_t i = 0; i < k; i++) {
    o[2 * i] = (double)p[i].a;
    o[2 * i + 1] = (double)p[i].b;
  }
  free(p);
  return out;
}

/*
 * blake3OnPool(data): Promise<Buffer>, BLAKE3-256 of `data` on libuv's thread pool: a pack's id,
 * hashed beside the JavaScript thread's work instead of on it (~8 ms of a point's 21 MB).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref keep;
  const uint8_t *data;
  size_t len;
  uint8_t out[BLAKE3_OUT_LEN];
} HashJob;

static void hash_job_execute(napi_env env, void *data) {
  (void)env;
  HashJob *j = data;
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, j->data, j->len);
  blake3_hasher_finalize(&h, j->out, BLAKE3_OUT_LEN);
}

static void hash_job_complete(napi_env env, napi_status status, void *data) {
  HashJob *j = data;
  napi_value v;
  void *copy = NULL;
  if (status == napi_ok && napi_create_buffer_copy(env, BLAKE3_OUT_LEN, j->out, &copy, &v) == napi_ok)
    napi_resolve_deferred(env, j->deferred, v);
  else {
    napi_value msg;
    napi_create_string_utf8(env, "blake3OnPool was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  }
  napi_delete_reference(env, j->keep);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value js_blake3_on_pool(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint8_t *p = NULL;
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      bytes_of(env, argv[0], &p, &len) != 1)
    return throw_type(env, "blake3OnPool takes (data: Uint8Array)");
  HashJob *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_type(env, "blake3OnPool: out of memory");
  j->data = p;
  j->len = len;
  if (napi_create_reference(env, argv[0], 1, &j->keep) != napi_ok) {
    free(j);
    return throw_type(env, "blake3OnPool: the work could not be queued");
  }
  napi_value promise =
      queue_work(env, "switchback:blake3OnPool", hash_job_execute, hash_job_complete, j, &j->work, &j->deferred);
  if (promise == NULL) {
    napi_delete_reference(env, j->keep);
    free(j);
  }
  return promise;
}

/*
 * traceDrain(fds, pageBytes, dataOffset, layouts, windows, disks): { pairs, problem, passthrough },
 * RawTraceReader.drain and the write tracker's #event of src/replication in one call (a point's
 * ~10,000 events took a cold process 6-10 ms of JavaScript and as many small objects for the
 * collector). Every page the per-CPU raw pipes `fds` (O_NONBLOCK) hold is read; pages are parsed as
 * trace-raw.ts parses them (`layouts`: six numbers an event type: id, and the offsets of dev, sector
 * and nr_sector, and of rwbs and its size) until one is not as expected (`problem`, the same words;
 * the rest is still read, not parsed). An event with sectors lands, through each `windows` entry of its
 * device (five numbers: dev, disk, shiftSectors, addBytes, the disk's limitBytes), on
 * [max(0, (sector + shift) * 512 + add), min(limit, (sector + shift + nr) * 512 + add)) of that
 * disk: `pairs[disk]` gets those byte ranges, in event order. An event without sectors whose rwbs
 * holds "N" on a traced device is a passthrough command: `passthrough` is the first one's rwbs.
 */
typedef struct {
  double *v;
  size_t n, cap;
} Pairs;

typedef struct {
  const double *layouts;
  size_t n_layouts;
  const double *windows;
  size_t n_windows;
  Pairs *pairs;
  char problem[200];
  char passthrough[64];
  bool oom;
} TraceDrain;

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void trace_event(TraceDrain *t, uint32_t dev, double sector, uint32_t nr, const uint8_t *rwbs, size_t rwbs_size) {
  if (nr == 0) {
    if (t->passthrough[0] != 0) return;
    size_t len = strnlen((const char *)rwbs, rwbs_size);
    if (memchr(rwbs, 'N', len) == NULL) return;
    for (size_t w = 0; w < t->n_windows; w++) {
      if (t->windows[5 * w] != (double)dev) continue;
      if (len >= sizeof t->passthrough) len = sizeof t->passthrough - 1;
      memcpy(t->passthrough, rwbs, len);
      t->passthrough[len] = 0;
      return;
    }
    return;
  }
  for (size_t w = 0; w < t->n_windows; w++) {
    const double *win = t->windows + 5 * w;
    if (win[0] != (double)dev) continue;
    double from = (sector + win[2]) * 512 + win[3], to = (sector + win[2] + nr) * 512 + win[3];
    if (from < 0) from = 0;
    if (to > win[4]) to = win[4];
    if (!(to > from)) continue;
    Pairs *p = &t->pairs[(size_t)win[1]];
    if (p->n + 2 > p->cap) {
      size_t cap = p->cap ? 2 * p->cap : 4096;
      double *v = realloc(p->v, cap * sizeof *v);
      if (v == NULL) {
        t->oom = true;
        return;
      }
      p->v = v;
      p->cap = cap;
    }
    p->v[p->n++] = from;
    p->v[p->n++] = to;
  }
}

/* one page of n bytes: "" when it is as expected, else what is wrong (trace-raw.ts's words) */
static void trace_page(TraceDrain *t, const uint8_t *p, size_t n, size_t data_offset) {
  if (n < data_offset) {
    snprintf(t->problem, sizeof t->problem, "a trace page of %zu bytes", n);
    return;
  }
  uint32_t commit = rd32(p + 8);
  if (commit >= 0x80000000u) {
    snprintf(t->problem, sizeof t->problem, "the kernel lost trace events (a page says so)");
    return;
  }
  size_t size = commit % 0x40000000u, end = data_offset + size;
  if (end > n) {
    snprintf(t->problem, sizeof t->problem, "a trace page claims %zu bytes of events but holds %zu", size,
             n - data_offset);
    return;
  }
  size_t at = data_offset;
  while (at + 4 <= end) {
    uint32_t h = rd32(p + at), type_len = h & 0x1f;
    size_t rec;
    int64_t len;
    if (type_len == 0) {
      if (at + 8 > end) {
        snprintf(t->problem, sizeof t->problem, "a trace event runs past its page");
        return;
      }
      len = (int64_t)rd32(p + at + 4) - 4;
      rec = at + 8;
      at = rec + (len > 0 ? (size_t)len : 0);
    } else if (type_len <= 28) {
      len = type_len * 4;
      rec = at + 4;
      at = rec + (size_t)len;
    } else if (type_len == 29) {
      if (at + 8 > n) {
        snprintf(t->problem, sizeof t->problem, "a trace event runs past its page");
        return;
      }
      uint32_t pad = rd32(p + at + 4);
      if (pad == 0) break; /* the rest of the page is padding */
      at += 4 + (size_t)pad;
      continue;
    } else {
      at += 8; /* time extend or time stamp */
      continue;
    }
    if (at > end || len < 2) {
      snprintf(t->problem, sizeof t->problem, "a trace event runs past its page");
      return;
    }
    uint16_t id;
    memcpy(&id, p + rec, 2);
    const double *l = NULL;
    for (size_t k = 0; k < t->n_layouts && l == NULL; k++)
      if (t->layouts[6 * k] == id) l = t->layouts + 6 * k;
    if (l == NULL) {
      snprintf(t->problem, sizeof t->problem, "an unexpected trace event (type %u)", id);
      return;
    }
    size_t dev_off = (size_t)l[1], sector_off = (size_t)l[2], nr_off = (size_t)l[3], rwbs_off = (size_t)l[4],
           rwbs_size = (size_t)l[5];
    if ((int64_t)(nr_off + 4) > len || (int64_t)(sector_off + 8) > len || (int64_t)(rwbs_off + rwbs_size) > len ||
        (int64_t)(dev_off + 4) > len) {
      snprintf(t->problem, sizeof t->problem, "a trace event shorter than its format");
      return;
    }
    uint32_t nr = rd32(p + rec + nr_off);
    double sector = (double)rd32(p + rec + sector_off) + (double)rd32(p + rec + sector_off + 4) * 4294967296.0;
    trace_event(t, rd32(p + rec + dev_off), sector, nr, p + rec + rwbs_off, rwbs_size);
    if (t->oom) return;
  }
}

static napi_value js_trace_drain(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  uint32_t page_bytes = 0, data_offset = 0, disks = 0;
  napi_typedarray_type type;
  size_t n_fds = 0, n_layouts = 0, n_windows = 0;
  void *fds = NULL, *layouts = NULL, *windows = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6 ||
      napi_get_typedarray_info(env, argv[0], &type, &n_fds, &fds, NULL, NULL) != napi_ok || type != napi_int32_array ||
      napi_get_value_uint32(env, argv[1], &page_bytes) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &data_offset) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &type, &n_layouts, &layouts, NULL, NULL) != napi_ok ||
      type != napi_float64_array || n_layouts % 6 != 0 ||
      napi_get_typedarray_info(env, argv[4], &type, &n_windows, &windows, NULL, NULL) != napi_ok ||
      type != napi_float64_array || n_windows % 5 != 0 || napi_get_value_uint32(env, argv[5], &disks) != napi_ok ||
      page_bytes < 16 || page_bytes > (1u << 24) || data_offset < 16 || data_offset > page_bytes)
    return throw_type(env, "traceDrain takes (fds: Int32Array, pageBytes, dataOffset, layouts: Float64Array, "
                           "windows: Float64Array, disks)");
  for (size_t w = 0; w < n_windows / 5; w++) {
    double d = ((const double *)windows)[5 * w + 1];
    if (!(d >= 0 && d < disks && d == floor(d))) return throw_type(env, "traceDrain: a window of no disk");
  }
  TraceDrain t = {.layouts = layouts, .n_layouts = n_layouts / 6, .windows = windows, .n_windows = n_windows / 5};
  t.pairs = calloc(disks ? disks : 1, sizeof *t.pairs);
  uint8_t *page = malloc(page_bytes);
  if (t.pairs == NULL || page == NULL) {
    free(t.pairs);
    free(page);
    return throw_type(env, "traceDrain: out of memory");
  }
  const int32_t *fd = fds;
  bool failed = false;
  for (size_t i = 0; i < n_fds && !failed && !t.oom; i++) {
    for (;;) {
      ssize_t n = read(fd[i], page, page_bytes);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        snprintf(t.problem, sizeof t.problem, "reading the trace failed: %s", strerror(errno));
        failed = true;
        break;
      }
      if (n == 0) break;
      if (t.problem[0] == 0) trace_page(&t, page, (size_t)n, data_offset);
      if (t.oom) break;
    }
  }
  free(page);
  napi_value out, list, v;
  napi_create_object(env, &out);
  napi_create_array_with_length(env, disks, &list);
  for (uint32_t d = 0; d < disks; d++) {
    napi_value buf, arr;
    double *o = NULL;
    Pairs *p = &t.pairs[d];
    if (napi_create_arraybuffer(env, p->n * sizeof(double), (void **)&o, &buf) == napi_ok &&
        napi_create_typedarray(env, napi_float64_array, p->n, buf, 0, &arr) == napi_ok) {
      if (p->n > 0) memcpy(o, p->v, p->n * sizeof(double));
      napi_set_element(env, list, d, arr);
    } else t.oom = true;
    free(p->v);
  }
  if (t.oom) t.problem[0] = 0; /* (set below, whatever page problem came first) */
  free(t.pairs);
  if (t.oom) {
    /* what was read is gone from the kernel's buffers: the disks' journals cannot vouch for it */
    napi_create_array_with_length(env, disks, &list);
    for (uint32_t d = 0; d < disks; d++) {
      napi_value buf, arr;
      void *o = NULL;
      napi_create_arraybuffer(env, 0, &o, &buf);
      napi_create_typedarray(env, napi_float64_array, 0, buf, 0, &arr);
      napi_set_element(env, list, d, arr);
    }
    snprintf(t.problem, sizeof t.problem, "no memory to place the trace's events");
  }
  napi_set_named_property(env, out, "pairs", list);
  if (t.problem[0] != 0) napi_create_string_utf8(env, t.problem, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, out, "problem", v);
  if (t.passthrough[0] != 0) napi_create_string_latin1(env, t.passthrough, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, out, "passthrough", v);
  return out;
}

/*
 * populatedPages(length): Promise<Buffer>, `length` bytes of fresh zeroed memory, page-aligned, its
 * pages already in place (each faulted in on libuv's thread pool): a pack buffer filled later
 * by the JavaScript thread takes no page fault there (~1.7 us a 4 KiB page in this VM: ~9 ms of a
 * point's 21 MB). Unmapped when the Buffer's memory is collected.
 */
static void pages_execute(napi_env env, void *data) {
  (void)env;
  MapFile *m = data;
  m->p = mmap(NULL, m->length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  m->err = m->p == MAP_FAILED ? errno : 0;
  /* a write to each page faults it in; unlike MAP_POPULATE, this holds the process's memory map lock
     only a fault at a time, so the JavaScript thread's own mappings are not held up meanwhile */
  if (m->err == 0)
    for (size_t at = 0; at < m->length; at += 4096) ((volatile uint8_t *)m->p)[at] = 0;
}

static napi_value js_populated_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int64(env, argv[0], &length) != napi_ok || length <= 0)
    return throw_type(env, "populatedPages takes (length), above 0");
  MapFile *m = calloc(1, sizeof *m);
  if (m == NULL) return throw_type(env, "populatedPages: out of memory");
  m->length = (size_t)length;
  m->fd = -1;
  m->what = "populatedPages";
  napi_value promise =
      queue_work(env, "switchback:populatedPages", pages_execute, map_file_complete, m, &m->work, &m->deferred);
  if (promise == NULL) free(m);
  return promise;
}

/* xxh64(data, seed): the XXH64 this file uses, for tests to compare with the JavaScript one */
static napi_value js_xxh64(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint8_t *data;
  size_t length;
  uint64_t seed;
  bool lossless;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      !bytes_of(env, argv[0], &data, &length) ||
      napi_get_value_bigint_uint64(env, argv[1], &seed, &lossless) != napi_ok)
    return throw_type(env, "xxh64 takes (buffer, seed)");
  napi_value v;
  napi_create_bigint_uint64(env, XXH64(data, length, seed), &v);
  return v;
}

/*
 * BLAKE3 of bytes given part by part, in a state the caller holds: blake3Init(state) starts one,
 * blake3Update(state, data) adds bytes, blake3Digest(state, out) writes the 32-byte hash into out
 * (the state may take more bytes afterwards). `state` is a Uint8Array of at least blake3StateBytes
 * bytes, aligned for the hasher (Buffer.alloc gives such memory); the state lives in JavaScript's
 * memory, so there is nothing to free.
 */
static blake3_hasher *hasher_of(napi_env env, napi_value v) {
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, v, &p, &len) || len < sizeof(blake3_hasher) ||
      (uintptr_t)p % _Alignof(blake3_hasher) != 0) {
    throw_type(env, "blake3: state must be an aligned Uint8Array of blake3StateBytes bytes");
    return NULL;
  }
  return (blake3_hasher *)p;
}

static napi_value js_blake3_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1)
    return throw_type(env, "blake3Init takes (state)");
  blake3_hasher *h = hasher_of(env, argv[0]);
  if (h != NULL) blake3_hasher_init(h);
  return NULL;
}

/* The state and the bytes of blake3Update and blake3Digest: NULL (an exception pending) when wrong. */
static blake3_hasher *state_and_bytes(napi_env env, napi_callback_info info, const char *usage, uint8_t **p,
                                      size_t *len) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    throw_type(env, usage);
    return NULL;
  }
  blake3_hasher *h = hasher_of(env, argv[0]);
  if (h != NULL && !bytes_of(env, argv[1], p, len)) {
    throw_type(env, usage);
    return NULL;
  }
  return h;
}

static napi_value js_blake3_update(napi_env env, napi_callback_info info) {
  uint8_t *data;
  size_t len;
  blake3_hasher *h = state_and_bytes(env, info, "blake3Update takes (state, data: Uint8Array)", &data, &len);
  if (h != NULL) blake3_hasher_update(h, data, len);
  return NULL;
}

static napi_value js_blake3_digest(napi_env env, napi_callback_info info) {
  uint8_t *out;
  size_t len;
  blake3_hasher *h = state_and_bytes(env, info, "blake3Digest takes (state, out: Uint8Array of at least 32 bytes)", &out, &len);
  if (h == NULL) return NULL;
  if (len < BLAKE3_OUT_LEN) return throw_type(env, "blake3Digest takes (state, out: Uint8Array of at least 32 bytes)");
  blake3_hasher_finalize(h, out, BLAKE3_OUT_LEN);
  return NULL;
}

/*
 * fileExtents(fd): Float64Array, the open file's extents as the file system maps them (FIEMAP, its
 * dirty pages written first: FIEMAP_FLAG_SYNC), four numbers each: logical byte offset, physical
 * byte offset, length in bytes, FIEMAP flags; in logical order, holes left out. Throws with the errno
 * (EOPNOTSUPP: the file system cannot tell).
 */
static napi_value js_file_extents(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "fileExtents takes (fd)", &fd)) return NULL;
  enum { BATCH = 512 };
  struct fiemap *fm = calloc(1, sizeof(struct fiemap) + BATCH * sizeof(struct fiemap_extent));
  double *out = NULL;
  size_t n = 0, cap = 0;
  uint64_t start = 0;
  int err = 0, last = 0;
  int flags = FIEMAP_FLAG_SYNC;
  if (fm == NULL) return throw_type(env, "fileExtents: out of memory");
  while (!last) {
    memset(fm, 0, sizeof(struct fiemap));
    fm->fm_start = start;
    fm->fm_length = FIEMAP_MAX_OFFSET - start;
    fm->fm_flags = (uint32_t)flags;
    fm->fm_extent_count = BATCH;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
      err = errno;
      break;
    }
    flags = 0; /* synced once */
    if (fm->fm_mapped_extents == 0) break;
    if (n + fm->fm_mapped_extents > cap) {
      size_t more = cap ? cap * 2 : 1024;
      while (more < n + fm->fm_mapped_extents) more *= 2;
      double *bigger = realloc(out, more * 4 * sizeof(double));
      if (bigger == NULL) {
        err = ENOMEM;
        break;
      }
      out = bigger;
      cap = more;
    }
    for (uint32_t i = 0; i < fm->fm_mapped_extents && err == 0; i++) {
      struct fiemap_extent *e = &fm->fm_extents[i];
      const uint64_t exact = (uint64_t)1 << 53; /* what a double holds exactly */
      if (e->fe_logical >= exact || e->fe_physical >= exact || e->fe_length >= exact) err = EOVERFLOW;
      /* every extent must move on: a file system that answers otherwise would loop here for ever */
      else if (e->fe_length == 0 || e->fe_logical + e->fe_length <= start) err = EIO;
      else {
        out[4 * n] = (double)e->fe_logical;
        out[4 * n + 1] = (double)e->fe_physical;
        out[4 * n + 2] = (double)e->fe_length;
        out[4 * n + 3] = (double)e->fe_flags;
        n++;
        if (e->fe_flags & FIEMAP_EXTENT_LAST) last = 1;
        start = e->fe_logical + e->fe_length;
      }
    }
    if (err != 0) break;
  }
  free(fm);
  if (err != 0) {
    free(out);
    napi_throw(env, errno_error(env, err, "FIEMAP"));
    return NULL;
  }
  napi_value ab, arr;
  void *data;
  if (napi_create_arraybuffer(env, n * 4 * sizeof(double), &data, &ab) != napi_ok) {
    free(out);
    return throw_type(env, "fileExtents: out of memory");
  }
  if (n > 0) memcpy(data, out, n * 4 * sizeof(double));
  free(out);
  napi_create_typedarray(env, napi_float64_array, n * 4, ab, 0, &arr);
  return arr;
}

/* fileSystemType(fd): number, the f_type of the file system the open file is on (fstatfs) */
static napi_value js_file_system_type(napi_env env, napi_callback_info info) {
  int32_t fd;
  struct statfs st;
  if (!fd_arg(env, info, "fileSystemType takes (fd)", &fd)) return NULL;
  if (fstatfs(fd, &st) != 0) {
    napi_throw(env, errno_error(env, errno, "fstatfs"));
    return NULL;
  }
  napi_value v;
  napi_create_double(env, (double)(unsigned long)st.f_type, &v);
  return v;
}

/*
 * fileFlags(fd): number, the open file's inode flags (FS_IOC_GETFLAGS: FS_JOURNAL_DATA_FL,
 * FS_DAX_FL, ...); throws with the errno (ENOTTY: the file system keeps none).
 */
static napi_value js_file_flags(napi_env env, napi_callback_info info) {
  int32_t fd;
  int flags = 0;
  if (!fd_arg(env, info, "fileFlags takes (fd)", &fd)) return NULL;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    napi_throw(env, errno_error(env, errno, "FS_IOC_GETFLAGS"));
    return NULL;
  }
  napi_value v;
  napi_create_double(env, (double)(unsigned int)flags, &v);
  return v;
}

/* simdDegree(): number, how many inputs BLAKE3 hashes at once on this CPU (1, 4, 8 or 16) */
static napi_value js_simd_degree(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_uint32(env, (uint32_t)blake3_simd_degree(), &v);
  return v;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } calls[] = {
      {"hashBlocks", js_hash_blocks},         {"alignOffset", js_align_offset},
      {"zstdCompress", js_zstd_compress},     {"zstdDecompress", js_zstd_decompress},
      {"zstdAvailable", js_zstd_available},   {"flock", js_flock},
      {"simdDegree", js_simd_degree},         {"loopBacking", js_loop_backing},
      {"unitChanges", js_unit_changes},       {"xxh64", js_xxh64},
      {"checkFingerprints", js_check_fingerprints}, {"blockPass", js_block_pass},
      {"applyFrames", js_apply_frames},       {"extentAt", js_extent_at},
      {"zeroOut", js_zero_out},               {"mapFile", js_map_file},
      {"blake3Init", js_blake3_init},         {"blake3Update", js_blake3_update},
      {"blake3Digest", js_blake3_digest},       {"fileExtents", js_file_extents},  {"fileSystemType", js_file_system_type},
      {"fileFlags", js_file_flags},           {"bucketTable", js_bucket_table}, {"mergePairs", js_merge_pairs}, {"blake3OnPool", js_blake3_on_pool}, {"traceDrain", js_trace_drain}, {"populatedPages", js_populated_pages},
  };
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    napi_value fn;
    napi_create_function(env, calls[i].name, NAPI_AUTO_LENGTH, calls[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, calls[i].name, fn);
  }
  napi_value state_bytes;
  napi_create_uint32(env, (uint32_t)sizeof(blake3_hasher), &state_bytes);
  napi_set_named_property(env, exports, "blake3StateBytes", state_bytes);
  /* applyFrames and checkFingerprints take fingerprints of a window of the disk (their `first`) */
  napi_value yes;
  napi_get_boolean(env, true, &yes);
  napi_set_named_property(env, exports, "windowedFingerprints", yes);
  /* blockPass takes `random`, the sample's judgement of each data block */
  napi_set_named_property(env, exports, "blockPassRandom", yes);
  return exports;
}

/* Writing one safetensors file (the format of https://github.com/huggingface/safetensors, README
 * "Format"): an 8-byte little-endian header length N, N bytes of JSON header, then the data
 * buffer. The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (byte offsets into the buffer) and "__metadata__" to a string -> string map.
 *
 * What this writer guarantees (and the reference loader checks): header keys sorted by name
 * (jansson JSON_SORT_KEYS), the header padded with spaces so the buffer starts at a multiple of 8,
 * tensors laid out back to back with no holes, in order of decreasing element size and then name
 * (the reference writer's order), so every tensor starts aligned to its element size.
 *
 * Data is produced on demand: each tensor is declared with a fill callback that the writer calls
 * once, in data order, with a buffer of exactly the tensor's bytes (on-disk layout: row-major,
 * little-endian), so only one tensor is in memory at a time. Not collective.
 *
 * Sharding (the checkpoints transformers and GPTQModel write above a size limit): mq_stw_shard
 * splits the tensors, taken in name order, into consecutive shards of at most max_bytes of data
 * each (a tensor larger than that gets a shard of its own); mq_stw_write_shard writes one of
 * them as a complete safetensors file (same metadata, same guarantees); mq_stw_tensor names
 * each tensor's shard for the index file. */
#ifndef MQ_IO_SAFETENSORS_WRITE_H
#define MQ_IO_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "mpiquant.h"

#define MQ_STW_MAX_DIMS 8

typedef enum mq_stw_dtype {
  MQ_STW_F32 = 0,  /* "F32" */
  MQ_STW_F16 = 1,  /* "F16" (IEEE binary16) */
  MQ_STW_BF16 = 2, /* "BF16" */
  MQ_STW_I32 = 3   /* "I32" */
} mq_stw_dtype;

/* Fills buf[nbytes] with tensor `tag`'s data. A failure aborts the write (the file is removed). */
typedef mq_status (*mq_stw_fill_fn)(void *ctx, size_t tag, void *buf, size_t nbytes,
                                    mq_error *err);

typedef struct mq_st_writer mq_st_writer;

/* *out is NULL on failure (MQ_EFAIL, out of memory). */
mq_status mq_stw_create(mq_st_writer **out, mq_error *err);
/* Accepts NULL / *w == NULL; nulls the handle. */
void mq_stw_free(mq_st_writer **w);

/* Adds a "__metadata__" entry (both strings copied). */
mq_status mq_stw_set_metadata(mq_st_writer *w, const char *key, const char *value, mq_error *err);

/* Declares tensor `name` (copied) of shape[0..ndim) (ndim 0..MQ_STW_MAX_DIMS; 0 = scalar).
 * fill(ctx, tag, ...) is called by mq_stw_write. MQ_EINPUT "<name>: ..." for an empty,
 * duplicate or reserved name or an overflowing size. */
mq_status mq_stw_add(mq_st_writer *w, const char *name, mq_stw_dtype dtype, int ndim,
                     const size_t *shape, mq_stw_fill_fn fill, void *ctx, size_t tag,
                     mq_error *err);

size_t mq_stw_count(const mq_st_writer *w);

/* Writes the file at path (created or truncated), calling every fill callback once, then
 * fsyncs and closes it. On any failure path is removed. MQ_EFAIL "<path>: ..." on I/O errors;
 * a fill callback's own status otherwise. */
mq_status mq_stw_write(mq_st_writer *w, const char *path, mq_error *err);

/* Assigns every declared tensor to a shard (see above); returns the number of shards (>= 1;
 * 1 when everything fits, or when there are no tensors). */
size_t mq_stw_shard(mq_st_writer *w, uint64_t max_bytes);
/* Writes shard k (0-based, after mq_stw_shard) to path, as mq_stw_write does for all. */
mq_status mq_stw_write_shard(mq_st_writer *w, size_t k, const char *path, mq_error *err);
/* Sum of the tensors' data bytes (the index file's "total_size"). */
uint64_t mq_stw_total_bytes(const mq_st_writer *w);
/* Tensor i's name (i < count; order unspecified) and, in *shard (may be NULL), its shard;
 * NULL when i >= count. */
const char *mq_stw_tensor(const mq_st_writer *w, size_t i, size_t *shard);

/* Flushes, fsyncs and closes *f (nulled), so a file reported written is on disk; MQ_EFAIL
 * "<path>: write failed: ..." otherwise. Shared by every writer of export. */
mq_status mq_stw_finish_file(FILE **f, const char *path, mq_error *err);

/* float32 -> binary16 / bfloat16, round to nearest, ties to even; overflow gives ±inf, NaN stays
 * NaN (quiet), subnormals are produced exactly. */
uint16_t mq_stw_f32_to_f16(float f);
uint16_t mq_stw_f32_to_bf16(float f);
const char *mq_stw_dtype_name(mq_stw_dtype dt);
size_t mq_stw_dtype_size(mq_stw_dtype dt);

#endif

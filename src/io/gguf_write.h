/* Writing one GGUF file, version 3 (the container of ggml / llama.cpp; spec: ggml's
 * docs/gguf.md). Layout, all integers little-endian:
 *
 *   "GGUF" magic, uint32 version = 3, uint64 tensor count, uint64 key/value count
 *   key/value pairs: key (string), uint32 value type, value
 *   tensor infos:    name (string), uint32 n_dims, uint64 ne[n_dims] (ne[0] = the contiguous
 *                    dimension, i.e. the reverse of the row-major shape), uint32 ggml type,
 *                    uint64 offset of the data relative to the data section
 *   zero padding up to a multiple of the alignment (32: general.alignment is not written)
 *   data section:    every tensor at an offset that is a multiple of 32, zero padding between
 *
 * where a string is a uint64 byte length followed by the bytes (no NUL), an array is a uint32
 * element type, a uint64 element count and the elements. Key/value pairs and tensors are written
 * in the order they were added. Tensor data is produced on demand, as the safetensors writer
 * does (io/safetensors_write.h): each tensor is declared with a fill callback that the writer
 * calls once, in file order, with a buffer of exactly the tensor's bytes, so only one tensor is
 * in memory at a time. Not collective. */
#ifndef MQ_IO_GGUF_WRITE_H
#define MQ_IO_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "mpiquant.h"

#define MQ_GGUF_ALIGNMENT 32
#define MQ_GGUF_MAX_DIMS 4

/* The ggml tensor types this writer knows (values of ggml's enum ggml_type). Block types hold
 * 32 consecutive values of a row (ne[0] must be a multiple of 32):
 *   Q4_0 {f16 d; u8 qs[16]}          w = d·(q − 8),  q = 4 bits
 *   Q4_1 {f16 d, m; u8 qs[16]}       w = d·q + m
 *   Q5_0 {f16 d; u8 qh[4]; u8 qs[16]} w = d·(q − 16), q = 5 bits
 *   Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]} w = d·q + m
 *   Q8_0 {f16 d; i8 qs[32]}          w = d·q
 * (nibble layout in io/gguf_blocks.h). */
typedef enum mq_ggml_type {
  MQ_GGML_F32 = 0,
  MQ_GGML_F16 = 1,
  MQ_GGML_Q4_0 = 2,
  MQ_GGML_Q4_1 = 3,
  MQ_GGML_Q5_0 = 6,
  MQ_GGML_Q5_1 = 7,
  MQ_GGML_Q8_0 = 8,
  MQ_GGML_BF16 = 30
} mq_ggml_type;

/* "F32", "Q4_0", ... ("?" for others). */
const char *mq_ggml_type_name(mq_ggml_type t);
/* Values per block (1 for F32/F16/BF16, 32 for the block types) and bytes per block; 0 for an
 * unknown type. */
size_t mq_ggml_block_values(mq_ggml_type t);
size_t mq_ggml_block_bytes(mq_ggml_type t);

/* Fills buf[nbytes] with tensor `tag`'s data. A failure aborts the write (the file is removed). */
typedef mq_status (*mq_gguf_fill_fn)(void *ctx, size_t tag, void *buf, size_t nbytes,
                                     mq_error *err);

typedef struct mq_gguf_writer mq_gguf_writer;

/* *out is NULL on failure (MQ_EFAIL, out of memory). */
mq_status mq_gguf_create(mq_gguf_writer **out, mq_error *err);
/* Accepts NULL / *w == NULL; nulls the handle. */
void mq_gguf_free(mq_gguf_writer **w);

/* Key/value pairs (key and values copied). MQ_EINPUT "<key>: ..." for an empty or duplicate key,
 * MQ_EFAIL on out of memory. */
mq_status mq_gguf_kv_u32(mq_gguf_writer *w, const char *key, uint32_t v, mq_error *err);
mq_status mq_gguf_kv_i32(mq_gguf_writer *w, const char *key, int32_t v, mq_error *err);
mq_status mq_gguf_kv_f32(mq_gguf_writer *w, const char *key, float v, mq_error *err);
mq_status mq_gguf_kv_bool(mq_gguf_writer *w, const char *key, int v, mq_error *err);
mq_status mq_gguf_kv_str(mq_gguf_writer *w, const char *key, const char *v, mq_error *err);
/* Arrays: strings v[n] (NUL-terminated), float32 v[n], int32 v[n]. */
mq_status mq_gguf_kv_strs(mq_gguf_writer *w, const char *key, const char *const *v, size_t n,
                          mq_error *err);
mq_status mq_gguf_kv_f32s(mq_gguf_writer *w, const char *key, const float *v, size_t n,
                          mq_error *err);
mq_status mq_gguf_kv_i32s(mq_gguf_writer *w, const char *key, const int32_t *v, size_t n,
                          mq_error *err);

/* Declares tensor `name` (copied) of type t with ne[0..ndim) (ne[0] contiguous; ndim 1..4).
 * ne[0] must be a multiple of the type's block values. fill(ctx, tag, ...) is called by
 * mq_gguf_write with exactly the tensor's bytes. MQ_EINPUT "<name>: ..." for an empty or
 * duplicate name, a bad shape or an overflowing size. */
mq_status mq_gguf_add_tensor(mq_gguf_writer *w, const char *name, mq_ggml_type t, int ndim,
                             const uint64_t *ne, mq_gguf_fill_fn fill, void *ctx, size_t tag,
                             mq_error *err);

size_t mq_gguf_tensor_count(const mq_gguf_writer *w);
/* Bytes of the whole file mq_gguf_write will produce. */
uint64_t mq_gguf_file_size(const mq_gguf_writer *w);

/* Writes the file at path (created or truncated), calling every fill callback once in order,
 * then fsyncs and closes it. On any failure path is removed. MQ_EFAIL "<path>: ..." on I/O
 * errors; a fill callback's own status otherwise. */
mq_status mq_gguf_write(mq_gguf_writer *w, const char *path, mq_error *err);

#endif

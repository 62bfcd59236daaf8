/* Read-only access to Hugging Face safetensors checkpoints: one `model.safetensors` file or a
 * sharded checkpoint (`model.safetensors.index.json` whose "weight_map" maps tensor name ->
 * shard file). Only headers are read at open; tensor data is read with pread on request, so a
 * caller touches just the tensors it asks for.
 *
 * Files are treated as hostile: every file is opened without blocking and must be a regular
 * file (io/paths.h); open() checks header length, JSON syntax, dtypes, shapes against
 * byte lengths (overflow-checked), offsets inside the data buffer and that no two tensors' byte
 * ranges overlap. Every failure is MQ_EINPUT "<file>: <tensor>: <reason>" or "<file>: <reason>".
 * Not collective: every rank that needs weights may open the checkpoint itself. */
#ifndef MQ_IO_SAFETENSORS_H
#define MQ_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "mpiquant.h"

/* Largest header accepted (the reference implementation's limit). */
#define MQ_ST_MAX_HEADER ((size_t)100 * 1000 * 1000)
#define MQ_ST_MAX_DIMS 8

typedef enum mq_st_dtype { MQ_ST_F32 = 0, MQ_ST_F16 = 1, MQ_ST_BF16 = 2 } mq_st_dtype;

typedef struct mq_st_tensor_info {
  mq_st_dtype dtype;
  int ndim;                       /* 0 (scalar) .. MQ_ST_MAX_DIMS */
  size_t shape[MQ_ST_MAX_DIMS];   /* [ndim], row-major (C order) as stored */
  size_t count;                   /* product of shape (1 for a scalar) */
  size_t nbytes;                  /* count * dtype size = end - begin */
} mq_st_tensor_info;

typedef struct mq_st_model mq_st_model;

/* Opens `dir`: model.safetensors.index.json when present (sharded), else model.safetensors.
 * `dir` may also name a .safetensors file directly. All shard headers are validated here; a
 * tensor the index maps to a shard that does not hold it is MQ_EINPUT. *out is NULL on failure;
 * the handle is released with mq_st_close. */
mq_status mq_st_open_dir(const char *dir, mq_st_model **out, mq_error *err);
/* Accepts NULL / *m == NULL; closes the shard files and nulls the handle. */
void mq_st_close(mq_st_model **m);

/* Returns 1 and fills *info (when info != NULL) if `name` exists, else 0. */
int mq_st_find(const mq_st_model *m, const char *name, mq_st_tensor_info *info);

/* Tensors in strcmp order of their names; name(i) is owned by the handle (NULL when i >= count). */
size_t mq_st_count(const mq_st_model *m);
const char *mq_st_name(const mq_st_model *m, size_t i);

/* Reads tensor `name` into out[count] as float32 (count must equal the element count).
 * F16 and BF16 convert exactly (subnormals, inf and nan included: the checkpoint tensor source,
 * io/checkpoint_source.h, refuses non-finite values). Errors: MQ_EINPUT
 * "<dir>: missing tensor <name>", "<file>: <name>: has N elements, caller expects M",
 * "<file>: <name>: short read"; MQ_EFAIL on out of memory. */
mq_status mq_st_read_f32(mq_st_model *m, const char *name, float *out, size_t count,
                         mq_error *err);

/* Element conversions, exposed for tests. */
float mq_st_f16_to_f32(uint16_t h);
float mq_st_bf16_to_f32(uint16_t b);
const char *mq_st_dtype_name(mq_st_dtype dt);

#endif

/* Where a model's weights come from, by Hugging Face tensor name: a safetensors checkpoint
 * (io/checkpoint_source.h) or a result file of `quantize` (io/result_tensors.h: dequantized
 * /layers/<module> for "<module>.weight", /model/tensors/<name> for the rest). */
#ifndef MQ_IO_TENSOR_SOURCE_H
#define MQ_IO_TENSOR_SOURCE_H

#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_tensor_source {
  /* 1 when tensor `name` exists, with its shape when ndim/shape are not NULL (shape[0..*ndim),
   * at most 2 dims reported); else 0 */
  int (*find)(void *ctx, const char *name, int *ndim, size_t shape[2]);
  /* tensor `name` as float32 out[count]; MQ_EINPUT "<file>: <name>: ..." when missing or
   * malformed, MQ_EFAIL on out of memory */
  mq_status (*read)(void *ctx, const char *name, float *out, size_t count, mq_error *err);
  void *ctx;
} mq_tensor_source;

#endif

/* mq_tensor_source over io/safetensors.h. */
#include "io/checkpoint_source.h"

#include <string.h>

#include "io/safetensors.h"

static int ckpt_find(void *ctx, const char *name, int *ndim, size_t shape[2]) {
  mq_st_tensor_info info;
  if (!mq_st_find(ctx, name, &info)) return 0;
  if (ndim) *ndim = info.ndim;
  if (shape) {
    shape[0] = info.ndim > 0 ? info.shape[0] : 0;
    shape[1] = info.ndim > 1 ? info.shape[1] : 0;
  }
  return 1;
}

static mq_status ckpt_read(void *ctx, const char *name, float *out, size_t count,
                           mq_error *err) {
  return mq_st_read_f32(ctx, name, out, count, err);
}

mq_status mq_checkpoint_source_open(const char *dir, mq_tensor_source *src, mq_error *err) {
  mq_st_model *m = NULL;
  memset(src, 0, sizeof *src);
  mq_status st = mq_st_open_dir(dir, &m, err);
  if (st != MQ_OK) return st;
  src->find = ckpt_find;
  src->read = ckpt_read;
  src->ctx = m;
  return MQ_OK;
}

void mq_checkpoint_source_close(mq_tensor_source *src) {
  if (src == NULL) return;
  mq_st_model *m = src->ctx;
  mq_st_close(&m);
  memset(src, 0, sizeof *src);
}

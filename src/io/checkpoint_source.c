/* mq_tensor_source over io/safetensors.h, and the checkpoint's identity hash. */
#include "io/checkpoint_source.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/paths.h"
#include "io/safetensors.h"

/* config.json is a few KB (hfconfig.c reads at most this much too). */
enum { MAX_CONFIG_BYTES = 16 << 20 };

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

/* Every value finite: a NaN or Inf weight would flow into results without an error. */
static mq_status ckpt_read(void *ctx, const char *name, float *out, size_t count,
                           mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(mq_st_read_f32(ctx, name, out, count, err));
  for (size_t k = 0; k < count; k++)
    if (!isfinite(out[k]))
      MQ_FAIL(err, MQ_EINPUT, "%s: element %zu is %s", name, k, isnan(out[k]) ? "NaN" : "infinite");
cleanup:
  return st;
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

/* ---- identity ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
  return h;
}

static uint64_t hash_model(const mq_st_model *m, const char *config, size_t len) {
  uint64_t h = fnv1a(0xcbf29ce484222325ULL, config, len);
  size_t n = mq_st_count(m);
  for (size_t i = 0; i < n; i++) {
    const char *name = mq_st_name(m, i);
    mq_st_tensor_info info;
    char dims[MQ_ST_MAX_DIMS * 21 + 2];
    size_t at = 0;
    (void)mq_st_find(m, name, &info);
    dims[0] = '\0';
    for (int d = 0; d < info.ndim; d++)
      at += (size_t)snprintf(dims + at, sizeof dims - at, "%s%zu", d ? "," : "", info.shape[d]);
    h = fnv1a(h, name, strlen(name));
    h = fnv1a(h, " ", 1);
    h = fnv1a(h, mq_st_dtype_name(info.dtype), strlen(mq_st_dtype_name(info.dtype)));
    h = fnv1a(h, " ", 1);
    h = fnv1a(h, dims, strlen(dims));
    h = fnv1a(h, "\n", 1);
  }
  return h;
}

uint64_t mq_checkpoint_source_hash(const mq_tensor_source *src, const char *config, size_t len) {
  if (src == NULL || src->find != ckpt_find) return 0;
  return hash_model(src->ctx, config, len);
}

mq_status mq_checkpoint_dir_hash(const char *dir, uint64_t *hash, mq_error *err) {
  mq_status st = MQ_OK;
  mq_st_model *m = NULL;
  char *text = NULL, *path = NULL;
  size_t len = 0, plen = strlen(dir) + sizeof "/config.json";
  path = mq_alloc(plen, 1);
  MQ_CHECK_ALLOC(err, path, plen);
  snprintf(path, plen, "%s/config.json", dir);
  MQ_CHECK(mq_path_read_all(path, MAX_CONFIG_BYTES, &text, &len, err));
  MQ_CHECK(mq_st_open_dir(dir, &m, err));
  *hash = hash_model(m, text, len);
cleanup:
  mq_st_close(&m);
  mq_free(text);
  mq_free(path);
  return st;
}

mq_status mq_checkpoint_check_result(const char *result, const mq_result_meta *meta,
                                     const char *dir, uint64_t hash, mq_error *err) {
  if (meta == NULL || !meta->has_checkpoint_hash || meta->checkpoint_hash == hash) return MQ_OK;
  return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__,
                  "%s: written from another checkpoint (checkpoint_hash %016" PRIx64 "; %s has "
                  "%016" PRIx64 ")", result, meta->checkpoint_hash, dir, hash);
}

mq_status mq_checkpoint_check_result_file(const char *result, const char *dir, mq_error *err) {
  mq_status st = MQ_OK;
  mq_result_summary sum = {0};
  uint64_t hash = 0;
  MQ_CHECK(mq_h5_result_read_summary(result, &sum, err));
  if (!sum.meta.has_checkpoint_hash) goto cleanup;
  MQ_CHECK(mq_checkpoint_dir_hash(dir, &hash, err));
  MQ_CHECK(mq_checkpoint_check_result(result, &sum.meta, dir, hash, err));
cleanup:
  mq_result_summary_free(&sum);
  return st;
}

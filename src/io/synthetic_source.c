/* A synthetic layer generated on the fly (io/synthetic_source.h). */
#include "io/synthetic_source.h"

#include <stdint.h>

#include "core/mem.h"
#include "core/status.h"

/* Deterministic value of entry k of stream `salt`, uniform with unit variance (splitmix64 of
 * the counter): every rank generates the same matrix, whichever part it reads, and cheaply, so
 * the generation does not dominate the Hessian phase it feeds. */
static double synth(uint64_t salt, uint64_t k) {
  uint64_t z = k + salt * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return ((double)(z >> 11) * 0x1.0p-53 - 0.5) * 3.4641016151377544; /* sqrt(12) */
}

/* Sample k of stream X (every 97th input channel an outlier channel) or X̃. */
static float synth_sample(const mq_synthetic_layer *l, mq_samples which, uint64_t k) {
  size_t c = (size_t)(k % l->cols);
  double x = synth(1, k) * (c % 97 == 0 ? 20.0 : 1.0 + (double)(c % 7) * 0.1);
  return (float)(which == MQ_SAMPLES_XQ ? x + 0.05 * synth(2, k) : x);
}

/* From the float32 activations held in memory, as `quantize` serves its own. */
static mq_status synth_samples(void *user, mq_samples which, size_t first, size_t count,
                               double *buf, mq_error *err) {
  const mq_synthetic_layer *l = user;
  const float *x = which == MQ_SAMPLES_XQ && l->Xq != NULL ? l->Xq : l->X;
  (void)err;
  for (size_t k = 0; k < count * l->cols; k++) buf[k] = x[first * l->cols + k];
  return MQ_OK;
}

static mq_status synth_weight_rows(void *user, size_t first, size_t count, float *W,
                                   mq_error *err) {
  const mq_synthetic_layer *l = user;
  (void)err;
  for (size_t k = 0; k < count * l->cols; k++)
    W[k] = (float)(0.02 * synth(3, (uint64_t)first * l->cols + k));
  return MQ_OK;
}

mq_status mq_synthetic_source(mq_layer_source *src, mq_synthetic_layer *l, size_t rows,
                              size_t cols, size_t n, int mismatch, mq_error *err) {
  mq_status st = MQ_OK;
  *l = (mq_synthetic_layer){.cols = cols};
  l->X = mq_alloc(n * cols + 1, sizeof *l->X);
  l->Xq = mismatch ? mq_alloc(n * cols + 1, sizeof *l->Xq) : NULL;
  MQ_CHECK_ALLOC(err, l->X && (l->Xq || !mismatch), n * cols * sizeof *l->X);
  for (uint64_t k = 0; k < (uint64_t)n * cols; k++) {
    l->X[k] = synth_sample(l, MQ_SAMPLES_X, k);
    if (mismatch) l->Xq[k] = synth_sample(l, MQ_SAMPLES_XQ, k);
  }
  *src = (mq_layer_source){
      .desc = {.name = "bench", .rows = rows, .cols = cols, .n = n, .has_x = 1,
               .has_xq = mismatch},
      .read_samples = synth_samples, .read_weight_rows = synth_weight_rows, .user = l};
cleanup:
  return st;
}

void mq_synthetic_layer_free(mq_synthetic_layer *l) {
  mq_free(l->X);
  mq_free(l->Xq);
  *l = (mq_synthetic_layer){0};
}

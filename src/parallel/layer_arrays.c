/* mq_quantize_layer_arrays (mpiquant.h): a layer from arrays every rank holds whole, served to
 * the engine as a source. Samples are float32 in the caller's arrays and widened to double as
 * the engine reads them. */
#include <math.h>
#include <string.h>

#include "core/status.h"
#include "parallel/ctx.h"
#include "parallel/layer_engine.h"

static mq_status array_samples(void *user, mq_samples which, size_t first, size_t count,
                               double *buf, mq_error *err) {
  const mq_layer_arrays *a = user;
  const float *x = which == MQ_SAMPLES_XQ && a->Xq != NULL ? a->Xq : a->X;
  (void)err;
  for (size_t k = 0; k < count * a->cols; k++) buf[k] = x[first * a->cols + k];
  return MQ_OK;
}

static mq_status array_weight_rows(void *user, size_t first, size_t count, float *W,
                                   mq_error *err) {
  const mq_layer_arrays *a = user;
  (void)err;
  memcpy(W, a->W + first * a->cols, count * a->cols * sizeof *W);
  return MQ_OK;
}

static mq_status array_matrix(void *user, mq_matrix which, double *buf, mq_error *err) {
  const mq_layer_arrays *a = user;
  (void)err;
  memcpy(buf, which == MQ_MATRIX_H ? a->H : a->G, a->cols * a->cols * sizeof *buf);
  return MQ_OK;
}

static mq_status check_finite(const char *name, const char *what, const float *v, size_t n,
                              mq_error *err) {
  for (size_t k = 0; k < n; k++)
    if (!isfinite(v[k]))
      return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: %s[%zu] is not finite", name,
                      what, k);
  return MQ_OK;
}

/* Local: what the arrays must satisfy (the same on every rank). */
static mq_status check_arrays(const mq_layer_arrays *a, mq_error *err) {
  const char *name = a->name != NULL ? a->name : "layer";
  mq_status st = MQ_OK;
  if (a->rows == 0 || a->cols == 0 || a->W == NULL)
    return mq__fail(err, MQ_EUSAGE, __FILE__, __LINE__, "%s: W [rows, cols] is empty", name);
  if (a->n > 0 ? a->X == NULL : a->H == NULL)
    return mq__fail(err, MQ_EUSAGE, __FILE__, __LINE__,
                    "%s: give samples X (n > 0) or H (n = 0)", name);
  st = check_finite(name, "W", a->W, a->rows * a->cols, err);
  if (st == MQ_OK && a->n > 0) st = check_finite(name, "X", a->X, a->n * a->cols, err);
  if (st == MQ_OK && a->n > 0 && a->Xq != NULL)
    st = check_finite(name, "Xq", a->Xq, a->n * a->cols, err);
  return st;
}

mq_status mq_quantize_layer_arrays(mq_ctx *ctx, const mq_layer_arrays *a,
                                   const mq_quant_options *opts, mq_layer_result *res,
                                   size_t *row0) {
  mq_status st = mq_agree(ctx->comm, check_arrays(a, &ctx->err));
  if (st != MQ_OK) return st;
  mq_layer_source src = {
      .desc = {.name = a->name != NULL ? a->name : "layer", .rows = a->rows, .cols = a->cols,
               .n = a->n, .has_x = a->n > 0, .has_xq = a->n > 0 && a->Xq != NULL,
               .has_h = a->n == 0, .has_g = a->n == 0 && a->G != NULL},
      .read_samples = array_samples, .read_weight_rows = array_weight_rows,
      .read_matrix = array_matrix, .user = (void *)a};
  return mq_quantize_layer(ctx, &src, opts, res, row0);
}

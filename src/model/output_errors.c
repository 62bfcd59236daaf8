#include "model/output_errors.h"

#include <math.h>
#include <string.h>

#include "core/measure.h"
#include "core/mem.h"
#include "core/status.h"
#include "parallel/ctx.h"

struct mq_output_errors {
  const mq_llama_config *cfg;
  size_t T, nw;
  mq_llama_tap tap;
  size_t window;                 /* the window the products belong to */
  int quantized;                 /* the stream: 0 full precision, 1 quantized */
  float *fp[MQ_LIN_COUNT];       /* armed: the full-precision product of the window [T, out] */
  double *sums[MQ_LIN_COUNT];    /* armed: per window Σ(y − ŷ)², Σy² [nw, 2] */
};

/* The tap: the full-precision product is kept until the quantized stream's arrives. */
static void observe(void *user, mq_llama_linear which, const float *y, size_t T, size_t out) {
  mq_output_errors *oe = user;
  if (oe->fp[which] == NULL) return; /* not armed */
  float *fp = oe->fp[which];
  if (!oe->quantized) {
    memcpy(fp, y, T * out * sizeof *fp);
    return;
  }
  double e = 0.0, ref = 0.0; /* fixed order: the same bits wherever the window runs */
  for (size_t k = 0; k < T * out; k++) {
    double d = (double)fp[k] - (double)y[k];
    e += d * d;
    ref += (double)fp[k] * (double)fp[k];
  }
  oe->sums[which][2 * oe->window] = e;
  oe->sums[which][2 * oe->window + 1] = ref;
}

mq_status mq_output_errors_create(const mq_llama_config *cfg, size_t seqlen, size_t nw,
                                  mq_output_errors **out, mq_error *err) {
  mq_status st = MQ_OK;
  mq_output_errors *oe = mq_calloc(1, sizeof *oe);
  *out = NULL;
  MQ_CHECK_ALLOC(err, oe, sizeof *oe);
  *oe = (mq_output_errors){.cfg = cfg, .T = seqlen, .nw = nw};
  oe->tap = (mq_llama_tap){.observe = observe, .user = oe};
  *out = oe;
cleanup:
  return st;
}

static void disarm(mq_output_errors *oe, mq_llama_linear which) {
  mq_free(oe->fp[which]);
  mq_free(oe->sums[which]);
  oe->fp[which] = NULL;
  oe->sums[which] = NULL;
}

void mq_output_errors_free(mq_output_errors **poe) {
  mq_output_errors *oe = *poe;
  if (oe == NULL) return;
  for (int k = 0; k < MQ_LIN_COUNT; k++) disarm(oe, (mq_llama_linear)k);
  mq_free(oe);
  *poe = NULL;
}

mq_status mq_output_errors_arm(mq_output_errors *oe, mq_llama_linear which, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = 0, cols = 0;
  mq_llama_linear_shape(oe->cfg, which, &rows, &cols);
  disarm(oe, which);
  oe->fp[which] = mq_alloc(oe->T * rows + 1, sizeof *oe->fp[which]);
  oe->sums[which] = mq_calloc(2 * oe->nw + 1, sizeof *oe->sums[which]);
  if (oe->fp[which] == NULL || oe->sums[which] == NULL) {
    disarm(oe, which);
    MQ_FAIL(err, MQ_EFAIL, "out of memory allocating %zu bytes (output errors)",
            oe->T * rows * sizeof(float));
  }
cleanup:
  return st;
}

int mq_output_errors_armed(const mq_output_errors *oe) {
  for (int k = 0; oe != NULL && k < MQ_LIN_COUNT; k++)
    if (oe->fp[k] != NULL) return 1;
  return 0;
}

const mq_llama_tap *mq_output_errors_tap(mq_output_errors *oe) { return &oe->tap; }

void mq_output_errors_window(mq_output_errors *oe, size_t w, int quantized) {
  oe->window = w;
  oe->quantized = quantized;
}

/* Every rank's per-window sums, in window order, on every rank: all [2·nwin]. */
static mq_status gather_windows(mq_output_errors *oe, mq_ctx *ctx, const double *mine,
                                double **all, size_t *nwin, mq_error *err) {
  mq_status st = MQ_OK;
  int *counts = mq_alloc(2 * (size_t)ctx->size, sizeof *counts), n = (int)(2 * oe->nw);
  *all = NULL;
  /* agreed before the first collective: a rank without counts must not leave the others in it */
  MQ_AGREE(ctx->comm, counts ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                                "out of memory (output errors)"));
  MPI_Allgather(&n, 1, MPI_INT, counts, 1, MPI_INT, ctx->comm);
  int *displs = counts + ctx->size, total = 0;
  for (int r = 0; r < ctx->size; r++) {
    displs[r] = total;
    total += counts[r];
  }
  *all = mq_alloc((size_t)total + 1, sizeof **all);
  MQ_AGREE(ctx->comm, *all ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                              "out of memory (output errors)"));
  mq__ctx_count(ctx, (size_t)n * sizeof *mine);
  MPI_Allgatherv(mine, n, MPI_DOUBLE, *all, counts, displs, MPI_DOUBLE, ctx->comm);
  *nwin = (size_t)total / 2;
cleanup:
  mq_free(counts);
  return st;
}

mq_status mq_output_errors_finish_range(mq_output_errors *oe, mq_ctx *ctx, mq_llama_linear first,
                                        mq_llama_linear last, size_t n, double *err_out,
                                        double *rel_err) {
  mq_status st = MQ_OK;
  double *all = NULL, e = 0.0, ref = 0.0;
  size_t nwin = 0;
  /* this rank's windows, each one's sums over the linears in order (the same bits anywhere) */
  double *mine = mq_calloc(2 * oe->nw + 1, sizeof *mine);
  MQ_AGREE(ctx->comm, mine ? MQ_OK : mq__fail(&ctx->err, MQ_EFAIL, __FILE__, __LINE__,
                                              "out of memory (output errors)"));
  for (size_t w = 0; w < oe->nw; w++)
    for (int k = (int)first; k <= (int)last; k++)
      for (int j = 0; j < 2 && oe->sums[k] != NULL; j++) mine[2 * w + j] += oe->sums[k][2 * w + j];
  MQ_CHECK(gather_windows(oe, ctx, mine, &all, &nwin, &ctx->err));
  for (size_t w = 0; w < nwin; w++) { /* window order: the same bits on any rank count */
    e += all[2 * w];
    ref += all[2 * w + 1];
  }
  mq_err_accum acc = {.err_sum = e, .ref_sum = ref, .n = n};
  *err_out = mq_err_value(&acc);
  *rel_err = mq_err_relative(&acc);
cleanup:
  mq_free(all);
  mq_free(mine);
  for (int k = (int)first; k <= (int)last; k++) disarm(oe, (mq_llama_linear)k);
  return st;
}

mq_status mq_output_errors_finish(mq_output_errors *oe, mq_ctx *ctx, mq_llama_linear which,
                                  size_t n, double *err_out, double *rel_err) {
  return mq_output_errors_finish_range(oe, ctx, which, which, n, err_out, rel_err);
}

/* The problem-file source of the layer job (layer_job.h): samples, rows of W and matrices read
 * from a layer-problem file with the readers of io/h5problem.h. */
#include "cli/layer_job.h"

static mq_status h5_samples(void *ctx, char which, size_t first, size_t count, double *buf,
                            mq_error *err) {
  mq_h5_source_ctx *c = ctx;
  return mq_h5_read_samples(c->pf, c->index, which, first, count, buf, err);
}

static mq_status h5_weight_rows(void *ctx, size_t first, size_t count, float *W, mq_error *err) {
  mq_h5_source_ctx *c = ctx;
  return mq_h5_read_weight_rows(c->pf, c->index, first, count, W, err);
}

static mq_status h5_matrix(void *ctx, char which, double *buf, mq_error *err) {
  mq_h5_source_ctx *c = ctx;
  return mq_h5_read_matrix(c->pf, c->index, which, buf, err);
}

static mq_status h5_h_rows(void *ctx, size_t first, size_t count, double *buf, mq_error *err) {
  mq_h5_source_ctx *c = ctx;
  return mq_h5_read_matrix_rows(c->pf, c->index, first, count, buf, err);
}

static mq_status h5_h_diag(void *ctx, double *diag, mq_error *err) {
  mq_h5_source_ctx *c = ctx;
  return mq_h5_read_matrix_diag(c->pf, c->index, diag, err);
}

void mq_layer_source_h5(mq_layer_source *src, mq_h5_source_ctx *ctx, mq_h5_problem *pf,
                        size_t index) {
  *ctx = (mq_h5_source_ctx){.pf = pf, .index = index};
  *src = (mq_layer_source){.info = *mq_h5_problem_layer(pf, index), .layer_id = index,
                           .read_samples = h5_samples, .read_weight_rows = h5_weight_rows,
                           .read_matrix = h5_matrix, .read_h_rows = h5_h_rows,
                           .read_h_diag = h5_h_diag, .ctx = ctx};
}

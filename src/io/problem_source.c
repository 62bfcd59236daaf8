#include "io/problem_source.h"

static mq_status h5_samples(void *user, mq_samples which, size_t first, size_t count,
                            double *buf, mq_error *err) {
  mq_problem_source_ctx *c = user;
  return mq_h5_read_samples(c->pf, c->index, which, first, count, buf, err);
}

static mq_status h5_weight_rows(void *user, size_t first, size_t count, float *W,
                                mq_error *err) {
  mq_problem_source_ctx *c = user;
  return mq_h5_read_weight_rows(c->pf, c->index, first, count, W, err);
}

static mq_status h5_matrix(void *user, mq_matrix which, double *buf, mq_error *err) {
  mq_problem_source_ctx *c = user;
  return mq_h5_read_matrix(c->pf, c->index, which, buf, err);
}

static mq_status h5_h_rows(void *user, size_t first, size_t count, double *buf, mq_error *err) {
  mq_problem_source_ctx *c = user;
  return mq_h5_read_matrix_rows(c->pf, c->index, first, count, buf, err);
}

static mq_status h5_h_diag(void *user, double *diag, mq_error *err) {
  mq_problem_source_ctx *c = user;
  return mq_h5_read_matrix_diag(c->pf, c->index, diag, err);
}

void mq_problem_source(mq_layer_source *src, mq_problem_source_ctx *ctx, mq_h5_problem *pf,
                       size_t index) {
  *ctx = (mq_problem_source_ctx){.pf = pf, .index = index};
  *src = (mq_layer_source){.desc = *mq_h5_problem_layer(pf, index), .layer_id = index,
                           .read_samples = h5_samples, .read_weight_rows = h5_weight_rows,
                           .read_matrix = h5_matrix, .read_h_rows = h5_h_rows,
                           .read_h_diag = h5_h_diag, .user = ctx};
}

#include "parallel/dist_factorizer.h"

#include "core/status.h"
#include "parallel/ctx.h"
#include "parallel/traffic.h"

/* The distributed H's fill: its panel sums are the sums' traffic, not the factor's. */
static mq_status fill_counted(mq_dist_factorizer_ctx *c, const size_t *perm, mq_error *err) {
  mq_traffic_phase prev = mq_traffic_enter(MQ_TRAFFIC_SUMS);
  mq_status st = c->fill != NULL
                     ? c->fill(c->fill_ctx, c->f, perm, err)
                     : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "internal error: no H");
  st = mq_agree(c->ctx->comm, st); /* the fill reads files: agree before the collective */
  mq_traffic_enter(prev);
  return st;
}

static mq_status dist_factor(void *ctx, double *H, size_t cols, const size_t *perm,
                             double *lambda, int *raises, const char *layer, mq_error *err) {
  mq_dist_factorizer_ctx *c = ctx;
  mq_status st = MQ_OK;
  mq_traffic_enter(MQ_TRAFFIC_FACTOR);
  if (c->f == NULL) st = mq_dist_factor_create(c->ctx, cols, c->nb, &c->f, err);
  if (st == MQ_OK && H != NULL) mq_dist_factor_set_from(c->f, H, perm); /* only its blocks */
  else if (st == MQ_OK) st = fill_counted(c, perm, err);
  if (st == MQ_OK) st = mq_dist_factor_cholesky(c->f, lambda, raises, layer, err);
  mq_traffic_enter(c->refit_panels ? MQ_TRAFFIC_REFIT : MQ_TRAFFIC_SWEEP);
  return st;
}

static mq_status dist_agree(void *ctx, mq_status mine) {
  mq_dist_factorizer_ctx *c = ctx;
  return mq_agree(c->ctx->comm, mine);
}

static mq_status dist_panel(void *ctx, size_t i1, size_t width, double *panel, mq_error *err) {
  mq_dist_factorizer_ctx *c = ctx;
  mq_status st = mq_dist_factor_panel(c->f, i1, width, panel, err);
  /* the refit's last panel starts at column 0: the sweep's come next */
  if (i1 == 0 && mq_traffic_current() == MQ_TRAFFIC_REFIT) mq_traffic_enter(MQ_TRAFFIC_SWEEP);
  return st;
}

void mq_dist_factorizer(mq_factorizer *out, mq_dist_factorizer_ctx *ctx, mq_ctx *mctx, int nb) {
  *ctx = (mq_dist_factorizer_ctx){.ctx = mctx, .nb = nb, .f = NULL, .refit_panels = 0};
  *out = (mq_factorizer){.factor = dist_factor, .panel = dist_panel, .full = NULL,
                         .agree = dist_agree, .ctx = ctx};
}

void mq_dist_factorizer_filled(mq_factorizer *out, mq_dist_factorizer_ctx *ctx, mq_ctx *mctx,
                               int nb, mq_dist_fill_fn fill, void *fill_ctx) {
  mq_dist_factorizer(out, ctx, mctx, nb);
  ctx->fill = fill;
  ctx->fill_ctx = fill_ctx;
}

void mq_dist_factorizer_release(mq_dist_factorizer_ctx *ctx) { mq_dist_factor_destroy(&ctx->f); }

/* One layer through the engine: the plan, this rank's rows, H (and G) from the cache, the
 * samples or the source, the factor and sweep on those rows, every row's Ŵ where the caller or
 * the errors need it, the errors. Each step that can fail on one rank is agreed on before the
 * next collective (ctx.h). */
#include <math.h>
#include <string.h>

#include "core/layer.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/optq.h"
#include "core/status.h"
#include "parallel/ctx.h"
#include "parallel/dist_factorizer.h"
#include "parallel/layer_engine_internal.h"
#include "parallel/partition.h"
#include "parallel/traffic.h"

/* Samples per chunk of the sums for sources every rank reads. Fixed, not derived from the rank
 * count: each chunk's DSYRK is computed identically wherever it runs, and the exact sum makes
 * the order of the chunks irrelevant: that is what makes H bit-identical across rank counts. */
enum { MQ_CHUNK = 1024 };
enum { MQ_SCALAPACK_NB = 64 }; /* block size of the block-cyclic layout */

/* Qronos' first targets and V from a distributed H's panels: the refit's traffic. */
static mq_status qronos_panels_counted(void *ctx, const size_t *perm, const float *Wcm,
                                       size_t rows, double *target, float *V, mq_error *err) {
  mq_traffic_phase prev = mq_traffic_enter(MQ_TRAFFIC_REFIT);
  mq_status st = mq__qronos_from_samples(ctx, perm, Wcm, rows, target, V, err);
  mq_traffic_enter(prev);
  return st;
}

/* Traffic: the sweep's by default; the factorizer's callbacks name the factor, the refit and
 * the sums of a distributed H (dist_factorizer.h), and the caller's phase is restored. */
mq_status mq__factor_and_sweep(layer_run *r, double *H, double *G, const mq_quant_options *o,
                               mq_layer_result *res, mq_rows_info *info, mq_error *err) {
  mq_factorizer dist;
  mq_dist_factorizer_ctx dist_ctx;
  int scalapack = r->plan.factor == MQ_PLAN_SCALAPACK;
  mq_traffic_phase outer = mq_traffic_enter(MQ_TRAFFIC_SWEEP);
  if (scalapack && H == NULL)
    mq_dist_factorizer_filled(&dist, &dist_ctx, r->ctx, MQ_SCALAPACK_NB,
                              r->desc->has_x ? mq__fill_from_samples : mq__fill_from_rows, r);
  else if (scalapack)
    mq_dist_factorizer(&dist, &dist_ctx, r->ctx, MQ_SCALAPACK_NB);
  /* core/layer.c refits after the factor (fetching R's panels) when it has V: Qronos with G
   * (replicated H) or X̃ ≠ X (distributed H) */
  if (scalapack)
    dist_ctx.refit_panels = o->method == MQ_METHOD_QRONOS && (H != NULL ? G != NULL
                                                                        : r->desc->has_xq);
  mq_rows_input in = {.name = r->desc->name, .layer_id = r->src->layer_id, .rows = r->nrows,
                       .cols = r->desc->cols, .W = r->W, .H = H, .G = G, .row0 = r->row0,
                       .factorizer = scalapack ? &dist : NULL, .Hdiag = r->Hdiag,
                       .qronos_panels = qronos_panels_counted, .qronos_ctx = r,
                       .qronos_mismatch = r->desc->has_xq};
  mq_status st = mq_quantize_rows(&in, o, res, info, err);
  if (scalapack) mq_dist_factorizer_release(&dist_ctx);
  st = mq_agree(r->comm, st);
  mq_traffic_enter(outer);
  return st;
}

/* Local: this rank's rows (whole blocks of MQ_ROW_BLOCK rows, so results do not depend on the
 * rank count), the sample buffers, W's rows (and every row where the plan needs them). */
static mq_status run_open(layer_run *r, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, rows = r->desc->rows;
  size_t nblocks = (rows + MQ_ROW_BLOCK - 1) / MQ_ROW_BLOCK, b0, nb;
  mq_partition(nblocks, r->ctx->size, r->ctx->rank, &b0, &nb);
  r->row0 = b0 * MQ_ROW_BLOCK < rows ? b0 * MQ_ROW_BLOCK : rows;
  size_t end = (b0 + nb) * MQ_ROW_BLOCK < rows ? (b0 + nb) * MQ_ROW_BLOCK : rows;
  r->nrows = end - r->row0;
  r->chunk = r->x->samples_local ? r->x->chunk : MQ_CHUNK;
  if (r->chunk == 0) r->chunk = 1; /* an expert no token reached: buffers of one sample */
  r->W = mq_alloc(r->nrows * cols + 1, sizeof *r->W);
  r->X = mq_alloc(r->chunk * cols, sizeof *r->X);
  r->Xq = mq_alloc(r->chunk * cols, sizeof *r->Xq);
  MQ_CHECK_ALLOC(err, r->W && r->X && r->Xq, r->nrows * cols * sizeof *r->W);
  MQ_CHECK(r->src->read_weight_rows(r->src->user, r->row0, r->nrows, r->W, err));
  if (r->plan.every_row) {
    r->W_every_row = mq_alloc(rows * cols + 1, sizeof *r->W_every_row);
    MQ_CHECK_ALLOC(err, r->W_every_row, rows * cols * sizeof *r->W_every_row);
    MQ_CHECK(r->src->read_weight_rows(r->src->user, 0, rows, r->W_every_row, err));
  }
cleanup:
  return st;
}

static void run_close(layer_run *r) {
  mq_free(r->gram_H);
  mq_free(r->gram_G);
  mq_free(r->gram_XX);
  mq_free(r->Hdiag);
  mq_free(r->W);
  mq_free(r->W_every_row);
  mq_free(r->X);
  mq_free(r->Xq);
}

/* Collective. Distributed H: only its diagonal now (the factor reads its blocks later). */
static mq_status load_h_diagonal(layer_run *r, mq_error *err) {
  mq_status st = MQ_OK;
  r->Hdiag = mq_alloc(r->desc->cols, sizeof *r->Hdiag);
  st = r->Hdiag ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (diag H)");
  MQ_AGREE(r->comm, st);
  if (r->plan.h_home == MQ_H_SAMPLE_PANELS) return mq__sums_diag(r, r->Hdiag, err);
  st = mq_agree(r->comm, r->src->read_h_diag(r->src->user, r->Hdiag, err));
cleanup:
  return st;
}

/* Collective. H (and G, Hxx where not NULL) from the cache or the samples, or as the source
 * gives them (H_given: a copy for the errors, which need H before it is factored). The cache is
 * used only when every rank holds it (a rank whose copy failed for lack of memory sums again,
 * and so must all the others: the sums are collective). */
static mq_status load_matrices(layer_run *r, double *H, double *G, double *Hxx,
                               double **H_given, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols;
  if (r->desc->has_x) {
    int hit = mq_hessian_cache_fetch(r->x->cache, cols, H, G, Hxx);
    MPI_Allreduce(MPI_IN_PLACE, &hit, 1, MPI_INT, MPI_MIN, r->comm);
    if (hit) return MQ_OK;
    st = mq__sums_gram(r, 0, r->desc->n, H, G, Hxx, err);
    if (st == MQ_OK) mq_hessian_cache_store(r->x->cache, cols, H, G, Hxx);
    return st;
  }
  st = r->src->read_matrix(r->src->user, MQ_MATRIX_H, H, err);
  if (st == MQ_OK && r->plan.need_g) st = r->src->read_matrix(r->src->user, MQ_MATRIX_G, G, err);
  if (st == MQ_OK) {
    *H_given = mq_memdup(H, cols * cols, sizeof(double));
    if (*H_given == NULL) st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H copy)");
  }
  return mq_agree(r->comm, st);
}

/* Collective. Seconds and flops of the phases, the maximum over ranks; bytes and messages
 * handed to MPI summed; the traffic since `before` (this layer's, not these reductions'), the
 * maximum over ranks per phase and the bytes summed. */
enum { NT = MQ_TRAFFIC_PHASES };
static void reduce_phases(const layer_run *r, const mq_rows_info *info, const mq_traffic *before,
                          double t_hessian, double t_errors, double t_total, mq_layer_phases *ph) {
  const mq_rows_timing *t = &info->timing;
  mq_traffic sent;
  mq_traffic_since(before, &sent);
  double mine[8 + 2 * NT] = {t_hessian, t->factor, t->refit, t->sweep, t->sweep_gemm, t->pack,
                             t_errors, t_total};
  memcpy(mine + 8, sent.bytes, sizeof sent.bytes);
  memcpy(mine + 8 + NT, sent.messages, sizeof sent.messages);
  /* flops of the row-split phases are this rank's share: summed */
  double local[6] = {r->ctx->sent.bytes, t->refit_flops, t->sweep_flops, t->sweep_gemm_flops,
                     r->ctx->sent.messages, 0};
  for (int p = 0; p < NT; p++) local[5] += sent.bytes[p];
  double worst[8 + 2 * NT], total[6];
  MPI_Allreduce(mine, worst, 8 + 2 * NT, MPI_DOUBLE, MPI_MAX, r->comm);
  MPI_Allreduce(local, total, 6, MPI_DOUBLE, MPI_SUM, r->comm);
  double cols = (double)r->desc->cols, n = (double)r->desc->n;
  *ph = (mq_layer_phases){
      .hessian = worst[0], .factor = worst[1], .refit = worst[2], .sweep = worst[3],
      .sweep_gemm = worst[4], .pack = worst[5], .errors = worst[6], .total = worst[7],
      .hessian_flops = n * cols * cols * (r->qronos && r->desc->has_xq ? 3.0 : 1.0),
      .factor_flops = t->factor_flops, .refit_flops = total[1], .sweep_flops = total[2],
      .sweep_gemm_flops = total[3], .comm_bytes = total[0], .comm_messages = total[4],
      .plan_factor = r->plan.factor, .plan_h_home = r->plan.h_home,
      .plan_errors = r->plan.errors, .traffic_bytes_all = total[5],
      .traffic_measured = mq_traffic_measured()};
  memcpy(ph->traffic_bytes, worst + 8, sizeof ph->traffic_bytes);
  memcpy(ph->traffic_messages, worst + 8 + NT, sizeof ph->traffic_messages);
}

/* The matrices the plan needs whole on this rank. */
typedef struct layer_matrices {
  double *H;       /* [cols, cols], NULL when distributed; consumed by the factor */
  double *G;       /* Qronos' G, or XᵀX̃ for the Gram errors */
  double *Hxx;     /* XᵀX for the Gram errors */
  double *H_given; /* the source's H, kept for the errors */
} layer_matrices;

static void matrices_free(layer_matrices *m) {
  mq_free(m->H);
  mq_free(m->G);
  mq_free(m->Hxx);
  mq_free(m->H_given);
}

/* Local. */
static mq_status matrices_alloc(const layer_run *r, layer_matrices *m, mq_error *err) {
  size_t cols = r->desc->cols;
  int whole = r->plan.h_home == MQ_H_REPLICATED, grams = r->plan.errors == MQ_ERRORS_GRAMS;
  int need_g = (r->plan.need_g && whole) || grams;
  /* calloc: every entry is written, and big blocks come faulted in at once (core/mem.h); left
   * to first touch, H's lower triangle, which the SYRK never writes, faulted in the mirror */
  m->H = whole ? mq_calloc(cols * cols, sizeof *m->H) : NULL;
  m->G = need_g ? mq_calloc(cols * cols, sizeof *m->G) : NULL;
  m->Hxx = grams ? mq_calloc(cols * cols, sizeof *m->Hxx) : NULL;
  if ((m->H || !whole) && (m->G || !need_g) && (m->Hxx || !grams)) return MQ_OK;
  return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                  cols * cols * sizeof *m->H);
}

/* Local. The factor consumes H (and Qronos' G): the Gram errors keep copies. */
static mq_status keep_grams(layer_run *r, layer_matrices *m, mq_error *err) {
  size_t cols = r->desc->cols;
  r->gram_H = mq_memdup(m->H, cols * cols, sizeof(double));
  r->gram_G = r->plan.need_g ? mq_memdup(m->G, cols * cols, sizeof(double)) : m->G;
  r->gram_XX = m->Hxx;
  if (!r->plan.need_g) m->G = NULL;
  m->Hxx = NULL;
  if (r->gram_H && r->gram_G) return MQ_OK;
  return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H copy)");
}

/* Collective. Every row's Ŵ on every rank, where the caller or the errors need it. */
static mq_status every_row_dequantized(layer_run *r, const mq_layer_result *res, float **What,
                                       mq_error *err) {
  mq_status st = MQ_OK;
  if (r->x->dequant_out == NULL && !r->x->samples_local) return MQ_OK;
  *What = r->x->dequant_out != NULL
              ? r->x->dequant_out
              : mq_alloc(r->desc->rows * r->desc->cols, sizeof **What);
  st = *What ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (Ŵ)");
  MQ_AGREE(r->comm, st);
  st = mq__gather_dequantized(r, res, *What, err);
cleanup:
  return st;
}

mq_status mq__layer_engine_run(mq_ctx *ctx, const mq_layer_source *src,
                               const mq_layer_extras *extras, const mq_quant_options *opts,
                               mq_layer_result *res, size_t *row0, mq_layer_phases *phases) {
  mq_status st = MQ_OK;
  mq_error *err = &ctx->err;
  static const mq_layer_extras none = {0};
  layer_run r = {.ctx = ctx, .comm = ctx->comm, .src = src, .x = extras ? extras : &none,
                 .desc = &src->desc, .qronos = opts->method == MQ_METHOD_QRONOS,
                 .gram_f32 = opts->gram_f32};
  mq_quant_options o = *opts;
  mq_layer_result trace = {0};
  mq_rows_info info = {0};
  layer_matrices m = {0};
  float *What_every_row = NULL; /* x->dequant_out or owned */
  double t_start = mq_wtime();
  mq__ctx_counters_reset(ctx);
  mq_traffic before; /* traffic.h: this layer's is what is counted from here on */
  mq_traffic_snapshot(&before);
  mq_traffic_phase outer = mq_traffic_enter(MQ_TRAFFIC_OTHER);
  mq__layer_plan_make(ctx, src, r.x, &o, &r.plan);
  mq__layer_plan_log(&r.plan, src->desc.name);
  st = matrices_alloc(&r, &m, err);
  if (st == MQ_OK) st = run_open(&r, err);
  MQ_AGREE(r.comm, st);
  double t0 = mq_wtime();
  mq_traffic_enter(MQ_TRAFFIC_SUMS); /* --lambda auto's trial factors and sweeps: their own */
  if (r.plan.lambda_auto) MQ_CHECK(mq__choose_lambda(&r, &o, &trace, err));
  if (r.plan.h_home != MQ_H_REPLICATED) MQ_CHECK(load_h_diagonal(&r, err));
  else MQ_CHECK(load_matrices(&r, m.H, m.G, m.Hxx, &m.H_given, err));
  if (r.plan.errors == MQ_ERRORS_GRAMS) MQ_AGREE(r.comm, keep_grams(&r, &m, err));
  double t_hessian = mq_wtime() - t0;
  MQ_CHECK(mq__factor_and_sweep(&r, m.H, m.G, &o, res, &info, err));
  res->seconds += t_hessian;
  t0 = mq_wtime();
  mq_traffic_enter(MQ_TRAFFIC_GATHER);
  MQ_CHECK(every_row_dequantized(&r, res, &What_every_row, err));
  MQ_CHECK(mq__finish_errors(&r, m.H_given, What_every_row, &o, &info, res, err));
  double t_errors = mq_wtime() - t0;
  res->samples = res->routed = (int64_t)src->desc.n;
  res->lambda_ncand = trace.lambda_ncand;
  memcpy(res->lambda_cand, trace.lambda_cand, sizeof res->lambda_cand);
  memcpy(res->lambda_heldout, trace.lambda_heldout, sizeof res->lambda_heldout);
  *row0 = r.row0;
  mq_traffic_enter(MQ_TRAFFIC_OTHER);
  if (phases != NULL)
    reduce_phases(&r, &info, &before, t_hessian, t_errors, mq_wtime() - t_start, phases);
cleanup:
  mq_traffic_enter(outer);
  mq_rows_info_free(&info);
  matrices_free(&m);
  if (What_every_row != r.x->dequant_out) mq_free(What_every_row);
  run_close(&r);
  return st;
}

mq_status mq_quantize_layer(mq_ctx *ctx, const mq_layer_source *src, const mq_quant_options *opts,
                            mq_layer_result *res, size_t *row0) {
  mq_status st = mq_agree(ctx->comm, mq_quant_options_check(opts, &ctx->err));
  if (st != MQ_OK) return st;
  return mq__layer_engine_run(ctx, src, NULL, opts, res, row0, NULL);
}

#include "core/layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/factor.h"
#include "core/factorizer.h"
#include "core/grid.h"
#include "core/hessian.h"
#include "core/log.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/optq.h"
#include "core/pack.h"
#include "core/progress.h"
#include "core/qronos.h"
#include "core/status.h"

/* Rows per tile of the transposes between row-major W and the column-major working copy. */
enum { MQ_TILE = 64 };

/* Everything the quantizers share, in processing order. */
typedef struct layer_work {
  size_t rows, cols, ngroups, group_len;
  size_t row0;       /* global index of the first row (stochastic key) */
  size_t *perm;      /* [cols] original column of processing position p */
  size_t *pos;       /* [cols] inverse of perm */
  uint8_t *dead;     /* [cols] */
  int32_t *col_group;/* [cols] group of processing position p */
  float *Wcm;        /* [cols, rows] column-major, processing order, dead columns zero */
  uint8_t *codes;    /* [cols, rows] */
  double *diag;      /* [cols] distributed H only: its diagonal, dead entries patched to 1 */
  mq_grid grid;
} layer_work;

static double mean_of(const double *v, size_t n) {
  double s = 0.0;
  for (size_t k = 0; k < n; k++) s += v[k];
  return s / (double)n;
}

void mq_layer_result_free(mq_layer_result *res) {
  mq_free(res->qweight);
  mq_free(res->scales);
  mq_free(res->zeros);
  mq_free(res->g_idx);
  res->qweight = NULL;
  res->scales = NULL;
  res->zeros = NULL;
  res->g_idx = NULL;
}

static void work_free(layer_work *w) {
  mq_free(w->perm);
  mq_free(w->pos);
  mq_free(w->dead);
  mq_free(w->col_group);
  mq_free(w->Wcm);
  mq_free(w->codes);
  mq_free(w->diag);
}

static mq_status result_alloc(mq_layer_result *res, size_t rows, size_t cols,
                              const mq_quant_options *o, mq_error *err) {
  mq_status st = MQ_OK;
  memset(res, 0, sizeof *res);
  res->rows = rows;
  res->cols = cols;
  res->bits = o->bits;
  res->ngroups = mq_ngroups(cols, o->group_size);
  res->words = mq_packed_words(cols, o->bits);
  res->qweight = mq_alloc(rows * res->words, sizeof *res->qweight);
  res->scales = mq_alloc(rows * res->ngroups, sizeof *res->scales);
  res->zeros = mq_alloc(rows * res->ngroups, sizeof *res->zeros);
  res->g_idx = mq_alloc(cols, sizeof *res->g_idx);
  MQ_CHECK_ALLOC(err, res->qweight && res->scales && res->zeros && res->g_idx,
                 rows * res->words * 4);
  res->err = res->rel_err = res->bound_linf = NAN;
  res->err_floor = o->method == MQ_METHOD_QRONOS ? NAN : 0.0; /* Qronos: needs the samples */
cleanup:
  return st;
}

/* Dead inputs, processing order, group map, the column-major working copy of W. */
static mq_status work_prepare(layer_work *w, const float *W, double *H,
                              const mq_quant_options *o, uint64_t layer_id, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = w->rows, cols = w->cols;
  w->perm = mq_alloc(cols, sizeof *w->perm);
  w->pos = mq_alloc(cols, sizeof *w->pos);
  w->dead = mq_alloc(cols, sizeof *w->dead);
  w->col_group = mq_alloc(cols, sizeof *w->col_group);
  w->Wcm = mq_alloc(cols * rows, sizeof *w->Wcm);
  w->codes = mq_alloc(cols * rows, sizeof *w->codes);
  MQ_CHECK_ALLOC(err, w->perm && w->pos && w->dead && w->col_group && w->Wcm && w->codes,
                 cols * rows * sizeof(float));
  /* RTN has no sweep, so no order. */
  int act_order = o->act_order && o->method != MQ_METHOD_RTN;
  if (H != NULL) {
    mq_hessian_fix_dead(H, cols, w->dead);
    mq_hessian_order(H, cols, act_order, w->perm);
  } else { /* distributed H: the diagonal, patched here; the factorizer patches its copy */
    for (size_t j = 0; j < cols; j++) {
      w->dead[j] = w->diag[j] == 0.0;
      if (w->dead[j]) w->diag[j] = 1.0;
    }
    mq_hessian_order_diag(w->diag, cols, act_order, w->perm);
  }
  for (size_t p = 0; p < cols; p++) w->pos[w->perm[p]] = p;
  w->group_len = o->group_size > 0 ? (size_t)o->group_size : cols;
  int original_groups = o->static_groups || o->method == MQ_METHOD_RTN;
  for (size_t p = 0; p < cols; p++)
    w->col_group[p] = (int32_t)((original_groups ? w->perm[p] : p) / w->group_len);
  /* Transpose in tiles: W's rows are read in short runs that stay in cache. */
  for (size_t r0 = 0; r0 < rows; r0 += MQ_TILE) {
    size_t r1 = r0 + MQ_TILE < rows ? r0 + MQ_TILE : rows;
    for (size_t p = 0; p < cols; p++) {
      size_t c = w->perm[p];
      float *dst = w->Wcm + p * rows;
      for (size_t r = r0; r < r1; r++) dst[r] = w->dead[c] ? 0.0f : W[r * cols + c];
    }
  }
  mq_grid_init(&w->grid, o->bits, o->sym, o->mse, o->rounding == MQ_ROUND_STOCHASTIC, o->seed,
               layer_id);
  w->grid.scale_fp16 = o->scale_fp16;
cleanup:
  return st;
}

/* Group parameters over the ORIGINAL column order from the (dead-zeroed) weights: static groups
 * and RTN (ALGORITHMS §2). */
static mq_status original_order_params(const layer_work *w, mq_layer_result *res,
                                       mq_error *err) {
  mq_status st = MQ_OK;
  float *tmp = mq_alloc(w->group_len, sizeof *tmp);
  MQ_CHECK_ALLOC(err, tmp, w->group_len * sizeof *tmp);
  for (size_t r = 0; r < w->rows; r++) {
    for (size_t grp = 0; grp < res->ngroups; grp++) {
      size_t c0 = grp * w->group_len, c1 = c0 + w->group_len;
      if (c1 > w->cols) c1 = w->cols;
      for (size_t c = c0; c < c1; c++) tmp[c - c0] = w->Wcm[w->pos[c] * w->rows + r];
      mq_grid_params(&w->grid, tmp, c1 - c0, 1, &res->scales[r * res->ngroups + grp],
                     &res->zeros[r * res->ngroups + grp]);
    }
  }
cleanup:
  mq_free(tmp);
  return st;
}

/* factor·Σ_rows dᵀAd over D [rows, cols], tile by tile (MQ_ROW_TILE rows), each tile's share
 * stored at tiles[tile·MQ_TILE_COUNT + slot] (tiles may be NULL). */
static double tiled_quadratic_forms(const double *A, const double *D, size_t rows, size_t cols,
                                    double *scratch, double factor, double *tiles, int slot) {
  double total = 0.0;
  for (size_t r0 = 0, tile = 0; r0 < rows; r0 += MQ_ROW_TILE, tile++) {
    size_t nr = rows - r0 < MQ_ROW_TILE ? rows - r0 : MQ_ROW_TILE;
    double t = factor * mq_quadratic_form_sum(A, D + r0 * cols, nr, cols, scratch);
    if (tiles != NULL) tiles[tile * MQ_TILE_COUNT + (size_t)slot] = t;
    total += t;
  }
  return total;
}

/* RTN: round every weight; loss = Σ dᵀ(H+λI)d; bound = Σ_rows Σ_ij |A_ij|·δ_i·δ_j/4, which holds
 * for any rounding error |d_i| ≤ δ_i/2. */
static mq_status rtn_quantize(layer_work *w, const double *H, mq_layer_result *res,
                              double *tiles, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = w->rows, cols = w->cols;
  double *D = mq_alloc(rows * cols, sizeof *D);
  double *S = mq_alloc(rows * cols, sizeof *S);
  double *A = mq_alloc(cols * cols, sizeof *A);
  MQ_CHECK_ALLOC(err, D && S && A, cols * cols * sizeof *A);
  for (size_t p = 0; p < cols; p++) {
    size_t grp = (size_t)w->col_group[p];
    for (size_t r = 0; r < rows; r++) {
      float x = w->Wcm[p * rows + r];
      float scale = res->scales[r * res->ngroups + grp];
      int32_t zero = res->zeros[r * res->ngroups + grp];
      int code = mq_grid_code(&w->grid, x, scale, zero, w->row0 + r, w->perm[p], &res->clipped);
      w->codes[p * rows + r] = (uint8_t)code;
      D[r * cols + w->perm[p]] = (double)x - mq_grid_value(scale, zero, code);
    }
  }
  for (size_t k = 0; k < cols * cols; k++) A[k] = H[k];
  for (size_t j = 0; j < cols; j++) A[j * cols + j] += res->lambda;
  res->loss = tiled_quadratic_forms(A, D, rows, cols, S, 1.0, tiles, MQ_TILE_LOSS);
  for (size_t r = 0; r < rows; r++) /* D becomes the step δ of every entry */
    for (size_t p = 0; p < cols; p++)
      D[r * cols + w->perm[p]] = res->scales[r * res->ngroups + (size_t)w->col_group[p]];
  for (size_t k = 0; k < cols * cols; k++) A[k] = fabs(A[k]);
  res->bound_l2 = tiled_quadratic_forms(A, D, rows, cols, S, 0.25, tiles, MQ_TILE_BOUND);
cleanup:
  mq_free(D);
  mq_free(S);
  mq_free(A);
  return st;
}

/* Qronos before the factor: step 1's targets and V = W(G−H)ᵀ (G = NULL: X̃ = X, no V). */
static mq_status qronos_prepare(const mq_rows_input *in, layer_work *w, double *target,
                                float **V, mq_error *err) {
  mq_status st = MQ_OK;
  if (in->H == NULL) { /* distributed H: from panels, never whole; collective, so a failed
                         allocation of V is the callback's to agree on (V NULL with mismatch) */
    if (in->qronos_mismatch) *V = mq_alloc(w->cols * w->rows + 1, sizeof **V);
    return in->qronos_panels(in->qronos_ctx, w->perm, w->Wcm, w->rows, target, *V, err);
  }
  mq_qronos_first_target(in->H, in->G != NULL ? in->G : in->H, w->cols, w->perm, w->Wcm, w->rows,
                         target);
  if (in->G == NULL) return MQ_OK;
  *V = mq_alloc(w->cols * w->rows, sizeof **V);
  MQ_CHECK_ALLOC(err, *V, w->cols * w->rows * sizeof **V);
  MQ_CHECK(mq_qronos_mismatch(in->G, in->H, w->cols, w->perm, w->Wcm, w->rows, *V, err));
cleanup:
  return st;
}

/* OPTQ and Qronos: factor H+λI in place (escalating λ on failure), then the blocked sweep. */
static mq_status sweep_quantize(const mq_rows_input *in, layer_work *w,
                                const mq_quant_options *o, mq_layer_result *res,
                                mq_rows_info *info, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = w->rows, cols = w->cols;
  mq_rows_timing *t = &info->timing;
  int qronos = o->method == MQ_METHOD_QRONOS;
  double *target = NULL;
  float *V = NULL; /* becomes T after the factor */
  mq_local_factor local_ctx;
  mq_factorizer local;
  const mq_factorizer *f = in->factorizer;
  if (f == NULL) { /* every rank factors its own copy, in place */
    mq_local_factorizer(&local, &local_ctx);
    f = &local;
  }
  if (qronos) {
    target = mq_alloc(rows, sizeof *target);
    if (target == NULL)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                    rows * sizeof *target);
    MQ_CHECK(mq_factorizer_agree(f, st)); /* the panels of a distributed H are collective */
    double t0 = mq_wtime();
    st = qronos_prepare(in, w, target, &V, err);
    t->refit = mq_wtime() - t0;
  }
  MQ_CHECK(mq_factorizer_agree(f, st)); /* the factor may be collective */
  double t0 = mq_wtime();
  MQ_CHECK(f->factor(f->ctx, in->H, cols, w->perm, &res->lambda, &res->lambda_raises, in->name,
                     err));
  info->R = f->full != NULL ? f->full(f->ctx) : NULL;
  t->factor = mq_wtime() - t0;
  t->factor_flops = (double)cols * (double)cols * (double)cols / 3.0;
  mq_progress_tick(MQ_PROGRESS_FACTOR, 1.0, t->factor_flops); /* progress.h */
  if (V != NULL) {
    t0 = mq_wtime();
    MQ_CHECK(mq_qronos_refit_share(f, cols, V, rows, o->block_size, &info->t_sq, info->tiles,
                                   err));
    t->refit += mq_wtime() - t0;
    t->refit_flops = 3.0 * (double)rows * (double)cols * (double)cols; /* GEMM + TRSM */
  }
  mq_sweep s = {
      .rows = rows, .cols = cols, .W = w->Wcm, .factor = f, .grid = &w->grid,
      .group_size = o->group_size, .static_groups = o->static_groups,
      .col_group = w->col_group, .orig_col = w->perm, .row0 = in->row0,
      .ngroups = res->ngroups, .scales = res->scales, .zeros = res->zeros, .codes = w->codes,
      .block_size = o->block_size < (int)cols ? o->block_size : (int)cols,
      .T = V, .first_target = target, .tiles = info->tiles,
  };
  t0 = mq_wtime();
  MQ_CHECK(mq_optq_sweep(&s, err));
  t->sweep = mq_wtime() - t0;
  t->sweep_gemm = s.gemm_seconds;
  t->sweep_gemm_flops = s.gemm_flops;
  t->sweep_flops = (double)rows * (double)cols * (double)cols;
  res->loss = s.loss;
  res->bound_l2 = qronos ? s.bound - s.bound0 : s.bound; /* Qronos: + err_floor later */
  res->clipped = s.clipped;
  info->e0_sq = s.e0_sq;
  info->bound0 = s.bound0;
cleanup:
  mq_free(target);
  mq_free(V);
  return st;
}

/* Codes back to the original column order, packed; g_idx. */
static mq_status pack_result(const layer_work *w, mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  uint8_t *tile = mq_alloc(MQ_TILE * w->cols, 1); /* [MQ_TILE, cols] codes, original order */
  MQ_CHECK_ALLOC(err, tile, MQ_TILE * w->cols);
  for (size_t r0 = 0; r0 < w->rows; r0 += MQ_TILE) {
    size_t r1 = r0 + MQ_TILE < w->rows ? r0 + MQ_TILE : w->rows;
    for (size_t c = 0; c < w->cols; c++) {
      const uint8_t *src = w->codes + w->pos[c] * w->rows;
      for (size_t r = r0; r < r1; r++) tile[(r - r0) * w->cols + c] = src[r];
    }
    for (size_t r = r0; r < r1; r++)
      mq_pack_row(tile + (r - r0) * w->cols, w->cols, res->bits, res->qweight + r * res->words);
  }
  for (size_t c = 0; c < w->cols; c++) res->g_idx[c] = w->col_group[w->pos[c]];
cleanup:
  mq_free(tile);
  return st;
}

/* Local: the result's arrays, the processing order, dead inputs, λ, static group parameters. */
static mq_status prepare(const mq_rows_input *in, const mq_quant_options *opts, layer_work *w,
                         mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = in->cols;
  MQ_CHECK(result_alloc(res, in->rows, cols, opts, err));
  if (in->H == NULL) { /* distributed H: OPTQ only, its factorizer holds H */
    int qronos_ok = opts->method == MQ_METHOD_QRONOS && in->qronos_panels != NULL;
    if (in->Hdiag == NULL || in->factorizer == NULL ||
        (opts->method != MQ_METHOD_OPTQ && !qronos_ok))
      MQ_FAIL(err, MQ_EFAIL, "internal error: %s: distributed H needs OPTQ or Qronos with its "
              "panels, Hdiag, a factorizer", in->name);
    w->diag = mq_alloc(cols, sizeof *w->diag);
    MQ_CHECK_ALLOC(err, w->diag, cols * sizeof *w->diag);
    memcpy(w->diag, in->Hdiag, cols * sizeof *w->diag);
  }
  MQ_CHECK(work_prepare(w, in->W, in->H, opts, in->layer_id, err));
  w->ngroups = res->ngroups;
  res->lambda = opts->lambda_mode == MQ_LAMBDA_ABSOLUTE ? opts->lambda
                : opts->damp * (in->H != NULL ? mq_hessian_mean_diag(in->H, cols)
                                              : mean_of(w->diag, cols));
  if (opts->static_groups || opts->method == MQ_METHOD_RTN)
    MQ_CHECK(original_order_params(w, res, err));
cleanup:
  return st;
}

mq_status mq_quantize_rows(const mq_rows_input *in, const mq_quant_options *opts,
                            mq_layer_result *res, mq_rows_info *info_out, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = in->rows, cols = in->cols;
  layer_work w = {.rows = rows, .cols = cols, .row0 = in->row0};
  mq_rows_info info = {0};
  double t_start = mq_wtime();
  /* Local preparation; with a collective factorizer every rank agrees on its outcome before
   * the first collective step of the sweep. */
  st = prepare(in, opts, &w, res, err);
  MQ_CHECK(mq_factorizer_agree(opts->method == MQ_METHOD_RTN ? NULL : in->factorizer, st));
  info.timing.prepare = mq_wtime() - t_start;
  info.ntiles = (rows + MQ_ROW_TILE - 1) / MQ_ROW_TILE;
  info.tiles = mq_calloc(info.ntiles * MQ_TILE_COUNT + 1, sizeof *info.tiles);
  MQ_CHECK(mq_factorizer_agree(opts->method == MQ_METHOD_RTN ? NULL : in->factorizer,
                               info.tiles ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                                             "out of memory (tile sums)")));
  if (opts->method == MQ_METHOD_RTN) {
    double t0 = mq_wtime();
    MQ_CHECK(rtn_quantize(&w, in->H, res, info.tiles, err));
    info.timing.sweep = mq_wtime() - t0;
  } else {
    MQ_CHECK(sweep_quantize(in, &w, opts, res, &info, err));
  }
  double t0 = mq_wtime();
  MQ_CHECK(pack_result(&w, res, err));
  info.timing.pack = mq_wtime() - t0;
  res->seconds = mq_wtime() - t_start;
cleanup:
  if (info_out != NULL) { /* hand the processing order over instead of freeing it */
    info.perm = w.perm;
    w.perm = NULL;
    *info_out = info;
  } else {
    mq_free(info.tiles);
  }
  work_free(&w);
  return st;
}

void mq_rows_info_free(mq_rows_info *info) {
  mq_free(info->perm);
  mq_free(info->tiles);
  info->perm = NULL;
  info->tiles = NULL;
}

mq_status mq_layer_result_dequantize(const mq_layer_result *res, float *What, mq_error *err) {
  mq_status st = MQ_OK;
  uint8_t *codes = mq_alloc(res->cols, 1);
  MQ_CHECK_ALLOC(err, codes, res->cols);
  for (size_t r = 0; r < res->rows; r++) {
    mq_unpack_row(res->qweight + r * res->words, res->cols, res->bits, codes);
    for (size_t c = 0; c < res->cols; c++) {
      size_t g = (size_t)res->g_idx[c];
      What[r * res->cols + c] = (float)mq_grid_value(res->scales[r * res->ngroups + g], res->zeros[r * res->ngroups + g],
                        codes[c]);
    }
  }
cleanup:
  mq_free(codes);
  return st;
}

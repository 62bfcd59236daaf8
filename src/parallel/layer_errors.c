/* The error pass of one layer (plan.errors): err, rel_err, err_floor and bound_linf from the
 * samples (each rank its rows against all samples, or with split samples every row against its
 * own), from the Gram matrices, or for layers given as H from H (streamed from its rows when H
 * is distributed); then every scalar reduced over the ranks. */
#include <math.h>
#include <string.h>

#include "core/blas.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/optq.h"
#include "core/status.h"
#include "parallel/layer_engine_internal.h"

mq_status mq__gather_dequantized(const layer_run *r, const mq_layer_result *res,
                                 float *What_every_row, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols;
  int nranks = r->ctx->size;
  int *counts = mq_alloc((size_t)nranks * 2, sizeof *counts);
  float *mine = mq_alloc(r->nrows * cols + 1, sizeof *mine);
  st = counts && mine ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (Ŵ)");
  if (st == MQ_OK) st = mq_layer_result_dequantize(res, mine, err);
  MQ_AGREE(r->comm, st);
  int my_count = (int)(r->nrows * cols), *displs = counts + nranks;
  MPI_Allgather(&my_count, 1, MPI_INT, counts, 1, MPI_INT, r->comm);
  displs[0] = 0;
  for (int k = 1; k < nranks; k++) displs[k] = displs[k - 1] + counts[k - 1];
  mq__ctx_count(r->ctx, (size_t)my_count * sizeof *mine);
  MPI_Allgatherv(mine, my_count, MPI_FLOAT, What_every_row, counts, displs, MPI_FLOAT, r->comm);
cleanup:
  mq_free(counts);
  mq_free(mine);
  return st;
}

void mq__weight_delta_free(weight_delta *d) {
  mq_free(d->Wd);
  mq_free(d->D);
  *d = (weight_delta){0};
}

mq_status mq__weight_delta_make(const layer_run *r, const mq_layer_result *res,
                                const float *What_every_row, weight_delta *d, mq_error *err) {
  mq_status st = MQ_OK;
  int all = What_every_row != NULL;
  size_t n = (all ? r->desc->rows : r->nrows) * r->desc->cols;
  const float *W = all ? r->W_every_row : r->W;
  float *What = all ? NULL : mq_alloc(n + 1, sizeof *What);
  d->rows = all ? r->desc->rows : r->nrows;
  d->Wd = mq_alloc(n + 1, sizeof *d->Wd);
  d->D = mq_alloc(n + 1, sizeof *d->D);
  MQ_CHECK_ALLOC(err, d->Wd && d->D && (all || What), n * sizeof *d->D);
  if (!all) MQ_CHECK(mq_layer_result_dequantize(res, What, err));
  const float *Wq = all ? What_every_row : What;
  for (size_t k = 0; k < n; k++) {
    d->Wd[k] = W[k];
    d->D[k] = (double)W[k] - (double)Wq[k];
  }
cleanup:
  mq_free(What);
  return st;
}

mq_status mq__sample_errors(layer_run *r, size_t first, size_t count, const weight_delta *d,
                            mq_err_accum *acc, mq_linf_accum *linf, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = d->rows, cols = r->desc->cols, ch = r->chunk, k0, k1, start;
  int has_xq = r->desc->has_xq;
  double *Y = mq_alloc(ch * (rows + 1), sizeof *Y);
  double *diff = mq_alloc(ch * (cols + rows + 1), sizeof *diff);
  MQ_CHECK_ALLOC(err, Y && diff, ch * (cols + rows + 1) * sizeof *diff);
  if (r->x->samples_local) {
    mq__chunks(r, first, count, &k0, &k1);
  } else { /* every rank measures its rows against all samples */
    k0 = first / ch;
    k1 = count ? (first + count - 1) / ch + 1 : k0;
  }
  for (size_t k = k0; k < k1; k++) {
    size_t c = mq__chunk_len(r, first, count, k, &start);
    MQ_CHECK(r->src->read_samples(r->src->user, MQ_SAMPLES_X, start, c, r->X, err));
    if (has_xq) MQ_CHECK(r->src->read_samples(r->src->user, MQ_SAMPLES_XQ, start, c, r->Xq, err));
    mq_err_accumulate(acc, r->X, has_xq ? r->Xq : NULL, c, cols, d->Wd, d->D, rows, Y, diff);
    if (linf != NULL) mq_linf_accumulate(linf, has_xq ? r->Xq : r->X, c, diff);
  }
cleanup:
  mq_free(Y);
  mq_free(diff);
  return st;
}

/* Local. err and ref sums of this rank's rows from H's rows, read 64 at a time, when H is
 * distributed: Σ_r d_rᵀ H d_r = Σ_i Σ_r D[r,i]·(H[i,:]·d_r), never holding H whole. */
static mq_status errors_from_h_rows(layer_run *r, const weight_delta *d, mq_err_accum *acc,
                                    mq_error *err) {
  enum { PANEL = 64 };
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, rows = d->rows;
  double *P = mq_alloc(PANEL * cols, sizeof *P), *Y = mq_alloc(PANEL * rows + 1, sizeof *Y);
  MQ_CHECK_ALLOC(err, P && Y, PANEL * cols * sizeof *P);
  acc->n = 1; /* H is already divided by n */
  for (size_t i0 = 0; i0 < cols; i0 += PANEL) {
    size_t nr = cols - i0 < PANEL ? cols - i0 : PANEL;
    MQ_CHECK(r->src->read_h_rows(r->src->user, i0, nr, P, err));
    if (rows == 0) continue;
    const double *M[2] = {d->D, d->Wd};
    double *sum[2] = {&acc->err_sum, &acc->ref_sum};
    for (int k = 0; k < 2; k++) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)rows, (int)cols, 1.0,
                  P, (int)cols, M[k], (int)cols, 0.0, Y, (int)rows);
      for (size_t i = 0; i < nr; i++)
        for (size_t q = 0; q < rows; q++) *sum[k] += M[k][q * cols + i0 + i] * Y[i * rows + q];
    }
  }
cleanup:
  mq_free(P);
  mq_free(Y);
  return st;
}

/* What each tile of MQ_ROW_TILE rows of this rank contributes: the sweep's sums (optq.h) and,
 * where the error route goes row by row (the Grams, H), the error sums. [ntiles, T_COUNT] */
enum { T_LOSS, T_BOUND, T_E0, T_T, T_ERR, T_REF, T_MISMATCH, T_COUNT };

/* Local. The Grams' or H's error sums tile by tile: each tile's into tiles[·, T_ERR..], their
 * sum into acc. One BLAS shape per tile: the same bits on any number of ranks. With the
 * Grams, scratch starts with E [cols, cols] (measure.h), formed once here, and the run's copy
 * of G becomes F (the error pass is its last use). */
static void tiled_error_sums(const layer_run *r, const double *H_given, const weight_delta *d,
                             mq_err_accum *acc, double *tiles, double *scratch) {
  size_t rows = d->rows, cols = r->desc->cols;
  double *E = scratch;
  acc->n = 1;
  if (r->plan.errors == MQ_ERRORS_GRAMS) {
    mq_err_grams_prepare(r->gram_H, r->gram_G, r->gram_XX, cols, E);
    scratch += cols * cols;
  }
  for (size_t r0 = 0, t = 0; r0 < rows; r0 += MQ_ROW_TILE, t++) {
    size_t nr = rows - r0 < MQ_ROW_TILE ? rows - r0 : MQ_ROW_TILE;
    mq_err_accum a = {0};
    if (r->plan.floor_only) /* ‖(X − X̃)w‖² alone: err is the caller's */
      a.mismatch_sum = mq_quadratic_form_sum(E, d->Wd + r0 * cols, nr, cols, scratch);
    else if (r->plan.errors == MQ_ERRORS_GRAMS)
      mq_err_from_grams(&a, r->gram_H, r->gram_G, r->gram_XX, E, d->Wd + r0 * cols,
                        d->D + r0 * cols, nr, cols, scratch);
    else
      mq_err_from_hessian(&a, H_given, d->Wd + r0 * cols, d->D + r0 * cols, nr, cols, scratch);
    double *v = tiles + t * T_COUNT;
    v[T_ERR] = a.err_sum;
    v[T_REF] = a.ref_sum;
    v[T_MISMATCH] = a.mismatch_sum;
    acc->err_sum += a.err_sum;
    acc->ref_sum += a.ref_sum;
    acc->mismatch_sum += a.mismatch_sum;
  }
}

/* Local. The error sums of this rank's share by the plan's route (by tile into tiles for the
 * Grams and H). */
static mq_status local_error_sums(layer_run *r, const double *H_given, const weight_delta *d,
                                  mq_err_accum *acc, mq_linf_accum *linf, double *tiles,
                                  mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols;
  double *scratch = NULL;
  switch (r->plan.errors) {
    case MQ_ERRORS_NONE:
    case MQ_ERRORS_BY_CALLER:
      acc->n = 1; /* err stays NaN */
      break;
    case MQ_ERRORS_GRAMS:
      scratch = mq_alloc(cols * cols + MQ_ROW_TILE * cols + 1, sizeof *scratch);
      MQ_CHECK_ALLOC(err, scratch, (cols * cols + MQ_ROW_TILE * cols) * sizeof *scratch);
      tiled_error_sums(r, H_given, d, acc, tiles, scratch);
      break;
    case MQ_ERRORS_SAMPLES:
      st = mq__sample_errors(r, 0, r->desc->n, d, acc, linf, err);
      break;
    case MQ_ERRORS_H_ROWS:
      st = errors_from_h_rows(r, d, acc, err);
      break;
    case MQ_ERRORS_H:
      scratch = mq_alloc(MQ_ROW_TILE * cols + 1, sizeof *scratch);
      MQ_CHECK_ALLOC(err, scratch, MQ_ROW_TILE * cols * sizeof *scratch);
      tiled_error_sums(r, H_given, d, acc, tiles, scratch);
      break;
  }
cleanup:
  mq_free(scratch);
  return st;
}

/* The scalars every rank contributes to; summed in one reduction. */
enum { S_ERR, S_REF, S_MISMATCH, S_LOSS, S_BOUND, S_E0, S_T, S_CLIPPED, S_COUNT };

/* Local. This rank's tiles: the sweep's sums from info (bound without Qronos' column 0). */
static void sweep_tiles(const layer_run *r, const mq_rows_info *info, double *tiles) {
  for (size_t t = 0; t < info->ntiles; t++) {
    const double *s = info->tiles + t * MQ_TILE_COUNT;
    double *v = tiles + t * T_COUNT;
    v[T_LOSS] = s[MQ_TILE_LOSS];
    v[T_BOUND] = s[MQ_TILE_BOUND] - (r->qronos ? s[MQ_TILE_BOUND0] : 0.0);
    v[T_E0] = s[MQ_TILE_E0];
    v[T_T] = s[MQ_TILE_T];
  }
}

/* Collective. Every rank's tiles added in the layer's row order (ranks hold contiguous rows in
 * rank order) into sum[S_*]: the same bits on any number of ranks. The error columns replace
 * the reduction's only when `errors_tiled`. */
static mq_status ordered_tile_sums(layer_run *r, const double *tiles, size_t ntiles,
                                   int errors_tiled, double *sum, mq_error *err) {
  mq_status st = MQ_OK;
  int P = r->ctx->size, n = (int)(ntiles * T_COUNT), total = 0;
  int *cnt = mq_alloc(2 * (size_t)P, sizeof *cnt);
  double *all = NULL;
  if (cnt != NULL) MPI_Allgather(&n, 1, MPI_INT, cnt, 1, MPI_INT, r->comm);
  MQ_AGREE(r->comm, cnt ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                           "out of memory (tile sums)"));
  int *disp = cnt + P;
  for (int k = 0; k < P; k++) {
    disp[k] = total;
    total += cnt[k];
  }
  all = mq_alloc((size_t)total + 1, sizeof *all);
  MQ_AGREE(r->comm, all ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                           "out of memory (tile sums)"));
  mq__ctx_count(r->ctx, (size_t)n * sizeof *all);
  MPI_Allgatherv(tiles, n, MPI_DOUBLE, all, cnt, disp, MPI_DOUBLE, r->comm);
  double s[T_COUNT] = {0};
  for (int k = 0; k < total; k++) s[k % T_COUNT] += all[k];
  sum[S_LOSS] = s[T_LOSS];
  sum[S_BOUND] = s[T_BOUND];
  sum[S_E0] = s[T_E0];
  sum[S_T] = s[T_T];
  if (errors_tiled) {
    sum[S_ERR] = s[T_ERR];
    sum[S_REF] = s[T_REF];
    sum[S_MISMATCH] = s[T_MISMATCH];
  }
cleanup:
  mq_free(cnt);
  mq_free(all);
  return st;
}

mq_status mq__finish_errors(layer_run *r, const double *H_given, const float *What_every_row,
                            const mq_quant_options *o, const mq_rows_info *info,
                            mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = r->nrows, n = r->desc->n;
  weight_delta d = {0};
  mq_linf_accum linf = {0};
  mq_err_accum acc = {0};
  int measure = r->plan.errors != MQ_ERRORS_NONE && r->plan.errors != MQ_ERRORS_BY_CALLER;
  int grams = r->plan.errors == MQ_ERRORS_GRAMS;
  int errors_tiled = grams || r->plan.errors == MQ_ERRORS_H;
  double *tiles = mq_calloc(info->ntiles * T_COUNT + 1, sizeof *tiles);
  /* the ℓ∞ bound needs U = R⁻¹ whole (RTN: U = I, or a replicated factor) and this rank's
   * rows against every sample */
  int want_linf = measure && o->rounding == MQ_ROUND_STOCHASTIC && r->desc->has_x &&
                  !r->qronos && (o->method == MQ_METHOD_RTN || info->R != NULL) &&
                  !r->x->samples_local;
  /* split samples: every row against this rank's samples, except from the Grams (all samples) */
  int every_row = r->x->samples_local && !grams;
  if (tiles == NULL)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (tile sums)");
  else
    sweep_tiles(r, info, tiles);
  if (st == MQ_OK && measure)
    st = mq__weight_delta_make(r, res, every_row ? What_every_row : NULL, &d, err);
  if (st == MQ_OK && want_linf)
    st = mq_linf_init(&linf, res, info->perm, o->method == MQ_METHOD_RTN ? NULL : info->R, n, err);
  if (st == MQ_OK)
    st = local_error_sums(r, H_given, &d, &acc, want_linf ? &linf : NULL, tiles, err);
  MQ_AGREE(r->comm, st);
  double mine[S_COUNT] = {acc.err_sum, acc.ref_sum, acc.mismatch_sum, res->loss, res->bound_l2,
                          info->e0_sq, info->t_sq, (double)res->clipped};
  double sum[S_COUNT], linf_mine = 0.0, linf_all = 0.0, secs = res->seconds;
  MPI_Allreduce(mine, sum, S_COUNT, MPI_DOUBLE, MPI_SUM, r->comm);
  /* the sums that go by rows: in row order instead, whatever the split */
  MQ_CHECK(ordered_tile_sums(r, tiles, info->ntiles, errors_tiled, sum, err));
  for (size_t row = 0; want_linf && row < rows; row++) linf_mine = fmax(linf_mine, linf.rowmax[row]);
  MPI_Allreduce(&linf_mine, &linf_all, 1, MPI_DOUBLE, MPI_MAX, r->comm);
  MPI_Allreduce(&secs, &res->seconds, 1, MPI_DOUBLE, MPI_MAX, r->comm);
  /* the sums are per sample already when they come from H or the Grams */
  size_t per = r->desc->has_x && !grams ? n : 1;
  mq_err_accum total = {.err_sum = sum[S_ERR], .ref_sum = sum[S_REF], .n = per};
  res->err = measure && !r->plan.floor_only ? mq_err_value(&total) : NAN;
  res->rel_err = measure && !r->plan.floor_only ? mq_err_relative(&total) : NAN;
  res->loss = sum[S_LOSS];
  res->bound_l2 = sum[S_BOUND];
  res->clipped = (int64_t)sum[S_CLIPPED];
  if (want_linf) res->bound_linf = mq_linf_bound(linf_all, n);
  if (r->qronos) {
    /* ‖(X − X̃)w‖²/n is known from the samples, or is 0 when X̃ = X; unknown for H+G files */
    int known = measure && (r->desc->has_x || !r->desc->has_g);
    double mismatch = r->desc->has_x ? sum[S_MISMATCH] / (double)per : 0.0;
    res->err_floor = known ? sum[S_E0] + mismatch - sum[S_T] : NAN;
    res->bound_l2 += res->err_floor;
  }
cleanup:
  mq_free(tiles);
  mq_linf_free(&linf);
  mq__weight_delta_free(&d);
  return st;
}

/* The measuring half of a layer job (layer_job_internal.h): how the samples are chunked and
 * dealt to the ranks, and the error pass — err, rel_err, err_floor and bound_linf from the
 * samples (each rank its rows against all samples, or for data-parallel sources all rows
 * against its samples) or, for H-only layers, from H (streamed from its rows when H is
 * distributed). */
#include <math.h>
#include <string.h>

#include "cli/layer_job_internal.h"
#include "core/blas.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/status.h"
#include "dist/partition.h"

/* All ranks agree on the worst status, so none enters the next collective alone. */
mq_status mq__job_agree(const job *j, mq_status st) {
  int mine = (int)st, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MAX, j->comm);
  return (mq_status)all;
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Chunk k is [k·chunk, (k+1)·chunk) ∩ [first, first+count): where chunks fall never depends on
 * the rank count. This rank's chunks are [*k0, *k1): a contiguous share of the range for problem
 * files, the chunks it holds for data-parallel sources. */
void mq__job_chunks(const job *j, size_t first, size_t count, size_t *k0, size_t *k1) {
  size_t ch = j->chunk, lo = first / ch, hi = count ? (first + count - 1) / ch + 1 : lo;
  if (j->src->samples_local) {
    size_t a = j->src->local_first, b = a + j->src->local_count;
    *k0 = min_size(max_size(a / ch, lo), hi);
    *k1 = max_size(min_size((b + ch - 1) / ch, hi), *k0);
    if (j->src->local_count == 0) *k1 = *k0;
    return;
  }
  size_t c0, nc;
  mq_partition(hi - lo, j->nranks, j->rank, &c0, &nc);
  *k0 = lo + c0;
  *k1 = *k0 + nc;
}

size_t mq__job_chunk_len(const job *j, size_t first, size_t count, size_t k, size_t *start) {
  *start = max_size(first, k * j->chunk);
  return min_size(first + count, (k + 1) * j->chunk) - *start;
}

/* Collective. Every rank's rows of Ŵ, dequantized, into What_all [rows, cols] on every rank. */
mq_status mq__job_gather_dequantized(const job *j, const mq_layer_result *res, float *What_all,
                                    mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  int *counts = mq_alloc((size_t)j->nranks * 2, sizeof *counts);
  float *mine = mq_alloc(j->nrows * cols + 1, sizeof *mine);
  st = counts && mine ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (Ŵ)");
  if (st == MQ_OK) st = mq_layer_result_dequantize(res, mine, err);
  MQ_CHECK(mq__job_agree(j, st));
  int my_count = (int)(j->nrows * cols), *displs = counts + j->nranks;
  MPI_Allgather(&my_count, 1, MPI_INT, counts, 1, MPI_INT, j->comm);
  displs[0] = 0;
  for (int r = 1; r < j->nranks; r++) displs[r] = displs[r - 1] + counts[r - 1];
  MPI_Allgatherv(mine, my_count, MPI_FLOAT, What_all, counts, displs, MPI_FLOAT, j->comm);
cleanup:
  mq_free(counts);
  mq_free(mine);
  return st;
}


void mq__residual_free(residual *r) {
  mq_free(r->Wd);
  mq_free(r->D);
  *r = (residual){0};
}

mq_status mq__residual_make(const job *j, const mq_layer_result *res, const float *What_all,
                               residual *r, mq_error *err) {
  mq_status st = MQ_OK;
  int all = What_all != NULL;
  size_t n = (all ? j->li->rows : j->nrows) * j->li->cols;
  const float *W = all ? j->Wall : j->W;
  float *What = all ? NULL : mq_alloc(n + 1, sizeof *What);
  r->rows = all ? j->li->rows : j->nrows;
  r->Wd = mq_alloc(n + 1, sizeof *r->Wd);
  r->D = mq_alloc(n + 1, sizeof *r->D);
  MQ_CHECK_ALLOC(err, r->Wd && r->D && (all || What), n * sizeof *r->D);
  if (!all) MQ_CHECK(mq_layer_result_dequantize(res, What, err));
  const float *Wq = all ? What_all : What;
  for (size_t k = 0; k < n; k++) {
    r->Wd[k] = W[k];
    r->D[k] = (double)W[k] - (double)Wq[k];
  }
cleanup:
  mq_free(What);
  return st;
}

/* The rows of r against the samples of [first, first+count) this rank measures (all of them
 * for problem files, its own for data-parallel sources): the error sums and, with linf, the ℓ∞
 * statistics. Local (reads only). */
mq_status mq__job_sample_errors(job *j, size_t first, size_t count, const residual *r,
                               mq_err_accum *acc, mq_linf_accum *linf, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = r->rows, cols = j->li->cols, ch = j->chunk, k0, k1, start;
  double *Y = mq_alloc(ch * (rows + 1), sizeof *Y);
  double *diff = mq_alloc(ch * (cols + rows + 1), sizeof *diff);
  MQ_CHECK_ALLOC(err, Y && diff, ch * (cols + rows + 1) * sizeof *diff);
  if (j->src->samples_local) {
    mq__job_chunks(j, first, count, &k0, &k1);
  } else {
    k0 = first / ch;
    k1 = count ? (first + count - 1) / ch + 1 : k0;
  }
  for (size_t k = k0; k < k1; k++) {
    size_t c = mq__job_chunk_len(j, first, count, k, &start);
    MQ_CHECK(j->src->read_samples(j->src->ctx, 'X', start, c, j->X, err));
    if (j->li->has_xq) MQ_CHECK(j->src->read_samples(j->src->ctx, 'Q', start, c, j->Xq, err));
    mq_err_accumulate(acc, j->X, j->li->has_xq ? j->Xq : NULL, c, cols, r->Wd, r->D, rows, Y,
                      diff);
    if (linf != NULL) mq_linf_accumulate(linf, j->li->has_xq ? j->Xq : j->X, c, diff);
  }
cleanup:
  mq_free(Y);
  mq_free(diff);
  return st;
}


/* Local. err and ref sums of this rank's rows from H's rows, read 64 at a time, when H is
 * distributed: Σ_r d_rᵀ H d_r = Σ_i Σ_r D[r,i]·(H[i,:]·d_r), never holding H whole. */
static mq_status err_from_h_rows(job *j, const residual *r, mq_err_accum *acc, mq_error *err) {
  enum { PANEL = 64 };
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, rows = r->rows;
  double *P = mq_alloc(PANEL * cols, sizeof *P), *Y = mq_alloc(PANEL * rows + 1, sizeof *Y);
  MQ_CHECK_ALLOC(err, P && Y, PANEL * cols * sizeof *P);
  acc->n = 1; /* H is already divided by n */
  for (size_t i0 = 0; i0 < cols; i0 += PANEL) {
    size_t nr = cols - i0 < PANEL ? cols - i0 : PANEL;
    MQ_CHECK(j->src->read_h_rows(j->src->ctx, i0, nr, P, err));
    if (rows == 0) continue;
    const double *M[2] = {r->D, r->Wd};
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

/* The scalars every rank contributes to; summed (or maxed) in one reduction each. */
enum { S_ERR, S_REF, S_MISMATCH, S_LOSS, S_BOUND, S_E0, S_T, S_CLIPPED, S_COUNT };

/* Collective. err, rel_err, err_floor (Qronos), bound_linf (stochastic) over all ranks' rows,
 * from the samples or, for H-only files, from H. */
mq_status mq__job_finish_errors(job *j, const double *Hgiven, const float *What_all,
                               const mq_quant_options *o, const mq_layer_aux *aux, int measure,
                               mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = j->nrows, cols = j->li->cols, n = j->li->n;
  double *scratch = NULL;
  residual r = {0};
  mq_linf_accum linf = {0};
  mq_err_accum acc = {0};
  /* the ℓ∞ bound needs U = R⁻¹ whole: RTN (U = I) or a replicated factor, and this rank's
   * rows against every sample */
  int want_linf = measure && o->rounding == MQ_ROUND_STOCHASTIC && j->li->has_x && !j->qronos &&
                  (o->method == MQ_METHOD_RTN || aux->R != NULL) && !j->src->samples_local;
  int gram = j->eHxx != NULL; /* errors from the Grams: this rank's rows, all samples */
  if (measure)
    st = mq__residual_make(j, res, j->src->samples_local && !gram ? What_all : NULL, &r, err);
  if (st == MQ_OK && want_linf)
    st = mq_linf_init(&linf, res, aux->perm, o->method == MQ_METHOD_RTN ? NULL : aux->R, n, err);
  if (st == MQ_OK && !measure) {
    acc.n = 1; /* err stays NaN below */
  } else if (st == MQ_OK && gram) {
    scratch = mq_alloc(cols * cols + rows * cols + 1, sizeof *scratch);
    st = scratch ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (errors)");
    if (st == MQ_OK) mq_err_from_grams(&acc, j->eH, j->eG, j->eHxx, r.Wd, r.D, rows, cols, scratch);
  } else if (st == MQ_OK && j->li->has_x) {
    st = mq__job_sample_errors(j, 0, n, &r, &acc, want_linf ? &linf : NULL, err);
  } else if (st == MQ_OK && j->Hdiag != NULL) {
    st = err_from_h_rows(j, &r, &acc, err);
  } else if (st == MQ_OK) {
    scratch = mq_alloc(rows * cols + 1, sizeof *scratch);
    st = scratch ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (errors)");
    if (st == MQ_OK) mq_err_from_hessian(&acc, Hgiven, r.Wd, r.D, rows, cols, scratch);
  }
  MQ_CHECK(mq__job_agree(j, st));
  double mine[S_COUNT] = {acc.err_sum, acc.ref_sum, acc.mismatch_sum, res->loss, res->bound_l2,
                          aux->e0_sq, aux->t_sq, (double)res->clipped};
  double sum[S_COUNT], linf_mine = 0.0, linf_all = 0.0, secs = res->seconds;
  MPI_Allreduce(mine, sum, S_COUNT, MPI_DOUBLE, MPI_SUM, j->comm);
  for (size_t row = 0; want_linf && row < rows; row++) linf_mine = fmax(linf_mine, linf.rowmax[row]);
  MPI_Allreduce(&linf_mine, &linf_all, 1, MPI_DOUBLE, MPI_MAX, j->comm);
  MPI_Allreduce(&secs, &res->seconds, 1, MPI_DOUBLE, MPI_MAX, j->comm);
  /* the sums are per sample already when they come from H or the Grams */
  size_t per = j->li->has_x && !gram ? n : 1;
  mq_err_accum total = {.err_sum = sum[S_ERR], .ref_sum = sum[S_REF], .n = per};
  res->err = measure ? mq_err_value(&total) : NAN;
  res->rel_err = measure ? mq_err_relative(&total) : NAN;
  res->loss = sum[S_LOSS];
  res->bound_l2 = sum[S_BOUND];
  res->clipped = (int64_t)sum[S_CLIPPED];
  if (want_linf) res->bound_linf = mq_linf_bound(linf_all, n);
  if (j->qronos) {
    /* ‖(X − X̃)w‖²/n is known from the samples, or is 0 when X̃ = X; unknown for H+G files */
    int known = measure && (j->li->has_x || !j->li->has_g);
    double mismatch = j->li->has_x ? sum[S_MISMATCH] / (double)per : 0.0;
    res->err_floor = known ? sum[S_E0] + mismatch - sum[S_T] : NAN;
    res->bound_l2 += res->err_floor;
  }
cleanup:
  mq_linf_free(&linf);
  mq__residual_free(&r);
  mq_free(scratch);
  return st;
}


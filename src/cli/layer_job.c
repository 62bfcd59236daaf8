#include "cli/layer_job_internal.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include "core/blas.h"
#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/optq.h"
#include "core/qronos.h"
#include "core/status.h"
#include "dist/comm_stats.h"
#include "dist/dist_factorizer.h"
#include "dist/exact_sum.h"
#include "dist/partition.h"

/* Samples per chunk of the Hessian sums. Fixed, not derived from the rank count: each chunk's
 * DSYRK is computed identically wherever it runs, and the exact sum makes the order of the
 * chunks irrelevant — that is what makes H bit-identical across rank counts. */
enum { MQ_CHUNK = 1024 };
enum { MQ_SCALAPACK_NB = 64 }; /* block size of the block-cyclic layout */

static const double auto_damps[MQ_LAMBDA_AUTO_CANDIDATES] = {1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1};

static double max_abs(const double *v, size_t n) {
  double m = 0.0;
  for (size_t k = 0; k < n; k++) m = fmax(m, fabs(v[k]));
  return m;
}

/* Reads chunk k of X̃ (and X with need_x). */
static mq_status read_chunk(job *j, size_t first, size_t count, size_t k, int need_x,
                            size_t *len, mq_error *err) {
  mq_status st = MQ_OK;
  size_t start;
  *len = mq__job_chunk_len(j, first, count, k, &start);
  MQ_CHECK(j->src->read_samples(j->src->ctx, 'Q', start, *len, j->Xq, err));
  if (need_x) MQ_CHECK(j->src->read_samples(j->src->ctx, 'X', start, *len, j->X, err));
cleanup:
  return st;
}

/* Pass 1 of the exact sums: the largest |x̃| and |x| over all ranks' samples, which bound every
 * partial sum (|Σ x_i x_j| ≤ count·max²). Status travels in the same reduction. */
static mq_status sample_bounds(job *j, size_t first, size_t count, int need_x, double *mx,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t k0, k1, len, cols = j->li->cols;
  double mine[3] = {0, 0, 0}, all[3];
  mq__job_chunks(j, first, count, &k0, &k1);
  for (size_t c = k0; c < k1 && st == MQ_OK; c++) {
    st = read_chunk(j, first, count, c, need_x, &len, err);
    if (st != MQ_OK) break;
    mine[1] = fmax(mine[1], max_abs(j->Xq, len * cols));
    if (need_x) mine[2] = fmax(mine[2], max_abs(j->X, len * cols));
  }
  mine[0] = (double)st;
  MPI_Allreduce(mine, all, 3, MPI_DOUBLE, MPI_MAX, j->comm);
  mx[0] = all[1];
  mx[1] = all[2];
  return (mq_status)all[0];
}

static void unpack_upper(const double *v, size_t cols, double *P) {
  for (size_t i = 0, k = 0; i < cols; i++)
    for (size_t jj = i; jj < cols; jj++) P[i * cols + jj] = v[k++];
}

/* One chunk's upper-triangle Gram AᵀA of A [len, cols], added exactly, packed row by row. */
static void add_gram(mq_exact_sum *s, const double *A, size_t len, size_t cols, double *P) {
  int n = (int)cols;
  /* beta = 0: the chunk's own sum, no clearing pass */
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int)len, 1.0, A, n, 0.0, P, n);
  for (size_t i = 0, k = 0; i < cols; k += cols - i, i++)
    mq_exact_sum_add_range(s, k, P + i * cols + i, cols - i);
}

/* Pass 2: this rank's chunks, each DSYRK'd (and for G GEMM'd) alone and added exactly; the
 * upper triangles of H (and XᵀX) go into their accumulators packed. */
static mq_status local_sums(job *j, size_t first, size_t count, mq_exact_sum *sh,
                            mq_exact_sum *sg, mq_exact_sum *sxx, double *P, mq_error *err) {
  mq_status st = MQ_OK;
  size_t k0, k1, len, cols = j->li->cols;
  int n = (int)cols;
  mq__job_chunks(j, first, count, &k0, &k1);
  for (size_t c = k0; c < k1; c++) {
    MQ_CHECK(read_chunk(j, first, count, c, sg != NULL || sxx != NULL, &len, err));
    add_gram(sh, j->Xq, len, cols, P);
    if (sxx != NULL) add_gram(sxx, j->X, len, cols, P);
    if (sg != NULL) {
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, (int)len, 1.0, j->Xq, n, j->X,
                  n, 0.0, P, n);
      mq_exact_sum_add(sg, P);
    }
  }
cleanup:
  return st;
}

/* Collective. The upper triangle packed in v, symmetric in M [cols, cols], divided by count. */
static mq_status reduce_gram(job *j, mq_exact_sum *s, size_t count, double *v, double *M,
                             mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  MQ_CHECK(mq_exact_sum_allreduce(s, j->comm, err));
  mq_exact_sum_result(s, v);
  memset(M, 0, cols * cols * sizeof *M);
  unpack_upper(v, cols, M);
  mq_hessian_finalize(M, cols, count);
cleanup:
  return st;
}

/* Collective. H = X̃ᵀX̃/count (and G = X̃ᵀX/count, Hxx = XᵀX/count when not NULL) over samples
 * [first, first+count), bit-identical for any number of ranks. */
static mq_status accumulate(job *j, size_t first, size_t count, double *H, double *G,
                            double *Hxx, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, tri = cols * (cols + 1) / 2;
  mq_exact_sum sh = {0}, sg = {0}, sxx = {0};
  double mx[2], *P = NULL, *v = NULL;
  MQ_CHECK(sample_bounds(j, first, count, G != NULL || Hxx != NULL, mx, err));
  double bh = (double)count * mx[0] * mx[0], bg = (double)count * mx[0] * mx[1];
  double bxx = (double)count * mx[1] * mx[1];
  P = mq_alloc(cols * cols, sizeof *P);
  v = mq_alloc(tri, sizeof *v);
  st = P && v ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H sums)");
  if (st == MQ_OK) st = mq_exact_sum_init(&sh, tri, mq_exact_sum_scale(fmax(bh, 1e-300)), err);
  if (st == MQ_OK && G != NULL)
    st = mq_exact_sum_init(&sg, cols * cols, mq_exact_sum_scale(fmax(bg, 1e-300)), err);
  if (st == MQ_OK && Hxx != NULL)
    st = mq_exact_sum_init(&sxx, tri, mq_exact_sum_scale(fmax(bxx, 1e-300)), err);
  if (st == MQ_OK)
    st = local_sums(j, first, count, &sh, G != NULL ? &sg : NULL, Hxx != NULL ? &sxx : NULL, P,
                    err);
  MQ_CHECK(mq__job_agree(j, st));
  MQ_CHECK(reduce_gram(j, &sh, count, v, H, err));
  if (Hxx != NULL) MQ_CHECK(reduce_gram(j, &sxx, count, v, Hxx, err));
  if (G != NULL) {
    MQ_CHECK(mq_exact_sum_allreduce(&sg, j->comm, err));
    mq_exact_sum_result(&sg, G);
    mq_hessian_scale(G, cols, count);
  }
cleanup:
  mq_exact_sum_free(&sh);
  mq_exact_sum_free(&sg);
  mq_exact_sum_free(&sxx);
  mq_free(P);
  mq_free(v);
  return st;
}

/* ---- distributed H from the samples (OPTQ on ScaLAPACK): H is summed panel by panel ---- */

/* Rows per panel of H: about 64 MiB of doubles, at least 64 rows. Each panel costs a pass over
 * this rank's samples, its exact accumulator 16 bytes per entry. */
static size_t panel_rows(size_t cols) {
  size_t h = ((size_t)64 << 20) / (8 * cols);
  return h < 64 ? 64 : h > cols ? cols : h;
}

/* Collective. diag(H) = Σ x̃_j²/n exactly, before any of H: the order, the dead inputs and
 * λ = damp·mean need only it. Also fixes the scale every panel's exact sum uses. */
static mq_status samples_diag(job *j, double *diag, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, n = j->li->n, k0, k1, len;
  mq_exact_sum s = {0};
  double mx[2];
  int need_x = j->qronos && j->li->has_xq; /* Qronos' G panels need X's bound too */
  MQ_CHECK(sample_bounds(j, 0, n, need_x, mx, err));
  j->panel_scale = mq_exact_sum_scale(fmax((double)n * mx[0] * mx[0], 1e-300));
  j->panel_scale_g = mq_exact_sum_scale(fmax((double)n * mx[0] * mx[1], 1e-300));
  MQ_CHECK(mq_exact_sum_init(&s, cols, j->panel_scale, err));
  mq__job_chunks(j, 0, n, &k0, &k1);
  for (size_t c = k0; c < k1 && st == MQ_OK; c++) {
    st = read_chunk(j, 0, n, c, 0, &len, err);
    for (size_t q = 0; q < cols && st == MQ_OK; q++) { /* one chunk's Σ x², fixed order */
      double d = 0.0;
      for (size_t t = 0; t < len; t++) d += j->Xq[t * cols + q] * j->Xq[t * cols + q];
      diag[q] = d;
    }
    if (st == MQ_OK) mq_exact_sum_add(&s, diag);
  }
  MQ_CHECK(mq__job_agree(j, st));
  MQ_CHECK(mq_exact_sum_allreduce(&s, j->comm, err));
  mq_exact_sum_result(&s, diag);
  for (size_t q = 0; q < cols; q++) diag[q] /= (double)n;
cleanup:
  mq_exact_sum_free(&s);
  return st;
}

/* Collective. Rows [p0, p0+h) of H = X̃ᵀX̃/n (or with g of G = X̃ᵀX/n) into panel [h, cols] on
 * every rank: each chunk's X̃[:, p0:p0+h]ᵀ X̃ (X) summed exactly over all ranks' chunks.
 * P: scratch [h, cols]. */
static mq_status samples_panel(job *j, int g, size_t p0, size_t h, double *panel, double *P,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, n = j->li->n, k0, k1, len;
  mq_exact_sum s = {0};
  st = mq_exact_sum_init(&s, h * cols, g ? j->panel_scale_g : j->panel_scale, err);
  mq__job_chunks(j, 0, n, &k0, &k1);
  for (size_t c = k0; c < k1 && st == MQ_OK; c++) {
    st = read_chunk(j, 0, n, c, g, &len, err);
    if (st != MQ_OK) break;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)h, (int)cols, (int)len, 1.0,
                j->Xq + p0, (int)cols, g ? j->X : j->Xq, (int)cols, 0.0, P, (int)cols);
    mq_exact_sum_add(&s, P);
  }
  MQ_CHECK(mq__job_agree(j, st));
  MQ_CHECK(mq_exact_sum_allreduce(&s, j->comm, err));
  mq_exact_sum_result(&s, panel);
  for (size_t k = 0; k < h * cols; k++) panel[k] /= (double)n;
cleanup:
  mq_exact_sum_free(&s);
  return st;
}

/* Collective (the factor calls it on every rank). H is summed panel by panel; each rank keeps
 * the rows its columns of B need (B's column b is row perm[n−1−b] of H), dead diagonal entries
 * patched as in the replicated path. No rank ever holds more than a panel of H. */
static mq_status fill_from_samples(void *ctx, mq_dist_factor *f, const size_t *perm,
                                   mq_error *err) {
  job *j = ctx;
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, h = panel_rows(cols), nloc = mq_dist_factor_local_cols(f);
  double *panel = mq_alloc(h * cols, sizeof *panel), *P = mq_alloc(h * cols, sizeof *P);
  double *row = mq_alloc(cols, sizeof *row);
  st = panel && P && row ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H panel)");
  MQ_CHECK(mq__job_agree(j, st));
  for (size_t p0 = 0; p0 < cols; p0 += h) {
    size_t hh = cols - p0 < h ? cols - p0 : h;
    MQ_CHECK(samples_panel(j, 0, p0, hh, panel, P, err));
    for (size_t lj = 0; lj < nloc; lj++) {
      size_t i = mq_dist_factor_column_source(f, lj, perm);
      if (i < p0 || i >= p0 + hh) continue;
      memcpy(row, panel + (i - p0) * cols, cols * sizeof *row);
      if (row[i] == 0.0) row[i] = 1.0;
      mq_dist_factor_set_column(f, lj, row, perm);
    }
  }
cleanup:
  mq_free(panel);
  mq_free(P);
  mq_free(row);
  return st;
}

/* Collective (layer.c calls it on every rank before the factor). Qronos with a distributed H:
 * H and G in row panels give the first targets and V = W(G−H)ᵀ (qronos.h) without either
 * being whole; G is H when X̃ = X (V is then NULL). */
static mq_status qronos_from_samples(void *ctx, const size_t *perm, const float *Wcm,
                                     size_t rows, double *target, float *V, mq_error *err) {
  job *j = ctx;
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, h = panel_rows(cols);
  int mismatch = j->li->has_xq;
  double *Hp = mq_alloc(h * cols, sizeof *Hp), *Gp = mq_alloc(h * cols, sizeof *Gp);
  double *P = mq_alloc(h * cols, sizeof *P);
  float *W0 = mq_alloc(rows * cols + 1, sizeof *W0);
  float *scratch = mq_alloc(h * (cols + rows) + 1, sizeof *scratch);
  size_t *pos = mq_alloc(cols, sizeof *pos);
  st = Hp && Gp && P && W0 && scratch && pos && (V || !mismatch)
           ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (Qronos panels)");
  MQ_CHECK(mq__job_agree(j, st));
  for (size_t p = 0; p < cols; p++) {
    pos[perm[p]] = p;
    for (size_t r = 0; r < rows; r++) W0[r * cols + perm[p]] = Wcm[p * rows + r];
  }
  for (size_t p0 = 0; p0 < cols; p0 += h) {
    size_t hh = cols - p0 < h ? cols - p0 : h;
    MQ_CHECK(samples_panel(j, 0, p0, hh, Hp, P, err));
    if (mismatch) MQ_CHECK(samples_panel(j, 1, p0, hh, Gp, P, err));
    mq_qronos_panel(Hp, mismatch ? Gp : Hp, p0, hh, cols, perm, pos, Wcm, W0, rows, target,
                    mismatch ? V : NULL, scratch);
  }
cleanup:
  mq_free(Hp);
  mq_free(Gp);
  mq_free(P);
  mq_free(W0);
  mq_free(scratch);
  mq_free(pos);
  return st;
}

/* Local, the fill of a distributed H (dist/dist_factorizer.h): every local column of B is a
 * row of H (symmetric), read from the source one at a time, its dead diagonal patched (§3.1)
 * as the replicated path patches H. */
static mq_status fill_from_rows(void *ctx, mq_dist_factor *f, const size_t *perm, mq_error *err) {
  job *j = ctx;
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  double *row = mq_alloc(cols, sizeof *row);
  MQ_CHECK_ALLOC(err, row, cols * sizeof *row);
  for (size_t lj = 0; lj < mq_dist_factor_local_cols(f); lj++) {
    size_t i = mq_dist_factor_column_source(f, lj, perm);
    MQ_CHECK(j->src->read_h_rows(j->src->ctx, i, 1, row, err));
    if (row[i] == 0.0) row[i] = 1.0;
    mq_dist_factor_set_column(f, lj, row, perm);
  }
cleanup:
  mq_free(row);
  return st;
}

/* Collective. Quantizes this rank's rows with H (and G) consumed, with the factor the options
 * ask for; with H = NULL (distributed H) the factor reads its blocks of H itself. aux->R is the
 * whole factor when this rank holds it. */
static mq_status quantize(job *j, double *H, double *G, const mq_quant_options *o,
                          mq_layer_result *res, mq_layer_aux *aux, mq_error *err) {
  mq_factorizer dist;
  mq_dist_factorizer_ctx dist_ctx;
  int scalapack = o->factor == MQ_FACTOR_SCALAPACK && o->method != MQ_METHOD_RTN;
  if (scalapack && H == NULL)
    mq_dist_factorizer_filled(&dist, &dist_ctx, j->comm, MQ_SCALAPACK_NB,
                              j->li->has_x ? fill_from_samples : fill_from_rows, j);
  else if (scalapack)
    mq_dist_factorizer(&dist, &dist_ctx, j->comm, MQ_SCALAPACK_NB);
  mq_layer_input in = {.name = j->li->name, .layer_id = j->src->layer_id, .rows = j->nrows,
                       .cols = j->li->cols, .W = j->W, .H = H, .G = G, .row0 = j->row0,
                       .factorizer = scalapack ? &dist : NULL, .Hdiag = j->Hdiag,
                       .qronos_panels = qronos_from_samples, .qronos_ctx = j,
                       .qronos_mismatch = j->li->has_xq};
  mq_status st = mq_layer_quantize(&in, o, res, aux, err);
  if (scalapack) mq_dist_factorizer_release(&dist_ctx);
  return mq__job_agree(j, st);
}

static double *dup_matrix(const double *A, size_t n) {
  double *B = A == NULL ? NULL : mq_alloc(n, sizeof *B);
  if (B != NULL) memcpy(B, A, n * sizeof *B);
  return B;
}

/* Collective. One candidate of --lambda auto: quantize on the fit samples, held-out error on
 * the rest, summed over all ranks' rows. */
static mq_status heldout_error(job *j, const double *Hfit, const double *Gfit, const double *Hval,
                               size_t nfit, const mq_quant_options *o, double *out,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  mq_layer_result res = {0};
  residual r = {0};
  int all = j->qronos && j->src->samples_local; /* split samples need every row */
  double *H = dup_matrix(Hfit, cols * cols), *G = dup_matrix(Gfit, cols * cols);
  float *What_all = all ? mq_alloc(j->li->rows * cols, sizeof *What_all) : NULL;
  st = H && (G || !Gfit) && (What_all || !all) ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory");
  MQ_CHECK(mq__job_agree(j, st));
  MQ_CHECK(quantize(j, H, G, o, &res, NULL, err));
  if (all) MQ_CHECK(mq__job_gather_dequantized(j, &res, What_all, err));
  double mine = 0.0;
  st = mq__residual_make(j, &res, What_all, &r, err);
  if (st == MQ_OK && j->qronos) { /* the mismatched objective ‖X_val w − X̃_val q‖²/n_val */
    mq_err_accum acc = {0};
    st = mq__job_sample_errors(j, nfit, j->li->n - nfit, &r, &acc, NULL, err);
    mine = acc.err_sum / (double)(j->li->n - nfit);
  } else if (st == MQ_OK) { /* Σ_rows (w−q)ᵀ H_val (w−q); Wd is free scratch now */
    mine = mq_quadratic_form_sum(Hval, r.D, r.rows, cols, r.Wd);
  }
  MQ_CHECK(mq__job_agree(j, st));
  MPI_Allreduce(&mine, out, 1, MPI_DOUBLE, MPI_SUM, j->comm);
cleanup:
  mq_layer_result_free(&res);
  mq__residual_free(&r);
  mq_free(H);
  mq_free(G);
  mq_free(What_all);
  return st;
}

/* Mean of diag(H) after the dead-input patch (§3.1), which is what λ = damp·mean refers to. */
static double mean_diag_patched(const double *H, size_t cols) {
  double s = 0.0;
  for (size_t c = 0; c < cols; c++) s += H[c * cols + c] == 0.0 ? 1.0 : H[c * cols + c];
  return s / (double)cols;
}

/* Collective. ALGORITHMS §3.3: 80/20 split of the samples, six damps, the smallest held-out
 * error wins (the first on ties); the trace goes into res. */
static mq_status choose_lambda(job *j, mq_quant_options *o, mq_layer_result *trace,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols, n = j->li->n, nfit = n * 4 / 5;
  int need_g = j->qronos && j->li->has_xq;
  double *Hfit = mq_alloc(cols * cols, sizeof *Hfit), *Hval = mq_alloc(cols * cols, sizeof *Hval);
  double *Gfit = need_g ? mq_alloc(cols * cols, sizeof *Gfit) : NULL;
  if (!(Hfit && Hval && (Gfit || !need_g)))
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (--lambda auto)");
  else if (!j->li->has_x)
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__,
                  "/layers/%s: --lambda auto needs calibration samples X, the layer has only H",
                  j->li->name);
  else if (nfit < 1 || nfit == n)
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__,
                  "/layers/%s: --lambda auto needs at least 2 samples (has %zu)", j->li->name, n);
  MQ_CHECK(mq__job_agree(j, st));
  MQ_CHECK(accumulate(j, 0, nfit, Hfit, Gfit, NULL, err));
  MQ_CHECK(accumulate(j, nfit, n - nfit, Hval, NULL, NULL, err));
  double mean = mean_diag_patched(Hfit, cols), best = INFINITY;
  mq_quant_options c = *o;
  c.lambda_mode = MQ_LAMBDA_ABSOLUTE;
  trace->lambda_ncand = MQ_LAMBDA_AUTO_CANDIDATES;
  for (int k = 0; k < MQ_LAMBDA_AUTO_CANDIDATES; k++) {
    c.lambda = auto_damps[k] * mean;
    trace->lambda_cand[k] = c.lambda;
    MQ_CHECK(heldout_error(j, Hfit, Gfit, Hval, nfit, &c, &trace->lambda_heldout[k], err));
    MQ_DEBUG("%s: lambda %.4g (damp %g): held-out error %.6g", j->li->name, c.lambda,
             auto_damps[k], trace->lambda_heldout[k]);
    if (trace->lambda_heldout[k] < best) {
      best = trace->lambda_heldout[k];
      o->lambda = c.lambda;
    }
  }
  o->lambda_mode = MQ_LAMBDA_ABSOLUTE;
cleanup:
  mq_free(Hfit);
  mq_free(Hval);
  mq_free(Gfit);
  return st;
}

/* Local: buffers and this rank's rows of W. */
static mq_status job_open(job *j, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  /* whole blocks of MQ_ROW_BLOCK rows per rank: results do not depend on the rank count */
  size_t rows = j->li->rows, nblocks = (rows + MQ_ROW_BLOCK - 1) / MQ_ROW_BLOCK, b0, nb;
  mq_partition(nblocks, j->nranks, j->rank, &b0, &nb);
  j->row0 = b0 * MQ_ROW_BLOCK < rows ? b0 * MQ_ROW_BLOCK : rows;
  size_t end = (b0 + nb) * MQ_ROW_BLOCK < rows ? (b0 + nb) * MQ_ROW_BLOCK : rows;
  j->nrows = end - j->row0;
  j->chunk = j->src->samples_local ? j->src->chunk : MQ_CHUNK;
  j->W = mq_alloc(j->nrows * cols + 1, sizeof *j->W);
  j->X = mq_alloc(j->chunk * cols, sizeof *j->X);
  j->Xq = mq_alloc(j->chunk * cols, sizeof *j->Xq);
  MQ_CHECK_ALLOC(err, j->W && j->X && j->Xq, j->nrows * cols * sizeof *j->W);
  MQ_CHECK(j->src->read_weight_rows(j->src->ctx, j->row0, j->nrows, j->W, err));
  if (j->need_all_rows) {
    j->Wall = mq_alloc(rows * cols + 1, sizeof *j->Wall);
    MQ_CHECK_ALLOC(err, j->Wall, rows * cols * sizeof *j->Wall);
    MQ_CHECK(j->src->read_weight_rows(j->src->ctx, 0, rows, j->Wall, err));
  }
cleanup:
  return st;
}

void mq_hessian_cache_free(mq_hessian_cache *c) {
  mq_free(c->H);
  mq_free(c->G);
  mq_free(c->Hxx);
  *c = (mq_hessian_cache){0};
}

static void copy_matrix(double *dst, const double *src, size_t cols) {
  if (dst != NULL) memcpy(dst, src, cols * cols * sizeof *dst);
}

/* Local. Copies H (and G, Hxx where not NULL) out of the cache when it holds them; else
 * *hit = 0. */
static void cache_fetch(const job *j, double *H, double *G, double *Hxx, int *hit) {
  const mq_hessian_cache *c = j->src->cache;
  size_t cols = j->li->cols;
  *hit = c != NULL && c->valid && c->cols == cols && (c->G || !G) && (c->Hxx || !Hxx);
  if (!*hit) return;
  copy_matrix(H, c->H, cols);
  if (G != NULL) copy_matrix(G, c->G, cols);
  if (Hxx != NULL) copy_matrix(Hxx, c->Hxx, cols);
}

/* Local. Keeps a copy of H (and G, Hxx) for the next layer with the same inputs; a failed copy
 * only costs the next layer its own sums. */
static void cache_store(const job *j, const double *H, const double *G, const double *Hxx) {
  mq_hessian_cache *c = j->src->cache;
  size_t cols = j->li->cols;
  if (c == NULL || !c->keep) return; /* the last layer of a group: no copies */
  mq_hessian_cache_free(c);
  c->keep = 1;
  c->H = dup_matrix(H, cols * cols);
  c->G = dup_matrix(G, cols * cols);
  c->Hxx = dup_matrix(Hxx, cols * cols);
  c->cols = cols;
  c->valid = c->H != NULL && (c->G != NULL || !G) && (c->Hxx != NULL || !Hxx);
}

/* Collective. H (and G, Hxx where not NULL) from the cache, the samples, or as given in the
 * file (replicated reads); for a distributed H only its diagonal (the factor reads its blocks
 * later). Every rank sees the same cache state, so all take the same path. */
static mq_status load_matrices(job *j, int need_g, double *H, double *G, double *Hxx,
                               double **Hgiven, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = j->li->cols;
  int hit = 0;
  if (H == NULL) {
    j->Hdiag = mq_alloc(cols, sizeof *j->Hdiag);
    st = j->Hdiag ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (diag H)");
    if ((st = mq__job_agree(j, st)) != MQ_OK) return st;
    if (j->li->has_x) return samples_diag(j, j->Hdiag, err);
    return mq__job_agree(j, j->src->read_h_diag(j->src->ctx, j->Hdiag, err));
  }
  if (j->li->has_x) {
    cache_fetch(j, H, G, Hxx, &hit);
    if (hit) return MQ_OK;
    st = accumulate(j, 0, j->li->n, H, G, Hxx, err);
    if (st == MQ_OK) cache_store(j, H, G, Hxx);
    return st;
  }
  st = j->src->read_matrix(j->src->ctx, 'H', H, err);
  if (st == MQ_OK && need_g) st = j->src->read_matrix(j->src->ctx, 'G', G, err);
  if (st == MQ_OK) { /* the errors need H before it is factored */
    *Hgiven = dup_matrix(H, cols * cols);
    if (*Hgiven == NULL) st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H copy)");
  }
  return mq__job_agree(j, st);
}

/* Collective. Seconds and flops of the phases, the maximum over ranks; bytes summed. */
static void reduce_phases(const job *j, const mq_layer_aux *aux, double t_hessian,
                          double t_errors, double t_total, mq_layer_phases *ph) {
  const mq_layer_timing *t = &aux->timing;
  double mine[8] = {t_hessian, t->factor, t->refit, t->sweep, t->sweep_gemm, t->pack, t_errors,
                    t_total};
  /* flops of the row-split phases are this rank's share: summed */
  double local[4] = {(double)mq_dist_bytes_sent(), t->refit_flops, t->sweep_flops,
                     t->sweep_gemm_flops};
  double worst[8], total[4];
  MPI_Allreduce(mine, worst, 8, MPI_DOUBLE, MPI_MAX, j->comm);
  MPI_Allreduce(local, total, 4, MPI_DOUBLE, MPI_SUM, j->comm);
  double cols = (double)j->li->cols, n = (double)j->li->n;
  *ph = (mq_layer_phases){
      .hessian = worst[0], .factor = worst[1], .refit = worst[2], .sweep = worst[3],
      .sweep_gemm = worst[4], .pack = worst[5], .errors = worst[6], .total = worst[7],
      .hessian_flops = n * cols * cols * (j->qronos && j->li->has_xq ? 3.0 : 1.0),
      .factor_flops = t->factor_flops, .refit_flops = total[1], .sweep_flops = total[2],
      .sweep_gemm_flops = total[3], .comm_bytes = total[0]};
}

/* Collective. The replicated path holds about k·cols² doubles per rank besides the rows — H,
 * plus a copy for the errors (H files) or the sums' scratch and 16-byte exact accumulators of
 * the triangle (samples), plus G for Qronos. Returns 1 when that exceeds the budget
 * (--mem-per-rank, else the node's memory over its ranks; the minimum over ranks, so all
 * decide alike); --factor auto then becomes ScaLAPACK, else local. */
static int resolve_factor(const job *j, mq_quant_options *o) {
  double budget = (double)o->mem_per_rank;
  if (budget <= 0) {
    MPI_Comm node;
    int node_ranks = 1;
    MPI_Comm_split_type(j->comm, MPI_COMM_TYPE_SHARED, j->rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_ranks);
    MPI_Comm_free(&node);
    budget = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE) / node_ranks;
  }
  MPI_Allreduce(MPI_IN_PLACE, &budget, 1, MPI_DOUBLE, MPI_MIN, j->comm);
  double c2 = (double)j->li->cols * (double)j->li->cols * sizeof(double);
  double k = (j->li->has_x ? 3.0 : 2.0) + (j->qronos ? (j->li->has_x ? 2.0 : 1.0) : 0.0);
  int big = k * c2 > budget && o->method != MQ_METHOD_RTN && j->nranks > 1;
  if (o->factor == MQ_FACTOR_AUTO) o->factor = big ? MQ_FACTOR_SCALAPACK : MQ_FACTOR_LOCAL;
  MQ_DEBUG("%s: replicated H needs ~%.3g GiB per rank, budget %.3g GiB: %s factor%s",
           j->li->name, k * c2 / 1073741824.0, budget / 1073741824.0,
           o->factor == MQ_FACTOR_SCALAPACK ? "ScaLAPACK" : "local", big ? ", H distributed" : "");
  return big;
}

mq_status mq_layer_job_run(MPI_Comm comm, const mq_layer_source *src,
                           const mq_quant_options *opts, mq_layer_result *res, size_t *row0,
                           mq_layer_phases *phases, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_layer_info *li = &src->info;
  size_t cols = li->cols;
  job j = {.comm = comm, .src = src, .li = li, .qronos = opts->method == MQ_METHOD_QRONOS};
  MPI_Comm_rank(comm, &j.rank);
  MPI_Comm_size(comm, &j.nranks);
  mq_quant_options o = *opts;
  mq_layer_result trace = {0};
  mq_layer_aux aux = {0};
  int need_g = j.qronos && (li->has_x ? li->has_xq : li->has_g);
  /* data-parallel sources: the errors from the Gram matrices (layer_measure.c), which costs
   * XᵀX (and X̃ᵀX for OPTQ) once per group of layers instead of a pass per layer */
  int gram = src->samples_local && li->has_x && li->has_xq && !src->skip_errors;
  double t_start = mq_wtime();
  mq_dist_bytes_reset();
  int too_big = resolve_factor(&j, &o);
  /* On the ScaLAPACK factor H need never be whole on a rank: read row by row from a file that
   * gives it (OPTQ), or — when replicated copies would not fit — summed from the samples panel
   * by panel (OPTQ, Qronos; twice the flops of the replicated sums, so only when needed;
   * --lambda auto needs H whole) */
  int dist_h = o.factor == MQ_FACTOR_SCALAPACK &&
               (li->has_x ? too_big && o.lambda_mode != MQ_LAMBDA_AUTO && o.method != MQ_METHOD_RTN
                          : o.method == MQ_METHOD_OPTQ && li->has_h && src->read_h_rows &&
                                src->read_h_diag);
  gram = gram && !dist_h; /* the Grams are whole matrices: errors from the samples instead */
  j.need_all_rows = src->samples_local &&
                    (!gram || (j.qronos && o.lambda_mode == MQ_LAMBDA_AUTO));
  double *H = dist_h ? NULL : mq_alloc(cols * cols, sizeof *H);
  double *G = (need_g && !dist_h) || gram ? mq_alloc(cols * cols, sizeof *G) : NULL;
  double *Hxx = gram ? mq_alloc(cols * cols, sizeof *Hxx) : NULL;
  double *Hgiven = NULL;
  float *What_all = NULL; /* every row's Ŵ: src->dequant_out or owned */
  st = (H || dist_h) && (G || !((need_g && !dist_h) || gram)) && (Hxx || !gram) ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes", cols * cols * sizeof *H);
  if (st == MQ_OK) st = job_open(&j, err);
  MQ_CHECK(mq__job_agree(&j, st));
  double t0 = mq_wtime();
  if (o.lambda_mode == MQ_LAMBDA_AUTO) MQ_CHECK(choose_lambda(&j, &o, &trace, err));
  MQ_CHECK(load_matrices(&j, need_g, H, G, Hxx, &Hgiven, err));
  if (gram) { /* the factor consumes H (and Qronos G): the errors keep copies */
    j.eH = dup_matrix(H, cols * cols);
    j.eG = need_g ? dup_matrix(G, cols * cols) : G;
    j.eHxx = Hxx;
    if (!need_g) G = NULL;
    Hxx = NULL;
    st = j.eH && j.eG ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H copy)");
    MQ_CHECK(mq__job_agree(&j, st));
  }
  double t_hessian = mq_wtime() - t0;
  MQ_CHECK(quantize(&j, H, G, &o, res, &aux, err));
  res->seconds += t_hessian;
  t0 = mq_wtime();
  if (src->dequant_out != NULL || src->samples_local) {
    What_all = src->dequant_out != NULL ? src->dequant_out : mq_alloc(li->rows * cols, sizeof *What_all);
    st = What_all ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (Ŵ)");
    MQ_CHECK(mq__job_agree(&j, st));
    MQ_CHECK(mq__job_gather_dequantized(&j, res, What_all, err));
  }
  MQ_CHECK(mq__job_finish_errors(&j, Hgiven, What_all, &o, &aux, !src->skip_errors, res, err));
  double t_errors = mq_wtime() - t0;
  res->lambda_ncand = trace.lambda_ncand;
  memcpy(res->lambda_cand, trace.lambda_cand, sizeof res->lambda_cand);
  memcpy(res->lambda_heldout, trace.lambda_heldout, sizeof res->lambda_heldout);
  *row0 = j.row0;
  if (phases != NULL) reduce_phases(&j, &aux, t_hessian, t_errors, mq_wtime() - t_start, phases);
cleanup:
  mq_layer_aux_free(&aux);
  mq_free(H);
  mq_free(G);
  mq_free(Hxx);
  mq_free(j.eH);
  mq_free(j.eG);
  mq_free(j.eHxx);
  mq_free(Hgiven);
  mq_free(j.Hdiag);
  if (What_all != src->dequant_out) mq_free(What_all);
  mq_free(j.W);
  mq_free(j.Wall);
  mq_free(j.X);
  mq_free(j.Xq);
  return st;
}

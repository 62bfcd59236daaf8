/* The calibration sums of one layer: H = X̃ᵀX̃/n (and G = X̃ᵀX/n, XᵀX/n) from the samples, every
 * chunk's product computed alike wherever it runs and added exactly (exact_sum.h), so the
 * result has the same bits on any rank count; and, for a distributed H, its diagonal and its
 * row panels, which fill the ScaLAPACK factor's blocks without H ever being whole on a rank. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/hessian.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/progress.h"
#include "core/qronos.h"
#include "core/status.h"
#include "parallel/exact_sum.h"
#include "parallel/layer_engine_internal.h"
#include "parallel/partition.h"

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Where chunks fall never depends on the rank count. This rank's chunks: a contiguous share of
 * the range for sources every rank can read, the chunks it holds for data-parallel ones. */
void mq__chunks(const layer_run *r, size_t first, size_t count, size_t *k0, size_t *k1) {
  const size_t *bounds = r->x->chunk_bounds;
  if (bounds != NULL) { /* the caller's chunks: this rank's, cut to the range */
    size_t a = r->x->chunk_first, e = a + r->x->chunk_count;
    while (a < e && bounds[a + 1] <= first) a++;
    while (e > a && bounds[e - 1] >= first + count) e--;
    *k0 = a;
    *k1 = e;
    return;
  }
  size_t ch = r->chunk, lo = first / ch, hi = count ? (first + count - 1) / ch + 1 : lo;
  if (r->x->samples_local) {
    size_t a = r->x->local_first, b = a + r->x->local_count;
    *k0 = min_size(max_size(a / ch, lo), hi);
    *k1 = max_size(min_size((b + ch - 1) / ch, hi), *k0);
    if (r->x->local_count == 0) *k1 = *k0;
    return;
  }
  size_t c0, nc;
  mq_partition(hi - lo, r->ctx->size, r->ctx->rank, &c0, &nc);
  *k0 = lo + c0;
  *k1 = *k0 + nc;
}

size_t mq__chunk_len(const layer_run *r, size_t first, size_t count, size_t k, size_t *start) {
  const size_t *b = r->x->chunk_bounds;
  size_t lo = b != NULL ? b[k] : k * r->chunk, hi = b != NULL ? b[k + 1] : (k + 1) * r->chunk;
  size_t end = min_size(first + count, hi);
  *start = max_size(first, lo);
  return end > *start ? end - *start : 0; /* a caller's chunk may be empty */
}

/* The largest |v[k]|; NaNs are skipped (the scalar policy reports them), as fmax would. A plain
 * comparison, which the compiler vectorizes, on the rank's threads. */
static double max_abs(const double *v, size_t n) {
  double m = 0.0;
  long long len = (long long)n;
  int threads = mq_blas_threads();
#pragma omp parallel for reduction(max : m) schedule(static) num_threads(threads) if (threads > 1 && len > (1 << 16))
  for (long long k = 0; k < len; k++) {
    double a = fabs(v[k]);
    m = a > m ? a : m;
  }
  return m;
}

/* Reads chunk k of X̃ (and X with need_x). */
static mq_status read_chunk(layer_run *r, size_t first, size_t count, size_t k, int need_x,
                            size_t *len, mq_error *err) {
  mq_status st = MQ_OK;
  size_t start;
  *len = mq__chunk_len(r, first, count, k, &start);
  MQ_CHECK(r->src->read_samples(r->src->user, MQ_SAMPLES_XQ, start, *len, r->Xq, err));
  if (need_x) MQ_CHECK(r->src->read_samples(r->src->user, MQ_SAMPLES_X, start, *len, r->X, err));
cleanup:
  return st;
}

/* Pass 1 of the exact sums: the largest |x̃| and |x| over all ranks' samples, which bound every
 * partial sum (|Σ x_i x_j| ≤ count·max²). Status travels in the same reduction. */
static mq_status sample_bounds(layer_run *r, size_t first, size_t count, int need_x, double *mx,
                               mq_error *err) {
  mq_status st = MQ_OK;
  size_t k0, k1, len, cols = r->desc->cols;
  double mine[3] = {0, 0, 0}, all[3];
  mq__chunks(r, first, count, &k0, &k1);
  for (size_t c = k0; c < k1 && st == MQ_OK; c++) {
    st = read_chunk(r, first, count, c, need_x, &len, err);
    if (st != MQ_OK) break;
    mine[1] = fmax(mine[1], max_abs(r->Xq, len * cols));
    if (need_x) mine[2] = fmax(mine[2], max_abs(r->X, len * cols));
  }
  mine[0] = (double)st;
  MPI_Allreduce(mine, all, 3, MPI_DOUBLE, MPI_MAX, r->comm);
  mx[0] = all[1];
  mx[1] = all[2];
  return (mq_status)all[0];
}

/* Where one layer's sums spend their seconds (this rank's), logged with --verbose. */
typedef struct sums_timing {
  double bound, setup, read, products, adds, wait, reduce, finish;
} sums_timing;

/* How each chunk's products are computed. --gram-products float32 (mq_quant_options.gram_f32;
 * also the environment's MQ_SUMS_PRECISION=single, its first spelling): in float32 (SSYRK,
 * SGEMM of the samples rounded to float) instead of double. The chunks are still added
 * exactly, so the result keeps its bits on any rank count (every chunk is computed alike), but
 * each entry carries the float32 rounding of its chunk's products and sums (README: speed and
 * error against the double sums and the reference's float32 accumulation). */
typedef struct chunk_products {
  int single;
  float *Aq, *A; /* [chunk, cols] float32 copies of X̃ and X (single only) */
} chunk_products;

static mq_status chunk_products_init(const layer_run *r, int need_x, chunk_products *cp,
                                     mq_error *err) {
  mq_status st = MQ_OK;
  const char *v = getenv("MQ_SUMS_PRECISION");
  size_t n = r->chunk * r->desc->cols;
  *cp = (chunk_products){.single = r->gram_f32 || (v != NULL && strcmp(v, "single") == 0)};
  if (!cp->single) return MQ_OK;
  cp->Aq = mq_alloc(n, sizeof *cp->Aq);
  cp->A = need_x ? mq_alloc(n, sizeof *cp->A) : NULL;
  MQ_CHECK_ALLOC(err, cp->Aq && (cp->A || !need_x), n * sizeof *cp->Aq);
cleanup:
  return st;
}

static void chunk_products_free(chunk_products *cp) {
  mq_free(cp->Aq);
  mq_free(cp->A);
}

static void to_float(const double *A, size_t n, float *Af) {
  for (size_t k = 0; k < n; k++) Af[k] = (float)A[k];
}

/* One chunk's upper-triangle Gram AᵀA of A [len, cols] (Af: its float32 copy, single only), added
 * exactly, packed row by row. P [cols, cols] is scratch: the output matrix itself, which holds
 * nothing until the sums are reduced (no second cols² buffer, no second set of pages to fault
 * in); in single precision it holds a float32 [cols, cols]. */
static void add_gram(mq_exact_sum *s, const double *A, const float *Af, size_t len, size_t cols,
                     double *P, const chunk_products *cp, sums_timing *t) {
  int n = (int)cols;
  double t0 = mq_wtime();
  /* beta = 0: the chunk's own sum, no clearing pass */
  if (cp->single)
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int)len, 1.0f, Af, n, 0.0f,
                (float *)P, n);
  else
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int)len, 1.0, A, n, 0.0, P, n);
  double t1 = mq_wtime();
  if (cp->single) mq_exact_sum_add_upper_float(s, (const float *)P, cols);
  else mq_exact_sum_add_upper(s, P, cols);
  t->products += t1 - t0;
  t->adds += mq_wtime() - t1;
}

/* One chunk's X̃ᵀX [cols, cols] added exactly; G is scratch as P is for add_gram. */
static void add_cross(mq_exact_sum *s, const layer_run *r, size_t len, double *G,
                      const chunk_products *cp, sums_timing *t) {
  size_t cols = r->desc->cols;
  int n = (int)cols;
  double t0 = mq_wtime();
  if (cp->single)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, (int)len, 1.0f, cp->Aq, n,
                cp->A, n, 0.0f, (float *)G, n);
  else
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, (int)len, 1.0, r->Xq, n, r->X, n,
                0.0, G, n);
  double t1 = mq_wtime();
  if (cp->single) mq_exact_sum_add_float(s, (const float *)G);
  else mq_exact_sum_add(s, G);
  t->products += t1 - t0;
  t->adds += mq_wtime() - t1;
}

/* Pass 2: this rank's chunks, each DSYRK'd (and for G GEMM'd) alone, into the output matrix
 * as scratch, and added exactly; the upper triangles of H (and XᵀX) go into their
 * accumulators packed. */
static mq_status local_sums(layer_run *r, size_t first, size_t count, mq_exact_sum *sh,
                            mq_exact_sum *sg, mq_exact_sum *sxx, double *H, double *G,
                            double *Hxx, const chunk_products *cp, sums_timing *t,
                            mq_error *err) {
  mq_status st = MQ_OK;
  size_t k0, k1, len, cols = r->desc->cols;
  mq__chunks(r, first, count, &k0, &k1);
  for (size_t c = k0; c < k1; c++) {
    double t0 = mq_wtime();
    MQ_CHECK(read_chunk(r, first, count, c, sg != NULL || sxx != NULL, &len, err));
    if (cp->single) { /* the chunk rounded to float once, for every product that uses it */
      to_float(r->Xq, len * cols, cp->Aq);
      if (sg != NULL || sxx != NULL) to_float(r->X, len * cols, cp->A);
    }
    t->read += mq_wtime() - t0;
    add_gram(sh, r->Xq, cp->Aq, len, cols, H, cp, t);
    if (sxx != NULL) add_gram(sxx, r->X, cp->A, len, cols, Hxx, cp, t);
    if (sg != NULL) add_cross(sg, r, len, G, cp, t);
    mq_progress_tick(MQ_PROGRESS_SUMS, (double)(c + 1 - k0) / (double)(k1 - k0), /* progress.h */
                     (double)len * (double)cols * (double)cols * (1.0 + (sxx != NULL) + 2.0 * (sg != NULL)));
  }
cleanup:
  return st;
}

/* Collective. The packed upper triangle reduced and converted into M's first entries (M holds
 * nothing yet: it was the chunks' scratch), then unpacked, mirrored and divided by count. */
static mq_status reduce_gram(layer_run *r, mq_exact_sum *s, size_t count, double *M,
                             sums_timing *t, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols;
  double t0 = mq_wtime();
  MQ_CHECK(mq_exact_sum_reduce_to_double(s, r->ctx, M, err));
  double t1 = mq_wtime();
  mq_hessian_from_packed(M, cols, count);
  t->reduce += t1 - t0;
  t->finish += mq_wtime() - t1;
cleanup:
  return st;
}

static void log_timing(const layer_run *r, const sums_timing *t) {
  MQ_DEBUG("%s: sums of %zu cols: bound %.3f s, accumulators %.3f s, read %.3f s, products "
           "%.3f s, fixed-point adds %.3f s, waiting for the other ranks %.3f s, "
           "reduce+convert+gather %.3f s, unpack+symmetrize %.3f s (rank 0)",
           r->desc->name, r->desc->cols, t->bound, t->setup, t->read, t->products, t->adds,
           t->wait, t->reduce, t->finish);
}

mq_status mq__sums_gram(layer_run *r, size_t first, size_t count, double *H, double *G,
                        double *Hxx, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, tri = cols * (cols + 1) / 2;
  mq_exact_sum sh = {0}, sg = {0}, sxx = {0};
  sums_timing t = {0};
  chunk_products cp = {0};
  double mx[2], t0 = mq_wtime();
  MQ_CHECK(sample_bounds(r, first, count, G != NULL || Hxx != NULL, mx, err));
  t.bound = mq_wtime() - t0;
  double bh = (double)count * mx[0] * mx[0], bg = (double)count * mx[0] * mx[1];
  double bxx = (double)count * mx[1] * mx[1];
  st = mq_exact_sum_init(&sh, tri, mq_exact_sum_scale(fmax(bh, 1e-300)), err);
  if (st == MQ_OK && G != NULL)
    st = mq_exact_sum_init(&sg, cols * cols, mq_exact_sum_scale(fmax(bg, 1e-300)), err);
  if (st == MQ_OK && Hxx != NULL)
    st = mq_exact_sum_init(&sxx, tri, mq_exact_sum_scale(fmax(bxx, 1e-300)), err);
  if (st == MQ_OK) st = chunk_products_init(r, G != NULL || Hxx != NULL, &cp, err);
  t.setup = mq_wtime() - t0 - t.bound;
  if (st == MQ_OK)
    st = local_sums(r, first, count, &sh, G != NULL ? &sg : NULL, Hxx != NULL ? &sxx : NULL, H,
                    G, Hxx, &cp, &t, err);
  double t1 = mq_wtime();
  MQ_AGREE(r->comm, st);
  t.wait = mq_wtime() - t1;
  MQ_CHECK(reduce_gram(r, &sh, count, H, &t, err));
  if (Hxx != NULL) MQ_CHECK(reduce_gram(r, &sxx, count, Hxx, &t, err));
  if (G != NULL) {
    MQ_CHECK(mq_exact_sum_reduce_to_double(&sg, r->ctx, G, err));
    mq_hessian_scale(G, cols, count);
  }
  log_timing(r, &t);
cleanup:
  chunk_products_free(&cp);
  mq_exact_sum_free(&sh);
  mq_exact_sum_free(&sg);
  mq_exact_sum_free(&sxx);
  return st;
}

/* ---- distributed H from the samples: H is summed panel by panel ---- */

/* Rows per panel of H: about 64 MiB of doubles, at least 64 rows. Each panel costs a pass over
 * this rank's samples, its exact accumulator 16 bytes per entry. */
static size_t panel_rows(size_t cols) {
  size_t h = ((size_t)64 << 20) / (8 * cols);
  return h < 64 ? 64 : h > cols ? cols : h;
}

/* diag(H) = Σ x̃_j²/n exactly, before any of H: the order, the dead inputs and λ = damp·mean
 * need only it. Also fixes the scale every panel's exact sum uses. */
mq_status mq__sums_diag(layer_run *r, double *diag, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, n = r->desc->n, k0, k1, len;
  mq_exact_sum s = {0};
  double mx[2];
  int need_x = r->qronos && r->desc->has_xq; /* Qronos' G panels need X's bound too */
  MQ_CHECK(sample_bounds(r, 0, n, need_x, mx, err));
  r->panel_scale = mq_exact_sum_scale(fmax((double)n * mx[0] * mx[0], 1e-300));
  r->panel_scale_g = mq_exact_sum_scale(fmax((double)n * mx[0] * mx[1], 1e-300));
  MQ_CHECK(mq_exact_sum_init(&s, cols, r->panel_scale, err));
  mq__chunks(r, 0, n, &k0, &k1);
  for (size_t c = k0; c < k1 && st == MQ_OK; c++) {
    st = read_chunk(r, 0, n, c, 0, &len, err);
    for (size_t q = 0; q < cols && st == MQ_OK; q++) { /* one chunk's Σ x², fixed order */
      double d = 0.0;
      for (size_t t = 0; t < len; t++) d += r->Xq[t * cols + q] * r->Xq[t * cols + q];
      diag[q] = d;
    }
    if (st == MQ_OK) mq_exact_sum_add(&s, diag);
  }
  MQ_AGREE(r->comm, st);
  MQ_CHECK(mq_exact_sum_reduce_to_double(&s, r->ctx, diag, err));
  for (size_t q = 0; q < cols; q++) diag[q] /= (double)n;
cleanup:
  mq_exact_sum_free(&s);
  return st;
}

/* Collective. Rows [p0, p0+h) of H = X̃ᵀX̃/n (or with g of G = X̃ᵀX/n) into panel [h, cols] on
 * every rank: each chunk's X̃[:, p0:p0+h]ᵀ X̃ (X) summed exactly over all ranks' chunks.
 * P: scratch [h, cols]. */
static mq_status samples_panel(layer_run *r, int g, size_t p0, size_t h, double *panel,
                               double *P, mq_error *err) {
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, n = r->desc->n, k0, k1, len;
  mq_exact_sum s = {0};
  st = mq_exact_sum_init(&s, h * cols, g ? r->panel_scale_g : r->panel_scale, err);
  mq__chunks(r, 0, n, &k0, &k1);
  for (size_t c = k0; c < k1 && st == MQ_OK; c++) {
    st = read_chunk(r, 0, n, c, g, &len, err);
    if (st != MQ_OK) break;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)h, (int)cols, (int)len, 1.0,
                r->Xq + p0, (int)cols, g ? r->X : r->Xq, (int)cols, 0.0, P, (int)cols);
    mq_exact_sum_add(&s, P);
  }
  MQ_AGREE(r->comm, st);
  MQ_CHECK(mq_exact_sum_reduce_to_double(&s, r->ctx, panel, err));
  for (size_t k = 0; k < h * cols; k++) panel[k] /= (double)n;
cleanup:
  mq_exact_sum_free(&s);
  return st;
}

/* Each rank keeps the rows its columns of B need (B's column b is row perm[n−1−b] of H), dead
 * diagonal entries patched as in the replicated path. No rank ever holds more than a panel. */
mq_status mq__fill_from_samples(void *ctx, mq_dist_factor *f, const size_t *perm,
                                mq_error *err) {
  layer_run *r = ctx;
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, h = panel_rows(cols), nloc = mq_dist_factor_local_cols(f);
  double *panel = mq_alloc(h * cols, sizeof *panel), *P = mq_alloc(h * cols, sizeof *P);
  double *row = mq_alloc(cols, sizeof *row);
  st = panel && P && row ? MQ_OK
                         : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (H panel)");
  MQ_AGREE(r->comm, st);
  for (size_t p0 = 0; p0 < cols; p0 += h) {
    size_t hh = cols - p0 < h ? cols - p0 : h;
    MQ_CHECK(samples_panel(r, 0, p0, hh, panel, P, err));
    mq_progress_tick(MQ_PROGRESS_SUMS, (double)(p0 + hh) / (double)cols, /* progress.h */
                     (double)hh * (double)cols * (double)r->x->local_count); /* quantize's own samples */
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

/* H and G in row panels give Qronos' first targets and V = W(G−H)ᵀ (qronos.h) without either
 * being whole; G is H when X̃ = X (V is then NULL). */
mq_status mq__qronos_from_samples(void *ctx, const size_t *perm, const float *Wcm, size_t rows,
                                  double *target, float *V, mq_error *err) {
  layer_run *r = ctx;
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols, h = panel_rows(cols);
  int mismatch = r->desc->has_xq;
  double *Hp = mq_alloc(h * cols, sizeof *Hp), *Gp = mq_alloc(h * cols, sizeof *Gp);
  double *P = mq_alloc(h * cols, sizeof *P);
  float *W0 = mq_alloc(rows * cols + 1, sizeof *W0);
  float *scratch = mq_alloc(h * (cols + rows) + 1, sizeof *scratch);
  size_t *pos = mq_alloc(cols, sizeof *pos);
  st = Hp && Gp && P && W0 && scratch && pos && (V || !mismatch)
           ? MQ_OK
           : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory (Qronos panels)");
  MQ_AGREE(r->comm, st);
  for (size_t p = 0; p < cols; p++) {
    pos[perm[p]] = p;
    for (size_t q = 0; q < rows; q++) W0[q * cols + perm[p]] = Wcm[p * rows + q];
  }
  for (size_t p0 = 0; p0 < cols; p0 += h) {
    size_t hh = cols - p0 < h ? cols - p0 : h;
    MQ_CHECK(samples_panel(r, 0, p0, hh, Hp, P, err));
    if (mismatch) MQ_CHECK(samples_panel(r, 1, p0, hh, Gp, P, err));
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

/* Every local column of B is a row of H (symmetric), read from the source one at a time, its
 * dead diagonal patched (§3.1) as the replicated path patches H. */
mq_status mq__fill_from_rows(void *ctx, mq_dist_factor *f, const size_t *perm, mq_error *err) {
  layer_run *r = ctx;
  mq_status st = MQ_OK;
  size_t cols = r->desc->cols;
  double *row = mq_alloc(cols, sizeof *row);
  MQ_CHECK_ALLOC(err, row, cols * sizeof *row);
  for (size_t lj = 0; lj < mq_dist_factor_local_cols(f); lj++) {
    size_t i = mq_dist_factor_column_source(f, lj, perm);
    MQ_CHECK(r->src->read_h_rows(r->src->user, i, 1, row, err));
    if (row[i] == 0.0) row[i] = 1.0;
    mq_dist_factor_set_column(f, lj, row, perm);
  }
cleanup:
  mq_free(row);
  return st;
}

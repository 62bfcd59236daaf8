#include "core/measure.h"

#include <math.h>

#include "core/blas.h"
#include "core/mem.h"
#include "core/status.h"

double mq_quadratic_form_sum(const double *A, const double *D, size_t rows, size_t cols,
                             double *scratch) {
  if (rows == 0) return 0.0;
  cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)cols, 1.0, A, (int)cols, D,
              (int)cols, 0.0, scratch, (int)cols);
  double s = 0.0;
  for (size_t k = 0; k < rows * cols; k++) s += D[k] * scratch[k];
  return s;
}

static double sum_squares(const double *a, size_t len) {
  double s = 0.0;
  for (size_t k = 0; k < len; k++) s += a[k] * a[k];
  return s;
}

void mq_err_accumulate(mq_err_accum *acc, const double *X, const double *Xq, size_t count,
                       size_t cols, const double *W, const double *D, size_t rows, double *Y,
                       double *diff) {
  int m = (int)count, n = (int)rows, k = (int)cols;
  acc->n += count;
  if (count == 0 || rows == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, X, k, W, k, 0.0, Y, n);
  acc->ref_sum += sum_squares(Y, count * rows);
  if (Xq == NULL) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, X, k, D, k, 0.0, Y, n);
  } else {
    for (size_t i = 0; i < count * cols; i++) diff[i] = X[i] - Xq[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, diff, k, W, k, 0.0, Y, n);
    acc->mismatch_sum += sum_squares(Y, count * rows);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, Xq, k, D, k, 1.0, Y, n);
  }
  acc->err_sum += sum_squares(Y, count * rows);
}

void mq_err_from_hessian(mq_err_accum *acc, const double *H, const double *W, const double *D,
                         size_t rows, size_t cols, double *scratch) {
  acc->n = 1; /* H is already divided by n */
  acc->err_sum = mq_quadratic_form_sum(H, D, rows, cols, scratch);
  acc->ref_sum = mq_quadratic_form_sum(H, W, rows, cols, scratch);
}

/* Tiles of 32×32: the transposed read of G stays in cache. */
enum { MQ_GRAM_TILE = 32 };

void mq_err_grams_prepare(const double *H, double *G, const double *Hxx, size_t cols, double *E) {
  for (size_t i0 = 0; i0 < cols; i0 += MQ_GRAM_TILE) /* E = Hxx − G − Gᵀ + H: cov of X − X̃ */
    for (size_t j0 = 0; j0 < cols; j0 += MQ_GRAM_TILE)
      for (size_t i = i0; i < i0 + MQ_GRAM_TILE && i < cols; i++)
        for (size_t j = j0; j < j0 + MQ_GRAM_TILE && j < cols; j++)
          E[i * cols + j] = Hxx[i * cols + j] - G[i * cols + j] - G[j * cols + i] + H[i * cols + j];
  for (size_t k = 0; k < cols * cols; k++) G[k] -= H[k]; /* F = G − H, not symmetric */
}

void mq_err_from_grams(mq_err_accum *acc, const double *H, const double *F, const double *Hxx,
                       const double *E, const double *W, const double *D, size_t rows,
                       size_t cols, double *scratch) {
  double *T = scratch;
  acc->n = 1;
  if (rows == 0) return;
  acc->mismatch_sum = mq_quadratic_form_sum(E, W, rows, cols, T);
  acc->ref_sum = mq_quadratic_form_sum(Hxx, W, rows, cols, T);
  double dhd = mq_quadratic_form_sum(H, D, rows, cols, T);
  /* T = W Fᵀ: T[r, i] = Σ_j F[i, j] w_r[j] = (F w_r)_i */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols, (int)cols, 1.0, W,
              (int)cols, F, (int)cols, 0.0, T, (int)cols);
  double cross = 0.0;
  for (size_t k = 0; k < rows * cols; k++) cross += D[k] * T[k];
  acc->err_sum = acc->mismatch_sum + 2.0 * cross + dhd;
}

double mq_err_relative(const mq_err_accum *a) {
  return a->ref_sum > 0 ? sqrt(a->err_sum / a->ref_sum) : (a->err_sum > 0 ? INFINITY : 0.0);
}

mq_status mq_linf_init(mq_linf_accum *a, const mq_layer_result *res, const size_t *perm,
                       const double *R, size_t n, mq_error *err) {
  mq_status st = MQ_OK;
  size_t rows = res->rows, cols = res->cols;
  *a = (mq_linf_accum){.rows = rows, .cols = cols, .n = n, .perm = perm, .R = R};
  a->S = mq_alloc(cols * rows, sizeof *a->S);
  a->rowmax = mq_calloc(rows, sizeof *a->rowmax);
  MQ_CHECK_ALLOC(err, a->S && a->rowmax, cols * rows * sizeof *a->S);
  for (size_t i = 0; i < cols; i++) {
    size_t g = (size_t)res->g_idx[perm[i]];
    double rii = R != NULL ? R[i + i * cols] : 1.0;
    for (size_t r = 0; r < rows; r++) {
      double d = (double)res->scales[r * res->ngroups + g] * rii;
      a->S[i * rows + r] = d * d;
    }
  }
cleanup:
  return st;
}

void mq_linf_accumulate(mq_linf_accum *a, const double *Xt, size_t count, double *scratch) {
  size_t rows = a->rows, cols = a->cols;
  if (count == 0 || rows == 0) return;
  double *V = scratch, *M = scratch + count * cols; /* V [count, cols], M [count, rows] */
  double inv_sqrt_n = 1.0 / sqrt((double)a->n);
  for (size_t k = 0; k < count; k++)
    for (size_t i = 0; i < cols; i++) V[k * cols + i] = Xt[k * cols + a->perm[i]] * inv_sqrt_n;
  if (a->R != NULL) /* V ← V·R⁻ᵀ = X̂Uᵀ */
    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, (int)count,
                (int)cols, 1.0, a->R, (int)cols, V, (int)cols);
  for (size_t k = 0; k < count * cols; k++) V[k] *= V[k];
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)count, (int)rows, (int)cols, 1.0, V,
              (int)cols, a->S, (int)rows, 0.0, M, (int)rows);
  for (size_t k = 0; k < count; k++)
    for (size_t r = 0; r < rows; r++)
      if (M[k * rows + r] > a->rowmax[r]) a->rowmax[r] = M[k * rows + r];
}

double mq_linf_bound(double max_rowmax, size_t n) {
  return sqrt(2.0 * log(2.0 * (double)n / 0.01) * max_rowmax);
}

void mq_linf_free(mq_linf_accum *a) {
  mq_free(a->S);
  mq_free(a->rowmax);
  a->S = a->rowmax = NULL;
}

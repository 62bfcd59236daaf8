#include "core/factor.h"
#include "core/factorizer.h"

#include <limits.h>
#include <string.h>

#include "core/blas.h"
#include "core/hessian.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"

enum { MQ_MAX_LAMBDA_RAISES = 6, MQ_TILE = 64 };

/* B = Sσ A Sσᵀ in place, B[a,b] = A[σ(a), σ(b)], with σ(a) = perm[n−1−a]: the permuted matrix
 * in reversed order, J·Hp·J, whose Cholesky factor gives R (see factor.h). */
static void reverse_permute(double *A, size_t n, const size_t *perm, size_t *sigma,
                            uint8_t *done, double *row) {
  for (size_t a = 0; a < n; a++) sigma[a] = perm[n - 1 - a];
  mq_permute_rows(A, n, n, sigma, done, row);
  for (size_t a = 0; a < n; a++) {
    double *r = A + a * n;
    for (size_t b = 0; b < n; b++) row[b] = r[sigma[b]];
    memcpy(r, row, n * sizeof *row);
  }
}

/* After a failed dpotrf("L") the strict upper triangle (column-major) still holds the matrix:
 * copy it back into the lower triangle, tile by tile, and restore the diagonal. */
static void restore_lower(double *B, size_t n, const double *diag) {
  for (size_t j0 = 0; j0 < n; j0 += MQ_TILE)
    for (size_t i0 = j0; i0 < n; i0 += MQ_TILE)
      for (size_t j = j0; j < j0 + MQ_TILE && j < n; j++)
        for (size_t i = i0 > j + 1 ? i0 : j + 1; i < i0 + MQ_TILE && i < n; i++)
          B[i + j * n] = B[j + i * n];
  for (size_t a = 0; a < n; a++) B[a + a * n] = diag[a];
}

/* Reversing the flat column-major array maps L[a,b] to position (n−1−a, n−1−b): R = JLJ. */
static void reverse_in_place(double *A, size_t len) {
  if (len == 0) return;
  for (size_t i = 0, j = len - 1; i < j; i++, j--) {
    double t = A[i];
    A[i] = A[j];
    A[j] = t;
  }
}

mq_status mq_factor_raise_lambda(double *lambda, int *raises, double mean_diag, int pivot,
                                 const char *layer, mq_error *err) {
  if (*raises == MQ_MAX_LAMBDA_RAISES)
    return mq__fail(err, MQ_ENUMERIC, __FILE__, __LINE__,
                    "%s: H + lambda*I is not positive definite even with lambda = %g (raised %d "
                    "times)", layer, *lambda, *raises);
  double raised = *lambda > 0 ? 10.0 * *lambda : 1e-6 * mean_diag;
  MQ_WARN("%s: Cholesky failed at pivot %d with lambda = %g; retrying with lambda = %g", layer,
          pivot, *lambda, raised);
  *lambda = raised;
  (*raises)++;
  return MQ_OK;
}

mq_status mq_factor_reverse_cholesky(double *H, size_t cols, const size_t *perm,
                                     double *lambda, int *raises, const char *layer,
                                     mq_error *err) {
  mq_status st = MQ_OK;
  size_t *sigma = mq_alloc(cols, sizeof *sigma);
  uint8_t *done = mq_alloc(cols, 1);
  double *row = mq_alloc(cols, sizeof *row), *diag = mq_alloc(cols, sizeof *diag);
  MQ_CHECK_ALLOC(err, sigma && done && row && diag, cols * sizeof *row);
  if (cols > (size_t)INT_MAX) MQ_FAIL(err, MQ_EINPUT, "%s: %zu columns is too many", layer, cols);
  reverse_permute(H, cols, perm, sigma, done, row);
  double mean = 0.0;
  for (size_t a = 0; a < cols; a++) {
    diag[a] = H[a + a * cols];
    mean += diag[a] / (double)cols;
  }
  int n = (int)cols, info = 0;
  *raises = 0;
  for (;;) {
    for (size_t a = 0; a < cols; a++) H[a + a * cols] = diag[a] + *lambda;
    dpotrf_("L", &n, H, &n, &info, 1);
    if (info == 0) break;
    MQ_CHECK(mq_factor_raise_lambda(lambda, raises, mean, info, layer, err));
    restore_lower(H, cols, diag);
  }
  reverse_in_place(H, cols * cols);
cleanup:
  mq_free(sigma);
  mq_free(done);
  mq_free(row);
  mq_free(diag);
  return st;
}

/* ---- the replicated factorizer (factorizer.h) ---- */

static mq_status local_factor(void *ctx, double *H, size_t cols, const size_t *perm,
                              double *lambda, int *raises, const char *layer, mq_error *err) {
  mq_local_factor *lf = ctx;
  lf->R = H;
  lf->cols = cols;
  return mq_factor_reverse_cholesky(H, cols, perm, lambda, raises, layer, err);
}

static mq_status local_panel(void *ctx, size_t i1, size_t width, double *panel, mq_error *err) {
  const mq_local_factor *lf = ctx;
  size_t ld = i1 + width;
  (void)err;
  for (size_t j = 0; j < width; j++) {
    const double *src = lf->R + (i1 + j) * lf->cols;
    double *dst = panel + j * ld;
    memcpy(dst, src, (i1 + j + 1) * sizeof *dst);
    memset(dst + i1 + j + 1, 0, (width - j - 1) * sizeof *dst);
  }
  return MQ_OK;
}

static const double *local_full(void *ctx) { return ((mq_local_factor *)ctx)->R; }

void mq_local_factorizer(mq_factorizer *f, mq_local_factor *ctx) {
  *f = (mq_factorizer){.factor = local_factor, .panel = local_panel, .full = local_full,
                       .ctx = ctx};
}

#include "core/factor.h"

#include <limits.h>

#include "core/blas.h"
#include "core/hessian.h"
#include "core/log.h"
#include "core/status.h"

enum { MQ_MAX_LAMBDA_RAISES = 6 };

/* Lower triangle of B = J(Hp + λI)J in column-major: B[a,b] = Hp[n−1−a, n−1−b]. H being
 * symmetric, column b of B is read from ONE row of H (perm[n−1−b]), which stays in cache. */
static void fill_reversed(const double *H, size_t n, const size_t *perm, double lambda,
                          double *B) {
  for (size_t b = 0; b < n; b++) {
    const double *hrow = H + perm[n - 1 - b] * n;
    for (size_t a = b; a < n; a++) B[a + b * n] = hrow[perm[n - 1 - a]];
    B[b + b * n] += lambda;
  }
}

/* Reversing the flat column-major array maps L[a,b] to position (n−1−a, n−1−b): R = JLJ. */
static void reverse_in_place(double *A, size_t len) {
  for (size_t i = 0, j = len - 1; i < j; i++, j--) {
    double t = A[i];
    A[i] = A[j];
    A[j] = t;
  }
}

mq_status mq_factor_reverse_cholesky(const double *H, size_t cols, const size_t *perm,
                                     double *lambda, int *raises, double *R, const char *layer,
                                     mq_error *err) {
  mq_status st = MQ_OK;
  if (cols > (size_t)INT_MAX) MQ_FAIL(err, MQ_EINPUT, "%s: %zu columns is too many", layer, cols);
  int n = (int)cols, info = 0;
  *raises = 0;
  for (;;) {
    fill_reversed(H, cols, perm, *lambda, R);
    dpotrf_("L", &n, R, &n, &info, 1);
    if (info == 0) break;
    if (*raises == MQ_MAX_LAMBDA_RAISES)
      MQ_FAIL(err, MQ_ENUMERIC,
              "%s: H + lambda*I is not positive definite even with lambda = %g (raised %d times)",
              layer, *lambda, *raises);
    double raised = *lambda > 0 ? 10.0 * *lambda : 1e-6 * mq_hessian_mean_diag(H, cols);
    MQ_WARN("%s: Cholesky failed at pivot %d with lambda = %g; retrying with lambda = %g", layer,
            info, *lambda, raised);
    *lambda = raised;
    (*raises)++;
  }
  reverse_in_place(R, cols * cols);
cleanup:
  return st;
}

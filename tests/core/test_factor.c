/* The reverse Cholesky factor: R upper with R Rᵀ = Hp + λI (Hp = H permuted), U = R⁻¹ then
 * satisfies UᵀU = (Hp+λI)⁻¹; and λ escalation on a singular H. */
#include <stdlib.h>

#include "core/factor.h"
#include "core/log.h"
#include "mq_test.h"

static double rnd(void) { return (double)rand() / RAND_MAX - 0.5; }

static void test_factor_identity(void) {
  enum { N = 37, K = 60 };
  static double X[K * N], H[N * N], R[N * N]; /* R: the factor, computed in a copy of H */
  size_t perm[N];
  for (int k = 0; k < K * N; k++) X[k] = rnd();
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += X[k * N + i] * X[k * N + j];
      H[i * N + j] = s / K;
    }
  for (int i = 0; i < N; i++) perm[i] = (size_t)((i * 11) % N); /* a permutation (gcd 1) */
  double lambda = 0.01;
  int raises = -1;
  mq_error err;
  mq_error_clear(&err);
  for (int k = 0; k < N * N; k++) R[k] = H[k];
  MQ_EXPECT_EQ_INT(mq_factor_reverse_cholesky(R, N, perm, &lambda, &raises, "t", &err), MQ_OK);
  MQ_EXPECT_EQ_INT(raises, 0);
  double worst = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = 0; /* (R Rᵀ)_ij = Σ_k≥max(i,j) R_ik R_jk, R column-major upper */
      for (int k = i > j ? i : j; k < N; k++) s += R[i + k * N] * R[j + k * N];
      double want = H[perm[i] * N + perm[j]] + (i == j ? lambda : 0.0);
      if (fabs(s - want) > worst) worst = fabs(s - want);
    }
  MQ_EXPECT_LT(worst, 1e-12);
  for (int i = 0; i < N; i++) MQ_EXPECT_GT(R[i + i * N], 0);
}

static void test_escalation(void) {
  enum { N = 4 };
  /* rank-1 H: singular; λ = 0 fails, escalation must find a λ > 0 */
  double H[N * N], R[N * N];
  size_t perm[N] = {2, 0, 3, 1};
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) H[i * N + j] = (i + 1.0) * (j + 1.0);
  double lambda = 0.0;
  int raises = 0;
  mq_error err;
  mq_error_clear(&err);
  mq_log_setup(MQ_LOG_ERROR, 0, 0);
  for (int k = 0; k < N * N; k++) R[k] = H[k];
  MQ_EXPECT_EQ_INT(mq_factor_reverse_cholesky(R, N, perm, &lambda, &raises, "t", &err), MQ_OK);
  MQ_EXPECT_GE(raises, 1);
  MQ_EXPECT_GT(lambda, 0);
  /* the retry restored the matrix: R Rᵀ = Hp + λI */
  double worst = 0;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = i > j ? i : j; k < N; k++) s += R[i + k * N] * R[j + k * N];
      double want = H[perm[i] * N + perm[j]] + (i == j ? lambda : 0.0);
      if (fabs(s - want) > worst) worst = fabs(s - want);
    }
  MQ_EXPECT_LT(worst, 1e-9);
  /* an indefinite H that no λ up to 10^6·(initial) fixes → MQ_ENUMERIC */
  for (int i = 0; i < N * N; i++) H[i] = 0;
  H[0] = 1.0;
  H[5] = -1e12;
  lambda = 1e-3;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_factor_reverse_cholesky(H, N, perm, &lambda, &raises, "t", &err),
                   MQ_ENUMERIC);
  MQ_EXPECT_EQ_INT(raises, 6);
}

int main(void) {
  test_factor_identity();
  test_escalation();
  return mq_test_finish("test_factor");
}

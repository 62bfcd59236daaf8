/* The distributed factor against the local one (src/core/factor.h): every panel of R equal to
 * the local R, R Rᵀ = Hp + λI, the same λ escalation, MQ_ENUMERIC on every rank when no λ
 * helps; grids of 1–4 ranks, sub-communicators, ranks that own nothing. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/factor.h"
#include "core/log.h"
#include "core/mem.h"
#include "parallel/scalapack_factor.h"
#include "parallel/mq_mpi_test.h"

static int world_rank;

static uint64_t rng_state;
static uint64_t next_u64(void) { /* splitmix64: the same stream on every rank */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double uniform(void) { return (double)(next_u64() >> 11) * 0x1p-53; }

static void random_perm(size_t *perm, size_t n) {
  for (size_t i = 0; i < n; i++) perm[i] = i;
  for (size_t i = n; i > 1; i--) {
    size_t j = next_u64() % i, t = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = t;
  }
}

/* H = XᵀX/K, K = n + 8 samples: SPD, exactly symmetric (same summation order for ij, ji). */
static void random_spd(double *H, size_t n) {
  size_t K = n + 8;
  double *X = mq_alloc(K * n, sizeof *X); /* [K, n] */
  for (size_t k = 0; k < K * n; k++) X[k] = uniform() - 0.5;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t k = 0; k < K; k++) s += X[k * n + i] * X[k * n + j];
      H[i * n + j] = s / (double)K;
    }
  mq_free(X);
}

/* H = Q·diag(d)·Q with Q = I − 2uuᵀ/uᵀu (a reflection): eigenvalues d, dense entries. */
static void reflected_diag(double *H, size_t n, const double *d) {
  double *u = mq_alloc(n, sizeof *u), uu = 0;
  for (size_t i = 0; i < n; i++) u[i] = uniform() - 0.5, uu += u[i] * u[i];
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0; /* Σ_k Q_ik d_k Q_kj */
      for (size_t k = 0; k < n; k++)
        s += ((i == k) - 2 * u[i] * u[k] / uu) * d[k] * ((k == j) - 2 * u[k] * u[j] / uu);
      H[i * n + j] = s;
    }
  for (size_t i = 0; i < n; i++) /* exactly symmetric, as both factors read one triangle */
    for (size_t j = 0; j < i; j++)
      H[i * n + j] = H[j * n + i] = 0.5 * (H[i * n + j] + H[j * n + i]);
  mq_free(u);
}

typedef struct factor_case {
  const char *name;
  size_t n;
  int nb;
  size_t width;   /* sweep block for the panels */
  double lambda;  /* initial λ */
  double tol;     /* panel vs local R, relative to max |R| */
} factor_case;

/* Local entries of B = J·Hp·J as documented, and their count over the grid. */
static void check_layout(mq_dist_factor *f, mq_ctx *ctx, const double *H, const size_t *perm,
                         size_t n) {
  size_t len = mq_dist_factor_local_len(f), bad = 0;
  const double *loc = mq_dist_factor_local(f);
  for (size_t k = 0; k < len; k++) {
    size_t a, b;
    mq_dist_factor_local_entry(f, k, &a, &b);
    if (a >= n || b >= n || loc[k] != H[perm[n - 1 - a] * n + perm[n - 1 - b]]) bad++;
  }
  MQ_EXPECT_EQ_INT(bad, 0);
  unsigned long long mine = len, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, mq_ctx_comm(ctx));
  MQ_EXPECT_EQ_INT(all, n * n);
}

/* All panels of the sweep assembled into R_full ([n, n] column-major); checks each panel's
 * shape: zeros below the diagonal. */
static void gather_panels(mq_dist_factor *f, size_t n, size_t width, double *R_full) {
  memset(R_full, 0, n * n * sizeof *R_full);
  for (size_t i1 = 0; i1 < n; i1 += width) {
    size_t w = width < n - i1 ? width : n - i1, ld = i1 + w, nonzero_below = 0;
    double *panel = mq_alloc(ld * w, sizeof *panel);
    mq_error err;
    mq_error_clear(&err);
    MQ_EXPECT_EQ_INT(mq_dist_factor_panel(f, i1, w, panel, &err), MQ_OK);
    for (size_t j = i1; j < i1 + w; j++)
      for (size_t i = 0; i < ld; i++) {
        double v = panel[i + (j - i1) * ld];
        if (i > j && v != 0.0) nonzero_below++;
        R_full[i + j * n] = v;
      }
    MQ_EXPECT_EQ_INT(nonzero_below, 0);
    mq_free(panel);
  }
}

/* max |R Rᵀ − (Hp + λI)| relative to max |H|, R upper, column-major. */
static double residual(const double *R, const double *H, const size_t *perm, size_t n,
                       double lambda) {
  double worst = 0, hmax = 1e-300;
  for (size_t k = 0; k < n * n; k++) hmax = fmax(hmax, fabs(H[k]));
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0;
      for (size_t k = i > j ? i : j; k < n; k++) s += R[i + k * n] * R[j + k * n];
      double want = H[perm[i] * n + perm[j]] + (i == j ? lambda : 0.0);
      worst = fmax(worst, fabs(s - want));
    }
  return worst / hmax;
}

/* The distributed factor f of H against the local factor R (λ lam_l after raises_l). */
static void compare(mq_dist_factor *f, mq_ctx *ctx, const factor_case *c, const double *H,
                    const size_t *perm, const double *R, double lam_l, int raises_l,
                    mq_status expect_st) {
  size_t n = c->n;
  double lam_d = c->lambda;
  int raises_d = -1;
  mq_error err;
  mq_error_clear(&err);
  mq_dist_factor_set_from(f, H, perm);
  check_layout(f, ctx, H, perm, n);
  mq_status st = mq_dist_factor_cholesky(f, &lam_d, &raises_d, c->name, &err);
  MQ_EXPECT_EQ_INT(st, expect_st);
  int lo = (int)st, hi = (int)st;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, mq_ctx_comm(ctx));
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, mq_ctx_comm(ctx));
  MQ_EXPECT_EQ_INT(lo, hi); /* every rank got the same status */
  MQ_EXPECT_EQ_INT(raises_d, raises_l);
  MQ_EXPECT_EQ_DBL(lam_d, lam_l); /* bit for bit: the same mean, the same raises */
  if (st != MQ_OK || expect_st != MQ_OK) return;
  double *Rd = mq_alloc(n * n, sizeof *Rd);
  gather_panels(f, n, c->width, Rd);
  double rmax = 1e-300, worst = 0;
  for (size_t j = 0; j < n; j++)
    for (size_t i = 0; i <= j; i++) {
      rmax = fmax(rmax, fabs(R[i + j * n]));
      worst = fmax(worst, fabs(Rd[i + j * n] - R[i + j * n]));
    }
  MQ_EXPECT_LE(worst, c->tol * rmax);
  if (!(worst <= c->tol * rmax))
    fprintf(stderr, "%s: panel error %.3g (max |R| %.3g)\n", c->name, worst, rmax);
  double res = residual(Rd, H, perm, n, lam_d);
  MQ_EXPECT_LE(res, 1e-12);
  if (getenv("MQ_TEST_VERBOSE") != NULL)
    fprintf(stderr, "rank %d %s: raises %d lambda %g panel error %.3g residual %.3g\n",
            world_rank, c->name, raises_d, lam_d, worst / rmax, res);
  mq_free(Rd);
}

/* The distributed factor of H on ctx against the local factor; expect_st for both. */
static void run_case(mq_ctx *ctx, const factor_case *c, const double *H, const size_t *perm,
                     mq_status expect_st) {
  size_t n = c->n;
  double *R = mq_alloc(n * n, sizeof *R);
  memcpy(R, H, n * n * sizeof *R); /* the local factor overwrites its input */
  double lam_l = c->lambda;
  int raises_l = -1;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_factor_reverse_cholesky(R, n, perm, &lam_l, &raises_l, c->name, &err),
                   expect_st);
  mq_dist_factor *f = NULL;
  MQ_EXPECT_EQ_INT(mq_dist_factor_create(ctx, n, c->nb, &f, &err), MQ_OK);
  if (f != NULL) compare(f, ctx, c, H, perm, R, lam_l, raises_l, expect_st);
  mq_dist_factor_destroy(&f);
  MQ_EXPECT(f == NULL);
  mq_free(R);
}

static void test_spd(mq_ctx *ctx, int seed) {
  const factor_case cases[] = {
      {"spd150", 150, 16, 32, 0.0, 1e-10}, /* several blocks per process */
      {"spd37", 37, 16, 8, 0.0, 1e-10},    /* n not a multiple of nb nor of the grid */
      {"spd100", 100, 7, 13, 0.0, 1e-10},  /* odd block, odd panels */
      {"spd5", 5, 64, 2, 0.0, 1e-10},      /* nb clamped to n: one rank owns everything */
      {"spd1", 1, 64, 1, 0.0, 1e-10},
      {"spd64", 64, 16, 128, 0.0, 1e-10},  /* one panel covering all of R */
  };
  rng_state = (uint64_t)seed;
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    factor_case c = cases[k];
    double *H = mq_alloc(c.n * c.n, sizeof *H);
    size_t *perm = mq_alloc(c.n, sizeof *perm);
    random_spd(H, c.n);
    random_perm(perm, c.n);
    double mean = 0;
    for (size_t i = 0; i < c.n; i++) mean += H[i * c.n + i] / (double)c.n;
    c.lambda = 0.01 * mean;
    run_case(ctx, &c, H, perm, MQ_OK);
    mq_free(H);
    mq_free(perm);
  }
}

/* Rank-1 integer H: the second pivot is exactly 0 in both factors, λ = 1e-6·mean fixes it. */
static void test_singular(mq_ctx *ctx) {
  enum { N = 41 };
  static double H[N * N];
  size_t perm[N];
  double v[N];
  rng_state = 5;
  for (int i = 0; i < N; i++) /* ±1, ±2, ±3 */
    v[i] = (double)(1 + (int)(next_u64() % 3)) * (uniform() < .5 ? -1 : 1);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) H[i * N + j] = v[i] * v[j];
  random_perm(perm, N);
  factor_case c = {"rank1", N, 8, 16, 0.0, 1e-10}; /* cond ~1e8, yet ~3e-13 observed */
  run_case(ctx, &c, H, perm, MQ_OK);
}

/* One eigenvalue −5e−5 (mean diag ≈ 1): λ 0 → 1e-6·mean → ×10 → ×10 succeeds, 3 raises;
 * eigenvalue −1: no λ up to 0.1·mean helps → MQ_ENUMERIC after 6 raises, on every rank. */
static void test_indefinite(mq_ctx *ctx) {
  enum { N = 45 };
  static double H[N * N];
  double d[N];
  size_t perm[N];
  rng_state = 9;
  for (int i = 0; i < N; i++) d[i] = 0.5 + uniform();
  d[N / 3] = -5e-5;
  reflected_diag(H, N, d);
  random_perm(perm, N);
  factor_case fixable = {"neg_eig", N, 4, 10, 0.0, 1e-9};
  run_case(ctx, &fixable, H, perm, MQ_OK);
  factor_case from_small = {"neg_eig_lambda", N, 4, 10, 1e-7, 1e-9};
  run_case(ctx, &from_small, H, perm, MQ_OK);
  d[N / 3] = -1.0;
  reflected_diag(H, N, d);
  factor_case hopeless = {"indefinite", N, 4, 10, 0.0, 0.0};
  run_case(ctx, &hopeless, H, perm, MQ_ENUMERIC);
}

/* Two factors alive at once on one communicator, freed out of order; then grids on the two
 * halves of the world at the same time (BLACS grids from arbitrary communicators). */
static void test_communicators(mq_ctx *world) {
  enum { N = 30 };
  static double H[N * N];
  size_t perm[N];
  rng_state = 3;
  random_spd(H, N);
  random_perm(perm, N);
  mq_dist_factor *f1 = NULL, *f2 = NULL;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_dist_factor_create(world, N, 4, &f1, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_dist_factor_create(world, N, 8, &f2, &err), MQ_OK);
  double lam = 0.1, panel[N * N];
  int raises = 0;
  mq_dist_factor_set_from(f2, H, perm);
  MQ_EXPECT_EQ_INT(mq_dist_factor_panel(f2, 0, N, panel, &err), MQ_EFAIL); /* not factored */
  mq_error_clear(&err);
  mq_dist_factor_destroy(&f1);
  MQ_EXPECT_EQ_INT(mq_dist_factor_cholesky(f2, &lam, &raises, "two", &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_dist_factor_panel(f2, 0, N, panel, &err), MQ_OK);
  MQ_EXPECT_LE(residual(panel, H, perm, N, lam), 1e-12);
  MQ_EXPECT_GE(mq_dist_factor_bytes(f2), mq_dist_factor_local_len(f2) * sizeof(double));
  mq_dist_factor_destroy(&f2);
  mq_dist_factor_destroy(&f2); /* a nulled handle is fine */

  MPI_Comm half;
  mq_ctx *half_ctx = NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_rank, &half);
  MQ_EXPECT_EQ_INT(mq_ctx_create(half, &half_ctx), MQ_OK);
  test_spd(half_ctx, 100 + world_rank % 2); /* different problems on the two halves */
  mq_ctx_destroy(&half_ctx);
  MPI_Comm_free(&half);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  mq_log_setup(MQ_LOG_ERROR, world_rank, 0); /* the expected λ warnings stay quiet */
  mq_ctx *world = NULL;
  MQ_EXPECT_EQ_INT(mq_ctx_create(MPI_COMM_WORLD, &world), MQ_OK);
  test_spd(world, 1);
  test_singular(world);
  test_indefinite(world);
  test_communicators(world);
  mq_ctx_destroy(&world);
  MQ_EXPECT_EQ_INT(mq_mem_current(), 0); /* every mq_alloc freed */
  int rc = mq_mpi_test_finish("test_scalapack_factor");
  MPI_Finalize();
  return rc;
}

/* Exact sums: bit-identical results whatever the rank count, the split of the contributions
 * and their order; correct rounding back to double; round half to even at the fixed point's
 * last bit. Run at 1–4 ranks. */
#include <float.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#include "core/log.h"
#include "core/mem.h"
#include "parallel/exact_sum.h"
#include "parallel/partition.h"
#include "parallel/mq_mpi_test.h"

enum { N = 6000, LEN = 7, PATTERNS = 5 };

static int rank, size;
static mq_ctx *world; /* MPI_COMM_WORLD */

static uint64_t rng_state;
static uint64_t next_u64(void) { /* splitmix64: the same stream on every rank */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double uniform(void) { return (double)(next_u64() >> 11) * 0x1p-53; }

/* A single value through the fixed point and back. */
static double round_trip(double v, int e) {
  mq_exact_sum s;
  double out = NAN;
  mq_error err;
  mq_error_clear(&err);
  if (mq_exact_sum_init(&s, 1, e, &err) != MQ_OK) return NAN;
  mq_exact_sum_add(&s, &v);
  mq_exact_sum_result(&s, &out);
  mq_exact_sum_free(&s);
  return out;
}

/* Σ vs, in the given order, through the fixed point (serial). */
static double serial_sum(const double *vs, int count, int e) {
  mq_exact_sum s;
  double out = NAN;
  mq_error err;
  mq_error_clear(&err);
  if (mq_exact_sum_init(&s, 1, e, &err) != MQ_OK) return NAN;
  for (int i = 0; i < count; i++) mq_exact_sum_add(&s, &vs[i]);
  mq_exact_sum_result(&s, &out);
  mq_exact_sum_free(&s);
  return out;
}

/* The fixed-point integer n (set directly) read back at scale e. */
static double from_integer(__int128 n, int e) {
  mq_exact_sum s = {1, e, &n};
  double out = NAN;
  mq_exact_sum_result(&s, &out);
  return out;
}

static void test_scale(void) {
  MQ_EXPECT_EQ_INT(mq_exact_sum_scale(1.0), 125);
  MQ_EXPECT_EQ_INT(mq_exact_sum_scale(0.75), 125);
  MQ_EXPECT_EQ_INT(mq_exact_sum_scale(1.5), 124);
  MQ_EXPECT_EQ_INT(mq_exact_sum_scale(0x1p-1074), 1199);
  rng_state = 7;
  for (int k = 0; k < 1000; k++) { /* the largest e with bound·2^e·2 ≤ 2^126 */
    double bound = ldexp(0.5 + uniform(), (int)(uniform() * 400) - 200);
    int e = mq_exact_sum_scale(bound);
    MQ_EXPECT_LE(ldexp(bound, e) * 2, 0x1p126);
    MQ_EXPECT_GT(ldexp(bound, e + 1) * 2, 0x1p126);
  }
}

static void test_rounding(void) {
  /* half to even at the last fixed-point bit, both signs, scale 0 and −1 */
  const double in[] = {2.5, 3.5, -2.5, -3.5, 0.5, 1.5, -0.5, 0.25, 0.75, 0.5000000001};
  const double want[] = {2, 4, -2, -4, 0, 2, 0, 0, 1, 1};
  for (size_t k = 0; k < sizeof in / sizeof *in; k++)
    MQ_EXPECT_EQ_DBL(round_trip(in[k], 0), want[k]);
  MQ_EXPECT_EQ_DBL(round_trip(5.0, -1), 4.0); /* 2.5 → 2 */
  MQ_EXPECT_EQ_DBL(round_trip(7.0, -1), 8.0); /* 3.5 → 4 */
  MQ_EXPECT_EQ_DBL(round_trip(-7.0, -1), -8.0);
  MQ_EXPECT_EQ_DBL(round_trip(1e-300, 0), 0.0);
  /* back to double above 2^53: ties to even, sticky bits below the half */
  double a[] = {0x1p60, 128}, b[] = {0x1p60, 384}, c[] = {0x1p60, 129}, d[] = {-0x1p60, -384};
  MQ_EXPECT_EQ_DBL(serial_sum(a, 2, 0), 0x1p60);
  MQ_EXPECT_EQ_DBL(serial_sum(b, 2, 0), 0x1p60 + 512);
  MQ_EXPECT_EQ_DBL(serial_sum(c, 2, 0), 0x1p60 + 256);
  MQ_EXPECT_EQ_DBL(serial_sum(d, 2, 0), -(0x1p60 + 512));
  double far[] = {0x1p100, 0x1p47 + 1}; /* 2^47+1 is just above half an ulp of 2^100 */
  MQ_EXPECT_EQ_DBL(serial_sum(far, 2, 0), 0x1p100 + 0x1p48);
  /* subnormal results round at 2^−1074: 2^25 at scale 1100 is 2^−1075, a tie → 0 */
  MQ_EXPECT_EQ_DBL(from_integer((__int128)1 << 25, 1100), 0.0);
  MQ_EXPECT_EQ_DBL(from_integer((__int128)3 << 25, 1100), 0x1p-1073);
  MQ_EXPECT_EQ_DBL(from_integer(-((__int128)5 << 25), 1100), -0x1p-1073);
  MQ_EXPECT_EQ_DBL(from_integer(((__int128)1 << 126) + 1, 0), 0x1p126);
  MQ_EXPECT_EQ_DBL(from_integer(-((__int128)1 << 126) - ((__int128)1 << 73), 0),
                   -0x1p126); /* tie */
  MQ_EXPECT_EQ_DBL(from_integer(-((__int128)3 << 73) - ((__int128)1 << 126), 0),
                   -0x1p126 - 0x1p75);
  MQ_EXPECT_EQ_DBL(from_integer(-((__int128)1 << 126) * 2, 0), -0x1p127); /* the most negative */
  /* only the final sum must fit: partial sums may wrap (unsigned modular addition) */
  double wrap[] = {1, 1, 1, 1, -1, -1, -1};
  MQ_EXPECT_EQ_DBL(serial_sum(wrap, 7, mq_exact_sum_scale(1.0)), 1.0);
}

static void test_round_trip(void) {
  rng_state = 11;
  int worst = 0;
  for (int k = 0; k < 20000; k++) { /* representable after scaling: exact */
    double v = ldexp(uniform() - 0.5, (int)(uniform() * 2000) - 1000);
    if (v == 0) continue;
    if (round_trip(v, mq_exact_sum_scale(fabs(v))) != v) worst++;
  }
  MQ_EXPECT_EQ_INT(worst, 0);
  double sub = 0x1p-1074 * 12345; /* subnormal, representable at scale 1100 */
  MQ_EXPECT_EQ_DBL(round_trip(sub, 1100), sub);
  MQ_EXPECT_EQ_DBL(round_trip(-sub, 1100), -sub);
  MQ_EXPECT_EQ_DBL(round_trip(0x1p100 + 0x1p48, 20), 0x1p100 + 0x1p48);
}

/* v · 2^e as a fixed-point integer, through the adding path (exact for the values used here,
 * whose last bit weighs at least 2^−e: test_round_trip checks that path). */
static __int128 to_integer(double v, int e) {
  __int128 n = 0;
  mq_exact_sum s = {1, e, &n};
  mq_exact_sum_add(&s, &v);
  return n;
}

/* The conversion back to double is correctly rounded for integers of every length: checked in
 * integer arithmetic, independently of how the conversion works — d = result(n) must be
 * within half its ulp of n (both as integers at scale e), and on a tie d's last bit is even. */
static void test_correct_rounding(void) {
  rng_state = 19;
  int wrong = 0;
  for (int k = 0; k < 200000; k++) {
    int bits = 60 + (int)(next_u64() % 67); /* |n| in [2^59, 2^126): 60 … 126 bits */
    unsigned __int128 a = ((unsigned __int128)next_u64() << 64) | next_u64();
    a = (a >> (128 - bits)) | ((unsigned __int128)1 << (bits - 1));
    if (k % 4 == 0) a &= ~(((unsigned __int128)1 << (bits - 54)) - 1); /* ties, exact values */
    if (k % 8 == 0) a |= (unsigned __int128)1 << (bits - 54);
    __int128 n = next_u64() & 1 ? -(__int128)a : (__int128)a;
    int e = (int)(next_u64() % 700) - 200;
    double d = from_integer(n, e), ulp = nextafter(fabs(d), INFINITY) - fabs(d);
    __int128 r = n - to_integer(d, e), half = to_integer(ulp, e) / 2;
    if (r < 0) r = -r;
    uint64_t mant;
    memcpy(&mant, &d, sizeof mant);
    if (r > half || (r == half && (mant & 1))) wrong++;
  }
  MQ_EXPECT_EQ_INT(wrong, 0);
}

/* Which rank adds contribution i in pattern p, and the order it goes through its share. */
static int owner_of(int p, int i, const int *shuffled_owner) {
  size_t first, count;
  switch (p) {
    case 0: /* contiguous balanced */
      for (int r = 0; r < size; r++) {
        mq_partition(N, size, r, &first, &count);
        if ((size_t)i >= first && (size_t)i < first + count) return r;
      }
      return 0;
    case 1: return i % size;                                          /* round robin */
    case 2: return size == 1 || i < N * 7 / 10 ? 0 : 1 + i % (size - 1);      /* uneven */
    case 3: return shuffled_owner[i];                                 /* random */
    default: return size - 1;                                         /* all on one rank */
  }
}

static void distributed(const double *vals, int p, const int *order, const int *sh_owner, int e,
                        double *out) {
  mq_exact_sum s;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_exact_sum_init(&s, LEN, e, &err), MQ_OK);
  for (int k = 0; k < N; k++) {
    int i = p == 2 ? N - 1 - k : p == 3 ? order[k] : k; /* reversed / permuted / natural */
    if (owner_of(p, i, sh_owner) == rank) mq_exact_sum_add(&s, vals + (size_t)i * LEN);
  }
  MQ_EXPECT_EQ_INT(mq_exact_sum_allreduce(&s, world, &err), MQ_OK);
  mq_exact_sum_result(&s, out);
  mq_exact_sum_free(&s);
}

/* Neumaier summation in long double: a reference independent of the fixed point. */
static double reference(const double *vals, int k) {
  long double s = 0, c = 0;
  for (int i = 0; i < N; i++) {
    long double v = vals[(size_t)i * LEN + k], t = s + v;
    c += fabsl(s) >= fabsl(v) ? (s - t) + v : (v - t) + s;
    s = t;
  }
  return (double)(s + c);
}

static void test_distributed(void) {
  double *vals = mq_alloc((size_t)N * LEN, sizeof *vals); /* [N contributions, LEN] */
  int *order = mq_alloc(N, sizeof *order), *sh_owner = mq_alloc(N, sizeof *sh_owner);
  rng_state = 2024;
  double bound = 0;
  for (int k = 0; k < LEN; k++) {
    double abs_sum = 0; /* Σ|v| bounds every partial sum in any order */
    for (int i = 0; i < N; i++) {
      double v = pow(10.0, -8 + 12 * uniform()) * (uniform() < 0.5 ? -1 : 1);
      vals[(size_t)i * LEN + k] = v;
      abs_sum += fabs(v);
    }
    if (abs_sum > bound) bound = abs_sum;
  }
  for (int i = 0; i < N; i++) order[i] = i, sh_owner[i] = (int)(next_u64() % (uint64_t)size);
  for (int i = N - 1; i > 0; i--) { /* Fisher–Yates, the same on every rank */
    int j = (int)(next_u64() % (uint64_t)(i + 1)), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  int e = mq_exact_sum_scale(bound);
  double serial[LEN], out[LEN];
  mq_exact_sum s;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_exact_sum_init(&s, LEN, e, &err), MQ_OK);
  for (int i = 0; i < N; i++) mq_exact_sum_add(&s, vals + (size_t)i * LEN);
  mq_exact_sum_result(&s, serial); /* one process, natural order: independent of size */
  mq_exact_sum_free(&s);
  for (int k = 0; k < LEN; k++) {
    double ref = reference(vals, k), ulp = nextafter(fabs(ref), INFINITY) - fabs(ref);
    MQ_EXPECT_LE(fabs(serial[k] - ref), ulp);
  }
  for (int p = 0; p < PATTERNS; p++) {
    distributed(vals, p, order, sh_owner, e, out);
    MQ_EXPECT_MEM_EQ(out, serial, sizeof out); /* bit-identical */
  }
  /* and identical on every rank: compare the bits of rank 0 */
  double root[LEN];
  memcpy(root, serial, sizeof root);
  MPI_Bcast(root, LEN, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MQ_EXPECT_MEM_EQ(root, serial, sizeof root);
  /* an empty sum is a valid collective */
  MQ_EXPECT_EQ_INT(mq_exact_sum_init(&s, 0, e, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_exact_sum_allreduce(&s, world, &err), MQ_OK);
  mq_exact_sum_free(&s);
  mq_free(vals);
  mq_free(order);
  mq_free(sh_owner);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MQ_EXPECT_EQ_INT(mq_ctx_create(MPI_COMM_WORLD, &world), MQ_OK);
  mq_log_setup(MQ_LOG_ERROR, rank, 0);
  test_scale();
  test_rounding();
  test_round_trip();
  test_correct_rounding();
  test_distributed();
  mq_ctx_destroy(&world);
  MQ_EXPECT_EQ_INT(mq_mem_current(), 0); /* every mq_alloc freed */
  int rc = mq_mpi_test_finish("test_exact_sum");
  MPI_Finalize();
  return rc;
}

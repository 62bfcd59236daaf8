/* A tiny assert header for mpiquant's C tests. Every failed check prints one line
 *   file:line[: rank R]: <expression> failed: <value of a> vs <value of b>
 * (the expression as written, both values, and in MPI tests the rank: include
 * "parallel/mq_mpi_test.h" instead of this file there), and the test keeps going so one run
 * shows every failure. The closing line `name: N passed, M failed` is what CI reads.
 *
 *   MQ_EXPECT(cond)               a condition without two values to show (pointer != NULL, ...)
 *   MQ_EXPECT_EQ_INT(a, b)        integers, compared as long long
 *   MQ_EXPECT_EQ_DBL(a, b)        doubles, exactly (a == b; NaN never equals)
 *   MQ_EXPECT_LT/LE/GT/GE(a, b)   doubles (integers up to 2^53 are exact)
 *   MQ_EXPECT_NEAR(a, b, tol)     |a − b| <= tol·max(1, |b|)
 *   MQ_EXPECT_STR_EQ(a, b)        C strings (NULL allowed, equal only to NULL)
 *   MQ_EXPECT_CONTAINS(s, part)   strstr(s, part) != NULL (s NULL fails)
 *   MQ_EXPECT_MEM_EQ(a, b, n)     n bytes; prints the first differing offset and its bytes */
#ifndef MQ_TEST_H
#define MQ_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int mq_test_failures = 0;
static int mq_test_checks = 0;

/* The rank printed with a failure: tests/parallel/mq_mpi_test.h defines MQ_TEST_RANK_HOOK as
 * a function returning the MPI rank (or −1 before MPI_Init / after MPI_Finalize). */
#ifdef MQ_TEST_RANK_HOOK
static int MQ_TEST_RANK_HOOK(void);
#endif

/* Counts a failure and formats "file:line" or "file:line: rank R" into buf: each failure is
 * one fprintf, so that the lines of several ranks do not interleave. */
static inline const char *mq_test_fail_at(char *buf, size_t len, const char *file, int line) {
  mq_test_failures++;
  int rank = -1;
#ifdef MQ_TEST_RANK_HOOK
  rank = MQ_TEST_RANK_HOOK();
#endif
  if (rank >= 0)
    snprintf(buf, len, "%s:%d: rank %d", file, line, rank);
  else
    snprintf(buf, len, "%s:%d", file, line);
  return buf;
}
#define MQ_FAILED_AT_ mq_test_fail_at(where_, sizeof where_, __FILE__, __LINE__)

#define MQ_EXPECT(cond)                                                                   \
  do {                                                                                    \
    mq_test_checks++;                                                                     \
    if (!(cond)) {                                                                        \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: expected %s\n", MQ_FAILED_AT_, #cond);                         \
    }                                                                                     \
  } while (0)

#define MQ_EXPECT_EQ_INT(a, b)                                                            \
  do {                                                                                    \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                 \
    mq_test_checks++;                                                                     \
    if (va_ != vb_) {                                                                     \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: %s == %s failed: %lld vs %lld\n", MQ_FAILED_AT_, #a, #b, va_,  \
              vb_);                                                                       \
    }                                                                                     \
  } while (0)

/* a OP b on doubles; %.17g round-trips every double, %a shows the bits. */
#define MQ_EXPECT_CMP_(a, op, b)                                                          \
  do {                                                                                    \
    double va_ = (double)(a), vb_ = (double)(b);                                          \
    mq_test_checks++;                                                                     \
    if (!(va_ op vb_)) {                                                                  \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: %s %s %s failed: %.17g vs %.17g (%a vs %a)\n", MQ_FAILED_AT_,  \
              #a, #op, #b, va_, vb_, va_, vb_);                                           \
    }                                                                                     \
  } while (0)

#define MQ_EXPECT_EQ_DBL(a, b) MQ_EXPECT_CMP_(a, ==, b)
#define MQ_EXPECT_LT(a, b) MQ_EXPECT_CMP_(a, <, b)
#define MQ_EXPECT_LE(a, b) MQ_EXPECT_CMP_(a, <=, b)
#define MQ_EXPECT_GT(a, b) MQ_EXPECT_CMP_(a, >, b)
#define MQ_EXPECT_GE(a, b) MQ_EXPECT_CMP_(a, >=, b)

/* |a − b| <= tol·max(1, |b|) */
#define MQ_EXPECT_NEAR(a, b, tol)                                                         \
  do {                                                                                    \
    double va_ = (double)(a), vb_ = (double)(b);                                          \
    mq_test_checks++;                                                                     \
    if (!(fabs(va_ - vb_) <= (tol) * fmax(1.0, fabs(vb_)))) {                             \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: %s ~ %s failed: %.17g vs %.17g (tol %g)\n", MQ_FAILED_AT_, #a, \
              #b, va_, vb_, (double)(tol));                                               \
    }                                                                                     \
  } while (0)

#define MQ_EXPECT_STR_EQ(a, b)                                                            \
  do {                                                                                    \
    const char *va_ = (a), *vb_ = (b);                                                    \
    mq_test_checks++;                                                                     \
    if (va_ == NULL || vb_ == NULL ? va_ != vb_ : strcmp(va_, vb_) != 0) {                \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: %s == %s failed: \"%s\" vs \"%s\"\n", MQ_FAILED_AT_, #a, #b,   \
              va_ ? va_ : "(null)", vb_ ? vb_ : "(null)");                                \
    }                                                                                     \
  } while (0)

#define MQ_EXPECT_CONTAINS(s, part)                                                       \
  do {                                                                                    \
    const char *vs_ = (s), *vp_ = (part);                                                 \
    mq_test_checks++;                                                                     \
    if (vs_ == NULL || strstr(vs_, vp_) == NULL) {                                        \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: %s contains %s failed: \"%s\" lacks \"%s\"\n", MQ_FAILED_AT_,  \
              #s, #part, vs_ ? vs_ : "(null)", vp_);                                      \
    }                                                                                     \
  } while (0)

#define MQ_EXPECT_MEM_EQ(a, b, n)                                                         \
  do {                                                                                    \
    const unsigned char *va_ = (const unsigned char *)(a);                                \
    const unsigned char *vb_ = (const unsigned char *)(b);                                \
    size_t n_ = (size_t)(n), k_ = 0;                                                      \
    mq_test_checks++;                                                                     \
    while (k_ < n_ && va_[k_] == vb_[k_]) k_++;                                           \
    if (k_ < n_) {                                                                        \
      char where_[512];                                                                   \
      fprintf(stderr, "%s: %s == %s (%zu bytes) failed: first difference at byte %zu: "   \
              "0x%02x vs 0x%02x\n", MQ_FAILED_AT_, #a, #b, n_, k_, va_[k_], vb_[k_]);     \
    }                                                                                     \
  } while (0)

/* Prints the plain closing line CI reads and returns the exit status. */
static inline int mq_test_finish(const char *name) {
  printf("%s: %d passed, %d failed\n", name, mq_test_checks - mq_test_failures, mq_test_failures);
  return mq_test_failures == 0 ? 0 : 1;
}

#endif

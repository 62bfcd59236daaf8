/* A tiny assert header for mpiquant's C tests: each failed check prints the expression, both
 * values, file and line, and the test keeps going so one run shows every failure. */
#ifndef MQ_TEST_H
#define MQ_TEST_H

#include <math.h>
#include <stdio.h>

static int mq_test_failures = 0;
static int mq_test_checks = 0;

#define MQ_EXPECT(cond)                                                             \
  do {                                                                              \
    mq_test_checks++;                                                               \
    if (!(cond)) {                                                                  \
      mq_test_failures++;                                                           \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);           \
    }                                                                               \
  } while (0)

#define MQ_EXPECT_EQ_INT(a, b)                                                           \
  do {                                                                                   \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                \
    mq_test_checks++;                                                                    \
    if (va_ != vb_) {                                                                    \
      mq_test_failures++;                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
              #b, va_, vb_);                                                             \
    }                                                                                    \
  } while (0)

/* |a − b| <= tol·max(1, |b|) */
#define MQ_EXPECT_NEAR(a, b, tol)                                                          \
  do {                                                                                     \
    double va_ = (double)(a), vb_ = (double)(b);                                           \
    mq_test_checks++;                                                                      \
    if (!(fabs(va_ - vb_) <= (tol) * fmax(1.0, fabs(vb_)))) {                              \
      mq_test_failures++;                                                                  \
      fprintf(stderr, "%s:%d: %s ~ %s failed: %.17g vs %.17g (tol %g)\n", __FILE__,       \
              __LINE__, #a, #b, va_, vb_, (double)(tol));                                  \
    }                                                                                      \
  } while (0)

/* Prints the plain closing line CI reads and returns the exit status. */
static int mq_test_finish(const char *name) {
  printf("%s: %d passed, %d failed\n", name, mq_test_checks - mq_test_failures, mq_test_failures);
  return mq_test_failures == 0 ? 0 : 1;
}

#endif

/* What the forward-pass benchmarks (bench_forward.c, bench_moe.c) share: a monotonic clock,
 * reproducible synthetic weights, and allocation that ends the program on failure. */
#ifndef MQ_TESTS_MODEL_BENCH_COMMON_H
#define MQ_TESTS_MODEL_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/mem.h"

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [-a, a) from a splitmix64 counter. */
static inline void bench_fill(float *x, size_t n, uint64_t salt, double a) {
  for (size_t k = 0; k < n; k++) {
    uint64_t z = k + salt * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    x[k] = (float)(((double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0) * a);
  }
}

/* n floats from mq_alloc; exits with a message naming `who` when there is no memory. */
static inline float *bench_alloc(const char *who, size_t n) {
  float *p = mq_alloc(n, sizeof(float));
  if (!p) {
    fprintf(stderr, "%s: out of memory (%zu floats)\n", who, n);
    exit(1);
  }
  return p;
}

#endif

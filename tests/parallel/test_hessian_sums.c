/* The calibration sums' reduction, at whatever rank count the test is started with:
 *   - mq_exact_sum_reduce_to_double (reduce-scatter of the 128-bit accumulators, allgather of
 *     the doubles) gives the bits of one process summing every contribution alone, on every
 *     rank, for lengths shorter than, equal to and not divisible by the rank count, and 0;
 *   - H (and Qronos' G) out of the engine, read back through the Hessian cache, equal bit for
 *     bit the one-rank context's, are exactly symmetric, and lie within 1e-12 (relative to the
 *     largest entry) of X̃ᵀX̃/n (X̃ᵀX/n) summed here in long double — within 1e-5 with
 *     MQ_SUMS_PRECISION=single (float32 products per chunk), whose measured error is printed;
 *   - H of a layer wide enough for the exact sums' loops to run on threads is bit-identical with
 *     1 and 3 BLAS threads per rank, with double and with float32 products. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/mem.h"
#include "parallel/ctx.h"
#include "parallel/exact_sum.h"
#include "parallel/layer_engine.h"
#include "parallel/mq_mpi_test.h"

static int rank, size;

static double value(unsigned long long k) { /* uniform in [−1, 1), counter-based */
  k = (k + 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL;
  k ^= k >> 31;
  k *= 0x94D049BB133111EBULL;
  k ^= k >> 29;
  return (double)(k >> 11) * 0x1.0p-52 - 1.0;
}

/* Contribution i to entry k: magnitudes over 12 decades, so the sums need every bit. */
static double contribution(int i, size_t k) {
  return value(1000003ULL * (unsigned long long)i + k) * pow(10.0, 6 * value(77ULL + k + 13ULL * (unsigned long long)i));
}

static void test_reduce_to_double(mq_ctx *world) {
  enum { CONTRIBUTIONS = 11 };
  const size_t lens[] = {0, 1, 3, 4, 7, 1001};
  for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++) {
    size_t len = lens[t];
    int e = mq_exact_sum_scale(CONTRIBUTIONS * 1e6);
    mq_exact_sum mine, alone;
    mq_error err;
    mq_error_clear(&err);
    double *out = mq_alloc(len + 1, sizeof *out), *ref = mq_alloc(len + 1, sizeof *ref);
    double *v = mq_alloc(len + 1, sizeof *v);
    MQ_EXPECT_EQ_INT(mq_exact_sum_init(&mine, len, e, &err), MQ_OK);
    MQ_EXPECT_EQ_INT(mq_exact_sum_init(&alone, len, e, &err), MQ_OK);
    for (int i = 0; i < CONTRIBUTIONS; i++) {
      for (size_t k = 0; k < len; k++) v[k] = contribution(i, k);
      mq_exact_sum_add(&alone, v);
      if (i % size == (rank + 1) % size) mq_exact_sum_add(&mine, v); /* any split will do */
    }
    mq_exact_sum_result(&alone, ref);
    for (size_t k = 0; k < len; k++) out[k] = NAN;
    MQ_EXPECT_EQ_INT(mq_exact_sum_reduce_to_double(&mine, world, out, &err), MQ_OK);
    MQ_EXPECT_MEM_EQ(out, ref, len * sizeof *out);
    mq_exact_sum_free(&mine);
    mq_exact_sum_free(&alone);
    mq_free(out);
    mq_free(ref);
    mq_free(v);
  }
}

/* A layer held in memory: X [n, cols] with an outlier channel, X̃ = X + noise. */
typedef struct layer {
  size_t rows, cols, n;
  float *W, *X, *Xq;
} layer;

static void layer_make(layer *l, size_t rows, size_t cols, size_t n, int mismatch) {
  *l = (layer){.rows = rows, .cols = cols, .n = n};
  l->W = mq_alloc(rows * cols, sizeof *l->W);
  l->X = mq_alloc(n * cols, sizeof *l->X);
  l->Xq = mismatch ? mq_alloc(n * cols, sizeof *l->Xq) : NULL;
  for (size_t k = 0; k < rows * cols; k++) l->W[k] = (float)(0.05 * value(k));
  for (size_t k = 0; k < n * cols; k++) {
    l->X[k] = (float)(value(5000000000ULL + k) * (k % cols == 3 ? 30.0 : 1.0));
    if (mismatch) l->Xq[k] = l->X[k] + (float)(0.05 * value(9000000000ULL + k));
  }
}

static void layer_free(layer *l) {
  mq_free(l->W);
  mq_free(l->X);
  mq_free(l->Xq);
}

static mq_status read_samples(void *user, mq_samples which, size_t first, size_t count,
                              double *buf, mq_error *err) {
  const layer *l = user;
  const float *x = which == MQ_SAMPLES_XQ && l->Xq != NULL ? l->Xq : l->X;
  (void)err;
  for (size_t k = 0; k < count * l->cols; k++) buf[k] = x[first * l->cols + k];
  return MQ_OK;
}

static mq_status read_weight_rows(void *user, size_t first, size_t count, float *W,
                                  mq_error *err) {
  const layer *l = user;
  (void)err;
  memcpy(W, l->W + first * l->cols, count * l->cols * sizeof *W);
  return MQ_OK;
}

/* H (and G) of l from the engine on ctx, through the cache; gram_f32: float32 products. */
static void engine_sums_as(mq_ctx *ctx, layer *l, mq_method method, int gram_f32,
                           mq_hessian_cache *cache) {
  mq_layer_source src = {
      .desc = {.name = "sums", .rows = l->rows, .cols = l->cols, .n = l->n, .has_x = 1,
               .has_xq = l->Xq != NULL},
      .read_samples = read_samples, .read_weight_rows = read_weight_rows, .user = l};
  mq_layer_extras extras = {.skip_errors = 1, .cache = cache};
  mq_quant_options o;
  mq_quant_options_init(&o);
  o.method = method;
  o.bits = 4;
  o.group_size = 32;
  o.gram_f32 = gram_f32;
  mq_layer_result res = {0};
  size_t row0 = 0;
  *cache = (mq_hessian_cache){.keep = 1};
  MQ_EXPECT_EQ_INT(mq__layer_engine_run(ctx, &src, &extras, &o, &res, &row0, NULL), MQ_OK);
  MQ_EXPECT_EQ_INT(cache->valid, 1);
  mq_layer_result_free(&res);
}

static int symmetric(const double *M, size_t cols);

static void engine_sums(mq_ctx *ctx, layer *l, mq_method method, mq_hessian_cache *cache) {
  engine_sums_as(ctx, l, method, 0, cache);
}

/* The same H with 1 and 3 threads per rank (core/blas.h: the exact sums' loops use as many as
 * BLAS does). 600 columns: 180300 triangle entries, above the loops' threading threshold. */
static void test_threads(mq_ctx *world) {
#ifndef MQ_NO_OPENBLAS_THREADS
  layer wide;
  layer_make(&wide, 64, 600, 1100, 1);
  for (int gram_f32 = 0; gram_f32 <= 1; gram_f32++) {
    mq_hessian_cache one = {0}, three = {0};
    openblas_set_num_threads(1);
    engine_sums_as(world, &wide, MQ_METHOD_QRONOS, gram_f32, &one);
    openblas_set_num_threads(3);
    MQ_EXPECT_EQ_INT(mq_blas_threads(), 3);
    engine_sums_as(world, &wide, MQ_METHOD_QRONOS, gram_f32, &three);
    openblas_set_num_threads(1);
    MQ_EXPECT_MEM_EQ(one.H, three.H, 600 * 600 * sizeof *one.H);
    MQ_EXPECT_MEM_EQ(one.G, three.G, 600 * 600 * sizeof *one.G);
    MQ_EXPECT_EQ_INT(symmetric(three.H, 600), 1);
    mq_hessian_cache_free(&one);
    mq_hessian_cache_free(&three);
  }
  layer_free(&wide);
#else
  (void)world;
#endif
}

/* max |M − AᵀB/n| over max |AᵀB/n|, the products summed in long double. */
static double oracle_error(const double *M, const float *A, const float *B, size_t n,
                           size_t cols) {
  double worst = 0.0, largest = 0.0;
  for (size_t i = 0; i < cols; i++) {
    for (size_t j = 0; j < cols; j++) {
      long double s = 0;
      for (size_t t = 0; t < n; t++) s += (long double)A[t * cols + i] * B[t * cols + j];
      double ref = (double)(s / (long double)n);
      worst = fmax(worst, fabs(M[i * cols + j] - ref));
      largest = fmax(largest, fabs(ref));
    }
  }
  return worst / largest;
}

static int symmetric(const double *M, size_t cols) {
  for (size_t i = 0; i < cols; i++)
    for (size_t j = 0; j < i; j++)
      if (memcmp(&M[i * cols + j], &M[j * cols + i], sizeof *M) != 0) return 0;
  return 1;
}

static void test_engine(mq_ctx *world, mq_ctx *self, layer *l, mq_method method) {
  mq_hessian_cache all = {0}, one = {0};
  size_t c = l->cols;
  engine_sums(world, l, method, &all);
  if (rank == 0) {
    engine_sums(self, l, method, &one);
    MQ_EXPECT_MEM_EQ(all.H, one.H, c * c * sizeof *all.H);
    if (l->Xq != NULL) MQ_EXPECT_MEM_EQ(all.G, one.G, c * c * sizeof *all.G);
  }
  /* the same bits on every rank */
  double *root = mq_memdup(all.H, c * c, sizeof *root);
  MPI_Bcast(root, (int)(c * c), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MQ_EXPECT_MEM_EQ(root, all.H, c * c * sizeof *root);
  mq_free(root);
  MQ_EXPECT_EQ_INT(symmetric(all.H, c), 1);
  const float *Xq = l->Xq != NULL ? l->Xq : l->X;
  const char *prec = getenv("MQ_SUMS_PRECISION");
  int single = prec != NULL && strcmp(prec, "single") == 0;
  double eh = oracle_error(all.H, Xq, Xq, l->n, c);
  double eg = l->Xq != NULL ? oracle_error(all.G, l->Xq, l->X, l->n, c) : 0.0;
  MQ_EXPECT_LE(eh, single ? 1e-5 : 1e-12);
  MQ_EXPECT_LE(eg, single ? 1e-5 : 1e-12);
  if (rank == 0)
    printf("%zu cols, %zu samples, %s products: max |H − oracle| / max |oracle| = %.2e, G %.2e\n",
           c, l->n, single ? "float32" : "double", eh, eg);
  mq_hessian_cache_free(&all);
  mq_hessian_cache_free(&one);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  mq_ctx *world = NULL, *self = NULL;
  MQ_EXPECT_EQ_INT(mq_ctx_create(MPI_COMM_WORLD, &world), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_ctx_create(MPI_COMM_SELF, &self), MQ_OK);
  mq_ctx_set_verbosity(world, 1);
  mq_ctx_set_verbosity(self, 1);
  test_reduce_to_double(world);
  layer plain, odd, mism;
  layer_make(&plain, 130, 80, 2500, 0); /* 3 sample chunks of 1024: a rank of 4 has none */
  layer_make(&odd, 64, 37, 1100, 0);    /* 703 triangle entries: uneven slices */
  layer_make(&mism, 64, 48, 1500, 1);
  test_engine(world, self, &plain, MQ_METHOD_OPTQ);
  test_engine(world, self, &odd, MQ_METHOD_OPTQ);
  test_engine(world, self, &mism, MQ_METHOD_QRONOS);
  test_threads(world);
  layer_free(&plain);
  layer_free(&odd);
  layer_free(&mism);
  mq_ctx_destroy(&self);
  mq_ctx_destroy(&world);
  int rc = mq_mpi_test_finish("test_hessian_sums");
  MPI_Finalize();
  return rc;
}

/* The distributed layer engine through the public API (mq_quantize_layer_arrays), at whatever
 * rank count the test is started with:
 *   - the packed result on the world context equals, bit for bit, the result of a one-rank
 *     context (MPI_COMM_SELF) on rank 0, for every method, rounding and factor;
 *   - the sweep's loss equals Σ_rows (w−q)ᵀ(H+λI)(w−q) recomputed here from the samples
 *     (the exact identity of docs/NUMERICS.md §5) for OPTQ;
 *   - a bad argument on every rank fails every rank with the same status and one cause. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpiquant.h"
#include "parallel/mq_mpi_test.h"

static float uniform(unsigned long long k) {
  k = (k + 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL;
  k ^= k >> 31;
  k *= 0x94D049BB133111EBULL;
  k ^= k >> 29;
  return (float)((double)(k >> 11) * 0x1.0p-52 - 1.0);
}

typedef struct layer {
  size_t rows, cols, n;
  float *W, *X, *Xq;
} layer;

static void layer_make(layer *l, size_t rows, size_t cols, size_t n, int mismatch) {
  *l = (layer){.rows = rows, .cols = cols, .n = n};
  l->W = malloc(rows * cols * sizeof *l->W);
  l->X = malloc(n * cols * sizeof *l->X);
  l->Xq = mismatch ? malloc(n * cols * sizeof *l->Xq) : NULL;
  for (size_t k = 0; k < rows * cols; k++) l->W[k] = 0.05f * uniform(k);
  for (size_t k = 0; k < n * cols; k++) {
    l->X[k] = uniform(7000000001ULL + k) * (k % cols % 11 == 0 ? 4.0f : 1.0f) +
              0.5f * uniform(9000000001ULL + k / cols);
    if (mismatch) l->Xq[k] = l->X[k] + 0.05f * uniform(11000000001ULL + k);
  }
}

static void layer_free(layer *l) {
  free(l->W);
  free(l->X);
  free(l->Xq);
}

/* Every rank's packed rows gathered on rank 0, in row order: [rows, words]. */
static uint32_t *gather_rows(const mq_layer_result *res, size_t rows, MPI_Comm comm) {
  int size, rank, mine = (int)(res->rows * res->words);
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  int *counts = malloc((size_t)size * sizeof *counts), *displs = malloc((size_t)size * sizeof *displs);
  MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm);
  displs[0] = 0;
  for (int r = 1; r < size; r++) displs[r] = displs[r - 1] + counts[r - 1];
  uint32_t *all = rank == 0 ? malloc(rows * res->words * sizeof *all + 4) : NULL;
  MPI_Gatherv(res->qweight, mine, MPI_UINT32_T, all, counts, displs, MPI_UINT32_T, 0, comm);
  free(counts);
  free(displs);
  return all;
}

/* Σ_rows (w−q)ᵀ(H+λI)(w−q), H = X̃ᵀX̃/n in double, for this rank's rows. */
static double quadratic_loss(const layer *l, const mq_layer_result *res, size_t row0) {
  size_t c = l->cols;
  const float *X = l->Xq ? l->Xq : l->X;
  float *What = malloc((res->rows * c + 1) * sizeof *What);
  double total = 0.0;
  mq_error err = {0};
  mq_layer_result_dequantize(res, What, &err);
  for (size_t r = 0; r < res->rows; r++) {
    double dd = 0.0;
    for (size_t t = 0; t < l->n; t++) {
      double y = 0.0;
      for (size_t j = 0; j < c; j++)
        y += (double)X[t * c + j] * ((double)l->W[(row0 + r) * c + j] - What[r * c + j]);
      total += y * y / (double)l->n;
    }
    for (size_t j = 0; j < c; j++) {
      double d = (double)l->W[(row0 + r) * c + j] - What[r * c + j];
      dd += d * d;
    }
    total += res->lambda * dd;
  }
  free(What);
  return total;
}

static void run_case(mq_ctx *world, mq_ctx *self, const layer *l, const mq_quant_options *o,
                     const char *label) {
  int rank = mq_ctx_rank(world), failures_before = mq_test_failures;
  mq_layer_arrays a = {.name = label, .rows = l->rows, .cols = l->cols, .n = l->n, .W = l->W,
                       .X = l->X, .Xq = l->Xq};
  mq_layer_result res = {0}, ref = {0};
  size_t row0 = 0, row0_ref = 0;
  MQ_EXPECT_EQ_INT(mq_quantize_layer_arrays(world, &a, o, &res, &row0), MQ_OK);
  uint32_t *all = gather_rows(&res, l->rows, mq_ctx_comm(world));
  if (rank == 0) {
    MQ_EXPECT_EQ_INT(mq_quantize_layer_arrays(self, &a, o, &ref, &row0_ref), MQ_OK);
    MQ_EXPECT_MEM_EQ(all, ref.qweight, l->rows * ref.words * sizeof *all);
    MQ_EXPECT_NEAR(res.loss, ref.loss, 1e-9);
    MQ_EXPECT_EQ_DBL(res.lambda, ref.lambda);
    MQ_EXPECT_NEAR(res.err, ref.err, 1e-12); /* reduced in floating point: not bit-exact */
  }
  if (o->method == MQ_METHOD_OPTQ && o->rounding == MQ_ROUND_NEAREST) {
    double mine = quadratic_loss(l, &res, row0), sum = 0.0;
    MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, mq_ctx_comm(world));
    MQ_EXPECT_NEAR(res.loss, sum, 1e-7); /* §5: Σe² = Σ_rows (w−q)ᵀ(H+λI)(w−q) */
  }
  if (rank == 0) printf("%-40s %s\n", label, mq_test_failures > failures_before ? "FAILED" : "ok");
  free(all);
  mq_layer_result_free(&res);
  mq_layer_result_free(&ref);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  mq_ctx *world = NULL, *self = NULL;
  mq_ctx_create(MPI_COMM_WORLD, &world);
  mq_ctx_create(MPI_COMM_SELF, &self);
  mq_ctx_set_verbosity(world, 1);
  layer plain, mism;
  layer_make(&plain, 300, 80, 2500, 0); /* 3 row blocks of 128, 3 sample chunks of 1024 */
  layer_make(&mism, 260, 64, 1100, 1);
  const struct {
    const char *label;
    mq_method method;
    mq_rounding rounding;
    mq_factor_mode factor;
    int mismatch;
  } cases[] = {
      {"rtn", MQ_METHOD_RTN, MQ_ROUND_NEAREST, MQ_FACTOR_LOCAL, 0},
      {"optq local", MQ_METHOD_OPTQ, MQ_ROUND_NEAREST, MQ_FACTOR_LOCAL, 0},
      {"optq scalapack", MQ_METHOD_OPTQ, MQ_ROUND_NEAREST, MQ_FACTOR_SCALAPACK, 0},
      {"optq stochastic", MQ_METHOD_OPTQ, MQ_ROUND_STOCHASTIC, MQ_FACTOR_LOCAL, 0},
      {"qronos X~ != X", MQ_METHOD_QRONOS, MQ_ROUND_NEAREST, MQ_FACTOR_LOCAL, 1},
      {"qronos X~ != X scalapack", MQ_METHOD_QRONOS, MQ_ROUND_NEAREST, MQ_FACTOR_SCALAPACK, 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    mq_quant_options o;
    mq_quant_options_init(&o);
    o.method = cases[k].method;
    o.rounding = cases[k].rounding;
    o.factor = cases[k].factor;
    o.bits = 3;
    o.group_size = 32;
    o.seed = 5;
    run_case(world, self, cases[k].mismatch ? &mism : &plain, &o, cases[k].label);
  }
  /* a bad argument: every rank gets the same status, the cause is recorded */
  mq_layer_arrays bad = {.name = "empty", .rows = 0, .cols = 4, .n = 1};
  mq_quant_options o;
  mq_quant_options_init(&o);
  mq_layer_result res = {0};
  size_t row0 = 0;
  MQ_EXPECT_EQ_INT(mq_quantize_layer_arrays(world, &bad, &o, &res, &row0), MQ_EUSAGE);
  MQ_EXPECT_EQ_INT(mq_ctx_error(world)->status, MQ_EUSAGE);
  MQ_EXPECT_CONTAINS(mq_ctx_error(world)->msg, "empty");
  layer_free(&plain);
  layer_free(&mism);
  mq_ctx_destroy(&self);
  mq_ctx_destroy(&world);
  int rc = mq_mpi_test_finish("test_layer_engine");
  MPI_Finalize();
  return rc;
}

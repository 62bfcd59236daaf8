/* Quantizes a random layer with the public API (include/mpiquant.h) on the ranks it is started
 * with, and checks the result against what the library promises:
 *   - the packed rows of every rank dequantize to Ŵ with Ŵ within one grid step of W for RTN;
 *   - for OPTQ, the measured error is the one recomputed here from the samples and Ŵ
 *     (err = ‖XWᵀ − XŴᵀ‖²_F / n), and it is below RTN's on the same layer;
 *   - the scalars are the same on every rank.
 * Exit status 0 when every check holds; prints "random_layer: ok" on rank 0.
 *   mpirun -np 3 random_layer [rows cols n] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpiquant.h>

/* A reproducible uniform in [-1, 1) from a counter (the same on every rank). */
static float uniform(unsigned long long k) {
  k = (k + 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL;
  k ^= k >> 31;
  k *= 0x94D049BB133111EBULL;
  k ^= k >> 29;
  return (float)((double)(k >> 11) * 0x1.0p-52 - 1.0);
}

static int fail(int rank, const char *what, double a, double b) {
  fprintf(stderr, "random_layer: rank %d: check failed: %s (%.9g vs %.9g)\n", rank, what, a, b);
  return 1;
}

/* Σ over this rank's rows of ‖X(w − ŵ)‖² and ‖Xw‖². */
static void output_error(const mq_layer_arrays *a, const float *What, size_t row0, size_t rows,
                         double *err, double *ref) {
  *err = *ref = 0.0;
  for (size_t r = 0; r < rows; r++)
    for (size_t t = 0; t < a->n; t++) {
      double y = 0.0, yq = 0.0;
      for (size_t c = 0; c < a->cols; c++) {
        y += (double)a->X[t * a->cols + c] * a->W[(row0 + r) * a->cols + c];
        yq += (double)a->X[t * a->cols + c] * What[r * a->cols + c];
      }
      *err += (y - yq) * (y - yq);
      *ref += y * y;
    }
}

/* Quantizes with `method`; returns the layer's err after checking it against our own
 * computation (summed over the ranks) and Ŵ against W where the method bounds it. */
static int run(mq_ctx *ctx, const mq_layer_arrays *a, mq_method method, double *err_out) {
  int rank = mq_ctx_rank(ctx), bad = 0;
  mq_quant_options o;
  mq_quant_options_init(&o);
  o.method = method;
  o.bits = 3;
  o.group_size = 32;
  mq_layer_result res = {0};
  size_t row0 = 0;
  if (mq_quantize_layer_arrays(ctx, a, &o, &res, &row0) != MQ_OK) {
    const mq_error *e = mq_ctx_error(ctx);
    if (e->status != MQ_OK) fprintf(stderr, "random_layer: rank %d: %s\n", rank, e->msg);
    return 1;
  }
  float *What = malloc((res.rows * res.cols + 1) * sizeof *What);
  mq_error err = {0};
  if (What == NULL || mq_layer_result_dequantize(&res, What, &err) != MQ_OK) return 1;
  for (size_t r = 0; method == MQ_METHOD_RTN && r < res.rows; r++)
    for (size_t c = 0; c < res.cols; c++) {
      double step = res.scales[r * res.ngroups + (size_t)res.g_idx[c]];
      double d = fabs(a->W[(row0 + r) * a->cols + c] - What[r * a->cols + c]);
      if (d > 0.5 * step * (1 + 1e-6) + 1e-12) bad |= fail(rank, "RTN |w - q| <= step/2", d, step);
    }
  double mine[2], sum[2];
  output_error(a, What, row0, res.rows, &mine[0], &mine[1]);
  MPI_Allreduce(mine, sum, 2, MPI_DOUBLE, MPI_SUM, mq_ctx_comm(ctx));
  double err_here = sum[0] / (double)a->n;
  if (fabs(err_here - res.err) > 1e-6 * fmax(err_here, 1e-30))
    bad |= fail(rank, "reported err equals err recomputed from the samples", res.err, err_here);
  double lo = res.err, hi = res.err; /* every rank reports the same scalars */
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_DOUBLE, MPI_MIN, mq_ctx_comm(ctx));
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_DOUBLE, MPI_MAX, mq_ctx_comm(ctx));
  if (lo != hi) bad |= fail(rank, "err identical on every rank", lo, hi);
  *err_out = res.err;
  free(What);
  mq_layer_result_free(&res);
  return bad;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  size_t rows = argc > 3 ? strtoul(argv[1], NULL, 10) : 200;
  size_t cols = argc > 3 ? strtoul(argv[2], NULL, 10) : 96;
  size_t n = argc > 3 ? strtoul(argv[3], NULL, 10) : 512;
  float *W = malloc(rows * cols * sizeof *W), *X = malloc(n * cols * sizeof *X);
  for (size_t k = 0; k < rows * cols; k++) W[k] = 0.1f * uniform(k);
  for (size_t k = 0; k < n * cols; k++) /* correlated inputs: OPTQ has something to exploit */
    X[k] = uniform(1000000007ULL + k) + 0.8f * uniform(2000000011ULL + k / cols);
  mq_layer_arrays a = {.name = "random", .rows = rows, .cols = cols, .n = n, .W = W, .X = X};
  mq_ctx *ctx = NULL;
  int bad = mq_ctx_create(MPI_COMM_WORLD, &ctx) != MQ_OK;
  double err_rtn = 0, err_optq = 0;
  if (!bad) mq_ctx_set_verbosity(ctx, 1);
  if (!bad) bad |= run(ctx, &a, MQ_METHOD_RTN, &err_rtn);
  if (!bad) bad |= run(ctx, &a, MQ_METHOD_OPTQ, &err_optq);
  if (!bad && !(err_optq < err_rtn)) bad |= fail(mq_ctx_rank(ctx), "OPTQ err < RTN err", err_optq, err_rtn);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (!bad && mq_ctx_rank(ctx) == 0)
    printf("random_layer: ok (%zu x %zu, n %zu, %d ranks): err RTN %.6g, OPTQ %.6g\n", rows, cols,
           n, mq_ctx_size(ctx), err_rtn, err_optq);
  mq_ctx_destroy(&ctx);
  free(W);
  free(X);
  MPI_Finalize();
  return bad;
}

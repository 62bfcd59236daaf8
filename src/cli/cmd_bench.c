/* `mpiquant bench --rows R --cols C --tokens N [quant options]`: a synthetic layer in memory,
 * every phase timed and set against the GEMM rate measured in the same run, so each figure is
 * also a fraction of what this machine can do. */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/blas.h"
#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"

static const char bench_help[] =
    "usage: mpiquant bench [--rows R] [--cols C] [--tokens N] [quantization options]\n"
    "\n"
    "Builds a synthetic layer (W [R, C], calibration inputs X [N, C] with outlier channels)\n"
    "in memory and prints seconds, GFLOP/s and the fraction of the same-run DGEMM/SGEMM rate\n"
    "of each phase: hessian (DSYRK), factor (Cholesky), sweep (its block GEMMs separately), pack.\n"
    "Defaults: R = C = 4096, N = 8192. Set OPENBLAS_NUM_THREADS to choose BLAS threads.\n"
    "\n";

typedef struct bench_args {
  long rows, cols, tokens;
  mq_quant_options opts;
} bench_args;

/* Deterministic pseudo-normal numbers (sum of 4 uniforms), cheap and reproducible. */
static double pseudo_normal(uint64_t *state) {
  double s = 0.0;
  for (int k = 0; k < 4; k++) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    s += (double)(*state >> 11) * 0x1.0p-53;
  }
  return (s - 2.0) * 1.7320508075688772; /* unit variance */
}

static void synth_problem(size_t rows, size_t cols, size_t n, float *W, double *X) {
  uint64_t st = 12345;
  for (size_t k = 0; k < rows * cols; k++) W[k] = (float)(0.02 * pseudo_normal(&st));
  for (size_t i = 0; i < n; i++)
    for (size_t c = 0; c < cols; c++) /* every 97th input channel is an outlier channel */
      X[i * cols + c] = pseudo_normal(&st) * (c % 97 == 0 ? 20.0 : 1.0 + (double)(c % 7) * 0.1);
}

/* Best of three square GEMMs of order n: the machine's rate in GFLOP/s. */
static double gemm_rate(int n, int single, mq_error *err) {
  void *a = mq_alloc((size_t)n * n, 8), *b = mq_alloc((size_t)n * n, 8), *c = mq_alloc((size_t)n * n, 8);
  double best = 0.0;
  if (a == NULL || b == NULL || c == NULL) {
    mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory in the GEMM probe");
  } else {
    memset(a, 0, (size_t)n * n * 8);
    memset(b, 0, (size_t)n * n * 8);
    for (size_t k = 0; k < (size_t)n * n; k++) {
      if (single) ((float *)a)[k] = ((float *)b)[k] = (float)(k % 13) * 0.1f;
      else ((double *)a)[k] = ((double *)b)[k] = (double)(k % 13) * 0.1;
    }
    for (int rep = 0; rep < 3; rep++) {
      double t0 = mq_wtime();
      if (single)
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      else
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
      double rate = 2.0 * n * (double)n * n / (mq_wtime() - t0) / 1e9;
      if (rate > best) best = rate;
    }
  }
  mq_free(a);
  mq_free(b);
  mq_free(c);
  return best;
}

static void print_phase(const char *name, double seconds, double flops, double peak,
                        const char *peak_name) {
  if (flops > 0 && seconds > 0)
    printf("%-26s %9.3f s %9.1f GFLOP/s %6.1f%% of %s\n", name, seconds, flops / seconds / 1e9,
           100.0 * flops / seconds / 1e9 / peak, peak_name);
  else
    printf("%-26s %9.3f s\n", name, seconds);
}

static mq_status run_bench(mq_cli *cli, const bench_args *a) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  size_t rows = (size_t)a->rows, cols = (size_t)a->cols, n = (size_t)a->tokens;
  float *W = mq_alloc(rows * cols, sizeof *W);
  int qronos = a->opts.method == MQ_METHOD_QRONOS;
  double *X = mq_alloc(n * cols, sizeof *X), *H = mq_calloc(cols * cols, sizeof *H);
  double *Xq = qronos ? mq_alloc(n * cols, sizeof *Xq) : NULL;
  double *G = qronos ? mq_calloc(cols * cols, sizeof *G) : NULL;
  mq_layer_result res = {0};
  MQ_CHECK_ALLOC(err, W && X && H && (!qronos || (Xq && G)), n * cols * sizeof *X);
  int probe = cols < 2048 ? (int)cols : 2048;
  double dgemm = gemm_rate(probe, 0, err), sgemm = gemm_rate(probe, 1, err);
  if (err->status != MQ_OK) MQ_CHECK(err->status);
  synth_problem(rows, cols, n, W, X);
  if (qronos) { /* X̃ = X + 5% noise: the quantized model's inputs differ from X */
    uint64_t state = 777;
    for (size_t k = 0; k < n * cols; k++) Xq[k] = X[k] + 0.05 * pseudo_normal(&state);
  }
  const double *Xt = qronos ? Xq : X; /* H is built from X̃ */
  double t0 = mq_wtime();
  enum { CHUNK = 1024 };
  for (size_t s = 0; s < n; s += CHUNK)
    mq_hessian_accumulate(H, cols, Xt + s * cols, n - s < CHUNK ? n - s : CHUNK);
  mq_hessian_finalize(H, cols, n);
  double t_hessian = mq_wtime() - t0, t_cross = 0.0;
  if (qronos) {
    t0 = mq_wtime();
    for (size_t s = 0; s < n; s += CHUNK)
      mq_hessian_cross_accumulate(G, cols, Xq + s * cols, X + s * cols, n - s < CHUNK ? n - s : CHUNK);
    mq_hessian_scale(G, cols, n);
    t_cross = mq_wtime() - t0;
  }
  mq_layer_aux aux = {0};
  mq_layer_input in = {.name = "bench", .rows = rows, .cols = cols, .W = W, .H = H, .G = G};
  st = mq_layer_quantize(&in, &a->opts, &res, &aux, err);
  mq_layer_timing t = aux.timing;
  mq_layer_aux_free(&aux);
  MQ_CHECK(st);
  double quant = t.prepare + t.refit + t.factor + t.sweep + t.pack;
  printf("bench: rows %zu, cols %zu, tokens %zu, %d bits, group %d, method %s, %d rank(s)\n", rows,
         cols, n, a->opts.bits, a->opts.group_size,
         a->opts.method == MQ_METHOD_RTN ? "rtn" : qronos ? "qronos" : "optq", cli->nranks);
  printf("machine (same run, order %d): DGEMM %.1f GFLOP/s, SGEMM %.1f GFLOP/s\n", probe, dgemm,
         sgemm);
  print_phase("hessian (DSYRK)", t_hessian, (double)n * (double)cols * (double)cols, dgemm, "DGEMM");
  if (qronos) print_phase("hessian G (DGEMM)", t_cross, 2.0 * (double)n * (double)cols * (double)cols, dgemm, "DGEMM");
  print_phase("prepare", t.prepare, 0, 0, "");
  if (qronos) print_phase("qronos refit (SGEMM+STRSM)", t.refit, t.refit_flops, sgemm, "SGEMM");
  print_phase("factor (Cholesky)", t.factor, t.factor_flops, dgemm, "DGEMM");
  print_phase("sweep (all)", t.sweep, t.sweep_flops, sgemm, "SGEMM");
  print_phase("  sweep block GEMM+TRSM", t.sweep_gemm, t.sweep_gemm_flops, sgemm, "SGEMM");
  print_phase("  sweep in-block", t.sweep - t.sweep_gemm, 0, 0, "");
  print_phase("pack", t.pack, 0, 0, "");
  print_phase("quantization phase", quant, 0, 0, "");
  printf("loss %.6g  bound_l2 %.6g  clipped %lld  lambda %.4g  peak memory %.1f MiB\n", res.loss,
         res.bound_l2, (long long)res.clipped, res.lambda, (double)mq_mem_peak() / 1048576.0);
cleanup:
  mq_layer_result_free(&res);
  mq_free(W);
  mq_free(X);
  mq_free(H);
  mq_free(Xq);
  mq_free(G);
  return st;
}

int mq_cmd_bench(mq_cli *cli, int argc, char **argv) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  bench_args a = {.rows = 4096, .cols = 4096, .tokens = 8192};
  mq_quant_options_init(&a.opts);
  for (int i = 1; i < argc; i++) {
    int used = 0;
    const char *v = NULL;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (cli->rank == 0) printf("%s%s", bench_help, mq_cli_quant_help);
      return MQ_OK;
    }
    if (mq_cli_common_option(cli, argv[i])) continue;
    MQ_CHECK(mq_cli_quant_option(argc, argv, &i, &a.opts, &used, err));
    if (used) continue;
    long *target = !strcmp(argv[i], "--rows") ? &a.rows : !strcmp(argv[i], "--cols") ? &a.cols
                 : !strcmp(argv[i], "--tokens") ? &a.tokens : NULL;
    if (target == NULL) MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant bench --help)", argv[i]);
    MQ_CHECK(mq_cli_value(argc, argv, &i, &v, err));
    MQ_CHECK(mq_cli_parse_int(argv[i - 1], v, 1, 1L << 24, target, err));
  }
  MQ_CHECK(mq_quant_options_check(&a.opts, err));
  if (cli->rank == 0) st = run_bench(cli, &a);
cleanup:
  return mq_cli_agree(cli, st);
}

/* `mpiquant bench --rows R --cols C --tokens N [quant options]`: a synthetic layer generated in
 * memory, run through the same distributed pipeline as `layer` (samples split in exact-sum
 * chunks, rows split, local or ScaLAPACK factor), every phase timed (maximum over ranks) and set
 * against the GEMM rate measured in the same run on every rank at once, so each figure is also
 * a fraction of what the ranks can do together. */
#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "cli/layer_job.h"
#include "core/blas.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"

static const char bench_help[] =
    "usage: mpiquant bench [--rows R] [--cols C] [--tokens N] [quantization options]\n"
    "\n"
    "Generates a layer in memory (W [R, C]; calibration inputs X [N, C] with outlier channels;\n"
    "for --method qronos also X~ = X + 5% noise), quantizes it with the distributed pipeline of\n"
    "`layer` on all ranks, and prints per phase the seconds (maximum over ranks), GFLOP/s and\n"
    "the fraction of the same-run DGEMM/SGEMM rate of all ranks together, the bytes handed to\n"
    "MPI reductions and the peak memory per rank. Defaults: R = C = 4096, N = 8192.\n"
    "Threads per rank: OPENBLAS_NUM_THREADS.\n"
    "\n";

typedef struct bench_args {
  long rows, cols, tokens;
  mq_quant_options opts;
} bench_args;

/* Deterministic value of entry k of stream `salt`, uniform with unit variance (splitmix64 of
 * the counter): every rank generates the same matrix, whichever part it reads, and cheaply, so
 * the generation does not dominate the Hessian phase it feeds. */
static double synth(uint64_t salt, uint64_t k) {
  uint64_t z = k + salt * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return ((double)(z >> 11) * 0x1.0p-53 - 0.5) * 3.4641016151377544; /* sqrt(12) */
}

typedef struct synth_layer {
  size_t cols;
} synth_layer;

static mq_status synth_samples(void *ctx, char which, size_t first, size_t count, double *buf,
                               mq_error *err) {
  const synth_layer *l = ctx;
  (void)err;
  for (size_t i = 0; i < count; i++)
    for (size_t c = 0; c < l->cols; c++) { /* every 97th input channel is an outlier channel */
      uint64_t k = (uint64_t)(first + i) * l->cols + c;
      double x = synth(1, k) * (c % 97 == 0 ? 20.0 : 1.0 + (double)(c % 7) * 0.1);
      buf[i * l->cols + c] = which == 'Q' ? x + 0.05 * synth(2, k) : x;
    }
  return MQ_OK;
}

static mq_status synth_weight_rows(void *ctx, size_t first, size_t count, float *W,
                                   mq_error *err) {
  const synth_layer *l = ctx;
  (void)err;
  for (size_t k = 0; k < count * l->cols; k++)
    W[k] = (float)(0.02 * synth(3, (uint64_t)first * l->cols + k));
  return MQ_OK;
}

/* Best of three square GEMMs of order n on this rank: its rate in GFLOP/s. */
static double gemm_rate(int n, int single) {
  size_t len = (size_t)n * (size_t)n;
  void *a = mq_calloc(len, 8), *b = mq_calloc(len, 8), *c = mq_calloc(len, 8);
  double best = 0.0;
  for (int rep = 0; a && b && c && rep < 3; rep++) {
    double t0 = mq_wtime();
    if (single)
      cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    else
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
    best = fmax(best, 2.0 * n * (double)n * n / (mq_wtime() - t0) / 1e9);
  }
  mq_free(a);
  mq_free(b);
  mq_free(c);
  return best;
}

static void print_phase(const char *name, double seconds, double flops, double peak,
                        const char *peak_name) {
  if (flops > 0 && seconds > 0)
    printf("%-28s %9.3f s %9.1f GFLOP/s %6.1f%% of %s\n", name, seconds, flops / seconds / 1e9,
           100.0 * flops / seconds / 1e9 / peak, peak_name);
  else
    printf("%-28s %9.3f s\n", name, seconds);
}

static void print_report(mq_cli *cli, const bench_args *a, const mq_layer_phases *ph,
                         const mq_layer_result *res, double dgemm, double sgemm, double mem_max,
                         double rss_max) {
  const mq_quant_options *o = &a->opts;
  int qronos = o->method == MQ_METHOD_QRONOS;
  printf("bench: rows %ld, cols %ld, tokens %ld, %d bits, group %d, method %s, factor %s, "
         "%d rank(s)\n", a->rows, a->cols, a->tokens, o->bits, o->group_size, mq_method_names[o->method],
         o->factor == MQ_FACTOR_SCALAPACK ? "scalapack" : "local", cli->nranks);
  printf("machine (same run, all %d ranks at once): DGEMM %.1f, SGEMM %.1f GFLOP/s in total\n",
         cli->nranks, dgemm, sgemm);
  print_phase(qronos ? "hessian H, G (DSYRK, DGEMM)" : "hessian (DSYRK, exact sum)", ph->hessian,
              ph->hessian_flops, dgemm, "DGEMM");
  print_phase("factor (Cholesky)", ph->factor, ph->factor_flops, dgemm, "DGEMM");
  if (qronos) print_phase("qronos refit (SGEMM+STRSM)", ph->refit, ph->refit_flops, sgemm, "SGEMM");
  print_phase("sweep", ph->sweep, ph->sweep_flops, sgemm, "SGEMM");
  print_phase("  of which block GEMM+TRSM", ph->sweep_gemm, 0, 0, "");
  print_phase("pack", ph->pack, 0, 0, "");
  print_phase("quantization phase", ph->factor + ph->refit + ph->sweep + ph->pack, 0, 0, "");
  print_phase("total (incl. H, setup)", ph->total, 0, 0, "");
  printf("bytes handed to MPI reductions: %.1f MiB;  peak memory per rank: %.1f MiB counted, "
         "%.1f MiB resident (max over ranks)\n", ph->comm_bytes / 1048576.0, mem_max / 1048576.0,
         rss_max / 1048576.0);
  printf("loss %.6g  bound_l2 %.6g  clipped %lld  lambda %.4g\n", res->loss, res->bound_l2,
         (long long)res->clipped, res->lambda);
}

static mq_status run_bench(mq_cli *cli, const bench_args *a) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  synth_layer layer = {.cols = (size_t)a->cols};
  int qronos = a->opts.method == MQ_METHOD_QRONOS;
  mq_layer_source src = {
      .info = {.name = "bench", .rows = (size_t)a->rows, .cols = (size_t)a->cols,
               .n = (size_t)a->tokens, .has_x = 1, .has_xq = qronos},
      .read_samples = synth_samples, .read_weight_rows = synth_weight_rows, .ctx = &layer,
      .skip_errors = 1};
  mq_layer_result res = {0};
  mq_layer_phases ph;
  int probe = a->cols < 2048 ? (int)a->cols : 2048;
  double rates[2] = {gemm_rate(probe, 0), gemm_rate(probe, 1)}, total[2];
  MPI_Allreduce(rates, total, 2, MPI_DOUBLE, MPI_SUM, cli->comm);
  size_t row0 = 0;
  st = mq_layer_job_run(cli->comm, &src, &a->opts, &res, &row0, &ph, err);
  double mem[2] = {(double)mq_mem_peak(), 0}, mem_max[2];
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) mem[1] = (double)ru.ru_maxrss * 1024.0;
  MPI_Allreduce(mem, mem_max, 2, MPI_DOUBLE, MPI_MAX, cli->comm);
  if (st == MQ_OK && cli->rank == 0) print_report(cli, a, &ph, &res, total[0], total[1], mem_max[0], mem_max[1]);
  mq_layer_result_free(&res);
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
  mq_log_setup(cli->quiet ? MQ_LOG_WARN : cli->verbose ? MQ_LOG_DEBUG : MQ_LOG_INFO, cli->rank, 0);
  st = run_bench(cli, &a);
cleanup:
  return mq_cli_agree(cli, st);
}

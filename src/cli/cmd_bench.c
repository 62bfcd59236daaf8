/* `mpiquant bench --rows R --cols C --tokens N [quant options]`: a synthetic layer generated in
 * memory, run through the same distributed pipeline as `layer` (samples split in exact-sum
 * chunks, rows split, local or ScaLAPACK factor), every phase timed (maximum over ranks) and set
 * against the GEMM rate measured in the same run on every rank at once, so each figure is also
 * a fraction of what the ranks can do together. */
#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "core/gemm_probe.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/synthetic_source.h"
#include "parallel/layer_engine.h"

static const char bench_help[] =
    "usage: mpiquant bench [--rows R] [--cols C] [--tokens N] [quantization options]\n"
    "\n"
    "Generates a layer in memory (W [R, C]; calibration inputs X [N, C] with outlier channels;\n"
    "for --method qronos also X~ = X + 5% noise), quantizes it with the distributed pipeline of\n"
    "`layer` on all ranks, and prints per phase the seconds (maximum over ranks), GFLOP/s and\n"
    "the fraction of the same-run DGEMM/SGEMM rate of all ranks together, the bytes handed to\n"
    "MPI reductions, the MPI traffic per rank and phase measured through PMPI (ScaLAPACK's\n"
    "included) beside a model of it, and the peak memory per rank. Defaults: R = C = 4096,\n"
    "N = 8192.\n"
    "Threads per rank: OPENBLAS_NUM_THREADS.\n"
    "\n";

typedef struct bench_args {
  long rows, cols, tokens;
  mq_quant_options opts;
} bench_args;

static void print_phase(const char *name, double seconds, double flops, double peak,
                        const char *peak_name) {
  if (flops > 0 && seconds > 0)
    printf("%-28s %9.3f s %9.1f GFLOP/s %6.1f%% of %s\n", name, seconds, flops / seconds / 1e9,
           100.0 * flops / seconds / 1e9 / peak, peak_name);
  else
    printf("%-28s %9.3f s\n", name, seconds);
}

/* GFLOP/s of all ranks together, measured in this run: GEMMs of order min(cols, 2048), and the
 * Hessian's own SYRK shape (cols × 1024 samples, the engine's chunk). */
typedef struct machine_rates {
  double dgemm, sgemm, dsyrk, ssyrk;
} machine_rates;

static void measure_rates(mq_cli *cli, const bench_args *a, machine_rates *m) {
  int probe = a->cols < 2048 ? (int)a->cols : 2048, n = (int)a->cols;
  double mine[4] = {mq_gemm_rate(probe, 0), mq_gemm_rate(probe, 1), mq_syrk_rate(n, 1024, 0),
                    mq_syrk_rate(n, 1024, 1)};
  double all[4];
  MPI_Allreduce(mine, all, 4, MPI_DOUBLE, MPI_SUM, cli->ctx->comm);
  *m = (machine_rates){.dgemm = all[0], .sgemm = all[1], .dsyrk = all[2], .ssyrk = all[3]};
}

/* What crosses the network per rank beyond the payload the context counts, as a model for
 * larger runs (tools/scaling_model.py): the exact sums' reduce-scatter of 16-byte sums and
 * allgather of doubles, (16 + 8)·c(c+1)/2·(P−1)/P bytes in 2(P−1) steps; and ScaLAPACK's
 * pdpotrf, which moves its own data: an ESTIMATE for the right-looking block Cholesky on the
 * pr×pc grid (as square as possible, block 64), whose c/64 steps broadcast the panel along
 * the process rows and its transpose along the columns — about c²/2·(1/pr + 1/pc) doubles
 * received per rank, in (c/64)·(2⌈log2 pr⌉ + ⌈log2 pc⌉) messages. */
static void print_traffic(const bench_args *a, int size) {
  double c = (double)a->cols, P = size, tri = c * (c + 1) / 2;
  int pr = 1;
  for (int d = 1; (long)d * d <= size; d++)
    if (size % d == 0) pr = d;
  int pc = size / pr;
  printf("per rank on the wire (model): Hessian reduction %.1f MiB in %d steps", 24.0 * tri *
         (P - 1) / P / 1048576.0, 2 * (size - 1));
  if (a->opts.factor == MQ_FACTOR_SCALAPACK && size > 1)
    printf("; pdpotrf on %dx%d (estimate, not counted above) %.1f MiB in %.0f messages", pr, pc,
           8.0 * c * c / 2 * (1.0 / pr + 1.0 / pc) / 1048576.0,
           c / 64 * (2 * ceil(log2(pr)) + ceil(log2(pc))));
  printf("\n");
}

/* What this run sent through MPI, measured (parallel/traffic.h): per phase the maximum over
 * ranks of one rank's bytes and messages, then the bytes of all ranks together; with
 * --verbose also exact bytes (tests/cli/run_bench_traffic.py checks them). */
static void print_measured(const mq_layer_phases *ph, int exact) {
  if (!ph->traffic_measured) {
    printf("MPI traffic per rank: not measured (no PMPI wrappers in this program)\n");
    return;
  }
  printf("MPI traffic per rank (measured, max over ranks):");
  for (int p = 0; p < MQ_TRAFFIC_PHASES; p++)
    printf("%s %s %.1f MiB in %.0f messages", p > 0 ? ";" : "",
           mq_traffic_phase_name((mq_traffic_phase)p), ph->traffic_bytes[p] / 1048576.0,
           ph->traffic_messages[p]);
  printf(" (all ranks together %.1f MiB)\n", ph->traffic_bytes_all / 1048576.0);
  if (!exact) return;
  printf("MPI traffic per rank in bytes/messages (max over ranks):");
  for (int p = 0; p < MQ_TRAFFIC_PHASES; p++)
    printf(" %s %.0f/%.0f", mq_traffic_phase_name((mq_traffic_phase)p), ph->traffic_bytes[p],
           ph->traffic_messages[p]);
  printf("; all ranks %.0f bytes; handed to MPI %.0f bytes\n", ph->traffic_bytes_all,
         ph->comm_bytes);
}

static void print_report(mq_cli *cli, const bench_args *a, const mq_layer_phases *ph,
                         const mq_layer_result *res, const machine_rates *m, double mem_max,
                         double rss_max) {
  double dgemm = m->dgemm, sgemm = m->sgemm;
  const mq_quant_options *o = &a->opts;
  int qronos = o->method == MQ_METHOD_QRONOS;
  printf("bench: rows %ld, cols %ld, tokens %ld, %d bits, group %d, method %s, factor %s, "
         "%d rank(s)\n", a->rows, a->cols, a->tokens, o->bits, o->group_size, mq_method_names[o->method],
         o->factor == MQ_FACTOR_SCALAPACK ? "scalapack" : "local", cli->ctx->size);
  printf("machine (same run, all %d ranks at once): DGEMM %.1f, SGEMM %.1f, DSYRK %.1f, SSYRK "
         "%.1f GFLOP/s in total\n", cli->ctx->size, dgemm, sgemm, m->dsyrk, m->ssyrk);
  if (o->gram_f32) /* float32 products per chunk: measured against the float32 SYRK */
    print_phase(qronos ? "hessian H, G (SSYRK, SGEMM)" : "hessian (SSYRK, exact sum)",
                ph->hessian, ph->hessian_flops, m->ssyrk, "SSYRK");
  else
    print_phase(qronos ? "hessian H, G (DSYRK, DGEMM)" : "hessian (DSYRK, exact sum)",
                ph->hessian, ph->hessian_flops, m->dsyrk, "DSYRK");
  print_phase("factor (Cholesky)", ph->factor, ph->factor_flops, dgemm, "DGEMM");
  if (qronos) print_phase("qronos refit (SGEMM+STRSM)", ph->refit, ph->refit_flops, sgemm, "SGEMM");
  print_phase("sweep", ph->sweep, ph->sweep_flops, sgemm, "SGEMM");
  print_phase("  of which block GEMM+TRSM", ph->sweep_gemm, 0, 0, "");
  print_phase("pack", ph->pack, 0, 0, "");
  print_phase("quantization phase", ph->factor + ph->refit + ph->sweep + ph->pack, 0, 0, "");
  print_phase("total (incl. H, setup)", ph->total, 0, 0, "");
  printf("bytes handed to MPI: %.1f MiB in %.0f calls (all ranks);  peak memory per rank: "
         "%.1f MiB counted, %.1f MiB resident (max over ranks)\n", ph->comm_bytes / 1048576.0,
         ph->comm_messages, mem_max / 1048576.0, rss_max / 1048576.0);
  print_measured(ph, cli->verbose);
  print_traffic(a, cli->ctx->size);
  printf("loss %.6g  bound_l2 %.6g  clipped %lld  lambda %.4g\n", res->loss, res->bound_l2,
         (long long)res->clipped, res->lambda);
}

static mq_status run_bench(mq_cli *cli, const bench_args *a) {
  mq_status st = MQ_OK;
  mq_synthetic_layer layer = {0};
  mq_layer_source src;
  st = mq_synthetic_source(&src, &layer, (size_t)a->rows, (size_t)a->cols, (size_t)a->tokens,
                           a->opts.method == MQ_METHOD_QRONOS, &cli->ctx->err);
  mq_layer_extras extras = {.skip_errors = 1};
  mq_layer_result res = {0};
  mq_layer_phases ph;
  machine_rates m = {0};
  if ((st = mq_agree(cli->ctx->comm, st)) != MQ_OK) goto cleanup;
  measure_rates(cli, a, &m);
  size_t row0 = 0;
  st = mq__layer_engine_run(cli->ctx, &src, &extras, &a->opts, &res, &row0, &ph);
  double mem[2] = {(double)mq_mem_peak(), 0}, mem_max[2];
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) mem[1] = (double)ru.ru_maxrss * 1024.0;
  MPI_Allreduce(mem, mem_max, 2, MPI_DOUBLE, MPI_MAX, cli->ctx->comm);
  if (st == MQ_OK && cli->ctx->rank == 0) print_report(cli, a, &ph, &res, &m, mem_max[0], mem_max[1]);
cleanup:
  mq_layer_result_free(&res);
  mq_synthetic_layer_free(&layer);
  return st;
}

int mq_cmd_bench(mq_cli *cli, int argc, char **argv) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  bench_args a = {.rows = 4096, .cols = 4096, .tokens = 8192};
  mq_quant_options_init(&a.opts);
  for (int i = 1; i < argc; i++) {
    int used = 0;
    const char *v = NULL;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (cli->ctx->rank == 0) printf("%s%s", bench_help, mq_cli_quant_help);
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
  mq_ctx_set_verbosity(cli->ctx, cli->quiet ? MQ_LOG_WARN : cli->verbose ? MQ_LOG_DEBUG : MQ_LOG_INFO);
  st = run_bench(cli, &a);
cleanup:
  return mq_agree(cli->ctx->comm, st);
}

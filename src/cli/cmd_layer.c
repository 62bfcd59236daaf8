/* `mpiquant layer --in P.h5 --out O.h5 [options]`: quantize every layer problem of a file.
 * For now rank 0 does the numerical work while the other ranks wait without spinning; the
 * distributed engine replaces this. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/layer_job.h"
#include "cli/report.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/h5problem.h"
#include "io/h5result.h"


static const char layer_help[] =
    "usage: mpiquant layer --in P.h5 --out O.h5 [options]\n"
    "\n"
    "Quantizes every layer problem of P.h5 (groups /layers/<name> with W [rows, cols] and X\n"
    "[n, cols], optionally Xq, or H [cols, cols]; names sorted = processing order) and writes\n"
    "the packed result file O.h5 (format in README). H = X~'X~/n with X~ = Xq when given.\n"
    "\n"
    "  --in P.h5          layer-problem file\n"
    "  --out O.h5         result file (overwritten; deleted again if the run fails)\n"
    "  --json REPORT      per-layer errors, bounds, lambda, phase seconds (max over ranks),\n"
    "                     bytes reduced, peak memory of every rank\n"
    "  --verbose | --quiet\n"
    "\n";

typedef struct layer_args {
  const char *in, *out, *json;
  mq_quant_options opts;
} layer_args;

static mq_status parse_layer_args(mq_cli *cli, int argc, char **argv, layer_args *a, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  mq_quant_options_init(&a->opts);
  for (int i = 1; i < argc; i++) {
    int used = 0;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      *help = 1;
      return MQ_OK;
    }
    if (mq_cli_common_option(cli, argv[i])) continue;
    MQ_CHECK(mq_cli_quant_option(argc, argv, &i, &a->opts, &used, err));
    if (used) continue;
    if (!strcmp(argv[i], "--in")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->in, err));
    else if (!strcmp(argv[i], "--out")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->out, err));
    else if (!strcmp(argv[i], "--json")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->json, err));
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant layer --help)", argv[i]);
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the layer-problem file)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the result file)");
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

/* Collective: every rank opens the problem file, quantizes its rows of each layer and writes
 * them into the result file together. */
static mq_status run_layers(mq_cli *cli, const layer_args *a) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  mq_h5_problem *pf = NULL;
  mq_h5_result *rf = NULL;
  mq_layer_result res = {0};
  mq_report *report = mq_report_create(a->json, cli->rank, cli->nranks, &a->opts);
  st = mq_cli_agree(cli, mq_h5_problem_open(a->in, &pf, err));
  if (st != MQ_OK) goto cleanup;
  mq_result_meta meta = {.opts = a->opts, .nranks = cli->nranks};
  MQ_CHECK(mq_h5_result_create(cli->comm, a->out, &meta, &rf, err));
  size_t nl = mq_h5_problem_nlayers(pf);
  double t0 = mq_wtime();
  for (size_t i = 0; i < nl; i++) {
    const mq_h5_layer_info *li = mq_h5_problem_layer(pf, i);
    size_t row0 = 0;
    mq_h5_source_ctx src_ctx;
    mq_layer_source src;
    mq_layer_source_h5(&src, &src_ctx, pf, i);
    mq_layer_phases phases;
    MQ_CHECK(mq_layer_job_run(cli->comm, &src, &a->opts, &res, &row0, &phases, err));
    MQ_CHECK(mq_h5_result_write_layer(rf, li->name, li->rows, row0, &res, err));
    mq_report_layer(report, li->name, &res, li->rows, &phases);
    double elapsed = mq_wtime() - t0;
    MQ_INFO("layer %zu/%zu %s [%zux%zu]: rel_err %.4g  loss %.4g  bound %.4g  clipped %lld  "
            "%.2fs  elapsed %.1fs  ETA %.1fs",
            i + 1, nl, li->name, li->rows, li->cols, res.rel_err, res.loss, res.bound_l2,
            (long long)res.clipped, res.seconds, elapsed,
            elapsed / (double)(i + 1) * (double)(nl - i - 1));
    mq_layer_result_free(&res);
  }
  MQ_CHECK(mq_h5_result_finish(&rf, err));
  MQ_CHECK(mq_cli_agree(cli, mq_report_finish(&report, cli->comm, err)));
cleanup:
  mq_report_discard(&report); /* after a failure: no report file */
  mq_layer_result_free(&res);
  mq_h5_result_abort(&rf); /* collective: every failure above was agreed on by all ranks */
  mq_h5_problem_close(&pf);
  return st;
}

int mq_cmd_layer(mq_cli *cli, int argc, char **argv) {
  layer_args a = {0};
  int help = 0;
  mq_status st = parse_layer_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, layer_help, mq_cli_quant_help)) return st;
  return mq_cli_agree(cli, run_layers(cli, &a)); /* every rank: the result file is collective */
}

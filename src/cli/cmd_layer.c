/* `mpiquant layer --in P.h5 --out O.h5 [options]`: quantize every layer problem of a file, each
 * layer through the distributed layer engine on all ranks or, with --layer-groups, on a group
 * of them (parallel/layer_groups.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/h5problem.h"
#include "io/h5result.h"
#include "io/paths.h"
#include "io/problem_source.h"
#include "io/report.h"
#include "parallel/ctx.h"
#include "parallel/layer_groups.h"


static const char layer_help[] =
    "usage: mpiquant layer --in P.h5 --out O.h5 [options]\n"
    "\n"
    "Quantizes every layer problem of P.h5 (groups /layers/<name> with W [rows, cols] and X\n"
    "[n, cols], optionally Xq, or H [cols, cols]; names sorted = processing order) and writes\n"
    "the packed result file O.h5 (format in README). H = X~'X~/n with X~ = Xq when given.\n"
    "\n"
    "  --in P.h5          layer-problem file\n"
    "  --out O.h5         result file (overwritten; deleted again if the run fails; never an\n"
    "                     input; O.h5.lock beside it keeps a second run from writing it)\n"
    "  --json REPORT      per-layer errors, bounds, lambda, phase seconds (max over ranks),\n"
    "                     bytes reduced, peak memory of every rank (only after a success)\n"
    "  --layer-groups G   split the ranks into G groups that quantize different layers at\n"
    "                     the same time (layer k on group k mod G); faster for many small\n"
    "                     layers, same result file; at most one group per rank\n"
    "                     [1: every layer on all ranks]\n"
    "  --verbose | --quiet\n"
    "\n";

typedef struct layer_args {
  const char *in, *out, *json;
  int groups; /* --layer-groups */
  mq_quant_options opts;
} layer_args;

static mq_status parse_layer_args(mq_cli *cli, int argc, char **argv, layer_args *a, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  mq_quant_options_init(&a->opts);
  a->groups = 1;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, &a->opts, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    if (!strcmp(argv[i], "--in")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->in, err));
    else if (!strcmp(argv[i], "--out")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->out, err));
    else if (!strcmp(argv[i], "--json")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->json, err));
    else if (!strcmp(argv[i], "--layer-groups")) {
      long n = 0;
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 1, 1L << 20, &n, err));
      a->groups = n < cli->ctx->size ? (int)n : cli->ctx->size; /* one group per rank at most */
    }
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant layer --help)", argv[i]);
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the layer-problem file)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the result file)");
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

/* What the layer list's callbacks share: the problem file's layers as sources, the writer,
 * the report and the progress clock. */
typedef struct layer_run_state {
  mq_cli *cli;
  mq_h5_problem *pf;
  mq_layer_source *sources;         /* [nlayers] */
  mq_problem_source_ctx *source_ctx; /* [nlayers] */
  mq_h5_result *rf;
  mq_report *report;
  double t0;
} layer_run_state;

static const mq_layer_source *layer_source(void *user, size_t i) {
  layer_run_state *s = user;
  return &s->sources[i];
}

/* Collective: writes layer i (every rank its rows) and reports it. */
static mq_status layer_done(void *user, size_t i, const mq_layer_result *res, size_t row0,
                            const mq_layer_phases *ph) {
  layer_run_state *s = user;
  const mq_layer_desc *d = &s->sources[i].desc;
  size_t nl = mq_h5_problem_nlayers(s->pf), done = i + 1;
  mq_status st = mq_h5_result_write_layer(s->rf, d->name, d->rows, row0, res, &s->cli->ctx->err);
  if (st != MQ_OK) return st;
  mq_report_layer(s->report, d->name, res, d->rows, ph);
  double elapsed = mq_wtime() - s->t0;
  MQ_INFO("layer %zu/%zu %s [%zux%zu]: rel_err %.4g  loss %.4g  bound %.4g  clipped %lld  "
          "%.2fs  elapsed %.1fs  ETA %.1fs",
          done, nl, d->name, d->rows, d->cols, res->rel_err, res->loss, res->bound_l2,
          (long long)res->clipped, res->seconds, elapsed,
          elapsed / (double)done * (double)(nl - done));
  return MQ_OK;
}

/* Collective: every rank opens the problem file; the layers run on a->groups groups of ranks
 * (parallel/layer_groups.h) and all ranks write each layer together. */
static mq_status run_layers(mq_cli *cli, const layer_args *a) {
  mq_status st = MQ_OK;
  mq_ctx *ctx = cli->ctx;
  mq_error *err = &ctx->err;
  layer_run_state s = {.cli = cli};
  int reported = 0;
  s.report = mq_report_create(a->json, ctx->rank, ctx->size, &a->opts);
  MQ_AGREE(ctx->comm, mq_h5_problem_open(a->in, &s.pf, err));
  size_t nl = mq_h5_problem_nlayers(s.pf);
  s.sources = mq_alloc(nl, sizeof *s.sources);
  s.source_ctx = mq_alloc(nl, sizeof *s.source_ctx);
  st = s.sources && s.source_ctx ? MQ_OK : mq__fail(err, MQ_EFAIL, __FILE__, __LINE__,
                                                    "out of memory (layer list)");
  MQ_AGREE(ctx->comm, st);
  for (size_t i = 0; i < nl; i++) mq_problem_source(&s.sources[i], &s.source_ctx[i], s.pf, i);
  mq_result_meta meta = {.opts = a->opts, .nranks = ctx->size};
  MQ_CHECK(mq_h5_result_create(ctx->comm, a->out, &meta, &s.rf, err));
  s.t0 = mq_wtime();
  mq_layer_list list = {.count = nl, .source = layer_source, .consume = layer_done, .user = &s};
  MQ_CHECK(mq_layer_groups_run(ctx, a->groups, &list, &a->opts));
  /* the report first: a result that cannot be finished takes it along (whole or absent) */
  reported = 1;
  MQ_AGREE(ctx->comm, mq_report_finish(&s.report, ctx->comm, err));
  MQ_CHECK(mq_h5_result_finish(&s.rf, err));
cleanup:
  if (st != MQ_OK && reported && ctx->rank == 0 && a->json != NULL) (void)remove(a->json);
  mq_report_discard(&s.report); /* after a failure: no report file */
  mq_h5_result_abort(&s.rf); /* collective: every failure above was agreed on by all ranks */
  mq_free(s.sources);
  mq_free(s.source_ctx);
  mq_h5_problem_close(&s.pf);
  return st;
}

int mq_cmd_layer(mq_cli *cli, int argc, char **argv) {
  layer_args a = {0};
  int help = 0;
  mq_status st = parse_layer_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, layer_help, mq_cli_quant_help)) return st;
  mq_run_paths rp = {0}; /* inputs never written, outputs locked, before anything is created */
  mq_run_paths_input(&rp, "--in", a.in, MQ_PATH_FILE);
  mq_run_paths_output(&rp, "--out", a.out, MQ_PATH_FILE, 0);
  mq_run_paths_output(&rp, "--json", a.json, MQ_PATH_FILE, 0);
  st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  if (st == MQ_OK) st = run_layers(cli, &a); /* every rank: the result file is collective */
  mq_run_paths_release(&rp);
  return st;
}

/* `mpiquant layer --in P.h5 --out O.h5 [options]`: quantize every layer problem of a file, each
 * layer through the distributed layer engine (cli/layer_job.h) on all ranks or, with
 * --layer-groups, on a group of them. */
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
  mq_error *err = &cli->err;
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
      a->groups = n < cli->nranks ? (int)n : cli->nranks; /* at most one group per rank */
    }
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant layer --help)", argv[i]);
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the layer-problem file)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the result file)");
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

/* A layer's description as the ranks outside the group that computed it need it for the
 * collective write and the report: shape, scalars, phases (doubles; exact for these values). */
enum { SH_COLS, SH_NGROUPS, SH_WORDS, SH_BITS, SH_LAMBDA, SH_LOSS, SH_ERR, SH_REL, SH_BOUND,
       SH_LINF, SH_FLOOR, SH_CLIPPED, SH_RAISES, SH_NCAND, SH_SECONDS, SH_CAND,
       SH_HELD = SH_CAND + MQ_LAMBDA_AUTO_CANDIDATES, SH_PHASES = SH_HELD + MQ_LAMBDA_AUTO_CANDIDATES,
       SH_COUNT = SH_PHASES + (int)(sizeof(mq_layer_phases) / sizeof(double)) };

static void pack_layer(const mq_layer_result *r, const mq_layer_phases *ph, double *v) {
  const double head[SH_CAND] = {(double)r->cols, (double)r->ngroups, (double)r->words, r->bits,
                                r->lambda, r->loss, r->err, r->rel_err, r->bound_l2,
                                r->bound_linf, r->err_floor, (double)r->clipped,
                                r->lambda_raises, r->lambda_ncand, r->seconds};
  memcpy(v, head, sizeof head);
  memcpy(v + SH_CAND, r->lambda_cand, sizeof r->lambda_cand);
  memcpy(v + SH_HELD, r->lambda_heldout, sizeof r->lambda_heldout);
  memcpy(v + SH_PHASES, ph, sizeof *ph);
}

static void unpack_layer(const double *v, mq_layer_result *r, mq_layer_phases *ph) {
  *r = (mq_layer_result){
      .cols = (size_t)v[SH_COLS], .ngroups = (size_t)v[SH_NGROUPS], .words = (size_t)v[SH_WORDS],
      .bits = (int)v[SH_BITS], .lambda = v[SH_LAMBDA], .loss = v[SH_LOSS], .err = v[SH_ERR],
      .rel_err = v[SH_REL], .bound_l2 = v[SH_BOUND], .bound_linf = v[SH_LINF],
      .err_floor = v[SH_FLOOR], .clipped = (int64_t)v[SH_CLIPPED],
      .lambda_raises = (int)v[SH_RAISES], .lambda_ncand = (int)v[SH_NCAND],
      .seconds = v[SH_SECONDS]};
  memcpy(r->lambda_cand, v + SH_CAND, sizeof r->lambda_cand);
  memcpy(r->lambda_heldout, v + SH_HELD, sizeof r->lambda_heldout);
  memcpy(ph, v + SH_PHASES, sizeof *ph);
}

/* Collective over the world. The layer group k computed (its first rank is root) reaches every
 * rank: the group's ranks keep their rows, the others get rows = 0 and the shared parts. */
static mq_status share_layer(mq_cli *cli, int root, int owner, mq_layer_result *res,
                             mq_layer_phases *ph) {
  double v[SH_COUNT];
  if (cli->rank == root) pack_layer(res, ph, v);
  MPI_Bcast(v, SH_COUNT, MPI_DOUBLE, root, cli->comm);
  if (!owner) {
    unpack_layer(v, res, ph);
    res->g_idx = mq_alloc(res->cols, sizeof *res->g_idx);
  }
  int ok = res->g_idx != NULL, all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, cli->comm);
  if (!all)
    return mq_cli_agree(cli, ok ? MQ_EFAIL : mq__fail(&cli->err, MQ_EFAIL, __FILE__, __LINE__,
                                                      "out of memory (g_idx)"));
  MPI_Bcast(res->g_idx, (int)res->cols, MPI_INT32_T, root, cli->comm);
  return MQ_OK;
}

/* Collective: every rank opens the problem file; the ranks form a->groups groups (contiguous
 * ranks), group k quantizes layers k, k+G, ... on its own communicator, then all ranks write
 * each layer together. With one group every layer is spread over all ranks; with more, small
 * layers stop paying for collectives over ranks that have little to do. The result file is the
 * same either way (rows are dealt in fixed blocks, sums are exact). */
static mq_status run_layers(mq_cli *cli, const layer_args *a) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  mq_h5_problem *pf = NULL;
  mq_h5_result *rf = NULL;
  mq_layer_result mine = {0}, shared = {0};
  MPI_Comm group = MPI_COMM_NULL;
  int G = a->groups, g = (int)((long)cli->rank * G / cli->nranks);
  mq_report *report = mq_report_create(a->json, cli->rank, cli->nranks, &a->opts);
  MPI_Comm_split(cli->comm, g, cli->rank, &group);
  st = mq_cli_agree(cli, mq_h5_problem_open(a->in, &pf, err));
  if (st != MQ_OK) goto cleanup;
  mq_result_meta meta = {.opts = a->opts, .nranks = cli->nranks};
  MQ_CHECK(mq_h5_result_create(cli->comm, a->out, &meta, &rf, err));
  size_t nl = mq_h5_problem_nlayers(pf);
  double t0 = mq_wtime();
  for (size_t r0 = 0; r0 < nl; r0 += (size_t)G) {
    size_t row0 = 0;
    mq_layer_phases my_phases = {0};
    if (r0 + (size_t)g < nl) {
      mq_h5_source_ctx src_ctx;
      mq_layer_source src;
      mq_layer_source_h5(&src, &src_ctx, pf, r0 + (size_t)g);
      st = mq_layer_job_run(group, &src, &a->opts, &mine, &row0, &my_phases, err);
    }
    MQ_CHECK(mq_cli_agree(cli, st));
    for (int k = 0; k < G && r0 + (size_t)k < nl; k++) {
      const mq_h5_layer_info *li = mq_h5_problem_layer(pf, r0 + (size_t)k);
      int root = (int)(((long)k * cli->nranks + G - 1) / G), owner = k == g;
      mq_layer_result *res = owner ? &mine : &shared;
      mq_layer_phases phases = my_phases;
      MQ_CHECK(share_layer(cli, root, owner, res, &phases));
      MQ_CHECK(mq_h5_result_write_layer(rf, li->name, li->rows, owner ? row0 : 0, res, err));
      mq_report_layer(report, li->name, res, li->rows, &phases);
      double elapsed = mq_wtime() - t0;
      size_t done = r0 + (size_t)k + 1;
      MQ_INFO("layer %zu/%zu %s [%zux%zu]: rel_err %.4g  loss %.4g  bound %.4g  clipped %lld  "
              "%.2fs  elapsed %.1fs  ETA %.1fs",
              done, nl, li->name, li->rows, li->cols, res->rel_err, res->loss, res->bound_l2,
              (long long)res->clipped, res->seconds, elapsed,
              elapsed / (double)done * (double)(nl - done));
      mq_layer_result_free(&shared);
    }
    mq_layer_result_free(&mine);
  }
  MQ_CHECK(mq_h5_result_finish(&rf, err));
  MQ_CHECK(mq_cli_agree(cli, mq_report_finish(&report, cli->comm, err)));
cleanup:
  mq_report_discard(&report); /* after a failure: no report file */
  mq_layer_result_free(&mine);
  mq_layer_result_free(&shared);
  mq_h5_result_abort(&rf); /* collective: every failure above was agreed on by all ranks */
  mq_h5_problem_close(&pf);
  if (group != MPI_COMM_NULL) MPI_Comm_free(&group);
  return st;
}

int mq_cmd_layer(mq_cli *cli, int argc, char **argv) {
  layer_args a = {0};
  int help = 0;
  mq_status st = parse_layer_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, layer_help, mq_cli_quant_help)) return st;
  return mq_cli_agree(cli, run_layers(cli, &a)); /* every rank: the result file is collective */
}

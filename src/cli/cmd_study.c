/* `mpiquant study --in P.h5 --csv OUT.csv`: the raw material of error-vs-λ plots. Every layer
 * of the file is quantized for every combination of damp × method × rounding and one CSV row
 * is written per run (by rank 0; the runs are distributed like `layer`). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/status.h"
#include "io/h5problem.h"
#include "io/paths.h"
#include "io/problem_source.h"
#include "parallel/ctx.h"

enum { MQ_STUDY_MAX = 16 };

static const char study_help[] =
    "usage: mpiquant study --in P.h5 --csv OUT.csv [--damps LIST] [--methods LIST]\n"
    "                      [--roundings LIST] [quantization options]\n"
    "\n"
    "Quantizes every layer of P.h5 once per damp x method x rounding and writes one CSV row\n"
    "per run: layer,method,rounding,damp,lambda,err,rel_err,loss,bound_l2,err_floor,clipped,\n"
    "seconds. lambda = damp * mean(diag H). Plot it with jobs/plot_study.sh.\n"
    "\n"
    "  --damps LIST       comma-separated damp factors [1e-4,1e-3,1e-2,1e-1]\n"
    "  --methods LIST     of rtn,optq,qronos [optq,qronos]\n"
    "  --roundings LIST   of nearest,stochastic [nearest]\n"
    "\n";

typedef struct study_args {
  const char *in, *csv;
  double damps[MQ_STUDY_MAX];
  int ndamps;
  mq_method methods[3];
  int nmethods;
  mq_rounding roundings[2];
  int nroundings;
  mq_quant_options opts;
} study_args;


/* Splits a comma-separated list; each item goes through parse_item. */
static mq_status parse_list(const char *opt, const char *text, int max, int *count,
                            mq_status (*parse_item)(const char *, const char *, int, void *, mq_error *),
                            void *out, mq_error *err) {
  mq_status st = MQ_OK;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", text);
  *count = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (*count == max) MQ_FAIL(err, MQ_EUSAGE, "%s: at most %d values", opt, max);
    MQ_CHECK(parse_item(opt, tok, *count, out, err));
    (*count)++;
  }
  if (*count == 0) MQ_FAIL(err, MQ_EUSAGE, "%s: empty list", opt);
cleanup:
  return st;
}

static mq_status parse_damp(const char *opt, const char *tok, int k, void *out, mq_error *err) {
  double *d = out;
  mq_status st = mq_cli_parse_double(opt, tok, &d[k], err);
  if (st == MQ_OK && d[k] < 0)
    return mq__fail(err, MQ_EUSAGE, __FILE__, __LINE__, "%s: %s is negative", opt, tok);
  return st;
}

static mq_status parse_method(const char *opt, const char *tok, int k, void *out, mq_error *err) {
  int v = 0;
  mq_status st = mq_cli_parse_choice(opt, tok, mq_method_names, 3, &v, err);
  ((mq_method *)out)[k] = (mq_method)v;
  return st;
}

static mq_status parse_rounding(const char *opt, const char *tok, int k, void *out, mq_error *err) {
  int v = 0;
  mq_status st = mq_cli_parse_choice(opt, tok, mq_rounding_names, 2, &v, err);
  ((mq_rounding *)out)[k] = (mq_rounding)v;
  return st;
}

static mq_status parse_study_args(mq_cli *cli, int argc, char **argv, study_args *a, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  mq_quant_options_init(&a->opts);
  const double damps[] = {1e-4, 1e-3, 1e-2, 1e-1};
  memcpy(a->damps, damps, sizeof damps);
  a->ndamps = 4;
  a->methods[0] = MQ_METHOD_OPTQ;
  a->methods[1] = MQ_METHOD_QRONOS;
  a->nmethods = 2;
  a->roundings[0] = MQ_ROUND_NEAREST;
  a->nroundings = 1;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    const char *v = NULL;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, &a->opts, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    const char *opt = argv[i];
    if (!strcmp(opt, "--in")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->in, err));
    else if (!strcmp(opt, "--csv")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->csv, err));
    else if (!strcmp(opt, "--damps")) {
      MQ_CHECK(mq_cli_value(argc, argv, &i, &v, err));
      MQ_CHECK(parse_list(opt, v, MQ_STUDY_MAX, &a->ndamps, parse_damp, a->damps, err));
    } else if (!strcmp(opt, "--methods")) {
      MQ_CHECK(mq_cli_value(argc, argv, &i, &v, err));
      MQ_CHECK(parse_list(opt, v, 3, &a->nmethods, parse_method, a->methods, err));
    } else if (!strcmp(opt, "--roundings")) {
      MQ_CHECK(mq_cli_value(argc, argv, &i, &v, err));
      MQ_CHECK(parse_list(opt, v, 2, &a->nroundings, parse_rounding, a->roundings, err));
    } else {
      MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant study --help)", opt);
    }
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the layer-problem file)");
  if (a->csv == NULL) MQ_FAIL(err, MQ_EUSAGE, "--csv: missing (the output table)");
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

/* Collective. One run: quantize layer `index` with o; rank 0 appends its CSV row. */
static mq_status study_run(mq_ctx *ctx, mq_h5_problem *pf, size_t index,
                           const mq_quant_options *o, double damp, FILE *out) {
  mq_layer_result res = {0};
  size_t row0 = 0;
  mq_problem_source_ctx src_ctx;
  mq_layer_source src;
  mq_problem_source(&src, &src_ctx, pf, index);
  mq_status st = mq_quantize_layer(ctx, &src, o, &res, &row0);
  if (st == MQ_OK && out != NULL) {
    fprintf(out, "%s,%s,%s,%.6g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%lld,%.4f\n",
            mq_h5_problem_layer(pf, index)->name, mq_method_names[o->method],
            mq_rounding_names[o->rounding], damp, res.lambda, res.err, res.rel_err, res.loss,
            res.bound_l2, res.err_floor, (long long)res.clipped, res.seconds);
  }
  mq_layer_result_free(&res);
  return st;
}

/* Collective; rank 0 writes the table. */
static mq_status run_study(mq_cli *cli, const study_args *a) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  mq_h5_problem *pf = NULL;
  char tmp[4096];
  FILE *out = NULL;
  MQ_AGREE(cli->ctx->comm, mq_h5_problem_open(a->in, &pf, err));
  snprintf(tmp, sizeof tmp, "%s.partial", a->csv); /* renamed only when complete */
  if (cli->ctx->rank == 0) {
    out = fopen(tmp, "w");
    if (out == NULL) st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot create", tmp);
    else fprintf(out, "layer,method,rounding,damp,lambda,err,rel_err,loss,bound_l2,err_floor,clipped,seconds\n");
  }
  MQ_AGREE(cli->ctx->comm, st);
  size_t nl = mq_h5_problem_nlayers(pf), total = nl * (size_t)(a->ndamps * a->nmethods * a->nroundings), done = 0;
  double t0 = mq_wtime();
  for (size_t i = 0; i < nl; i++)
    for (int m = 0; m < a->nmethods; m++)
      for (int r = 0; r < a->nroundings; r++)
        for (int d = 0; d < a->ndamps; d++) {
          mq_quant_options o = a->opts;
          o.method = a->methods[m];
          o.rounding = a->roundings[r];
          o.lambda_mode = MQ_LAMBDA_DAMP;
          o.damp = a->damps[d];
          MQ_CHECK(study_run(cli->ctx, pf, i, &o, a->damps[d], out));
          double el = mq_wtime() - t0;
          done++;
          MQ_INFO("study %zu/%zu: %s %s %s damp %g  elapsed %.1fs  ETA %.1fs", done, total,
                  mq_h5_problem_layer(pf, i)->name, mq_method_names[o.method],
                  mq_rounding_names[o.rounding], o.damp, el, el / (double)done * (double)(total - done));
        }
  if (out != NULL) {
    int bad = fclose(out) != 0;
    out = NULL;
    if (bad) st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: write failed", tmp);
    else if (rename(tmp, a->csv) != 0)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot rename to %s", tmp, a->csv);
  }
  MQ_AGREE(cli->ctx->comm, st);
cleanup:
  if (out != NULL) fclose(out);
  if (st != MQ_OK && cli->ctx->rank == 0) remove(tmp);
  mq_h5_problem_close(&pf);
  return st;
}

int mq_cmd_study(mq_cli *cli, int argc, char **argv) {
  study_args a = {0};
  int help = 0;
  mq_status st = parse_study_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, study_help, mq_cli_quant_help)) return st;
  mq_run_paths rp = {0}; /* inputs never written, outputs locked, before anything is created */
  mq_run_paths_input(&rp, "--in", a.in, MQ_PATH_FILE);
  mq_run_paths_output(&rp, "--csv", a.csv, MQ_PATH_FILE, 0);
  st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  if (st == MQ_OK) st = run_study(cli, &a); /* every rank: the layers are distributed */
  mq_run_paths_release(&rp);
  return st;
}

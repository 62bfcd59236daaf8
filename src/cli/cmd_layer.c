/* `mpiquant layer --in P.h5 --out O.h5 [options]`: quantize every layer problem of a file.
 * For now rank 0 does the numerical work while the other ranks wait without spinning; the
 * distributed engine replaces this. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/measure.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/h5problem.h"
#include "io/h5result.h"

enum { MQ_SAMPLE_CHUNK = 1024 }; /* samples per read: bounds the memory of the X buffers */

static const char layer_help[] =
    "usage: mpiquant layer --in P.h5 --out O.h5 [options]\n"
    "\n"
    "Quantizes every layer problem of P.h5 (groups /layers/<name> with W [rows, cols] and X\n"
    "[n, cols], optionally Xq, or H [cols, cols]; names sorted = processing order) and writes\n"
    "the packed result file O.h5 (format in README). H = X~'X~/n with X~ = Xq when given.\n"
    "\n"
    "  --in P.h5          layer-problem file\n"
    "  --out O.h5         result file (overwritten; deleted again if the run fails)\n"
    "  --verbose | --quiet\n"
    "\n";

typedef struct layer_args {
  const char *in, *out;
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
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant layer --help)", argv[i]);
  }
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (the layer-problem file)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the result file)");
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

/* H = X̃ᵀX̃/n streamed from the file, or H as given. */
static mq_status load_hessian(mq_h5_problem *pf, size_t index, double *H, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_layer_info *li = mq_h5_problem_layer(pf, index);
  double *chunk = NULL;
  if (!li->has_x) return mq_h5_read_matrix(pf, index, 'H', H, err);
  size_t cap = li->n < MQ_SAMPLE_CHUNK ? li->n : MQ_SAMPLE_CHUNK;
  chunk = mq_alloc(cap * li->cols, sizeof *chunk);
  MQ_CHECK_ALLOC(err, chunk, cap * li->cols * sizeof *chunk);
  memset(H, 0, li->cols * li->cols * sizeof *H);
  for (size_t s = 0; s < li->n; s += cap) {
    size_t count = li->n - s < cap ? li->n - s : cap;
    MQ_CHECK(mq_h5_read_samples(pf, index, 'Q', s, count, chunk, err));
    mq_hessian_accumulate(H, li->cols, chunk, count);
  }
  mq_hessian_finalize(H, li->cols, li->n);
cleanup:
  mq_free(chunk);
  return st;
}

/* err and rel_err: against the samples when the file has X, else from H (given as Hgiven). */
static mq_status measure_errors(mq_h5_problem *pf, size_t index, const float *W,
                                const double *Hgiven, mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_layer_info *li = mq_h5_problem_layer(pf, index);
  size_t rows = li->rows, cols = li->cols;
  size_t cap = li->n < MQ_SAMPLE_CHUNK ? li->n : MQ_SAMPLE_CHUNK;
  float *What = mq_alloc(rows * cols, sizeof *What);
  double *Wd = mq_alloc(rows * cols, sizeof *Wd), *D = mq_alloc(rows * cols, sizeof *D);
  double *X = NULL, *Xq = NULL, *Y = NULL;
  MQ_CHECK_ALLOC(err, What && Wd && D, rows * cols * sizeof *D);
  MQ_CHECK(mq_layer_result_dequantize(res, What, err));
  for (size_t k = 0; k < rows * cols; k++) {
    Wd[k] = W[k];
    D[k] = (double)W[k] - (double)What[k];
  }
  mq_err_accum acc = {0};
  if (!li->has_x) {
    double *scratch = (double *)What == NULL ? NULL : mq_alloc(rows * cols, sizeof *scratch);
    MQ_CHECK_ALLOC(err, scratch, rows * cols * sizeof *scratch);
    mq_err_from_hessian(&acc, Hgiven, Wd, D, rows, cols, scratch);
    mq_free(scratch);
  } else {
    X = mq_alloc(cap * cols, sizeof *X);
    Xq = li->has_xq ? mq_alloc(cap * cols, sizeof *Xq) : NULL;
    Y = mq_alloc(cap * rows, sizeof *Y);
    MQ_CHECK_ALLOC(err, X && Y && (Xq || !li->has_xq), cap * cols * sizeof *X);
    for (size_t s = 0; s < li->n; s += cap) {
      size_t count = li->n - s < cap ? li->n - s : cap;
      MQ_CHECK(mq_h5_read_samples(pf, index, 'X', s, count, X, err));
      if (Xq != NULL) MQ_CHECK(mq_h5_read_samples(pf, index, 'Q', s, count, Xq, err));
      mq_err_accumulate(&acc, X, Xq, count, cols, Wd, D, rows, Y);
    }
  }
  res->err = mq_err_value(&acc);
  res->rel_err = mq_err_relative(&acc);
cleanup:
  mq_free(What);
  mq_free(Wd);
  mq_free(D);
  mq_free(X);
  mq_free(Xq);
  mq_free(Y);
  return st;
}

static mq_status quantize_one(mq_h5_problem *pf, size_t index, const mq_quant_options *o,
                              mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_layer_info *li = mq_h5_problem_layer(pf, index);
  size_t rows = li->rows, cols = li->cols;
  float *W = mq_alloc(rows * cols, sizeof *W);
  double *H = mq_alloc(cols * cols, sizeof *H), *Hgiven = NULL;
  MQ_CHECK_ALLOC(err, W && H, cols * cols * sizeof *H);
  MQ_CHECK(mq_h5_read_weights(pf, index, W, err));
  double t0 = mq_wtime();
  MQ_CHECK(load_hessian(pf, index, H, err));
  double t_hessian = mq_wtime() - t0;
  if (!li->has_x) { /* errors need H before its dead inputs are patched */
    Hgiven = mq_alloc(cols * cols, sizeof *Hgiven);
    MQ_CHECK_ALLOC(err, Hgiven, cols * cols * sizeof *Hgiven);
    memcpy(Hgiven, H, cols * cols * sizeof *H);
  }
  mq_layer_timing t;
  MQ_CHECK(mq_layer_quantize(li->name, index, W, rows, cols, H, o, res, &t, err));
  MQ_CHECK(measure_errors(pf, index, W, Hgiven, res, err));
  res->seconds += t_hessian;
  MQ_DEBUG("%s: hessian %.3fs factor %.3fs sweep %.3fs pack %.3fs", li->name, t_hessian,
           t.factor, t.sweep, t.pack);
cleanup:
  mq_free(W);
  mq_free(H);
  mq_free(Hgiven);
  return st;
}

static mq_status run_layers(mq_cli *cli, const layer_args *a) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  mq_h5_problem *pf = NULL;
  mq_h5_result *rf = NULL;
  mq_layer_result res = {0};
  MQ_CHECK(mq_h5_problem_open(a->in, &pf, err));
  mq_result_meta meta = {.opts = a->opts, .nranks = cli->nranks};
  MQ_CHECK(mq_h5_result_create(a->out, &meta, &rf, err));
  size_t nl = mq_h5_problem_nlayers(pf);
  double t0 = mq_wtime();
  for (size_t i = 0; i < nl; i++) {
    const mq_h5_layer_info *li = mq_h5_problem_layer(pf, i);
    MQ_CHECK(quantize_one(pf, i, &a->opts, &res, err));
    MQ_CHECK(mq_h5_result_write_layer(rf, li->name, &res, err));
    double elapsed = mq_wtime() - t0;
    MQ_INFO("layer %zu/%zu %s [%zux%zu]: rel_err %.4g  loss %.4g  bound %.4g  clipped %lld  "
            "%.2fs  elapsed %.1fs  ETA %.1fs",
            i + 1, nl, li->name, li->rows, li->cols, res.rel_err, res.loss, res.bound_l2,
            (long long)res.clipped, res.seconds, elapsed, elapsed / (double)(i + 1) * (double)(nl - i - 1));
    mq_layer_result_free(&res);
  }
  MQ_CHECK(mq_h5_result_finish(&rf, err));
cleanup:
  mq_layer_result_free(&res);
  mq_h5_result_abort(&rf);
  mq_h5_problem_close(&pf);
  return st;
}

/* Ranks other than the root wait for its status without busy-polling a core away from BLAS. */
static mq_status share_root_status(mq_cli *cli, mq_status st) {
  int value = (int)st, done = 0;
  MPI_Request req;
  MPI_Ibcast(&value, 1, MPI_INT, 0, cli->comm, &req);
  while (!done) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (!done) nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  return (mq_status)value;
}

int mq_cmd_layer(mq_cli *cli, int argc, char **argv) {
  layer_args a = {0};
  int help = 0;
  mq_status st = parse_layer_args(cli, argc, argv, &a, &help);
  if (help) {
    if (cli->rank == 0) printf("%s%s", layer_help, mq_cli_quant_help);
    return MQ_OK;
  }
  if (st != MQ_OK) return mq_cli_agree(cli, st);
  mq_log_setup(cli->quiet ? MQ_LOG_WARN : cli->verbose ? MQ_LOG_DEBUG : MQ_LOG_INFO, cli->rank, 0);
  if (cli->rank == 0) st = run_layers(cli, &a);
  return share_root_status(cli, st);
}

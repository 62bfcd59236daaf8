/* `mpiquant inspect O.h5`: a human-readable summary of a result file. Rank 0 reads and prints. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/layer_scalars.h"
#include "core/status.h"
#include "io/h5result.h"

static const char inspect_help[] =
    "usage: mpiquant inspect O.h5\n"
    "\n"
    "Prints the run's settings and one row per layer: shape, then the layer's scalars (the\n"
    "columns named in the header): lambda used, the sweep loss sum (w-q)'(H+lambda I)(w-q), the\n"
    "output error err = |XW'-X~Q'|^2/n and rel_err, the a-priori bound bound_l2, the\n"
    "stochastic-rounding l-infinity bound, Qronos' err_floor (the error no choice of weights\n"
    "removes), seconds, clipped entries, lambda raises after a failed Cholesky; last the ratio\n"
    "measured/bound (OPTQ, RTN: loss/bound_l2; Qronos: err/bound_l2; <= 1 when nothing\n"
    "clipped).\n";

#define MQ_HEADER_SCALAR(field, kind, ...) printf(" %11s", #field);
#define F64(v) printf(" %11.4g", (v))
#define I64(v) printf(" %11lld", (long long)(v))
#define MQ_PRINT_SCALAR(field, kind, ...) kind(l->res.field);

static void print_layer(const mq_result_layer_summary *l, int qronos) {
  char shape[32];
  snprintf(shape, sizeof shape, "%zux%zu", l->rows, l->res.cols);
  printf("%-40s %11s", l->name, shape);
  MQ_LAYER_SCALARS(MQ_PRINT_SCALAR)
  /* the measured quantity the bound controls (Qronos: err, OPTQ/RTN: loss) */
  double measured = qronos ? l->res.err : l->res.loss;
  printf(" %7.3f\n", l->res.bound_l2 > 0 ? measured / l->res.bound_l2 : NAN);
}

static void print_summary(const char *path, const mq_result_summary *s) {
  const mq_quant_options *o = &s->meta.opts;
  printf("%s: mpiquant result, format %d, written by mpiquant %s on %d rank(s)%s\n", path,
         s->format_version, s->mpiquant_version, s->meta.nranks,
         s->complete ? "" : "  ** INCOMPLETE: the run did not finish **");
  printf("method %s, rounding %s, %d bits, group %d, %s, act-order %s, static groups %s, "
         "damp %g, seed %llu\n",
         mq_method_names[o->method], mq_rounding_names[o->rounding],
         o->bits, o->group_size, o->sym ? "sym" : "asym", o->act_order ? "on" : "off",
         o->static_groups ? "on" : "off", o->damp, (unsigned long long)o->seed);
  printf("%-40s %11s", "layer", "shape");
  MQ_LAYER_SCALARS(MQ_HEADER_SCALAR)
  printf(" %7s\n", "ratio");
  double worst = 0.0;
  for (size_t i = 0; i < s->nlayers; i++) {
    print_layer(&s->layers[i], o->method == MQ_METHOD_QRONOS);
    if (s->layers[i].res.rel_err > worst) worst = s->layers[i].res.rel_err;
  }
  printf("%zu layer(s), worst rel_err %.4g\n", s->nlayers, worst);
}

int mq_cmd_inspect(mq_cli *cli, int argc, char **argv) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  const char *path = NULL;
  mq_result_summary sum = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (cli->ctx->rank == 0) fputs(inspect_help, stdout);
      return MQ_OK;
    }
    if (argv[i][0] == '-') MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option", argv[i]);
    if (path != NULL) MQ_FAIL(err, MQ_EUSAGE, "%s: only one file can be inspected", argv[i]);
    path = argv[i];
  }
  if (path == NULL) MQ_FAIL(err, MQ_EUSAGE, "inspect: missing the result file (O.h5)");
  if (cli->ctx->rank == 0) {
    st = mq_h5_result_read_summary(path, &sum, err);
    if (st == MQ_OK) print_summary(path, &sum);
    mq_result_summary_free(&sum);
  }
cleanup:
  return mq_agree(cli->ctx->comm, st);
}

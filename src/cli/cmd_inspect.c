/* `mpiquant inspect O.h5`: a human-readable summary of a result file. Rank 0 reads and prints. */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/status.h"
#include "io/h5result.h"

static const char inspect_help[] =
    "usage: mpiquant inspect O.h5\n"
    "\n"
    "Prints the run's settings and one row per layer: shape, lambda used, the sweep loss\n"
    "sum (w-q)'(H+lambda I)(w-q), its a-priori bound bound_l2 and the ratio measured/bound\n"
    "(OPTQ, RTN: loss/bound; Qronos: err/bound; <= 1 when no entry was clipped), the output\n"
    "error err = |XW'-X~Q'|^2/n and rel_err, Qronos' err_floor (the error no choice of weights\n"
    "removes), the stochastic-rounding l-infinity bound, clipped entries, seconds.\n";

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
  printf("%-40s %11s %10s %11s %11s %7s %11s %9s %10s %10s %8s %8s\n", "layer", "shape",
         "lambda", "loss", "bound_l2", "ratio", "err", "rel_err", "err_floor", "bound_linf",
         "clipped", "seconds");
  double worst = 0.0;
  for (size_t i = 0; i < s->nlayers; i++) {
    const mq_result_layer_summary *l = &s->layers[i];
    char shape[32];
    snprintf(shape, sizeof shape, "%zux%zu", l->rows, l->cols);
    /* ratio: the measured quantity the bound controls (Qronos: err, OPTQ/RTN: loss) */
    double measured = s->meta.opts.method == MQ_METHOD_QRONOS ? l->err : l->loss;
    printf("%-40s %11s %10.3g %11.4g %11.4g %7.3f %11.4g %9.4g %10.4g %10.4g %8lld %8.2f\n",
           l->name, shape, l->lambda, l->loss, l->bound_l2,
           l->bound_l2 > 0 ? measured / l->bound_l2 : NAN, l->err, l->rel_err, l->err_floor,
           l->bound_linf, l->clipped, l->seconds);
    if (l->rel_err > worst) worst = l->rel_err;
  }
  printf("%zu layer(s), worst rel_err %.4g\n", s->nlayers, worst);
}

int mq_cmd_inspect(mq_cli *cli, int argc, char **argv) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->err;
  const char *path = NULL;
  mq_result_summary sum = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      if (cli->rank == 0) fputs(inspect_help, stdout);
      return MQ_OK;
    }
    if (argv[i][0] == '-') MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option", argv[i]);
    if (path != NULL) MQ_FAIL(err, MQ_EUSAGE, "%s: only one file can be inspected", argv[i]);
    path = argv[i];
  }
  if (path == NULL) MQ_FAIL(err, MQ_EUSAGE, "inspect: missing the result file (O.h5)");
  if (cli->rank == 0) {
    st = mq_h5_result_read_summary(path, &sum, err);
    if (st == MQ_OK) print_summary(path, &sum);
    mq_result_summary_free(&sum);
  }
cleanup:
  return mq_cli_agree(cli, st);
}

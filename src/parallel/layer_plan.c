#include "parallel/layer_plan.h"

#include <unistd.h>

#include "core/log.h"
#include "parallel/ctx.h"

static const char *const factor_names[] = {"none (RTN)", "local", "ScaLAPACK"};
static const char *const h_home_names[] = {"replicated", "distributed, rows from the file",
                                           "distributed, summed in panels"};
static const char *const errors_names[] = {"not measured", "from the samples", "from the Grams",
                                           "from H", "from H's rows", "by the caller"};

/* --mem-per-rank, else the node's memory over its ranks; the minimum over ranks, so all decide
 * alike. The node split runs on every rank whatever its own option says (collective). */
static double memory_budget(mq_ctx *ctx, const mq_quant_options *o) {
  MPI_Comm node;
  int node_ranks = 1;
  MPI_Comm_split_type(ctx->comm, MPI_COMM_TYPE_SHARED, ctx->rank, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &node_ranks);
  MPI_Comm_free(&node);
  double budget = o->mem_per_rank > 0 ? (double)o->mem_per_rank
                  : (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE) / node_ranks;
  MPI_Allreduce(MPI_IN_PLACE, &budget, 1, MPI_DOUBLE, MPI_MIN, ctx->comm);
  return budget;
}

/* The replicated path holds about k·cols² doubles per rank besides the rows: H, plus a copy
 * for the errors (H files) or the sums' scratch and 16-byte exact accumulators of the triangle
 * (samples), plus G for Qronos. */
double mq__layer_replicated_bytes(const mq_layer_desc *d, int qronos) {
  double c2 = (double)d->cols * (double)d->cols * sizeof(double);
  double k = (d->has_x ? 3.0 : 2.0) + (qronos ? (d->has_x ? 2.0 : 1.0) : 0.0);
  return k * c2;
}

void mq__layer_plan_make(mq_ctx *ctx, const mq_layer_source *src, const mq_layer_extras *x,
                         mq_quant_options *o, mq_layer_plan *p) {
  const mq_layer_desc *d = &src->desc;
  int qronos = o->method == MQ_METHOD_QRONOS, rtn = o->method == MQ_METHOD_RTN;
  *p = (mq_layer_plan){.lambda_auto = o->lambda_mode == MQ_LAMBDA_AUTO};
  p->budget_bytes = memory_budget(ctx, o);
  p->replicated_bytes = mq__layer_replicated_bytes(d, qronos);
  int too_big = p->replicated_bytes > p->budget_bytes && !rtn && ctx->size > 1;
  if (o->factor == MQ_FACTOR_AUTO) o->factor = too_big ? MQ_FACTOR_SCALAPACK : MQ_FACTOR_LOCAL;
  p->factor = rtn ? MQ_PLAN_NO_FACTOR
                  : o->factor == MQ_FACTOR_SCALAPACK ? MQ_PLAN_SCALAPACK : MQ_PLAN_LOCAL;
  p->need_g = qronos && (d->has_x ? d->has_xq : d->has_g);
  /* On the ScaLAPACK factor H need never be whole on a rank: read row by row from a file that
   * gives it (OPTQ), or, when replicated copies would not fit, summed from the samples panel
   * by panel (twice the flops of the replicated sums, so only when needed; --lambda auto
   * needs H whole). */
  if (p->factor == MQ_PLAN_SCALAPACK && d->has_x && too_big && !p->lambda_auto)
    p->h_home = MQ_H_SAMPLE_PANELS;
  else if (p->factor == MQ_PLAN_SCALAPACK && !d->has_x && o->method == MQ_METHOD_OPTQ &&
           d->has_h && src->read_h_rows != NULL && src->read_h_diag != NULL)
    p->h_home = MQ_H_FILE_ROWS;
  /* Data-parallel sources measure from the Gram matrices (XᵀX and X̃ᵀX once per group of layers
   * instead of a pass per layer) unless H is distributed (the Grams are whole matrices), or leave
   * it to the caller, whose forward passes compute XWᵀ and X̃Ŵᵀ anyway: then OPTQ and RTN need
   * only H. Qronos' err_floor needs ‖(X − X̃)Wᵀ‖², which the streams do not compute (X̃Wᵀ is
   * no stream's product), so Qronos keeps the Grams for it, and with a measuring caller uses
   * them for nothing else (floor_only). */
  int split = x->samples_local;
  if (x->skip_errors) p->errors = MQ_ERRORS_NONE;
  else if (x->errors_by_caller && !qronos) p->errors = MQ_ERRORS_BY_CALLER;
  else if (split && d->has_x && d->has_xq && p->h_home == MQ_H_REPLICATED)
    p->errors = MQ_ERRORS_GRAMS;
  else if (d->has_x) p->errors = MQ_ERRORS_SAMPLES;
  else p->errors = p->h_home == MQ_H_FILE_ROWS ? MQ_ERRORS_H_ROWS : MQ_ERRORS_H;
  p->floor_only = p->errors == MQ_ERRORS_GRAMS && x->errors_by_caller;
  /* split samples: each rank measures every row against its own samples — also Qronos'
   * --lambda auto, whose held-out error is the mismatched objective over samples */
  int pass = p->errors == MQ_ERRORS_SAMPLES || p->errors == MQ_ERRORS_NONE;
  p->every_row = split && (pass || (qronos && p->lambda_auto));
}

void mq__layer_plan_log(const mq_layer_plan *p, const char *layer) {
  MQ_DEBUG("%s: plan: factor %s, H %s%s, errors %s%s%s%s; replicated H needs ~%.3g GiB per "
           "rank, budget %.3g GiB",
           layer, factor_names[p->factor], h_home_names[p->h_home], p->need_g ? " with G" : "",
           errors_names[p->errors], p->floor_only ? " (err_floor only)" : "",
           p->every_row ? ", every row on every rank" : "",
           p->lambda_auto ? ", lambda auto" : "", p->replicated_bytes / 1073741824.0,
           p->budget_bytes / 1073741824.0);
}

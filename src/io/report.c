#include "io/report.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/layer_scalars.h"
#include "core/mem.h"
#include "core/status.h"

struct mq_report {
  char *path;
  int rank, nranks;
  json_t *root, *layers;
};

/* JSON has no NaN: unknown values become null. */
static json_t *number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

mq_report *mq_report_create(const char *path, int rank, int nranks, const mq_quant_options *o) {
  mq_report *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->rank = rank;
  r->nranks = nranks;
  r->path = path ? strdup(path) : NULL;
  if (path == NULL || rank != 0) return r;
  r->root = json_pack("{s:s, s:i, s:{s:s, s:s, s:i, s:i, s:b, s:b, s:b, s:b, s:f, s:I}}",
                      "mpiquant_version", MQ_VERSION_STRING, "nranks", nranks, "options",
                      "method", mq_method_names[o->method], "rounding",
                      mq_rounding_names[o->rounding], "bits",
                      o->bits, "group_size", o->group_size, "sym", o->sym, "act_order",
                      o->act_order, "static_groups", o->static_groups, "mse", o->mse, "damp",
                      o->damp, "seed", (json_int_t)o->seed);
  r->layers = json_array();
  json_object_set_new(r->root, "layers", r->layers);
  return r;
}

void mq_report_layer(mq_report *r, const char *name, const mq_layer_result *res, size_t rows,
                     const mq_layer_phases *ph) {
  if (r == NULL || r->layers == NULL) return;
  json_t *l = json_pack("{s:s, s:I, s:I}", "name", name, "rows", (json_int_t)rows, "cols",
                        (json_int_t)res->cols);
#define F64(v) number(v)
#define I64(v) json_integer((json_int_t)(v))
#define MQ_JSON_SCALAR(field, kind) json_object_set_new(l, #field, kind(res->field));
  MQ_LAYER_SCALARS(MQ_JSON_SCALAR)
#undef MQ_JSON_SCALAR
#undef F64
#undef I64
  json_object_set_new(l, "phases_max_over_ranks",
                      json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "hessian", ph->hessian,
                                "factor", ph->factor, "refit", ph->refit, "sweep", ph->sweep,
                                "sweep_gemm", ph->sweep_gemm, "pack", ph->pack, "errors",
                                ph->errors, "total", ph->total));
  json_object_set_new(l, "bytes_reduced", json_real(ph->comm_bytes));
  json_object_set_new(l, "mpi_calls", json_real(ph->comm_messages));
  if (res->lambda_ncand > 0) {
    json_t *c = json_array(), *h = json_array();
    for (int k = 0; k < res->lambda_ncand; k++) {
      json_array_append_new(c, number(res->lambda_cand[k]));
      json_array_append_new(h, number(res->lambda_heldout[k]));
    }
    json_object_set_new(l, "lambda_candidates", c);
    json_object_set_new(l, "lambda_heldout_err", h);
  }
  json_array_append_new(r->layers, l);
}

void mq_report_set_number(mq_report *r, const char *key, double value) {
  if (r != NULL && r->root != NULL) json_object_set_new(r->root, key, number(value));
}

void mq_report_set_string(mq_report *r, const char *key, const char *value) {
  if (r != NULL && r->root != NULL) json_object_set_new(r->root, key, json_string(value));
}

mq_status mq_report_finish(mq_report **pr, MPI_Comm comm, mq_error *err) {
  mq_status st = MQ_OK;
  mq_report *r = *pr;
  if (r == NULL || r->path == NULL) goto cleanup;
  double mine[2] = {(double)mq_mem_peak(), 0.0};
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) mine[1] = (double)ru.ru_maxrss * 1024.0;
  double *all = r->rank == 0 ? malloc(2 * sizeof(double) * (size_t)r->nranks) : NULL;
  MPI_Gather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, 0, comm);
  if (r->rank == 0 && r->root != NULL && all != NULL) {
    json_t *peak = json_array(), *rss = json_array();
    for (int k = 0; k < r->nranks; k++) {
      json_array_append_new(peak, json_real(all[2 * k]));
      json_array_append_new(rss, json_real(all[2 * k + 1]));
    }
    json_object_set_new(r->root, "peak_counted_bytes_per_rank", peak);
    json_object_set_new(r->root, "max_resident_bytes_per_rank", rss);
    if (json_dump_file(r->root, r->path, JSON_INDENT(2)) != 0)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot write the JSON report", r->path);
  }
  free(all);
cleanup:
  mq_report_discard(pr);
  return st;
}

void mq_report_discard(mq_report **pr) {
  mq_report *r = *pr;
  if (r != NULL) {
    json_decref(r->root);
    free(r->path);
    free(r);
  }
  *pr = NULL;
}

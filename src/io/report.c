#include "io/report.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/layer_scalars.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/status.h"
#include "parallel/traffic.h"

struct mq_report {
  char *path;
  int rank, nranks;
  json_t *root, *layers;
  int write_failed; /* a rewrite failed: warned once, the error of finish */
};

/* The plan's enums (parallel/layer_plan.h) as stable JSON names. */
static const char *const plan_factor_json[] = {"none", "local", "scalapack"};
static const char *const plan_h_home_json[] = {"replicated", "file_rows", "sample_panels"};
static const char *const plan_errors_json[] = {"none", "samples", "grams", "h", "h_rows",
                                               "caller"};

static json_t *plan_name(const char *const *names, size_t count, double code) {
  size_t k = (size_t)code;
  return code >= 0 && k < count ? json_string(names[k]) : json_null();
}
#define PLAN_NAME(names, code) plan_name(names, sizeof names / sizeof names[0], code)

/* The report as it stands into path: a temporary file beside it, flushed to disk, renamed over
 * it (a reader, or a run killed now, sees the old report or the new one, never half of one). */
static int write_atomically(json_t *root, const char *path) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) return -1;
  FILE *f = fopen(tmp, "w");
  if (f == NULL) return -1;
  int rc = json_dumpf(root, f, JSON_INDENT(2));
  if (fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) rc = -1;
  if (fclose(f) != 0) rc = -1;
  if (rc == 0 && rename(tmp, path) == 0) return 0;
  (void)unlink(tmp);
  return -1;
}

/* The run-level figures of a report written now: how far the run is and how long it has
 * taken (mq_wtime: since the logger started, the process's start in the CLI). */
static void stamp(mq_report *r, int complete) {
  json_object_set_new(r->root, "complete", json_boolean(complete));
  json_object_set_new(r->root, "layers_written",
                      json_integer((json_int_t)json_array_size(r->layers)));
  json_object_set_new(r->root, "seconds_elapsed", json_real(mq_wtime()));
}

static void rewrite(mq_report *r) {
  stamp(r, 0);
  if (write_atomically(r->root, r->path) == 0 || r->write_failed) return;
  r->write_failed = 1;
  MQ_WARN("%s: cannot write the JSON report (will try again after the next layer)", r->path);
}

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

/* {"sums": {"bytes": B, "messages": M}, …}: the measured MPI traffic per rank and phase, the
 * maximum over ranks (parallel/traffic.h); null where it was not measured (no PMPI wrappers). */
static json_t *traffic_json(const mq_layer_phases *ph) {
  if (!ph->traffic_measured) return json_null();
  json_t *t = json_object();
  for (int p = 0; p < MQ_TRAFFIC_PHASES; p++)
    json_object_set_new(t, mq_traffic_phase_name((mq_traffic_phase)p),
                        json_pack("{s:I, s:I}", "bytes", (json_int_t)ph->traffic_bytes[p],
                                  "messages", (json_int_t)ph->traffic_messages[p]));
  return t;
}

void mq_report_layer(mq_report *r, const char *name, const mq_layer_result *res, size_t rows,
                     const mq_layer_phases *ph) {
  if (r == NULL || r->layers == NULL) return;
  json_t *l = json_pack("{s:s, s:I, s:I}", "name", name, "rows", (json_int_t)rows, "cols",
                        (json_int_t)res->cols);
#define F64(v) number(v)
#define I64(v) json_integer((json_int_t)(v))
#define MQ_JSON_SCALAR(field, kind, ...) json_object_set_new(l, #field, kind(res->field));
  MQ_LAYER_SCALARS(MQ_JSON_SCALAR)
#undef MQ_JSON_SCALAR
#undef F64
#undef I64
  json_object_set_new(l, "phases_max_over_ranks",
                      json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "hessian", ph->hessian,
                                "factor", ph->factor, "refit", ph->refit, "sweep", ph->sweep,
                                "sweep_gemm", ph->sweep_gemm, "pack", ph->pack, "errors",
                                ph->errors, "total", ph->total));
  json_object_set_new(l, "plan", json_pack("{s:o, s:o, s:o}",
      "factor", PLAN_NAME(plan_factor_json, ph->plan_factor),
      "h_home", PLAN_NAME(plan_h_home_json, ph->plan_h_home),
      "errors", PLAN_NAME(plan_errors_json, ph->plan_errors)));
  json_object_set_new(l, "run_seconds_at_end", json_real(mq_wtime()));
  json_object_set_new(l, "bytes_reduced", json_real(ph->comm_bytes));
  json_object_set_new(l, "mpi_calls", json_real(ph->comm_messages));
  json_object_set_new(l, "traffic_per_rank", traffic_json(ph));
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
  rewrite(r);
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
    stamp(r, 1);
    if (write_atomically(r->root, r->path) != 0)
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

struct json_t *mq_report_earlier_load(const char *path, int rank) {
  if (path == NULL || rank != 0) return NULL;
  json_t *root = json_load_file(path, 0, NULL), *layers = json_object_get(root, "layers");
  json_t *keep = json_is_array(layers) ? json_incref(layers) : NULL;
  json_decref(root);
  return keep;
}

/* Whether the records of `layers` name `name`. */
static int lists(json_t *layers, const char *name) {
  size_t i;
  json_t *l;
  json_array_foreach(layers, i, l) {
    const char *n = json_string_value(json_object_get(l, "name"));
    if (n != NULL && !strcmp(n, name)) return 1;
  }
  return 0;
}

mq_status mq_report_earlier_carry(const char *path, int rank, struct json_t *earlier,
                                  mq_error *err) {
  mq_status st = MQ_OK;
  json_t *root = NULL, *merged = NULL;
  if (earlier == NULL || path == NULL || rank != 0) goto cleanup;
  root = json_load_file(path, 0, NULL);
  json_t *now = json_object_get(root, "layers");
  if (!json_is_array(now)) goto cleanup; /* no report of this run: the earlier one stands */
  merged = json_array();
  size_t i, carried = 0;
  json_t *l;
  json_array_foreach(earlier, i, l) {
    const char *n = json_string_value(json_object_get(l, "name"));
    if (n == NULL || lists(now, n)) continue;
    json_object_set_new(l, "earlier_run", json_true());
    json_array_append(merged, l);
    carried++;
  }
  if (carried == 0) goto cleanup;
  json_array_extend(merged, now);
  json_object_set(root, "layers", merged);
  json_object_set_new(root, "layers_written", json_integer((json_int_t)json_array_size(merged)));
  if (write_atomically(root, path) != 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot write the JSON report", path);
cleanup:
  json_decref(merged);
  json_decref(root);
  json_decref(earlier);
  return st;
}

/* Reading result files for `inspect` and tests: serial, rank-local, default driver; tolerant
 * of missing optional attributes (older or foreign files). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"
#include "io/h5result.h"


/* ---- reading ---- */

/* Scalar numeric attribute converted to mem_type. Returns 1 when read, 0 when missing or not a
 * scalar number (callers keep their default: inspect tolerates older or foreign files). */
static int attr_read_num(hid_t loc, const char *name, hid_t mem_type, void *v) {
  if (H5Aexists(loc, name) <= 0) return 0;
  hid_t attr = H5Aopen(loc, name, H5P_DEFAULT), space = H5I_INVALID_HID, type = H5I_INVALID_HID;
  int ok = 0;
  if (attr >= 0) {
    space = H5Aget_space(attr);
    type = H5Aget_type(attr);
  }
  if (space >= 0 && type >= 0 && H5Sget_simple_extent_npoints(space) == 1) {
    H5T_class_t cls = H5Tget_class(type);
    ok = (cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Aread(attr, mem_type, v) >= 0;
  }
  mq__h5_close(&type);
  mq__h5_close(&space);
  mq__h5_close(&attr);
  return ok;
}

/* Reads the bytes of a fixed-length or variable-length string attribute. */
static int attr_read_chars(hid_t attr, hid_t type, char *buf, size_t size) {
  if (H5Tis_variable_str(type) > 0) {
    char *s = NULL;
    /* The file type as memory type: HDF5 does not convert between ASCII and UTF-8 strings. */
    if (H5Aread(attr, type, &s) < 0 || s == NULL) return 0;
    snprintf(buf, size, "%s", s);
    H5free_memory(s);
    return 1;
  }
  size_t n = H5Tget_size(type);
  char *tmp = mq_calloc(n + 1, 1);
  int ok = tmp != NULL && H5Aread(attr, type, tmp) >= 0;
  if (ok) snprintf(buf, size, "%s", tmp);
  mq_free(tmp);
  return ok;
}

/* String attribute into buf (truncated to size). Returns 1 when read, 0 when missing. */
static int attr_read_str(hid_t loc, const char *name, char *buf, size_t size) {
  buf[0] = '\0';
  if (H5Aexists(loc, name) <= 0) return 0;
  hid_t attr = H5Aopen(loc, name, H5P_DEFAULT), type = H5I_INVALID_HID;
  int ok = 0;
  if (attr >= 0) type = H5Aget_type(attr);
  if (type >= 0 && H5Tget_class(type) == H5T_STRING) ok = attr_read_chars(attr, type, buf, size);
  mq__h5_close(&type);
  mq__h5_close(&attr);
  return ok;
}

/* Index of s in names[n], or -1. */
static int lookup(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

static mq_status read_enum(const char *path, hid_t file, const char *name,
                           const char *const *names, int n, int *out, mq_error *err) {
  mq_status st = MQ_OK;
  char buf[64];
  if (!attr_read_str(file, name, buf, sizeof buf)) goto cleanup; /* keep the default */
  int v = lookup(buf, names, n);
  if (v < 0) MQ_FAIL(err, MQ_EINPUT, "%s: unknown %s '%s'", path, name, buf);
  *out = v;
cleanup:
  return st;
}

/* An int attribute into an int field; missing leaves the field unchanged. */
static void read_int(hid_t loc, const char *name, int *out) {
  int64_t v;
  if (attr_read_num(loc, name, H5T_NATIVE_INT64, &v)) *out = (int)v;
}

static mq_status read_root(const char *path, hid_t file, mq_result_summary *sum, mq_error *err) {
  mq_status st = MQ_OK;
  char fmt[32];
  int64_t version = 0;
  if (!attr_read_str(file, "format", fmt, sizeof fmt) || strcmp(fmt, "mpiquant") != 0 ||
      !attr_read_num(file, "format_version", H5T_NATIVE_INT64, &version))
    MQ_FAIL(err, MQ_EINPUT, "%s: not an mpiquant result file", path);
  if (version != MQ_FORMAT_VERSION)
    MQ_FAIL(err, MQ_EINPUT, "%s: unsupported format_version %lld (this build reads %d)", path,
            (long long)version, MQ_FORMAT_VERSION);
  sum->format_version = (int)version;
  mq_quant_options *o = &sum->meta.opts;
  int method = (int)o->method, rounding = (int)o->rounding, lmode = (int)o->lambda_mode;
  MQ_CHECK(read_enum(path, file, "method", mq_method_names, 3, &method, err));
  MQ_CHECK(read_enum(path, file, "rounding", mq_rounding_names, 2, &rounding, err));
  MQ_CHECK(read_enum(path, file, "lambda_mode", mq__h5_lambda_mode_names, 3, &lmode, err));
  o->method = (mq_method)method;
  o->rounding = (mq_rounding)rounding;
  o->lambda_mode = (mq_lambda_mode)lmode;
  (void)attr_read_str(file, "mpiquant_version", sum->mpiquant_version,
                      sizeof sum->mpiquant_version);
  read_int(file, "bits", &o->bits);
  read_int(file, "group_size", &o->group_size);
  read_int(file, "sym", &o->sym);
  read_int(file, "act_order", &o->act_order);
  read_int(file, "static_groups", &o->static_groups);
  read_int(file, "mse", &o->mse);
  read_int(file, "block_size", &o->block_size);
  read_int(file, "nranks", &sum->meta.nranks);
  read_int(file, "complete", &sum->complete);
  o->damp = NAN; /* a missing double reads as NaN, not as a default that was never used */
  (void)attr_read_num(file, "damp", H5T_NATIVE_DOUBLE, &o->damp);
  (void)attr_read_num(file, "lambda_abs", H5T_NATIVE_DOUBLE, &o->lambda);
  (void)attr_read_num(file, "seed", H5T_NATIVE_UINT64, &o->seed);
cleanup:
  return st;
}

/* Missing attributes read as NaN (doubles), 0 (sizes) and -1 (clipped). */
static void read_layer(hid_t layers, const char *name, mq_result_layer_summary *ls) {
  snprintf(ls->name, sizeof ls->name, "%s", name);
  ls->lambda = ls->loss = ls->err = ls->rel_err = NAN;
  ls->bound_l2 = ls->bound_linf = ls->err_floor = ls->seconds = NAN;
  ls->clipped = -1;
  hid_t g = H5Gopen2(layers, name, H5P_DEFAULT);
  if (g < 0) return; /* not a group: reported as a layer with nothing known */
  uint64_t rows = 0, cols = 0;
  (void)attr_read_num(g, "rows", H5T_NATIVE_UINT64, &rows);
  (void)attr_read_num(g, "cols", H5T_NATIVE_UINT64, &cols);
  ls->rows = (size_t)rows;
  ls->cols = (size_t)cols;
  (void)attr_read_num(g, "clipped", H5T_NATIVE_LLONG, &ls->clipped);
  const struct { const char *name; double *v; } dbls[] = {
      {"lambda", &ls->lambda},     {"loss", &ls->loss},
      {"err", &ls->err},           {"rel_err", &ls->rel_err},
      {"bound_l2", &ls->bound_l2}, {"bound_linf", &ls->bound_linf},
      {"err_floor", &ls->err_floor}, {"seconds", &ls->seconds},
  };
  for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++)
    (void)attr_read_num(g, dbls[i].name, H5T_NATIVE_DOUBLE, dbls[i].v);
  mq__h5_close(&g);
}

static mq_status read_layers(const char *path, hid_t file, mq_result_summary *sum, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t layers = H5I_INVALID_HID;
  mq_h5_names names = {0};
  if (H5Lexists(file, "layers", H5P_DEFAULT) <= 0) goto cleanup; /* e.g. failed at create */
  layers = H5Gopen2(file, "layers", H5P_DEFAULT);
  if (layers < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers is not a group", path);
  MQ_CHECK(mq__h5_list_names(layers, path, "/layers", &names, err));
  if (names.n == 0) goto cleanup;
  sum->layers = mq_calloc(names.n, sizeof *sum->layers);
  MQ_CHECK_ALLOC(err, sum->layers, names.n * sizeof *sum->layers);
  sum->nlayers = names.n;
  for (size_t i = 0; i < names.n; i++) read_layer(layers, names.name[i], &sum->layers[i]);
cleanup:
  mq__h5_names_free(&names);
  mq__h5_close(&layers);
  return st;
}

mq_status mq_h5_result_read_summary(const char *path, mq_result_summary *sum, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t file = H5I_INVALID_HID;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  memset(sum, 0, sizeof *sum);
  mq_quant_options_init(&sum->meta.opts); /* defaults for attributes a file may lack */
  MQ_CHECK(mq__h5_open_read(path, &file, err));
  MQ_CHECK(read_root(path, file, sum, err));
  MQ_CHECK(read_layers(path, file, sum, err));
cleanup:
  if (st != MQ_OK) mq_result_summary_free(sum);
  mq__h5_close(&file);
  mq__h5_quiet_end(&quiet);
  return st;
}

void mq_result_summary_free(mq_result_summary *sum) {
  if (sum == NULL) return;
  mq_free(sum->layers);
  sum->layers = NULL;
  sum->nlayers = 0;
}

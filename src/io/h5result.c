/* Result files (SPEC.md "Result file", format_version 1). The file claims to be complete only
 * through the root attribute complete=1, written by finish() after a flush of everything else;
 * abort() deletes a partial file. */
#include "io/h5result.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"

struct mq_h5_result {
  char *path; /* for messages and abort()'s unlink */
  hid_t file;
  hid_t layers; /* the /layers group */
};

static const char *const method_names[] = {"rtn", "optq", "qronos"};
static const char *const rounding_names[] = {"nearest", "stochastic"};
static const char *const lambda_mode_names[] = {"damp", "absolute", "auto"};

/* ---- attribute writing ---- */

/* Scalar attribute `name` on loc, created or overwritten (complete is written twice). `obj`
 * names loc in messages ("/" or "/layers/<name>"). */
static mq_status attr_write(const mq_h5_result *rf, hid_t loc, const char *obj, const char *name,
                            hid_t file_type, hid_t mem_type, const void *value, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
  htri_t exists = H5Aexists(loc, name);
  if (space >= 0 && exists >= 0)
    attr = exists ? H5Aopen(loc, name, H5P_DEFAULT)
                  : H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (attr < 0 || H5Awrite(attr, mem_type, value) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: %s: cannot write attribute '%s'", rf->path, obj, name);
cleanup:
  mq__h5_close(&attr);
  mq__h5_close(&space);
  return st;
}

static mq_status attr_i64(const mq_h5_result *rf, hid_t loc, const char *obj, const char *name,
                          int64_t v, mq_error *err) {
  return attr_write(rf, loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, err);
}

static mq_status attr_f64(const mq_h5_result *rf, hid_t loc, const char *obj, const char *name,
                          double v, mq_error *err) {
  return attr_write(rf, loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, err);
}

/* Variable-length UTF-8: h5py reads it as str, not bytes. */
static mq_status attr_str(const mq_h5_result *rf, hid_t loc, const char *obj, const char *name,
                          const char *v, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t type = H5Tcopy(H5T_C_S1);
  if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot make a string type", rf->path);
  MQ_CHECK(attr_write(rf, loc, obj, name, type, type, &v, err));
cleanup:
  mq__h5_close(&type);
  return st;
}

/* ---- create ---- */

typedef struct named_i64 {
  const char *name;
  int64_t value;
} named_i64;

static mq_status write_root_attrs(const mq_h5_result *rf, const mq_result_meta *meta,
                                  mq_error *err) {
  mq_status st = MQ_OK;
  const mq_quant_options *o = &meta->opts;
  if ((unsigned)o->method > MQ_METHOD_QRONOS || (unsigned)o->rounding > MQ_ROUND_STOCHASTIC ||
      (unsigned)o->lambda_mode > MQ_LAMBDA_AUTO)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: options out of range", rf->path);
  MQ_CHECK(attr_str(rf, rf->file, "/", "format", "mpiquant", err));
  MQ_CHECK(attr_str(rf, rf->file, "/", "mpiquant_version", MQ_VERSION_STRING, err));
  MQ_CHECK(attr_str(rf, rf->file, "/", "method", method_names[o->method], err));
  MQ_CHECK(attr_str(rf, rf->file, "/", "rounding", rounding_names[o->rounding], err));
  MQ_CHECK(attr_str(rf, rf->file, "/", "lambda_mode", lambda_mode_names[o->lambda_mode], err));
  const named_i64 ints[] = {
      {"format_version", MQ_FORMAT_VERSION}, {"bits", o->bits},
      {"group_size", o->group_size},         {"sym", o->sym},
      {"act_order", o->act_order},           {"static_groups", o->static_groups},
      {"mse", o->mse},                       {"block_size", o->block_size},
      {"nranks", meta->nranks},              {"complete", 0},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    MQ_CHECK(attr_i64(rf, rf->file, "/", ints[i].name, ints[i].value, err));
  MQ_CHECK(attr_f64(rf, rf->file, "/", "damp", o->damp, err));
  if (o->lambda_mode == MQ_LAMBDA_ABSOLUTE)
    MQ_CHECK(attr_f64(rf, rf->file, "/", "lambda_abs", o->lambda, err));
  MQ_CHECK(attr_write(rf, rf->file, "/", "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &o->seed, err));
cleanup:
  return st;
}

mq_status mq_h5_result_create(const char *path, const mq_result_meta *meta, mq_h5_result **out,
                              mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  *out = NULL;
  mq_h5_result *rf = mq_calloc(1, sizeof *rf);
  MQ_CHECK_ALLOC(err, rf, sizeof *rf);
  rf->file = rf->layers = H5I_INVALID_HID;
  size_t plen = strlen(path) + 1;
  rf->path = mq_alloc(plen, 1);
  MQ_CHECK_ALLOC(err, rf->path, plen);
  memcpy(rf->path, path, plen);
  rf->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (rf->file < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create file", path);
  MQ_CHECK(write_root_attrs(rf, meta, err));
  rf->layers = H5Gcreate2(rf->file, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (rf->layers < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create group /layers", path);
  *out = rf;
  rf = NULL;
cleanup:
  if (rf != NULL && rf->file < 0) { /* nothing was created: don't unlink someone else's file */
    mq_free(rf->path);
    mq_free(rf);
    rf = NULL;
  }
  mq_h5_result_abort(&rf);
  mq__h5_quiet_end(&quiet);
  return st;
}

/* ---- layers ---- */

/* A contiguous dataset of `rank` dims [d0(, d1)] written from buf in one H5Dwrite. */
static mq_status write_dataset(const mq_h5_result *rf, hid_t group, const char *layer,
                               const char *name, hid_t file_type, hid_t mem_type, int rank,
                               size_t d0, size_t d1, const void *buf, mq_error *err) {
  mq_status st = MQ_OK;
  hsize_t dims[2] = {(hsize_t)d0, (hsize_t)d1};
  hid_t space = H5Screate_simple(rank, dims, NULL), ds = H5I_INVALID_HID;
  if (space >= 0)
    ds = H5Dcreate2(group, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ds < 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: /layers/%s/%s: write failed", rf->path, layer, name);
cleanup:
  mq__h5_close(&ds);
  mq__h5_close(&space);
  return st;
}

/* Caller bugs caught before anything is written: a bad name or inconsistent sizes would
 * otherwise produce a file that export/inspect misread. */
static mq_status check_layer_args(const mq_h5_result *rf, const char *name,
                                  const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: invalid layer name '%s'", rf->path,
            name ? name : "(null)");
  if (!res->qweight || !res->scales || !res->zeros || !res->g_idx || res->bits < 1 ||
      res->bits > 32 || res->words != (res->cols * (size_t)res->bits + 31) / 32)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: /layers/%s: inconsistent layer result", rf->path,
            name);
  htri_t exists = H5Lexists(rf->layers, name, H5P_DEFAULT);
  if (exists != 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: /layers/%s: %s", rf->path, name,
            exists > 0 ? "layer written twice" : "cannot query group");
cleanup:
  return st;
}

typedef struct named_f64 {
  const char *name;
  double value;
} named_f64;

static mq_status write_layer_attrs(const mq_h5_result *rf, hid_t g, const char *obj,
                                   const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  const named_i64 ints[] = {
      {"rows", (int64_t)res->rows},
      {"cols", (int64_t)res->cols},
      {"clipped", res->clipped},
      {"lambda_raises", res->lambda_raises},
  };
  const named_f64 dbls[] = {
      {"lambda", res->lambda},     {"loss", res->loss},
      {"err", res->err},           {"rel_err", res->rel_err},
      {"bound_l2", res->bound_l2}, {"bound_linf", res->bound_linf},
      {"err_floor", res->err_floor}, {"seconds", res->seconds},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    MQ_CHECK(attr_i64(rf, g, obj, ints[i].name, ints[i].value, err));
  for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++)
    MQ_CHECK(attr_f64(rf, g, obj, dbls[i].name, dbls[i].value, err));
cleanup:
  return st;
}

mq_status mq_h5_result_write_layer(mq_h5_result *rf, const char *name, const mq_layer_result *res,
                                   mq_error *err) {
  mq_status st = MQ_OK;
  hid_t g = H5I_INVALID_HID;
  char obj[320];
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  if (rf == NULL || res == NULL) MQ_FAIL(err, MQ_EFAIL, "internal error: no result file or layer");
  MQ_CHECK(check_layer_args(rf, name, res, err));
  snprintf(obj, sizeof obj, "/layers/%s", name);
  g = H5Gcreate2(rf->layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) MQ_FAIL(err, MQ_EFAIL, "%s: %s: cannot create group", rf->path, obj);
  MQ_CHECK(write_dataset(rf, g, name, "qweight", H5T_STD_U32LE, H5T_NATIVE_UINT32, 2, res->rows,
                         res->words, res->qweight, err));
  MQ_CHECK(write_dataset(rf, g, name, "scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, res->rows,
                         res->ngroups, res->scales, err));
  MQ_CHECK(write_dataset(rf, g, name, "zeros", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, res->rows,
                         res->ngroups, res->zeros, err));
  MQ_CHECK(write_dataset(rf, g, name, "g_idx", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, res->cols, 0,
                         res->g_idx, err));
  MQ_CHECK(write_layer_attrs(rf, g, obj, res, err));
cleanup:
  mq__h5_close(&g);
  mq__h5_quiet_end(&quiet);
  return st;
}

/* ---- finish / abort ---- */

mq_status mq_h5_result_finish(mq_h5_result **prf, mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq_h5_result *rf = prf ? *prf : NULL;
  if (rf == NULL) MQ_FAIL(err, MQ_EFAIL, "internal error: no result file to finish");
  /* Everything else reaches the file before complete=1 is written. */
  if (H5Fflush(rf->file, H5F_SCOPE_GLOBAL) < 0) MQ_FAIL(err, MQ_EFAIL, "%s: flush failed", rf->path);
  MQ_CHECK(attr_i64(rf, rf->file, "/", "complete", 1, err));
  mq__h5_close(&rf->layers);
  herr_t rc = H5Fclose(rf->file);
  rf->file = H5I_INVALID_HID;
  if (rc < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot close file", rf->path);
  mq_free(rf->path);
  mq_free(rf);
  *prf = NULL;
cleanup:
  if (st != MQ_OK) mq_h5_result_abort(prf); /* a file that failed to finish must not survive */
  mq__h5_quiet_end(&quiet);
  return st;
}

void mq_h5_result_abort(mq_h5_result **prf) {
  if (prf == NULL || *prf == NULL) return;
  mq_h5_result *rf = *prf;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq__h5_close(&rf->layers);
  if (rf->file >= 0) (void)H5Fclose(rf->file);
  mq__h5_quiet_end(&quiet);
  if (rf->path) (void)unlink(rf->path);
  mq_free(rf->path);
  mq_free(rf);
  *prf = NULL;
}

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
  MQ_CHECK(read_enum(path, file, "method", method_names, 3, &method, err));
  MQ_CHECK(read_enum(path, file, "rounding", rounding_names, 2, &rounding, err));
  MQ_CHECK(read_enum(path, file, "lambda_mode", lambda_mode_names, 3, &lmode, err));
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

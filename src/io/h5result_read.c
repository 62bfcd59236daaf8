/* Reading result files for `inspect` and tests: serial, rank-local, default driver; tolerant
 * of missing optional attributes (older or foreign files), not of malformed ones (io/h5common.h:
 * an attribute of the wrong class or with more than one element is MQ_EINPUT). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layer_scalars.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"
#include "io/h5result.h"

/* Index of s in names[n], or -1. */
static int lookup(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

/* A string attribute naming one of names[n] into *out; missing leaves *out unchanged. */
static mq_status read_enum(const mq_h5_obj *root, const char *name, const char *const *names,
                           int n, int *out, mq_error *err) {
  mq_status st = MQ_OK;
  char buf[64];
  int found = 0;
  MQ_CHECK(mq__h5_attr_string_buf(root, name, buf, sizeof buf, &found, err));
  if (!found) goto cleanup; /* keep the default */
  int v = lookup(buf, names, n);
  if (v < 0) MQ_FAIL(err, MQ_EINPUT, "%s: unknown %s '%s'", root->path, name, buf);
  *out = v;
cleanup:
  return st;
}

/* An int attribute into an int field; missing leaves the field unchanged. */
static mq_status read_int(const mq_h5_obj *root, const char *name, int *out, mq_error *err) {
  mq_status st = MQ_OK;
  int64_t v = 0;
  int found = 0;
  MQ_CHECK(mq__h5_attr_i64(root, name, &v, &found, err));
  if (!found) goto cleanup;
  if (v < INT_MIN || v > INT_MAX)
    MQ_FAIL(err, MQ_EINPUT, "%s: attribute %s: %lld is out of range", root->path, name,
            (long long)v);
  *out = (int)v;
cleanup:
  return st;
}

/* checkpoint_hash, when present: exactly 16 hex digits. */
static mq_status read_checkpoint_hash(const mq_h5_obj *root, mq_result_meta *meta,
                                      mq_error *err) {
  mq_status st = MQ_OK;
  char buf[32];
  int found = 0;
  MQ_CHECK(mq__h5_attr_string_buf(root, "checkpoint_hash", buf, sizeof buf, &found, err));
  if (!found) goto cleanup;
  if (strlen(buf) != 16 || strspn(buf, "0123456789abcdefABCDEF") != 16)
    MQ_FAIL(err, MQ_EINPUT, "%s: attribute checkpoint_hash: '%s' is not 16 hex digits",
            root->path, buf);
  meta->checkpoint_hash = (uint64_t)strtoull(buf, NULL, 16);
  meta->has_checkpoint_hash = 1;
cleanup:
  return st;
}

static mq_status read_root(const char *path, hid_t file, mq_result_summary *sum, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_obj root = {file, path, "/"};
  char fmt[32];
  int64_t version = 0;
  int has_fmt = 0, has_version = 0;
  MQ_CHECK(mq__h5_attr_string_buf(&root, "format", fmt, sizeof fmt, &has_fmt, err));
  if (has_fmt && strcmp(fmt, "mpiquant") == 0)
    MQ_CHECK(mq__h5_attr_i64(&root, "format_version", &version, &has_version, err));
  if (!has_version) MQ_FAIL(err, MQ_EINPUT, "%s: not an mpiquant result file", path);
  if (version != MQ_FORMAT_VERSION)
    MQ_FAIL(err, MQ_EINPUT, "%s: unsupported format_version %lld (this build reads %d)", path,
            (long long)version, MQ_FORMAT_VERSION);
  sum->format_version = (int)version;
  mq_quant_options *o = &sum->meta.opts;
  int method = (int)o->method, rounding = (int)o->rounding, lmode = (int)o->lambda_mode;
  MQ_CHECK(read_enum(&root, "method", mq_method_names, 3, &method, err));
  MQ_CHECK(read_enum(&root, "rounding", mq_rounding_names, 2, &rounding, err));
  MQ_CHECK(read_enum(&root, "lambda_mode", mq__h5_lambda_mode_names, 3, &lmode, err));
  o->method = (mq_method)method;
  o->rounding = (mq_rounding)rounding;
  o->lambda_mode = (mq_lambda_mode)lmode;
  int found = 0;
  MQ_CHECK(mq__h5_attr_string_buf(&root, "mpiquant_version", sum->mpiquant_version,
                                  sizeof sum->mpiquant_version, &found, err));
  const struct {
    const char *name;
    int *field;
  } ints[] = {
      {"bits", &o->bits},           {"group_size", &o->group_size},
      {"sym", &o->sym},             {"act_order", &o->act_order},
      {"static_groups", &o->static_groups}, {"mse", &o->mse},
      {"block_size", &o->block_size}, {"nranks", &sum->meta.nranks},
      {"complete", &sum->complete},
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    MQ_CHECK(read_int(&root, ints[i].name, ints[i].field, err));
  o->damp = NAN; /* a missing double reads as NaN, not as a default that was never used */
  MQ_CHECK(mq__h5_attr_f64(&root, "damp", &o->damp, &found, err));
  MQ_CHECK(mq__h5_attr_f64(&root, "lambda_abs", &o->lambda, &found, err));
  MQ_CHECK(mq__h5_attr_num(&root, "seed", H5T_NATIVE_UINT64, &o->seed, &found, err));
  MQ_CHECK(read_checkpoint_hash(&root, &sum->meta, err));
cleanup:
  return st;
}

/* One layer's shape and scalars. Missing attributes read as NaN (float64 scalars), 0 (rows,
 * cols) and -1 (int64 scalars); a link that is not a group is a layer with nothing known. */
static mq_status read_layer(const char *path, hid_t layers, const char *name,
                            mq_result_layer_summary *ls, mq_error *err) {
  mq_status st = MQ_OK;
  char obj[320];
  snprintf(ls->name, sizeof ls->name, "%s", name);
  snprintf(obj, sizeof obj, "/layers/%s", name);
  memset(&ls->res, 0, sizeof ls->res);
#define MISSING_F64 NAN
#define MISSING_I64 -1
#define SET_MISSING(field, kind, ...) ls->res.field = MISSING_##kind;
  MQ_LAYER_SCALARS(SET_MISSING)
#undef SET_MISSING
  mq_h5_obj g = {H5Gopen2(layers, name, H5P_DEFAULT), path, obj};
  if (g.id < 0) goto cleanup;
  int64_t rows = 0, cols = 0;
  int found = 0;
  MQ_CHECK(mq__h5_attr_i64(&g, "rows", &rows, &found, err));
  MQ_CHECK(mq__h5_attr_i64(&g, "cols", &cols, &found, err));
  if (rows < 0 || cols < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: negative rows or cols", path, obj);
  ls->rows = (size_t)rows;
  ls->res.cols = (size_t)cols;
  /* Each scalar through an int64 or a double, then into its field (an int64 that does not fit
   * an int field is refused). */
#define READ_F64(field) MQ_CHECK(mq__h5_attr_f64(&g, #field, &ls->res.field, &found, err));
#define READ_I64(field)                                                                     \
  do {                                                                                      \
    int64_t v_ = ls->res.field;                                                             \
    MQ_CHECK(mq__h5_attr_i64(&g, #field, &v_, &found, err));                                \
    ls->res.field = (__typeof__(ls->res.field))v_;                                          \
    if (ls->res.field != v_)                                                                \
      MQ_FAIL(err, MQ_EINPUT, "%s: %s attribute %s: %lld is out of range", path, obj, #field, \
              (long long)v_);                                                               \
  } while (0);
#define READ_SCALAR(field, kind, ...) READ_##kind(field)
  MQ_LAYER_SCALARS(READ_SCALAR)
#undef READ_SCALAR
#undef READ_I64
#undef READ_F64
#undef MISSING_F64
#undef MISSING_I64
cleanup:
  mq__h5_close(&g.id);
  return st;
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
  for (size_t i = 0; i < names.n; i++)
    MQ_CHECK(read_layer(path, layers, names.name[i], &sum->layers[i], err));
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

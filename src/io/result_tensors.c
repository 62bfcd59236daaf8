/* Tensors by Hugging Face name from a result file: dequantized /layers/<module> and the
 * /model/tensors of `quantize`. Serial HDF5 (default driver), one handle per rank. */
#include "io/result_tensors.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"

_Static_assert(MQ_RT_MAX_DIMS == MQ_H5_MAX_DIMS, "a tensor's dims come from mq__h5_dataset_open");

typedef struct rt_entry {
  char *name;    /* tensor name: "<module>.weight" or the /model/tensors link name */
  char *link;    /* link name under /layers (layers) or /model/tensors */
  int is_layer;
  char dtype[16]; /* model tensors: "F32" | "F16" | "BF16" */
  int ndim;
  size_t shape[MQ_RT_MAX_DIMS]; /* layers: [rows, cols] */
  size_t count;
  size_t ngroups, words; /* layers */
} rt_entry;

typedef struct rt_ctx {
  char *path;
  hid_t file;
  hid_t layers; /* the /layers group, or H5I_INVALID_HID when the file has none */
  mq_result_meta meta;
  char *config; /* /model/config text or NULL */
  int has_tensors;
  size_t n;
  rt_entry *e; /* [n], sorted by name */
} rt_ctx;

static char *dup_str(const char *s) {
  size_t len = strlen(s) + 1;
  char *d = mq_alloc(len, 1);
  if (d != NULL) memcpy(d, s, len);
  return d;
}

/* Checks the shapes of /layers/<link> (mq__h5_layer_check) and fills e. */
static mq_status scan_layer(rt_ctx *c, const char *link, rt_entry *e, mq_error *err) {
  mq_status st = MQ_OK;
  mq_layer_result shape;
  MQ_CHECK(mq__h5_layer_check(c->layers, c->path, link, c->meta.opts.bits, &shape, err));
  size_t nlen = strlen(link) + sizeof ".weight";
  e->name = mq_alloc(nlen, 1);
  e->link = dup_str(link);
  MQ_CHECK_ALLOC(err, e->name && e->link, nlen);
  snprintf(e->name, nlen, "%s.weight", link);
  e->is_layer = 1;
  e->ndim = 2;
  e->shape[0] = shape.rows;
  e->shape[1] = shape.cols;
  e->count = shape.rows * shape.cols;
  e->ngroups = shape.ngroups;
  e->words = shape.words;
cleanup:
  return st;
}

/* Checks /model/tensors/<link> and fills e. */
static mq_status scan_tensor(rt_ctx *c, hid_t tensors, const char *link, rt_entry *e,
                             mq_error *err) {
  mq_status st = MQ_OK;
  char where[320];
  snprintf(where, sizeof where, "/model/tensors/%s", link);
  const mq_h5_obj group = {tensors, c->path, "/model/tensors"};
  mq_h5_ds ds;
  MQ_CHECK(mq__h5_dataset_open(&group, link, H5T_FLOAT, -1, &ds, err));
  size_t count = 1;
  for (int d = 0; d < ds.ndim; d++) {
    if (ds.dims[d] != 0 && count > SIZE_MAX / 4 / ds.dims[d])
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: too large", c->path, where);
    count *= (size_t)ds.dims[d];
    e->shape[d] = (size_t)ds.dims[d];
  }
  const mq_h5_obj dataset = {ds.id, c->path, where};
  int found = 0;
  MQ_CHECK(mq__h5_attr_string_buf(&dataset, "dtype", e->dtype, sizeof e->dtype, &found, err));
  if (!found) snprintf(e->dtype, sizeof e->dtype, "%s", ds.type_size == 2 ? "F16" : "F32");
  else if (strcmp(e->dtype, "F32") != 0 && strcmp(e->dtype, "F16") != 0 &&
           strcmp(e->dtype, "BF16") != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: unknown dtype '%s' (F32, F16 or BF16)", c->path, where,
            e->dtype);
  e->name = dup_str(link);
  e->link = dup_str(link);
  MQ_CHECK_ALLOC(err, e->name && e->link, strlen(link) + 1);
  e->ndim = ds.ndim;
  e->count = count;
cleanup:
  mq__h5_close(&ds.id);
  return st;
}

/* /model/config as a dataset, or as a string attribute "config" of /model. */
static mq_status read_config(rt_ctx *c, hid_t model, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_h5_obj o = {model, c->path, "/model"};
  int found = 0;
  if (H5Lexists(model, "config", H5P_DEFAULT) > 0)
    MQ_CHECK(mq__h5_dataset_string(&o, "config", &c->config, err));
  else
    MQ_CHECK(mq__h5_attr_string(&o, "config", &c->config, &found, err));
cleanup:
  return st;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const rt_entry *)a)->name, ((const rt_entry *)b)->name);
}

static const rt_entry *lookup(const rt_ctx *c, const char *name) {
  rt_entry key = {.name = (char *)name};
  return c->n ? bsearch(&key, c->e, c->n, sizeof *c->e, cmp_entry) : NULL;
}

/* Lists /layers and /model/tensors into c->e. */
static mq_status scan(rt_ctx *c, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t model = H5I_INVALID_HID, tensors = H5I_INVALID_HID;
  mq_h5_names ln = {0}, tn = {0};
  if (H5Lexists(c->file, "layers", H5P_DEFAULT) > 0) {
    c->layers = H5Gopen2(c->file, "layers", H5P_DEFAULT);
    if (c->layers < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers is not a group", c->path);
    MQ_CHECK(mq__h5_list_names(c->layers, c->path, "/layers", &ln, err));
  }
  if (H5Lexists(c->file, "model", H5P_DEFAULT) > 0) {
    model = H5Gopen2(c->file, "model", H5P_DEFAULT);
    if (model < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /model is not a group", c->path);
    MQ_CHECK(read_config(c, model, err));
    if (H5Lexists(model, "tensors", H5P_DEFAULT) > 0) {
      tensors = H5Gopen2(model, "tensors", H5P_DEFAULT);
      if (tensors < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /model/tensors is not a group", c->path);
      MQ_CHECK(mq__h5_list_names(tensors, c->path, "/model/tensors", &tn, err));
      c->has_tensors = 1;
    }
  }
  size_t n = ln.n + tn.n;
  if (n == 0) goto cleanup;
  c->e = mq_calloc(n, sizeof *c->e);
  MQ_CHECK_ALLOC(err, c->e, n * sizeof *c->e);
  for (size_t i = 0; i < ln.n; i++, c->n++) MQ_CHECK(scan_layer(c, ln.name[i], &c->e[c->n], err));
  for (size_t i = 0; i < tn.n; i++, c->n++) MQ_CHECK(scan_tensor(c, tensors, tn.name[i], &c->e[c->n], err));
  qsort(c->e, c->n, sizeof *c->e, cmp_entry);
  for (size_t i = 1; i < c->n; i++)
    if (strcmp(c->e[i - 1].name, c->e[i].name) == 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: tensor %s is both a quantized layer and in /model/tensors",
              c->path, c->e[i].name);
cleanup:
  mq__h5_names_free(&ln);
  mq__h5_names_free(&tn);
  mq__h5_close(&tensors);
  mq__h5_close(&model);
  return st;
}

static void ctx_free(rt_ctx *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < c->n; i++) {
    mq_free(c->e[i].name);
    mq_free(c->e[i].link);
  }
  mq_free(c->e);
  mq_free(c->config);
  mq_free(c->path);
  mq__h5_close(&c->layers);
  mq__h5_close(&c->file);
  mq_free(c);
}

static int rt_find(void *ctx, const char *name, int *ndim, size_t shape[2]) {
  const rt_entry *e = lookup(ctx, name);
  if (e == NULL) return 0;
  if (ndim != NULL) *ndim = e->ndim;
  if (shape != NULL)
    for (int d = 0; d < e->ndim && d < 2; d++) shape[d] = e->shape[d];
  return 1;
}

static mq_status rt_read(void *ctx, const char *name, float *out, size_t count, mq_error *err) {
  mq_status st = MQ_OK;
  const rt_ctx *c = ctx;
  hid_t ds = H5I_INVALID_HID;
  mq_layer_result l = {0};
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  const rt_entry *e = lookup(c, name);
  if (e == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: missing tensor %s", c->path, name);
  if (count != e->count)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: has %zu elements, caller expects %zu", c->path, name,
            e->count, count);
  if (e->is_layer) {
    MQ_CHECK(mq__h5_layer_read(c->layers, c->path, e->link, c->meta.opts.bits, &l, err));
    MQ_CHECK(mq_layer_result_dequantize(&l, out, err));
    /* finite scales times codes can still overflow float32: no weight may be Inf */
    for (size_t k = 0; k < count; k++)
      if (!isfinite(out[k]))
        MQ_FAIL(err, MQ_ENUMERIC, "%s: /layers/%s: dequantized weight [%zu, %zu] is %g "
                "(scale times code overflows float32): numerical failure", c->path, e->link,
                k / e->shape[1], k % e->shape[1], (double)out[k]);
  } else {
    char where[320];
    snprintf(where, sizeof where, "model/tensors/%s", e->link);
    ds = H5Dopen2(c->file, where, H5P_DEFAULT);
    if (ds < 0 || (count > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0))
      MQ_FAIL(err, MQ_EINPUT, "%s: /%s: cannot read", c->path, where);
    for (size_t k = 0; k < count; k++)
      if (!isfinite(out[k]))
        MQ_FAIL(err, MQ_EINPUT, "%s: /%s: element %zu is %s", c->path, where, k,
                isnan(out[k]) ? "NaN" : "infinite");
  }
cleanup:
  mq_layer_result_free(&l);
  mq__h5_close(&ds);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_result_tensors_open(const char *path, mq_tensor_source *src, mq_error *err) {
  mq_status st = MQ_OK;
  rt_ctx *c = NULL;
  mq_result_summary sum = {0};
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  memset(src, 0, sizeof *src);
  /* format, format_version, root attributes, complete */
  MQ_CHECK(mq_h5_result_read_summary(path, &sum, err));
  if (!sum.complete)
    MQ_FAIL(err, MQ_EINPUT, "%s: incomplete result file (the run that wrote it did not finish)",
            path);
  c = mq_calloc(1, sizeof *c);
  MQ_CHECK_ALLOC(err, c, sizeof *c);
  c->file = c->layers = H5I_INVALID_HID;
  c->meta = sum.meta;
  c->path = dup_str(path);
  MQ_CHECK_ALLOC(err, c->path, strlen(path) + 1);
  MQ_CHECK(mq__h5_open_read(path, &c->file, err));
  const mq_h5_obj root = {c->file, path, "/"};
  int64_t bits = 0;
  int found = 0;
  MQ_CHECK(mq__h5_attr_i64(&root, "bits", &bits, &found, err));
  if (!found || bits < 2 || bits > 8)
    MQ_FAIL(err, MQ_EINPUT, "%s: root attribute bits missing or outside 2..8", path);
  c->meta.opts.bits = (int)bits;
  MQ_CHECK(scan(c, err));
  src->find = rt_find;
  src->read = rt_read;
  src->ctx = c;
  c = NULL;
cleanup:
  ctx_free(c);
  mq_result_summary_free(&sum);
  mq__h5_quiet_end(&quiet);
  return st;
}

void mq_result_tensors_close(mq_tensor_source *src) {
  if (src == NULL) return;
  if (src->find == rt_find) ctx_free(src->ctx);
  memset(src, 0, sizeof *src);
}

/* The context of one of our sources, or NULL. */
static const rt_ctx *ours(const mq_tensor_source *src) {
  return src != NULL && src->find == rt_find ? src->ctx : NULL;
}

const char *mq_result_tensors_config_json(const mq_tensor_source *src) {
  const rt_ctx *c = ours(src);
  return c != NULL ? c->config : NULL;
}

int mq_result_tensors_has_model_tensors(const mq_tensor_source *src) {
  const rt_ctx *c = ours(src);
  return c != NULL && c->has_tensors;
}

const mq_result_meta *mq_result_tensors_meta(const mq_tensor_source *src) {
  const rt_ctx *c = ours(src);
  return c != NULL ? &c->meta : NULL;
}

size_t mq_result_tensors_count(const mq_tensor_source *src) {
  const rt_ctx *c = ours(src);
  return c != NULL ? c->n : 0;
}

int mq_result_tensors_info(const mq_tensor_source *src, size_t i, mq_result_tensor_info *info) {
  const rt_ctx *c = ours(src);
  if (c == NULL || i >= c->n) return 0;
  const rt_entry *e = &c->e[i];
  memset(info, 0, sizeof *info);
  info->name = e->name;
  info->module = e->is_layer ? e->link : NULL;
  info->dtype = e->is_layer ? NULL : e->dtype;
  info->ndim = e->ndim;
  for (int d = 0; d < e->ndim; d++) info->shape[d] = e->shape[d];
  info->count = e->count;
  info->ngroups = e->ngroups;
  return 1;
}

mq_status mq_result_tensors_read_layer(const mq_tensor_source *src, const char *module,
                                       mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  const rt_ctx *c = ours(src);
  const rt_entry *e = NULL;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  if (c == NULL) MQ_FAIL(err, MQ_EFAIL, "not a result-file tensor source (internal error)");
  for (size_t i = 0; i < c->n && e == NULL; i++)
    if (c->e[i].is_layer && strcmp(c->e[i].link, module) == 0) e = &c->e[i];
  if (e == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: missing layer /layers/%s", c->path, module);
  MQ_CHECK(mq__h5_layer_read(c->layers, c->path, e->link, c->meta.opts.bits, res, err));
cleanup:
  mq__h5_quiet_end(&quiet);
  return st;
}

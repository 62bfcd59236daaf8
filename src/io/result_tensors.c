/* Tensors by Hugging Face name from a result file: dequantized /layers/<module> and the
 * /model/tensors of `quantize`. Serial HDF5 (default driver), one handle per rank. */
#include "io/result_tensors.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/pack.h"
#include "core/status.h"
#include "io/h5common.h"

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

/* Scalar integer attribute; 1 when present and read. */
static int attr_int(hid_t loc, const char *name, int64_t *v) {
  if (H5Aexists(loc, name) <= 0) return 0;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT), sp = H5I_INVALID_HID, ty = H5I_INVALID_HID;
  int ok = 0;
  if (a >= 0) {
    sp = H5Aget_space(a);
    ty = H5Aget_type(a);
  }
  if (sp >= 0 && ty >= 0 && H5Sget_simple_extent_npoints(sp) == 1 &&
      (H5Tget_class(ty) == H5T_INTEGER || H5Tget_class(ty) == H5T_FLOAT))
    ok = H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
  mq__h5_close(&ty);
  mq__h5_close(&sp);
  mq__h5_close(&a);
  return ok;
}

/* A scalar (or one-element) string read from a dataset or attribute `obj` of type `ty`, as a
 * NUL-terminated mq_alloc'd copy. NULL on failure. */
static char *read_string(hid_t obj, hid_t ty, int is_attr) {
  char *out = NULL;
  if (H5Tis_variable_str(ty) > 0) {
    char *s = NULL;
    herr_t rc = is_attr ? H5Aread(obj, ty, &s) : H5Dread(obj, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s);
    if (rc >= 0 && s != NULL) out = dup_str(s);
    if (s != NULL) H5free_memory(s);
    return out;
  }
  size_t n = H5Tget_size(ty);
  if (n == 0 || n == SIZE_MAX) return NULL;
  out = mq_calloc(n + 1, 1);
  if (out == NULL) return NULL;
  herr_t rc = is_attr ? H5Aread(obj, ty, out) : H5Dread(obj, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  if (rc < 0) {
    mq_free(out);
    return NULL;
  }
  return out;
}

/* String attribute into buf; 1 when present and a string. */
static int attr_str(hid_t loc, const char *name, char *buf, size_t size) {
  buf[0] = '\0';
  if (H5Aexists(loc, name) <= 0) return 0;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT), ty = H5I_INVALID_HID;
  char *s = NULL;
  if (a >= 0) ty = H5Aget_type(a);
  if (ty >= 0 && H5Tget_class(ty) == H5T_STRING) s = read_string(a, ty, 1);
  if (s != NULL) snprintf(buf, size, "%s", s);
  mq_free(s);
  mq__h5_close(&ty);
  mq__h5_close(&a);
  return s != NULL;
}

/* Opens dataset `dname` of loc, checks its class and rank (ndim_want < 0: 0..MQ_RT_MAX_DIMS),
 * returns its dims. */
static mq_status open_ds(hid_t loc, const char *dname, H5T_class_t cls, int ndim_want,
                         const char *path, const char *where, hid_t *ds, int *ndim, hsize_t *dims,
                         mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ty = H5I_INVALID_HID, sp = H5I_INVALID_HID;
  *ds = H5I_INVALID_HID;
  if (H5Lexists(loc, dname, H5P_DEFAULT) <= 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: missing dataset %s", path, where, dname);
  *ds = H5Dopen2(loc, dname, H5P_DEFAULT);
  if (*ds < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s is not a dataset", path, where, dname);
  ty = H5Dget_type(*ds);
  sp = H5Dget_space(*ds);
  if (ty < 0 || sp < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s: unreadable", path, where, dname);
  if (H5Tget_class(ty) != cls)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s is not %s", path, where, dname,
            cls == H5T_FLOAT ? "floating-point" : "integer");
  int nd = H5Sget_simple_extent_ndims(sp);
  if (nd < 0 || nd > MQ_RT_MAX_DIMS || (ndim_want >= 0 && nd != ndim_want))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s has %d dimensions, expected %d", path, where, dname, nd,
            ndim_want >= 0 ? ndim_want : MQ_RT_MAX_DIMS);
  if (nd > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s: unreadable shape", path, where, dname);
  *ndim = nd;
cleanup:
  mq__h5_close(&ty);
  mq__h5_close(&sp);
  if (st != MQ_OK) mq__h5_close(ds);
  return st;
}

/* Checks the shapes of /layers/<link> and fills e. */
static mq_status scan_layer(rt_ctx *c, hid_t layers, const char *link, rt_entry *e,
                            mq_error *err) {
  mq_status st = MQ_OK;
  hid_t g = H5I_INVALID_HID, ds = H5I_INVALID_HID;
  char where[320];
  snprintf(where, sizeof where, "/layers/%s", link);
  hsize_t qd[MQ_RT_MAX_DIMS], sd[MQ_RT_MAX_DIMS], zd[MQ_RT_MAX_DIMS], gd[MQ_RT_MAX_DIMS];
  int nd = 0;
  g = H5Gopen2(layers, link, H5P_DEFAULT);
  if (g < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a group", c->path, where);
  MQ_CHECK(open_ds(g, "qweight", H5T_INTEGER, 2, c->path, where, &ds, &nd, qd, err));
  mq__h5_close(&ds);
  MQ_CHECK(open_ds(g, "scales", H5T_FLOAT, 2, c->path, where, &ds, &nd, sd, err));
  mq__h5_close(&ds);
  MQ_CHECK(open_ds(g, "zeros", H5T_INTEGER, 2, c->path, where, &ds, &nd, zd, err));
  mq__h5_close(&ds);
  MQ_CHECK(open_ds(g, "g_idx", H5T_INTEGER, 1, c->path, where, &ds, &nd, gd, err));
  mq__h5_close(&ds);
  hsize_t rows = qd[0], cols = gd[0], ng = sd[1];
  int64_t v;
  if (attr_int(g, "rows", &v) && (v < 0 || (hsize_t)v != rows))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: attribute rows=%lld but qweight has %llu rows", c->path,
            where, (long long)v, (unsigned long long)rows);
  if (attr_int(g, "cols", &v) && (v < 0 || (hsize_t)v != cols))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: attribute cols=%lld but g_idx has %llu entries", c->path,
            where, (long long)v, (unsigned long long)cols);
  if (rows == 0 || cols == 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: empty layer", c->path, where);
  if (rows > SIZE_MAX / 4 / cols)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %llux%llu is too large", c->path, where,
            (unsigned long long)rows, (unsigned long long)cols);
  size_t words = mq_packed_words((size_t)cols, c->meta.opts.bits);
  if (qd[1] != words)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: qweight has %llu words per row, %llu columns of %d bits "
            "need %zu", c->path, where, (unsigned long long)qd[1], (unsigned long long)cols,
            c->meta.opts.bits, words);
  if (ng == 0 || ng > cols)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: scales has %llu groups for %llu columns", c->path, where,
            (unsigned long long)ng, (unsigned long long)cols);
  if (sd[0] != rows || zd[0] != rows || zd[1] != ng)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: scales [%llu, %llu] and zeros [%llu, %llu] must both be "
            "[rows=%llu, groups]", c->path, where, (unsigned long long)sd[0],
            (unsigned long long)sd[1], (unsigned long long)zd[0], (unsigned long long)zd[1],
            (unsigned long long)rows);
  size_t nlen = strlen(link) + sizeof ".weight";
  e->name = mq_alloc(nlen, 1);
  e->link = dup_str(link);
  MQ_CHECK_ALLOC(err, e->name && e->link, nlen);
  snprintf(e->name, nlen, "%s.weight", link);
  e->is_layer = 1;
  e->ndim = 2;
  e->shape[0] = (size_t)rows;
  e->shape[1] = (size_t)cols;
  e->count = (size_t)rows * (size_t)cols;
  e->ngroups = (size_t)ng;
  e->words = words;
cleanup:
  mq__h5_close(&ds);
  mq__h5_close(&g);
  return st;
}

/* Checks /model/tensors/<link> and fills e. */
static mq_status scan_tensor(rt_ctx *c, hid_t tensors, const char *link, rt_entry *e,
                             mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID, ty = H5I_INVALID_HID;
  char where[320];
  snprintf(where, sizeof where, "/model/tensors/%s", link);
  hsize_t dims[MQ_RT_MAX_DIMS];
  int nd = 0;
  MQ_CHECK(open_ds(tensors, link, H5T_FLOAT, -1, c->path, "/model/tensors", &ds, &nd, dims, err));
  size_t count = 1;
  for (int d = 0; d < nd; d++) {
    if (dims[d] != 0 && count > SIZE_MAX / 4 / dims[d])
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: too large", c->path, where);
    count *= (size_t)dims[d];
    e->shape[d] = (size_t)dims[d];
  }
  char dt[16];
  if (attr_str(ds, "dtype", dt, sizeof dt)) {
    if (strcmp(dt, "F32") != 0 && strcmp(dt, "F16") != 0 && strcmp(dt, "BF16") != 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: unknown dtype '%s' (F32, F16 or BF16)", c->path, where, dt);
  } else {
    ty = H5Dget_type(ds);
    snprintf(dt, sizeof dt, "%s", ty >= 0 && H5Tget_size(ty) == 2 ? "F16" : "F32");
  }
  snprintf(e->dtype, sizeof e->dtype, "%s", dt);
  e->name = dup_str(link);
  e->link = dup_str(link);
  MQ_CHECK_ALLOC(err, e->name && e->link, strlen(link) + 1);
  e->ndim = nd;
  e->count = count;
cleanup:
  mq__h5_close(&ty);
  mq__h5_close(&ds);
  return st;
}

/* /model/config as a dataset, or as a string attribute "config" of /model. */
static mq_status read_config(rt_ctx *c, hid_t model, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID, ty = H5I_INVALID_HID;
  if (H5Lexists(model, "config", H5P_DEFAULT) > 0) {
    ds = H5Dopen2(model, "config", H5P_DEFAULT);
    if (ds >= 0) ty = H5Dget_type(ds);
    if (ty < 0 || H5Tget_class(ty) != H5T_STRING)
      MQ_FAIL(err, MQ_EINPUT, "%s: /model/config is not a string dataset", c->path);
    c->config = read_string(ds, ty, 0);
    if (c->config == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: /model/config: unreadable", c->path);
  } else if (H5Aexists(model, "config") > 0) {
    ds = H5Aopen(model, "config", H5P_DEFAULT);
    if (ds >= 0) ty = H5Aget_type(ds);
    if (ty < 0 || H5Tget_class(ty) != H5T_STRING)
      MQ_FAIL(err, MQ_EINPUT, "%s: /model attribute config is not a string", c->path);
    c->config = read_string(ds, ty, 1);
    if (c->config == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: /model attribute config: unreadable", c->path);
  }
cleanup:
  mq__h5_close(&ty);
  mq__h5_close(&ds);
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
  hid_t layers = H5I_INVALID_HID, model = H5I_INVALID_HID, tensors = H5I_INVALID_HID;
  mq_h5_names ln = {0}, tn = {0};
  if (H5Lexists(c->file, "layers", H5P_DEFAULT) > 0) {
    layers = H5Gopen2(c->file, "layers", H5P_DEFAULT);
    if (layers < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers is not a group", c->path);
    MQ_CHECK(mq__h5_list_names(layers, c->path, "/layers", &ln, err));
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
  for (size_t i = 0; i < ln.n; i++, c->n++) MQ_CHECK(scan_layer(c, layers, ln.name[i], &c->e[c->n], err));
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
  mq__h5_close(&layers);
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
  mq__h5_close(&c->file);
  mq_free(c);
}

/* Reads dataset `dname` of /layers/<link> converted to mem_type into buf. */
static mq_status read_ds(const rt_ctx *c, hid_t g, const rt_entry *e, const char *dname,
                         hid_t mem_type, void *buf, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5Dopen2(g, dname, H5P_DEFAULT);
  if (ds < 0 || H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: cannot read %s", c->path, e->link, dname);
cleanup:
  mq__h5_close(&ds);
  return st;
}

static mq_status read_layer(const rt_ctx *c, const rt_entry *e, mq_layer_result *res,
                            mq_error *err) {
  mq_status st = MQ_OK;
  hid_t g = H5I_INVALID_HID;
  size_t rows = e->shape[0], cols = e->shape[1], ng = e->ngroups;
  memset(res, 0, sizeof *res);
  res->rows = rows;
  res->cols = cols;
  res->ngroups = ng;
  res->words = e->words;
  res->bits = c->meta.opts.bits;
  res->qweight = mq_alloc(rows * e->words, sizeof *res->qweight);
  res->scales = mq_alloc(rows * ng, sizeof *res->scales);
  res->zeros = mq_alloc(rows * ng, sizeof *res->zeros);
  res->g_idx = mq_alloc(cols, sizeof *res->g_idx);
  MQ_CHECK_ALLOC(err, res->qweight && res->scales && res->zeros && res->g_idx,
                 rows * e->words * sizeof *res->qweight);
  g = H5Gopen2(c->file, "layers", H5P_DEFAULT);
  hid_t lg = g >= 0 ? H5Gopen2(g, e->link, H5P_DEFAULT) : H5I_INVALID_HID;
  mq__h5_close(&g);
  g = lg;
  if (g < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: cannot open", c->path, e->link);
  MQ_CHECK(read_ds(c, g, e, "qweight", H5T_NATIVE_UINT32, res->qweight, err));
  MQ_CHECK(read_ds(c, g, e, "scales", H5T_NATIVE_FLOAT, res->scales, err));
  MQ_CHECK(read_ds(c, g, e, "zeros", H5T_NATIVE_INT32, res->zeros, err));
  MQ_CHECK(read_ds(c, g, e, "g_idx", H5T_NATIVE_INT32, res->g_idx, err));
  for (size_t j = 0; j < cols; j++)
    if (res->g_idx[j] < 0 || (size_t)res->g_idx[j] >= ng)
      MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: g_idx[%zu] = %d is outside [0, %zu)", c->path,
              e->link, j, (int)res->g_idx[j], ng);
  for (size_t k = 0; k < rows * ng; k++)
    if (!isfinite(res->scales[k]))
      MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: scale [%zu, %zu] is not finite", c->path,
              e->link, k / ng, k % ng);
cleanup:
  mq__h5_close(&g);
  if (st != MQ_OK) mq_layer_result_free(res);
  return st;
}

/* out[rows·cols] = scales[r,g]·(code − zeros[r,g]) in float32. */
static mq_status dequantize(const mq_layer_result *l, float *out, mq_error *err) {
  mq_status st = MQ_OK;
  uint8_t *codes = mq_alloc(l->cols, 1);
  MQ_CHECK_ALLOC(err, codes, l->cols);
  for (size_t r = 0; r < l->rows; r++) {
    mq_unpack_row(l->qweight + r * l->words, l->cols, l->bits, codes);
    const float *s = l->scales + r * l->ngroups;
    const int32_t *z = l->zeros + r * l->ngroups;
    float *o = out + r * l->cols;
    for (size_t j = 0; j < l->cols; j++) {
      int32_t g = l->g_idx[j];
      o[j] = s[g] * (float)((int64_t)codes[j] - (int64_t)z[g]);
    }
  }
cleanup:
  mq_free(codes);
  return st;
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
    MQ_CHECK(read_layer(c, e, &l, err));
    MQ_CHECK(dequantize(&l, out, err));
  } else {
    char where[320];
    snprintf(where, sizeof where, "model/tensors/%s", e->link);
    ds = H5Dopen2(c->file, where, H5P_DEFAULT);
    if (ds < 0 || (count > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0))
      MQ_FAIL(err, MQ_EINPUT, "%s: /%s: cannot read", c->path, where);
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
  c->file = H5I_INVALID_HID;
  c->meta = sum.meta;
  c->path = dup_str(path);
  MQ_CHECK_ALLOC(err, c->path, strlen(path) + 1);
  MQ_CHECK(mq__h5_open_read(path, &c->file, err));
  int64_t bits = 0;
  if (!attr_int(c->file, "bits", &bits) || bits < 2 || bits > 8)
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
  MQ_CHECK(read_layer(c, e, res, err));
cleanup:
  mq__h5_quiet_end(&quiet);
  return st;
}

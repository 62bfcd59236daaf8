#include "io/h5common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/paths.h"

void mq__h5_quiet_begin(mq_h5_quiet *q) {
  q->func = NULL;
  q->data = NULL;
  (void)H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
  (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void mq__h5_quiet_end(const mq_h5_quiet *q) {
  (void)H5Eclear2(H5E_DEFAULT); /* our failure was reported; don't leave a stale stack */
  (void)H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

mq_status mq__h5_open_read(const char *path, hid_t *file, mq_error *err) {
  mq_status st = MQ_OK;
  *file = H5I_INVALID_HID;
  /* stat() and access() first: HDF5's own failure does not say "no such file" vs "not HDF5",
   * and HDF5 would block opening a FIFO. */
  MQ_CHECK(mq_path_check_regular(path, err));
  if (access(path, R_OK) != 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  if (H5Fis_hdf5(path) <= 0) MQ_FAIL(err, MQ_EINPUT, "%s: not an HDF5 file", path);
  *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (*file < 0) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open HDF5 file", path);
cleanup:
  return st;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Name length of link idx in HDF5's name index, or -1. */
static ssize_t link_name(hid_t group, size_t idx, char *buf, size_t size) {
  return H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)idx, buf, size,
                            H5P_DEFAULT);
}

mq_status mq__h5_list_names(hid_t group, const char *path, const char *where, mq_h5_names *out,
                            mq_error *err) {
  mq_status st = MQ_OK;
  memset(out, 0, sizeof *out);
  H5G_info_t gi;
  if (H5Gget_info(group, &gi) < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot list links", path, where);
  if (gi.nlinks == 0) goto cleanup;
  size_t n = (size_t)gi.nlinks, total = 0;
  for (size_t i = 0; i < n; i++) { /* pass 1: sizes, so all names share one block */
    ssize_t len = link_name(group, i, NULL, 0);
    if (len < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot list links", path, where);
    total += (size_t)len + 1;
  }
  out->name = mq_alloc(n, sizeof *out->name);
  MQ_CHECK_ALLOC(err, out->name, n * sizeof *out->name);
  out->buf = mq_alloc(total, 1);
  MQ_CHECK_ALLOC(err, out->buf, total);
  for (size_t i = 0, off = 0; i < n; i++) { /* pass 2: the names */
    ssize_t len = link_name(group, i, out->buf + off, total - off);
    if (len < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot list links", path, where);
    out->name[i] = out->buf + off;
    off += (size_t)len + 1;
  }
  out->n = n;
  /* Sort ourselves: HDF5's name index order is an implementation detail, strcmp is the spec. */
  qsort(out->name, n, sizeof *out->name, cmp_names);
cleanup:
  if (st != MQ_OK) mq__h5_names_free(out);
  return st;
}

void mq__h5_names_free(mq_h5_names *nm) {
  mq_free(nm->name);
  mq_free(nm->buf);
  memset(nm, 0, sizeof *nm);
}

hid_t mq__h5_dataset_create(hid_t loc, const char *name, hid_t type, hid_t space) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), ds = H5I_INVALID_HID;
  if (dcpl >= 0 && H5Pset_layout(dcpl, H5D_CONTIGUOUS) >= 0 &&
      H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0)
    ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  mq__h5_close(&dcpl);
  return ds;
}

void mq__h5_close(hid_t *id) {
  if (*id < 0) return;
  switch (H5Iget_type(*id)) {
    case H5I_FILE: (void)H5Fclose(*id); break;
    case H5I_GROUP: (void)H5Gclose(*id); break;
    case H5I_DATASET: (void)H5Dclose(*id); break;
    case H5I_DATASPACE: (void)H5Sclose(*id); break;
    case H5I_DATATYPE: (void)H5Tclose(*id); break;
    case H5I_ATTR: (void)H5Aclose(*id); break;
    case H5I_GENPROP_LST: (void)H5Pclose(*id); break;
    default: (void)H5Idec_ref(*id); break;
  }
  *id = H5I_INVALID_HID;
}

const char *const mq__h5_lambda_mode_names[3] = {"damp", "absolute", "auto"};

/* ==== checked readers ==== */

/* What messages call attribute `name` of o: "attribute <name>" on the root, else
 * "<obj> attribute <name>". */
static void attr_label(const mq_h5_obj *o, const char *name, char *buf, size_t size) {
  if (strcmp(o->obj, "/") == 0) snprintf(buf, size, "attribute %s", name);
  else snprintf(buf, size, "%s attribute %s", o->obj, name);
}

/* What messages call dataset `name` of o: "<obj>/<name>". */
static void dataset_label(const mq_h5_obj *o, const char *name, char *buf, size_t size) {
  size_t len = strlen(o->obj);
  snprintf(buf, size, "%s%s%s", o->obj, len > 0 && o->obj[len - 1] == '/' ? "" : "/", name);
}

/* The element count of a single value: a scalar dataspace, or a 1-D one of one element. */
static mq_status check_single(const char *path, const char *label, hid_t space, mq_error *err) {
  mq_status st = MQ_OK;
  H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls == H5S_SCALAR) goto cleanup;
  if (cls != H5S_SIMPLE) MQ_FAIL(err, MQ_EINPUT, "%s: %s: holds no value", path, label);
  int ndims = H5Sget_simple_extent_ndims(space);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  if (ndims != 1 || n != 1)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: an array of %lld element(s) in %d dimension(s), expected a "
            "single value", path, label, (long long)n, ndims);
cleanup:
  return st;
}

/* Opens attribute `name` of o into *attr; missing: *found = 0 (found != NULL) or MQ_EINPUT. */
static mq_status attr_open(const mq_h5_obj *o, const char *name, const char *label, hid_t *attr,
                           int *found, mq_error *err) {
  mq_status st = MQ_OK;
  *attr = H5I_INVALID_HID;
  if (found != NULL) *found = 0;
  htri_t exists = H5Aexists(o->id, name);
  if (exists < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot be read", o->path, label);
  if (exists == 0) {
    if (found == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: %s: missing", o->path, label);
    goto cleanup;
  }
  *attr = H5Aopen(o->id, name, H5P_DEFAULT);
  if (*attr < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot be opened", o->path, label);
  if (found != NULL) *found = 1;
cleanup:
  return st;
}

mq_status mq__h5_attr_num(const mq_h5_obj *o, const char *name, hid_t mem_type, void *v,
                          int *found, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  char label[512];
  attr_label(o, name, label, sizeof label);
  MQ_CHECK(attr_open(o, name, label, &attr, found, err));
  if (attr < 0) goto cleanup; /* not found */
  type = H5Aget_type(attr);
  space = H5Aget_space(attr);
  if (type < 0 || space < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot be read", o->path, label);
  int want_int = H5Tget_class(mem_type) == H5T_INTEGER;
  H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER && (want_int || cls != H5T_FLOAT))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: not %s", o->path, label, want_int ? "an integer" : "a number");
  MQ_CHECK(check_single(o->path, label, space, err));
  if (H5Aread(attr, mem_type, v) < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot be read", o->path, label);
cleanup:
  mq__h5_close(&space);
  mq__h5_close(&type);
  mq__h5_close(&attr);
  return st;
}

/* The one string of attribute (is_attr) or dataset id, fixed or variable length, into *out. */
static mq_status read_string(hid_t id, int is_attr, const char *path, const char *label,
                             char **out, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t type = is_attr ? H5Aget_type(id) : H5Dget_type(id);
  hid_t space = is_attr ? H5Aget_space(id) : H5Dget_space(id);
  char *vs = NULL; /* a variable-length string, allocated by HDF5 */
  *out = NULL;
  if (type < 0 || space < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot be read", path, label);
  if (H5Tget_class(type) != H5T_STRING)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a string", path, label);
  MQ_CHECK(check_single(path, label, space, err));
  htri_t var = H5Tis_variable_str(type);
  /* The file type is the memory type: HDF5 does not convert between ASCII and UTF-8. */
  void *buf = &vs;
  size_t n = 0;
  if (var == 0) {
    n = H5Tget_size(type); /* bytes of the fixed-length string, not NUL-terminated */
    if (n == 0 || n == SIZE_MAX) MQ_FAIL(err, MQ_EINPUT, "%s: %s: bad string size", path, label);
    *out = mq_calloc(n + 1, 1);
    MQ_CHECK_ALLOC(err, *out, n + 1);
    buf = *out;
  }
  herr_t rc = var < 0 ? -1
              : is_attr ? H5Aread(id, type, buf)
                        : H5Dread(id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  if (rc < 0 || (var > 0 && vs == NULL))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot be read", path, label);
  if (var > 0) {
    n = strlen(vs) + 1;
    *out = mq_alloc(n, 1);
    MQ_CHECK_ALLOC(err, *out, n);
    memcpy(*out, vs, n);
  }
cleanup:
  if (vs != NULL) H5free_memory(vs);
  if (st != MQ_OK) {
    mq_free(*out);
    *out = NULL;
  }
  mq__h5_close(&space);
  mq__h5_close(&type);
  return st;
}

mq_status mq__h5_attr_string(const mq_h5_obj *o, const char *name, char **out, int *found,
                             mq_error *err) {
  mq_status st = MQ_OK;
  hid_t attr = H5I_INVALID_HID;
  char label[512];
  *out = NULL;
  attr_label(o, name, label, sizeof label);
  MQ_CHECK(attr_open(o, name, label, &attr, found, err));
  if (attr >= 0) MQ_CHECK(read_string(attr, 1, o->path, label, out, err));
cleanup:
  mq__h5_close(&attr);
  return st;
}

mq_status mq__h5_attr_string_buf(const mq_h5_obj *o, const char *name, char *buf, size_t size,
                                 int *found, mq_error *err) {
  mq_status st = MQ_OK;
  char *s = NULL;
  buf[0] = '\0';
  MQ_CHECK(mq__h5_attr_string(o, name, &s, found, err));
  if (s == NULL) goto cleanup;
  if (strlen(s) >= size) {
    char label[512];
    attr_label(o, name, label, sizeof label);
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: longer than %zu bytes", o->path, label, size - 1);
  }
  memcpy(buf, s, strlen(s) + 1);
cleanup:
  mq_free(s);
  return st;
}

static const char *class_name(H5T_class_t cls) {
  switch (cls) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "floating-point";
    case H5T_STRING: return "a string";
    default: return "of the expected type";
  }
}

mq_status mq__h5_dataset_open(const mq_h5_obj *o, const char *name, H5T_class_t cls, int ndim,
                              mq_h5_ds *ds, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
  memset(ds, 0, sizeof *ds);
  ds->id = H5I_INVALID_HID;
  if (H5Lexists(o->id, name, H5P_DEFAULT) <= 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: missing dataset %s", o->path, o->obj, name);
  ds->id = H5Dopen2(o->id, name, H5P_DEFAULT);
  if (ds->id < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s is not a dataset", o->path, o->obj, name);
  type = H5Dget_type(ds->id);
  space = H5Dget_space(ds->id);
  if (type < 0 || space < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s: unreadable", o->path, o->obj, name);
  if (H5Tget_class(type) != cls)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s is not %s", o->path, o->obj, name, class_name(cls));
  ds->type_size = H5Tget_size(type);
  ds->is_signed = cls == H5T_INTEGER && H5Tget_sign(type) != H5T_SGN_NONE;
  H5S_class_t scls = H5Sget_simple_extent_type(space);
  if (scls != H5S_SCALAR && scls != H5S_SIMPLE)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s holds no data", o->path, o->obj, name);
  int nd = H5Sget_simple_extent_ndims(space);
  if (nd < 0 || nd > MQ_H5_MAX_DIMS || (ndim >= 0 && nd != ndim))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s has %d dimensions, expected %d", o->path, o->obj, name,
            nd, ndim >= 0 ? ndim : MQ_H5_MAX_DIMS);
  if (nd > 0 && H5Sget_simple_extent_dims(space, ds->dims, NULL) < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %s: unreadable shape", o->path, o->obj, name);
  ds->ndim = nd;
cleanup:
  mq__h5_close(&type);
  mq__h5_close(&space);
  if (st != MQ_OK) mq__h5_close(&ds->id);
  return st;
}

mq_status mq__h5_dataset_string(const mq_h5_obj *o, const char *name, char **out,
                                mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_ds ds;
  char label[512];
  *out = NULL;
  dataset_label(o, name, label, sizeof label);
  MQ_CHECK(mq__h5_dataset_open(o, name, H5T_STRING, -1, &ds, err));
  MQ_CHECK(read_string(ds.id, 0, o->path, label, out, err));
cleanup:
  mq__h5_close(&ds.id);
  return st;
}

/* ---- packed layers ---- */

enum { L_QWEIGHT, L_SCALES, L_ZEROS, L_GIDX, L_COUNT };

static const struct {
  const char *name;
  H5T_class_t cls;
  int ndim;
} layer_ds[L_COUNT] = {
    {"qweight", H5T_INTEGER, 2},
    {"scales", H5T_FLOAT, 2},
    {"zeros", H5T_INTEGER, 2},
    {"g_idx", H5T_INTEGER, 1},
};

/* A layer group and its four datasets, open and checked. */
typedef struct packed_layer {
  char obj[320];
  mq_h5_obj g;
  mq_h5_ds ds[L_COUNT];
} packed_layer;

static void packed_close(packed_layer *p) {
  for (int i = 0; i < L_COUNT; i++) mq__h5_close(&p->ds[i].id);
  mq__h5_close(&p->g.id);
}

/* The attribute rows or cols, when present: a scalar integer equal to the datasets' `want`. */
static mq_status size_attr(const mq_h5_obj *g, const char *name, hsize_t want, const char *ds,
                           const char *unit, mq_error *err) {
  mq_status st = MQ_OK;
  int64_t v = 0;
  int found = 0;
  MQ_CHECK(mq__h5_attr_i64(g, name, &v, &found, err));
  if (found && (v < 0 || (hsize_t)v != want))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: attribute %s=%lld but %s has %llu %s", g->path, g->obj,
            name, (long long)v, ds, (unsigned long long)want, unit);
cleanup:
  return st;
}

static mq_status packed_open(hid_t layers, const char *path, const char *name, int bits,
                             packed_layer *p, mq_layer_result *shape, mq_error *err) {
  mq_status st = MQ_OK;
  memset(shape, 0, sizeof *shape);
  for (int i = 0; i < L_COUNT; i++) p->ds[i].id = H5I_INVALID_HID;
  snprintf(p->obj, sizeof p->obj, "/layers/%s", name);
  p->g = (mq_h5_obj){H5I_INVALID_HID, path, p->obj};
  if (bits < 2 || bits > 8)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: %s: %d bits", path, p->obj, bits);
  p->g.id = H5Gopen2(layers, name, H5P_DEFAULT);
  if (p->g.id < 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a group", path, p->obj);
  for (int i = 0; i < L_COUNT; i++)
    MQ_CHECK(mq__h5_dataset_open(&p->g, layer_ds[i].name, layer_ds[i].cls, layer_ds[i].ndim,
                                 &p->ds[i], err));
  const hsize_t *qd = p->ds[L_QWEIGHT].dims, *sd = p->ds[L_SCALES].dims;
  const hsize_t *zd = p->ds[L_ZEROS].dims;
  hsize_t rows = qd[0], cols = p->ds[L_GIDX].dims[0], ng = sd[1];
  if (p->ds[L_QWEIGHT].type_size != 4)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: qweight has %zu-byte elements, expected 32-bit words", path,
            p->obj, p->ds[L_QWEIGHT].type_size);
  MQ_CHECK(size_attr(&p->g, "rows", rows, "qweight", "rows", err));
  MQ_CHECK(size_attr(&p->g, "cols", cols, "g_idx", "entries", err));
  if (rows == 0 || cols == 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: empty layer", path, p->obj);
  if (rows > SIZE_MAX / 4 / cols)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: %llux%llu is too large", path, p->obj,
            (unsigned long long)rows, (unsigned long long)cols);
  size_t words = mq_packed_words((size_t)cols, bits);
  if (qd[1] != words)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: qweight has %llu words per row, %llu columns of %d bits "
            "need %zu", path, p->obj, (unsigned long long)qd[1], (unsigned long long)cols, bits,
            words);
  if (ng == 0 || ng > cols)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: scales has %llu groups for %llu columns", path, p->obj,
            (unsigned long long)ng, (unsigned long long)cols);
  if (sd[0] != rows || zd[0] != rows || zd[1] != ng)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: scales [%llu, %llu] and zeros [%llu, %llu] must both be "
            "[rows=%llu, groups]", path, p->obj, (unsigned long long)sd[0],
            (unsigned long long)sd[1], (unsigned long long)zd[0], (unsigned long long)zd[1],
            (unsigned long long)rows);
  shape->rows = (size_t)rows;
  shape->cols = (size_t)cols;
  shape->ngroups = (size_t)ng;
  shape->words = words;
  shape->bits = bits;
cleanup:
  if (st != MQ_OK) packed_close(p);
  return st;
}

mq_status mq__h5_layer_check(hid_t layers, const char *path, const char *name, int bits,
                             mq_layer_result *shape, mq_error *err) {
  packed_layer p;
  mq_status st = packed_open(layers, path, name, bits, &p, shape, err);
  if (st == MQ_OK) packed_close(&p);
  return st;
}

/* The values the dequantization trusts: g_idx indexes a group, scales are finite and zeros are
 * codes of the grid. */
static mq_status check_values(const packed_layer *p, const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  size_t ng = res->ngroups, n = res->rows * ng;
  int32_t maxq = (int32_t)((1u << res->bits) - 1u);
  for (size_t j = 0; j < res->cols; j++)
    if (res->g_idx[j] < 0 || (size_t)res->g_idx[j] >= ng)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: g_idx[%zu] = %d is outside [0, %zu)", p->g.path, p->obj, j,
              (int)res->g_idx[j], ng);
  for (size_t k = 0; k < n; k++)
    if (!isfinite(res->scales[k]))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: scale [%zu, %zu] is not finite", p->g.path, p->obj,
              k / ng, k % ng);
  for (size_t k = 0; k < n; k++)
    if (res->zeros[k] < 0 || res->zeros[k] > maxq)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: zero point [%zu, %zu] = %d is outside [0, %d]", p->g.path,
              p->obj, k / ng, k % ng, (int)res->zeros[k], (int)maxq);
cleanup:
  return st;
}

mq_status mq__h5_layer_read(hid_t layers, const char *path, const char *name, int bits,
                            mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  packed_layer p;
  MQ_CHECK(packed_open(layers, path, name, bits, &p, res, err));
  res->qweight = mq_alloc(res->rows * res->words, sizeof *res->qweight);
  res->scales = mq_alloc(res->rows * res->ngroups, sizeof *res->scales);
  res->zeros = mq_alloc(res->rows * res->ngroups, sizeof *res->zeros);
  res->g_idx = mq_alloc(res->cols, sizeof *res->g_idx);
  MQ_CHECK_ALLOC(err, res->qweight && res->scales && res->zeros && res->g_idx,
                 res->rows * res->words * sizeof *res->qweight);
  /* Buffers sized from the checked shapes; a signed 32-bit qweight is read bit for bit. */
  hid_t qtype = p.ds[L_QWEIGHT].is_signed ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32;
  const hid_t mem[L_COUNT] = {qtype, H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, H5T_NATIVE_INT32};
  void *const buf[L_COUNT] = {res->qweight, res->scales, res->zeros, res->g_idx};
  for (int i = 0; i < L_COUNT; i++)
    if (H5Dread(p.ds[i].id, mem[i], H5S_ALL, H5S_ALL, H5P_DEFAULT, buf[i]) < 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: cannot read %s", path, p.obj, layer_ds[i].name);
  MQ_CHECK(check_values(&p, res, err));
cleanup:
  packed_close(&p); /* packed_open leaves every id valid or H5I_INVALID_HID */
  if (st != MQ_OK) {
    mq_layer_result_free(res);
    memset(res, 0, sizeof *res);
  }
  return st;
}

/* Layer-problem files (SPEC.md "Layer-problem input"). open() checks the structure of every
 * layer up front so a bad file fails before any work is done; values (NaN/Inf, symmetry of H)
 * are checked as they are read, since reading them all twice would double the I/O. */
#include "io/h5problem.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"

struct mq_h5_problem {
  char *path;             /* for messages */
  hid_t file;
  hid_t layers;           /* the /layers group */
  mq_h5_names names;      /* layer names, strcmp order */
  mq_layer_desc *info; /* [names.n] */
};

/* Shape of one dataset of a layer as found by open(). */
typedef struct ds_probe {
  int present;
  size_t d0, d1;
} ds_probe;

/* Rows of float64 W converted per H5Dread: bounds the temporary buffer (8 MiB of doubles). */
enum { W_BLOCK_ELEMS = 1 << 20 };

/* ---- structure checks (open) ---- */

/* Datasets must be 2-D, float32|float64, with no zero dimension. */
static mq_status check_dataset(const char *path, const char *layer, const char *name, hid_t ds,
                               ds_probe *p, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
  if (type < 0 || space < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: cannot read dataset header", path, layer, name);
  size_t tsize = H5Tget_size(type);
  if (H5Tget_class(type) != H5T_FLOAT || (tsize != 4 && tsize != 8))
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: unsupported element type (need float32 or float64)",
            path, layer, name);
  int ndims = H5Sget_simple_extent_ndims(space);
  if (ndims != 2)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: expected a 2-D array, found %d dimension(s)", path,
            layer, name, ndims);
  hsize_t dims[2];
  if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: cannot read shape", path, layer, name);
  p->d0 = (size_t)dims[0];
  p->d1 = (size_t)dims[1];
  if (p->d0 == 0 || p->d1 == 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: empty layer (shape [%zu, %zu])", path, layer, name,
            p->d0, p->d1);
cleanup:
  mq__h5_close(&type);
  mq__h5_close(&space);
  return st;
}

/* Looks up dataset `name` in a layer group; p->present = 0 when the link does not exist. */
static mq_status probe(const char *path, const char *layer, hid_t group, const char *name,
                       ds_probe *p, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t obj = H5I_INVALID_HID;
  memset(p, 0, sizeof *p);
  htri_t exists = H5Lexists(group, name, H5P_DEFAULT);
  if (exists < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: cannot read group", path, layer);
  if (exists == 0) goto cleanup;
  obj = H5Oopen(group, name, H5P_DEFAULT);
  if (obj < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: cannot open", path, layer, name);
  if (H5Iget_type(obj) != H5I_DATASET)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: not a dataset", path, layer, name);
  MQ_CHECK(check_dataset(path, layer, name, obj, p, err));
  p->present = 1;
cleanup:
  mq__h5_close(&obj);
  return st;
}

/* A dataset that must be [r, c]. */
static mq_status expect_shape(const char *path, const char *layer, const char *name,
                              const ds_probe *p, size_t r, size_t c, mq_error *err) {
  mq_status st = MQ_OK;
  if (p->d0 != r || p->d1 != c)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: shape [%zu, %zu], expected [%zu, %zu]", path,
            layer, name, p->d0, p->d1, r, c);
cleanup:
  return st;
}

/* Shape consistency between W, X, Xq, H, G (SPEC: X/Xq [n, cols], H/G [cols, cols]). */
static mq_status check_shapes(const char *path, const char *layer, const ds_probe *w,
                              const ds_probe *x, const ds_probe *xq, const ds_probe *h,
                              const ds_probe *g, mq_error *err) {
  mq_status st = MQ_OK;
  if (!w->present) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: missing dataset W", path, layer);
  if (!x->present && !h->present)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: needs X (calibration inputs) or H", path, layer);
  if (xq->present && !x->present)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: Xq given without X", path, layer);
  if (x->present && x->d1 != w->d1)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/X: has %zu columns, W has %zu", path, layer, x->d1,
            w->d1);
  if (xq->present) MQ_CHECK(expect_shape(path, layer, "Xq", xq, x->d0, x->d1, err));
  if (h->present) MQ_CHECK(expect_shape(path, layer, "H", h, w->d1, w->d1, err));
  if (g->present) MQ_CHECK(expect_shape(path, layer, "G", g, w->d1, w->d1, err));
cleanup:
  return st;
}

static mq_status check_layer(mq_h5_problem *pf, size_t index, mq_error *err) {
  mq_status st = MQ_OK;
  const char *layer = pf->names.name[index];
  hid_t group = H5Oopen(pf->layers, layer, H5P_DEFAULT);
  if (group < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: cannot open", pf->path, layer);
  if (H5Iget_type(group) != H5I_GROUP)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: not a group", pf->path, layer);
  ds_probe w, x, xq, h, g;
  MQ_CHECK(probe(pf->path, layer, group, "W", &w, err));
  MQ_CHECK(probe(pf->path, layer, group, "X", &x, err));
  MQ_CHECK(probe(pf->path, layer, group, "Xq", &xq, err));
  MQ_CHECK(probe(pf->path, layer, group, "H", &h, err));
  MQ_CHECK(probe(pf->path, layer, group, "G", &g, err));
  MQ_CHECK(check_shapes(pf->path, layer, &w, &x, &xq, &h, &g, err));
  mq_layer_desc *li = &pf->info[index];
  li->name = layer;
  li->rows = w.d0;
  li->cols = w.d1;
  li->n = x.present ? x.d0 : 0;
  li->has_x = x.present;
  li->has_xq = xq.present;
  li->has_h = h.present;
  li->has_g = g.present;
cleanup:
  mq__h5_close(&group);
  return st;
}

static mq_status open_layers_group(mq_h5_problem *pf, mq_error *err) {
  mq_status st = MQ_OK;
  htri_t exists = H5Lexists(pf->file, "layers", H5P_DEFAULT);
  if (exists <= 0) MQ_FAIL(err, MQ_EINPUT, "%s: no /layers group", pf->path);
  pf->layers = H5Oopen(pf->file, "layers", H5P_DEFAULT);
  if (pf->layers < 0 || H5Iget_type(pf->layers) != H5I_GROUP)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers is not a group", pf->path);
cleanup:
  return st;
}

mq_status mq_h5_problem_open(const char *path, mq_h5_problem **out, mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  *out = NULL;
  mq_h5_problem *pf = mq_calloc(1, sizeof *pf);
  MQ_CHECK_ALLOC(err, pf, sizeof *pf);
  pf->file = pf->layers = H5I_INVALID_HID;
  size_t plen = strlen(path) + 1;
  pf->path = mq_alloc(plen, 1);
  MQ_CHECK_ALLOC(err, pf->path, plen);
  memcpy(pf->path, path, plen);
  MQ_CHECK(mq__h5_open_read(path, &pf->file, err));
  MQ_CHECK(open_layers_group(pf, err));
  MQ_CHECK(mq__h5_list_names(pf->layers, path, "/layers", &pf->names, err));
  if (pf->names.n == 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers holds no layers", path);
  pf->info = mq_calloc(pf->names.n, sizeof *pf->info);
  MQ_CHECK_ALLOC(err, pf->info, pf->names.n * sizeof *pf->info);
  for (size_t i = 0; i < pf->names.n; i++) MQ_CHECK(check_layer(pf, i, err));
  *out = pf;
  pf = NULL;
cleanup:
  mq_h5_problem_close(&pf);
  mq__h5_quiet_end(&quiet);
  return st;
}

void mq_h5_problem_close(mq_h5_problem **pfp) {
  if (pfp == NULL || *pfp == NULL) return;
  mq_h5_problem *pf = *pfp;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq__h5_close(&pf->layers);
  mq__h5_close(&pf->file);
  mq__h5_quiet_end(&quiet);
  mq__h5_names_free(&pf->names);
  mq_free(pf->info);
  mq_free(pf->path);
  mq_free(pf);
  *pfp = NULL;
}

size_t mq_h5_problem_nlayers(const mq_h5_problem *pf) { return pf ? pf->names.n : 0; }

const mq_layer_desc *mq_h5_problem_layer(const mq_h5_problem *pf, size_t index) {
  return (pf && index < pf->names.n) ? &pf->info[index] : NULL;
}

/* ---- value reads ---- */

/* Opens /layers/<layer>/<name>; the caller checked at open() that it exists. */
static mq_status open_dataset(mq_h5_problem *pf, size_t index, const char *name, hid_t *ds,
                              mq_error *err) {
  mq_status st = MQ_OK;
  const char *layer = pf->info[index].name;
  hid_t group = H5Gopen2(pf->layers, layer, H5P_DEFAULT);
  *ds = group < 0 ? H5I_INVALID_HID : H5Dopen2(group, name, H5P_DEFAULT);
  if (*ds < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: cannot open", pf->path, layer, name);
cleanup:
  mq__h5_close(&group);
  return st;
}

/* Rows [first, first+count) of a 2-D dataset with `cols` columns into buf ([count, cols]),
 * converted by HDF5 to mem_type. */
static herr_t read_rows(hid_t ds, size_t first, size_t count, size_t cols, hid_t mem_type,
                        void *buf) {
  hsize_t start[2] = {(hsize_t)first, 0}, cnt[2] = {(hsize_t)count, (hsize_t)cols};
  hid_t fspace = H5Dget_space(ds), mspace = H5Screate_simple(2, cnt, NULL);
  herr_t rc = -1;
  if (fspace >= 0 && mspace >= 0 &&
      H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0)
    rc = H5Dread(ds, mem_type, mspace, fspace, H5P_DEFAULT, buf);
  mq__h5_close(&fspace);
  mq__h5_close(&mspace);
  return rc;
}

static mq_status read_failed(const mq_h5_problem *pf, size_t index, const char *name,
                             mq_error *err) {
  return mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: /layers/%s/%s: read failed", pf->path,
                  pf->info[index].name, name);
}

/* Names the first non-finite entry of a [count, cols] block whose first row is row0. */
static mq_status check_finite(const mq_h5_problem *pf, size_t index, const char *name,
                              const double *v, size_t count, size_t cols, size_t row0,
                              mq_error *err) {
  mq_status st = MQ_OK;
  for (size_t i = 0; i < count * cols; i++)
    if (!isfinite(v[i]))
      MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/%s: non-finite value (%g) at [%zu, %zu]", pf->path,
              pf->info[index].name, name, v[i], row0 + i / cols, i % cols);
cleanup:
  return st;
}

static mq_status check_finite_f(const mq_h5_problem *pf, size_t index, const float *v,
                                size_t row0, size_t rows, size_t cols, mq_error *err) {
  mq_status st = MQ_OK;
  for (size_t i = 0; i < rows * cols; i++)
    if (!isfinite(v[i]))
      MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/W: non-finite value (%g) at [%zu, %zu]", pf->path,
              pf->info[index].name, (double)v[i], row0 + i / cols, i % cols);
cleanup:
  return st;
}

/* float64 W: read blockwise as double so values beyond float32's range are reported instead of
 * being silently clamped or turned into Inf by HDF5's conversion. */
static mq_status read_w_f64(mq_h5_problem *pf, size_t index, hid_t ds, size_t first,
                            size_t count, float *W, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_layer_desc *li = &pf->info[index];
  size_t block = li->cols >= W_BLOCK_ELEMS ? 1 : W_BLOCK_ELEMS / li->cols;
  if (block > count) block = count;
  double *tmp = mq_alloc(block * li->cols, sizeof *tmp); /* [block, cols] */
  MQ_CHECK_ALLOC(err, tmp, block * li->cols * sizeof *tmp);
  for (size_t r0 = first; r0 < first + count; r0 += block) {
    size_t nr = first + count - r0 < block ? first + count - r0 : block;
    if (read_rows(ds, r0, nr, li->cols, H5T_NATIVE_DOUBLE, tmp) < 0)
      MQ_CHECK(read_failed(pf, index, "W", err));
    MQ_CHECK(check_finite(pf, index, "W", tmp, nr, li->cols, r0, err));
    for (size_t i = 0; i < nr * li->cols; i++) {
      if (fabs(tmp[i]) > FLT_MAX)
        MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/W: value %g at [%zu, %zu] is outside the float32 range",
                pf->path, li->name, tmp[i], r0 + i / li->cols, i % li->cols);
      W[(r0 - first) * li->cols + i] = (float)tmp[i];
    }
  }
cleanup:
  mq_free(tmp);
  return st;
}

static mq_status check_index(const mq_h5_problem *pf, size_t index, mq_error *err) {
  mq_status st = MQ_OK;
  if (pf == NULL || index >= pf->names.n)
    MQ_FAIL(err, MQ_EFAIL, "internal error: layer index %zu out of range", index);
cleanup:
  return st;
}

mq_status mq_h5_read_weight_rows(mq_h5_problem *pf, size_t index, size_t first, size_t count,
                                 float *W, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID, type = H5I_INVALID_HID;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(check_index(pf, index, err));
  const mq_layer_desc *li = &pf->info[index];
  if (first > li->rows || count > li->rows - first)
    MQ_FAIL(err, MQ_EFAIL, "internal error: rows [%zu, %zu) of /layers/%s/W, which has %zu", first,
            first + count, li->name, li->rows);
  if (count == 0) goto cleanup;
  MQ_CHECK(open_dataset(pf, index, "W", &ds, err));
  type = H5Dget_type(ds);
  if (type < 0) MQ_CHECK(read_failed(pf, index, "W", err));
  if (H5Tget_size(type) == 8) {
    MQ_CHECK(read_w_f64(pf, index, ds, first, count, W, err));
  } else {
    if (read_rows(ds, first, count, li->cols, H5T_NATIVE_FLOAT, W) < 0)
      MQ_CHECK(read_failed(pf, index, "W", err));
    MQ_CHECK(check_finite_f(pf, index, W, first, count, li->cols, err));
  }
cleanup:
  mq__h5_close(&type);
  mq__h5_close(&ds);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_h5_read_weights(mq_h5_problem *pf, size_t index, float *W, mq_error *err) {
  mq_status st = check_index(pf, index, err);
  return st != MQ_OK ? st : mq_h5_read_weight_rows(pf, index, 0, pf->info[index].rows, W, err);
}

mq_status mq_h5_read_samples(mq_h5_problem *pf, size_t index, mq_samples which, size_t first,
                             size_t count, double *buf, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(check_index(pf, index, err));
  const mq_layer_desc *li = &pf->info[index];
  if ((which != MQ_SAMPLES_X && which != MQ_SAMPLES_XQ) || !li->has_x)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: /layers/%s: no samples to read", pf->path,
            li->name);
  if (first > li->n || count > li->n - first)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: /layers/%s: samples [%zu, %zu) beyond n = %zu",
            pf->path, li->name, first, first + count, li->n);
  if (count == 0) goto cleanup;
  const char *name = (which == MQ_SAMPLES_XQ && li->has_xq) ? "Xq" : "X";
  MQ_CHECK(open_dataset(pf, index, name, &ds, err));
  if (read_rows(ds, first, count, li->cols, H5T_NATIVE_DOUBLE, buf) < 0)
    MQ_CHECK(read_failed(pf, index, name, err));
  MQ_CHECK(check_finite(pf, index, name, buf, count, li->cols, first, err));
cleanup:
  mq__h5_close(&ds);
  mq__h5_quiet_end(&quiet);
  return st;
}

/* H must be symmetric up to 1e-6 of its largest entry: relative to the matrix scale, not to
 * each entry, so rounding noise in near-zero entries of a float32 H is not an error. */
static mq_status check_symmetric(const mq_h5_problem *pf, size_t index, const double *H, size_t n,
                                 mq_error *err) {
  mq_status st = MQ_OK;
  double amax = 0.0;
  for (size_t i = 0; i < n * n; i++) amax = fmax(amax, fabs(H[i]));
  double tol = 1e-6 * amax;
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (fabs(H[i * n + j] - H[j * n + i]) > tol)
        MQ_FAIL(err, MQ_EINPUT,
                "%s: /layers/%s/H: not symmetric: H[%zu, %zu] = %g but H[%zu, %zu] = %g", pf->path,
                pf->info[index].name, i, j, H[i * n + j], j, i, H[j * n + i]);
cleanup:
  return st;
}

/* H of layer index, opened; MQ_EFAIL when the layer has none. */
static mq_status open_h(mq_h5_problem *pf, size_t index, hid_t *ds, mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(check_index(pf, index, err));
  if (!pf->info[index].has_h)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: /layers/%s: no H", pf->path, pf->info[index].name);
  MQ_CHECK(open_dataset(pf, index, "H", ds, err));
cleanup:
  return st;
}

mq_status mq_h5_read_matrix_rows(mq_h5_problem *pf, size_t index, size_t first, size_t count,
                                 double *buf, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(open_h(pf, index, &ds, err));
  size_t cols = pf->info[index].cols;
  if (read_rows(ds, first, count, cols, H5T_NATIVE_DOUBLE, buf) < 0)
    MQ_CHECK(read_failed(pf, index, "H", err));
  MQ_CHECK(check_finite(pf, index, "H", buf, count, cols, first, err));
cleanup:
  mq__h5_close(&ds);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_h5_read_matrix_diag(mq_h5_problem *pf, size_t index, double *diag, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
  hsize_t *coord = NULL;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(open_h(pf, index, &ds, err));
  size_t cols = pf->info[index].cols;
  coord = mq_alloc(2 * cols, sizeof *coord);
  MQ_CHECK_ALLOC(err, coord, 2 * cols * sizeof *coord);
  for (size_t j = 0; j < cols; j++) coord[2 * j] = coord[2 * j + 1] = (hsize_t)j;
  hsize_t n = (hsize_t)cols;
  fspace = H5Dget_space(ds);
  mspace = H5Screate_simple(1, &n, NULL);
  if (fspace < 0 || mspace < 0 || H5Sselect_elements(fspace, H5S_SELECT_SET, cols, coord) < 0 ||
      H5Dread(ds, H5T_NATIVE_DOUBLE, mspace, fspace, H5P_DEFAULT, diag) < 0)
    MQ_CHECK(read_failed(pf, index, "H", err));
  for (size_t j = 0; j < cols; j++)
    if (!isfinite(diag[j]) || diag[j] < 0.0)
      MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s/H: diagonal entry %zu is %g (must be finite, >= 0)",
              pf->path, pf->info[index].name, j, diag[j]);
cleanup:
  mq_free(coord);
  mq__h5_close(&mspace);
  mq__h5_close(&fspace);
  mq__h5_close(&ds);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_h5_read_matrix(mq_h5_problem *pf, size_t index, mq_matrix which, double *buf,
                            mq_error *err) {
  mq_status st = MQ_OK;
  hid_t ds = H5I_INVALID_HID;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(check_index(pf, index, err));
  const mq_layer_desc *li = &pf->info[index];
  int present = which == MQ_MATRIX_H ? li->has_h : which == MQ_MATRIX_G ? li->has_g : 0;
  const char *name = which == MQ_MATRIX_H ? "H" : "G";
  if (!present)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: /layers/%s: no matrix %s to read", pf->path,
            li->name, name);
  MQ_CHECK(open_dataset(pf, index, name, &ds, err));
  if (read_rows(ds, 0, li->cols, li->cols, H5T_NATIVE_DOUBLE, buf) < 0)
    MQ_CHECK(read_failed(pf, index, name, err));
  MQ_CHECK(check_finite(pf, index, name, buf, li->cols, li->cols, 0, err));
  if (which == MQ_MATRIX_H) MQ_CHECK(check_symmetric(pf, index, buf, li->cols, err));
cleanup:
  mq__h5_close(&ds);
  mq__h5_quiet_end(&quiet);
  return st;
}

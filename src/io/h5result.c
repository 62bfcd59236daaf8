/* Result files (SPEC.md "Result file", format_version 1). The file claims to be complete only
 * through the root attribute complete=1, written by finish() after a flush of everything else;
 * abort() deletes a partial file.
 *
 * Writing is collective (parallel HDF5, MPI-IO driver). HDF5 requires every metadata call
 * (creating groups, datasets, attributes; writing attributes) to be made by all ranks with
 * identical arguments; the row data goes through collective hyperslab writes in which a rank
 * without rows selects nothing. Each public writer is a sequence of steps; after every step
 * that can fail on one rank alone, the ranks agree on the status (MQ_AGREE, parallel/ctx.h)
 * before the next one, so no rank enters a collective alone. */
#include "io/h5result.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/layer_scalars.h"
#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"
#include "io/h5result_internal.h"

/* ---- attribute writing (metadata: every rank, identical arguments) ---- */

/* Attribute `name` on loc, created or overwritten (complete is written twice): a scalar when
 * n = 0, else 1-D [n] (the --lambda auto trace). `obj` names loc in messages ("/" or
 * "/layers/<name>"). */
static mq_status attr_write(const mq_h5_result *rf, hid_t loc, const char *obj, const char *name,
                            hid_t file_type, hid_t mem_type, const void *value, size_t n,
                            mq_error *err) {
  mq_status st = MQ_OK;
  hsize_t dim = n;
  hid_t space = n > 0 ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_SCALAR);
  hid_t attr = H5I_INVALID_HID;
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
  return attr_write(rf, loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 0, err);
}

static mq_status attr_f64(const mq_h5_result *rf, hid_t loc, const char *obj, const char *name,
                          double v, mq_error *err) {
  return attr_write(rf, loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, 0, err);
}

/* Variable-length UTF-8: h5py reads it as str, not bytes. */
mq_status mq__h5_result_attr_str(const mq_h5_result *rf, hid_t loc, const char *obj,
                                 const char *name, const char *v, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t type = H5Tcopy(H5T_C_S1);
  if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot make a string type", rf->path);
  MQ_CHECK(attr_write(rf, loc, obj, name, type, type, &v, 0, err));
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
  const char *const strs[][2] = {
      {"format", "mpiquant"},
      {"mpiquant_version", MQ_VERSION_STRING},
      {"method", mq_method_names[o->method]},
      {"rounding", mq_rounding_names[o->rounding]},
      {"lambda_mode", mq__h5_lambda_mode_names[o->lambda_mode]},
  };
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    MQ_CHECK(mq__h5_result_attr_str(rf, rf->file, "/", strs[i][0], strs[i][1], err));
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
  MQ_CHECK(attr_write(rf, rf->file, "/", "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &o->seed, 0,
                      err));
  if (o->gram_f32) /* absent: double, as in every file written before the option existed */
    MQ_CHECK(mq__h5_result_attr_str(rf, rf->file, "/", "gram_products", "float32", err));
  if (meta->resume_key != NULL)
    MQ_CHECK(mq__h5_result_attr_str(rf, rf->file, "/", "resume_key", meta->resume_key, err));
cleanup:
  return st;
}

/* Local: the handle with its own copy of path; comm stays MPI_COMM_NULL. */
static mq_status result_alloc(const char *path, mq_h5_result **out, mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_result *rf = mq_calloc(1, sizeof *rf);
  MQ_CHECK_ALLOC(err, rf, sizeof *rf);
  rf->comm = MPI_COMM_NULL;
  rf->file = rf->layers = rf->dxpl = H5I_INVALID_HID;
  rf->fd = -1;
  size_t plen = strlen(path) + 1;
  rf->path = mq_alloc(plen, 1);
  MQ_CHECK_ALLOC(err, rf->path, plen);
  memcpy(rf->path, path, plen);
  *out = rf;
  rf = NULL;
cleanup:
  if (rf != NULL) mq_free(rf->path);
  mq_free(rf);
  return st;
}

/* Local: path must not be a file this process has open through HDF5 (e.g. the problem file
 * being read). The MPI-IO driver, unlike the default one, does not notice and would truncate
 * it under the reader. A missing path is fine. */
static mq_status check_not_open(const char *path, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t *ids = NULL;
  struct stat target;
  if (stat(path, &target) != 0) return MQ_OK;
  ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_FILE);
  if (n <= 0) return MQ_OK;
  ids = mq_alloc((size_t)n, sizeof *ids);
  MQ_CHECK_ALLOC(err, ids, (size_t)n * sizeof *ids);
  n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_FILE, (size_t)n, ids);
  for (ssize_t i = 0; i < n; i++) {
    char name[4096];
    struct stat open_file;
    ssize_t len = H5Fget_name(ids[i], name, sizeof name);
    if (len > 0 && (size_t)len < sizeof name && stat(name, &open_file) == 0 &&
        open_file.st_dev == target.st_dev && open_file.st_ino == target.st_ino)
      MQ_FAIL(err, MQ_EFAIL, "%s: cannot create file: it is already open (the input file?)",
              path);
  }
cleanup:
  mq_free(ids);
  return st;
}

/* Collective: the file created (truncated) or, with append, opened read-write with its /layers
 * group, through the MPI-IO driver; and the collective transfer property list. */
static mq_status open_file(mq_h5_result *rf, int append, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_mpio(fapl, rf->comm, MPI_INFO_NULL) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot set up parallel HDF5 file access", rf->path);
  if (append) {
    rf->file = H5Fopen(rf->path, H5F_ACC_RDWR, fapl);
    if (rf->file < 0) MQ_FAIL(err, MQ_EINPUT, "%s: --resume: cannot open for writing", rf->path);
    rf->layers = H5Gopen2(rf->file, "layers", H5P_DEFAULT);
    if (rf->layers < 0) MQ_FAIL(err, MQ_EINPUT, "%s: --resume: no /layers group", rf->path);
  } else {
    rf->file = H5Fcreate(rf->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (rf->file < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create file", rf->path);
    rf->created = 1;
  }
  rf->dxpl = H5Pcreate(H5P_DATASET_XFER);
  if (rf->dxpl < 0 || H5Pset_dxpl_mpio(rf->dxpl, H5FD_MPIO_COLLECTIVE) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot set up collective transfers", rf->path);
cleanup:
  mq__h5_close(&fapl);
  return st;
}

static mq_status root_create(mq_h5_result *rf, const mq_result_meta *meta, mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(write_root_attrs(rf, meta, err));
  rf->layers = H5Gcreate2(rf->file, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (rf->layers < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create group /layers", rf->path);
cleanup:
  return st;
}

mq_status mq__h5_result_open(MPI_Comm comm, const char *path, int append, mq_h5_result **out,
                             mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_result *rf = NULL;
  *out = NULL;
  st = result_alloc(path, &rf, err);
  if (st == MQ_OK && !append) st = check_not_open(path, err);
  MQ_AGREE(comm, st);
  MPI_Comm_dup(comm, &rf->comm); /* from here on rf is a collective handle on every rank */
  MPI_Comm_rank(rf->comm, &rf->rank);
  MQ_AGREE(rf->comm, open_file(rf, append, err));
  MQ_AGREE(rf->comm, mq__h5_result_space_open(rf, err));
  *out = rf;
  rf = NULL;
cleanup:
  mq_h5_result_abort(&rf); /* only files created here are deleted (rf->created) */
  return st;
}

mq_status mq_h5_result_create(MPI_Comm comm, const char *path, const mq_result_meta *meta,
                              mq_h5_result **out, mq_error *err) {
  mq_status st = MQ_OK;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq_h5_result *rf = NULL;
  *out = NULL;
  MQ_CHECK(mq__h5_result_open(comm, path, 0, &rf, err));
  MQ_CHECK(mq__h5_result_reserve(rf, 0, err)); /* the root's metadata */
  MQ_AGREE(rf->comm, root_create(rf, meta, err));
  *out = rf;
  rf = NULL;
cleanup:
  /* H5Fcreate is collective and MPI_File_open fails on all ranks together, so rf->created is the
   * same everywhere; a file that was not created here is not deleted (it may be someone's). */
  mq_h5_result_abort(&rf);
  mq__h5_quiet_end(&quiet);
  return st;
}

/* ---- layers ---- */

/* 64-bit FNV-1a, to check cheaply that all ranks pass the same layer description. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211u;
  return h;
}

/* Hash of everything that must be identical on every rank: the name, the shape, the --lambda
 * auto trace and every scalar of the table (bit patterns; they come from reductions or
 * broadcasts). */
static uint64_t layer_hash(const char *name, size_t total_rows, const mq_layer_result *res) {
  uint64_t h = fnv1a(14695981039346656037u, name, strlen(name) + 1);
  const uint64_t sizes[] = {total_rows, res->cols, res->ngroups, res->words, (uint64_t)res->bits};
  h = fnv1a(h, sizes, sizeof sizes);
  h = fnv1a(h, &res->lambda_ncand, sizeof res->lambda_ncand);
  h = fnv1a(h, res->lambda_cand, sizeof res->lambda_cand);
  h = fnv1a(h, res->lambda_heldout, sizeof res->lambda_heldout);
#define HASH_SCALAR(field, kind, ...) h = fnv1a(h, &res->field, sizeof res->field);
  MQ_LAYER_SCALARS(HASH_SCALAR)
#undef HASH_SCALAR
  return h;
}

/* What each rank claims for a layer, gathered on every rank by check_layout(). */
typedef struct layer_claim {
  uint64_t row0, rows, hash;
} layer_claim;

/* A layer's scalars are numbers a reader can trust, as the policy columns of
 * MQ_LAYER_SCALARS say (λ, loss, err, rel_err, bound_l2 and seconds finite and >= 0; bound_linf
 * and err_floor finite (>= 0 for bound_linf) or NaN (not applicable); clipped and
 * lambda_raises >= 0). Anything else is a numerical failure (MQ_ENUMERIC) and the layer is not
 * written. The scalars are identical on every rank, so all ranks reach the same verdict. */
static mq_status check_scalars(const mq_h5_result *rf, const char *name,
                               const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  /* the table's policy columns (core/layer_scalars.h); integers go through double exactly */
#define CHECK_SCALAR(field, kind, nan_ok, negative_ok)                                           \
  {                                                                                              \
    double v = (double)res->field;                                                               \
    if (!((isnan(v) && nan_ok(res)) || (isfinite(v) && (v >= 0 || negative_ok))))               \
      MQ_FAIL(err, MQ_ENUMERIC, "%s: /layers/%s: %s = %g is not a finite%s number: numerical "  \
              "failure, the layer is not written", rf->path, name, #field, v,                    \
              negative_ok ? "" : " non-negative");                                               \
  }
  MQ_LAYER_SCALARS(CHECK_SCALAR)
#undef CHECK_SCALAR
  for (size_t k = 0; k < res->rows * res->ngroups; k++) /* this rank's rows */
    if (!isfinite(res->scales[k]))
      MQ_FAIL(err, MQ_ENUMERIC, "%s: /layers/%s: scale of group %zu is %g: numerical failure, "
              "the layer is not written", rf->path, name, k % res->ngroups, (double)res->scales[k]);
cleanup:
  return st;
}

/* Local checks of the caller's arguments, before anything is created: a bad name or
 * inconsistent sizes would otherwise produce a file that export/inspect misread. */
static mq_status check_layer_args(const mq_h5_result *rf, const char *name, size_t total_rows,
                                  size_t row0, const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: invalid layer name '%s'", rf->path,
            name ? name : "(null)");
  if (res == NULL || !res->g_idx || res->bits < 1 || res->bits > 32 ||
      res->words != (res->cols * (size_t)res->bits + 31) / 32 ||
      (res->rows > 0 && (!res->qweight || !res->scales || !res->zeros)) ||
      res->rows > total_rows || row0 > total_rows - res->rows)
    MQ_FAIL(err, MQ_EFAIL, "internal error: %s: /layers/%s: inconsistent layer result", rf->path,
            name);
  MQ_CHECK(check_scalars(rf, name, res, err));
  /* a group without layer_complete is what an interrupted run left: write_layer replaces it */
  htri_t exists = H5Lexists(rf->layers, name, H5P_DEFAULT);
  if (exists < 0 || (exists > 0 && mq_h5_result_layer_done(rf, name)))
    MQ_FAIL(err, MQ_EFAIL, "%s: /layers/%s: %s", rf->path, name,
            exists > 0 ? "layer written twice" : "cannot query group");
cleanup:
  return st;
}

static int cmp_claims(const void *a, const void *b) {
  const layer_claim *x = a, *y = b;
  return x->row0 < y->row0 ? -1 : x->row0 > y->row0;
}

/* Collective: every rank gathers all claims (claims[nranks], scratch from the caller) and
 * reaches the same verdict: the same layer description everywhere, and row ranges that cover
 * [0, total_rows) exactly once. */
static mq_status check_layout(const mq_h5_result *rf, const char *name, size_t total_rows,
                              size_t row0, const mq_layer_result *res, layer_claim *claims,
                              mq_error *err) {
  mq_status st = MQ_OK;
  int nranks = 0;
  MPI_Comm_size(rf->comm, &nranks);
  layer_claim mine = {row0, res->rows, layer_hash(name, total_rows, res)};
  MPI_Allgather(&mine, 3, MPI_UINT64_T, claims, 3, MPI_UINT64_T, rf->comm);
  for (int r = 0; r < nranks; r++)
    if (claims[r].hash != claims[0].hash)
      MQ_FAIL(err, MQ_EFAIL,
              "internal error: %s: /layers/%s: ranks 0 and %d disagree on the layer's name, "
              "shape or attributes", rf->path, name, r);
  qsort(claims, (size_t)nranks, sizeof *claims, cmp_claims);
  uint64_t next = 0;
  for (int r = 0; r < nranks; r++) {
    if (claims[r].rows == 0) continue;
    if (claims[r].row0 != next) break;
    next += claims[r].rows;
  }
  if (next != total_rows)
    MQ_FAIL(err, MQ_EFAIL,
            "internal error: %s: /layers/%s: the ranks' rows do not cover [0, %zu) exactly once",
            rf->path, name, total_rows);
cleanup:
  return st;
}

/* A [d0] (ndims 1) or [d0, d1] dataset of a layer (mq__h5_dataset_create's layout). */
static hid_t create_dataset(hid_t group, const char *name, hid_t file_type, int ndims, size_t d0,
                            size_t d1) {
  hsize_t dims[2] = {(hsize_t)d0, (hsize_t)d1};
  hid_t space = H5Screate_simple(ndims, dims, NULL), ds = H5I_INVALID_HID;
  if (space >= 0) ds = mq__h5_dataset_create(group, name, file_type, space);
  mq__h5_close(&space);
  return ds;
}

/* One layer's open objects, between creation and the writes. */
enum { DS_QWEIGHT, DS_SCALES, DS_ZEROS, DS_GIDX, DS_COUNT };
static const char *const ds_names[DS_COUNT] = {"qweight", "scales", "zeros", "g_idx"};

/* Metadata step: the group and its four datasets, identical on every rank. */
static mq_status layer_create(const mq_h5_result *rf, const char *name, const char *obj,
                              size_t total_rows, const mq_layer_result *res, hid_t *g,
                              hid_t ds[DS_COUNT], mq_error *err) {
  mq_status st = MQ_OK;
  *g = H5Gcreate2(rf->layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (*g < 0) MQ_FAIL(err, MQ_EFAIL, "%s: %s: cannot create group", rf->path, obj);
  ds[DS_QWEIGHT] = create_dataset(*g, "qweight", H5T_STD_U32LE, 2, total_rows, res->words);
  ds[DS_SCALES] = create_dataset(*g, "scales", H5T_IEEE_F32LE, 2, total_rows, res->ngroups);
  ds[DS_ZEROS] = create_dataset(*g, "zeros", H5T_STD_I32LE, 2, total_rows, res->ngroups);
  ds[DS_GIDX] = create_dataset(*g, "g_idx", H5T_STD_I32LE, 1, res->cols, 0);
  for (int i = 0; i < DS_COUNT; i++)
    if (ds[i] < 0) MQ_FAIL(err, MQ_EFAIL, "%s: %s/%s: cannot create dataset", rf->path, obj,
                           ds_names[i]);
cleanup:
  return st;
}

/* One collective H5Dwrite of the block [first, first + count) along dimension 0 (all d1
 * columns of a 2-D dataset; ndims = 1 for a vector) from buf, [count, d1] row-major. A rank
 * with count = 0 selects nothing in memory and file but still takes part. */
static mq_status write_block(const mq_h5_result *rf, hid_t ds, const char *obj, const char *dname,
                             hid_t mem_type, int ndims, size_t first, size_t count, size_t d1,
                             const void *buf, mq_error *err) {
  mq_status st = MQ_OK;
  hsize_t start[2] = {(hsize_t)first, 0}, block[2] = {(hsize_t)count, (hsize_t)d1};
  hid_t fspace = H5Dget_space(ds), mspace = H5I_INVALID_HID;
  int empty = count == 0 || (ndims == 2 && d1 == 0), ok = fspace >= 0;
  if (ok && !empty) {
    ok = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, block, NULL) >= 0;
    mspace = H5Screate_simple(ndims, block, NULL);
  } else if (ok) {
    ok = H5Sselect_none(fspace) >= 0;
    mspace = H5Scopy(fspace);
    ok = ok && mspace >= 0 && H5Sselect_none(mspace) >= 0;
  }
  static const char dummy = 0; /* HDF5 wants a buffer even for an empty selection */
  ok = ok && mspace >= 0 &&
       H5Dwrite(ds, mem_type, mspace, fspace, rf->dxpl, empty || !buf ? &dummy : buf) >= 0;
  if (!ok) MQ_FAIL(err, MQ_EFAIL, "%s: %s/%s: write failed", rf->path, obj, dname);
cleanup:
  mq__h5_close(&mspace);
  mq__h5_close(&fspace);
  return st;
}

/* Expands x when a row of MQ_LAYER_SCALARS has the kind asked for (the first one). */
#define IF_KIND_I64_I64(x) x
#define IF_KIND_I64_F64(x)
#define IF_KIND_F64_I64(x)
#define IF_KIND_F64_F64(x) x

/* The attributes, in the order of format_version 1 (creation order is the order in the object
 * header, so it is part of the file's bytes): rows, cols, the table's int64 scalars, then its
 * float64 scalars, each in the table's order. */
static mq_status write_layer_attrs(const mq_h5_result *rf, hid_t g, const char *obj,
                                   size_t total_rows, const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(attr_i64(rf, g, obj, "rows", (int64_t)total_rows, err));
  MQ_CHECK(attr_i64(rf, g, obj, "cols", (int64_t)res->cols, err));
#define WRITE_I64(field, kind, ...) \
  IF_KIND_I64_##kind(MQ_CHECK(attr_i64(rf, g, obj, #field, (int64_t)res->field, err));)
#define WRITE_F64(field, kind, ...) \
  IF_KIND_F64_##kind(MQ_CHECK(attr_f64(rf, g, obj, #field, res->field, err));)
  MQ_LAYER_SCALARS(WRITE_I64)
  MQ_LAYER_SCALARS(WRITE_F64)
#undef WRITE_I64
#undef WRITE_F64
  if (res->lambda_ncand > 0) {
    size_t n = (size_t)res->lambda_ncand;
    MQ_CHECK(attr_write(rf, g, obj, "lambda_candidates", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                        res->lambda_cand, n, err));
    MQ_CHECK(attr_write(rf, g, obj, "lambda_heldout_err", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                        res->lambda_heldout, n, err));
  }
cleanup:
  return st;
}

mq_status mq_h5_result_write_layer(mq_h5_result *rf, const char *name, size_t total_rows,
                                   size_t row0, const mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t g = H5I_INVALID_HID, ds[DS_COUNT];
  for (int i = 0; i < DS_COUNT; i++) ds[i] = H5I_INVALID_HID;
  layer_claim *claims = NULL;
  char obj[320];
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  /* No handle means no communicator to agree on: a caller bug on every rank alike. */
  if (rf == NULL) MQ_FAIL(err, MQ_EFAIL, "internal error: no result file");
  int nranks = 0;
  MPI_Comm_size(rf->comm, &nranks);
  st = check_layer_args(rf, name, total_rows, row0, res, err);
  if (st == MQ_OK) {
    claims = mq_alloc((size_t)nranks, sizeof *claims);
    if (claims == NULL)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                    (size_t)nranks * sizeof *claims);
  }
  MQ_AGREE(rf->comm, st);
  MQ_CHECK(check_layout(rf, name, total_rows, row0, res, claims, err)); /* same on all ranks */
  /* the layer's data and metadata get their disk blocks before anything is created */
  MQ_CHECK(mq__h5_result_reserve(rf, (uint64_t)total_rows * (res->words + 2 * res->ngroups) * 4 +
                                         (uint64_t)res->cols * 4, err));
  snprintf(obj, sizeof obj, "/layers/%s", name);
  if (H5Lexists(rf->layers, name, H5P_DEFAULT) > 0 && H5Ldelete(rf->layers, name, H5P_DEFAULT) < 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: %s: cannot replace", rf->path, obj);
  MQ_AGREE(rf->comm, st);
  MQ_AGREE(rf->comm, layer_create(rf, name, obj, total_rows, res, &g, ds, err));
  /* Each rank its own rows; a rank without rows selects nothing. */
  const struct {
    hid_t mem_type;
    size_t d1;
    const void *buf;
  } rows_of[DS_GIDX] = {{H5T_NATIVE_UINT32, res->words, res->qweight},
                        {H5T_NATIVE_FLOAT, res->ngroups, res->scales},
                        {H5T_NATIVE_INT32, res->ngroups, res->zeros}};
  for (int i = 0; i < DS_GIDX; i++)
    MQ_AGREE(rf->comm, write_block(rf, ds[i], obj, ds_names[i], rows_of[i].mem_type, 2, row0,
                                   res->rows, rows_of[i].d1, rows_of[i].buf, err));
  /* g_idx is the same everywhere: rank 0 writes it, the others select nothing. */
  MQ_AGREE(rf->comm, write_block(rf, ds[DS_GIDX], obj, ds_names[DS_GIDX], H5T_NATIVE_INT32, 1, 0,
                                 rf->rank == 0 ? res->cols : 0, 0, res->g_idx, err));
  /* every rank, same values */
  MQ_AGREE(rf->comm, write_layer_attrs(rf, g, obj, total_rows, res, err));
  /* last: what --resume trusts */
  MQ_AGREE(rf->comm, attr_i64(rf, g, obj, "layer_complete", 1, err));
  MQ_CHECK(mq__h5_result_reserve(rf, 0, err)); /* whatever the attributes allocated */
  if (H5Fflush(rf->file, H5F_SCOPE_GLOBAL) < 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: flush failed", rf->path);
  MQ_AGREE(rf->comm, st);
cleanup:
  for (int i = 0; i < DS_COUNT; i++) mq__h5_close(&ds[i]);
  mq__h5_close(&g);
  mq_free(claims);
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
  MQ_CHECK(mq__h5_result_reserve(rf, 0, err));
  /* Everything else reaches the file before complete=1 is written; the agreement doubles as
   * the barrier: no rank writes complete=1 before every rank's flush has returned. */
  if (H5Fflush(rf->file, H5F_SCOPE_GLOBAL) < 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: flush failed", rf->path);
  MQ_AGREE(rf->comm, st);
  /* every rank, one collective write */
  MQ_AGREE(rf->comm, attr_i64(rf, rf->file, "/", "complete", 1, err)); /* exists: no space */
  mq__h5_close(&rf->dxpl);
  mq__h5_close(&rf->layers);
  herr_t rc = H5Fclose(rf->file); /* collective */
  rf->file = H5I_INVALID_HID;
  if (rc < 0) st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot close file", rf->path);
  MQ_AGREE(rf->comm, st);
  MPI_Comm_free(&rf->comm);
  mq__h5_result_space_close(rf);
  mq_free(rf->path);
  mq_free(rf);
  *prf = NULL;
cleanup:
  if (st != MQ_OK) mq_h5_result_abort(prf); /* a file that failed to finish must not survive */
  mq__h5_quiet_end(&quiet);
  return st;
}

void mq_h5_result_keep_partial(mq_h5_result *rf) {
  if (rf != NULL) rf->created = 0;
}

void mq_h5_result_abort(mq_h5_result **prf) {
  if (prf == NULL || *prf == NULL) return;
  mq_h5_result *rf = *prf;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  mq__h5_close(&rf->dxpl);
  mq__h5_close(&rf->layers);
  if (rf->file >= 0) (void)H5Fclose(rf->file); /* collective */
  rf->file = H5I_INVALID_HID;
  mq__h5_quiet_end(&quiet);
  if (rf->comm != MPI_COMM_NULL) {
    MPI_Barrier(rf->comm); /* every rank has closed the file before it goes */
    if (rf->rank == 0 && rf->created) (void)unlink(rf->path);
    MPI_Barrier(rf->comm); /* and it is gone for every rank when abort() returns */
    MPI_Comm_free(&rf->comm);
  }
  mq__h5_result_space_close(rf);
  mq_free(rf->path);
  mq_free(rf);
  *prf = NULL;
}

/* Resuming an interrupted `quantize` (h5result.h): the partial file is checked on rank 0 with
 * the serial driver (is it ours, complete, the same settings?), the verdict is broadcast, and
 * then every rank opens it with the MPI-IO driver for appending. Layers count as written only
 * with their last attribute layer_complete = 1 (write_layer flushes after it). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"
#include "io/h5result.h"
#include "io/h5result_internal.h"

/* Local. A string attribute of the root (variable or fixed length) into buf; "" when absent. */
static void root_string(hid_t file, const char *name, char *buf, size_t len) {
  buf[0] = '\0';
  if (H5Aexists(file, name) <= 0) return;
  hid_t attr = H5Aopen(file, name, H5P_DEFAULT), type = H5Aget_type(attr);
  hid_t mem = H5Tcopy(H5T_C_S1);
  if (attr >= 0 && type >= 0 && H5Tis_variable_str(type) > 0) {
    char *v = NULL;
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type)); /* no conversion between ASCII and UTF-8 */
    if (H5Aread(attr, mem, &v) >= 0 && v != NULL) {
      snprintf(buf, len, "%s", v);
      H5free_memory(v);
    }
  } else if (attr >= 0 && type >= 0 && H5Tget_size(type) < len) {
    H5Tset_size(mem, len);
    if (H5Aread(attr, mem, buf) < 0) buf[0] = '\0';
  }
  mq__h5_close(&mem);
  mq__h5_close(&type);
  mq__h5_close(&attr);
}

static long long root_int(hid_t file, const char *name) {
  long long v = -1;
  if (H5Aexists(file, name) <= 0) return -1;
  hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
  if (attr < 0 || H5Aread(attr, H5T_NATIVE_LLONG, &v) < 0) v = -1;
  mq__h5_close(&attr);
  return v;
}

/* The first space-separated "name=value" of a and b that differ. */
static void first_difference(const char *a, const char *b, char *ta, char *tb, size_t len) {
  while (*a || *b) {
    size_t na = strcspn(a, " "), nb = strcspn(b, " ");
    if (na != nb || strncmp(a, b, na) != 0) {
      snprintf(ta, len, "%.*s", (int)na, a);
      snprintf(tb, len, "%.*s", (int)nb, b);
      return;
    }
    a += na + (a[na] == ' ');
    b += nb + (b[nb] == ' ');
  }
  snprintf(ta, len, "?");
  snprintf(tb, len, "?");
}

/* Rank 0: what is at path. */
static mq_status inspect(const char *path, const char *key, mq_resume_state *state,
                         mq_error *err) {
  mq_status st = MQ_OK;
  hid_t file = H5I_INVALID_HID;
  char format[32], found[4096];
  struct stat sb;
  *state = MQ_RESUME_NONE;
  if (stat(path, &sb) != 0) return MQ_OK;
  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0)
    MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: not readable as HDF5 (damaged by the interruption?); "
            "remove it to start over", path);
  root_string(file, "format", format, sizeof format);
  root_string(file, "resume_key", found, sizeof found);
  if (strcmp(format, "mpiquant") != 0 || found[0] == '\0')
    MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: not a result file of mpiquant quantize", path);
  if (strcmp(found, key) != 0) {
    char file_tok[128], run_tok[128];
    first_difference(found, key, file_tok, run_tok, sizeof file_tok);
    MQ_FAIL(err, MQ_EUSAGE, "%s: --resume: written with other settings (%s; this run: %s)", path,
            file_tok, run_tok);
  }
  *state = root_int(file, "complete") == 1 ? MQ_RESUME_COMPLETE : MQ_RESUME_PARTIAL;
cleanup:
  mq__h5_close(&file);
  return st;
}

mq_status mq_h5_result_open_resume(MPI_Comm comm, const char *path, const char *key,
                                   mq_h5_result **out, mq_resume_state *state, mq_error *err) {
  mq_status st = MQ_OK;
  int rank = 0, verdict[2] = {MQ_OK, MQ_RESUME_NONE};
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  *out = NULL;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    mq_resume_state s;
    verdict[0] = (int)inspect(path, key, &s, err);
    verdict[1] = (int)s;
  }
  MPI_Bcast(verdict, 2, MPI_INT, 0, comm);
  st = (mq_status)verdict[0];
  *state = (mq_resume_state)verdict[1];
  /* abort() keeps a resumed file (created = 0): it holds the progress */
  if (st == MQ_OK && *state == MQ_RESUME_PARTIAL) st = mq__h5_result_open(comm, path, 1, out, err);
  mq__h5_quiet_end(&quiet);
  return st;
}

int mq_h5_result_layer_done(const mq_h5_result *rf, const char *name) {
  if (H5Lexists(rf->layers, name, H5P_DEFAULT) <= 0) return 0;
  hid_t g = H5Gopen2(rf->layers, name, H5P_DEFAULT);
  long long v = g >= 0 ? root_int(g, "layer_complete") : -1;
  mq__h5_close(&g);
  return v == 1;
}

/* Local, independent read of a whole dataset into buf (mem_type). */
static int read_all(hid_t g, const char *name, hid_t mem_type, void *buf) {
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  int ok = ds >= 0 && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
  mq__h5_close(&ds);
  return ok;
}

mq_status mq_h5_result_read_layer(const mq_h5_result *rf, const char *name, int bits,
                                  mq_layer_result *res, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t g = H5Gopen2(rf->layers, name, H5P_DEFAULT);
  long long rows = g >= 0 ? root_int(g, "rows") : -1, cols = g >= 0 ? root_int(g, "cols") : -1;
  memset(res, 0, sizeof *res);
  if (rows < 0 || cols <= 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: --resume: no rows/cols", rf->path, name);
  hid_t ds = H5Dopen2(g, "scales", H5P_DEFAULT), space = ds >= 0 ? H5Dget_space(ds) : -1;
  hsize_t dims[2] = {0, 0};
  if (space < 0 || H5Sget_simple_extent_ndims(space) != 2) dims[1] = 0;
  else H5Sget_simple_extent_dims(space, dims, NULL);
  mq__h5_close(&space);
  mq__h5_close(&ds);
  res->rows = (size_t)rows;
  res->cols = (size_t)cols;
  res->bits = bits;
  res->ngroups = (size_t)dims[1];
  res->words = ((size_t)cols * (size_t)bits + 31) / 32;
  res->qweight = mq_alloc(res->rows * res->words + 1, sizeof *res->qweight);
  res->scales = mq_alloc(res->rows * res->ngroups + 1, sizeof *res->scales);
  res->zeros = mq_alloc(res->rows * res->ngroups + 1, sizeof *res->zeros);
  res->g_idx = mq_alloc(res->cols, sizeof *res->g_idx);
  MQ_CHECK_ALLOC(err, res->qweight && res->scales && res->zeros && res->g_idx,
                 res->rows * res->words * 4);
  if (res->ngroups == 0 || !read_all(g, "qweight", H5T_NATIVE_UINT32, res->qweight) ||
      !read_all(g, "scales", H5T_NATIVE_FLOAT, res->scales) ||
      !read_all(g, "zeros", H5T_NATIVE_INT32, res->zeros) ||
      !read_all(g, "g_idx", H5T_NATIVE_INT32, res->g_idx))
    MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: --resume: cannot read the layer", rf->path, name);
  for (size_t c = 0; c < res->cols; c++)
    if (res->g_idx[c] < 0 || (size_t)res->g_idx[c] >= res->ngroups)
      MQ_FAIL(err, MQ_EINPUT, "%s: /layers/%s: --resume: g_idx out of range", rf->path, name);
cleanup:
  mq__h5_close(&g);
  if (st != MQ_OK) mq_layer_result_free(res);
  return st;
}

mq_status mq_h5_result_clear_model(mq_h5_result *rf, mq_error *err) {
  mq_status st = MQ_OK;
  if (H5Lexists(rf->file, "model", H5P_DEFAULT) > 0 && H5Ldelete(rf->file, "model", H5P_DEFAULT) < 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot replace /model", rf->path);
  MQ_AGREE(rf->comm);
cleanup:
  return st;
}

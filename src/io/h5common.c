#include "io/h5common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"

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
  /* access() first: HDF5's own failure does not say "no such file" vs "not HDF5". */
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

/* The /model part of a result file (SPEC.md "Result file", written by `quantize`): config.json
 * and every tensor that was not quantized, so eval --quantized and export need nothing else.
 * Metadata calls (groups, datasets, attributes) are made by every rank with the same
 * arguments; the data, which every rank has alike, is written by rank 0 alone with an
 * independent transfer. Each step ends with the ranks agreeing on the status. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "io/h5common.h"
#include "io/h5result.h"
#include "io/h5result_internal.h"

/* /model and /model/tensors, created on first use (every rank takes the same branch). */
static hid_t model_group(const mq_h5_result *rf, const char *path) {
  if (H5Lexists(rf->file, path, H5P_DEFAULT) > 0) return H5Gopen2(rf->file, path, H5P_DEFAULT);
  return H5Gcreate2(rf->file, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static mq_status open_groups(const mq_h5_result *rf, hid_t *model, hid_t *tensors,
                             mq_error *err) {
  mq_status st = MQ_OK;
  *model = model_group(rf, "/model");
  *tensors = *model >= 0 ? model_group(rf, "/model/tensors") : H5I_INVALID_HID;
  if (*tensors < 0) MQ_FAIL(err, MQ_EFAIL, "%s: cannot create /model/tensors", rf->path);
cleanup:
  return st;
}

/* Rank 0 writes the whole dataset; the others do not call H5Dwrite (independent transfer). */
static mq_status write_rank0(const mq_h5_result *rf, hid_t ds, hid_t mem_type, const void *buf,
                             const char *obj, mq_error *err) {
  mq_status st = MQ_OK;
  if (rf->rank == 0 && H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    MQ_FAIL(err, MQ_EFAIL, "%s: %s: write failed", rf->path, obj);
cleanup:
  return st;
}

mq_status mq_h5_result_write_config(mq_h5_result *rf, const char *json, size_t len,
                                    mq_error *err) {
  mq_status st = MQ_OK;
  hid_t model = H5I_INVALID_HID, tensors = H5I_INVALID_HID, type = H5I_INVALID_HID;
  hid_t space = H5I_INVALID_HID, ds = H5I_INVALID_HID;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(mq__h5_result_reserve(rf, len, err));
  MQ_AGREE(rf->comm, open_groups(rf, &model, &tensors, err));
  type = H5Tcopy(H5T_C_S1);
  space = H5Screate(H5S_SCALAR);
  if (type < 0 || space < 0 || H5Tset_size(type, len > 0 ? len : 1) < 0 ||
      H5Tset_strpad(type, H5T_STR_NULLPAD) < 0 ||
      (ds = mq__h5_dataset_create(model, "config", type, space)) < 0)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot create /model/config", rf->path);
  MQ_AGREE(rf->comm, st);
  MQ_AGREE(rf->comm, write_rank0(rf, ds, type, len > 0 ? json : "", "/model/config", err));
cleanup:
  mq__h5_close(&ds);
  mq__h5_close(&space);
  mq__h5_close(&type);
  mq__h5_close(&tensors);
  mq__h5_close(&model);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_h5_result_write_tensor(mq_h5_result *rf, const char *name, const float *data,
                                    int ndim, const size_t *shape, const char *dtype,
                                    mq_error *err) {
  mq_status st = MQ_OK;
  hid_t model = H5I_INVALID_HID, tensors = H5I_INVALID_HID, space = H5I_INVALID_HID;
  hid_t ds = H5I_INVALID_HID;
  char obj[320];
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  snprintf(obj, sizeof obj, "/model/tensors/%s", name);
  if (ndim < 1 || ndim > 2 || (rf->rank == 0 && data == NULL))
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "internal error: %s: bad tensor", obj);
  MQ_AGREE(rf->comm, st);
  MQ_CHECK(mq__h5_result_reserve(rf, (uint64_t)shape[0] * (ndim > 1 ? shape[1] : 1) * 4, err));
  MQ_AGREE(rf->comm, open_groups(rf, &model, &tensors, err));
  hsize_t dims[2] = {(hsize_t)shape[0], ndim > 1 ? (hsize_t)shape[1] : 1};
  space = H5Screate_simple(ndim, dims, NULL);
  ds = space >= 0 ? mq__h5_dataset_create(tensors, name, H5T_IEEE_F32LE, space) : H5I_INVALID_HID;
  if (ds < 0) st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: %s: cannot create", rf->path, obj);
  MQ_AGREE(rf->comm, st);
  MQ_AGREE(rf->comm, mq__h5_result_attr_str(rf, ds, obj, "dtype", dtype, err));
  MQ_AGREE(rf->comm, write_rank0(rf, ds, H5T_NATIVE_FLOAT, data, obj, err));
cleanup:
  mq__h5_close(&ds);
  mq__h5_close(&space);
  mq__h5_close(&tensors);
  mq__h5_close(&model);
  mq__h5_quiet_end(&quiet);
  return st;
}

mq_status mq_h5_result_set_checkpoint(mq_h5_result *rf, uint64_t hash, mq_error *err) {
  mq_status st = MQ_OK;
  uint64_t root = hash;
  char text[24];
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MPI_Bcast(&root, 1, MPI_UINT64_T, 0, rf->comm);
  if (root != hash) /* attribute writes need identical arguments on every rank */
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: config.json or the tensor table "
                  "differs from what rank 0 read (not the same checkpoint on every node?)",
                  rf->path);
  MQ_AGREE(rf->comm, st);
  snprintf(text, sizeof text, "%016" PRIx64, hash);
  MQ_AGREE(rf->comm, mq__h5_result_attr_str(rf, rf->file, "/", "checkpoint_hash", text, err));
cleanup:
  mq__h5_quiet_end(&quiet);
  return st;
}

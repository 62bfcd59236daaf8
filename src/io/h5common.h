/* Helpers shared by the HDF5 readers and writers of src/io: silencing HDF5's own error printing
 * (our one-line messages replace it), opening an input file with a precise reason on failure,
 * listing a group's links in strcmp order (the processing order of layers), creating the
 * datasets of a result file, and the checked readers of single elements.
 *
 * The checked readers are shared by every reader of result files (h5result_read.c,
 * h5result_resume.c, result_tensors.c). Files are treated as hostile: every element's class,
 * dataspace rank, element count and shape are checked before a buffer is sized from them or a
 * value is used. A bad element is MQ_EINPUT "<path>: <object>: <what is wrong>", naming the file
 * being read. They are local and serial; call them inside mq__h5_quiet_begin/end. */
#ifndef MQ_IO_H5COMMON_H
#define MQ_IO_H5COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "hdf5.h"
#include "mpiquant.h"

/* HDF5's automatic error-stack printer, saved so it can be restored on the way out: a library
 * must not leave a global setting changed behind the caller's back. */
typedef struct mq_h5_quiet {
  H5E_auto2_t func;
  void *data;
} mq_h5_quiet;

void mq__h5_quiet_begin(mq_h5_quiet *q);
void mq__h5_quiet_end(const mq_h5_quiet *q);

/* Opens path read-only with the default driver after stat() says it is a regular file (a
 * FIFO would block HDF5's open). MQ_EINPUT "<path>: cannot open: <errno>", "<path>: not a
 * regular file" or "<path>: not an HDF5 file". *file is H5I_INVALID_HID on failure. */
mq_status mq__h5_open_read(const char *path, hid_t *file, mq_error *err);

/* Link names of a group sorted with strcmp. name[i] points into buf; both from mq_alloc. */
typedef struct mq_h5_names {
  size_t n;
  char **name; /* [n] */
  char *buf;   /* all names, NUL-separated */
} mq_h5_names;

/* MQ_EINPUT "<path>: <where>: cannot list links" on failure; out is zeroed first. */
mq_status mq__h5_list_names(hid_t group, const char *path, const char *where, mq_h5_names *out,
                            mq_error *err);
void mq__h5_names_free(mq_h5_names *nm); /* accepts a zeroed struct */

/* Dataset `name` of loc with file type `type` and dataspace `space`, laid out as parallel HDF5
 * requires: contiguous, allocated at creation, never filled (every element is written). Returns
 * the dataset or H5I_INVALID_HID. Every writer of result files creates its datasets here, so
 * they all have the same layout. */
hid_t mq__h5_dataset_create(hid_t loc, const char *name, hid_t type, hid_t space);

/* Closes id when valid (>= 0) and sets it to H5I_INVALID_HID; for cleanup paths. */
void mq__h5_close(hid_t *id);

/* The spelling of the λ mode in result files (index = enum value); methods and roundings:
 * mq_method_names, mq_rounding_names (mpiquant.h). */
extern const char *const mq__h5_lambda_mode_names[3];

/* ==== checked readers ==== */

/* Most dimensions a dataset may have (a larger rank is refused). */
#define MQ_H5_MAX_DIMS 8

/* An open object of a file, with what messages call it. */
typedef struct mq_h5_obj {
  hid_t id;         /* file, group or dataset */
  const char *path; /* the file */
  const char *obj;  /* id's name in the file: "/", "/layers/<name>", ... */
} mq_h5_obj;

/* ---- attributes ---- */

/* Scalar numeric attribute `name` of o, converted to mem_type (H5T_NATIVE_INT64,
 * H5T_NATIVE_UINT64 or H5T_NATIVE_DOUBLE) into *v. The attribute must hold exactly one element
 * (scalar, or a one-element 1-D array) of integer class (integer mem_type) or of integer or
 * floating-point class (double). found == NULL: the attribute is required (missing is
 * MQ_EINPUT); else *found = 0 and *v untouched when it does not exist. */
mq_status mq__h5_attr_num(const mq_h5_obj *o, const char *name, hid_t mem_type, void *v,
                          int *found, mq_error *err);

static inline mq_status mq__h5_attr_i64(const mq_h5_obj *o, const char *name, int64_t *v,
                                        int *found, mq_error *err) {
  return mq__h5_attr_num(o, name, H5T_NATIVE_INT64, v, found, err);
}

static inline mq_status mq__h5_attr_f64(const mq_h5_obj *o, const char *name, double *v,
                                        int *found, mq_error *err) {
  return mq__h5_attr_num(o, name, H5T_NATIVE_DOUBLE, v, found, err);
}

/* String attribute `name` of o: one element (scalar or one-element 1-D) of a fixed- or
 * variable-length string type, as a NUL-terminated mq_alloc'd copy in *out (released with
 * mq_free; NULL when not found). found as for mq__h5_attr_num. */
mq_status mq__h5_attr_string(const mq_h5_obj *o, const char *name, char **out, int *found,
                             mq_error *err);
/* The same into buf[size]; a longer string is MQ_EINPUT (never truncated). buf is "" when the
 * attribute is not found. */
mq_status mq__h5_attr_string_buf(const mq_h5_obj *o, const char *name, char *buf, size_t size,
                                 int *found, mq_error *err);

/* ---- datasets ---- */

/* A dataset opened by mq__h5_dataset_open, with its checked shape. */
typedef struct mq_h5_ds {
  hid_t id;   /* released with mq__h5_close(&ds.id) */
  int ndim;
  hsize_t dims[MQ_H5_MAX_DIMS];
  size_t type_size; /* bytes per element in the file */
  int is_signed;    /* integer class: a signed type */
} mq_h5_ds;

/* Dataset `name` of o: it must exist, be a dataset of class cls (H5T_INTEGER, H5T_FLOAT or
 * H5T_STRING) with a simple dataspace of ndim dimensions (ndim < 0: any of 0..MQ_H5_MAX_DIMS).
 * ds->id is H5I_INVALID_HID on failure. */
mq_status mq__h5_dataset_open(const mq_h5_obj *o, const char *name, H5T_class_t cls, int ndim,
                              mq_h5_ds *ds, mq_error *err);

/* String dataset `name` of o (one element, fixed or variable length) as an mq_alloc'd copy. */
mq_status mq__h5_dataset_string(const mq_h5_obj *o, const char *name, char **out, mq_error *err);

/* ---- packed layers (/layers/<name> of a result file) ---- */

/* Checks the group `name` of layers (the /layers group of the result file path) without
 * reading its data: qweight a 32-bit integer [rows, mq_packed_words(cols, bits)], scales
 * floating-point [rows, ngroups], zeros integer [rows, ngroups], g_idx integer [cols], with
 * rows, cols >= 1, 1 <= ngroups <= cols, and the attributes rows and cols, when present, scalar
 * integers equal to those. Fills shape's rows, cols, ngroups, words and bits (bits, 2..8, is the
 * caller's: the root attribute, or the settings of the run); its arrays are NULL. */
mq_status mq__h5_layer_check(hid_t layers, const char *path, const char *name, int bits,
                             mq_layer_result *shape, mq_error *err);

/* mq__h5_layer_check, then every row of the layer into res (arrays mq_alloc'd, released by
 * mq_layer_result_free; the scalars are left 0), with its values checked: g_idx within
 * [0, ngroups), scales finite, zeros within [0, 2^bits - 1]. res is zeroed on failure. */
mq_status mq__h5_layer_read(hid_t layers, const char *path, const char *name, int bits,
                            mq_layer_result *res, mq_error *err);

#endif

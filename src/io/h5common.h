/* Helpers shared by the HDF5 readers and writers of src/io: silencing HDF5's own error printing
 * (our one-line messages replace it), opening an input file with a precise reason on failure,
 * and listing a group's links in strcmp order (the processing order of layers). */
#ifndef MQ_IO_H5COMMON_H
#define MQ_IO_H5COMMON_H

#include <stddef.h>

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

/* Opens path read-only with the default driver. MQ_EINPUT "<path>: cannot open: <errno>" or
 * "<path>: not an HDF5 file". *file is H5I_INVALID_HID on failure. */
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

/* Closes id when valid (>= 0) and sets it to H5I_INVALID_HID; for cleanup paths. */
void mq__h5_close(hid_t *id);

/* The spelling of the λ mode in result files (index = enum value); methods and roundings:
 * mq_method_names, mq_rounding_names (mpiquant.h). */
extern const char *const mq__h5_lambda_mode_names[3];

#endif

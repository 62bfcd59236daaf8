/* Reading layer problems (SPEC.md "Layer-problem input"): HDF5, one group per layer under
 * /layers/, names sorted = processing order. Every array is validated before use: rank, shape
 * consistency between W, X, Xq, H, G, element type (float32|float64), finiteness.
 * Not collective: whoever calls it reads (issue 4 makes sample reads per-rank hyperslabs). */
#ifndef MQ_IO_H5PROBLEM_H
#define MQ_IO_H5PROBLEM_H

#include <stddef.h>
#include "mpiquant.h"

typedef struct mq_h5_problem mq_h5_problem;


/* Opens and validates the structure (not yet the values) of every layer. Errors: MQ_EINPUT
 * with "<path>: <reason>" (not HDF5, no /layers group, no layers, missing W, missing X and H,
 * shape mismatch, wrong rank, unsupported type, empty dimension). */
mq_status mq_h5_problem_open(const char *path, mq_h5_problem **out, mq_error *err);
void mq_h5_problem_close(mq_h5_problem **pf); /* accepts NULL / *pf == NULL; nulls the handle */

size_t mq_h5_problem_nlayers(const mq_h5_problem *pf);
/* The layer's description (mpiquant.h); its name is the group name under /layers/, owned by
 * the problem handle. n = 0 when only H is given. */
const mq_layer_desc *mq_h5_problem_layer(const mq_h5_problem *pf, size_t index);

/* W as float32, row-major [rows, cols]. MQ_EINPUT if any value is NaN/Inf. */
mq_status mq_h5_read_weights(mq_h5_problem *pf, size_t index, float *W, mq_error *err);

/* Rows [first, first+count) of W as float32, row-major [count, cols] (hyperslab read). */
mq_status mq_h5_read_weight_rows(mq_h5_problem *pf, size_t index, size_t first, size_t count,
                                 float *W, mq_error *err);

/* Samples [first, first+count) of X or Xq (falls back to X when the layer has no Xq) as double,
 * row-major [count, cols]. MQ_EINPUT on NaN/Inf. */
mq_status mq_h5_read_samples(mq_h5_problem *pf, size_t index, mq_samples which, size_t first,
                             size_t count, double *buf, mq_error *err);

/* For callers that never hold H whole (ScaLAPACK with distributed H): rows [first,
 * first+count) of H as double, row-major [count, cols], MQ_EINPUT on NaN/Inf (symmetry is not
 * checked here); and diag(H) [cols], MQ_EINPUT on NaN/Inf or a negative entry. */
mq_status mq_h5_read_matrix_rows(mq_h5_problem *pf, size_t index, size_t first, size_t count,
                                 double *buf, mq_error *err);
mq_status mq_h5_read_matrix_diag(mq_h5_problem *pf, size_t index, double *diag, mq_error *err);

/* H or G as double, row-major [cols, cols]. MQ_EINPUT on NaN/Inf or (H only) asymmetry beyond
 * 1e-6 relative. */
mq_status mq_h5_read_matrix(mq_h5_problem *pf, size_t index, mq_matrix which, double *buf,
                            mq_error *err);

#endif

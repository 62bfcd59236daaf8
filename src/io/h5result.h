/* Writing and reading result files (SPEC.md "Result file", format_version 1).
 * A result is created with complete=0; complete=1 is written only by mq_h5_result_finish(),
 * after every layer is in place. mq_h5_result_abort() closes and deletes a partial file so a
 * failed run never leaves a file that claims to be complete. */
#ifndef MQ_IO_H5RESULT_H
#define MQ_IO_H5RESULT_H

#include <stddef.h>
#include "mpiquant.h"

typedef struct mq_h5_result mq_h5_result;

typedef struct mq_result_meta {
  mq_quant_options opts;
  int nranks;
} mq_result_meta;

/* Creates (truncates) path and writes the root attributes: format="mpiquant",
 * format_version=1, mpiquant_version, method ("rtn"|"optq"|"qronos"), rounding
 * ("nearest"|"stochastic"), bits, group_size, sym, act_order, static_groups, damp, seed,
 * nranks, and complete=0. */
mq_status mq_h5_result_create(const char *path, const mq_result_meta *meta,
                              mq_h5_result **out, mq_error *err);

/* Writes group /layers/<name> with qweight uint32 [rows, words], scales float32 [rows,
 * ngroups], zeros int32 [rows, ngroups], g_idx int32 [cols], and the attributes rows, cols,
 * lambda, loss, err, rel_err, bound_l2, bound_linf, err_floor, clipped, lambda_raises,
 * seconds. Names may contain dots (model.layers.0.self_attn.q_proj). */
mq_status mq_h5_result_write_layer(mq_h5_result *rf, const char *name,
                                   const mq_layer_result *res, mq_error *err);

/* Flushes, writes complete=1 last, closes; nulls the handle. */
mq_status mq_h5_result_finish(mq_h5_result **rf, mq_error *err);

/* Closes and unlinks the partial file; accepts NULL; nulls the handle. */
void mq_h5_result_abort(mq_h5_result **rf);

/* --- reading (for `inspect` and tests) --- */

typedef struct mq_result_layer_summary {
  char name[256];
  size_t rows, cols;
  double lambda, loss, err, rel_err, bound_l2, bound_linf, err_floor, seconds;
  long long clipped;
} mq_result_layer_summary;

typedef struct mq_result_summary {
  mq_result_meta meta;
  char mpiquant_version[32];
  int format_version;
  int complete;
  size_t nlayers;
  mq_result_layer_summary *layers; /* [nlayers], malloc'ed, freed by mq_result_summary_free */
} mq_result_summary;

/* MQ_EINPUT when path is not an mpiquant result file (missing format attribute, wrong
 * format_version). An incomplete file is read (complete=0 reported), not rejected. */
mq_status mq_h5_result_read_summary(const char *path, mq_result_summary *sum, mq_error *err);
void mq_result_summary_free(mq_result_summary *sum);

#endif

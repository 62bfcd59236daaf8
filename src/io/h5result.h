/* Writing and reading result files (SPEC.md "Result file", format_version 1).
 *
 * Writing is collective over the communicator given to mq_h5_result_create() (parallel HDF5,
 * MPI-IO driver): every rank calls create, write_layer, finish and abort in the same order, and
 * each rank writes only its own rows of each layer. Every call ends with the ranks agreeing on
 * the status (mq_agree, parallel/ctx.h), so all succeed or all fail together and none is left
 * alone in a collective. On failure the message is in err only on the rank(s) that failed; the
 * others get the failing status with err untouched (the CLI prints the lowest rank that has a
 * message).
 *
 * A result is created with complete=0; complete=1 is written only by mq_h5_result_finish(),
 * after every layer is in place. mq_h5_result_abort() closes and deletes a partial file so a
 * failed run never leaves a file that claims to be complete.
 *
 * Disk space: before every step rank 0 reserves the blocks the step can write (fallocate; see
 * h5result_space.c), and the ranks agree on the outcome before any of them enters HDF5, so a
 * full disk (ENOSPC, EDQUOT) is MQ_EFAIL "<path>: cannot reserve <n> bytes of disk space: ..." on
 * every rank together instead of a failure inside one of HDF5's collectives (a hang).
 *
 * Numbers: a layer whose scalars are not finite (or negative where they cannot be) or whose
 * scales are not finite is refused before anything of it is written: MQ_ENUMERIC
 * "<path>: /layers/<name>: <scalar> = <value> is not a finite non-negative number: ...".
 *
 * Reading (mq_h5_result_read_summary) is serial and rank-local. */
#ifndef MQ_IO_H5RESULT_H
#define MQ_IO_H5RESULT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpiquant.h"

typedef struct mq_h5_result mq_h5_result;

typedef struct mq_result_meta {
  mq_quant_options opts;
  int nranks;
  const char *resume_key; /* quantize: every setting the codes depend on (root attribute
                             resume_key, compared by --resume); NULL: none */
  /* reading: the root attribute checkpoint_hash (16 hex digits), when the file has one */
  int has_checkpoint_hash;
  uint64_t checkpoint_hash;
} mq_result_meta;

/* Collective over comm (the handle keeps a duplicate of it). Creates (truncates) path and
 * writes the root attributes: format="mpiquant", format_version=1, mpiquant_version, method
 * ("rtn"|"optq"|"qronos"), rounding ("nearest"|"stochastic"), bits, group_size, sym,
 * act_order, static_groups, damp, seed, nranks, and complete=0. meta must be identical on every
 * rank. On failure *out is NULL on every rank and a file created here is deleted again. */
mq_status mq_h5_result_create(MPI_Comm comm, const char *path, const mq_result_meta *meta,
                              mq_h5_result **out, mq_error *err);

/* Collective. Writes group /layers/<name> (replacing a partial one left by an interrupted run) of
 * a layer of total_rows rows: qweight uint32
 * [total_rows, words], scales float32 [total_rows, ngroups], zeros int32 [total_rows, ngroups],
 * g_idx int32 [cols], and the attributes rows (= total_rows), cols, lambda, loss, err, rel_err,
 * bound_l2, bound_linf, err_floor, clipped, lambda_raises, seconds, and last layer_complete=1,
 * followed by a flush, so an interrupted run leaves every earlier layer readable.
 *
 * res holds this rank's rows [row0, row0 + res->rows); res->rows may be 0 (qweight, scales and
 * zeros may then be NULL; the rank still takes part). The ranks' row ranges must cover
 * [0, total_rows) exactly once. name, total_rows, res->cols, ngroups, words, bits, g_idx and
 * every scalar attribute must be identical on every rank (reduce them first); a disagreement is
 * reported as an internal error before anything is written. Names may contain dots
 * (model.layers.0.self_attn.q_proj). On failure the handle stays valid for abort(). */
mq_status mq_h5_result_write_layer(mq_h5_result *rf, const char *name, size_t total_rows,
                                   size_t row0, const mq_layer_result *res, mq_error *err);

/* --- resuming an interrupted `quantize` (h5result_resume.c) --- */

typedef enum mq_resume_state {
  MQ_RESUME_NONE = 0,     /* no file at path: create it */
  MQ_RESUME_PARTIAL = 1,  /* opened: complete=0 and the same resume_key */
  MQ_RESUME_COMPLETE = 2  /* the file is complete already: nothing to do (not opened) */
} mq_resume_state;

/* Collective. Opens path for appending when it is a partial result of the same settings
 * (root attribute resume_key equal to key). MQ_EUSAGE "<path>: --resume: ..." when the file
 * is not an mpiquant result or was written with other settings (it is left untouched). A
 * resumed file is never deleted by abort(): it holds the progress. */
mq_status mq_h5_result_open_resume(MPI_Comm comm, const char *path, const char *key,
                                   mq_h5_result **out, mq_resume_state *state, mq_error *err);
/* Local (every rank reads the same file, so all agree): 1 when /layers/<name> was written
 * completely (its attribute layer_complete a single integer equal to 1; anything else, malformed
 * included, is 0: the group is then replaced). */
int mq_h5_result_layer_done(const mq_h5_result *rf, const char *name);
/* Local. Every row of a written layer into res (arrays owned by res, rows = the layer's), read
 * by mq__h5_layer_read (io/h5common.h): shapes checked against bits before any buffer is sized,
 * values checked (g_idx, finite scales, zeros in [0, 2^bits − 1]); MQ_EINPUT
 * "<path>: /layers/<name>: <reason>" naming the result file. */
mq_status mq_h5_result_read_layer(const mq_h5_result *rf, const char *name, int bits,
                                  mq_layer_result *res, mq_error *err);
/* Collective. Removes /model (rewritten whole on resume: it is small next to the layers). */
mq_status mq_h5_result_clear_model(mq_h5_result *rf, mq_error *err);

/* Collective. Flushes, writes complete=1 last, closes; nulls the handle. On failure the file is
 * deleted (as by abort) and the handle nulled too. */
mq_status mq_h5_result_finish(mq_h5_result **rf, mq_error *err);

/* Collective (every rank of the handle calls it, after an agreed failure): closes the file on
 * all ranks, then rank 0 deletes it. Accepts NULL (on every rank); nulls the handle. */
void mq_h5_result_abort(mq_h5_result **rf);
/* Local. The file holds progress to keep (an interrupted run): the next abort() closes it
 * without deleting it, even when this run created it. */
void mq_h5_result_keep_partial(mq_h5_result *rf);

/* --- the model part (written by `quantize`; h5result_model.c) --- */

/* Collective. The root attribute checkpoint_hash: hash (io/checkpoint_source.h,
 * mq_checkpoint_source_hash) as 16 lowercase hex digits, so that `eval --quantized` and
 * `export --model` can refuse another checkpoint. hash must be the same on every rank
 * (MQ_EINPUT naming the result file otherwise: the ranks read different checkpoints). */
mq_status mq_h5_result_set_checkpoint(mq_h5_result *rf, uint64_t hash, mq_error *err);

/* Collective. /model/config: config.json's text as a scalar fixed-length string dataset
 * (h5py reads bytes). json (len bytes) must be identical on every rank. */
mq_status mq_h5_result_write_config(mq_h5_result *rf, const char *json, size_t len,
                                    mq_error *err);

/* Collective. /model/tensors/<name>: a float32 dataset of shape shape[0..ndim) (ndim 1 or 2)
 * with the string attribute dtype (the checkpoint's storage type, "BF16", "F16" or "F32").
 * Only rank 0's data is read (others may pass NULL); name, ndim, shape and dtype must be
 * identical on every rank. */
mq_status mq_h5_result_write_tensor(mq_h5_result *rf, const char *name, const float *data,
                                    int ndim, const size_t *shape, const char *dtype,
                                    mq_error *err);

/* --- reading (for `inspect` and tests) --- */

/* One layer of a result file: its name (truncated to 255 bytes), the attribute rows, and in res
 * the attribute cols and every scalar of MQ_LAYER_SCALARS (core/layer_scalars.h; a missing
 * float64 scalar reads as NaN, a missing int64 one as -1, missing rows/cols as 0); res's other
 * sizes are 0 and its arrays NULL (nothing to free). */
typedef struct mq_result_layer_summary {
  char name[256];
  size_t rows;
  mq_layer_result res;
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
 * format_version) or an attribute it reads is malformed (wrong class, more than one element, a
 * string longer than its field, an integer out of its field's range). Missing optional
 * attributes keep their defaults. An incomplete file is read (complete=0 reported), not
 * rejected. */
mq_status mq_h5_result_read_summary(const char *path, mq_result_summary *sum, mq_error *err);
void mq_result_summary_free(mq_result_summary *sum);

#endif

/* The result-file handle's insides, shared by the writers of src/io/h5result*.c only.
 *
 * Every step of a collective writer that can fail on one rank alone is followed by
 * MQ_AGREE(comm, status) (parallel/ctx.h): the ranks agree on the worst status before the next
 * collective, and a rank that did not fail keeps its error record untouched. */
#ifndef MQ_IO_H5RESULT_INTERNAL_H
#define MQ_IO_H5RESULT_INTERNAL_H

#include <mpi.h>
#include <stdint.h>

#include "hdf5.h"
#include "mpiquant.h"
#include "parallel/ctx.h"

struct mq_h5_result {
  char *path;    /* for messages and abort()'s unlink */
  MPI_Comm comm; /* duplicate of create()'s comm; MPI_COMM_NULL until every rank has a handle */
  int rank;      /* in comm; rank 0 writes g_idx and unlinks in abort() */
  int created;   /* H5Fcreate succeeded (on every rank): abort() may delete the file */
  hid_t file;
  hid_t layers; /* the /layers group */
  hid_t dxpl;   /* dataset transfer: H5FD_MPIO_COLLECTIVE */
  int fd;       /* rank 0: the file opened once more, for space reservations; else -1 */
  int unreserved; /* the file system cannot reserve space (said once) */
};

/* Collective. A handle on path for every rank of comm: the file created (truncated; it must
 * not be open in this process) or, with append, opened read-write (never deleted by abort()).
 * *out is NULL on every rank on failure. */
mq_status mq__h5_result_open(MPI_Comm comm, const char *path, int append,
                             struct mq_h5_result **out, mq_error *err);

/* Metadata (every rank, identical arguments). Scalar attribute `name` of loc, a variable-length
 * UTF-8 string (h5py reads str), created or overwritten. `obj` names loc in messages ("/",
 * "/layers/<name>", "/model/tensors/<name>"). */
mq_status mq__h5_result_attr_str(const struct mq_h5_result *rf, hid_t loc, const char *obj,
                                 const char *name, const char *v, mq_error *err);

/* Disk space (h5result_space.c). Local: rank 0 opens rf->path for reservations (rf->fd). */
mq_status mq__h5_result_space_open(struct mq_h5_result *rf, mq_error *err);
void mq__h5_result_space_close(struct mq_h5_result *rf);
/* Collective, agreed: rank 0 reserves the blocks of [0, file size + extra + slack) before a step
 * writes; MQ_EFAIL "<path>: cannot reserve <n> bytes of disk space: <errno>". */
mq_status mq__h5_result_reserve(struct mq_h5_result *rf, uint64_t extra, mq_error *err);

#endif

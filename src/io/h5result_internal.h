/* The result-file handle's insides, shared by the writers of src/io/h5result*.c only. */
#ifndef MQ_IO_H5RESULT_INTERNAL_H
#define MQ_IO_H5RESULT_INTERNAL_H

#include <mpi.h>

#include "hdf5.h"
#include "mpiquant.h"

struct mq_h5_result {
  char *path;    /* for messages and abort()'s unlink */
  MPI_Comm comm; /* duplicate of create()'s comm; MPI_COMM_NULL until every rank has a handle */
  int rank;      /* in comm; rank 0 writes g_idx and unlinks in abort() */
  int created;   /* H5Fcreate succeeded (on every rank): abort() may delete the file */
  hid_t file;
  hid_t layers; /* the /layers group */
  hid_t dxpl;   /* dataset transfer: H5FD_MPIO_COLLECTIVE */
};

/* Collective. A handle on path for every rank of comm: the file created (truncated; it must
 * not be open in this process) or, with append, opened read-write (never deleted by abort()).
 * *out is NULL on every rank on failure. */
mq_status mq__h5_result_open(MPI_Comm comm, const char *path, int append,
                             struct mq_h5_result **out, mq_error *err);

/* ---- agreement ---- */

/* The worst status of all ranks. A rank that did not fail keeps its err untouched: the message
 * belongs to the rank that failed. Collective over comm. */
static inline mq_status agree(MPI_Comm comm, mq_status st) {
  int mine = (int)st, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MAX, comm);
  return (mq_status)all;
}

/* After a step: st becomes the agreed status; on failure every rank goes to cleanup. */
#define MQ_AGREE(comm)                          \
  do {                                          \
    st = agree((comm), st);                     \
    if (st != MQ_OK) goto cleanup;              \
  } while (0)

#endif

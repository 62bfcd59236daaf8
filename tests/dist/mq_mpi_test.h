/* The MPI side of tests/mq_test.h: every rank counts its own checks; the closing line sums
 * them over MPI_COMM_WORLD and rank 0 prints it. */
#ifndef MQ_MPI_TEST_H
#define MQ_MPI_TEST_H

#include <mpi.h>

#include "mq_test.h"

/* Collective over MPI_COMM_WORLD. Returns the exit status every rank should return. */
static int mq_mpi_test_finish(const char *name) {
  int mine[2] = {mq_test_checks, mq_test_failures}, all[2], rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Allreduce(mine, all, 2, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  mq_test_checks = all[0];
  mq_test_failures = all[1];
  if (rank == 0) mq_test_finish(name);
  return mq_test_failures == 0 ? 0 : 1;
}

#endif

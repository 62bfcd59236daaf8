/* The MPI side of tests/mq_test.h: failed checks also print the rank (MPI_COMM_WORLD) that saw
 * them; every rank counts its own checks; the closing line sums them over MPI_COMM_WORLD and
 * rank 0 prints it. Include this instead of mq_test.h (not after it). */
#ifndef MQ_MPI_TEST_H
#define MQ_MPI_TEST_H

#include <mpi.h>

#if defined(MQ_TEST_H) && !defined(MQ_TEST_RANK_HOOK)
#error "include parallel/mq_mpi_test.h before (instead of) mq_test.h"
#endif
#define MQ_TEST_RANK_HOOK mq_mpi_test_rank
#include "mq_test.h"

/* The rank of this process in MPI_COMM_WORLD; −1 outside MPI_Init … MPI_Finalize. */
static int mq_mpi_test_rank(void) {
  int up = 0, down = 0, rank = -1;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (up && !down) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

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

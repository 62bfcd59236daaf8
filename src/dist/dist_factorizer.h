/* The ScaLAPACK factorizer (core/factorizer.h on top of scalapack_factor.h): pdpotrf on a 2-D
 * block-cyclic grid over the communicator, panels fetched collectively just in time. */
#ifndef MQ_DIST_DIST_FACTORIZER_H
#define MQ_DIST_DIST_FACTORIZER_H

#include <mpi.h>

#include "core/factorizer.h"
#include "dist/scalapack_factor.h"

typedef struct mq_dist_factorizer_ctx {
  MPI_Comm comm;
  int nb;             /* block size of the block-cyclic layout */
  mq_dist_factor *f;  /* created by factor(), destroyed by mq_dist_factorizer_release() */
} mq_dist_factorizer_ctx;

void mq_dist_factorizer(mq_factorizer *out, mq_dist_factorizer_ctx *ctx, MPI_Comm comm, int nb);
/* Collective. */
void mq_dist_factorizer_release(mq_dist_factorizer_ctx *ctx);

#endif

/* The ScaLAPACK factorizer (core/factorizer.h on top of scalapack_factor.h): pdpotrf on a 2-D
 * block-cyclic grid over the communicator, panels fetched collectively just in time. */
#ifndef MQ_DIST_DIST_FACTORIZER_H
#define MQ_DIST_DIST_FACTORIZER_H

#include <mpi.h>

#include "core/factorizer.h"
#include "parallel/scalapack_factor.h"

/* Distributed H: fills this rank's blocks of B (scalapack_factor.h) when factor() is called
 * with H = NULL. Local; the factorizer agrees on the status before the Cholesky. */
typedef mq_status (*mq_dist_fill_fn)(void *fill_ctx, mq_dist_factor *f, const size_t *perm,
                                     mq_error *err);

typedef struct mq_dist_factorizer_ctx {
  mq_ctx *ctx;        /* the ranks factoring together */
  int nb;             /* block size of the block-cyclic layout */
  mq_dist_fill_fn fill; /* NULL unless H is distributed */
  void *fill_ctx;
  mq_dist_factor *f;  /* created by factor(), destroyed by mq_dist_factorizer_release() */
  /* Traffic phases (traffic.h): factor() counts as factor (its fill as sums) and leaves the
   * current phase at what fetches the panels next: Qronos' refit when refit_panels is set
   * (its panels come from the last column down to column 0, then the sweep's), else the
   * sweep. The caller restores its own phase after mq_quantize_rows. */
  int refit_panels;
} mq_dist_factorizer_ctx;

void mq_dist_factorizer(mq_factorizer *out, mq_dist_factorizer_ctx *ctx, mq_ctx *mctx, int nb);
/* The same for a distributed H, filled by fill(fill_ctx, ...) instead of from a replicated H. */
void mq_dist_factorizer_filled(mq_factorizer *out, mq_dist_factorizer_ctx *ctx, mq_ctx *mctx,
                               int nb, mq_dist_fill_fn fill, void *fill_ctx);
/* Collective. */
void mq_dist_factorizer_release(mq_dist_factorizer_ctx *ctx);

#endif

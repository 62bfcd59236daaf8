/* The context every collective call runs on (PETSc's idiom): one duplicated communicator, this
 * rank's place in it, the first error this rank saw, and what it handed to MPI. Created by
 * mq_ctx_create(comm, &ctx), released by mq_ctx_destroy(&ctx) (mpiquant.h).
 *
 * Collective error handling has one primitive and one macro. A step that can fail on some
 * ranks only records its cause in ctx->err (mq__fail) on those ranks; before the next
 * collective every rank calls mq_agree(), which returns the worst status of all ranks and
 * leaves a healthy rank's error record untouched, so the message printed is the failing rank's
 * own cause. MQ_AGREE(comm, expr) does both and jumps to the function's cleanup label. */
#ifndef MQ_PARALLEL_CTX_H
#define MQ_PARALLEL_CTX_H

#include <mpi.h>
#include <stddef.h>

#include "core/status.h"
#include "mpiquant.h"

/* What this rank handed to MPI reductions, broadcasts and gathers (the payload, not what the
 * algorithm moved on the wire, and not ScaLAPACK's traffic inside pdpotrf). */
typedef struct mq_comm_counters {
  double bytes;
  double messages;
} mq_comm_counters;

struct mq_ctx {
  MPI_Comm comm;         /* duplicate of the creator's communicator, owned */
  int rank, size;        /* in comm */
  mq_error err;          /* this rank's first failure */
  mq_comm_counters sent; /* since creation or the last mq__ctx_counters_reset */
  int verbosity;         /* mq_log_level of this context's messages */
};

/* Collective over comm: the worst status of all ranks (MPI_MAX). Never writes an error record:
 * the ranks that failed have recorded their own cause. */
mq_status mq_agree(MPI_Comm comm, mq_status mine);

/* Inside a function with `mq_status st` and a `cleanup:` label: st becomes the status all
 * ranks of comm agree on after expr, and every rank jumps to cleanup when any failed. */
#define MQ_AGREE(comm, expr)                 \
  do {                                       \
    st = mq_agree((comm), (expr));           \
    if (st != MQ_OK) goto cleanup;           \
  } while (0)

/* Collective over ctx. A context for the ranks of ctx with the same color (MPI_Comm_split,
 * ordered by rank); the child has its own error record. */
mq_status mq__ctx_split(mq_ctx *ctx, int color, mq_ctx **out);
/* A failing child's cause becomes the parent's (the first failure wins, as in mq__fail). */
void mq__ctx_adopt_error(mq_ctx *parent, const mq_ctx *child);

void mq__ctx_count(mq_ctx *ctx, size_t bytes);
void mq__ctx_counters_reset(mq_ctx *ctx);

#endif

/* A layer of a layer-problem file (h5problem.h) as a source for the layer engine
 * (mq_layer_source, mpiquant.h): samples, rows of W, H and G read from the file by whichever
 * rank asks. The handle stays owned by the caller and must outlive the source. */
#ifndef MQ_IO_PROBLEM_SOURCE_H
#define MQ_IO_PROBLEM_SOURCE_H

#include "io/h5problem.h"
#include "mpiquant.h"

typedef struct mq_problem_source_ctx {
  mq_h5_problem *pf;
  size_t index;
} mq_problem_source_ctx;

/* Layer `index` of pf; ctx is the source's user data (caller-owned, same lifetime). */
void mq_problem_source(mq_layer_source *src, mq_problem_source_ctx *ctx, mq_h5_problem *pf,
                       size_t index);

#endif

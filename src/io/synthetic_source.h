/* A layer generated in memory for benchmarks (`mpiquant bench`): W [rows, cols] ~ 0.02·U,
 * calibration inputs X [n, cols] of unit variance with every 97th input channel an outlier
 * channel (×20), and with `mismatch` X̃ = X + 5% noise. Every value is a counter-based hash of
 * its index, so every rank generates the same matrix. The samples are generated once and held
 * as float32, as `quantize` holds its activations, so a benchmark of the Hessian phase measures
 * the sums and not the generator. */
#ifndef MQ_IO_SYNTHETIC_SOURCE_H
#define MQ_IO_SYNTHETIC_SOURCE_H

#include <stddef.h>

#include "mpiquant.h"

typedef struct mq_synthetic_layer {
  size_t cols;
  float *X, *Xq; /* [n, cols]; Xq NULL without mismatch */
} mq_synthetic_layer;

/* l is the source's user data (caller-owned, same lifetime; mq_synthetic_layer_free). */
mq_status mq_synthetic_source(mq_layer_source *src, mq_synthetic_layer *l, size_t rows,
                              size_t cols, size_t n, int mismatch, mq_error *err);
void mq_synthetic_layer_free(mq_synthetic_layer *l);

#endif

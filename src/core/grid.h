/* The quantization grid of ALGORITHMS §2: per (row, group) a scale δ and an integer zero point;
 * code = clamp(round(x/δ) + zero, 0, maxq), value δ·(code − zero). Round half to even.
 * Stochastic rounding draws from Philox4x32-10 keyed by (seed, layer, row, column), so results
 * never depend on rank count, thread count or processing order. */
#ifndef MQ_CORE_GRID_H
#define MQ_CORE_GRID_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mq_grid {
  int bits, maxq;
  int sym, mse;
  int scale_fp16; /* scales rounded up to float16 values */
  int stochastic;
  uint64_t seed, layer; /* stochastic key */
} mq_grid;

void mq_grid_init(mq_grid *g, int bits, int sym, int mse, int stochastic, uint64_t seed,
                  uint64_t layer);
/* The smallest float16 value ≥ s (s > 0), as a float; 2^-24 (float16's least positive value)
 * for anything below it, 65504 caps the range. */
float mq_grid_fp16_ceil(float s);

/* Grid parameters of the n values x[0], x[stride], … (min/max range, optionally the MSE
 * search of the clipping factor). */
void mq_grid_params(const mq_grid *g, const float *x, size_t n, size_t stride, float *scale,
                    int32_t *zero);

/* The uniform draw in [0, 1) of entry (row, col) of this grid's layer (53 random bits). */
double mq_grid_uniform(const mq_grid *g, uint64_t row, uint64_t col);

int mq__grid_code_stochastic(const mq_grid *g, double x, float scale, int32_t zero, uint64_t row,
                             uint64_t col, int64_t *clipped);

/* Round-to-nearest (half to even) code of x. */
static inline int mq_grid_code_nearest(double x, float scale, int32_t zero, int maxq,
                                       int64_t *clipped) {
  double q = nearbyint(x / (double)scale) + zero;
  if (q < 0 || q > maxq) {
    if (clipped != NULL) (*clipped)++;
    q = q < 0 ? 0 : maxq;
  }
  return (int)q;
}

/* Code of x. row/col are the ORIGINAL indices (stochastic key). *clipped += 1 when the
 * rounded value fell outside [0, maxq]. Inline: it runs once per weight. */
static inline int mq_grid_code(const mq_grid *g, double x, float scale, int32_t zero,
                               uint64_t row, uint64_t col, int64_t *clipped) {
  if (g->stochastic) return mq__grid_code_stochastic(g, x, scale, zero, row, col, clipped);
  return mq_grid_code_nearest(x, scale, zero, g->maxq, clipped);
}

/* The dequantized value, exact in double (the file's definition: scale · (code − zero)). */
static inline double mq_grid_value(float scale, int32_t zero, int code) {
  return (double)scale * (double)(code - zero);
}

#endif

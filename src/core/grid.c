#include "core/grid.h"

#include <math.h>

#include <Random123/philox.h>

void mq_grid_init(mq_grid *g, int bits, int sym, int mse, int stochastic, uint64_t seed,
                  uint64_t layer) {
  g->bits = bits;
  g->maxq = (1 << bits) - 1;
  g->sym = sym;
  g->mse = mse;
  g->scale_fp16 = 0; /* set by the caller that wants it */
  g->stochastic = stochastic;
  g->seed = seed;
  g->layer = layer;
}

float mq_grid_fp16_ceil(float s) {
  if (!(s > 0x1p-24f)) return 0x1p-24f;
  if (s >= 65504.0f) return 65504.0f;
  int e;
  (void)frexpf(s, &e);             /* s = m·2^e, m in [0.5, 1) */
  int lsb = e - 11 < -24 ? -24 : e - 11; /* float16: 11 significant bits, subnormals 2^-24 */
  return ldexpf(ceilf(ldexpf(s, -lsb)), lsb);
}

/* Scale and zero of the range [xmin, xmax] (xmin <= 0 <= xmax, not both 0). The scale is
 * rounded to float32 first because that is what the result file stores and dequantizes with;
 * with scale_fp16 up to a float16 value (up: the range stays covered, nothing new clips). */
static void range_params(const mq_grid *g, double xmin, double xmax, float *scale,
                         int32_t *zero) {
  float s = (float)((xmax - xmin) / g->maxq);
  if (g->scale_fp16) s = mq_grid_fp16_ceil(s);
  *scale = s;
  *zero = g->sym ? (int32_t)(1 << (g->bits - 1)) : (int32_t)nearbyint(-xmin / (double)s);
}

/* GPTQ's clipping search: shrink the range by p = 1, 0.99, ..., 0.21 and keep the first p with
 * the smallest Σ|Q(x) − x|^2.4. */
static void mse_search(const mq_grid *g, const float *x, size_t n, size_t stride, double xmin,
                       double xmax, float *scale, int32_t *zero) {
  double best = INFINITY;
  for (int i = 0; i < 80; i++) {
    double p = 1.0 - i / 100.0;
    float s;
    int32_t z;
    range_params(g, p * xmin, p * xmax, &s, &z);
    double e = 0.0;
    for (size_t k = 0; k < n && e < best; k++) {
      double v = x[k * stride];
      double d = mq_grid_value(s, z, mq_grid_code_nearest(v, s, z, g->maxq, NULL)) - v;
      e += pow(fabs(d), 2.4);
    }
    if (e < best) {
      best = e;
      *scale = s;
      *zero = z;
    }
  }
}

void mq_grid_params(const mq_grid *g, const float *x, size_t n, size_t stride, float *scale,
                    int32_t *zero) {
  double xmin = 0.0, xmax = 0.0;
  for (size_t k = 0; k < n; k++) {
    double v = x[k * stride];
    if (v < xmin) xmin = v;
    if (v > xmax) xmax = v;
  }
  if (g->sym) {
    xmax = fmax(-xmin, xmax);
    xmin = -xmax;
  }
  if (xmin == 0.0 && xmax == 0.0) {
    xmin = -1.0;
    xmax = 1.0;
  }
  range_params(g, xmin, xmax, scale, zero);
  if (g->mse) mse_search(g, x, n, stride, xmin, xmax, scale, zero);
}

/* Uniform double in [0, 1) from 53 random bits. Counter = (column, row, layer): rows and
 * columns of one layer are far below 2^32, so the triple never collides. */
double mq_grid_uniform(const mq_grid *g, uint64_t row, uint64_t col) {
  philox4x32_ctr_t ctr = {{(uint32_t)col, (uint32_t)row, (uint32_t)g->layer,
                           (uint32_t)(g->layer >> 32)}};
  philox4x32_key_t key = {{(uint32_t)g->seed, (uint32_t)(g->seed >> 32)}};
  philox4x32_ctr_t r = philox4x32(ctr, key);
  uint64_t bits53 = ((uint64_t)r.v[0] << 21) ^ (uint64_t)(r.v[1] >> 11);
  return (double)bits53 * 0x1.0p-53;
}

int mq__grid_code_stochastic(const mq_grid *g, double x, float scale, int32_t zero, uint64_t row,
                             uint64_t col, int64_t *clipped) {
  double t = x / (double)scale;
  double f = floor(t);
  double q = f + zero + (mq_grid_uniform(g, row, col) < t - f ? 1.0 : 0.0);
  if (q < 0 || q > g->maxq) {
    if (clipped != NULL) (*clipped)++;
    q = q < 0 ? 0 : g->maxq;
  }
  return (int)q;
}

/* Grid parameters and rounding of ALGORITHMS §2, on hand-computed cases. */
#include <stdint.h>

#include "core/grid.h"
#include "mq_test.h"

static void test_asym(void) {
  mq_grid g;
  mq_grid_init(&g, 4, 0, 0, 0, 0, 0);
  float x[] = {-1.0f, 0.5f, 2.0f};
  float scale;
  int32_t zero;
  mq_grid_params(&g, x, 3, 1, &scale, &zero);
  MQ_EXPECT_NEAR(scale, 3.0 / 15.0, 1e-7); /* (2 − (−1)) / 15 */
  MQ_EXPECT_EQ_INT(zero, 5);               /* round(1 / 0.2) */
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, 2.0f, scale, zero, 0, 0, NULL), 15);
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, -1.0f, scale, zero, 0, 0, NULL), 0);
}

static void test_sym_and_positive_range(void) {
  mq_grid g;
  mq_grid_init(&g, 3, 1, 0, 0, 0, 0);
  float x[] = {0.25f, 0.5f, 0.75f}; /* all positive: xmin = min(0, ·) = 0, sym → [−0.75, 0.75] */
  float scale;
  int32_t zero;
  mq_grid_params(&g, x, 3, 1, &scale, &zero);
  MQ_EXPECT_NEAR(scale, 1.5 / 7.0, 1e-7);
  MQ_EXPECT_EQ_INT(zero, 4);
  float z[] = {0.0f, 0.0f};
  mq_grid_params(&g, z, 2, 1, &scale, &zero); /* all zero → [−1, 1] */
  MQ_EXPECT_NEAR(scale, 2.0 / 7.0, 1e-7);
}

static void test_half_even_and_clipping(void) {
  mq_grid g;
  mq_grid_init(&g, 2, 0, 0, 0, 0, 0);
  int64_t clipped = 0;
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, 0.5f, 1.0f, 0, 0, 0, &clipped), 0);  /* 0.5 → 0 */
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, 1.5f, 1.0f, 0, 0, 0, &clipped), 2);  /* 1.5 → 2 */
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, 2.5f, 1.0f, 0, 0, 0, &clipped), 2);  /* 2.5 → 2 */
  MQ_EXPECT_EQ_INT(clipped, 0);
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, 7.0f, 1.0f, 0, 0, 0, &clipped), 3);
  MQ_EXPECT_EQ_INT(mq_grid_code(&g, -2.0f, 1.0f, 0, 0, 0, &clipped), 0);
  MQ_EXPECT_EQ_INT(clipped, 2);
}

/* The MSE search never does worse (in Σ|err|^2.4) than the full range, and shrinks the range
 * when one outlier dominates. */
static void test_mse(void) {
  mq_grid g0, g1;
  mq_grid_init(&g0, 3, 0, 0, 0, 0, 0);
  mq_grid_init(&g1, 3, 0, 1, 0, 0, 0);
  float x[64];
  for (int k = 0; k < 64; k++) x[k] = (float)((k % 9) - 4) * 0.01f;
  x[5] = 1.0f;
  float s0, s1;
  int32_t z0, z1;
  mq_grid_params(&g0, x, 64, 1, &s0, &z0);
  mq_grid_params(&g1, x, 64, 1, &s1, &z1);
  double e0 = 0, e1 = 0;
  for (int k = 0; k < 64; k++) {
    e0 += pow(fabs(mq_grid_value(s0, z0, mq_grid_code(&g0, x[k], s0, z0, 0, 0, NULL)) - x[k]), 2.4);
    e1 += pow(fabs(mq_grid_value(s1, z1, mq_grid_code(&g1, x[k], s1, z1, 0, 0, NULL)) - x[k]), 2.4);
  }
  MQ_EXPECT_LE(e1, e0);
  MQ_EXPECT_LT(s1, s0);
}

/* Stochastic rounding: only the two neighbours, deterministic per key, mean ≈ x. */
static void test_stochastic(void) {
  mq_grid g;
  mq_grid_init(&g, 8, 0, 0, 1, 42, 3);
  double sum = 0.0;
  int n = 20000, others = 0;
  for (int k = 0; k < n; k++) {
    int c = mq_grid_code(&g, 10.3f, 1.0f, 0, (uint64_t)k, 7, NULL);
    others += c != 10 && c != 11;
    sum += c;
    MQ_EXPECT_EQ_INT(c, mq_grid_code(&g, 10.3f, 1.0f, 0, (uint64_t)k, 7, NULL));
  }
  MQ_EXPECT_EQ_INT(others, 0);
  /* mean of Bernoulli(0.3) over 20000 draws: sd = sqrt(0.21/20000) ≈ 0.0032; 5 sd */
  MQ_EXPECT_NEAR(sum / n, 10.3, 0.016 / 10.3);
}

/* --scale-dtype float16: the scale is the smallest float16 value not below the float32 one, so
 * it is representable (a float16 round trip keeps it), never smaller (the range stays
 * covered), and within one float16 step. */
static void test_fp16_scales(void) {
  mq_grid g;
  mq_grid_init(&g, 4, 1, 0, 0, 0, 0);
  g.scale_fp16 = 1;
  float x[3] = {-1.0f, 0.3f, 1.5f};
  for (int k = 0; k < 2000; k++) {
    float s, s32;
    int32_t z;
    x[2] = 1.5f + (float)k * 1.37e-3f;
    g.scale_fp16 = 0;
    mq_grid_params(&g, x, 3, 1, &s32, &z);
    g.scale_fp16 = 1;
    mq_grid_params(&g, x, 3, 1, &s, &z);
    _Float16 h = (_Float16)s;
    MQ_EXPECT_EQ_DBL((double)(float)h, (double)s);
    MQ_EXPECT_GE(s, s32);
    MQ_EXPECT_LE(s, s32 * (1.0f + 0x1p-10f));
  }
  MQ_EXPECT_EQ_DBL(mq_grid_fp16_ceil(1e-30f), 0x1p-24);
  MQ_EXPECT_EQ_DBL(mq_grid_fp16_ceil(1e9f), 65504.0);
}

int main(void) {
  test_asym();
  test_sym_and_positive_range();
  test_half_even_and_clipping();
  test_mse();
  test_stochastic();
  test_fp16_scales();
  return mq_test_finish("test_grid");
}

/* The error identity of ALGORITHMS §5 on random problems, for every grouping mode: the sweep's
 * loss equals Σ_rows (w−ŵ)ᵀ(H+λI)(w−ŵ) recomputed in double from the packed result; and the
 * result does not depend on the block size (blocking is an implementation detail). */
#include <stdlib.h>
#include <string.h>

#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/pack.h"
#include "mq_test.h"

enum { ROWS = 37, COLS = 150, N = 300 };

static double rnd(void) { return (double)rand() / RAND_MAX - 0.5; }

static void make_problem(float *W, double *H) {
  static double X[N * COLS];
  for (int k = 0; k < N; k++)
    for (int c = 0; c < COLS; c++) /* correlated inputs, a dead column, outlier channels */
      X[k * COLS + c] = c == 17 ? 0.0 : rnd() * (c % 23 == 0 ? 8.0 : 1.0) + (c > 0 ? 0.5 * X[k * COLS + c - 1] : 0);
  for (int k = 0; k < ROWS * COLS; k++) W[k] = (float)(rnd() * 0.1);
  memset(H, 0, sizeof(double) * COLS * COLS);
  mq_hessian_accumulate(H, COLS, X, N);
  mq_hessian_finalize(H, COLS, N);
}

static double recomputed_loss(const float *W, const double *H, const mq_layer_result *res) {
  static float What[ROWS * COLS];
  mq_error err;
  mq_error_clear(&err);
  mq_layer_result_dequantize(res, What, &err);
  double total = 0;
  for (int r = 0; r < ROWS; r++) {
    double d[COLS];
    for (int c = 0; c < COLS; c++) /* dead column 17: the sweep's w is 0 there (§3.1) */
      d[c] = (c == 17 ? 0.0 : (double)W[r * COLS + c]) - What[r * COLS + c];
    for (int i = 0; i < COLS; i++)
      for (int j = 0; j < COLS; j++)
        total += d[i] * (H[i * COLS + j] + (i == j ? res->lambda : 0.0)) * d[j];
  }
  return total;
}

static void check_config(int bits, int group, int act_order, int static_groups, int block) {
  static float W[ROWS * COLS];
  static double H[COLS * COLS], Hrun[COLS * COLS];
  make_problem(W, H);
  memcpy(Hrun, H, sizeof H);
  mq_quant_options o;
  mq_quant_options_init(&o);
  o.bits = bits;
  o.group_size = group;
  o.act_order = act_order;
  o.static_groups = static_groups;
  o.block_size = block;
  mq_layer_result res;
  mq_error err;
  mq_error_clear(&err);
  mq_layer_input in = {.name = "t", .rows = ROWS, .cols = COLS, .W = W, .H = Hrun};
  MQ_EXPECT_EQ_INT(mq_layer_quantize(&in, &o, &res, NULL, &err), MQ_OK);
  MQ_EXPECT_NEAR(res.loss, recomputed_loss(W, H, &res), 1e-6);
  /* bound holds when nothing was clipped */
  if (res.clipped == 0) MQ_EXPECT(res.loss <= res.bound_l2);
  /* block size 128 vs 16: the same codes */
  mq_layer_result res2;
  memcpy(Hrun, H, sizeof H);
  o.block_size = 16;
  MQ_EXPECT_EQ_INT(mq_layer_quantize(&in, &o, &res2, NULL, &err), MQ_OK);
  /* Blocking changes float rounding only: ≥ 99% of codes agree. */
  size_t differ = 0;
  for (size_t r = 0; r < ROWS; r++) {
    uint8_t c1[COLS], c2[COLS];
    mq_unpack_row(res.qweight + r * res.words, COLS, bits, c1);
    mq_unpack_row(res2.qweight + r * res.words, COLS, bits, c2);
    for (size_t c = 0; c < COLS; c++) differ += c1[c] != c2[c];
  }
  if (differ > ROWS * COLS / 100)
    fprintf(stderr, "bits %d group %d act %d static %d: %zu codes differ\n", bits, group,
            act_order, static_groups, differ);
  MQ_EXPECT(differ <= ROWS * COLS / 100);
  mq_layer_result_free(&res);
  mq_layer_result_free(&res2);
}

int main(void) {
  mq_log_setup(MQ_LOG_ERROR, 0, 0);
  srand(3);
  int groups[] = {-1, 16, 32, 50, 128, 200};
  for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
    check_config(4, groups[g], 1, 0, 128);
    check_config(3, groups[g], 0, 0, 64);
    check_config(2, groups[g], 1, 1, 128);
  }
  check_config(8, 32, 1, 0, 7);
  return mq_test_finish("test_layer");
}

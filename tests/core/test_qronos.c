/* Qronos in the serial engine: the §5 identity at λ = 0,
 *   ‖XWᵀ − X̃Ŵᵀ‖²/n = err_floor + Σ_{i≥1} e_i²,  err_floor = e₀² + ‖(X−X̃)w‖²/n − ‖t‖²,
 * with every term computed independently (err from the samples here, e and t by the sweep);
 * Qronos' error below OPTQ's on mismatched inputs; Qronos = OPTQ when X̃ = X. */
#include <stdlib.h>
#include <string.h>

#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/pack.h"
#include "mq_test.h"

enum { ROWS = 24, COLS = 40, N = 400 };

static double rnd(void) { return (double)rand() / RAND_MAX - 0.5; }

static double X[N * COLS], Xq[N * COLS];
static float W[ROWS * COLS];

static void make_problem(double noise) {
  for (int k = 0; k < N * COLS; k++) X[k] = rnd() * (k % COLS == 3 ? 6.0 : 1.0);
  for (int k = 0; k < N * COLS; k++) Xq[k] = X[k] + noise * rnd();
  for (int k = 0; k < ROWS * COLS; k++) W[k] = (float)rnd();
}

/* ‖XWᵀ − X̃Ŵᵀ‖²/n and ‖(X−X̃)Wᵀ‖²/n directly. */
static void sample_errors(const float *What, double *err, double *mismatch) {
  *err = *mismatch = 0;
  for (int k = 0; k < N; k++)
    for (int r = 0; r < ROWS; r++) {
      double y = 0, m = 0;
      for (int c = 0; c < COLS; c++) {
        y += X[k * COLS + c] * W[r * COLS + c] - Xq[k * COLS + c] * What[r * COLS + c];
        m += (X[k * COLS + c] - Xq[k * COLS + c]) * W[r * COLS + c];
      }
      *err += y * y / N;
      *mismatch += m * m / N;
    }
}

static void run(mq_method method, int bits, double lambda, int use_g, mq_layer_result *res,
                mq_rows_info *info) {
  static double H[COLS * COLS], G[COLS * COLS];
  memset(H, 0, sizeof H);
  memset(G, 0, sizeof G);
  mq_hessian_accumulate(H, COLS, Xq, N);
  mq_hessian_finalize(H, COLS, N);
  mq_hessian_cross_accumulate(G, COLS, Xq, X, N);
  mq_hessian_scale(G, COLS, N);
  mq_quant_options o;
  mq_quant_options_init(&o);
  o.method = method;
  o.bits = bits;
  o.group_size = 16;
  o.lambda_mode = MQ_LAMBDA_ABSOLUTE;
  o.lambda = lambda;
  mq_rows_input in = {.name = "t", .rows = ROWS, .cols = COLS, .W = W, .H = H,
                       .G = use_g ? G : NULL};
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_quantize_rows(&in, &o, res, info, &err), MQ_OK);
}

static void test_identity(void) {
  make_problem(0.3);
  mq_layer_result res;
  mq_rows_info info;
  run(MQ_METHOD_QRONOS, 3, 0.0, 1, &res, &info);
  static float What[ROWS * COLS];
  mq_error err;
  mq_error_clear(&err);
  mq_layer_result_dequantize(&res, What, &err);
  double e, mismatch;
  sample_errors(What, &e, &mismatch);
  double floor = info.e0_sq + mismatch - info.t_sq;
  MQ_EXPECT_GE(floor, 0);
  MQ_EXPECT_NEAR(e, floor + (res.loss - info.e0_sq), 1e-6);
  mq_layer_result_free(&res);
  mq_rows_info_free(&info);
}

static void test_better_than_optq(void) {
  for (int bits = 2; bits <= 4; bits++) {
    make_problem(0.3);
    mq_layer_result rq, ro;
    run(MQ_METHOD_QRONOS, bits, 1e-3, 1, &rq, NULL);
    run(MQ_METHOD_OPTQ, bits, 1e-3, 1, &ro, NULL);
    static float Wq[ROWS * COLS], Wo[ROWS * COLS];
    mq_error err;
    mq_error_clear(&err);
    mq_layer_result_dequantize(&rq, Wq, &err);
    mq_layer_result_dequantize(&ro, Wo, &err);
    double eq, eo, m;
    sample_errors(Wq, &eq, &m);
    sample_errors(Wo, &eo, &m);
    if (!(eq < eo)) fprintf(stderr, "bits %d: qronos err not below optq's:\n", bits);
    MQ_EXPECT_LT(eq, eo);
    mq_layer_result_free(&rq);
    mq_layer_result_free(&ro);
  }
}

static void test_equals_optq_without_mismatch(void) {
  make_problem(0.0);
  mq_layer_result rq, ro;
  run(MQ_METHOD_QRONOS, 4, 1e-2, 0, &rq, NULL);
  run(MQ_METHOD_OPTQ, 4, 1e-2, 0, &ro, NULL);
  size_t differ = 0;
  for (size_t r = 0; r < ROWS; r++) {
    uint8_t a[COLS], b[COLS];
    mq_unpack_row(rq.qweight + r * rq.words, COLS, 4, a);
    mq_unpack_row(ro.qweight + r * ro.words, COLS, 4, b);
    for (size_t c = 0; c < COLS; c++) differ += a[c] != b[c];
  }
  MQ_EXPECT_EQ_INT(differ, 0);
  mq_layer_result_free(&rq);
  mq_layer_result_free(&ro);
}

int main(void) {
  mq_log_setup(MQ_LOG_ERROR, 0, 0);
  srand(11);
  test_identity();
  test_better_than_optq();
  test_equals_optq_without_mismatch();
  return mq_test_finish("test_qronos");
}

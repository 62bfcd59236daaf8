/* The error identity of ALGORITHMS §5 on random problems, for every grouping mode: the sweep's
 * loss equals Σ_rows (w−ŵ)ᵀ(H+λI)(w−ŵ) recomputed in double from the packed result; the §6
 * bound loss ≤ bound_l2 = Σ δ²/(4U_ii²) whenever nothing was clipped (deterministic rounding);
 * and the result does not depend on the block size (blocking is an implementation detail).
 *
 * The general problems (correlated inputs, a dead column, outlier channels) clip in every
 * configuration — a symmetric grid clips the largest positive weight by construction (+7.5
 * steps rounds to +8) — so the bound is checked on problems built not to clip
 * (make_unclipped_problem), and the test fails if it was checked nowhere. */
#include <stdlib.h>
#include <string.h>

#include "core/hessian.h"
#include "core/layer.h"
#include "core/log.h"
#include "core/pack.h"
#include "mq_test.h"

enum { ROWS = 37, COLS = 150, N = 300, N_WELL = 1200 };

static double rnd(void) { return (double)rand() / RAND_MAX - 0.5; }

typedef struct problem {
  float W[ROWS * COLS];
  double H[COLS * COLS];
  int dead; /* the column whose inputs are all 0 (the sweep's w is 0 there, §3.1), or −1 */
} problem;

static void make_problem(problem *p) {
  static double X[N * COLS];
  for (int k = 0; k < N; k++)
    for (int c = 0; c < COLS; c++) /* correlated inputs, a dead column, outlier channels */
      X[k * COLS + c] = c == 17 ? 0.0 : rnd() * (c % 23 == 0 ? 8.0 : 1.0) + (c > 0 ? 0.5 * X[k * COLS + c - 1] : 0);
  for (int k = 0; k < ROWS * COLS; k++) p->W[k] = (float)(rnd() * 0.1);
  memset(p->H, 0, sizeof p->H);
  mq_hessian_accumulate(p->H, COLS, X, N);
  mq_hessian_finalize(p->H, COLS, N);
  p->dead = 17;
}

/* The processing order of act-order (core/hessian.c): decreasing diag(H), ties by column. */
static const double *order_H;
static int by_diag_desc(const void *a, const void *b) {
  int i = *(const int *)a, j = *(const int *)b;
  double di = order_H[i * COLS + i], dj = order_H[j * COLS + j];
  if (di != dj) return di > dj ? -1 : 1;
  return (i > j) - (i < j);
}

/* A problem on which OPTQ with nearest rounding cannot clip, by construction. Inputs: N_WELL
 * independent samples (H well conditioned, so the error feedback moves a weight by a fraction
 * of a step) with column scales 0.5…1.5, so that act-order permutes. Weights: in every row and
 * group the weight of largest magnitude, ±B, sits at the group's first processing position,
 * so it is quantized before any error reaches it and its parameters are computed with it in
 * place; every other weight has magnitude in [0.3B, 0.7B]. sign > 0: rows alternate in sign,
 * for the asymmetric grid (a row of one sign has zero point 0 or maxq and ±B on the grid's last
 * code exactly); sign < 0: every row negative, for the symmetric grid (−B is −maxq/2 steps from
 * the zero point (maxq+1)/2: code 0 or 1). The other weights stay 0.3·maxq steps inside the
 * grid. */
static void make_unclipped_problem(problem *p, int group, int act_order, int sign) {
  static double X[N_WELL * COLS];
  for (int k = 0; k < N_WELL; k++)
    for (int c = 0; c < COLS; c++)
      X[k * COLS + c] = rnd() * (0.5 + (double)((c * 7) % COLS) / COLS);
  memset(p->H, 0, sizeof p->H);
  mq_hessian_accumulate(p->H, COLS, X, N_WELL);
  mq_hessian_finalize(p->H, COLS, N_WELL);
  p->dead = -1;
  int perm[COLS];
  for (int c = 0; c < COLS; c++) perm[c] = c;
  if (act_order) {
    order_H = p->H;
    qsort(perm, COLS, sizeof *perm, by_diag_desc);
  }
  int glen = group > 0 ? group : COLS;
  const double B = 0.1;
  for (int r = 0; r < ROWS; r++) {
    double s = sign < 0 || r % 2 ? -1.0 : 1.0;
    for (int q = 0; q < COLS; q++) /* q: processing position */
      p->W[r * COLS + perm[q]] =
          (float)(s * B * (q % glen == 0 ? 1.0 : 0.3 + 0.4 * (rnd() + 0.5)));
  }
}

static double recomputed_loss(const problem *p, const mq_layer_result *res) {
  static float What[ROWS * COLS];
  mq_error err;
  mq_error_clear(&err);
  mq_layer_result_dequantize(res, What, &err);
  double total = 0;
  for (int r = 0; r < ROWS; r++) {
    double d[COLS];
    for (int c = 0; c < COLS; c++)
      d[c] = (c == p->dead ? 0.0 : (double)p->W[r * COLS + c]) - What[r * COLS + c];
    for (int i = 0; i < COLS; i++)
      for (int j = 0; j < COLS; j++)
        total += d[i] * (p->H[i * COLS + j] + (i == j ? res->lambda : 0.0)) * d[j];
  }
  return total;
}

typedef struct config {
  int bits, group, act_order, static_groups, block;
  int sym;      /* grid */
  double damp;  /* λ = damp · mean diag(H) */
  int unclipped; /* 0: make_problem; ±1: make_unclipped_problem with that sign */
} config;

static int bound_checked = 0; /* configurations where loss ≤ bound_l2 was asserted */

static void check_config(config cf) {
  static problem p;
  static double Hrun[COLS * COLS];
  if (cf.unclipped)
    make_unclipped_problem(&p, cf.group, cf.act_order, cf.unclipped);
  else
    make_problem(&p);
  memcpy(Hrun, p.H, sizeof Hrun);
  mq_quant_options o;
  mq_quant_options_init(&o);
  o.bits = cf.bits;
  o.group_size = cf.group;
  o.act_order = cf.act_order;
  o.static_groups = cf.static_groups;
  o.block_size = cf.block;
  o.sym = cf.sym;
  o.damp = cf.damp;
  mq_layer_result res;
  mq_error err;
  mq_error_clear(&err);
  mq_rows_input in = {.name = "t", .rows = ROWS, .cols = COLS, .W = p.W, .H = Hrun};
  MQ_EXPECT_EQ_INT(mq_quantize_rows(&in, &o, &res, NULL, &err), MQ_OK);
  MQ_EXPECT_NEAR(res.loss, recomputed_loss(&p, &res), 1e-6);
  /* §6: the bound holds when nothing was clipped; the unclipped problems must not clip */
  if (cf.unclipped) MQ_EXPECT_EQ_INT(res.clipped, 0);
  if (res.clipped == 0) {
    MQ_EXPECT_LE(res.loss, res.bound_l2);
    bound_checked++;
  }
  if (getenv("MQ_TEST_VERBOSE") != NULL)
    printf("bits %d group %d act %d static %d sym %d damp %g unclipped %d: clipped %lld, "
           "loss %.6g, bound_l2 %.6g\n", cf.bits, cf.group, cf.act_order, cf.static_groups,
           cf.sym, cf.damp, cf.unclipped, (long long)res.clipped, res.loss, res.bound_l2);
  /* block size 128 vs 16: the same codes */
  mq_layer_result res2;
  memcpy(Hrun, p.H, sizeof Hrun);
  o.block_size = 16;
  MQ_EXPECT_EQ_INT(mq_quantize_rows(&in, &o, &res2, NULL, &err), MQ_OK);
  /* Blocking changes float rounding only: ≥ 99% of codes agree. */
  size_t differ = 0;
  for (size_t r = 0; r < ROWS; r++) {
    uint8_t c1[COLS], c2[COLS];
    mq_unpack_row(res.qweight + r * res.words, COLS, cf.bits, c1);
    mq_unpack_row(res2.qweight + r * res.words, COLS, cf.bits, c2);
    for (size_t c = 0; c < COLS; c++) differ += c1[c] != c2[c];
  }
  if (differ > ROWS * COLS / 100)
    fprintf(stderr, "bits %d group %d act %d static %d: codes differ between block sizes\n",
            cf.bits, cf.group, cf.act_order, cf.static_groups);
  MQ_EXPECT_LE(differ, ROWS * COLS / 100);
  mq_layer_result_free(&res);
  mq_layer_result_free(&res2);
}

int main(void) {
  mq_log_setup(MQ_LOG_ERROR, 0, 0);
  srand(3);
  /* general problems, the defaults' symmetric grid and damp 0.01 */
  int groups[] = {-1, 16, 32, 50, 128, 200};
  for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
    check_config((config){4, groups[g], 1, 0, 128, 1, 0.01, 0});
    check_config((config){3, groups[g], 0, 0, 64, 1, 0.01, 0});
    check_config((config){2, groups[g], 1, 1, 128, 1, 0.01, 0});
  }
  check_config((config){8, 32, 1, 0, 7, 1, 0.01, 0});
  /* problems that cannot clip: the bound check runs, for both grids, every bit width, with
   * and without act-order, one and several (dynamic) groups per row, several block sizes */
  const config unclipped[] = {
      {4, -1, 1, 0, 128, 0, 0.01, 1},  {3, -1, 0, 0, 64, 0, 0.01, 1},
      {2, -1, 1, 0, 128, 0, 0.1, 1},   {8, -1, 0, 0, 7, 0, 0.01, 1},
      {4, 50, 1, 0, 128, 0, 0.01, 1},  {3, 32, 0, 0, 16, 0, 0.01, 1},
      {8, 16, 1, 0, 128, 0, 1.0, 1},   {4, 128, 0, 0, 64, 0, 0.01, 1},
      {4, -1, 1, 0, 128, 1, 0.01, -1}, {3, 50, 0, 0, 64, 1, 0.01, -1},
      {2, 32, 1, 0, 32, 1, 0.1, -1},   {8, 200, 1, 0, 128, 1, 0.01, -1},
  };
  int before = bound_checked;
  for (size_t k = 0; k < sizeof unclipped / sizeof *unclipped; k++) check_config(unclipped[k]);
  MQ_EXPECT_EQ_INT(bound_checked - before, (int)(sizeof unclipped / sizeof *unclipped));
  printf("test_layer: loss <= bound_l2 checked in %d of %d configurations (%d general)\n",
         bound_checked, 19 + (int)(sizeof unclipped / sizeof *unclipped), before);
  MQ_EXPECT_GT(bound_checked, 0);
  return mq_test_finish("test_layer");
}

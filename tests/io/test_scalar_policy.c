/* The values a layer's scalars may hold when a result file is written (the policy columns of
 * MQ_LAYER_SCALARS, core/layer_scalars.h, applied by io/h5result.c): one valid layer, then one
 * scalar at a time set to a value the written contract allows or refuses. The expectations are
 * this file's own list (SPEC: errors, λ, loss, seconds finite and >= 0; bound_linf and
 * err_floor NaN when not applicable; err_floor of Qronos may be negative; bound_l2 NaN only
 * when err_floor is unknown; counts >= 0), not read from the table.
 *
 *   test_scalar_policy OUT.h5   (one rank; the file is deleted again) */
#include <math.h>
#include <mpi.h>
#include <stdio.h>

#include "io/h5result.h"
#include "mq_test.h"

typedef struct scalar_case {
  const char *what;
  void (*set)(mq_layer_result *r);
  mq_status expect;
} scalar_case;

static void valid(mq_layer_result *r) { (void)r; }
static void loss_negative(mq_layer_result *r) { r->loss = -1.0; }
static void err_nan(mq_layer_result *r) { r->err = NAN; }
static void rel_err_negative(mq_layer_result *r) { r->rel_err = -1e-9; }
static void lambda_inf(mq_layer_result *r) { r->lambda = INFINITY; }
static void seconds_nan(mq_layer_result *r) { r->seconds = NAN; }
static void floor_negative(mq_layer_result *r) { r->err_floor = -0.5; }
static void floor_nan(mq_layer_result *r) { r->err_floor = NAN; }
static void floor_inf(mq_layer_result *r) { r->err_floor = -INFINITY; }
static void linf_nan(mq_layer_result *r) { r->bound_linf = NAN; }
static void linf_negative(mq_layer_result *r) { r->bound_linf = -1.0; }
static void l2_nan_with_floor(mq_layer_result *r) { r->bound_l2 = NAN; }
static void l2_nan_without_floor(mq_layer_result *r) { r->bound_l2 = NAN, r->err_floor = NAN; }
static void clipped_negative(mq_layer_result *r) { r->clipped = -1; }
static void raises_negative(mq_layer_result *r) { r->lambda_raises = -1; }

static const scalar_case cases[] = {
    {"valid", valid, MQ_OK},
    {"loss", loss_negative, MQ_ENUMERIC},
    {"err", err_nan, MQ_ENUMERIC},
    {"rel_err", rel_err_negative, MQ_ENUMERIC},
    {"lambda", lambda_inf, MQ_ENUMERIC},
    {"seconds", seconds_nan, MQ_ENUMERIC},
    {"err_floor negative", floor_negative, MQ_OK},
    {"err_floor NaN", floor_nan, MQ_OK},
    {"err_floor", floor_inf, MQ_ENUMERIC},
    {"bound_linf NaN", linf_nan, MQ_OK},
    {"bound_linf", linf_negative, MQ_ENUMERIC},
    {"bound_l2", l2_nan_with_floor, MQ_ENUMERIC},
    {"bound_l2 NaN, err_floor NaN", l2_nan_without_floor, MQ_OK},
    {"clipped", clipped_negative, MQ_ENUMERIC},
    {"lambda_raises", raises_negative, MQ_ENUMERIC},
};

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc != 2) {
    fprintf(stderr, "usage: test_scalar_policy OUT.h5\n");
    MPI_Finalize();
    return 2;
  }
  mq_error err = {0};
  mq_h5_result *rf = NULL;
  mq_result_meta meta = {.nranks = 1};
  mq_quant_options_init(&meta.opts);
  MQ_EXPECT_EQ_INT(mq_h5_result_create(MPI_COMM_WORLD, argv[1], &meta, &rf, &err), MQ_OK);
  uint32_t qweight[1] = {0x76543210u};
  float scales[1] = {0.5f};
  int32_t zeros[1] = {8}, g_idx[4] = {0, 0, 0, 0};
  for (size_t k = 0; rf != NULL && k < sizeof cases / sizeof cases[0]; k++) {
    mq_layer_result r = {.rows = 1, .cols = 4, .ngroups = 1, .words = 1, .bits = 4,
                         .qweight = qweight, .scales = scales, .zeros = zeros, .g_idx = g_idx,
                         .lambda = 0.01, .loss = 0.5, .err = 0.25, .rel_err = 0.1,
                         .bound_l2 = 1.0, .bound_linf = 2.0, .err_floor = 0.0, .clipped = 3,
                         .lambda_raises = 0, .samples = 8, .routed = 8, .seconds = 0.125};
    cases[k].set(&r);
    char name[32];
    snprintf(name, sizeof name, "case%zu", k);
    mq_error_clear(&err);
    mq_status st = mq_h5_result_write_layer(rf, name, 1, 0, &r, &err);
    if (st != cases[k].expect) fprintf(stderr, "case '%s': %s\n", cases[k].what, err.msg);
    MQ_EXPECT_EQ_INT(st, cases[k].expect);
    if (cases[k].expect != MQ_OK) { /* the line names the scalar */
      char field[64];
      snprintf(field, sizeof field, ": %s = ", cases[k].what);
      MQ_EXPECT_CONTAINS(err.msg, field);
    }
  }
  mq_h5_result_abort(&rf); /* deletes the file */
  FILE *left = fopen(argv[1], "rb");
  MQ_EXPECT(left == NULL);
  if (left != NULL) fclose(left);
  int rc = mq_test_finish("io_scalar_policy");
  MPI_Finalize();
  return rc;
}

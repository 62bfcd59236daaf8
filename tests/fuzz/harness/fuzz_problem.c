/* libFuzzer: layer-problem files (io/h5problem.h), as `layer` and `study` read them: the
 * structure of every layer, then W, X, Xq, H, G whole and by rows. The input is a recipe for the
 * file (fuzz_h5build.h): layers /layers/<name> with W, X, Xq, H, G of the documented types and
 * shapes, or hostile ones (another class or rank, shapes that disagree, NaN, Inf, 1e300,
 * asymmetric or negative-diagonal H). */
#include <stdint.h>

#include "core/mem.h"
#include "fuzz_h5build.h"
#include "io/h5problem.h"

static double v_any(fdp *f, size_t k, void *ctx) {
  (void)k;
  (void)ctx;
  return ((int)fdp_u8(f) - 128) / 32.0;
}
/* H (or G): symmetric with a dominant diagonal unless the input says otherwise */
static double v_sym(fdp *f, size_t k, void *ctx) {
  size_t c = *(const size_t *)ctx, i = k / c, j = k % c;
  return i == j ? 4.0 + fdp_u8(f) / 16.0 : 1.0 / (double)(1 + i + j);
}

static void build(fdp *f, hid_t file) {
  static const char *const names[] = {"a", "b", "layer0", "z.z", "q_proj"};
  hid_t layers = (fdp_u8(f) & 15) ? H5Gcreate2(file, "layers", H5P_DEFAULT, H5P_DEFAULT,
                                                H5P_DEFAULT)
                                  : H5I_INVALID_HID;
  size_t n = layers >= 0 ? fdp_range(f, 0, 3) : 0;
  for (size_t i = 0; i < n; i++) {
    hid_t g = H5Gcreate2(layers, names[(i + fdp_u8(f)) % 5], H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    if (g < 0) continue;
    size_t rows = fdp_range(f, 1, 24), cols = fdp_range(f, 1, 24), ns = fdp_range(f, 1, 48);
    hid_t ft = (fdp_u8(f) & 1) ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
    hsize_t w[2] = {rows, cols}, x[2] = {ns, cols}, h[2] = {cols, cols};
    uint8_t what = fdp_u8(f);
    fz_dataset(f, g, "W", ft, 2, w, v_any, NULL);
    if (what & 1) fz_dataset(f, g, "X", ft, 2, x, v_any, NULL);
    if (what & 2) fz_dataset(f, g, "Xq", ft, 2, x, v_any, NULL);
    if (what & 4) fz_dataset(f, g, "H", H5T_IEEE_F64LE, 2, h, v_sym, &cols);
    if (what & 8) fz_dataset(f, g, "G", ft, 2, h, v_sym, &cols);
    (void)H5Gclose(g);
  }
  fz_close(&layers);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mq_fuzz_quiet();
  return 0;
}

static void read_layer(mq_h5_problem *pf, size_t i) {
  const mq_layer_desc *d = mq_h5_problem_layer(pf, i);
  mq_error err;
  if (d->cols == 0 || d->rows > MQ_FUZZ_MAX_ELEMS / d->cols) return;
  float *W = mq_alloc(d->rows * d->cols + 1, sizeof *W);
  if (W != NULL) {
    (void)mq_h5_read_weights(pf, i, W, &err);
    (void)mq_h5_read_weight_rows(pf, i, d->rows / 2, d->rows - d->rows / 2, W, &err);
  }
  mq_free(W);
  if (d->n > 0 && d->n <= MQ_FUZZ_MAX_ELEMS / d->cols) {
    double *X = mq_alloc(d->n * d->cols + 1, sizeof *X);
    if (X != NULL) {
      (void)mq_h5_read_samples(pf, i, MQ_SAMPLES_X, 0, d->n, X, &err);
      (void)mq_h5_read_samples(pf, i, MQ_SAMPLES_XQ, d->n / 2, d->n - d->n / 2, X, &err);
    }
    mq_free(X);
  }
  if (d->has_h && d->cols <= MQ_FUZZ_MAX_ELEMS / d->cols) {
    double *H = mq_alloc(d->cols * d->cols + 1, sizeof *H);
    if (H != NULL) {
      (void)mq_h5_read_matrix(pf, i, MQ_MATRIX_H, H, &err);
      if (d->has_g) (void)mq_h5_read_matrix(pf, i, MQ_MATRIX_G, H, &err);
      (void)mq_h5_read_matrix_rows(pf, i, 0, d->cols, H, &err);
      (void)mq_h5_read_matrix_diag(pf, i, H, &err);
    }
    mq_free(H);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fz_build(data, size, ".h5", build);
  mq_h5_problem *pf = NULL;
  mq_error err;
  if (path == NULL || mq_h5_problem_open(path, &pf, &err) != MQ_OK) return 0;
  for (size_t i = 0; i < mq_h5_problem_nlayers(pf); i++) read_layer(pf, i);
  mq_h5_problem_close(&pf);
  return 0;
}

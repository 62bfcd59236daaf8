/* libFuzzer: result files (io/h5result.h, io/result_tensors.h), as `inspect`, `eval
 * --quantized` and `export` read them: the summary, then every tensor (dequantized layers,
 * /model/tensors) and every packed layer. The input is a recipe for the file (fuzz_h5build.h):
 * root attributes, layers /layers/<name> with qweight, scales, zeros, g_idx and their
 * attributes, /model/config and /model/tensors, each as written by mpiquant or hostile. */
#include <stdint.h>
#include <stdio.h>

#include "core/mem.h"
#include "fuzz_h5build.h"
#include "io/h5result.h"
#include "io/result_tensors.h"

typedef struct layer_shape {
  size_t rows, cols, gs, ngroups, words;
  int bits;
} layer_shape;

static double v_code(fdp *f, size_t k, void *ctx) {
  (void)k;
  (void)ctx;
  return (double)(uint32_t)fdp_bytes(f, 4);
}
static double v_scale(fdp *f, size_t k, void *ctx) {
  (void)k;
  (void)ctx;
  return (1 + fdp_u8(f)) / 1024.0;
}
static double v_zero(fdp *f, size_t k, void *ctx) {
  (void)k;
  const layer_shape *s = ctx;
  int b = s->bits >= 1 && s->bits <= 16 ? s->bits : 4; /* the root's bits may be anything */
  return (double)(fdp_u8(f) % (1u << b));
}
static double v_gidx(fdp *f, size_t k, void *ctx) {
  (void)f;
  const layer_shape *s = ctx;
  return (double)(k / s->gs);
}
static double v_weight(fdp *f, size_t k, void *ctx) {
  (void)k;
  (void)ctx;
  return ((int)fdp_u8(f) - 128) / 64.0;
}

static void build_layer(fdp *f, hid_t layers, int bits) {
  static const char *const names[] = {"q_proj", "model.layers.0.self_attn.q_proj", "a.b", "x y",
                                      "model.layers.0.mlp.down_proj", "w"};
  char buf[64];
  uint8_t pick = fdp_u8(f);
  const char *name = pick < 240 ? names[pick % 6] : fdp_string(f, buf);
  hid_t g = H5Gcreate2(layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return;
  layer_shape s = {.rows = fdp_range(f, 1, 40), .cols = fdp_range(f, 1, 70), .bits = bits};
  s.gs = fdp_range(f, 1, s.cols);
  s.ngroups = (s.cols + s.gs - 1) / s.gs;
  s.words = (s.cols * (size_t)(bits >= 1 && bits <= 32 ? bits : 4) + 31) / 32;
  hsize_t q[2] = {s.rows, s.words}, sz[2] = {s.rows, s.ngroups}, gi[1] = {s.cols};
  fz_dataset(f, g, "qweight", H5T_STD_U32LE, 2, q, v_code, &s);
  fz_dataset(f, g, "scales", H5T_IEEE_F32LE, 2, sz, v_scale, &s);
  fz_dataset(f, g, "zeros", H5T_STD_I32LE, 2, sz, v_zero, &s);
  fz_dataset(f, g, "g_idx", H5T_STD_I32LE, 1, gi, v_gidx, &s);
  fz_attr(f, g, "rows", 'i', (int64_t)s.rows, 0, NULL);
  fz_attr(f, g, "cols", 'i', (int64_t)s.cols, 0, NULL);
  static const char *const dscal[] = {"lambda", "loss", "err", "rel_err", "bound_l2",
                                      "bound_linf", "err_floor", "seconds"};
  for (size_t i = 0; i < sizeof dscal / sizeof *dscal; i++)
    fz_attr(f, g, dscal[i], 'd', 0, 0.25, NULL);
  fz_attr(f, g, "clipped", 'i', 0, 0, NULL);
  fz_attr(f, g, "lambda_raises", 'i', 0, 0, NULL);
  fz_attr(f, g, "layer_complete", 'i', 1, 0, NULL);
  (void)H5Gclose(g);
}

static void build_model(fdp *f, hid_t file) {
  hid_t m = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (m < 0) return;
  char buf[64];
  uint8_t how = fdp_u8(f);
  if (how < 128) { /* config.json as a fixed-length string dataset */
    const char *text = fdp_string(f, buf);
    hid_t t = fz_str_type(how & 1, strlen(text) + 1), sp = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(m, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const void *buf = (how & 1) ? (const void *)&text : (const void *)text; /* VL: char ** */
    if (ds >= 0) (void)H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    fz_close(&ds);
    fz_close(&sp);
    fz_close(&t);
  } else if (how < 192) {
    fz_attr(f, m, "config", 's', 0, 0, fdp_string(f, buf));
  }
  hid_t t = H5Gcreate2(m, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  static const char *const names[] = {"model.norm.weight", "model.embed_tokens.weight",
                                      "lm_head.weight", "q_proj.weight"};
  size_t n = t >= 0 ? fdp_range(f, 0, 4) : 0;
  for (size_t i = 0; i < n; i++) {
    hsize_t dims[2] = {fdp_range(f, 1, 30), fdp_range(f, 1, 30)};
    int nd = 1 + (fdp_u8(f) & 1);
    fz_dataset(f, t, names[i % 4], H5T_IEEE_F32LE, nd, dims, v_weight, NULL);
    hid_t ds = H5Lexists(t, names[i % 4], H5P_DEFAULT) > 0 ? H5Dopen2(t, names[i % 4], H5P_DEFAULT)
                                                          : H5I_INVALID_HID;
    if (ds >= 0) fz_attr(f, ds, "dtype", 's', 0, 0, "BF16");
    fz_close(&ds);
  }
  fz_close(&t);
  fz_close(&m);
}

static void build(fdp *f, hid_t file) {
  char buf[64];
  int bits = (int)fdp_range(f, 2, 8);
  if ((fdp_u8(f) & 31) == 0) bits = (int)fdp_int(f);
  fz_attr(f, file, "format", 's', 0, 0, "mpiquant");
  fz_attr(f, file, "format_version", 'i', 1, 0, NULL);
  fz_attr(f, file, "mpiquant_version", 's', 0, 0, "0.1.0");
  fz_attr(f, file, "method", 's', 0, 0, fuzz_strings[2 + fdp_u8(f) % 3]);
  fz_attr(f, file, "rounding", 's', 0, 0, "nearest");
  fz_attr(f, file, "lambda_mode", 's', 0, 0, "damp");
  fz_attr(f, file, "bits", 'i', bits, 0, NULL);
  static const char *const ints[] = {"group_size", "sym", "act_order", "static_groups", "mse",
                                     "block_size", "nranks", "complete"};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
    fz_attr(f, file, ints[i], 'i', i == 0 ? 64 : 1, 0, NULL);
  fz_attr(f, file, "damp", 'd', 0, 0.01, NULL);
  fz_attr(f, file, "seed", 'u', 0, 0, NULL);
  fz_attr(f, file, "checkpoint_hash", 's', 0, 0, fdp_string(f, buf));
  hid_t layers = (fdp_u8(f) & 7) ? H5Gcreate2(file, "layers", H5P_DEFAULT, H5P_DEFAULT,
                                               H5P_DEFAULT)
                                 : H5I_INVALID_HID;
  size_t n = layers >= 0 ? fdp_range(f, 0, 3) : 0;
  for (size_t i = 0; i < n; i++) build_layer(f, layers, bits);
  fz_close(&layers);
  if (fdp_u8(f) & 1) build_model(f, file);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  mq_fuzz_quiet();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fz_build(data, size, ".h5", build);
  mq_result_summary sum;
  mq_tensor_source src;
  mq_error err;
  if (path == NULL) return 0;
  if (mq_h5_result_read_summary(path, &sum, &err) == MQ_OK) mq_result_summary_free(&sum);
  if (mq_result_tensors_open(path, &src, &err) != MQ_OK) return 0;
  (void)mq_result_tensors_config_json(&src);
  mq_result_tensor_info info;
  for (size_t i = 0; mq_result_tensors_info(&src, i, &info); i++) {
    if (info.count > MQ_FUZZ_MAX_ELEMS) continue;
    float *x = mq_alloc(info.count + 1, sizeof *x);
    if (x != NULL) (void)src.read(src.ctx, info.name, x, info.count, &err);
    mq_free(x);
    if (info.module != NULL) {
      mq_layer_result res;
      if (mq_result_tensors_read_layer(&src, info.module, &res, &err) == MQ_OK)
        mq_layer_result_free(&res);
    }
  }
  mq_result_tensors_close(&src);
  return 0;
}

/* The result-file tensor source (io/result_tensors.h) and the safetensors writer's float
 * conversions (io/safetensors_write.h).
 *
 *   test_result_tensors convert
 *       float32 -> float16 / bfloat16 rounding against an oracle built from the exact
 *       16-bit -> float32 conversions of io/safetensors.h: every 16-bit value round-trips, every
 *       midpoint between neighbours goes to the even one, a hair off the midpoint to the nearer.
 *   test_result_tensors source RESULT.h5 EXPECT_DIR [BAD.h5 SUBSTRING]...
 *       EXPECT_DIR/manifest.txt lists "name ndim d0 d1 ..." per tensor (strcmp order) and
 *       EXPECT_DIR/<name>.f32 its float32 values (numpy's dequantization of the result file);
 *       EXPECT_DIR/config.json (optional) the /model/config text. Every tensor is read through
 *       find()/read() and compared bit for bit. Each BAD.h5 must fail to open with MQ_EINPUT and
 *       a message containing SUBSTRING. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/result_tensors.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "mq_test.h"

/* ---- conversions ---- */

static float next_up(float x) { return nextafterf(x, INFINITY); }
static float next_down(float x) { return nextafterf(x, -INFINITY); }

typedef uint16_t (*to16_fn)(float);
typedef float (*from16_fn)(uint16_t);

/* For every finite non-negative 16-bit value h and its successor: the round trip, the midpoint
 * (ties to even) and the floats just around it. The sign is checked on the same values. */
static void check_rounding(const char *what, to16_fn to16, from16_fn from16, uint16_t inf_bits) {
  int bad = 0;
  for (uint32_t h = 0; h < inf_bits && bad < 5; h++) {
    float a = from16((uint16_t)h);
    uint16_t got = to16(a), gotn = to16(-a);
    if (got != h || gotn != (uint16_t)(h | 0x8000u)) {
      fprintf(stderr, "%s: round trip of 0x%04x (%g) gave 0x%04x / 0x%04x\n", what, h, (double)a,
              got, gotn);
      bad++;
      continue;
    }
    double b = from16((uint16_t)(h + 1)); /* next value up; past the largest finite: */
    if (isinf(b)) b = 2.0 * a - (double)from16((uint16_t)(h - 1)); /* one more ulp */
    double mid = ((double)a + b) / 2.0;
    float m = (float)mid;
    if ((double)m != mid) continue; /* midpoint not a float32: nothing to tie */
    uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
    uint16_t want_mid = even, want_lo = (uint16_t)h, want_hi = (uint16_t)(h + 1);
    if (to16(m) != want_mid || to16(next_down(m)) != want_lo || to16(next_up(m)) != want_hi) {
      fprintf(stderr, "%s: around the midpoint %.9g of 0x%04x: 0x%04x 0x%04x 0x%04x, want "
              "0x%04x 0x%04x 0x%04x\n", what, (double)m, h, to16(next_down(m)), to16(m),
              to16(next_up(m)), want_lo, want_mid, want_hi);
      bad++;
    }
  }
  MQ_EXPECT_EQ_INT(bad, 0);
  MQ_EXPECT_EQ_INT(to16(INFINITY), inf_bits);
  MQ_EXPECT_EQ_INT(to16(-INFINITY), inf_bits | 0x8000u);
  MQ_EXPECT(isnan(from16(to16(NAN))));
  MQ_EXPECT_EQ_INT(to16(FLT_MAX), inf_bits);
  MQ_EXPECT_EQ_INT(to16(1e-45f), 0); /* the smallest float32 subnormal rounds to +0 */
}

static int run_convert(void) {
  check_rounding("f16", mq_stw_f32_to_f16, mq_st_f16_to_f32, 0x7c00u);
  check_rounding("bf16", mq_stw_f32_to_bf16, mq_st_bf16_to_f32, 0x7f80u);
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_f16(65504.0f), 0x7bffu);
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_f16(65519.996f), 0x7bffu);
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_f16(65520.0f), 0x7c00u);   /* the tie above max rounds up */
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_f16(0x1p-25f), 0);          /* tie between 0 and 2^-24 */
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_f16(next_up(0x1p-25f)), 1);
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_f16(0x1.8p-24f), 2);        /* tie between 1 and 2 ulp: even */
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80u); /* tie: even (1.0) */
  MQ_EXPECT_EQ_INT(mq_stw_f32_to_bf16(1.0f + 0x1.8p-7f), 0x3f82u);
  return mq_test_finish("test_result_tensors convert");
}

/* ---- the tensor source ---- */

static void *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf != NULL) buf[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void check_tensor(mq_tensor_source *src, const char *dir, const char *name, int ndim,
                         const size_t *shape) {
  char path[1024];
  size_t count = 1, len = 0;
  for (int d = 0; d < ndim; d++) count *= shape[d];
  int nd = -1;
  size_t sh[2] = {0, 0};
  MQ_EXPECT(src->find(src->ctx, name, &nd, sh));
  MQ_EXPECT_EQ_INT(nd, ndim);
  for (int d = 0; d < ndim && d < 2; d++) MQ_EXPECT_EQ_INT(sh[d], shape[d]);
  snprintf(path, sizeof path, "%s/%s.f32", dir, name);
  float *want = read_file(path, &len);
  MQ_EXPECT(want != NULL);
  MQ_EXPECT_EQ_INT(len, count * sizeof(float));
  float *got = mq_alloc(count + 1, sizeof *got);
  mq_error err;
  mq_error_clear(&err);
  mq_status st = src->read(src->ctx, name, got, count, &err);
  if (st != MQ_OK) fprintf(stderr, "read %s: %s\n", name, err.msg);
  MQ_EXPECT_EQ_INT(st, MQ_OK);
  if (st == MQ_OK && want != NULL && len == count * sizeof(float)) {
    size_t diff = 0, first = 0;
    for (size_t i = count; i-- > 0;)
      if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
        diff++;
        first = i;
      }
    if (diff) fprintf(stderr, "%s: %zu of %zu values differ, first [%zu]: %.9g vs %.9g\n", name,
                      diff, count, first, (double)got[first], (double)want[first]);
    MQ_EXPECT_EQ_INT(diff, 0);
  }
  /* a wrong element count is an input error, not a buffer overrun */
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(src->read(src->ctx, name, got, count + 1, &err), MQ_EINPUT);
  MQ_EXPECT_CONTAINS(err.msg, "elements");
  mq_free(got);
  free(want);
}

static int run_source(int argc, char **argv) {
  const char *h5 = argv[2], *dir = argv[3];
  char path[1024], line[1024];
  mq_tensor_source src;
  mq_error err;
  mq_error_clear(&err);
  mq_status st = mq_result_tensors_open(h5, &src, &err);
  if (st != MQ_OK) fprintf(stderr, "open %s: %s\n", h5, err.msg);
  MQ_EXPECT_EQ_INT(st, MQ_OK);
  if (st != MQ_OK) return mq_test_finish("test_result_tensors source");
  snprintf(path, sizeof path, "%s/manifest.txt", dir);
  FILE *mf = fopen(path, "r");
  MQ_EXPECT(mf != NULL);
  size_t n = 0;
  while (mf != NULL && fgets(line, sizeof line, mf) != NULL) {
    char name[512];
    int ndim = 0, used = 0;
    size_t shape[8] = {0};
    if (sscanf(line, "%511s %d%n", name, &ndim, &used) != 2 || ndim < 0 || ndim > 8) continue;
    char *p = line + used;
    for (int d = 0; d < ndim; d++) shape[d] = (size_t)strtoull(p, &p, 10);
    mq_result_tensor_info ti;
    MQ_EXPECT(mq_result_tensors_info(&src, n, &ti));
    MQ_EXPECT_STR_EQ(ti.name, name); /* same strcmp order as the manifest */
    MQ_EXPECT_EQ_INT(ti.ndim, ndim);
    check_tensor(&src, dir, name, ndim, shape);
    n++;
  }
  if (mf != NULL) fclose(mf);
  MQ_EXPECT_EQ_INT(mq_result_tensors_count(&src), n);
  MQ_EXPECT(!src.find(src.ctx, "no.such.tensor", NULL, NULL));
  float dummy;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(src.read(src.ctx, "no.such.tensor", &dummy, 1, &err), MQ_EINPUT);
  snprintf(path, sizeof path, "%s/config.json", dir);
  size_t clen = 0;
  char *cfg = read_file(path, &clen);
  const char *got = mq_result_tensors_config_json(&src);
  MQ_EXPECT_STR_EQ(got, cfg); /* NULL without config.json */
  MQ_EXPECT_EQ_INT(mq_result_tensors_has_model_tensors(&src), cfg != NULL);
  free(cfg);
  mq_result_tensors_close(&src);
  MQ_EXPECT(src.ctx == NULL && src.find == NULL);
  mq_result_tensors_close(&src); /* twice is harmless */
  for (int i = 4; i + 1 < argc; i += 2) {
    mq_tensor_source bad;
    mq_error_clear(&err);
    st = mq_result_tensors_open(argv[i], &bad, &err);
    if (st == MQ_OK) { /* shape problems surface at open; g_idx/scale values at read */
      mq_result_tensor_info ti;
      for (size_t k = 0; st == MQ_OK && mq_result_tensors_info(&bad, k, &ti); k++) {
        float *buf = mq_alloc(ti.count, sizeof *buf);
        st = bad.read(bad.ctx, ti.name, buf, ti.count, &err);
        mq_free(buf);
      }
      mq_result_tensors_close(&bad);
    }
    MQ_EXPECT_EQ_INT(st, MQ_EINPUT);
    if (strstr(err.msg, argv[i + 1]) == NULL) fprintf(stderr, "%s:\n", argv[i]);
    MQ_EXPECT_CONTAINS(err.msg, argv[i + 1]);
    MQ_EXPECT(bad.ctx == NULL || st == MQ_EINPUT);
  }
  MQ_EXPECT_EQ_INT(mq_mem_current(), 0); /* everything released */
  return mq_test_finish("test_result_tensors source");
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "convert") == 0) return run_convert();
  if (argc >= 4 && strcmp(argv[1], "source") == 0) return run_source(argc, argv);
  fprintf(stderr, "usage: test_result_tensors convert | source RESULT.h5 EXPECT_DIR "
          "[BAD.h5 SUBSTRING]...\n");
  return 2;
}

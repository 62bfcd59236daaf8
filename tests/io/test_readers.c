/* Input readers: safetensors (single file, sharded, hostile files), config.json, token files.
 * usage: test_readers FIXTURE_DIR (written by tests/io/make_st_fixtures.py). Values of F16/BF16
 * tensors are checked against numpy's conversions stored in expected.safetensors as F32. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/hfconfig.h"
#include "io/safetensors.h"
#include "io/tokens.h"
#include "mpiquant.h"
#include "mq_test.h"

static char fx[2048];

static const char *path_of(const char *rel) {
  static char buf[8][4096];
  static int k = 0;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", fx, rel);
  return buf[k];
}

/* Bitwise equality, or both NaN. */
static int same_float(float a, float b) {
  uint32_t x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  return x == y || (a != a && b != b);
}

/* err must be MQ_EINPUT with a message naming `name` (a path or part of one). */
static void expect_einput(mq_status st, const mq_error *err, const char *name, const char *what) {
  MQ_EXPECT_EQ_INT(st, MQ_EINPUT);
  MQ_EXPECT_EQ_INT(err->status, MQ_EINPUT);
  if (strstr(err->msg, name) == NULL) fprintf(stderr, "%s: the message does not name it:\n", what);
  MQ_EXPECT_CONTAINS(err->msg, name);
}

static void compare_tensor(mq_st_model *m, mq_st_model *ex, const char *name) {
  mq_st_tensor_info a, b;
  MQ_EXPECT(mq_st_find(m, name, &a));
  MQ_EXPECT(mq_st_find(ex, name, &b));
  MQ_EXPECT_EQ_INT(a.count, b.count);
  if (a.count != b.count) return;
  float *x = mq_alloc(a.count, sizeof *x), *y = mq_alloc(a.count, sizeof *y);
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_st_read_f32(m, name, x, a.count, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_st_read_f32(ex, name, y, b.count, &err), MQ_OK);
  size_t bad = 0;
  for (size_t i = 0; i < a.count; i++)
    if (!same_float(x[i], y[i])) {
      bad++;
      fprintf(stderr, "%s[%zu]: %.9g != expected %.9g\n", name, i, (double)x[i], (double)y[i]);
    }
  MQ_EXPECT_EQ_INT(bad, 0); /* values that differ from numpy's conversion (listed above) */
  mq_free(x);
  mq_free(y);
}

static void test_single(void) {
  mq_st_model *m = NULL, *ex = NULL;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_st_open_dir(path_of("single"), &m, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_st_open_dir(path_of("expected.safetensors"), &ex, &err), MQ_OK);
  if (!m || !ex) {
    fprintf(stderr, "open failed: %s\n", err.msg);
    mq_test_failures++;
    goto done;
  }
  MQ_EXPECT_EQ_INT(mq_st_count(m), 5);
  MQ_EXPECT_STR_EQ(mq_st_name(m, 0), "model.a"); /* strcmp order */
  MQ_EXPECT_STR_EQ(mq_st_name(m, 4), "model.scalar");
  MQ_EXPECT_STR_EQ(mq_st_name(m, 5), NULL);
  mq_st_tensor_info info;
  MQ_EXPECT(mq_st_find(m, "model.bf", &info));
  MQ_EXPECT_EQ_INT(info.dtype, MQ_ST_BF16);
  MQ_EXPECT_EQ_INT(info.ndim, 2);
  MQ_EXPECT_EQ_INT(info.shape[0], 2);
  MQ_EXPECT_EQ_INT(info.shape[1], 9);
  MQ_EXPECT_EQ_INT(info.nbytes, 36);
  MQ_EXPECT(mq_st_find(m, "model.half", &info));
  MQ_EXPECT_EQ_INT(info.dtype, MQ_ST_F16);
  MQ_EXPECT(mq_st_find(m, "model.scalar", &info));
  MQ_EXPECT_EQ_INT(info.ndim, 0);
  MQ_EXPECT_EQ_INT(info.count, 1);
  MQ_EXPECT(mq_st_find(m, "model.empty", &info));
  MQ_EXPECT_EQ_INT(info.count, 0);
  MQ_EXPECT(!mq_st_find(m, "__metadata__", NULL));
  MQ_EXPECT(!mq_st_find(m, "nope", NULL));
  compare_tensor(m, ex, "model.a");
  compare_tensor(m, ex, "model.half");
  compare_tensor(m, ex, "model.bf");
  float s = 0;
  MQ_EXPECT_EQ_INT(mq_st_read_f32(m, "model.scalar", &s, 1, &err), MQ_OK);
  MQ_EXPECT_NEAR(s, 2.5, 0);
  MQ_EXPECT_EQ_INT(mq_st_read_f32(m, "model.empty", NULL, 0, &err), MQ_OK);
  /* f16 edge cases by hand too */
  MQ_EXPECT_NEAR(mq_st_f16_to_f32(0x0001), 5.9604644775390625e-08, 0);
  MQ_EXPECT_NEAR(mq_st_f16_to_f32(0x7BFF), 65504.0, 0);
  MQ_EXPECT_NEAR(mq_st_bf16_to_f32(0x3F80), 1.0, 0);
  /* missing tensor, wrong count */
  mq_error_clear(&err);
  float buf[16];
  expect_einput(mq_st_read_f32(m, "model.missing", buf, 4, &err), &err, "missing tensor model.missing",
                "missing");
  MQ_EXPECT_CONTAINS(err.msg, path_of("single"));
  mq_error_clear(&err);
  expect_einput(mq_st_read_f32(m, "model.a", buf, 5, &err), &err, "model.a", "count");
done:
  mq_st_close(&m);
  mq_st_close(&ex);
  MQ_EXPECT(m == NULL);
}

static void test_sharded(void) {
  mq_st_model *m = NULL;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_st_open_dir(path_of("sharded"), &m, &err), MQ_OK);
  if (!m) {
    fprintf(stderr, "sharded open failed: %s\n", err.msg);
    mq_test_failures++;
    return;
  }
  MQ_EXPECT_EQ_INT(mq_st_count(m), 3);
  float w[6], h[4], b[5];
  MQ_EXPECT_EQ_INT(mq_st_read_f32(m, "layers.0.w", w, 6, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_st_read_f32(m, "layers.0.h", h, 4, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(mq_st_read_f32(m, "layers.1.b", b, 5, &err), MQ_OK);
  for (int i = 0; i < 6; i++) MQ_EXPECT_NEAR(w[i], i, 0);
  for (int i = 0; i < 4; i++) MQ_EXPECT_NEAR(h[i], i - 1.5, 0);
  for (int i = 0; i < 5; i++) MQ_EXPECT_NEAR(b[i], 0.25 * i, 0);
  mq_st_close(&m);

  mq_error_clear(&err);
  expect_einput(mq_st_open_dir(path_of("bad_index"), &m, &err), &err, "layers.9.x", "bad_index");
  MQ_EXPECT_CONTAINS(err.msg, "model.safetensors.index.json");
  MQ_EXPECT(m == NULL);
  mq_error_clear(&err);
  expect_einput(mq_st_open_dir(path_of("bad_index_shard"), &m, &err), &err,
                "model-00002-of-00002.safetensors", "bad_index_shard");
  mq_error_clear(&err);
  expect_einput(mq_st_open_dir(path_of("config"), &m, &err), &err, path_of("config"), "empty dir");
  mq_error_clear(&err);
  expect_einput(mq_st_open_dir(path_of("does_not_exist"), &m, &err), &err,
                path_of("does_not_exist"), "no dir");
}

static void test_hostile(void) {
  FILE *f = fopen(path_of("hostile/LIST"), "r");
  MQ_EXPECT(f != NULL);
  if (!f) return;
  char line[256];
  int cases = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (!line[0]) continue;
    char rel[300];
    snprintf(rel, sizeof rel, "hostile/%s.safetensors", line);
    const char *p = path_of(rel);
    mq_st_model *m = NULL;
    mq_error err;
    mq_error_clear(&err);
    mq_status st = mq_st_open_dir(p, &m, &err);
    expect_einput(st, &err, p, line);
    MQ_EXPECT(m == NULL);
    printf("  %-18s %s\n", line, err.msg);
    mq_st_close(&m);
    cases++;
  }
  fclose(f);
  MQ_EXPECT_GE(cases, 10);
}

static void test_config(void) {
  mq_llama_config c;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_llama_config_read(path_of("config/llama.json"), &c, &err), MQ_OK);
  MQ_EXPECT_STR_EQ(c.architecture, "LlamaForCausalLM");
  MQ_EXPECT_EQ_INT(c.hidden_size, 64);
  MQ_EXPECT_EQ_INT(c.intermediate_size, 176);
  MQ_EXPECT_EQ_INT(c.num_hidden_layers, 2);
  MQ_EXPECT_EQ_INT(c.num_attention_heads, 4);
  MQ_EXPECT_EQ_INT(c.num_key_value_heads, 2);
  MQ_EXPECT_EQ_INT(c.head_dim, 16);
  MQ_EXPECT_EQ_INT(c.vocab_size, 1000);
  MQ_EXPECT_EQ_INT(c.max_position_embeddings, 128);
  MQ_EXPECT_NEAR(c.rms_norm_eps, 1e-5, 0);
  MQ_EXPECT_NEAR(c.rope_theta, 500000.0, 0);
  MQ_EXPECT_EQ_INT(c.tie_word_embeddings, 1);
  MQ_EXPECT_EQ_INT(c.attention_bias, 0);
  MQ_EXPECT_STR_EQ(c.torch_dtype, "bfloat16");
  MQ_EXPECT_CONTAINS(c.json_text, "\"hidden_size\": 64");
  MQ_EXPECT_EQ_INT(c.json_len, strlen(c.json_text));
  mq_llama_config_free(&c);
  MQ_EXPECT(c.json_text == NULL);

  MQ_EXPECT_EQ_INT(mq_llama_config_read(path_of("config/qwen2.json"), &c, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(c.num_key_value_heads, 4); /* defaults */
  MQ_EXPECT_NEAR(c.rms_norm_eps, 1e-6, 0);
  MQ_EXPECT_NEAR(c.rope_theta, 10000.0, 0);
  MQ_EXPECT_EQ_INT(c.tie_word_embeddings, 0);
  MQ_EXPECT_EQ_INT(c.attention_bias, 1);
  mq_llama_config_free(&c);

  /* Gemma 2: absent fields take Gemma2Config's defaults (scalar 256, caps 50 and 30, tied
   * head); null caps are none; hidden_activation wins over hidden_act */
  MQ_EXPECT_EQ_INT(mq_llama_config_read(path_of("config/gemma2.json"), &c, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(c.gemma2, 1);
  MQ_EXPECT_EQ_INT(c.head_dim, 32);
  MQ_EXPECT_EQ_INT(c.tie_word_embeddings, 1);
  MQ_EXPECT_EQ_INT(c.sliding_window, 4096);
  MQ_EXPECT_NEAR(c.embed_scale, 8.0, 0);
  MQ_EXPECT_NEAR(c.query_pre_attn_scalar, 256.0, 0);
  MQ_EXPECT_NEAR(c.attn_softcap, 50.0, 0);
  MQ_EXPECT_NEAR(c.final_softcap, 30.0, 0);
  mq_llama_config_free(&c);
  MQ_EXPECT_EQ_INT(mq_llama_config_read(path_of("config/gemma2_nocap.json"), &c, &err), MQ_OK);
  MQ_EXPECT_NEAR(c.query_pre_attn_scalar, 144.0, 0);
  MQ_EXPECT_NEAR(c.attn_softcap, 0.0, 0);
  MQ_EXPECT_NEAR(c.final_softcap, 0.0, 0);
  mq_llama_config_free(&c);
  MQ_EXPECT_EQ_INT(mq_llama_config_read(path_of("config/llama.json"), &c, &err), MQ_OK);
  MQ_EXPECT(c.gemma2 == 0 && c.embed_scale == 0.0 && c.query_pre_attn_scalar == 0.0 &&
            c.attn_softcap == 0.0 && c.final_softcap == 0.0); /* Llama's math untouched */
  mq_llama_config_free(&c);

  static const char *const bad[][2] = {
      {"bad_zero_heads", "num_attention_heads"}, {"bad_not_divisible", "hidden_size"},
      {"bad_kv", "num_key_value_heads"},         {"bad_arch", "GPT2LMHeadModel"},
      {"bad_missing", "vocab_size"},             {"bad_type", "hidden_size"},
      {"bad_eps", "rms_norm_eps"},               {"bad_json", "JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char rel[128];
    snprintf(rel, sizeof rel, "config/%s.json", bad[i][0]);
    const char *p = path_of(rel);
    mq_error_clear(&err);
    expect_einput(mq_llama_config_read(p, &c, &err), &err, p, bad[i][0]);
    expect_einput(MQ_EINPUT, &err, bad[i][1], bad[i][0]);
    MQ_EXPECT(c.json_text == NULL);
    printf("  %-18s %s\n", bad[i][0], err.msg);
  }
}

static void check_tokens(const char *rel, int vocab, int mod) {
  int32_t *t = NULL;
  size_t n = 0;
  mq_error err;
  mq_error_clear(&err);
  mq_status st = mq_tokens_read(path_of(rel), vocab, &t, &n, &err);
  MQ_EXPECT_EQ_INT(st, MQ_OK);
  if (st != MQ_OK) fprintf(stderr, "%s: %s\n", rel, err.msg);
  MQ_EXPECT_EQ_INT(n, 500);
  int bad = 0;
  for (size_t i = 0; i < n; i++) bad += t[i] != (int32_t)(((long)i * 7) % 1000 % mod);
  MQ_EXPECT_EQ_INT(bad, 0);
  mq_free(t);
}

static void test_tokens(void) {
  check_tokens("tokens/i32.npy", 1000, 1000);
  check_tokens("tokens/u16.npy", 1000, 1000);
  check_tokens("tokens/i16.npy", 1000, 1000);
  check_tokens("tokens/u32.npy", 1000, 1000);
  check_tokens("tokens/i64_v2.npy", 1000, 1000);
  check_tokens("tokens/i8.npy", 100, 100);
  check_tokens("tokens/u8.npy", 1000, 100);
  check_tokens("tokens/tok.h5", 1000, 1000);
  check_tokens("tokens/tok_u16.h5", 1000, 1000);

  int32_t *t = NULL;
  size_t n = 0;
  mq_error err;
  mq_error_clear(&err);
  MQ_EXPECT_EQ_INT(mq_tokens_read(path_of("tokens/raw.bin"), 256, &t, &n, &err), MQ_OK);
  MQ_EXPECT_EQ_INT(n, 261);
  if (n == 261) {
    MQ_EXPECT_EQ_INT(t[255], 255);
    MQ_EXPECT_EQ_INT(t[256], 'h');
  }
  mq_free(t);
  t = NULL;

  const char *p = path_of("tokens/raw.bin");
  mq_error_clear(&err);
  expect_einput(mq_tokens_read(p, 1000, &t, &n, &err), &err, p, "raw vocab");
  expect_einput(MQ_EINPUT, &err, "raw byte files need a 256-token vocabulary", "raw vocab");
  MQ_EXPECT(t == NULL);
  MQ_EXPECT_EQ_INT(n, 0);

  p = path_of("tokens/bad_id.npy");
  mq_error_clear(&err);
  expect_einput(mq_tokens_read(p, 1000, &t, &n, &err), &err, p, "bad_id");
  expect_einput(MQ_EINPUT, &err,
                "token 1000 at position 123 is outside the vocabulary (size 1000)", "bad_id");
  p = path_of("tokens/bad_id.h5");
  mq_error_clear(&err);
  expect_einput(mq_tokens_read(p, 1000, &t, &n, &err), &err, "at position 123", "bad_id.h5");
  p = path_of("tokens/bad_neg.npy");
  mq_error_clear(&err);
  expect_einput(mq_tokens_read(p, 1000, &t, &n, &err), &err, "token -3 at position 7", "bad_neg");

  static const char *const bad[] = {"bad_3d.npy",    "bad_float.npy", "bad_be.npy",
                                    "bad_u64.npy",   "bad_trunc.npy", "bad_magic.npy",
                                    "bad_float.h5",  "bad_name.h5",   "missing.npy"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char rel[128];
    snprintf(rel, sizeof rel, "tokens/%s", bad[i]);
    p = path_of(rel);
    mq_error_clear(&err);
    expect_einput(mq_tokens_read(p, 1000, &t, &n, &err), &err, p, bad[i]);
    MQ_EXPECT(t == NULL);
    MQ_EXPECT_EQ_INT(n, 0);
    printf("  %-18s %s\n", bad[i], err.msg);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  snprintf(fx, sizeof fx, "%s", argv[1]);
  test_single();
  test_sharded();
  test_hostile();
  test_config();
  test_tokens();
  MQ_EXPECT_EQ_INT(mq_mem_current(), 0);
  return mq_test_finish("test_readers");
}

/* Loading tokenizer.json (io/tokenizer.h): the file, field readers, added tokens and the
 * post-processor. The model is read by tokenizer_json_model.c, normalizers and pre-tokenizers
 * by tokenizer_json_pipe.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

/* Larger than any tokenizer.json in the wild (~35 MB); bounds what a hostile file can cost. */
#define MAX_FILE_BYTES ((long long)1 << 30)

/* ---- field readers ---- */

mq_status mq__tok_json_bool(const mq_tokenizer *t, const char *where, const json_t *obj,
                            const char *key, int dflt, int *out, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *v = json_object_get(obj, key);
  *out = dflt;
  if (v == NULL || json_is_null(v)) goto cleanup;
  if (!json_is_boolean(v))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s.%s: not true or false", t->path, where, key);
  *out = json_is_true(v);
cleanup:
  return st;
}

mq_status mq__tok_json_str(const mq_tokenizer *t, const char *where, const json_t *obj,
                           const char *key, const char **s, size_t *len, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *v = json_object_get(obj, key);
  *s = NULL;
  *len = 0;
  if (v == NULL || json_is_null(v)) goto cleanup;
  if (!json_is_string(v)) MQ_FAIL(err, MQ_EINPUT, "%s: %s.%s: not a string", t->path, where, key);
  *s = json_string_value(v);
  *len = json_string_length(v);
cleanup:
  return st;
}

mq_status mq__tok_json_type(const mq_tokenizer *t, const char *where, const json_t *obj,
                            const char **type, mq_error *err) {
  mq_status st = MQ_OK;
  size_t len;
  if (!json_is_object(obj)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not an object", t->path, where);
  MQ_CHECK(mq__tok_json_str(t, where, obj, "type", type, &len, err));
  if (*type == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: %s: no \"type\"", t->path, where);
cleanup:
  return st;
}

mq_status mq__tok_json_pattern(const mq_tokenizer *t, const char *where, const json_t *obj,
                               mq_tok_pattern *p, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *pat = json_object_get(obj, "pattern");
  const json_t *str = json_object_get(pat, "String"), *re = json_object_get(pat, "Regex");
  char w[128];
  snprintf(w, sizeof w, "%s.pattern", where);
  if (!json_is_object(pat) || (str == NULL) == (re == NULL))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: expected {\"String\": ...} or {\"Regex\": ...}", t->path, w);
  const json_t *v = str ? str : re;
  if (!json_is_string(v)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a string", t->path, w);
  if (str)
    MQ_CHECK(
        mq__tok_pattern_literal(t->path, w, json_string_value(v), json_string_length(v), p, err));
  else
    MQ_CHECK(
        mq__tok_pattern_regex(t->path, w, json_string_value(v), json_string_length(v), p, err));
cleanup:
  return st;
}

static mq_status json_id(const mq_tokenizer *t, const char *where, const json_t *v, int32_t *id,
                         mq_error *err) {
  mq_status st = MQ_OK;
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MQ_TOK_MAX_ID)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: not a token id in 0..%d", t->path, where, MQ_TOK_MAX_ID);
  *id = (int32_t)json_integer_value(v);
cleanup:
  return st;
}

/* ---- added tokens ---- */

mq_status mq__tok_parse_added(mq_tokenizer *t, const json_t *j, mq_error *err) {
  mq_status st = MQ_OK;
  mq_tok_added *raw = NULL, *nrm = NULL;
  size_t nraw = 0, nnrm = 0, n = json_array_size(j);
  char w[64];
  if (j == NULL || json_is_null(j)) goto build;
  if (!json_is_array(j)) MQ_FAIL(err, MQ_EINPUT, "%s: added_tokens: not an array", t->path);
  raw = mq_calloc(n + 1, sizeof *raw);
  nrm = mq_calloc(n + 1, sizeof *nrm);
  MQ_CHECK_ALLOC(err, raw && nrm, (n + 1) * sizeof *raw);
  for (size_t i = 0; i < n; i++) {
    const json_t *a = json_array_get(j, i);
    const char *content;
    size_t len;
    int special, normalized, single, lstrip, rstrip;
    int32_t id = -1;
    snprintf(w, sizeof w, "added_tokens[%zu]", i);
    if (!json_is_object(a)) MQ_FAIL(err, MQ_EINPUT, "%s: %s: not an object", t->path, w);
    MQ_CHECK(mq__tok_json_str(t, w, a, "content", &content, &len, err));
    if (content == NULL || len == 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: no (or an empty) \"content\"", t->path, w);
    MQ_CHECK(json_id(t, w, json_object_get(a, "id"), &id, err));
    MQ_CHECK(mq__tok_json_bool(t, w, a, "special", 0, &special, err));
    MQ_CHECK(mq__tok_json_bool(t, w, a, "normalized", !special, &normalized, err));
    MQ_CHECK(mq__tok_json_bool(t, w, a, "single_word", 0, &single, err));
    MQ_CHECK(mq__tok_json_bool(t, w, a, "lstrip", 0, &lstrip, err));
    MQ_CHECK(mq__tok_json_bool(t, w, a, "rstrip", 0, &rstrip, err));
    if (single) {
      char shown[48];
      mq__tok_printable(content, len, shown, sizeof shown);
      MQ_FAIL(err, MQ_EINPUT, "%s: %s ('%s'): single_word added tokens are not supported", t->path,
              w, shown);
    }
    if (id > t->max_id) t->max_id = id;
    const char *c = content;
    size_t clen = len;
    if (normalized &&
        t->nnorm > 0) /* matched in the normalized text, as the file's normalizer writes it */
      MQ_CHECK(mq__tok_normalize(t, content, len, &c, &clen, err));
    if (clen == 0) continue;
    mq_tok_added *dst = normalized ? &nrm[nnrm++] : &raw[nraw++];
    dst->content = mq_alloc(clen, 1);
    MQ_CHECK_ALLOC(err, dst->content, clen);
    memcpy(dst->content, c, clen);
    dst->len = clen;
    dst->id = id;
    dst->lstrip = lstrip;
    dst->rstrip = rstrip;
  }
build:
  st = mq__tok_matcher_build(&t->added_raw, raw, nraw, err);
  raw = NULL; /* owned by the matcher now, even when it failed */
  MQ_CHECK(st);
  st = mq__tok_matcher_build(&t->added_norm, nrm, nnrm, err);
  nrm = NULL;
  MQ_CHECK(st);
cleanup:
  for (size_t k = 0; raw && k < nraw; k++) mq_free(raw[k].content);
  for (size_t k = 0; nrm && k < nnrm; k++) mq_free(nrm[k].content);
  mq_free(raw);
  mq_free(nrm);
  return st;
}

/* ---- post-processor: special tokens before and after each document ---- */

static mq_status special_ids(mq_tokenizer *t, const char *where, const json_t *ids,
                             mq_token_buf *dst, mq_error *err) {
  mq_status st = MQ_OK;
  if (!json_is_array(ids))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: \"ids\" is not an array", t->path, where);
  for (size_t k = 0; k < json_array_size(ids); k++) {
    int32_t id = -1;
    MQ_CHECK(json_id(t, where, json_array_get(ids, k), &id, err));
    if (id > t->max_id) t->max_id = id;
    MQ_CHECK(mq__tok_ids_push(dst, id, err));
  }
cleanup:
  return st;
}

static mq_status template_single(mq_tokenizer *t, const char *where, const json_t *pp,
                                 mq_token_buf *pre, mq_token_buf *post, mq_error *err) {
  mq_status st = MQ_OK;
  const json_t *single = json_object_get(pp, "single"),
               *specials = json_object_get(pp, "special_tokens");
  int seen_a = 0;
  char w[160];
  if (!json_is_array(single))
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: \"single\" is not an array", t->path, where);
  for (size_t i = 0; i < json_array_size(single); i++) {
    const json_t *item = json_array_get(single, i);
    const json_t *sp = json_object_get(item, "SpecialToken"),
                 *sq = json_object_get(item, "Sequence");
    snprintf(w, sizeof w, "%s.single[%zu]", where, i);
    if (json_is_object(sq)) {
      const char *id = json_string_value(json_object_get(sq, "id"));
      if (id == NULL || strcmp(id, "A") != 0)
        MQ_FAIL(err, MQ_EINPUT, "%s: %s: a single-sequence template holds only sequence A", t->path,
                w);
      if (seen_a++) MQ_FAIL(err, MQ_EINPUT, "%s: %s: sequence A appears twice", t->path, w);
    } else if (json_is_object(sp)) {
      const char *name = json_string_value(json_object_get(sp, "id"));
      const json_t *entry = name ? json_object_get(specials, name) : NULL;
      if (!json_is_object(entry))
        MQ_FAIL(err, MQ_EINPUT, "%s: %s: special token '%s' is not in \"special_tokens\"", t->path,
                w, name ? name : "?");
      MQ_CHECK(special_ids(t, w, json_object_get(entry, "ids"), seen_a ? post : pre, err));
    } else {
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: neither a SpecialToken nor a Sequence", t->path, w);
    }
  }
  if (!seen_a) MQ_FAIL(err, MQ_EINPUT, "%s: %s.single: no sequence A", t->path, where);
cleanup:
  return st;
}

/* {"cls": [token, id], "sep": [token, id]} of RobertaProcessing / BertProcessing. */
static mq_status cls_sep(mq_tokenizer *t, const char *where, const json_t *pp, mq_token_buf *pre,
                         mq_token_buf *post, mq_error *err) {
  mq_status st = MQ_OK;
  const char *keys[2] = {"cls", "sep"};
  for (int k = 0; k < 2; k++) {
    const json_t *v = json_object_get(pp, keys[k]);
    int32_t id = -1;
    char w[128];
    snprintf(w, sizeof w, "%s.%s", where, keys[k]);
    if (!json_is_array(v) || json_array_size(v) != 2)
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: expected [token, id]", t->path, w);
    MQ_CHECK(json_id(t, w, json_array_get(v, 1), &id, err));
    if (id > t->max_id) t->max_id = id;
    MQ_CHECK(mq__tok_ids_push(k == 0 ? pre : post, id, err));
  }
cleanup:
  return st;
}

static mq_status post_one(mq_tokenizer *t, const char *where, const json_t *pp, int depth,
                          mq_token_buf *pre, mq_token_buf *post, mq_error *err) {
  mq_status st = MQ_OK;
  mq_token_buf a = {0}, b = {0};
  const char *type;
  if (pp == NULL || json_is_null(pp)) goto cleanup;
  if (depth > 8) MQ_FAIL(err, MQ_EINPUT, "%s: %s: Sequence nested too deeply", t->path, where);
  MQ_CHECK(mq__tok_json_type(t, where, pp, &type, err));
  if (!strcmp(type, "TemplateProcessing")) {
    MQ_CHECK(template_single(t, where, pp, pre, post, err));
  } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
    MQ_CHECK(cls_sep(t, where, pp, pre, post, err));
  } else if (!strcmp(type, "ByteLevel")) {
    /* offsets only */
  } else if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(pp, "processors");
    if (!json_is_array(list))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: \"processors\" is not an array", t->path, where);
    for (size_t i = 0; i < json_array_size(list); i++) {
      char w[160];
      snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
      a.n = b.n = 0;
      MQ_CHECK(post_one(t, w, json_array_get(list, i), depth + 1, &a, &b, err));
      /* each processor wraps what the ones before it produced */
      MQ_CHECK(mq__tok_ids_append(&a, pre->ids, pre->n, err));
      pre->n = 0;
      MQ_CHECK(mq__tok_ids_append(pre, a.ids, a.n, err));
      MQ_CHECK(mq__tok_ids_append(post, b.ids, b.n, err));
    }
  } else {
    MQ_FAIL(err, MQ_EINPUT,
            "%s: %s: post-processor '%s' is not supported (TemplateProcessing, ByteLevel, "
            "RobertaProcessing, BertProcessing, Sequence)",
            t->path, where, type);
  }
cleanup:
  mq_token_buf_free(&a);
  mq_token_buf_free(&b);
  return st;
}

mq_status mq__tok_parse_post_processor(mq_tokenizer *t, const json_t *j, mq_error *err) {
  mq_status st = MQ_OK;
  mq_token_buf pre = {0}, post = {0};
  MQ_CHECK(post_one(t, "post_processor", j, 0, &pre, &post, err));
  t->prefix = pre.ids;
  t->nprefix = pre.n;
  t->suffix = post.ids;
  t->nsuffix = post.n;
  pre.ids = post.ids = NULL;
cleanup:
  mq_token_buf_free(&pre);
  mq_token_buf_free(&post);
  return st;
}

/* ---- the file ---- */

mq_status mq_tokenizer_load_file(const char *json_path, mq_tokenizer **out, mq_error *err) {
  mq_status st = MQ_OK;
  mq_tokenizer *t = NULL;
  json_t *root = NULL;
  struct stat sb;
  *out = NULL;
  t = mq_calloc(1, sizeof *t);
  MQ_CHECK_ALLOC(err, t, sizeof *t);
  t->unk_id = -1;
  t->max_id = -1;
  for (int b = 0; b < 256; b++) t->byte_unit[b] = t->fallback_id[b] = -1;
  size_t plen = strlen(json_path);
  t->path = mq_alloc(plen + 1, 1);
  MQ_CHECK_ALLOC(err, t->path, plen + 1);
  memcpy(t->path, json_path, plen + 1);
  if (stat(json_path, &sb) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s (text input needs the model's tokenizer)",
            json_path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) MQ_FAIL(err, MQ_EINPUT, "%s: not a regular file", json_path);
  if ((long long)sb.st_size > MAX_FILE_BYTES)
    MQ_FAIL(err, MQ_EINPUT, "%s: %lld bytes, larger than any tokenizer (limit %lld)", json_path,
            (long long)sb.st_size, MAX_FILE_BYTES);
  json_error_t jerr;
  root = json_load_file(json_path, JSON_ALLOW_NUL, &jerr);
  if (root == NULL)
    MQ_FAIL(err, MQ_EINPUT, "%s: not valid JSON: %s (line %d, column %d)", json_path, jerr.text,
            jerr.line, jerr.column);
  if (!json_is_object(root)) MQ_FAIL(err, MQ_EINPUT, "%s: not a JSON object", json_path);
  MQ_CHECK(mq__tok_parse_normalizer(t, json_object_get(root, "normalizer"), err));
  MQ_CHECK(mq__tok_parse_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), err));
  MQ_CHECK(mq__tok_parse_model(t, json_object_get(root, "model"), err));
  MQ_CHECK(mq__tok_parse_added(t, json_object_get(root, "added_tokens"), err));
  MQ_CHECK(mq__tok_parse_post_processor(t, json_object_get(root, "post_processor"), err));
  *out = t;
  t = NULL;
cleanup:
  if (root) json_decref(root);
  mq_tokenizer_free(&t);
  return st;
}

mq_status mq_tokenizer_load(const char *model_dir, mq_tokenizer **out, mq_error *err) {
  mq_status st = MQ_OK;
  size_t n = strlen(model_dir);
  char *path = mq_alloc(n + 32, 1);
  MQ_CHECK_ALLOC(err, path, n + 32);
  snprintf(path, n + 32, "%s%stokenizer.json", model_dir,
           n > 0 && model_dir[n - 1] == '/' ? "" : "/");
  st = mq_tokenizer_load_file(path, out, err);
cleanup:
  mq_free(path);
  return st;
}

int32_t mq_tokenizer_id_limit(const mq_tokenizer *tok) {
  return tok->max_id + 1;
}

void mq_tokenizer_free(mq_tokenizer **tok) {
  mq_tokenizer *t = tok ? *tok : NULL;
  if (t == NULL) return;
  mq__tok_strmap_free(&t->vocab);
  mq__tok_strmap_free(&t->pieces);
  mq__tok_u64map_free(&t->merges);
  mq__tok_u64map_free(&t->joins);
  for (size_t k = 0; k < t->nnorm; k++) mq__tok_norm_free(&t->norm[k]);
  mq_free(t->norm);
  for (size_t k = 0; k < t->npre; k++) {
    mq__tok_pre_free(&t->pre[k]);
    if (t->lvl_buf) mq__tok_bytes_free(&t->lvl_buf[k]);
    if (t->lvl_span) mq_free(t->lvl_span[k]);
  }
  mq_free(t->pre);
  mq_free(t->lvl_buf);
  mq_free(t->lvl_span);
  mq_free(t->lvl_span_cap);
  mq__tok_matcher_free(&t->added_raw);
  mq__tok_matcher_free(&t->added_norm);
  mq_free(t->prefix);
  mq_free(t->suffix);
  mq__tok_strmap_free(&t->cache);
  mq_free(t->cache_ids);
  mq__tok_bytes_free(&t->clean);
  mq__tok_bytes_free(&t->nbuf[0]);
  mq__tok_bytes_free(&t->nbuf[1]);
  mq_free(t->sym);
  mq_free(t->heap);
  mq_free(t->ucp);
  mq_free(t->path);
  mq_free(t);
  *tok = NULL;
}

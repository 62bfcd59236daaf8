/* Normalizers and pre-tokenizers of tokenizer.json (tokenizer_internal.h). Sequences are
 * flattened into one list each; ByteLevel becomes its steps (optional prefix space, the GPT-2
 * regex split) and switches the model to byte units. */
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

/* The GPT-2 split of the ByteLevel pre-tokenizer (use_regex), as the Rust crate writes it. */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Nesting of Sequences, and steps in all: real files have a handful; the pipeline recurses once
 * per pre-tokenizer step, so a hostile list must not be unbounded. */
enum { MAX_DEPTH = 8, MAX_STEPS = 64 };

static mq_status copy_str(const char *s, size_t n, char **out, mq_error *err) {
  mq_status st = MQ_OK;
  *out = mq_alloc(n + 1, 1);
  MQ_CHECK_ALLOC(err, *out, n + 1);
  memcpy(*out, s, n);
  (*out)[n] = '\0';
cleanup:
  return st;
}

/* ---- normalizers ---- */

static mq_status new_norm(mq_tokenizer *t, mq_tok_norm_kind kind, mq_tok_norm **nm, mq_error *err) {
  mq_status st = MQ_OK;
  void *p = t->norm;
  if (t->nnorm == MAX_STEPS)
    MQ_FAIL(err, MQ_EINPUT, "%s: normalizer: more than %d steps", t->path, MAX_STEPS);
  MQ_CHECK(mq__tok_grow(&p, &t->norm_cap, t->nnorm + 1, sizeof(mq_tok_norm), err));
  t->norm = p;
  *nm = &t->norm[t->nnorm++];
  memset(*nm, 0, sizeof **nm);
  (*nm)->kind = kind;
cleanup:
  return st;
}

static mq_status add_normalizer(mq_tokenizer *t, const char *where, const json_t *j, int depth,
                                mq_error *err) {
  mq_status st = MQ_OK;
  const char *type, *s;
  size_t len;
  mq_tok_norm *nm = NULL;
  if (j == NULL || json_is_null(j)) goto cleanup;
  if (depth > MAX_DEPTH)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: Sequence nested too deeply", t->path, where);
  MQ_CHECK(mq__tok_json_type(t, where, j, &type, err));
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(j, "normalizers");
    if (!json_is_array(list))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: \"normalizers\" is not an array", t->path, where);
    for (size_t i = 0; i < json_array_size(list); i++) {
      char w[160];
      snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
      MQ_CHECK(add_normalizer(t, w, json_array_get(list, i), depth + 1, err));
    }
  } else if (!strcmp(type, "Prepend")) {
    MQ_CHECK(mq__tok_json_str(t, where, j, "prepend", &s, &len, err));
    if (s == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: %s: no \"prepend\"", t->path, where);
    MQ_CHECK(new_norm(t, MQ_TOK_NORM_PREPEND, &nm, err));
    MQ_CHECK(copy_str(s, len, &nm->str, err));
    nm->len = len;
  } else if (!strcmp(type, "Replace")) {
    MQ_CHECK(mq__tok_json_str(t, where, j, "content", &s, &len, err));
    if (s == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: %s: no \"content\"", t->path, where);
    MQ_CHECK(new_norm(t, MQ_TOK_NORM_REPLACE, &nm, err));
    MQ_CHECK(copy_str(s, len, &nm->str, err));
    nm->len = len;
    MQ_CHECK(mq__tok_json_pattern(t, where, j, &nm->pat, err));
  } else if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") ||
             !strcmp(type, "NFKD")) {
    mq_tok_norm_kind k = !strcmp(type, "NFC")    ? MQ_TOK_NORM_NFC
                         : !strcmp(type, "NFD")  ? MQ_TOK_NORM_NFD
                         : !strcmp(type, "NFKC") ? MQ_TOK_NORM_NFKC
                                                 : MQ_TOK_NORM_NFKD;
    MQ_CHECK(new_norm(t, k, &nm, err));
  } else if (!strcmp(type, "Strip")) {
    int left, right;
    MQ_CHECK(mq__tok_json_bool(t, where, j, "strip_left", 0, &left, err));
    MQ_CHECK(mq__tok_json_bool(t, where, j, "strip_right", 0, &right, err));
    MQ_CHECK(new_norm(t, MQ_TOK_NORM_STRIP, &nm, err));
    nm->left = left;
    nm->right = right;
  } else {
    MQ_FAIL(err, MQ_EINPUT,
            "%s: %s: normalizer '%s' is not supported (Sequence, Prepend, Replace, NFC, NFD, NFKC, "
            "NFKD, Strip)",
            t->path, where, type);
  }
cleanup:
  return st;
}

mq_status mq__tok_parse_normalizer(mq_tokenizer *t, const json_t *j, mq_error *err) {
  return add_normalizer(t, "normalizer", j, 0, err);
}

/* ---- pre-tokenizers ---- */

static mq_status new_pre(mq_tokenizer *t, const char *where, mq_tok_pre_kind kind, mq_tok_pre **p,
                         mq_error *err) {
  mq_status st = MQ_OK;
  void *arr = t->pre;
  if (t->byte_level)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: follows ByteLevel, which must be the last pre-tokenizer",
            t->path, where);
  if (t->npre == MAX_STEPS)
    MQ_FAIL(err, MQ_EINPUT, "%s: pre_tokenizer: more than %d steps", t->path, MAX_STEPS);
  MQ_CHECK(mq__tok_grow(&arr, &t->pre_cap, t->npre + 1, sizeof(mq_tok_pre), err));
  t->pre = arr;
  *p = &t->pre[t->npre++];
  memset(*p, 0, sizeof **p);
  (*p)->kind = kind;
cleanup:
  return st;
}

static mq_status parse_behavior(mq_tokenizer *t, const char *where, const json_t *j,
                                mq_tok_behavior *b, mq_error *err) {
  mq_status st = MQ_OK;
  static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
  const char *s;
  size_t len;
  MQ_CHECK(mq__tok_json_str(t, where, j, "behavior", &s, &len, err));
  if (s == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: %s: no \"behavior\"", t->path, where);
  for (int k = 0; k < 5; k++)
    if (!strcmp(s, names[k])) {
      *b = (mq_tok_behavior)k;
      goto cleanup;
    }
  MQ_FAIL(err, MQ_EINPUT, "%s: %s: unknown split behavior '%s'", t->path, where, s);
cleanup:
  return st;
}

static mq_status add_pre(mq_tokenizer *t, const char *where, const json_t *j, int depth,
                         mq_error *err) {
  mq_status st = MQ_OK;
  const char *type, *s;
  size_t len;
  mq_tok_pre *p = NULL;
  if (j == NULL || json_is_null(j)) goto cleanup;
  if (depth > MAX_DEPTH)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: Sequence nested too deeply", t->path, where);
  MQ_CHECK(mq__tok_json_type(t, where, j, &type, err));
  if (!strcmp(type, "Sequence")) {
    const json_t *list = json_object_get(j, "pretokenizers");
    if (!json_is_array(list))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: \"pretokenizers\" is not an array", t->path, where);
    for (size_t i = 0; i < json_array_size(list); i++) {
      char w[160];
      snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
      MQ_CHECK(add_pre(t, w, json_array_get(list, i), depth + 1, err));
    }
  } else if (!strcmp(type, "Split")) {
    MQ_CHECK(new_pre(t, where, MQ_TOK_PRE_SPLIT, &p, err));
    MQ_CHECK(parse_behavior(t, where, j, &p->behavior, err));
    MQ_CHECK(mq__tok_json_bool(t, where, j, "invert", 0, &p->invert, err));
    MQ_CHECK(mq__tok_json_pattern(t, where, j, &p->pat, err));
  } else if (!strcmp(type, "Digits")) {
    int individual;
    MQ_CHECK(mq__tok_json_bool(t, where, j, "individual_digits", 0, &individual, err));
    MQ_CHECK(new_pre(t, where, MQ_TOK_PRE_SPLIT, &p, err));
    p->behavior = MQ_TOK_ISOLATED; /* Rust: char::is_numeric, Isolated or Contiguous */
    const char *re = individual ? "\\p{N}" : "\\p{N}+";
    MQ_CHECK(mq__tok_pattern_regex(t->path, where, re, strlen(re), &p->pat, err));
  } else if (!strcmp(type, "Replace")) {
    MQ_CHECK(mq__tok_json_str(t, where, j, "content", &s, &len, err));
    if (s == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: %s: no \"content\"", t->path, where);
    MQ_CHECK(new_pre(t, where, MQ_TOK_PRE_REPLACE, &p, err));
    MQ_CHECK(copy_str(s, len, &p->str, err));
    p->len = len;
    MQ_CHECK(mq__tok_json_pattern(t, where, j, &p->pat, err));
  } else if (!strcmp(type, "Metaspace")) {
    const char *scheme;
    size_t slen;
    int add_prefix;
    MQ_CHECK(mq__tok_json_str(t, where, j, "replacement", &s, &len, err));
    if (s == NULL) s = "\xE2\x96\x81", len = 3; /* U+2581 */
    if (len == 0 || len != mq__tok_utf8_len((unsigned char)s[0]))
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: \"replacement\" must be one character", t->path, where);
    MQ_CHECK(new_pre(t, where, MQ_TOK_PRE_METASPACE, &p, err));
    MQ_CHECK(copy_str(s, len, &p->str, err));
    p->len = len;
    MQ_CHECK(mq__tok_pattern_literal(t->path, where, s, len, &p->pat, err));
    p->behavior = MQ_TOK_MERGED_WITH_NEXT;
    MQ_CHECK(mq__tok_json_bool(t, where, j, "split", 1, &p->split, err));
    MQ_CHECK(mq__tok_json_str(t, where, j, "prepend_scheme", &scheme, &slen, err));
    MQ_CHECK(mq__tok_json_bool(t, where, j, "add_prefix_space", 1, &add_prefix, err));
    if (scheme == NULL)
      p->prepend = add_prefix ? MQ_TOK_PREPEND_ALWAYS : MQ_TOK_PREPEND_NEVER;
    else if (!strcmp(scheme, "always"))
      p->prepend = MQ_TOK_PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first"))
      p->prepend = MQ_TOK_PREPEND_FIRST;
    else if (!strcmp(scheme, "never"))
      p->prepend = MQ_TOK_PREPEND_NEVER;
    else
      MQ_FAIL(err, MQ_EINPUT, "%s: %s: unknown prepend_scheme '%s'", t->path, where, scheme);
  } else if (!strcmp(type, "ByteLevel")) {
    int prefix, regex;
    MQ_CHECK(mq__tok_json_bool(t, where, j, "add_prefix_space", 1, &prefix, err));
    MQ_CHECK(mq__tok_json_bool(t, where, j, "use_regex", 1, &regex, err));
    if (prefix) MQ_CHECK(new_pre(t, where, MQ_TOK_PRE_PREFIX_SPACE, &p, err));
    if (regex) {
      MQ_CHECK(new_pre(t, where, MQ_TOK_PRE_SPLIT, &p, err));
      p->behavior = MQ_TOK_ISOLATED;
      MQ_CHECK(mq__tok_pattern_regex(t->path, where, gpt2_regex, strlen(gpt2_regex), &p->pat, err));
    }
    t->byte_level = 1;
  } else {
    MQ_FAIL(err, MQ_EINPUT,
            "%s: %s: pre-tokenizer '%s' is not supported (Sequence, Split, ByteLevel, Metaspace, "
            "Digits, Replace)",
            t->path, where, type);
  }
cleanup:
  return st;
}

mq_status mq__tok_parse_pre_tokenizer(mq_tokenizer *t, const json_t *j, mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(add_pre(t, "pre_tokenizer", j, 0, err));
  if (t->npre > 0) {
    t->lvl_buf = mq_calloc(t->npre, sizeof *t->lvl_buf);
    t->lvl_span = mq_calloc(t->npre, sizeof *t->lvl_span);
    t->lvl_span_cap = mq_calloc(t->npre, sizeof *t->lvl_span_cap);
    MQ_CHECK_ALLOC(err, t->lvl_buf && t->lvl_span && t->lvl_span_cap, t->npre * sizeof *t->lvl_buf);
  }
cleanup:
  return st;
}

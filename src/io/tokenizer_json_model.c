/* The "model" section of tokenizer.json: BPE vocabulary and merges (tokenizer_internal.h).
 * Checked as the Rust crate checks them when it loads a file: every merge names two tokens of
 * the vocabulary and their concatenation is one too; ids are in range and unique. */
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

/* GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for themselves, the other 68
 * bytes for U+0100... in byte order. u2b: code point (< 324) -> byte, -1 outside. */
static void byte_alphabet(uint32_t b2u[256], int16_t u2b[324]) {
  uint32_t n = 0;
  for (int c = 0; c < 324; c++) u2b[c] = -1;
  for (int b = 0; b < 256; b++) {
    int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    b2u[b] = keep ? (uint32_t)b : 256 + n++;
    u2b[b2u[b]] = (int16_t)b;
  }
}

/* Byte of the alphabet character at s (valid UTF-8), or -1. */
static int alphabet_byte(const int16_t u2b[324], const unsigned char *s, size_t len) {
  uint32_t cp = mq__tok_utf8_cp(s, len);
  return cp < 324 ? u2b[cp] : -1;
}

/* Decodes a byte-level token into raw bytes (dst); 0 when a character is outside the alphabet. */
static int decode_bytes(const int16_t u2b[324], const char *s, size_t n, mq_tok_bytes *dst) {
  dst->n = 0;
  for (size_t i = 0; i < n;) {
    size_t len = mq__tok_utf8_len((unsigned char)s[i]);
    int b = i + len <= n ? alphabet_byte(u2b, (const unsigned char *)s + i, len) : -1;
    if (b < 0) return 0;
    dst->p[dst->n++] = (char)b;
    i += len;
  }
  return 1;
}

static size_t last_char(const char *s, size_t n) {
  size_t k = n - 1;
  while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
  return k;
}

/* The two units a merge of (a, b) joins: last of a, first of b (codepoints, or bytes in
 * byte-level mode). 0 when the merge can never apply (a character outside the alphabet). */
static int junction(const mq_tokenizer *t, const int16_t u2b[324], const char *a, size_t na,
                    const char *b, size_t nb, uint64_t *key) {
  size_t ka = last_char(a, na), lb = mq__tok_utf8_len((unsigned char)b[0]);
  const unsigned char *pa = (const unsigned char *)a + ka, *pb = (const unsigned char *)b;
  if (lb > nb) return 0;
  uint32_t x, y;
  if (t->byte_level) {
    int ba = alphabet_byte(u2b, pa, na - ka), bb = alphabet_byte(u2b, pb, lb);
    if (ba < 0 || bb < 0) return 0;
    x = (uint32_t)ba;
    y = (uint32_t)bb;
  } else {
    x = mq__tok_utf8_cp(pa, na - ka);
    y = mq__tok_utf8_cp(pb, lb);
  }
  *key = (uint64_t)x << 32 | y;
  return 1;
}

/* Merge i: "a b" (split at the first space) or ["a", "b"]. */
static mq_status merge_parts(const mq_tokenizer *t, size_t i, const json_t *m, const char **a,
                             size_t *na, const char **b, size_t *nb, mq_error *err) {
  mq_status st = MQ_OK;
  if (json_is_string(m)) {
    const char *s = json_string_value(m), *sp = memchr(s, ' ', json_string_length(m));
    if (sp == NULL || sp == s || sp + 1 == s + json_string_length(m))
      MQ_FAIL(err, MQ_EINPUT, "%s: model.merges[%zu]: not \"a b\" (two tokens and one space)",
              t->path, i);
    *a = s;
    *na = (size_t)(sp - s);
    *b = sp + 1;
    *nb = json_string_length(m) - *na - 1;
  } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
             json_is_string(json_array_get(m, 1))) {
    *a = json_string_value(json_array_get(m, 0));
    *na = json_string_length(json_array_get(m, 0));
    *b = json_string_value(json_array_get(m, 1));
    *nb = json_string_length(json_array_get(m, 1));
    if (*na == 0 || *nb == 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: model.merges[%zu]: empty token", t->path, i);
  } else {
    MQ_FAIL(err, MQ_EINPUT, "%s: model.merges[%zu]: neither \"a b\" nor [\"a\", \"b\"]", t->path,
            i);
  }
cleanup:
  return st;
}

static mq_status lookup(const mq_tokenizer *t, size_t i, const char *s, size_t n, const char *what,
                        int32_t *id, mq_error *err) {
  mq_status st = MQ_OK;
  uint64_t v;
  if (!mq__tok_strmap_get(&t->vocab, s, n, &v)) {
    char shown[64];
    mq__tok_printable(s, n, shown, sizeof shown);
    MQ_FAIL(err, MQ_EINPUT, "%s: model.merges[%zu]: %s '%s' is not in the vocabulary", t->path, i,
            what, shown);
  }
  *id = (int32_t)v;
cleanup:
  return st;
}

static mq_status parse_merges(mq_tokenizer *t, const json_t *merges, const int16_t u2b[324],
                              mq_error *err) {
  mq_status st = MQ_OK;
  mq_tok_bytes cat = {0};
  size_t n = json_array_size(merges);
  if (!json_is_array(merges)) MQ_FAIL(err, MQ_EINPUT, "%s: model.merges: not an array", t->path);
  if (n > MQ_TOK_MAX_MERGES)
    MQ_FAIL(err, MQ_EINPUT, "%s: model.merges: %zu merges, more than the limit %d", t->path, n,
            MQ_TOK_MAX_MERGES);
  for (size_t i = 0; i < n; i++) {
    const char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int32_t ia = -1, ib = -1, im = -1;
    MQ_CHECK(merge_parts(t, i, json_array_get(merges, i), &a, &na, &b, &nb, err));
    MQ_CHECK(lookup(t, i, a, na, "token", &ia, err));
    MQ_CHECK(lookup(t, i, b, nb, "token", &ib, err));
    cat.n = 0;
    MQ_CHECK(mq__tok_bytes_append(&cat, a, na, err));
    MQ_CHECK(mq__tok_bytes_append(&cat, b, nb, err));
    MQ_CHECK(lookup(t, i, cat.p, cat.n, "merged token", &im, err));
    /* a later duplicate of a pair overrides the earlier rank, as in the Rust crate */
    MQ_CHECK(mq__tok_u64map_put(&t->merges, (uint64_t)ia << 32 | (uint32_t)ib,
                                (uint64_t)i << 32 | (uint32_t)im, err));
    int special = ia == t->unk_id || ib == t->unk_id;
    for (int k = 0; k < 256 && t->byte_fallback && !special; k++)
      special = t->fallback_id[k] == ia || t->fallback_id[k] == ib;
    uint64_t key;
    if (special)
      t->cut_ok = 0; /* units that are not characters: never cut */
    else if (junction(t, u2b, a, na, b, nb, &key))
      MQ_CHECK(mq__tok_u64map_put(&t->joins, key, 1, err));
  }
cleanup:
  mq__tok_bytes_free(&cat);
  return st;
}

static mq_status parse_vocab(mq_tokenizer *t, const json_t *vocab, const int16_t u2b[324],
                             mq_error *err) {
  mq_status st = MQ_OK;
  uint8_t *seen = NULL;
  mq_tok_bytes raw = {0};
  const char *key;
  size_t klen;
  json_t *v;
  if (!json_is_object(vocab)) MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: not an object", t->path);
  if (json_object_size(vocab) == 0) MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: empty", t->path);
  seen = mq_calloc(MQ_TOK_MAX_ID / 8 + 1, 1);
  MQ_CHECK_ALLOC(err, seen, MQ_TOK_MAX_ID / 8 + 1);
  json_object_keylen_foreach((json_t *)vocab, key, klen, v) {
    char shown[64];
    mq__tok_printable(key, klen, shown, sizeof shown);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MQ_TOK_MAX_ID)
      MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: '%s': not a token id in 0..%d", t->path, shown,
              MQ_TOK_MAX_ID);
    int32_t id = (int32_t)json_integer_value(v);
    if (seen[id / 8] & (1u << (id % 8)))
      MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: id %d is given to two tokens (one is '%s')",
              t->path, id, shown);
    seen[id / 8] |= (uint8_t)(1u << (id % 8));
    if (klen == 0) MQ_FAIL(err, MQ_EINPUT, "%s: model.vocab: an empty token (id %d)", t->path, id);
    if (id > t->max_id) t->max_id = id;
    MQ_CHECK(mq__tok_strmap_put(&t->vocab, key, klen, (uint64_t)id, NULL, err));
    if (t->byte_level) {
      MQ_CHECK(mq__tok_bytes_reserve(&raw, klen, err));
      if (!decode_bytes(u2b, key, klen, &raw)) continue; /* never produced by byte units */
      MQ_CHECK(mq__tok_strmap_put(&t->pieces, raw.p, raw.n, (uint64_t)id, NULL, err));
      if (raw.n == 1) t->byte_unit[(unsigned char)raw.p[0]] = id;
    }
  }
cleanup:
  mq_free(seen);
  mq__tok_bytes_free(&raw);
  return st;
}

static mq_status check_affix(const mq_tokenizer *t, const json_t *m, const char *key,
                             mq_error *err) {
  mq_status st = MQ_OK;
  const char *s;
  size_t len;
  MQ_CHECK(mq__tok_json_str(t, "model", m, key, &s, &len, err));
  if (s != NULL && len > 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: model.%s is not supported (BPE without subword affixes only)",
            t->path, key);
cleanup:
  return st;
}

mq_status mq__tok_parse_model(mq_tokenizer *t, const json_t *m, mq_error *err) {
  mq_status st = MQ_OK;
  uint32_t b2u[256];
  int16_t u2b[324];
  const char *type, *unk;
  size_t len;
  byte_alphabet(b2u, u2b);
  if (!json_is_object(m)) MQ_FAIL(err, MQ_EINPUT, "%s: model: missing or not an object", t->path);
  MQ_CHECK(mq__tok_json_str(t, "model", m, "type", &type, &len, err));
  if (type == NULL &&
      !(json_is_object(json_object_get(m, "vocab")) && json_is_array(json_object_get(m, "merges"))))
    MQ_FAIL(err, MQ_EINPUT, "%s: model: no \"type\" and not BPE-shaped (vocab and merges)",
            t->path);
  if (type != NULL && strcmp(type, "BPE") != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: model type '%s' is not supported (BPE only)", t->path, type);
  const json_t *dropout = json_object_get(m, "dropout");
  if (dropout && !json_is_null(dropout) &&
      !(json_is_number(dropout) && json_number_value(dropout) == 0))
    MQ_FAIL(err, MQ_EINPUT, "%s: model.dropout is not supported (it makes tokenization random)",
            t->path);
  MQ_CHECK(check_affix(t, m, "continuing_subword_prefix", err));
  MQ_CHECK(check_affix(t, m, "end_of_word_suffix", err));
  MQ_CHECK(mq__tok_json_bool(t, "model", m, "fuse_unk", 0, &t->fuse_unk, err));
  MQ_CHECK(mq__tok_json_bool(t, "model", m, "byte_fallback", 0, &t->byte_fallback, err));
  MQ_CHECK(mq__tok_json_bool(t, "model", m, "ignore_merges", 0, &t->ignore_merges, err));
  if (t->byte_fallback && t->byte_level)
    MQ_FAIL(err, MQ_EINPUT,
            "%s: model.byte_fallback with a ByteLevel pre-tokenizer is not supported", t->path);
  MQ_CHECK(parse_vocab(t, json_object_get(m, "vocab"), u2b, err));
  MQ_CHECK(mq__tok_json_str(t, "model", m, "unk_token", &unk, &len, err));
  if (unk != NULL) {
    uint64_t v;
    char shown[64];
    mq__tok_printable(unk, len, shown, sizeof shown);
    if (!mq__tok_strmap_get(&t->vocab, unk, len, &v))
      MQ_FAIL(err, MQ_EINPUT, "%s: model.unk_token '%s' is not in the vocabulary", t->path, shown);
    t->unk_id = (int32_t)v;
  }
  for (int b = 0; b < 256 && t->byte_fallback; b++) {
    char name[8];
    uint64_t v;
    snprintf(name, sizeof name, "<0x%02X>", b);
    if (mq__tok_strmap_get(&t->vocab, name, 6, &v)) t->fallback_id[b] = (int32_t)v;
  }
  t->cut_ok = 1;
  MQ_CHECK(parse_merges(t, json_object_get(m, "merges"), u2b, err));
cleanup:
  return st;
}

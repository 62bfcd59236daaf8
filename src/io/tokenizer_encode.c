/* One document through the tokenizer (io/tokenizer.h), in the Rust crate's order:
 *   1. added tokens that are not normalized are cut out of the raw text (leftmost-longest;
 *      lstrip/rstrip take the White_Space next to them);
 *   2. each piece between them is normalized, then the normalized added tokens are cut out;
 *   3. the pieces left go through the pre-tokenizers and the BPE model;
 *   4. the post-processor's special tokens go around the document. */
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

/* ---- added-token matchers ---- */

static unsigned key2(const mq_tok_added *a) {
  return (unsigned)(unsigned char)a->content[0] << 8 | (unsigned char)a->content[1];
}

/* Single-byte tokens first (by byte), then by two-byte key, longest first within a key. */
static int cmp_added(const void *x, const void *y) {
  const mq_tok_added *a = x, *b = y;
  int sa = a->len == 1, sb = b->len == 1;
  if (sa != sb) return sb - sa;
  unsigned ka = sa ? (unsigned char)a->content[0] : key2(a);
  unsigned kb = sb ? (unsigned char)b->content[0] : key2(b);
  if (ka != kb) return ka < kb ? -1 : 1;
  if (a->len != b->len) return a->len > b->len ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

mq_status mq__tok_matcher_build(mq_tok_matcher *m, mq_tok_added *tok, size_t n, mq_error *err) {
  mq_status st = MQ_OK;
  memset(m, 0, sizeof *m);
  m->tok = tok;
  m->n = n;
  m->first = mq_calloc(65537, sizeof *m->first);
  m->single = mq_calloc(257, sizeof *m->single);
  MQ_CHECK_ALLOC(err, m->first && m->single, 65537 * sizeof *m->first);
  if (n == 0) goto cleanup;
  qsort(tok, n, sizeof *tok, cmp_added);
  size_t ns = 0;
  while (ns < n && tok[ns].len == 1) ns++;
  /* CSR offsets: single[b] .. single[b+1] in tok[0..ns); first[k] .. first[k+1] in tok[ns..n) */
  for (size_t i = 0; i < n; i++) {
    m->starts[(unsigned char)tok[i].content[0]] = 1;
    if (i < ns)
      m->single[(unsigned char)tok[i].content[0] + 1]++;
    else
      m->first[key2(&tok[i]) + 1]++;
  }
  for (int b = 0; b < 256; b++) m->single[b + 1] += m->single[b];
  m->first[0] = (uint32_t)ns;
  for (int k = 0; k < 65536; k++) m->first[k + 1] += m->first[k];
cleanup:
  return st;
}

void mq__tok_matcher_free(mq_tok_matcher *m) {
  for (size_t k = 0; m->tok && k < m->n; k++) mq_free(m->tok[k].content);
  mq_free(m->tok);
  mq_free(m->first);
  mq_free(m->single);
  memset(m, 0, sizeof *m);
}

/* The longest token at s[i..n), or NULL. */
static const mq_tok_added *match_at(const mq_tok_matcher *m, const char *s, size_t n, size_t i) {
  unsigned char c = (unsigned char)s[i];
  if (i + 1 < n) {
    unsigned k = (unsigned)c << 8 | (unsigned char)s[i + 1];
    for (uint32_t j = m->first[k]; j < m->first[k + 1]; j++)
      if (m->tok[j].len <= n - i && !memcmp(s + i, m->tok[j].content, m->tok[j].len))
        return &m->tok[j];
  }
  if (m->single[c] < m->single[c + 1]) return &m->tok[m->single[c]];
  return NULL;
}

/* The next added token from pos on: [*a, *b) after lstrip (not before lo) and rstrip. */
static const mq_tok_added *next_added(const mq_tok_matcher *m, const char *s, size_t n, size_t pos,
                                      size_t lo, size_t *a, size_t *b) {
  const unsigned char *u = (const unsigned char *)s;
  if (m->n == 0) return NULL;
  for (size_t i = pos; i < n; i++) {
    if (!m->starts[u[i]]) continue;
    const mq_tok_added *tok = match_at(m, s, n, i);
    if (tok == NULL) continue;
    size_t x = i, y = i + tok->len;
    while (tok->lstrip && x > lo) {
      size_t k = x - 1;
      while (k > lo && (u[k] & 0xC0) == 0x80) k--;
      if (!mq__tok_is_white_space(mq__tok_utf8_cp(u + k, x - k))) break;
      x = k;
    }
    while (tok->rstrip && y < n) {
      size_t len = mq__tok_utf8_len(u[y]);
      if (y + len > n || !mq__tok_is_white_space(mq__tok_utf8_cp(u + y, len))) break;
      y += len;
    }
    *a = x;
    *b = y;
    return tok;
  }
  return NULL;
}

/* ---- a document ---- */

/* Text between raw added tokens: normalize, cut normalized added tokens, pre-tokenize. */
static mq_status encode_section(mq_tokenizer *t, const char *s, size_t n, int at_origin,
                                mq_token_buf *out, mq_error *err) {
  mq_status st = MQ_OK;
  const char *ns = s;
  size_t nn = n, pos = 0, a, b;
  if (n == 0) goto cleanup;
  if (t->nnorm > 0) MQ_CHECK(mq__tok_normalize(t, s, n, &ns, &nn, err));
  const mq_tok_added *tok;
  while ((tok = next_added(&t->added_norm, ns, nn, pos, pos, &a, &b)) != NULL) {
    MQ_CHECK(mq__tok_pretokenize(t, 0, ns + pos, a - pos, at_origin && pos == 0, out, err));
    MQ_CHECK(mq__tok_ids_push(out, tok->id, err));
    pos = b;
  }
  MQ_CHECK(mq__tok_pretokenize(t, 0, ns + pos, nn - pos, at_origin && pos == 0, out, err));
cleanup:
  return st;
}

mq_status mq_tokenizer_encode(mq_tokenizer *t, const char *text, size_t len, mq_token_buf *out,
                              mq_error *err) {
  mq_status st = MQ_OK;
  const char *s = text;
  size_t pos = 0, a, b;
  if (!mq__tok_utf8_valid((const unsigned char *)text, len)) {
    MQ_CHECK(mq__tok_utf8_clean((const unsigned char *)text, len, &t->clean, err));
    s = t->clean.p;
    len = t->clean.n;
  }
  MQ_CHECK(mq__tok_ids_append(out, t->prefix, t->nprefix, err));
  const mq_tok_added *tok;
  while ((tok = next_added(&t->added_raw, s, len, pos, pos, &a, &b)) != NULL) {
    MQ_CHECK(encode_section(t, s + pos, a - pos, pos == 0, out, err));
    MQ_CHECK(mq__tok_ids_push(out, tok->id, err));
    pos = b;
  }
  MQ_CHECK(encode_section(t, s + pos, len - pos, pos == 0, out, err));
  MQ_CHECK(mq__tok_ids_append(out, t->suffix, t->nsuffix, err));
cleanup:
  return st;
}

/* Pre-tokenizers (tokenizer_internal.h). A piece goes through the levels depth-first: each level
 * writes what it changes into its own buffer and its split into its own span list, so the
 * pieces of a level stay valid while the levels below work on them. The result equals the Rust
 * crate's breadth-first application (no pre-tokenizer looks across pieces). */
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

static mq_status push_span(mq_tokenizer *t, size_t level, size_t *count, size_t a, size_t b,
                           int match, mq_error *err) {
  mq_status st = MQ_OK;
  if (*count == t->lvl_span_cap[level]) {
    void *p = t->lvl_span[level];
    MQ_CHECK(mq__tok_grow(&p, &t->lvl_span_cap[level], *count + 1, sizeof(mq_tok_span), err));
    t->lvl_span[level] = p;
  }
  t->lvl_span[level][(*count)++] = (mq_tok_span){a, b, match};
cleanup:
  return st;
}

/* Matches and gaps of p in s[n] (Rust Pattern::find_matches), then the behaviour's fold
 * (Rust NormalizedString::split). The pieces are lvl_span[level][*first .. *end). */
static mq_status split_spans(mq_tokenizer *t, size_t level, const mq_tok_pattern *p,
                             mq_tok_behavior behavior, int invert, const char *s, size_t n,
                             size_t *first, size_t *end, mq_error *err) {
  mq_status st = MQ_OK;
  size_t count = 0, prev = 0, pos = 0;
  while (pos <= n) {
    int found;
    size_t a, b;
    MQ_CHECK(mq__tok_pattern_find(t->path, p, s, n, pos, &found, &a, &b, err));
    if (!found) break;
    if (a > prev) MQ_CHECK(push_span(t, level, &count, prev, a, 0, err));
    MQ_CHECK(push_span(t, level, &count, a, b, 1, err));
    prev = b;
    pos = b > a ? b : a < n ? a + mq__tok_utf8_len((unsigned char)s[a]) : n + 1;
  }
  if (prev < n) MQ_CHECK(push_span(t, level, &count, prev, n, 0, err));
  mq_tok_span *sp = t->lvl_span[level];
  if (invert)
    for (size_t k = 0; k < count; k++) sp[k].match = !sp[k].match;
  size_t w = 0;
  int prev_match = 0;
  switch (behavior) {
  case MQ_TOK_ISOLATED: w = count; break;
  case MQ_TOK_REMOVED:
    for (size_t r = 0; r < count; r++)
      if (!sp[r].match) sp[w++] = sp[r];
    break;
  case MQ_TOK_MERGED_WITH_PREVIOUS:
    for (size_t r = 0; r < count; r++) {
      int m = sp[r].match;
      if (m && !prev_match && w > 0)
        sp[w - 1].end = sp[r].end;
      else
        sp[w++] = sp[r];
      prev_match = m;
    }
    break;
  case MQ_TOK_CONTIGUOUS:
    for (size_t r = 0; r < count; r++) {
      int m = sp[r].match;
      if (m == prev_match && w > 0)
        sp[w - 1].end = sp[r].end;
      else
        sp[w++] = sp[r];
      prev_match = m;
    }
    break;
  case MQ_TOK_MERGED_WITH_NEXT: { /* the same fold from the right */
    size_t wr = count;
    for (size_t r = count; r-- > 0;) {
      int m = sp[r].match;
      if (m && !prev_match && wr < count)
        sp[wr].start = sp[r].start;
      else
        sp[--wr] = sp[r];
      prev_match = m;
    }
    *first = wr;
    *end = count;
    goto cleanup;
  }
  }
  *first = 0;
  *end = w;
cleanup:
  return st;
}

/* Recurses into the non-empty pieces of a split. */
static mq_status each_piece(mq_tokenizer *t, size_t level, const char *s, size_t first, size_t end,
                            int at_origin, mq_token_buf *out, mq_error *err) {
  mq_status st = MQ_OK;
  for (size_t k = first; k < end; k++) {
    const mq_tok_span sp = t->lvl_span[level][k];
    if (sp.end > sp.start)
      MQ_CHECK(mq__tok_pretokenize(t, level + 1, s + sp.start, sp.end - sp.start,
                                   at_origin && sp.start == 0, out, err));
  }
cleanup:
  return st;
}

static mq_status metaspace(mq_tokenizer *t, size_t level, const char *s, size_t n, int at_origin,
                           mq_token_buf *out, mq_error *err) {
  mq_status st = MQ_OK;
  const mq_tok_pre *p = &t->pre[level];
  mq_tok_bytes *buf = &t->lvl_buf[level];
  buf->n = 0;
  MQ_CHECK(mq__tok_bytes_reserve(buf, n + p->len + 16, err));
  /* after ' ' -> replacement, the text starts with the replacement iff it starts with either */
  int starts = n > 0 && (s[0] == ' ' || (n >= p->len && !memcmp(s, p->str, p->len)));
  if (!starts &&
      (p->prepend == MQ_TOK_PREPEND_ALWAYS || (p->prepend == MQ_TOK_PREPEND_FIRST && at_origin)))
    MQ_CHECK(mq__tok_bytes_append(buf, p->str, p->len, err));
  size_t i = 0;
  while (i < n) {
    const char *sp = memchr(s + i, ' ', n - i);
    size_t j = sp ? (size_t)(sp - s) : n;
    MQ_CHECK(mq__tok_bytes_append(buf, s + i, j - i, err));
    if (j < n) MQ_CHECK(mq__tok_bytes_append(buf, p->str, p->len, err));
    i = j + 1;
  }
  if (!p->split) {
    MQ_CHECK(mq__tok_pretokenize(t, level + 1, buf->p, buf->n, at_origin, out, err));
  } else {
    size_t first, end;
    MQ_CHECK(split_spans(t, level, &p->pat, MQ_TOK_MERGED_WITH_NEXT, 0, buf->p, buf->n, &first,
                         &end, err));
    MQ_CHECK(each_piece(t, level, buf->p, first, end, at_origin, out, err));
  }
cleanup:
  return st;
}

mq_status mq__tok_pretokenize(mq_tokenizer *t, size_t level, const char *s, size_t n, int at_origin,
                              mq_token_buf *out, mq_error *err) {
  mq_status st = MQ_OK;
  if (n == 0) goto cleanup;
  if (level == t->npre) {
    MQ_CHECK(mq__tok_model(t, s, n, out, err));
    goto cleanup;
  }
  const mq_tok_pre *p = &t->pre[level];
  mq_tok_bytes *buf = &t->lvl_buf[level];
  switch (p->kind) {
  case MQ_TOK_PRE_SPLIT: {
    size_t first, end;
    MQ_CHECK(split_spans(t, level, &p->pat, p->behavior, p->invert, s, n, &first, &end, err));
    MQ_CHECK(each_piece(t, level, s, first, end, at_origin, out, err));
    break;
  }
  case MQ_TOK_PRE_REPLACE:
    MQ_CHECK(mq__tok_pattern_replace(t->path, &p->pat, s, n, p->str, p->len, buf, err));
    MQ_CHECK(mq__tok_pretokenize(t, level + 1, buf->p, buf->n, at_origin, out, err));
    break;
  case MQ_TOK_PRE_METASPACE: MQ_CHECK(metaspace(t, level, s, n, at_origin, out, err)); break;
  case MQ_TOK_PRE_PREFIX_SPACE:
    if (s[0] == ' ') {
      MQ_CHECK(mq__tok_pretokenize(t, level + 1, s, n, at_origin, out, err));
    } else {
      buf->n = 0;
      MQ_CHECK(mq__tok_bytes_append(buf, " ", 1, err));
      MQ_CHECK(mq__tok_bytes_append(buf, s, n, err));
      MQ_CHECK(mq__tok_pretokenize(t, level + 1, buf->p, buf->n, at_origin, out, err));
    }
    break;
  }
cleanup:
  return st;
}

void mq__tok_pre_free(mq_tok_pre *p) {
  mq__tok_pattern_free(&p->pat);
  mq_free(p->str);
  memset(p, 0, sizeof *p);
}

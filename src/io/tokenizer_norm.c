/* Normalizers (tokenizer_internal.h): applied in order to each piece of text between added
 * tokens, as the Rust crate does. Unicode normalization forms through utf8proc. */
#include <string.h>
#include <utf8proc.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

static utf8proc_option_t form_options(mq_tok_norm_kind kind) {
  switch (kind) {
  case MQ_TOK_NORM_NFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
  case MQ_TOK_NORM_NFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
  case MQ_TOK_NORM_NFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  default: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  }
}

/* One segment s[n] (valid UTF-8) in the normalization form, appended to dst. */
static mq_status form_segment(mq_tokenizer *t, utf8proc_option_t opt, const char *s, size_t n,
                              mq_tok_bytes *dst, mq_error *err) {
  mq_status st = MQ_OK;
  for (;;) {
    utf8proc_ssize_t r =
        utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                           (utf8proc_int32_t *)t->ucp, (utf8proc_ssize_t)t->ucp_cap, opt);
    if (r < 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: Unicode normalization failed: %s", t->path, utf8proc_errmsg(r));
    if ((size_t)r > t->ucp_cap) {
      void *p = t->ucp;
      MQ_CHECK(mq__tok_grow(&p, &t->ucp_cap, (size_t)r, sizeof(uint32_t), err));
      t->ucp = p;
      continue;
    }
    utf8proc_ssize_t len = utf8proc_reencode((utf8proc_int32_t *)t->ucp, r, opt);
    if (len < 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: Unicode normalization failed: %s", t->path,
              utf8proc_errmsg(len));
    MQ_CHECK(mq__tok_bytes_append(dst, t->ucp, (size_t)len, err));
    break;
  }
cleanup:
  return st;
}

/* ASCII is invariant under every form, never composes with what precedes it and has
 * combining class 0; so only the runs of non-ASCII characters (with the one ASCII character
 * before each, which combining marks may compose with) go through utf8proc. */
static mq_status unicode_form(mq_tokenizer *t, mq_tok_norm_kind kind, const char *s, size_t n,
                              mq_tok_bytes *dst, mq_error *err) {
  mq_status st = MQ_OK;
  utf8proc_option_t opt = form_options(kind);
  dst->n = 0;
  MQ_CHECK(mq__tok_bytes_reserve(dst, n + 16, err));
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && (unsigned char)s[j] < 0x80) j++;
    if (j == n) {
      MQ_CHECK(mq__tok_bytes_append(dst, s + i, n - i, err));
      break;
    }
    size_t seg = j > i ? j - 1 : j, k = j;
    while (k < n && (unsigned char)s[k] >= 0x80) k++;
    MQ_CHECK(mq__tok_bytes_append(dst, s + i, seg - i, err));
    MQ_CHECK(form_segment(t, opt, s + seg, k - seg, dst, err));
    i = k;
  }
cleanup:
  return st;
}

/* Unicode White_Space trimmed from the left and/or right: s[*a, *b). */
static void strip_range(const char *s, size_t n, int left, int right, size_t *a, size_t *b) {
  const unsigned char *u = (const unsigned char *)s;
  size_t lo = 0, hi = n;
  while (left && lo < hi) {
    size_t len = mq__tok_utf8_len(u[lo]);
    if (!mq__tok_is_white_space(mq__tok_utf8_cp(u + lo, len))) break;
    lo += len;
  }
  while (right && hi > lo) {
    size_t k = hi - 1;
    while (k > lo && (u[k] & 0xC0) == 0x80) k--;
    if (!mq__tok_is_white_space(mq__tok_utf8_cp(u + k, hi - k))) break;
    hi = k;
  }
  *a = lo;
  *b = hi;
}

mq_status mq__tok_normalize(mq_tokenizer *t, const char *s, size_t n, const char **out,
                            size_t *out_n, mq_error *err) {
  mq_status st = MQ_OK;
  const char *cur = s;
  size_t curn = n;
  int which = 0; /* the buffer written next; cur is never in it */
  for (size_t k = 0; k < t->nnorm; k++) {
    const mq_tok_norm *nm = &t->norm[k];
    mq_tok_bytes *dst = &t->nbuf[which];
    switch (nm->kind) {
    case MQ_TOK_NORM_PREPEND:
      if (curn == 0) continue; /* Rust prepends to non-empty text only */
      dst->n = 0;
      MQ_CHECK(mq__tok_bytes_append(dst, nm->str, nm->len, err));
      MQ_CHECK(mq__tok_bytes_append(dst, cur, curn, err));
      break;
    case MQ_TOK_NORM_REPLACE:
      MQ_CHECK(mq__tok_pattern_replace(t->path, &nm->pat, cur, curn, nm->str, nm->len, dst, err));
      break;
    case MQ_TOK_NORM_STRIP: {
      size_t a, b;
      strip_range(cur, curn, nm->left, nm->right, &a, &b);
      cur += a;
      curn = b - a;
      continue;
    }
    default: MQ_CHECK(unicode_form(t, nm->kind, cur, curn, dst, err));
    }
    cur = dst->p;
    curn = dst->n;
    which ^= 1;
  }
  *out = cur;
  *out_n = curn;
cleanup:
  return st;
}

void mq__tok_norm_free(mq_tok_norm *nm) {
  mq__tok_pattern_free(&nm->pat);
  mq_free(nm->str);
  memset(nm, 0, sizeof *nm);
}

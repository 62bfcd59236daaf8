/* UTF-8 helpers and growable buffers of the tokenizer (tokenizer_internal.h). */
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

/* ---- growable buffers ---- */

mq_status mq__tok_grow(void **arr, size_t *cap, size_t need, size_t elem, mq_error *err) {
  mq_status st = MQ_OK;
  if (need <= *cap) return MQ_OK;
  size_t ncap = *cap < 64 ? 64 : *cap;
  while (ncap < need) {
    if (ncap > ((size_t)-1) / 2 / elem)
      MQ_FAIL(err, MQ_EFAIL, "out of memory (%zu elements)", need);
    ncap *= 2;
  }
  void *p = mq_alloc(ncap, elem);
  MQ_CHECK_ALLOC(err, p, ncap * elem);
  if (*arr) memcpy(p, *arr, *cap * elem);
  mq_free(*arr);
  *arr = p;
  *cap = ncap;
cleanup:
  return st;
}

mq_status mq__tok_bytes_reserve(mq_tok_bytes *b, size_t cap, mq_error *err) {
  void *p = b->p;
  mq_status st = mq__tok_grow(&p, &b->cap, cap, 1, err);
  b->p = p;
  return st;
}

mq_status mq__tok_bytes_append(mq_tok_bytes *b, const void *data, size_t n, mq_error *err) {
  mq_status st = MQ_OK;
  MQ_CHECK(mq__tok_bytes_reserve(b, b->n + n, err));
  if (n) memcpy(b->p + b->n, data, n);
  b->n += n;
cleanup:
  return st;
}

void mq__tok_bytes_free(mq_tok_bytes *b) {
  mq_free(b->p);
  memset(b, 0, sizeof *b);
}

mq_status mq__tok_ids_push(mq_token_buf *b, int32_t id, mq_error *err) {
  mq_status st = MQ_OK;
  if (b->n == b->cap) {
    void *p = b->ids;
    MQ_CHECK(mq__tok_grow(&p, &b->cap, b->n + 1, sizeof(int32_t), err));
    b->ids = p;
  }
  b->ids[b->n++] = id;
cleanup:
  return st;
}

mq_status mq__tok_ids_append(mq_token_buf *b, const int32_t *ids, size_t n, mq_error *err) {
  mq_status st = MQ_OK;
  if (b->n + n > b->cap) {
    void *p = b->ids;
    MQ_CHECK(mq__tok_grow(&p, &b->cap, b->n + n, sizeof(int32_t), err));
    b->ids = p;
  }
  if (n) memcpy(b->ids + b->n, ids, n * sizeof *ids);
  b->n += n;
cleanup:
  return st;
}

void mq_token_buf_free(mq_token_buf *b) {
  mq_free(b->ids);
  memset(b, 0, sizeof *b);
}

/* ---- UTF-8 ---- */

/* Length of the well-formed sequence at s[0..n) (Unicode Table 3-7), or 0 when ill-formed;
 * *sub: bytes of its maximal ill-formed subpart (>= 1) when it is. */
static size_t wellformed(const unsigned char *s, size_t n, size_t *sub) {
  unsigned char b = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
  *sub = 1;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF)
    len = 2;
  else if (b == 0xE0)
    len = 3, lo = 0xA0;
  else if (b == 0xED)
    len = 3, hi = 0x9F;
  else if (b >= 0xE1 && b <= 0xEF)
    len = 3;
  else if (b == 0xF0)
    len = 4, lo = 0x90;
  else if (b == 0xF4)
    len = 4, hi = 0x8F;
  else if (b >= 0xF1 && b <= 0xF3)
    len = 4;
  else
    return 0;
  for (size_t k = 1; k < len; k++) {
    unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
    if (k >= n || s[k] < lo_k || s[k] > hi_k) {
      *sub = k;
      return 0;
    }
  }
  return len;
}

int mq__tok_utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0, sub;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t len = wellformed(s + i, n - i, &sub);
    if (len == 0) return 0;
    i += len;
  }
  return 1;
}

mq_status mq__tok_utf8_clean(const unsigned char *s, size_t n, mq_tok_bytes *dst, mq_error *err) {
  mq_status st = MQ_OK;
  static const unsigned char fffd[3] = {0xEF, 0xBF, 0xBD};
  dst->n = 0;
  MQ_CHECK(mq__tok_bytes_reserve(dst, n + n / 2 + 16, err));
  size_t i = 0, sub;
  while (i < n) {
    size_t j = i;
    while (j < n && s[j] < 0x80) j++; /* ASCII run */
    size_t len = 0;
    while (j < n && s[j] >= 0x80 && (len = wellformed(s + j, n - j, &sub)) > 0) j += len;
    MQ_CHECK(mq__tok_bytes_append(dst, s + i, j - i, err));
    i = j;
    if (i < n && s[i] >= 0x80) { /* ill-formed: one U+FFFD per maximal subpart */
      (void)wellformed(s + i, n - i, &sub);
      MQ_CHECK(mq__tok_bytes_append(dst, fffd, 3, err));
      i += sub;
    }
  }
cleanup:
  return st;
}

uint32_t mq__tok_utf8_cp(const unsigned char *s, size_t len) {
  switch (len) {
  case 1: return s[0];
  case 2: return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
  case 3: return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
  default:
    return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
           (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
  }
}

size_t mq__tok_utf8_put(uint32_t cp, unsigned char *out) {
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | cp >> 6);
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | cp >> 12);
    out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | cp >> 18);
  out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

int mq__tok_is_white_space(uint32_t cp) {
  /* PropList.txt White_Space: stable since Unicode 6.3 */
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

void mq__tok_printable(const char *s, size_t n, char *out, size_t size) {
  static const char hex[] = "0123456789abcdef";
  size_t k = 0, i = 0, limit = size > 8 ? size - 4 : 0; /* room for "..." and NUL */
  if (size == 0) return;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x20 || c == 0x7F ? 4 : c >= 0xC0 ? mq__tok_utf8_len(c) : 1;
    size_t src = c >= 0xC0 ? len : 1;
    if (k + len > limit || i + src > n) break;
    if (c < 0x20 || c == 0x7F) {
      out[k++] = '\\';
      out[k++] = 'x';
      out[k++] = hex[c >> 4];
      out[k++] = hex[c & 15];
    } else {
      memcpy(out + k, s + i, src);
      k += src;
    }
    i += src;
  }
  if (i < n && size >= 4) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k < size ? k : size - 1] = '\0';
}

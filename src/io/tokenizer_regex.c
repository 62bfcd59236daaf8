/* Patterns of tokenizer.json (tokenizer_internal.h). The files are written for the Rust
 * `tokenizers` crate, which compiles regexes with Oniguruma (Ruby syntax). PCRE2 (UTF + UCP,
 * JIT) reads nearly the same syntax; the constructs whose meaning differs are rewritten to
 * Unicode properties with the Oniguruma meaning:
 *   \s \S  -> \p{White_Space} \P{White_Space}       (PCRE2's \s misses U+0085 ...)
 *   \d \D  -> \p{Nd} \P{Nd}
 *   \w \W  -> [\p{Alphabetic}\p{M}\p{Nd}\p{Pc}] and its complement
 *   \h \H  -> hex digit (PCRE2's \h is horizontal space)
 *   \v     -> U+000B (PCRE2's \v is vertical space);  \uHHHH -> \x{HHHH};  {,n} -> {0,n}
 *   ^ $    -> line anchors (PCRE2_MULTILINE, newline LF only), `.` excludes only \n
 * Constructs PCRE2 cannot express the same way are refused (MQ_EINPUT naming the pattern):
 * nested classes and && intersections, POSIX brackets, \W \H inside a class, \b \B,
 * quantifier-then-`+` after a {n,m}, (?m). */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

#define WORD_IN_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}"

typedef struct xlat {
  mq_tok_bytes out;
  const char *why; /* first unsupported construct, or NULL */
} xlat;

static mq_status emit(xlat *x, const char *s, mq_error *err) {
  return mq__tok_bytes_append(&x->out, s, strlen(s), err);
}

/* Translates src[n] into x->out (NUL-terminated); x->why set when unsupported. */
static mq_status translate(const char *src, size_t n, xlat *x, mq_error *err) {
  mq_status st = MQ_OK;
  int in_class = 0;
  for (size_t i = 0; i < n && !x->why;) {
    char c = src[i];
    if (c == '\\') {
      if (i + 1 >= n) {
        x->why = "a trailing backslash";
        break;
      }
      char e = src[i + 1];
      char buf[16];
      i += 2;
      switch (e) {
      case 's': MQ_CHECK(emit(x, "\\p{White_Space}", err)); break;
      case 'S': MQ_CHECK(emit(x, "\\P{White_Space}", err)); break;
      case 'd': MQ_CHECK(emit(x, "\\p{Nd}", err)); break;
      case 'D': MQ_CHECK(emit(x, "\\P{Nd}", err)); break;
      case 'w': MQ_CHECK(emit(x, in_class ? WORD_IN_CLASS : "[" WORD_IN_CLASS "]", err)); break;
      case 'W':
        if (in_class)
          x->why = "\\W inside a character class";
        else
          MQ_CHECK(emit(x, "[^" WORD_IN_CLASS "]", err));
        break;
      case 'h': MQ_CHECK(emit(x, in_class ? "0-9A-Fa-f" : "[0-9A-Fa-f]", err)); break;
      case 'H':
        if (in_class)
          x->why = "\\H inside a character class";
        else
          MQ_CHECK(emit(x, "[^0-9A-Fa-f]", err));
        break;
      case 'v': MQ_CHECK(emit(x, "\\x{0B}", err)); break;
      case 'b':
      case 'B': x->why = "word boundaries (\\b, \\B)"; break;
      case 'u': {
        size_t k = 0;
        while (k < 4 && i + k < n && strchr("0123456789abcdefABCDEF", src[i + k]) && src[i + k])
          k++;
        if (k != 4) {
          x->why = "a malformed \\u escape";
          break;
        }
        memcpy(buf, "\\x{", 3);
        memcpy(buf + 3, src + i, 4);
        memcpy(buf + 7, "}", 2);
        MQ_CHECK(emit(x, buf, err));
        i += 4;
        break;
      }
      default:
        buf[0] = '\\';
        buf[1] = e;
        buf[2] = '\0';
        MQ_CHECK(mq__tok_bytes_append(&x->out, buf, 2, err));
      }
      continue;
    }
    if (in_class) {
      if (c == '[') {
        x->why = i + 1 < n && src[i + 1] == ':' ? "POSIX bracket classes ([:name:])"
                                                : "nested character classes";
        break;
      }
      if (c == '&' && i + 1 < n && src[i + 1] == '&') {
        x->why = "character class intersections (&&)";
        break;
      }
      if (c == ']') in_class = 0;
      MQ_CHECK(mq__tok_bytes_append(&x->out, &c, 1, err));
      i++;
      continue;
    }
    if (c == '[') {
      MQ_CHECK(mq__tok_bytes_append(&x->out, &c, 1, err));
      i++;
      in_class = 1;
      if (i < n && src[i] == '^') MQ_CHECK(mq__tok_bytes_append(&x->out, src + i++, 1, err));
      if (i < n && src[i] == ']') { /* a leading ] is literal */
        MQ_CHECK(emit(x, "\\]", err));
        i++;
      }
      continue;
    }
    if (c == '(' && i + 2 < n && src[i + 1] == '?') {
      size_t k = i + 2;
      while (k < n && strchr("imx-", src[k]) && src[k]) k++;
      if (k > i + 2 && k < n && (src[k] == ':' || src[k] == ')') &&
          memchr(src + i + 2, 'm', k - i - 2)) {
        x->why = "the (?m) option";
        break;
      }
    }
    if (c == '{') { /* {,n} -> {0,n}; {n,m}+ is not possessive in Oniguruma */
      size_t k = i + 1;
      while (k < n && ((src[k] >= '0' && src[k] <= '9') || src[k] == ',')) k++;
      int quant = k < n && src[k] == '}' && k > i + 1;
      if (quant && src[i + 1] == ',') {
        MQ_CHECK(emit(x, "{0", err));
        i++;
        continue;
      }
      if (quant && k + 1 < n && src[k + 1] == '+') {
        x->why = "a {n,m} quantifier followed by +";
        break;
      }
    }
    MQ_CHECK(mq__tok_bytes_append(&x->out, &c, 1, err));
    i++;
  }
  if (!x->why && in_class) x->why = "an unterminated character class";
  MQ_CHECK(mq__tok_bytes_append(&x->out, "", 1, err));
cleanup:
  return st;
}

mq_status mq__tok_pattern_regex(const char *path, const char *where, const char *src, size_t len,
                                mq_tok_pattern *p, mq_error *err) {
  mq_status st = MQ_OK;
  xlat x = {{0}, NULL};
  pcre2_compile_context *cctx = NULL;
  char shown[64];
  memset(p, 0, sizeof *p);
  mq__tok_printable(src, len, shown, sizeof shown);
  if (len == 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: empty regex", path, where);
  MQ_CHECK(translate(src, len, &x, err));
  if (x.why)
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: regex '%s': not supported: %s", path, where, shown, x.why);
  cctx = pcre2_compile_context_create(NULL);
  MQ_CHECK_ALLOC(err, cctx, sizeof(void *));
  pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
  int code;
  PCRE2_SIZE off;
  p->re = pcre2_compile((PCRE2_SPTR)x.out.p, x.out.n - 1,
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C, &code,
                        &off, cctx);
  if (p->re == NULL) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(code, msg, sizeof msg);
    MQ_FAIL(err, MQ_EINPUT, "%s: %s: regex '%s' does not compile: %s", path, where, shown,
            (const char *)msg);
  }
  (void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* the interpreter when JIT is missing */
  p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
  p->mctx = pcre2_match_context_create(NULL);
  p->jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
  MQ_CHECK_ALLOC(err, p->md && p->mctx && p->jit, 4 * 1024 * 1024);
  pcre2_jit_stack_assign(p->mctx, NULL, p->jit);
cleanup:
  if (cctx) pcre2_compile_context_free(cctx);
  mq__tok_bytes_free(&x.out);
  if (st != MQ_OK) mq__tok_pattern_free(p);
  return st;
}

mq_status mq__tok_pattern_literal(const char *path, const char *where, const char *s, size_t len,
                                  mq_tok_pattern *p, mq_error *err) {
  mq_status st = MQ_OK;
  memset(p, 0, sizeof *p);
  if (len == 0) MQ_FAIL(err, MQ_EINPUT, "%s: %s: empty string pattern", path, where);
  p->lit = mq_alloc(len, 1);
  MQ_CHECK_ALLOC(err, p->lit, len);
  memcpy(p->lit, s, len);
  p->lit_len = len;
cleanup:
  return st;
}

mq_status mq__tok_pattern_find(const char *path, const mq_tok_pattern *p, const char *s, size_t n,
                               size_t from, int *found, size_t *ms, size_t *me, mq_error *err) {
  mq_status st = MQ_OK;
  *found = 0;
  if (from > n) goto cleanup;
  if (p->re == NULL) {
    const char *hit = p->lit_len == 1 ? memchr(s + from, p->lit[0], n - from)
                                      : memmem(s + from, n - from, p->lit, p->lit_len);
    if (hit) {
      *found = 1;
      *ms = (size_t)(hit - s);
      *me = *ms + p->lit_len;
    }
    goto cleanup;
  }
  int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, p->md, p->mctx);
  if (rc == PCRE2_ERROR_NOMATCH) goto cleanup;
  if (rc < 0) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    MQ_FAIL(err, MQ_EINPUT, "%s: regex matching failed at text byte %zu: %s", path, from,
            (const char *)msg);
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
  *found = 1;
  *ms = ov[0];
  *me = ov[1];
cleanup:
  return st;
}

mq_status mq__tok_pattern_replace(const char *path, const mq_tok_pattern *p, const char *s,
                                  size_t n, const char *rep, size_t rep_len, mq_tok_bytes *dst,
                                  mq_error *err) {
  mq_status st = MQ_OK;
  size_t pos = 0, copied = 0;
  dst->n = 0;
  MQ_CHECK(mq__tok_bytes_reserve(dst, n + 16, err));
  while (pos <= n) {
    int found;
    size_t a, b;
    MQ_CHECK(mq__tok_pattern_find(path, p, s, n, pos, &found, &a, &b, err));
    if (!found) break;
    if (a == b) { /* an empty match replaces nothing; step over one character */
      pos = a < n ? a + mq__tok_utf8_len((unsigned char)s[a]) : n + 1;
      continue;
    }
    MQ_CHECK(mq__tok_bytes_append(dst, s + copied, a - copied, err));
    MQ_CHECK(mq__tok_bytes_append(dst, rep, rep_len, err));
    copied = pos = b;
  }
  MQ_CHECK(mq__tok_bytes_append(dst, s + copied, n - copied, err));
cleanup:
  return st;
}

void mq__tok_pattern_free(mq_tok_pattern *p) {
  if (p->md) pcre2_match_data_free(p->md);
  if (p->mctx) pcre2_match_context_free(p->mctx);
  if (p->jit) pcre2_jit_stack_free(p->jit);
  if (p->re) pcre2_code_free(p->re);
  mq_free(p->lit);
  memset(p, 0, sizeof *p);
}

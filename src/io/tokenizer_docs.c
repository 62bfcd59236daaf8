/* Text files -> documents -> ids (io/tokenizer.h): `.jsonl` one JSON object per line with a
 * string "text"; anything else one document, the whole file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/tokenizer_internal.h"

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static mq_status read_all(const char *path, char **buf, size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  FILE *f = fopen(path, "rb");
  struct stat sb;
  *buf = NULL;
  *n = 0;
  if (f == NULL) MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
    MQ_FAIL(err, MQ_EINPUT, "%s: not a regular file", path);
  size_t size = (size_t)sb.st_size;
  *buf = mq_alloc(size + 1, 1);
  MQ_CHECK_ALLOC(err, *buf, size + 1);
  if (size > 0 && fread(*buf, 1, size, f) != size) MQ_FAIL(err, MQ_EINPUT, "%s: read error", path);
  (*buf)[size] = '\0';
  *n = size;
cleanup:
  if (f) fclose(f);
  if (st != MQ_OK) {
    mq_free(*buf);
    *buf = NULL;
  }
  return st;
}

static int blank(const char *s, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r') return 0;
  return 1;
}

static mq_status encode_jsonl(mq_tokenizer *t, const char *path, const char *buf, size_t n,
                              mq_token_buf *out, size_t *ndocs, size_t *nbytes, mq_error *err) {
  mq_status st = MQ_OK;
  json_t *obj = NULL;
  size_t line = 0;
  for (size_t i = 0; i < n;) {
    const char *nl = memchr(buf + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - buf) : n;
    line++;
    if (!blank(buf + i, end - i)) {
      json_error_t jerr;
      obj = json_loadb(buf + i, end - i, JSON_ALLOW_NUL, &jerr);
      if (obj == NULL)
        MQ_FAIL(err, MQ_EINPUT, "%s: line %zu: not valid JSON: %s (column %d)", path, line,
                jerr.text, jerr.column);
      const json_t *text = json_object_get(obj, "text");
      if (!json_is_object(obj) || !json_is_string(text))
        MQ_FAIL(err, MQ_EINPUT, "%s: line %zu: not a JSON object with a string field \"text\"",
                path, line);
      MQ_CHECK(mq_tokenizer_encode(t, json_string_value(text), json_string_length(text), out, err));
      (*ndocs)++;
      *nbytes += json_string_length(text);
      json_decref(obj);
      obj = NULL;
    }
    i = end + 1;
  }
cleanup:
  if (obj) json_decref(obj);
  return st;
}

mq_status mq_tokenizer_encode_file(mq_tokenizer *t, const char *path, mq_token_buf *out,
                                   size_t *ndocs, size_t *nbytes, mq_error *err) {
  mq_status st = MQ_OK;
  char *buf = NULL;
  size_t n, docs = 0, bytes = 0;
  MQ_CHECK(read_all(path, &buf, &n, err));
  if (ends_with(path, ".jsonl")) {
    MQ_CHECK(encode_jsonl(t, path, buf, n, out, &docs, &bytes, err));
  } else if (n > 0) {
    MQ_CHECK(mq_tokenizer_encode(t, buf, n, out, err));
    docs = 1;
    bytes = n;
  }
cleanup:
  if (ndocs) *ndocs = docs;
  if (nbytes) *nbytes = bytes;
  mq_free(buf);
  return st;
}

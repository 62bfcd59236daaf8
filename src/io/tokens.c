/* Token files (see tokens.h). The .npy header is a Python dict literal; it is parsed with a
 * small tokenizer (keys in any order, either quote style, any spacing) rather than by matching
 * numpy's exact spelling. */
#include "io/tokens.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/h5common.h"
#include "io/paths.h"
#include "io/tokenizer.h"
#include "parallel/ctx.h"

/* Elements converted per read (npy and h5): bounds temporary buffers to 8 MiB. */
enum { CHUNK = 1 << 20 };

static mq_status check_id(const char *path, long long id, size_t pos, int vocab, mq_error *err) {
  mq_status st = MQ_OK;
  if (id < 0 || id >= vocab)
    MQ_FAIL(err, MQ_EINPUT, "%s: token %lld at position %zu is outside the vocabulary (size %d)",
            path, id, pos, vocab);
cleanup:
  return st;
}

/* ---- .npy ---- */

typedef struct npy_header {
  char descr[16];
  int have_descr, have_order, have_shape;
  int fortran;
  int ndim;
  unsigned long long dim[2]; /* the first two dimensions */
} npy_header;

typedef struct cursor {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && isspace((unsigned char)*c->p)) c->p++;
}

static int eat(cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* A quoted string (' or "), copied into out[size]; 0 on error or overflow. */
static int parse_str(cursor *c, char *out, size_t size) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
  char q = *c->p++;
  size_t k = 0;
  while (c->p < c->end && *c->p != q) {
    if (k + 1 >= size) return 0;
    out[k++] = *c->p++;
  }
  if (c->p >= c->end) return 0;
  c->p++;
  out[k] = '\0';
  return 1;
}

static int parse_word(cursor *c, const char *w) {
  skip_ws(c);
  size_t len = strlen(w);
  if ((size_t)(c->end - c->p) < len || memcmp(c->p, w, len) != 0) return 0;
  c->p += len;
  return 1;
}

/* (d0, d1, ...) — records ndim, d0 and d1. */
static int parse_shape(cursor *c, npy_header *h) {
  if (!eat(c, '(')) return 0;
  h->ndim = 0;
  for (;;) {
    if (eat(c, ')')) return 1;
    skip_ws(c);
    if (c->p >= c->end || !isdigit((unsigned char)*c->p)) return 0;
    unsigned long long v = 0;
    while (c->p < c->end && isdigit((unsigned char)*c->p)) {
      unsigned d = (unsigned)(*c->p++ - '0');
      if (v > (~0ULL - d) / 10) return 0;
      v = v * 10 + d;
    }
    if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs */
    if (h->ndim < 2) h->dim[h->ndim] = v;
    h->ndim++;
    if (!eat(c, ',')) {
      if (!eat(c, ')')) return 0;
      return 1;
    }
  }
}

static int parse_npy_dict(const char *text, size_t len, npy_header *h) {
  cursor c = {text, text + len};
  memset(h, 0, sizeof *h);
  if (!eat(&c, '{')) return 0;
  for (;;) {
    if (eat(&c, '}')) return 1;
    char key[32];
    if (!parse_str(&c, key, sizeof key) || !eat(&c, ':')) return 0;
    if (strcmp(key, "descr") == 0) {
      if (!parse_str(&c, h->descr, sizeof h->descr)) return 0;
      h->have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (parse_word(&c, "True")) h->fortran = 1;
      else if (parse_word(&c, "False")) h->fortran = 0;
      else return 0;
      h->have_order = 1;
    } else if (strcmp(key, "shape") == 0) {
      if (!parse_shape(&c, h)) return 0;
      h->have_shape = 1;
    } else {
      return 0; /* numpy writes exactly these three keys */
    }
    if (!eat(&c, ',')) return eat(&c, '}');
  }
}

/* descr -> element size and signedness; 0 when unsupported. */
static int npy_dtype(const char *d, size_t *size, int *is_signed) {
  if (strlen(d) != 3) return 0;
  char order = d[0], kind = d[1], sz = d[2];
  if (kind != 'i' && kind != 'u') return 0;
  *is_signed = kind == 'i';
  *size = (size_t)(sz - '0');
  if (*size == 1) return order == '|' || order == '<' || order == '=';
  if (*size != 2 && *size != 4 && *size != 8) return 0;
  if (*size == 8 && !*is_signed) return 0; /* uint64 is not among the accepted types */
  return order == '<'; /* '=' is native order: not portable, numpy never writes it */
}

static long long load_le(const unsigned char *p, size_t size, int is_signed) {
  unsigned long long v = 0;
  for (size_t k = size; k-- > 0;) v = (v << 8) | p[k];
  if (is_signed && size < 8 && (v >> (8 * size - 1)) & 1ULL) v |= ~0ULL << (8 * size);
  return (long long)v;
}

static mq_status read_npy(const char *path, FILE *f, size_t fsize, int vocab, int32_t **out,
                          size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  unsigned char pre[12], *buf = NULL;
  char *hdr = NULL;
  int32_t *tok = NULL;
  if (fsize < 10 || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: not a .npy file (bad magic)", path);
  int major = pre[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (fread(pre + 10, 1, 2, f) != 2) MQ_FAIL(err, MQ_EINPUT, "%s: truncated .npy header", path);
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    hstart = 12;
  } else {
    MQ_FAIL(err, MQ_EINPUT, "%s: unsupported .npy version %d.%d", path, major, pre[7]);
  }
  if (hlen > fsize - hstart) MQ_FAIL(err, MQ_EINPUT, "%s: truncated .npy header", path);
  hdr = mq_alloc(hlen + 1, 1);
  MQ_CHECK_ALLOC(err, hdr, hlen + 1);
  if (fread(hdr, 1, hlen, f) != hlen) MQ_FAIL(err, MQ_EINPUT, "%s: truncated .npy header", path);
  hdr[hlen] = '\0';
  npy_header h;
  if (!parse_npy_dict(hdr, hlen, &h) || !h.have_descr || !h.have_order || !h.have_shape)
    MQ_FAIL(err, MQ_EINPUT, "%s: malformed .npy header", path);
  size_t es;
  int sgn;
  if (!npy_dtype(h.descr, &es, &sgn))
    MQ_FAIL(err, MQ_EINPUT,
            "%s: unsupported .npy dtype '%s' (need little-endian int8/16/32/64 or uint8/16/32)",
            path, h.descr);
  if (h.ndim != 1 && h.ndim != 2)
    MQ_FAIL(err, MQ_EINPUT,
            "%s: expected a 1-D token array or a 2-D [samples, seqlen] one, found %d dimension(s)",
            path, h.ndim);
  unsigned long long total = h.dim[0];
  if (h.ndim == 2) {
    if (h.dim[1] != 0 && h.dim[0] > ~0ULL / h.dim[1])
      MQ_FAIL(err, MQ_EINPUT, "%s: shape (%llu, %llu) overflows", path, h.dim[0], h.dim[1]);
    total = h.dim[0] * h.dim[1];
  }
  size_t count = (size_t)total, avail = (fsize - hstart - hlen) / es;
  if (total > (unsigned long long)avail)
    MQ_FAIL(err, MQ_EINPUT, "%s: truncated: header says %llu tokens, file holds %zu", path, total,
            avail);
  if (count == 0) MQ_FAIL(err, MQ_EINPUT, "%s: holds no tokens", path);
  tok = mq_alloc(count, sizeof *tok);
  MQ_CHECK_ALLOC(err, tok, count * sizeof *tok);
  size_t chunk = count < (size_t)CHUNK ? count : (size_t)CHUNK;
  buf = mq_alloc(chunk, es);
  MQ_CHECK_ALLOC(err, buf, chunk * es);
  for (size_t i = 0; i < count; i += chunk) {
    size_t nb = count - i < chunk ? count - i : chunk;
    if (fread(buf, es, nb, f) != nb) MQ_FAIL(err, MQ_EINPUT, "%s: read error", path);
    for (size_t k = 0; k < nb; k++) {
      long long id = load_le(buf + k * es, es, sgn);
      MQ_CHECK(check_id(path, id, i + k, vocab, err));
      tok[i + k] = (int32_t)id;
    }
  }
  if (h.ndim == 2 && h.fortran && h.dim[0] > 1 && h.dim[1] > 1) { /* column-major -> rows */
    size_t rows = (size_t)h.dim[0], cols = (size_t)h.dim[1];
    int32_t *t2 = mq_alloc(count, sizeof *t2);
    MQ_CHECK_ALLOC(err, t2, count * sizeof *t2);
    for (size_t r = 0; r < rows; r++)
      for (size_t c = 0; c < cols; c++) t2[r * cols + c] = tok[c * rows + r];
    mq_free(tok);
    tok = t2;
  }
  *out = tok;
  *n = count;
  tok = NULL;
cleanup:
  mq_free(hdr);
  mq_free(buf);
  mq_free(tok);
  return st;
}

/* ---- .h5 ---- */

static mq_status read_h5(const char *path, int vocab, int32_t **out, size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  hid_t file = H5I_INVALID_HID, ds = H5I_INVALID_HID, type = H5I_INVALID_HID;
  hid_t space = H5I_INVALID_HID, mem = H5I_INVALID_HID;
  int64_t *buf = NULL;
  int32_t *tok = NULL;
  mq_h5_quiet quiet;
  mq__h5_quiet_begin(&quiet);
  MQ_CHECK(mq__h5_open_read(path, &file, err));
  if (H5Lexists(file, "tokens", H5P_DEFAULT) <= 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: no /tokens dataset", path);
  ds = H5Dopen2(file, "tokens", H5P_DEFAULT);
  if (ds < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: not a dataset", path);
  type = H5Dget_type(ds);
  space = H5Dget_space(ds);
  if (type < 0 || space < 0) MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: cannot read dataset header", path);
  if (H5Tget_class(type) != H5T_INTEGER)
    MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: not an integer dataset", path);
  int nd = H5Sget_simple_extent_ndims(space);
  if (nd != 1)
    MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: expected a 1-D array, found %d dimension(s)", path, nd);
  hsize_t dim;
  if (H5Sget_simple_extent_dims(space, &dim, NULL) < 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: cannot read shape", path);
  if (dim == 0) MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: holds no tokens", path);
  size_t count = (size_t)dim;
  tok = mq_alloc(count, sizeof *tok);
  MQ_CHECK_ALLOC(err, tok, count * sizeof *tok);
  size_t chunk = count < (size_t)CHUNK ? count : (size_t)CHUNK;
  buf = mq_alloc(chunk, sizeof *buf);
  MQ_CHECK_ALLOC(err, buf, chunk * sizeof *buf);
  /* An unsigned 64-bit id beyond INT64_MAX converts (clipped) to INT64_MAX: still rejected. */
  for (size_t i = 0; i < count; i += chunk) {
    size_t nb = count - i < chunk ? count - i : chunk;
    hsize_t start = (hsize_t)i, cnt = (hsize_t)nb;
    mq__h5_close(&mem);
    mem = H5Screate_simple(1, &cnt, NULL);
    if (mem < 0 || H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, NULL, &cnt, NULL) < 0 ||
        H5Dread(ds, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, buf) < 0)
      MQ_FAIL(err, MQ_EINPUT, "%s: /tokens: read error", path);
    for (size_t k = 0; k < nb; k++) {
      MQ_CHECK(check_id(path, (long long)buf[k], i + k, vocab, err));
      tok[i + k] = (int32_t)buf[k];
    }
  }
  *out = tok;
  *n = count;
  tok = NULL;
cleanup:
  mq__h5_close(&mem);
  mq__h5_close(&space);
  mq__h5_close(&type);
  mq__h5_close(&ds);
  mq__h5_close(&file);
  mq__h5_quiet_end(&quiet);
  mq_free(buf);
  mq_free(tok);
  return st;
}

/* ---- raw bytes ---- */

static mq_status read_raw(const char *path, FILE *f, size_t fsize, int32_t **out, size_t *n,
                          mq_error *err) {
  mq_status st = MQ_OK;
  unsigned char *buf = NULL;
  int32_t *tok = NULL;
  if (fsize == 0) MQ_FAIL(err, MQ_EINPUT, "%s: holds no tokens", path);
  tok = mq_alloc(fsize, sizeof *tok);
  MQ_CHECK_ALLOC(err, tok, fsize * sizeof *tok);
  size_t chunk = fsize < (size_t)CHUNK ? fsize : (size_t)CHUNK;
  buf = mq_alloc(chunk, 1);
  MQ_CHECK_ALLOC(err, buf, chunk);
  for (size_t i = 0; i < fsize; i += chunk) {
    size_t nb = fsize - i < chunk ? fsize - i : chunk;
    if (fread(buf, 1, nb, f) != nb) MQ_FAIL(err, MQ_EINPUT, "%s: read error", path);
    for (size_t k = 0; k < nb; k++) tok[i + k] = buf[k];
  }
  *out = tok;
  *n = fsize;
  tok = NULL;
cleanup:
  mq_free(buf);
  mq_free(tok);
  return st;
}

static int has_ext(const char *path, const char *ext) {
  size_t a = strlen(path), b = strlen(ext);
  return a >= b && strcmp(path + a - b, ext) == 0;
}

mq_status mq_tokens_read(const char *path, int vocab_size, int32_t **out, size_t *n,
                         mq_error *err) {
  mq_status st = MQ_OK;
  FILE *f = NULL;
  *out = NULL;
  *n = 0;
  if (vocab_size <= 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: vocabulary size %d is not positive", path, vocab_size);
  int npy = has_ext(path, ".npy"), h5 = has_ext(path, ".h5") || has_ext(path, ".hdf5");
  if (!npy && !h5 && vocab_size != 256)
    MQ_FAIL(err, MQ_EINPUT, "%s: raw byte files need a 256-token vocabulary (model has %d)", path,
            vocab_size);
  if (h5) {
    MQ_CHECK(read_h5(path, vocab_size, out, n, err));
    goto cleanup;
  }
  int fd = -1;
  MQ_CHECK(mq_path_open_regular(path, &fd, err)); /* a FIFO would block fopen */
  f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot open: %s", path, strerror(errno));
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: cannot stat: %s", path, strerror(errno));
  size_t fsize = (size_t)sb.st_size;
  if (npy)
    MQ_CHECK(read_npy(path, f, fsize, vocab_size, out, n, err));
  else
    MQ_CHECK(read_raw(path, f, fsize, out, n, err));
cleanup:
  if (f) fclose(f);
  return st;
}

/* ---- text through the model's tokenizer ---- */

int mq_tokens_is_text(const char *path) { return has_ext(path, ".txt") || has_ext(path, ".jsonl"); }

/* Collective: the text's documents split across the ranks, every rank gets all ids. Every
 * rank loads the tokenizer; the checks after the gather see the same array on every rank, so
 * they fail alike everywhere. */
static mq_status read_text(MPI_Comm comm, const char *path, const char *json, int vocab,
                           int32_t **out, size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  mq_tokenizer *tok = NULL;
  mq_token_buf ids = {0};
  MQ_AGREE(comm, mq_tokenizer_load_file(json, &tok, err));
  MQ_CHECK(mq_tokenizer_encode_file(comm, tok, path, &ids, NULL, NULL, err));
  if (ids.n == 0) MQ_FAIL(err, MQ_EINPUT, "%s: holds no text", path);
  for (size_t i = 0; i < ids.n; i++)
    if (ids.ids[i] >= vocab)
      MQ_FAIL(err, MQ_EINPUT,
              "%s: token %d at position %zu (from %s) is outside the model's vocabulary (size %d)",
              path, ids.ids[i], i, json, vocab);
  *out = ids.ids;
  *n = ids.n;
  ids.ids = NULL;
cleanup:
  mq_token_buf_free(&ids);
  mq_tokenizer_free(&tok);
  return st;
}

/* Rank 0 only: a token file, or text without a tokenizer.json (raw bytes for a 256-token
 * vocabulary, else an error naming the missing file). */
static mq_status read_file(const char *path, const char *model_dir, const char *json, int vocab,
                           int32_t **out, size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  struct stat sb;
  if (model_dir != NULL && mq_tokens_is_text(path) && vocab != 256 && stat(json, &sb) != 0)
    MQ_FAIL(err, MQ_EINPUT, "%s: text needs the model's tokenizer, and %s: %s", path, json,
            strerror(errno));
  MQ_CHECK(mq_tokens_read(path, vocab, out, n, err));
cleanup:
  return st;
}

/* Collective: rank 0's *tok[*n] on every rank (broadcast in chunks: MPI counts are int). */
static mq_status share_tokens(MPI_Comm comm, int32_t **tok, size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  int rank;
  uint64_t count = *n;
  MPI_Comm_rank(comm, &rank);
  MPI_Bcast(&count, 1, MPI_UINT64_T, 0, comm);
  if (rank != 0) {
    *n = (size_t)count;
    *tok = mq_alloc(*n, sizeof **tok);
    if (*tok == NULL)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                    *n * sizeof **tok);
  }
  MQ_AGREE(comm, st);
  for (size_t off = 0; off < *n; off += (size_t)1 << 28) {
    size_t len = *n - off < ((size_t)1 << 28) ? *n - off : (size_t)1 << 28;
    MPI_Bcast(*tok + off, (int)len, MPI_INT32_T, 0, comm);
  }
cleanup:
  return st;
}

mq_status mq_tokens_read_model(MPI_Comm comm, const char *path, const char *model_dir,
                               int vocab_size, int32_t **out, size_t *n, mq_error *err) {
  mq_status st = MQ_OK;
  char *json = NULL;
  int rank, text = 0;
  struct stat sb;
  *out = NULL;
  *n = 0;
  MPI_Comm_rank(comm, &rank);
  if (model_dir != NULL) {
    size_t dl = strlen(model_dir), len = dl + 32;
    json = mq_alloc(len, 1);
    if (json != NULL)
      snprintf(json, len, "%s%stokenizer.json", model_dir,
               dl > 0 && model_dir[dl - 1] == '/' ? "" : "/");
    else
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes", len);
  }
  if (st == MQ_OK && vocab_size <= 0)
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: vocabulary size %d is not positive",
                  path, vocab_size);
  MQ_AGREE(comm, st);
  /* rank 0 decides, so all ranks take the same branch even if their views of the disk differ */
  if (rank == 0) text = json != NULL && mq_tokens_is_text(path) && stat(json, &sb) == 0;
  MPI_Bcast(&text, 1, MPI_INT, 0, comm);
  if (text) {
    MQ_CHECK(read_text(comm, path, json, vocab_size, out, n, err));
  } else {
    if (rank == 0) st = read_file(path, model_dir, json, vocab_size, out, n, err);
    MQ_AGREE(comm, st);
    MQ_CHECK(share_tokens(comm, out, n, err));
  }
cleanup:
  if (st != MQ_OK) {
    mq_free(*out);
    *out = NULL;
    *n = 0;
  }
  mq_free(json);
  return st;
}

/* ---- writing .npy ---- */

mq_status mq_tokens_write_npy(const char *path, const int32_t *tok, size_t n, mq_error *err) {
  mq_status st = MQ_OK;
  FILE *f = fopen(path, "wb");
  int opened = f != NULL;
  char hdr[128];
  if (f == NULL) MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  int len = snprintf(hdr + 10, sizeof hdr - 10,
                     "{'descr': '<i4', 'fortran_order': False, 'shape': (%zu,), }", n);
  size_t total = 10 + (size_t)len + 1, pad = (64 - total % 64) % 64; /* header ends on 64 */
  memcpy(hdr, "\x93NUMPY\x01\x00", 8);
  size_t hlen = (size_t)len + pad + 1;
  hdr[8] = (char)(hlen & 0xFF);
  hdr[9] = (char)(hlen >> 8);
  memset(hdr + 10 + len, ' ', pad);
  hdr[10 + (size_t)len + pad] = '\n';
  if (fwrite(hdr, 1, 10 + hlen, f) != 10 + hlen)
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  for (size_t k = 0; k < n; k += 4096) { /* little-endian whatever the host */
    unsigned char le[4 * 4096];
    size_t m = n - k < 4096 ? n - k : 4096;
    for (size_t j = 0; j < m; j++) {
      uint32_t v = (uint32_t)tok[k + j];
      le[4 * j] = (unsigned char)v;
      le[4 * j + 1] = (unsigned char)(v >> 8);
      le[4 * j + 2] = (unsigned char)(v >> 16);
      le[4 * j + 3] = (unsigned char)(v >> 24);
    }
    if (fwrite(le, 4, m, f) != m)
      MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  }
  if (fclose(f) != 0) {
    f = NULL;
    MQ_FAIL(err, MQ_EFAIL, "%s: cannot write: %s", path, strerror(errno));
  }
  f = NULL;
cleanup:
  if (f) fclose(f);
  if (st != MQ_OK && opened) remove(path);
  return st;
}

/* Text files -> documents -> ids (io/tokenizer.h), split across the ranks of a communicator.
 *
 * The cut rule (docs/CONTRACT.md "Token files"): a document starts at byte 0 and, in a .jsonl,
 * right after every '\n'; a .txt is one document. Rank r of P owns the documents that start in
 * its balanced byte range [lo_r, lo_r+1) of the file (mq_partition of the file size), so each
 * document has exactly one owner whatever P is, and the owners' ids concatenated in rank order
 * are the documents' ids in file order: the same array as on one rank. A rank reads only its
 * documents, [first start >= lo_r, first start >= lo_r+1), after scanning forward from lo_r and
 * lo_r+1 for those starts (a document longer than a share leaves the next ranks empty). The
 * ids are then gathered so every rank holds all of them. Line numbers in messages are global
 * (each rank learns the lines before its share with one MPI_Exscan). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/status.h"
#include "io/paths.h"
#include "io/tokenizer_internal.h"
#include "parallel/ctx.h"
#include "parallel/partition.h"

/* Bytes read per step while scanning for the start of a document. */
enum { SCAN_CHUNK = 1 << 16 };
/* Ids per broadcast while gathering: MPI counts are int. */
#define GATHER_CHUNK ((size_t)1 << 28)

/* This rank's part of the file. */
typedef struct share {
  int fd;
  int jsonl;         /* documents are lines */
  uint64_t size;     /* of the file, as rank 0 saw it */
  uint64_t start;    /* first byte of this rank's first document */
  char *buf;         /* [n + 1] bytes from start, NUL-terminated; mq_alloc'd */
  size_t n;
  uint64_t line0;    /* lines of the file before start */
} share;

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* buf[0..n) = the file's bytes at off. The file ending early means it changed under us. */
static mq_status pread_all(int fd, const char *path, char *buf, size_t n, uint64_t off,
                           mq_error *err) {
  mq_status st = MQ_OK;
  size_t done = 0;
  while (done < n) {
    ssize_t got = pread(fd, buf + done, n - done, (off_t)(off + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) MQ_FAIL(err, MQ_EINPUT, "%s: read error: %s", path, strerror(errno));
    if (got == 0) MQ_FAIL(err, MQ_EINPUT, "%s: changed while being read", path);
    done += (size_t)got;
  }
cleanup:
  return st;
}

/* *start = the first document start at or after p (sh->size when none). */
static mq_status doc_start(const share *sh, const char *path, uint64_t p, uint64_t *start,
                           mq_error *err) {
  mq_status st = MQ_OK;
  char *chunk = NULL;
  *start = p == 0 ? 0 : sh->size;
  if (p == 0 || p >= sh->size || !sh->jsonl) goto cleanup; /* a .txt starts only at 0 */
  chunk = mq_alloc(SCAN_CHUNK, 1);
  MQ_CHECK_ALLOC(err, chunk, (size_t)SCAN_CHUNK);
  for (uint64_t at = p - 1; at < sh->size;) { /* a '\n' at p - 1 makes p a start */
    size_t len = sh->size - at < SCAN_CHUNK ? (size_t)(sh->size - at) : SCAN_CHUNK;
    MQ_CHECK(pread_all(sh->fd, path, chunk, len, at, err));
    const char *nl = memchr(chunk, '\n', len);
    if (nl != NULL) {
      *start = at + (uint64_t)(nl - chunk) + 1;
      goto cleanup;
    }
    at += len;
  }
cleanup:
  mq_free(chunk);
  return st;
}

/* Local: this rank's documents into sh->buf. */
static mq_status read_share(share *sh, const char *path, int rank, int nranks, mq_error *err) {
  mq_status st = MQ_OK;
  size_t lo, cnt;
  uint64_t end;
  mq_partition((size_t)sh->size, nranks, rank, &lo, &cnt);
  MQ_CHECK(doc_start(sh, path, lo, &sh->start, err));
  MQ_CHECK(doc_start(sh, path, (uint64_t)lo + cnt, &end, err));
  sh->n = end > sh->start ? (size_t)(end - sh->start) : 0;
  sh->buf = mq_alloc(sh->n + 1, 1);
  MQ_CHECK_ALLOC(err, sh->buf, sh->n + 1);
  MQ_CHECK(pread_all(sh->fd, path, sh->buf, sh->n, sh->start, err));
  sh->buf[sh->n] = '\0';
cleanup:
  return st;
}

/* Collective: opens the file on every rank, agrees on its size, reads this rank's share. */
static mq_status open_share(MPI_Comm comm, const char *path, share *sh, mq_error *err) {
  mq_status st = MQ_OK;
  int rank, nranks;
  struct stat sb;
  uint64_t mine = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  sh->jsonl = ends_with(path, ".jsonl");
  st = mq_path_open_regular(path, &sh->fd, err); /* a FIFO is refused, never read */
  if (st == MQ_OK && fstat(sh->fd, &sb) != 0)
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__, "%s: cannot stat: %s", path,
                  strerror(errno));
  if (st == MQ_OK) mine = (uint64_t)sb.st_size;
  MQ_AGREE(comm, st);
  sh->size = mine;
  MPI_Bcast(&sh->size, 1, MPI_UINT64_T, 0, comm); /* every rank cuts the same file */
  if (mine != sh->size)
    st = mq__fail(err, MQ_EINPUT, __FILE__, __LINE__,
                  "%s: %llu bytes here but %llu on rank 0 (changed while being read?)", path,
                  (unsigned long long)mine, (unsigned long long)sh->size);
  if (st == MQ_OK) st = read_share(sh, path, rank, nranks, err);
  MQ_AGREE(comm, st);
  uint64_t lines = 0, before = 0;
  if (sh->jsonl)
    for (const char *p = sh->buf; (p = memchr(p, '\n', (size_t)(sh->buf + sh->n - p))) != NULL; p++)
      lines++;
  MPI_Exscan(&lines, &before, 1, MPI_UINT64_T, MPI_SUM, comm);
  sh->line0 = rank == 0 ? 0 : before; /* MPI_Exscan leaves rank 0's result undefined */
cleanup:
  return st;
}

static int blank(const char *s, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r') return 0;
  return 1;
}

/* Local: the lines of the share; line numbers count from sh->line0. */
static mq_status encode_jsonl(mq_tokenizer *t, const char *path, const share *sh,
                              mq_token_buf *out, uint64_t *ndocs, uint64_t *nbytes,
                              mq_error *err) {
  mq_status st = MQ_OK;
  json_t *obj = NULL;
  const char *buf = sh->buf;
  size_t n = sh->n;
  uint64_t line = sh->line0;
  for (size_t i = 0; i < n;) {
    const char *nl = memchr(buf + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - buf) : n;
    line++;
    if (!blank(buf + i, end - i)) {
      json_error_t jerr;
      obj = json_loadb(buf + i, end - i, JSON_ALLOW_NUL, &jerr);
      if (obj == NULL)
        MQ_FAIL(err, MQ_EINPUT, "%s: line %llu: not valid JSON: %s (column %d)", path,
                (unsigned long long)line, jerr.text, jerr.column);
      const json_t *text = json_object_get(obj, "text");
      if (!json_is_object(obj) || !json_is_string(text))
        MQ_FAIL(err, MQ_EINPUT, "%s: line %llu: not a JSON object with a string field \"text\"",
                path, (unsigned long long)line);
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

/* Collective: every rank's ids appended to out in rank order (each rank's own by memcpy, then
 * one broadcast per rank and chunk). totals[0..3) = ids, documents, bytes of all ranks. */
static mq_status gather_ids(MPI_Comm comm, const mq_token_buf *mine, const uint64_t counts[3],
                            mq_token_buf *out, uint64_t totals[3], mq_error *err) {
  mq_status st = MQ_OK;
  int rank, nranks;
  uint64_t *all = NULL; /* [nranks][3] */
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  all = mq_alloc((size_t)nranks * 3, sizeof *all);
  if (all == NULL)
    st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                  (size_t)nranks * 3 * sizeof *all);
  MQ_AGREE(comm, st);
  MPI_Allgather(counts, 3, MPI_UINT64_T, all, 3, MPI_UINT64_T, comm);
  totals[0] = totals[1] = totals[2] = 0;
  for (int r = 0; r < nranks; r++)
    for (int k = 0; k < 3; k++) totals[k] += all[3 * r + k];
  size_t need = out->n + (size_t)totals[0];
  if (need > out->cap) { /* exactly what is needed: the array can be most of the memory */
    int32_t *grown = mq_alloc(need + 1, sizeof *grown);
    if (grown == NULL)
      st = mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "out of memory allocating %zu bytes",
                    need * sizeof *grown);
    else {
      if (out->n > 0) memcpy(grown, out->ids, out->n * sizeof *grown);
      mq_free(out->ids);
      out->ids = grown;
      out->cap = need + 1;
    }
  }
  MQ_AGREE(comm, st);
  int32_t *dst = out->ids + out->n;
  for (int r = 0; r < nranks; r++) {
    size_t cnt = (size_t)all[3 * r];
    if (r == rank && cnt > 0) memcpy(dst, mine->ids, cnt * sizeof *dst);
    for (size_t off = 0; off < cnt; off += GATHER_CHUNK) {
      size_t len = cnt - off < GATHER_CHUNK ? cnt - off : GATHER_CHUNK;
      MPI_Bcast(dst + off, (int)len, MPI_INT32_T, r, comm);
    }
    dst += cnt;
  }
  out->n = need;
cleanup:
  mq_free(all);
  return st;
}

mq_status mq_tokenizer_encode_file(MPI_Comm comm, mq_tokenizer *t, const char *path,
                                   mq_token_buf *out, size_t *ndocs, size_t *nbytes,
                                   mq_error *err) {
  mq_status st = MQ_OK;
  share sh = {.fd = -1};
  mq_token_buf mine = {0};
  uint64_t counts[3] = {0, 0, 0}, totals[3] = {0, 0, 0}; /* ids, documents, bytes */
  MQ_CHECK(open_share(comm, path, &sh, err));
  if (sh.jsonl) {
    st = encode_jsonl(t, path, &sh, &mine, &counts[1], &counts[2], err);
  } else if (sh.n > 0) {
    st = mq_tokenizer_encode(t, sh.buf, sh.n, &mine, err);
    counts[1] = 1;
    counts[2] = sh.n;
  }
  counts[0] = mine.n;
  mq_free(sh.buf); /* the text is done with: the gathered ids need the room */
  sh.buf = NULL;
  MQ_AGREE(comm, st);
  MQ_CHECK(gather_ids(comm, &mine, counts, out, totals, err));
cleanup:
  if (ndocs) *ndocs = (size_t)totals[1];
  if (nbytes) *nbytes = (size_t)totals[2];
  if (sh.fd >= 0) close(sh.fd);
  mq_free(sh.buf);
  mq_token_buf_free(&mine);
  return st;
}

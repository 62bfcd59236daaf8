/* Text split across ranks (io/tokenizer_docs.c, mq_tokens_read_model), run at 1, 2 and 3 ranks.
 * usage: mpirun -np P test_tokens_split FIXTURES WORKDIR
 * The oracle never touches a file or a second rank: the test's own documents encoded one by one
 * with mq_tokenizer_encode and concatenated. Every rank must hold exactly that array for
 *   - many documents of mixed length, UTF-8, escapes, blank lines, CRLF line ends;
 *   - fewer documents than ranks (2, 1 without a final newline, only blank lines);
 *   - a document far longer than a rank's share (and than the 64 KiB scan step);
 *   - a .txt (one document, the whole file);
 *   - mq_tokens_read_model on the same files and on the .npy of the oracle;
 * and all ranks must fail together, the cause recorded only where it was seen:
 *   - invalid UTF-8 on line 28 of 30 (the last rank's share): "line 28" counted in the file;
 *   - a FIFO (refused without being opened for reading, so nothing blocks);
 *   - an id outside the vocabulary.
 * No memory may stay allocated. */
#include "parallel/mq_mpi_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mem.h"
#include "io/tokenizer.h"
#include "io/tokens.h"

enum { MAX_DOCS = 256 };

static const char *fx, *work;
static int rank, nranks;
static mq_tokenizer *tok;

static const char *at(const char *dir, const char *name) {
  static char buf[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

/* A set of documents and the file that holds them. */
typedef struct docs {
  char *text[MAX_DOCS]; /* mq_alloc'd */
  int n;
} docs;

static void docs_add(docs *d, const char *s, size_t len) {
  d->text[d->n] = mq_alloc(len + 1, 1);
  memcpy(d->text[d->n], s, len);
  d->text[d->n][len] = '\0';
  d->n++;
}

static void docs_free(docs *d) {
  for (int k = 0; k < d->n; k++) mq_free(d->text[k]);
  d->n = 0;
}

/* One JSON string: the characters that must be escaped are. */
static void put_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if (*s == '\n') fputs("\\n", f);
    else if (*s == '\t') fputs("\\t", f);
    else fputc(*s, f);
  }
  fputc('"', f);
}

/* Rank 0 writes d as .jsonl: blank lines after every 7th document, CRLF after every 5th, no
 * final newline when last_nl is 0; every rank waits for the file. */
static void write_jsonl(const char *path, const docs *d, int last_nl) {
  if (rank == 0) {
    FILE *f = fopen(path, "wb");
    for (int k = 0; k < d->n; k++) {
      fputs("{\"id\": 1, \"text\": ", f);
      put_json_string(f, d->text[k]);
      fputs(k % 5 == 4 ? "}\r" : "}", f);
      if (k + 1 < d->n || last_nl) fputc('\n', f);
      if (k % 7 == 6) fputs("  \n\n", f);
    }
    fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

static void oracle(const docs *d, mq_token_buf *want, size_t *bytes) {
  mq_error err = {0};
  *bytes = 0;
  for (int k = 0; k < d->n; k++) {
    MQ_EXPECT_EQ_INT(mq_tokenizer_encode(tok, d->text[k], strlen(d->text[k]), want, &err), MQ_OK);
    *bytes += strlen(d->text[k]);
  }
}

/* path must give exactly the oracle's ids of d, through both readers. */
static void expect_ids(const char *path, const docs *d) {
  mq_token_buf want = {0}, got = {0};
  mq_error err = {0};
  size_t bytes, ndocs = 0, nbytes = 0, n = 0;
  int32_t *ids = NULL;
  oracle(d, &want, &bytes);
  MQ_EXPECT_EQ_INT(mq_tokenizer_encode_file(MPI_COMM_WORLD, tok, path, &got, &ndocs, &nbytes, &err),
                   MQ_OK);
  MQ_EXPECT_EQ_INT(got.n, want.n);
  MQ_EXPECT_EQ_INT(ndocs, d->n);
  MQ_EXPECT_EQ_INT(nbytes, bytes);
  if (got.n == want.n && want.n > 0) MQ_EXPECT_MEM_EQ(got.ids, want.ids, want.n * sizeof(int32_t));
  if (want.n > 0) {
    MQ_EXPECT_EQ_INT(mq_tokens_read_model(MPI_COMM_WORLD, path, at(fx, "llama3"),
                                          mq_tokenizer_id_limit(tok), &ids, &n, &err),
                     MQ_OK);
    MQ_EXPECT_EQ_INT(n, want.n);
    if (n == want.n) MQ_EXPECT_MEM_EQ(ids, want.ids, n * sizeof(int32_t));
    mq_free(ids);
  }
  mq_token_buf_free(&want);
  mq_token_buf_free(&got);
}

/* A deterministic document of about len bytes: words, UTF-8, a quote, a newline. */
static void make_doc(docs *d, unsigned seed, size_t len) {
  static const char *words[] = {"the", "quantized", "model", "caf\xC3\xA9",
                                "\xE6\x97\xA5\xE6\x9C\xAC", "\xF0\x9F\x99\x82", "x = y + 1;", "  ",
                                "\"quoted\"", "back\\slash", "line\nbreak", "tab\there", "1234567",
                                "e\xCC\x81"};
  size_t nw = sizeof words / sizeof *words;
  char *buf = mq_alloc(len + 64, 1);
  size_t n = 0;
  while (n < len) {
    seed = seed * 1103515245u + 12345u;
    const char *w = words[(seed >> 16) % nw];
    size_t wl = strlen(w);
    memcpy(buf + n, w, wl);
    n += wl;
    buf[n++] = ' ';
  }
  docs_add(d, buf, n);
  mq_free(buf);
}

static void test_shapes(void) {
  docs d = {0};
  for (int k = 0; k < 200; k++) make_doc(&d, (unsigned)k, (size_t)(1 + (k * 37) % 400));
  write_jsonl(at(work, "many.jsonl"), &d, 1);
  expect_ids(at(work, "many.jsonl"), &d);
  docs_free(&d);

  make_doc(&d, 1, 50);
  make_doc(&d, 2, 60);
  write_jsonl(at(work, "two.jsonl"), &d, 1); /* fewer documents than 3 ranks */
  expect_ids(at(work, "two.jsonl"), &d);
  docs_free(&d);

  make_doc(&d, 3, 30);
  write_jsonl(at(work, "one.jsonl"), &d, 0); /* no final newline */
  expect_ids(at(work, "one.jsonl"), &d);
  docs_free(&d);

  if (rank == 0) { /* blank lines only: no document */
    FILE *f = fopen(at(work, "blank.jsonl"), "wb");
    fputs("\n\n   \n\t\n\n", f);
    fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_ids(at(work, "blank.jsonl"), &d);

  make_doc(&d, 4, 20); /* a document larger than any share and than the scan step */
  make_doc(&d, 5, 200000);
  make_doc(&d, 6, 20);
  make_doc(&d, 7, 20);
  write_jsonl(at(work, "big.jsonl"), &d, 1);
  expect_ids(at(work, "big.jsonl"), &d);
  docs_free(&d);
}

/* A .txt is one document, whatever its lines. */
static void test_txt(void) {
  docs d = {0};
  make_doc(&d, 9, 5000);
  if (rank == 0) {
    FILE *f = fopen(at(work, "whole.txt"), "wb");
    fputs(d.text[0], f);
    fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_ids(at(work, "whole.txt"), &d);
  /* the .npy of the same ids, read by rank 0 and broadcast */
  mq_token_buf want = {0};
  mq_error err = {0};
  size_t bytes, n = 0;
  int32_t *ids = NULL;
  oracle(&d, &want, &bytes);
  if (rank == 0)
    MQ_EXPECT_EQ_INT(mq_tokens_write_npy(at(work, "whole.npy"), want.ids, want.n, &err), MQ_OK);
  MPI_Barrier(MPI_COMM_WORLD);
  MQ_EXPECT_EQ_INT(mq_tokens_read_model(MPI_COMM_WORLD, at(work, "whole.npy"), at(fx, "llama3"),
                                        mq_tokenizer_id_limit(tok), &ids, &n, &err),
                   MQ_OK);
  MQ_EXPECT_EQ_INT(n, want.n);
  if (n == want.n) MQ_EXPECT_MEM_EQ(ids, want.ids, n * sizeof(int32_t));
  mq_free(ids);
  /* a vocabulary without the text's largest id: every rank fails, nothing returned */
  int32_t top = 0;
  for (size_t k = 0; k < want.n; k++) top = want.ids[k] > top ? want.ids[k] : top;
  ids = NULL;
  MQ_EXPECT_EQ_INT(mq_tokens_read_model(MPI_COMM_WORLD, at(work, "whole.txt"), at(fx, "llama3"),
                                        top, &ids, &n, &err),
                   MQ_EINPUT);
  MQ_EXPECT_CONTAINS(err.msg, "outside the model's vocabulary");
  MQ_EXPECT(ids == NULL && n == 0);
  mq_free(ids);
  mq_error_clear(&err);
  mq_token_buf_free(&want);
  docs_free(&d);
}

/* The number of ranks that recorded a cause, and the lowest of them (nranks when none). */
static void who_failed(const mq_error *err, int *count, int *first) {
  int mine = err->status != MQ_OK, me = mine ? rank : nranks;
  MPI_Allreduce(&mine, count, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&me, first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
}

static void test_errors(void) {
  mq_token_buf got = {0};
  mq_error err = {0};
  int count, first;
  if (rank == 0) { /* line 28 of 30 (in the last share at 1, 2, 3 ranks): ill-formed UTF-8 */
    FILE *f = fopen(at(work, "bad.jsonl"), "wb");
    for (int k = 1; k <= 30; k++)
      fputs(k == 28 ? "{\"text\": \"bad \xFF\xFE bytes\"}\n" : "{\"text\": \"fine\"}\n", f);
    fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MQ_EXPECT_EQ_INT(
      mq_tokenizer_encode_file(MPI_COMM_WORLD, tok, at(work, "bad.jsonl"), &got, NULL, NULL, &err),
      MQ_EINPUT);
  MQ_EXPECT_EQ_INT(got.n, 0);
  who_failed(&err, &count, &first);
  MQ_EXPECT_EQ_INT(count, 1);
  MQ_EXPECT_EQ_INT(first, nranks - 1);
  if (err.status != MQ_OK) MQ_EXPECT_CONTAINS(err.msg, "bad.jsonl: line 28: not valid JSON");
  mq_error_clear(&err);

  if (rank == 0) {
    remove(at(work, "fifo.jsonl"));
    MQ_EXPECT_EQ_INT(mkfifo(at(work, "fifo.jsonl"), 0600), 0);
    remove(at(work, "fifo.npy"));
    MQ_EXPECT_EQ_INT(mkfifo(at(work, "fifo.npy"), 0600), 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MQ_EXPECT_EQ_INT(
      mq_tokenizer_encode_file(MPI_COMM_WORLD, tok, at(work, "fifo.jsonl"), &got, NULL, NULL, &err),
      MQ_EINPUT);
  MQ_EXPECT_CONTAINS(err.msg, "fifo.jsonl: not a regular file");
  mq_error_clear(&err);
  int32_t *ids = NULL;
  size_t n = 0;
  MQ_EXPECT_EQ_INT(mq_tokens_read_model(MPI_COMM_WORLD, at(work, "fifo.npy"), at(fx, "llama3"),
                                        1000, &ids, &n, &err),
                   MQ_EINPUT);
  who_failed(&err, &count, &first);
  MQ_EXPECT_EQ_INT(count, 1); /* rank 0 reads token files */
  MQ_EXPECT_EQ_INT(first, 0);
  if (rank == 0) MQ_EXPECT_CONTAINS(err.msg, "fifo.npy: not a regular file");
  mq_error_clear(&err);
  mq_token_buf_free(&got);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (argc != 3) {
    if (rank == 0) fprintf(stderr, "usage: test_tokens_split FIXTURES WORKDIR\n");
    MPI_Finalize();
    return 2;
  }
  fx = argv[1];
  work = argv[2];
  if (rank == 0) mkdir(work, 0755);
  MPI_Barrier(MPI_COMM_WORLD);
  size_t base = mq_mem_current();
  mq_error err = {0};
  MQ_EXPECT_EQ_INT(mq_tokenizer_load(at(fx, "llama3"), &tok, &err), MQ_OK);
  if (tok != NULL) {
    test_shapes();
    test_txt();
    test_errors();
  }
  mq_tokenizer_free(&tok);
  MQ_EXPECT_EQ_INT(mq_mem_current(), base);
  int rc = mq_mpi_test_finish("text_split");
  MPI_Finalize();
  return rc;
}

/* The token reader with text and 2-D arrays (io/tokens.h) and the tokenizer's C API
 * (io/tokenizer.h), on the fixtures of make_text_fixtures.py.
 * usage: test_tokens_text FIXTURES WORKDIR
 *   - 2-D .npy [samples, seqlen] in C and Fortran order == the 1-D array (row order);
 *   - mq_tokens_write_npy round trip;
 *   - text through a model directory == the tokenizer API; ids beyond the model's vocabulary are
 *     refused; no tokenizer.json: raw bytes for a 256-token vocabulary (the old behaviour), an
 *     error naming tokenizer.json otherwise; model_dir NULL == mq_tokens_read;
 *   - hand-checked ids of tiny tokenizers (merge order, byte fallback, fuse_unk, BOS,
 *     ignore_merges; Metaspace split and Digits, which the JS reference does not do as Rust);
 *   - no memory left allocated. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "io/tokenizer.h"
#include "io/tokens.h"

static int failures, checks;

#define EXPECT(cond, ...)                                                                          \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);                              \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

static const char *fx, *work;

static const char *at(const char *dir, const char *name) {
  static char buf[4][1024];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static int same(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
  return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void test_npy2d(void) {
  int32_t *flat = NULL, *c = NULL, *f = NULL, *back = NULL;
  size_t nflat = 0, nc = 0, nf = 0, nback = 0;
  mq_error err = {0};
  EXPECT(mq_tokens_read(at(fx, "tokens1d.npy"), 1000, &flat, &nflat, &err) == MQ_OK, "%s", err.msg);
  EXPECT(mq_tokens_read(at(fx, "tokens2d_c.npy"), 1000, &c, &nc, &err) == MQ_OK, "%s", err.msg);
  EXPECT(mq_tokens_read(at(fx, "tokens2d_f.npy"), 1000, &f, &nf, &err) == MQ_OK, "%s", err.msg);
  EXPECT(nflat == 91, "1-D holds %zu", nflat);
  EXPECT(same(flat, nflat, c, nc), "2-D C order differs from the flat array");
  EXPECT(same(flat, nflat, f, nf), "2-D Fortran order differs from the flat array");
  EXPECT(mq_tokens_write_npy(at(work, "written.npy"), flat, nflat, &err) == MQ_OK, "%s", err.msg);
  EXPECT(mq_tokens_read(at(work, "written.npy"), 1000, &back, &nback, &err) == MQ_OK, "%s",
         err.msg);
  EXPECT(same(flat, nflat, back, nback), "write/read round trip differs");
  mq_free(flat);
  mq_free(c);
  mq_free(f);
  mq_free(back);
}

static void test_text(void) {
  const char *model = at(fx, "llama3"), *corpus = at(fx, "corpus.jsonl");
  mq_tokenizer *tok = NULL;
  mq_token_buf ids = {0};
  int32_t *got = NULL;
  size_t n = 0, ndocs = 0, nbytes = 0;
  mq_error err = {0};
  EXPECT(mq_tokenizer_load(model, &tok, &err) == MQ_OK, "%s", err.msg);
  if (tok == NULL) return;
  EXPECT(mq_tokenizer_encode_file(MPI_COMM_SELF, tok, corpus, &ids, &ndocs, &nbytes, &err) == MQ_OK, "%s",
         err.msg);
  EXPECT(ndocs == 260, "%zu documents", ndocs);
  int32_t limit = mq_tokenizer_id_limit(tok);
  EXPECT(mq_tokens_read_model(MPI_COMM_SELF, corpus, model, limit, &got, &n, &err) == MQ_OK, "%s", err.msg);
  EXPECT(same(ids.ids, ids.n, got, n), "reader (%zu ids) != tokenizer (%zu ids)", n, ids.n);
  mq_free(got);
  got = NULL;
  EXPECT(mq_tokens_read_model(MPI_COMM_SELF, corpus, model, limit - 1, &got, &n, &err) == MQ_EINPUT, "vocab");
  EXPECT(strstr(err.msg, "outside the model's vocabulary") != NULL, "%s", err.msg);
  EXPECT(got == NULL && n == 0, "output on failure");
  mq_error_clear(&err);

  /* no tokenizer.json: the old raw-byte behaviour for 256 tokens, an error otherwise */
  const char *txt = at(fx, "corpus.txt");
  int32_t *raw = NULL, *viamodel = NULL;
  size_t nraw = 0, nvia = 0;
  EXPECT(mq_tokens_read(txt, 256, &raw, &nraw, &err) == MQ_OK, "%s", err.msg);
  EXPECT(mq_tokens_read_model(MPI_COMM_SELF, txt, work, 256, &viamodel, &nvia, &err) == MQ_OK, "%s", err.msg);
  EXPECT(same(raw, nraw, viamodel, nvia),
         "byte vocabulary without tokenizer.json is not raw bytes");
  mq_free(viamodel);
  viamodel = NULL;
  EXPECT(mq_tokens_read_model(MPI_COMM_SELF, txt, work, 1000, &viamodel, &nvia, &err) == MQ_EINPUT,
         "no tokenizer");
  EXPECT(strstr(err.msg, "tokenizer.json") != NULL, "%s", err.msg);
  mq_error_clear(&err);
  EXPECT(mq_tokens_read_model(MPI_COMM_SELF, txt, NULL, 256, &viamodel, &nvia, &err) == MQ_OK, "%s", err.msg);
  EXPECT(same(raw, nraw, viamodel, nvia), "model_dir NULL is not mq_tokens_read");
  mq_free(raw);
  mq_free(viamodel);
  mq_token_buf_free(&ids);
  mq_tokenizer_free(&tok);
  EXPECT(tok == NULL, "free nulls the handle");
}

/* A tiny SentencePiece-style tokenizer whose ids are worked out by hand. */
static void test_tiny(void) {
  const char *json =
      "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}],"
      " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
      "   {\"type\": \"Prepend\", \"prepend\": \"_\"},"
      "   {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"_\"}]},"
      " \"pre_tokenizer\": null,"
      " \"post_processor\": {\"type\": \"TemplateProcessing\","
      "   \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
      "              {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],"
      "   \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},"
      " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true,"
      "   \"fuse_unk\": true, \"ignore_merges\": true,"
      "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"<0xC3>\": 2, \"<0xA9>\": 3, \"_\": 4, \"a\": 5,"
      "     \"b\": 6, \"c\": 7, \"ab\": 8, \"bc\": 9, \"_a\": 10, \"_ab\": 11, \"abc\": 12,"
      "     \"_cab\": 13},"
      "   \"merges\": [\"b c\", \"a b\", \"_ a\", [\"_a\", \"b\"]]}}";
  FILE *f = fopen(at(work, "tiny/tokenizer.json"), "w");
  if (f == NULL) {
    EXPECT(0, "cannot write the tiny tokenizer");
    return;
  }
  fputs(json, f);
  fclose(f);
  mq_tokenizer *tok = NULL;
  mq_token_buf ids = {0};
  mq_error err = {0};
  EXPECT(mq_tokenizer_load(at(work, "tiny"), &tok, &err) == MQ_OK, "%s", err.msg);
  if (tok == NULL) return;
  /* <s> splits the text into "abc cab é zz" and "ab"; each is normalized on its own:
   * "_abc_cab_é_zz" is one piece (no pre-tokenizer). Units: _ a b c _ c a b _ <0xC3> <0xA9> _
   * <unk> (z is unknown, no <0x7A>; the two are fused). Merges by rank: b c (0) -> bc; a b (1)
   * at "ab" of "cab" (the one at 1 is stale: b went into bc); _ a (2) -> _a; (_a, bc) is no
   * merge. "_ab": ignore_merges finds it whole (BPE would give _ ab). BOS first. */
  const char *text = "abc cab \xC3\xA9 zz<s>ab";
  EXPECT(mq_tokenizer_encode(tok, text, strlen(text), &ids, &err) == MQ_OK, "%s", err.msg);
  const int32_t want[] = {1, 10, 9, 4, 7, 8, 4, 2, 3, 4, 0, 1, 11};
  size_t nwant = sizeof want / sizeof *want;
  EXPECT(same(ids.ids, ids.n, want, nwant), "tiny: %zu ids, expected %zu", ids.n, nwant);
  for (size_t k = 0; k < ids.n && k < nwant; k++)
    EXPECT(ids.ids[k] == want[k], "tiny id %zu: %d, expected %d", k, ids.ids[k], want[k]);
  mq_token_buf_free(&ids);
  mq_tokenizer_free(&tok);
}

/* Rust semantics where the JS reference differs or lacks the feature: Metaspace with split
 * (pieces start at each U+2581, consecutive ones stand alone: MergedWithNext) and Digits. */
static void test_split(void) {
  const char *json =
      "{\"added_tokens\": [], \"normalizer\": null, \"post_processor\": null,"
      " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
      "   {\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"always\","
      "    \"split\": true}, {\"type\": \"Digits\", \"individual_digits\": true}]},"
      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"\u2581\": 0, \"a\": 1, \"b\": 2,"
      "   \"\u2581a\": 3, \"\u2581\u2581\": 4, \"a\u2581\": 5, \"1\": 6, \"2\": 7, \"\u25811\": 8},"
      "   \"merges\": [[\"a\", \"\u2581\"], [\"\u2581\", \"a\"], [\"\u2581\", \"\u2581\"],"
      "              [\"\u2581\", \"1\"]]}}";
  FILE *f = fopen(at(work, "split/tokenizer.json"), "w");
  if (f == NULL) {
    EXPECT(0, "cannot write the split tokenizer");
    return;
  }
  fputs(json, f);
  fclose(f);
  mq_tokenizer *tok = NULL;
  mq_token_buf ids = {0};
  mq_error err = {0};
  EXPECT(mq_tokenizer_load(at(work, "split"), &tok, &err) == MQ_OK, "%s", err.msg);
  if (tok == NULL) return;
  /* "a b  a 12" -> "_a_b__a_12" (prepended) -> pieces _a | _b | _ | _a | _12 (no merge across
   * pieces: "a_" never forms) -> digits split _12 into _ 1 2 (so "_1" never forms either). */
  const char *text = "a b  a 12";
  EXPECT(mq_tokenizer_encode(tok, text, strlen(text), &ids, &err) == MQ_OK, "%s", err.msg);
  const int32_t want[] = {3, 0, 2, 0, 3, 0, 6, 7};
  size_t nwant = sizeof want / sizeof *want;
  EXPECT(same(ids.ids, ids.n, want, nwant), "split: %zu ids, expected %zu", ids.n, nwant);
  for (size_t k = 0; k < ids.n && k < nwant; k++)
    EXPECT(ids.ids[k] == want[k], "split id %zu: %d, expected %d", k, ids.ids[k], want[k]);
  mq_token_buf_free(&ids);
  mq_tokenizer_free(&tok);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv); /* the text readers are collective: here over MPI_COMM_SELF */
  if (argc != 3) {
    fprintf(stderr, "usage: test_tokens_text FIXTURES WORKDIR\n");
    MPI_Finalize();
    return 2;
  }
  fx = argv[1];
  work = argv[2];
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s/tiny' '%s/split'", work, work);
  if (system(cmd) != 0) {
    MPI_Finalize();
    return 2;
  }
  size_t base = mq_mem_current();
  test_npy2d();
  test_text();
  test_tiny();
  test_split();
  EXPECT(mq_mem_current() == base, "%zu bytes still allocated", mq_mem_current() - base);
  printf("%d passed, %d failed\n", checks - failures, failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}

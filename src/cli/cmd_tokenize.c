/* `mpiquant tokenize --model DIR --in TEXT --out T.npy`: text through the checkpoint's own
 * tokenizer.json (io/tokenizer.h) into an int32 .npy of token ids, the same ids `quantize
 * --calib` and `eval --tokens` use for that text. Collective: the documents are split across
 * the ranks as there (the file is the same at any rank count); rank 0 writes it. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/status.h"
#include "io/paths.h"
#include "io/tokenizer.h"
#include "io/tokens.h"
#include "parallel/ctx.h"

static const char tokenize_help[] =
    "usage: mpiquant tokenize --model DIR --in TEXT --out T.npy\n"
    "\n"
    "Tokenizes text with the checkpoint's tokenizer.json (byte-level BPE: GPT-2, Llama 3, Qwen;\n"
    "SentencePiece BPE with byte fallback: Llama 2, Mistral) and writes the ids as a 1-D int32\n"
    ".npy, with the special tokens the tokenizer's post-processor adds to each document (BOS).\n"
    "Under mpirun the documents are split across the ranks (the ids do not depend on the rank\n"
    "count); rank 0 writes the file. Last stdout line: documents, bytes, tokens, MB/s.\n"
    "\n"
    "  --model DIR    checkpoint directory holding tokenizer.json\n"
    "  --in TEXT      .txt: the whole file is one document; .jsonl: one JSON object per line\n"
    "                 with a string field \"text\" (blank lines skipped). Ill-formed UTF-8 in\n"
    "                 a .txt becomes U+FFFD\n"
    "  --out T.npy    output file (never an input; removed again on failure)\n"
    "  --verbose | --quiet\n";

typedef struct tokenize_args {
  const char *model, *in, *out;
} tokenize_args;

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static mq_status parse_tokenize_args(mq_cli *cli, int argc, char **argv, tokenize_args *a,
                                     int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, NULL, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    if (!strcmp(argv[i], "--model"))
      MQ_CHECK(mq_cli_value(argc, argv, &i, &a->model, err));
    else if (!strcmp(argv[i], "--in"))
      MQ_CHECK(mq_cli_value(argc, argv, &i, &a->in, err));
    else if (!strcmp(argv[i], "--out"))
      MQ_CHECK(mq_cli_value(argc, argv, &i, &a->out, err));
    else
      MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant tokenize --help)", argv[i]);
  }
  if (a->model == NULL) MQ_FAIL(err, MQ_EUSAGE, "--model: missing (the checkpoint directory)");
  if (a->in == NULL) MQ_FAIL(err, MQ_EUSAGE, "--in: missing (a .txt or .jsonl text file)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the .npy to write)");
  if (!mq_tokens_is_text(a->in))
    MQ_FAIL(err, MQ_EUSAGE, "--in: %s: expected a .txt or .jsonl text file", a->in);
  if (!ends_with(a->out, ".npy"))
    MQ_FAIL(err, MQ_EUSAGE, "--out: %s: expected a .npy name", a->out);
cleanup:
  return st;
}

/* Collective: every rank loads the tokenizer and encodes its share; rank 0 writes. */
static mq_status run_tokenize(mq_cli *cli, const tokenize_args *a, mq_error *err) {
  mq_status st = MQ_OK;
  MPI_Comm comm = cli->ctx->comm;
  mq_tokenizer *tok = NULL;
  mq_token_buf ids = {0};
  size_t ndocs = 0, nbytes = 0;
  double t0 = mq_wtime();
  MQ_AGREE(comm, mq_tokenizer_load(a->model, &tok, err));
  MPI_Barrier(comm); /* the encoding time starts together */
  double t1 = mq_wtime();
  MQ_CHECK(mq_tokenizer_encode_file(comm, tok, a->in, &ids, &ndocs, &nbytes, err));
  double t2 = mq_wtime(); /* the gather ends on every rank together */
  if (ids.n == 0) MQ_FAIL(err, MQ_EINPUT, "%s: holds no text", a->in); /* alike on all ranks */
  if (cli->ctx->rank == 0) st = mq_tokens_write_npy(a->out, ids.ids, ids.n, err);
  MQ_AGREE(comm, st);
  if (!cli->quiet && cli->ctx->rank == 0) {
    double sec = t2 - t1 > 1e-9 ? t2 - t1 : 1e-9;
    printf("tokenized %zu documents, %zu bytes -> %zu tokens in %.3f s (%.2f MB/s on %d "
           "rank(s); tokenizer loaded in %.3f s)\n",
           ndocs, nbytes, ids.n, t2 - t1, (double)nbytes / sec / 1e6, cli->ctx->size, t1 - t0);
    fflush(stdout);
  }
cleanup:
  mq_token_buf_free(&ids);
  mq_tokenizer_free(&tok);
  return st;
}

int mq_cmd_tokenize(mq_cli *cli, int argc, char **argv) {
  tokenize_args a = {0};
  int help = 0;
  mq_status st = parse_tokenize_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, tokenize_help, NULL)) return st;
  mq_run_paths rp = {0}; /* inputs never written, the output locked, before it is created */
  mq_run_paths_input(&rp, "--model", a.model, MQ_PATH_CHECKPOINT);
  mq_run_paths_input(&rp, "--in", a.in, MQ_PATH_FILE);
  mq_run_paths_output(&rp, "--out", a.out, MQ_PATH_FILE, 0);
  st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  if (st == MQ_OK) st = run_tokenize(cli, &a, &cli->ctx->err); /* agreed inside */
  mq_run_paths_release(&rp);
  return st;
}

/* `mpiquant eval --model DIR --tokens TOKENS [--quantized O.h5]`: perplexity (docs/CONTRACT.md),
 * computed by mq_model_perplexity (src/model/perplexity.c); this file parses, prints the last
 * stdout line `perplexity <value>` and writes --json. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/status.h"
#include "io/outdir.h"
#include "io/paths.h"
#include "parallel/ctx.h"

static const char eval_help[] =
    "usage: mpiquant eval --model DIR --tokens TOKENS [options]\n"
    "\n"
    "Perplexity of a Llama-family checkpoint (HF layout: config.json, model.safetensors or\n"
    "shards) on a token file: the tokens are cut into non-overlapping windows of L tokens (a\n"
    "short tail is dropped), token i >= 1 of a window is predicted from tokens 0..i-1 of the\n"
    "same window, perplexity = exp(mean NLL). Windows are split across ranks. The last line on\n"
    "stdout is `perplexity <value>`.\n"
    "\n"
    "  --model DIR        checkpoint directory\n"
    "  --tokens TOKENS    text (.txt, .jsonl) tokenized with DIR/tokenizer.json, or tokens:\n"
    "                     .npy (1-D or 2-D), .h5 (dataset /tokens), or raw bytes (256-token\n"
    "                     vocabulary without a tokenizer.json)\n"
    "  --quantized O.h5   result file of `quantize`: its tensors replace the checkpoint's\n"
    "                     (refused when it records another checkpoint: exit 3)\n"
    "  --seqlen L         window length [2048, capped by max_position_embeddings]\n"
    "  --nwindows N       evaluate only the first N windows [all]\n"
    "  --json FILE        write {\"perplexity\", \"nll\", \"tokens\", \"seqlen\"}\n"
    "  --verbose | --quiet\n";

typedef mq_eval_args eval_args;

static mq_status parse_eval_args(mq_cli *cli, int argc, char **argv, eval_args *a, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, NULL, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    if (!strcmp(argv[i], "--model")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->model, err));
    else if (!strcmp(argv[i], "--tokens")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->tokens, err));
    else if (!strcmp(argv[i], "--quantized"))
      MQ_CHECK(mq_cli_value(argc, argv, &i, &a->quantized, err));
    else if (!strcmp(argv[i], "--json")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->json, err));
    else if (!strcmp(argv[i], "--seqlen"))
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 2, 1L << 24, &a->seqlen, err));
    else if (!strcmp(argv[i], "--nwindows"))
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 1, 1L << 40, &a->nwindows, err));
    else
      MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant eval --help)", argv[i]);
  }
  if (a->model == NULL) MQ_FAIL(err, MQ_EUSAGE, "--model: missing (the checkpoint directory)");
  if (a->tokens == NULL) MQ_FAIL(err, MQ_EUSAGE, "--tokens: missing (the token file)");
cleanup:
  return st;
}

/* Whole or absent: written under a temporary name and renamed (io/outdir.h). */
static mq_status write_json(const char *path, const mq_perplexity *p, mq_error *err) {
  json_t *root = json_pack("{s:f, s:f, s:I, s:I}", "perplexity", p->perplexity, "nll", p->nll,
                           "tokens", (json_int_t)p->tokens, "seqlen", (json_int_t)p->seqlen);
  char *text = root != NULL ? json_dumps(root, JSON_INDENT(2)) : NULL;
  json_decref(root);
  if (text == NULL)
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: out of memory (JSON)", path);
  mq_status st = mq_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return st;
}

mq_status mq_cli_eval(mq_cli *cli, const mq_eval_args *a) {
  mq_perplexity ppl = {0};
  mq_perplexity_args pa = {.model_dir = a->model, .tokens = a->tokens, .quantized = a->quantized,
                           .seqlen = (size_t)a->seqlen, .nwindows = (size_t)a->nwindows};
  mq_status st = mq_model_perplexity(cli->ctx, &pa, &ppl);
  if (st != MQ_OK) return st;
  if (cli->ctx->rank == 0 && a->json) st = write_json(a->json, &ppl, &cli->ctx->err);
  if (cli->ctx->rank == 0 && st == MQ_OK) {
    printf("perplexity %.8f\n", ppl.perplexity);
    fflush(stdout);
  }
  return mq_agree(cli->ctx->comm, st);
}

int mq_cmd_eval(mq_cli *cli, int argc, char **argv) {
  eval_args a = {0};
  int help = 0;
  mq_status st = parse_eval_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, eval_help, NULL)) return st;
  mq_run_paths rp = {0}; /* inputs never written, outputs locked, before anything is created */
  mq_run_paths_input(&rp, "--model", a.model, MQ_PATH_CHECKPOINT);
  mq_run_paths_input(&rp, "--tokens", a.tokens, MQ_PATH_FILE);
  mq_run_paths_input(&rp, "--quantized", a.quantized, MQ_PATH_FILE);
  mq_run_paths_output(&rp, "--json", a.json, MQ_PATH_FILE, 0);
  st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  if (st == MQ_OK) st = mq_cli_eval(cli, &a);
  mq_run_paths_release(&rp);
  return st;
}

/* `mpiquant quantize --model DIR --calib TOKENS --out O.h5 [options]`: a whole model, block by
 * block (mq_quantize_model, src/model/calibrate.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/status.h"
#include "io/paths.h"
#include "parallel/ctx.h"

typedef struct quantize_args {
  mq_model_quantize_args run;
  const char *eval; /* --eval TOKENS: perplexity of the result afterwards */
} quantize_args;

static const char quantize_help[] =
    "usage: mpiquant quantize --model DIR --calib TOKENS --out O.h5 [options]\n"
    "\n"
    "Quantizes every linear layer of a Llama-family checkpoint (HF layout: config.json and\n"
    "model.safetensors or shards) block by block: --nsamples windows of --seqlen tokens are\n"
    "drawn from TOKENS with --seed and split across the ranks; each block's layers are\n"
    "quantized in the order [q,k,v] -> [o] -> [gate,up] -> [down] from the inputs of the\n"
    "quantized-so-far model (X~; Qronos also uses the full-precision model's inputs X).\n"
    "O.h5 holds every quantized layer under /layers/<module name> and every other tensor and\n"
    "config.json under /model, so `eval --quantized` and `export` need nothing else.\n"
    "\n"
    "  --model DIR        checkpoint directory\n"
    "  --calib TOKENS     calibration data: text (.txt one document, .jsonl one {\"text\"} per\n"
    "                     line) tokenized with DIR/tokenizer.json, or tokens: .npy (1-D, or\n"
    "                     2-D [samples, seqlen] read row by row), .h5 (/tokens); any other\n"
    "                     file is raw bytes for a 256-token vocabulary\n"
    "  --out O.h5         result file (overwritten; deleted again if the run fails; never an\n"
    "                     input; O.h5.lock beside it keeps a second run from writing it)\n"
    "  --nsamples N       calibration windows [128]\n"
    "  --seqlen L         tokens per window [2048, capped by max_position_embeddings]\n"
    "  --json REPORT      per-layer errors, bounds, lambda, phase seconds, peak memory per rank\n"
    "  --resume           continue an interrupted run: layers O.h5 already holds (same settings,\n"
    "                     same calibration tokens and model config) are read back, not redone;\n"
    "                     the result is identical to an uninterrupted run on any rank count\n"
    "  --eval TOKENS      afterwards, the perplexity of the quantized model on TOKENS (as\n"
    "                     `eval --quantized O.h5`, windows of --seqlen tokens)\n"
    "  --verbose | --quiet\n"
    "\n"
    "Results (codes, scales, zeros) are identical on any number of ranks. Memory per rank:\n"
    "4 B x windows x L x (2 hidden + 4 max(hidden, intermediate)) + one block's weights\n"
    "+ the layer engine's cols^2 doubles.\n"
    "\n";

static mq_status parse_size(int argc, char **argv, int *i, long lo, long hi, size_t *out,
                            mq_error *err) {
  long x = 0;
  mq_status st = mq_cli_int_value(argc, argv, i, lo, hi, &x, err);
  *out = (size_t)x;
  return st;
}

static mq_status parse_quantize_args(mq_cli *cli, int argc, char **argv, quantize_args *qa,
                                     int *help) {
  mq_status st = MQ_OK;
  mq_model_quantize_args *a = &qa->run;
  mq_error *err = &cli->ctx->err;
  mq_quant_options_init(&a->opts);
  a->nsamples = 128;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, &a->opts, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    if (!strcmp(argv[i], "--model")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->model_dir, err));
    else if (!strcmp(argv[i], "--calib")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->calib, err));
    else if (!strcmp(argv[i], "--out")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->out, err));
    else if (!strcmp(argv[i], "--json")) MQ_CHECK(mq_cli_value(argc, argv, &i, &a->json, err));
    else if (!strcmp(argv[i], "--eval")) MQ_CHECK(mq_cli_value(argc, argv, &i, &qa->eval, err));
    else if (!strcmp(argv[i], "--resume")) a->resume = 1;
    else if (!strcmp(argv[i], "--nsamples"))
      MQ_CHECK(parse_size(argc, argv, &i, 1, 1L << 24, &a->nsamples, err));
    else if (!strcmp(argv[i], "--seqlen"))
      MQ_CHECK(parse_size(argc, argv, &i, 2, 1L << 24, &a->seqlen, err));
    else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant quantize --help)", argv[i]);
  }
  if (a->model_dir == NULL) MQ_FAIL(err, MQ_EUSAGE, "--model: missing (the checkpoint directory)");
  if (a->calib == NULL) MQ_FAIL(err, MQ_EUSAGE, "--calib: missing (the calibration tokens)");
  if (a->out == NULL) MQ_FAIL(err, MQ_EUSAGE, "--out: missing (the result file)");
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

int mq_cmd_quantize(mq_cli *cli, int argc, char **argv) {
  quantize_args a = {0};
  int help = 0;
  mq_status st = parse_quantize_args(cli, argc, argv, &a, &help);
  if (!mq_cli_prologue(cli, &st, help, quantize_help, mq_cli_quant_help)) return st;
  mq_run_paths rp = {0}; /* inputs never written, outputs locked, before anything is created */
  mq_run_paths_input(&rp, "--model", a.run.model_dir, MQ_PATH_CHECKPOINT);
  mq_run_paths_input(&rp, "--calib", a.run.calib, MQ_PATH_FILE);
  mq_run_paths_input(&rp, "--eval", a.eval, MQ_PATH_FILE);
  mq_run_paths_output(&rp, "--out", a.run.out, MQ_PATH_FILE, 0); /* --resume: also read */
  mq_run_paths_output(&rp, "--json", a.run.json, MQ_PATH_FILE, 0);
  st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  if (st == MQ_OK) st = mq_quantize_model(cli->ctx, &a.run);
  if (st == MQ_OK && a.eval != NULL) {
    mq_eval_args e = {.model = a.run.model_dir, .tokens = a.eval, .quantized = a.run.out,
                      .seqlen = (long)a.run.seqlen};
    st = mq_cli_eval(cli, &e);
  }
  mq_run_paths_release(&rp);
  return st;
}

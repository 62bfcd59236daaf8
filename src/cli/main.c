/* mpiquant entry point: MPI setup, command dispatch, the one error line, the exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "parallel/interrupt.h"

static const char usage[] =
    "usage: mpiquant <command> [options]     (serial or under mpirun/srun, the same way)\n"
    "\n"
    "Commands:\n"
    "  layer    --in P.h5 --out O.h5     quantize every layer problem in P.h5\n"
    "  quantize --model DIR --calib TOKENS --out O.h5\n"
    "                                     quantize a whole model, block by block\n"
    "  inspect  O.h5                      summarize a result file (layers, bits, errors, bounds)\n"
    "  export   --in O.h5 --format gptq|gptq_v2|dequant --out DIR [--model DIR]\n"
    "                                     deployable checkpoint (model.safetensors, config.json)\n"
    "  eval     --model DIR --tokens TOKENS\n"
    "                                     perplexity of a checkpoint (or with --quantized O.h5)\n"
    "  tokenize --model DIR --in TEXT --out T.npy   text -> token ids (the model's tokenizer.json)\n"
    "  study    --in P.h5 --csv OUT.csv   error and bound per layer x damp x method x rounding\n"
    "  plan     --model DIR [quantize options]   memory, flops, time of a quantize run\n"
    "  bench    --rows R --cols C --tokens N\n"
    "                                     time each phase on a synthetic layer\n"
    "\n"
    "Options: --help (also after a command), --version.\n"
    "Exit status: 0 ok, 2 usage error, 3 bad input, 4 numerical failure, 1 anything else.\n";

typedef int (*command_fn)(mq_cli *, int, char **);

static command_fn find_command(const char *name) {
  if (!strcmp(name, "layer")) return mq_cmd_layer;
  if (!strcmp(name, "quantize")) return mq_cmd_quantize;
  if (!strcmp(name, "inspect")) return mq_cmd_inspect;
  if (!strcmp(name, "export")) return mq_cmd_export;
  if (!strcmp(name, "bench")) return mq_cmd_bench;
  if (!strcmp(name, "study")) return mq_cmd_study;
  if (!strcmp(name, "eval")) return mq_cmd_eval;
  if (!strcmp(name, "tokenize")) return mq_cmd_tokenize;
  if (!strcmp(name, "plan")) return mq_cmd_plan;
  return NULL;
}

/* The lowest failing rank prints the one error line, so it appears exactly once. */
/* The lowest rank that recorded a failure prints its own cause, so the line appears exactly
 * once and names what went wrong (healthy ranks never record anything: parallel/ctx.h). */
static void report_error(mq_cli *cli, mq_status agreed) {
  const mq_ctx *ctx = cli->ctx;
  int mine = ctx->err.status != MQ_OK ? ctx->rank : ctx->size, first = 0;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, ctx->comm);
  if (first == ctx->size) { /* agreed failure without a recorded cause: a bug, say so */
    if (ctx->rank == 0)
      fprintf(stderr, "mpiquant: error: internal error: %s without a message\n",
              mq_status_name(agreed));
    return;
  }
  if (ctx->rank != first) return;
  if (ctx->size > 1 && first != 0) /* "<file or option>: <what>" first; rank last */
    fprintf(stderr, "mpiquant: error: %s (on rank %d)\n", ctx->err.msg, ctx->rank);
  else
    fprintf(stderr, "mpiquant: error: %s\n", ctx->err.msg);
  if (cli->verbose) fprintf(stderr, "mpiquant: (raised at %s:%d)\n", ctx->err.file, ctx->err.line);
}

int main(int argc, char **argv) {
  /* quantize stops at its next layer boundary on SIGTERM/SIGUSR1 (exit 5, resumable;
   * parallel/interrupt.h), recorded from before MPI_Init on; the other commands keep the
   * signals' default actions */
  if (argc >= 2 && !strcmp(argv[1], "quantize")) mq_interrupt_install();
  MPI_Init(&argc, &argv);
  mq_cli cli = {0};
  if (mq_ctx_create(MPI_COMM_WORLD, &cli.ctx) != MQ_OK) {
    fprintf(stderr, "mpiquant: error: out of memory (context)\n");
    MPI_Abort(MPI_COMM_WORLD, MQ_EFAIL);
  }
  mq_ctx_set_verbosity(cli.ctx, MQ_LOG_INFO);
  int status = MQ_OK;
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    if (cli.ctx->rank == 0) fputs(usage, argc < 2 ? stderr : stdout);
    status = argc < 2 ? MQ_EUSAGE : MQ_OK;
  } else if (!strcmp(argv[1], "--version")) {
    if (cli.ctx->rank == 0) printf("mpiquant %s (result format %d)\n", MQ_VERSION_STRING, MQ_FORMAT_VERSION);
  } else {
    command_fn cmd = find_command(argv[1]);
    if (cmd == NULL) {
      if (cli.ctx->rank == 0)
        fprintf(stderr, "mpiquant: error: %s: unknown command (try mpiquant --help)\n", argv[1]);
      status = MQ_EUSAGE;
    } else {
      status = cmd(&cli, argc - 1, argv + 1);
      if (status != MQ_OK) report_error(&cli, (mq_status)status);
    }
  }
  mq_ctx_destroy(&cli.ctx);
  MPI_Finalize();
  return status;
}

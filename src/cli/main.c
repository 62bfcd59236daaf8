/* mpiquant entry point: MPI setup, command dispatch, the one error line, the exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"

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
    "  study    --in P.h5 --csv OUT.csv   error and bound per layer x damp x method x rounding\n"
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
  return NULL;
}

/* The lowest failing rank prints the one error line, so it appears exactly once. */
static void report_error(mq_cli *cli, mq_status agreed) {
  int mine = cli->err.status != MQ_OK ? cli->rank : cli->nranks, first = 0;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, cli->comm);
  if (cli->rank != first) return;
  if (cli->err.status == MQ_OK) return;
  if (cli->nranks > 1 && first != 0) /* SPEC: "<file or option>: <what>" first; rank last */
    fprintf(stderr, "mpiquant: error: %s (on rank %d)\n", cli->err.msg, cli->rank);
  else
    fprintf(stderr, "mpiquant: error: %s\n", cli->err.msg);
  if (cli->verbose) fprintf(stderr, "mpiquant: (raised at %s:%d)\n", cli->err.file, cli->err.line);
  (void)agreed;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  mq_cli cli = {.comm = MPI_COMM_WORLD};
  MPI_Comm_rank(cli.comm, &cli.rank);
  MPI_Comm_size(cli.comm, &cli.nranks);
  mq_error_clear(&cli.err);
  mq_log_setup(MQ_LOG_INFO, cli.rank, 0);
  int status = MQ_OK;
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    if (cli.rank == 0) fputs(usage, argc < 2 ? stderr : stdout);
    status = argc < 2 ? MQ_EUSAGE : MQ_OK;
  } else if (!strcmp(argv[1], "--version")) {
    if (cli.rank == 0) printf("mpiquant %s (result format %d)\n", MQ_VERSION_STRING, MQ_FORMAT_VERSION);
  } else {
    command_fn cmd = find_command(argv[1]);
    if (cmd == NULL) {
      if (cli.rank == 0)
        fprintf(stderr, "mpiquant: error: %s: unknown command (try mpiquant --help)\n", argv[1]);
      status = MQ_EUSAGE;
    } else {
      status = cmd(&cli, argc - 1, argv + 1);
      if (status != MQ_OK) report_error(&cli, (mq_status)status);
    }
  }
  MPI_Finalize();
  return status;
}

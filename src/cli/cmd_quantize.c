/* `mpiquant quantize --model DIR --calib TOKENS --out O.h5 [options]`: a whole model, block by
 * block (mq_quantize_model, src/model/calibrate.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/status.h"
#include "io/hfconfig.h"
#include "io/paths.h"
#include "io/report.h"
#include "model/plan.h"
#include "model/run_progress.h"
#include "parallel/ctx.h"

typedef struct quantize_args {
  mq_model_quantize_args run;
  const char *eval; /* --eval TOKENS: perplexity of the result afterwards */
  double progress;  /* --progress-interval SECONDS (0: the default) */
} quantize_args;

static const char quantize_help[] =
    "usage: mpiquant quantize --model DIR --calib TOKENS --out O.h5 [options]\n"
    "\n"
    "Quantizes every linear layer of a Llama-family or mixture-of-experts checkpoint (Llama,\n"
    "Mistral, Qwen2/3, Phi-3, Gemma 2, Mixtral, Qwen2-MoE, Qwen3-MoE; HF layout: config.json\n"
    "and model.safetensors or shards) block by block: --nsamples windows of --seqlen tokens are\n"
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
    "  --json REPORT      per-layer errors, bounds, lambda, the layer's plan, phase seconds, peak\n"
    "                     memory per rank; rewritten after every layer (an interrupted run\n"
    "                     leaves the finished layers, \"complete\": false)\n"
    "  --mem-per-rank SIZE  also: refuse up front (status 2) a run whose plan (`mpiquant plan`)\n"
    "                     needs more than SIZE on a rank, with the figures and a way out\n"
    "  --spill-dir DIR    node-local scratch (e.g. $TMPDIR) for the activation streams: one\n"
    "                     file there, mapped and unlinked at once (the kernel writes it back\n"
    "                     under memory pressure; nothing is left behind); with --mem-per-rank\n"
    "                     only when the run does not fit otherwise, else always\n"
    "  --progress-interval S  a progress line (phase, block, layer, ETA from the flops left)\n"
    "                     when S seconds passed without one [20; env MQ_PROGRESS_INTERVAL]\n"
    "  --resume           continue an interrupted run: layers O.h5 already holds (same settings,\n"
    "                     same calibration tokens and model config) are read back, not redone;\n"
    "                     the result is identical to an uninterrupted run on any rank count\n"
    "  --expert-groups G  mixtures of experts: G groups of ranks quantize G experts side by\n"
    "                     side, each group splitting rows and samples; the tokens travel to\n"
    "                     their expert's group. Results do not depend on G [1]\n"
    "  --expert-min-tokens N  an expert the router sends fewer than N calibration tokens is\n"
    "                     calibrated on every token instead (logged; result scalars `routed`\n"
    "                     < `samples`; counted in --json) [16]\n"
    "  --experts-all-tokens  calibrate every expert on every token (llm-compressor's\n"
    "                     moe_calibrate_all_experts); the streams still route as the model does\n"
    "  --eval TOKENS      afterwards, the perplexity of the quantized model on TOKENS (as\n"
    "                     `eval --quantized O.h5`, windows of --seqlen tokens)\n"
    "  --verbose | --quiet\n"
    "\n"
    "Results (codes, scales, zeros) are identical on any number of ranks. Memory per rank:\n"
    "4 B x windows x L x (2 hidden + 4 max(hidden, intermediate)) + one block's weights\n"
    "+ the layer engine's cols^2 doubles; `mpiquant plan` with the same options prints it.\n"
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
  a->expert_groups = 1;
  a->expert_min_tokens = 16;
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
    else if (!strcmp(argv[i], "--progress-interval")) {
      const char *v = NULL;
      MQ_CHECK(mq_cli_value(argc, argv, &i, &v, err));
      MQ_CHECK(mq_cli_parse_double("--progress-interval", v, &qa->progress, err));
      if (!(qa->progress > 0))
        MQ_FAIL(err, MQ_EUSAGE, "--progress-interval: %s: expected seconds > 0", v);
    }
    else if (!strcmp(argv[i], "--expert-groups")) {
      size_t g = 0;
      MQ_CHECK(parse_size(argc, argv, &i, 1, 1L << 20, &g, err));
      a->expert_groups = (int)g;
    } else if (!strcmp(argv[i], "--experts-all-tokens")) a->experts_all_tokens = 1;
    else if (!strcmp(argv[i], "--spill-dir"))
      MQ_CHECK(mq_cli_value(argc, argv, &i, &a->spill_dir, err));
    else if (!strcmp(argv[i], "--expert-min-tokens"))
      MQ_CHECK(parse_size(argc, argv, &i, 1, 1L << 40, &a->expert_min_tokens, err));
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

#define GIB(x) ((double)(x) / 1073741824.0)

/* Local (rank 0). The counted peak per rank of this run at `ranks` ranks (model/plan.h, the
 * figure `mpiquant plan` prints); negative when the plan cannot be made (quantize itself then
 * reports the bad config or --seqlen). */
static double planned_peak(const mq_llama_config *cfg, const mq_model_quantize_args *a,
                           int ranks, mq_factor_mode factor, mq_model_plan *p) {
  mq_error scratch = {0}; /* failures here are quantize's to report, with its own words */
  mq_plan_args pa = {.nsamples = a->nsamples, .seqlen = a->seqlen, .ranks = ranks,
                     .ranks_per_node = 1, .node_cores = 1, .node_mem = 0.0, .probe = 0,
                     .opts = a->opts};
  pa.opts.factor = factor;
  return mq_model_plan_make(cfg, &pa, p, &scratch) == MQ_OK ? p->mem.peak : -1.0;
}

/* Local (rank 0). The way out of a plan too big for the budget: more ranks (the fewest, up to
 * one per window, that fit), else the distributed factor, else fewer windows. */
static void suggest_fit(const mq_llama_config *cfg, const mq_model_quantize_args *a, int ranks,
                        double budget, char *buf, size_t len) {
  mq_model_plan p;
  for (long k = 2L * ranks; k <= (long)a->nsamples && k <= (1L << 20); k *= 2) {
    double peak = planned_peak(cfg, a, (int)k, a->opts.factor, &p);
    if (peak >= 0 && peak <= budget) {
      snprintf(buf, len, "run on %ld ranks (%.3g GiB per rank)", k, GIB(peak));
      return;
    }
  }
  double peak = planned_peak(cfg, a, ranks > 1 ? ranks : 2, MQ_FACTOR_SCALAPACK, &p);
  if (a->opts.factor != MQ_FACTOR_SCALAPACK && peak >= 0 && peak <= budget) {
    snprintf(buf, len, "--factor scalapack%s (%.3g GiB per rank)", ranks > 1 ? "" : " on 2 ranks",
             GIB(peak));
    return;
  }
  snprintf(buf, len, "fewer --nsamples or a shorter --seqlen, or a larger --mem-per-rank");
}

/* Collective. With --mem-per-rank, a run whose plan needs more per rank than that is refused
 * before anything is created (MQ_EUSAGE, the numbers in the one error line). Rank 0 plans from
 * config.json alone; every rank takes its verdict. */
static mq_status check_memory(mq_cli *cli, mq_model_quantize_args *a) {
  mq_status st = MQ_OK;
  uint64_t budget = a->opts.mem_per_rank;
  a->spill = a->spill_dir != NULL && budget == 0; /* no budget: --spill-dir always spills */
  if (budget == 0) return MQ_OK;
  if (cli->ctx->rank == 0) {
    mq_llama_config cfg = {0};
    mq_error scratch = {0};
    mq_model_plan p;
    double peak = -1.0;
    if (mq_llama_config_read_dir(a->model_dir, &cfg, &scratch) == MQ_OK)
      peak = planned_peak(&cfg, a, cli->ctx->size, a->opts.factor, &p);
    if (peak > (double)budget && a->spill_dir != NULL && peak - p.mem.streams <= (double)budget) {
      a->spill = 1; /* fits with the streams on scratch */
      MQ_INFO("--mem-per-rank: this run needs %.3g GiB per rank, %.3g GiB of it activation "
              "streams: they go to --spill-dir %s", GIB(peak), GIB(p.mem.streams), a->spill_dir);
    } else if (peak > (double)budget) {
      char way[200];
      suggest_fit(&cfg, a, cli->ctx->size, (double)budget, way, sizeof way);
      st = mq__fail(&cli->ctx->err, MQ_EUSAGE, __FILE__, __LINE__,
                    "--mem-per-rank: this run needs %.3g GiB on rank 0 (%zu windows of %zu "
                    "tokens: streams %.3g GiB, layer engine %.3g GiB, factor %s; as `mpiquant "
                    "plan` prints), more than the %.3g GiB given; %s", GIB(peak),
                    p.windows_per_rank, p.L, GIB(p.mem.streams),
                    GIB(p.mem.engine_hessian > p.mem.engine_sweep ? p.mem.engine_hessian
                                                                   : p.mem.engine_sweep),
                    p.factor == MQ_FACTOR_SCALAPACK ? "scalapack" : "local", GIB(budget), way);
    }
    mq_llama_config_free(&cfg);
  }
  MPI_Bcast(&a->spill, 1, MPI_INT, 0, cli->ctx->comm);
  return mq_agree(cli->ctx->comm, st);
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
  st = check_memory(cli, &a.run);
  if (st == MQ_OK) st = mq_run_paths_guard(cli->ctx->comm, &rp, &cli->ctx->err);
  mq_progress_set_interval(a.progress);
  struct json_t *earlier = NULL; /* --resume: the interrupted run's layer records */
  if (st == MQ_OK && a.run.resume) earlier = mq_report_earlier_load(a.run.json, cli->ctx->rank);
  if (st == MQ_OK) st = mq_quantize_model(cli->ctx, &a.run);
  mq_run_progress_end();
  mq_error carry_err = {0}; /* the run's own error, if any, is the one to report */
  mq_status carried = mq_report_earlier_carry(a.run.json, cli->ctx->rank, earlier, &carry_err);
  if (st == MQ_OK && carried != MQ_OK) cli->ctx->err = carry_err;
  st = mq_agree(cli->ctx->comm, st == MQ_OK ? carried : st);
  if (st == MQ_OK && a.eval != NULL) {
    mq_eval_args e = {.model = a.run.model_dir, .tokens = a.eval, .quantized = a.run.out,
                      .seqlen = (long)a.run.seqlen};
    st = mq_cli_eval(cli, &e);
  }
  mq_run_paths_release(&rp);
  return st;
}

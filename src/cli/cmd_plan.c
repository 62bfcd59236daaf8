/* `mpiquant plan --model DIR [options]`: what `quantize` will need, without quantizing
 * (mq_model_plan_make, src/model/plan.c). Rank 0 plans and prints; seconds to run. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/status.h"
#include "io/hfconfig.h"
#include "model/plan.h"
#include "parallel/ctx.h"

static const char plan_help[] =
    "usage: mpiquant plan --model DIR [--nsamples N] [--seqlen L] [--ranks P]\n"
    "                     [--ranks-per-node R] [--node-cores C] [--node-mem M] [--json F]\n"
    "                     [--no-probe] [quantize options]\n"
    "\n"
    "What `quantize` with the same options will need, from DIR/config.json alone (nothing is\n"
    "quantized; seconds): memory per rank in each phase (the busiest rank, rank 0), the factor\n"
    "--factor auto will choose, the flops of the forward passes, Gram sums, factors and sweeps,\n"
    "a time estimate at GEMM/SYRK rates measured on this machine, and an allocation that fits\n"
    "nodes of C cores and M bytes.\n"
    "\n"
    "  --ranks P          ranks of the planned run [the ranks plan runs on]\n"
    "  --ranks-per-node R ranks sharing a node's memory [min(P, C)]\n"
    "  --node-cores C     cores of a node [this machine's]\n"
    "  --node-mem M       memory of a node, e.g. 256G [this machine's]\n"
    "  --json F           the figures as JSON\n"
    "  --no-probe         do not measure the rates (no time estimate)\n"
    "  --nsamples, --seqlen and the quantization options as for quantize\n"
    "\n";

typedef struct plan_cli {
  const char *model, *json;
  mq_plan_args a;
} plan_cli;

static mq_status parse(mq_cli *cli, int argc, char **argv, plan_cli *pc, int *help) {
  mq_status st = MQ_OK;
  mq_error *err = &cli->ctx->err;
  mq_plan_args *a = &pc->a;
  long x = 0;
  uint64_t bytes = 0;
  mq_quant_options_init(&a->opts);
  a->nsamples = 128;
  a->ranks = cli->ctx->size;
  a->node_cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  a->node_mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  a->probe = 1;
  for (int i = 1; i < argc; i++) {
    int used = 0;
    MQ_CHECK(mq_cli_shared_option(cli, argc, argv, &i, &a->opts, help, &used, err));
    if (*help) return MQ_OK;
    if (used) continue;
    if (!strcmp(argv[i], "--model")) MQ_CHECK(mq_cli_value(argc, argv, &i, &pc->model, err));
    else if (!strcmp(argv[i], "--json")) MQ_CHECK(mq_cli_value(argc, argv, &i, &pc->json, err));
    else if (!strcmp(argv[i], "--no-probe")) a->probe = 0;
    else if (!strcmp(argv[i], "--nsamples")) {
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 1, 1L << 24, &x, err));
      a->nsamples = (size_t)x;
    } else if (!strcmp(argv[i], "--seqlen")) {
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 2, 1L << 24, &x, err));
      a->seqlen = (size_t)x;
    } else if (!strcmp(argv[i], "--ranks")) {
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 1, 1L << 20, &x, err));
      a->ranks = (int)x;
    } else if (!strcmp(argv[i], "--ranks-per-node")) {
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 1, 1L << 16, &x, err));
      a->ranks_per_node = (int)x;
    } else if (!strcmp(argv[i], "--node-cores")) {
      MQ_CHECK(mq_cli_int_value(argc, argv, &i, 1, 1L << 16, &x, err));
      a->node_cores = (int)x;
    } else if (!strcmp(argv[i], "--node-mem")) {
      const char *v = NULL;
      MQ_CHECK(mq_cli_value(argc, argv, &i, &v, err));
      MQ_CHECK(mq_cli_parse_bytes("--node-mem", v, &bytes, err));
      a->node_mem = (double)bytes;
    } else MQ_FAIL(err, MQ_EUSAGE, "%s: unknown option (try mpiquant plan --help)", argv[i]);
  }
  if (pc->model == NULL) MQ_FAIL(err, MQ_EUSAGE, "--model: missing (the checkpoint directory)");
  if (a->ranks_per_node == 0) a->ranks_per_node = a->ranks < a->node_cores ? a->ranks : a->node_cores;
  if (a->ranks_per_node > a->ranks) a->ranks_per_node = a->ranks;
  MQ_CHECK(mq_quant_options_check(&a->opts, err));
cleanup:
  return st;
}

#define GIB(x) ((x) / 1073741824.0)
#define MIB(x) ((x) / 1048576.0)

static const char *factor_name(mq_factor_mode f) {
  return f == MQ_FACTOR_SCALAPACK ? "scalapack" : "local";
}

static void print_plan(const plan_cli *pc, const mq_llama_config *cfg, const mq_model_plan *p) {
  const mq_plan_args *a = &pc->a;
  const mq_plan_memory *m = &p->mem;
  printf("plan: %s: %d blocks, hidden %d, intermediate %d, heads %d/%d, vocab %d; method %s\n",
         pc->model, cfg->num_hidden_layers, cfg->hidden_size, cfg->intermediate_size,
         cfg->num_attention_heads, cfg->num_key_value_heads, cfg->vocab_size,
         mq_method_names[a->opts.method]);
  printf("  %zu windows x %zu tokens; %d ranks (%d per node), %zu windows on rank 0\n", p->nwin,
         p->L, a->ranks, a->ranks_per_node, p->windows_per_rank);
  printf("factor: %s (%s; replicated H of the largest layer, %zu columns: %.3g GiB per rank, "
         "budget %.3g GiB)\n", factor_name(p->factor),
         a->opts.factor == MQ_FACTOR_AUTO ? "auto" : "as given", p->cols_max,
         GIB(p->replicated_bytes), GIB(p->budget_bytes));
  printf("memory per rank (rank 0), MiB:\n");
  printf("  setup   %10.1f  tokens %.1f + streams %.1f + forward workspace %.1f + non-block "
         "tensors %.1f\n", MIB(m->setup), MIB(m->tokens), MIB(m->streams), MIB(m->forward),
         MIB(m->outer));
  printf("  layers  %10.1f  tokens, streams, forward + block weights %.1f + output products %.1f"
         " + engine max(Hessian %.1f, sweep %.1f)\n", MIB(m->layers), MIB(m->block),
         MIB(m->outputs), MIB(m->engine_hessian), MIB(m->engine_sweep));
  printf("  peak    %10.1f  (allocations counted by mpiquant)\n", MIB(m->peak));
  printf("  resident %9.1f  (peak + %.1f of libraries and MPI measured here + I/O buffers and "
         "MPI's for %d other ranks of the node - %.1f of stage buffers never filled)\n",
         MIB(m->resident), MIB(p->resident_base), a->ranks_per_node - 1, MIB(m->untouched));
  printf("flops (all ranks): forward passes %.4g, Gram sums %.4g, factors %.4g (%s), sweeps %.4g\n",
         p->flops_forward, p->flops_grams, p->flops_factor,
         p->factor == MQ_FACTOR_SCALAPACK ? "split over ranks" : "on every rank", p->flops_sweep);
  if (p->rate_sgemm > 0) {
    printf("rates here (one rank, one thread): SGEMM %.1f, DGEMM %.1f, DSYRK %.1f GFLOP/s\n",
           p->rate_sgemm, p->rate_dgemm, p->rate_dsyrk);
    printf("estimate at %d ranks x 1 thread: forward %.1f s, Gram sums %.1f s, factors %.1f s, "
           "sweeps %.1f s; total %.1f s\n", a->ranks, p->sec_forward, p->sec_grams, p->sec_factor,
           p->sec_sweep, p->sec_total);
  }
  if (p->sug_nodes > 0) {
    printf("suggested on nodes of %d cores and %.3g GiB: %d node(s) x %d ranks x %d thread(s): "
           "peak %.3g GiB per rank", a->node_cores, GIB(a->node_mem), p->sug_nodes,
           p->sug_ranks_per_node, p->sug_threads, GIB(p->sug_peak));
    if (p->sug_seconds > 0) printf(", ~%.0f s", p->sug_seconds);
    printf("\n  sbatch --nodes=%d --ntasks-per-node=%d --cpus-per-task=%d jobs/quantize.sbatch "
           "%s CALIB OUT.h5 --nsamples %zu --seqlen %zu\n", p->sug_nodes, p->sug_ranks_per_node,
           p->sug_threads, pc->model, p->nwin, p->L);
  } else {
    printf("suggested: no allocation of up to 1024 nodes of %d cores and %.3g GiB fits\n",
           a->node_cores, GIB(a->node_mem));
  }
}

static mq_status write_json(const plan_cli *pc, const mq_model_plan *p, mq_error *err) {
  const mq_plan_memory *m = &p->mem;
  const mq_plan_args *a = &pc->a;
  json_t *mem = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}",
                          "resident", m->resident, "untouched", m->untouched, "resident_base",
                          p->resident_base, "tokens", m->tokens,
                          "streams", m->streams, "forward", m->forward, "outer", m->outer,
                          "block", m->block, "outputs", m->outputs, "engine_hessian",
                          m->engine_hessian, "engine_sweep", m->engine_sweep, "setup", m->setup,
                          "layers", m->layers, "peak", m->peak);
  json_t *root = json_pack(
      "{s:s,s:s,s:i,s:i,s:i,s:f,s:I,s:I,s:I,s:s,s:f,s:f,s:o,"
      "s:{s:f,s:f,s:f,s:f},s:{s:f,s:f,s:f},s:{s:f,s:f,s:f,s:f,s:f},"
      "s:{s:i,s:i,s:i,s:f,s:f}}",
      "model", pc->model, "method", mq_method_names[a->opts.method], "ranks", a->ranks,
      "ranks_per_node", a->ranks_per_node, "node_cores", a->node_cores, "node_mem_bytes", a->node_mem,
      "nsamples", (json_int_t)p->nwin, "seqlen", (json_int_t)p->L, "windows_rank0",
      (json_int_t)p->windows_per_rank, "factor", factor_name(p->factor), "replicated_bytes",
      p->replicated_bytes, "budget_bytes", p->budget_bytes, "memory_bytes_per_rank", mem,
      "flops", "forward", p->flops_forward, "grams", p->flops_grams, "factor", p->flops_factor,
      "sweep", p->flops_sweep, "rates_gflops", "sgemm", p->rate_sgemm, "dgemm", p->rate_dgemm,
      "dsyrk", p->rate_dsyrk, "seconds", "forward", p->sec_forward, "grams", p->sec_grams,
      "factor", p->sec_factor, "sweep", p->sec_sweep, "total", p->sec_total, "suggested",
      "nodes", p->sug_nodes, "ranks_per_node", p->sug_ranks_per_node, "threads", p->sug_threads,
      "peak_bytes_per_rank", p->sug_peak, "seconds", p->sug_seconds);
  if (root == NULL)
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot build the report", pc->json);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", pc->json, (int)getpid());
  int rc = json_dump_file(root, tmp, JSON_INDENT(1));
  json_decref(root);
  if (rc != 0 || rename(tmp, pc->json) != 0) {
    (void)unlink(tmp);
    return mq__fail(err, MQ_EFAIL, __FILE__, __LINE__, "%s: cannot write", pc->json);
  }
  return MQ_OK;
}

int mq_cmd_plan(mq_cli *cli, int argc, char **argv) {
  plan_cli pc = {0};
  int help = 0;
  mq_status st = parse(cli, argc, argv, &pc, &help);
  if (!mq_cli_prologue(cli, &st, help, plan_help, mq_cli_quant_help)) return st;
  mq_error *err = &cli->ctx->err;
  mq_llama_config cfg = {0};
  mq_model_plan p;
  if (cli->ctx->rank == 0) {
    st = mq_llama_config_read_dir(pc.model, &cfg, err);
    if (st == MQ_OK) st = mq_model_plan_make(&cfg, &pc.a, &p, err);
    if (st == MQ_OK) print_plan(&pc, &cfg, &p);
    if (st == MQ_OK && pc.json != NULL) st = write_json(&pc, &p, err);
    fflush(stdout);
  }
  mq_llama_config_free(&cfg);
  return (int)mq_agree(cli->ctx->comm, st);
}

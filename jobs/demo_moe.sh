#!/bin/bash
#SBATCH --job-name=mpiquant-demo-moe
#SBATCH --ntasks=2
#SBATCH --time=00:20:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
# The mixture-of-experts demo: quantizes the bundled demo MoE (data/demo-moe: a 4-block
# byte-level Mixtral, 4 experts of which each token uses 2, GQA 4/2, bf16; trained by
# tools/train_demo_model.py --moe on the same text as data/demo-model) with MPI (2 ranks by
# default; MQ_NP overrides; under Slurm: sbatch jobs/demo_moe.sh, from any folder). RTN, OPTQ
# and Qronos at 3 bits, group 64, calibrated on 128 windows of 256 bytes of Genesis
# (data/demo-calib.txt); the routers stay in full precision, each expert is calibrated on the
# tokens routed to it. Perplexity on the held-out text of Acts (data/demo-eval.txt) before and
# after, and whether FP < Qronos <= OPTQ < RTN holds at each bit width.
# Shorter or other runs: MQ_DEMO_METHODS ["rtn optq qronos"], MQ_DEMO_BITS ["3"],
# MQ_DEMO_NSAMPLES [128], MQ_DEMO_EXPERT_GROUPS [1]; MQ_BIN=path/to/mpiquant skips installing
# and building; results in MQ_DEMO_DIR [build/demo-moe, in the repository].
set -euo pipefail
root=${MQ_ROOT:-$(dirname "$0")/..} # sbatch runs a copy of this script: then the submitted path
[ -f "$root/jobs/launch.sh" ] || root=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")/.." && pwd) || { echo "demo_moe.sh: cannot find the repository: set MQ_ROOT" >&2; exit 2; }
cd "$root"
. jobs/launch.sh

if [ -z "${MQ_BIN:-}" ]; then
  bash tools/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$(nproc)" >/dev/null
fi
bin=$(mq_bin)
mq_attempt
model=data/demo-moe
work=${MQ_DEMO_DIR:-build/demo-moe}
mkdir -p "$work"
seqlen=256

perplexity() { # the last stdout line of eval is "perplexity <value>"
  mq_launch "$bin" eval --model "$model" --tokens data/demo-eval.txt --seqlen "$seqlen" \
    --quiet "$@" | awk '/^perplexity/ { p = $2 } END { print p }'
}

fp=$(perplexity)
rows=()
declare -A ppl_of
for bits in ${MQ_DEMO_BITS:-3}; do
  for method in ${MQ_DEMO_METHODS:-rtn optq qronos}; do
    out="$work/$method-$bits.h5"
    t0=$(date +%s%N)
    mq_launch "$bin" quantize --model "$model" --calib data/demo-calib.txt --out "$out" \
      --method "$method" --bits "$bits" --group-size 64 --nsamples "${MQ_DEMO_NSAMPLES:-128}" \
      --seqlen "$seqlen" --expert-groups "${MQ_DEMO_EXPERT_GROUPS:-1}" \
      --json "$work/$method-$bits.json" --quiet
    t1=$(date +%s%N)
    ppl=$(perplexity --quantized "$out")
    ppl_of[$method-$bits]=$ppl
    # inspect: a header line names the columns, then one line per layer (experts included)
    worst=$("$bin" inspect "$out" | awk '$1 == "layer" { for (i = 1; i <= NF; i++) if ($i == "rel_err") c = i }
      /^model\./ { if ($c > w) w = $c } END { print w }')
    rows+=("$(printf '%-8s %4d %12.4f %16.4g %10.2f' "$method" "$bits" "$ppl" "$worst" \
      "$(awk -v ns=$((t1 - t0)) 'BEGIN { print ns / 1e9 }')")")
  done
done

printf '\nDemo MoE (4 experts, top-2), perplexity on data/demo-eval.txt'
printf ' (windows of %d bytes), %s ranks\n' "$seqlen" "$(mq_ranks)"
printf '%-8s %4s %12s %16s %10s\n' method bits perplexity worst_rel_err seconds
printf '%-8s %4s %12.4f %16s %10s\n' full - "$fp" - -
printf '%s\n' "${rows[@]}"
for bits in ${MQ_DEMO_BITS:-3}; do
  r=${ppl_of[rtn-$bits]:-} o=${ppl_of[optq-$bits]:-} q=${ppl_of[qronos-$bits]:-}
  [ -n "$r" ] && [ -n "$o" ] && [ -n "$q" ] || continue
  verdict=$(awk -v f="$fp" -v q="$q" -v o="$o" -v r="$r" \
    'BEGIN { print (f < q && q <= o && o < r) ? "holds" : "does NOT hold" }')
  printf '%d bits: FP < Qronos <= OPTQ < RTN %s\n' "$bits" "$verdict"
done
echo
echo "Per-layer details: $bin inspect $work/${method:-qronos}-${bits:-3}.h5"

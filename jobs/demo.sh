#!/bin/bash
#SBATCH --job-name=mpiquant-demo
#SBATCH --ntasks=2
#SBATCH --time=00:20:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
# README command 1: installs what is missing, builds, and quantizes the bundled demo model
# (data/demo-model: a 4-block byte-level Llama, GQA 4/2, bf16) with MPI (2 ranks by default;
# MQ_NP overrides; under Slurm: sbatch jobs/demo.sh, or sbatch -n 4 jobs/demo.sh, from any
# folder). RTN, OPTQ and Qronos at 3 and 4 bits, group 64, calibrated on 128 windows of 256
# bytes of Genesis (data/demo-calib.txt); perplexity on the held-out text of Acts
# (data/demo-eval.txt) before and after.
# Then, when node is available, OPTQ at 4 bits in llama.cpp's Q4_0 blocks (symmetric groups of
# 32, float16 scales) exported with `export --format gguf` and its perplexity measured by
# llama.cpp itself (tools/install-llamacpp.sh installs its prebuilt CPU build from npm) next to
# mpiquant's; skipped with the reason otherwise (MQ_DEMO_GGUF=0 skips it too).
# Shorter runs: MQ_DEMO_METHODS ["rtn optq qronos"], MQ_DEMO_BITS ["3 4"], MQ_DEMO_NSAMPLES
# [128]; MQ_BIN=path/to/mpiquant skips installing and building; results in MQ_DEMO_DIR
# [build/demo, in the repository].
set -euo pipefail
root=${MQ_ROOT:-$(dirname "$0")/..} # sbatch runs a copy of this script: then the submitted path
[ -f "$root/jobs/launch.sh" ] || root=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")/.." && pwd) || { echo "demo.sh: cannot find the repository: set MQ_ROOT" >&2; exit 2; }
cd "$root"
. jobs/launch.sh

if [ -z "${MQ_BIN:-}" ]; then
  bash tools/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$(nproc)" >/dev/null
fi
bin=$(mq_bin)
mq_attempt
model=data/demo-model
work=${MQ_DEMO_DIR:-build/demo}
mkdir -p "$work"
seqlen=256

perplexity() { # the last stdout line of eval is "perplexity <value>"
  mq_launch "$bin" eval --model "$model" --tokens data/demo-eval.txt --seqlen "$seqlen" \
    --quiet "$@" | awk '/^perplexity/ { p = $2 } END { print p }'
}

fp=$(perplexity)
rows=()
for method in ${MQ_DEMO_METHODS:-rtn optq qronos}; do
  for bits in ${MQ_DEMO_BITS:-3 4}; do
    out="$work/$method-$bits.h5"
    t0=$(date +%s%N)
    mq_launch "$bin" quantize --model "$model" --calib data/demo-calib.txt --out "$out" \
      --method "$method" --bits "$bits" --group-size 64 --nsamples "${MQ_DEMO_NSAMPLES:-128}" \
      --seqlen "$seqlen" --json "$work/$method-$bits.json" --quiet
    t1=$(date +%s%N)
    ppl=$(perplexity --quantized "$out")
    # inspect: a header line names the columns, then one line per layer
    worst=$("$bin" inspect "$out" | awk '$1 == "layer" { for (i = 1; i <= NF; i++) if ($i == "rel_err") c = i }
      /^model\./ { if ($c > w) w = $c } END { print w }')
    rows+=("$(printf '%-8s %4d %12.4f %16.4g %10.2f' "$method" "$bits" "$ppl" "$worst" \
      "$(awk -v ns=$((t1 - t0)) 'BEGIN { print ns / 1e9 }')")")
  done
done

printf '\nDemo model, perplexity on data/demo-eval.txt (windows of %d bytes), %s ranks\n' \
  "$seqlen" "$(mq_ranks)"
printf '%-8s %4s %12s %16s %10s\n' method bits perplexity worst_rel_err seconds
printf '%-8s %4s %12.4f %16s %10s\n' full - "$fp" - -
printf '%s\n' "${rows[@]}"
echo
echo "Per-layer details: $bin inspect $work/${method:-qronos}-${bits:-3}.h5"

# llama.cpp's own perplexity of the exported Q4_0 demo, on the same windows as eval's
gguf_demo() {
  if [ "${MQ_DEMO_GGUF:-1}" = 0 ]; then echo "llama.cpp check skipped: MQ_DEMO_GGUF=0"; return; fi
  if ! command -v node >/dev/null 2>&1; then
    echo "llama.cpp check skipped: node not found (apt-get install nodejs npm, Node.js >= 20)"
    return
  fi
  if ! bash tools/install-llamacpp.sh >"$work/install-llamacpp.log" 2>&1; then
    echo "llama.cpp check skipped: $(tail -n 1 "$work/install-llamacpp.log")"
    return
  fi
  local res="$work/optq-q4_0.h5" gguf="$work/optq-q4_0.gguf"
  local windows=$(($(stat -c %s data/demo-eval.txt) / seqlen)) ours theirs
  mq_launch "$bin" quantize --model "$model" --calib data/demo-calib.txt --out "$res" \
    --method optq --bits 4 --sym --group-size 32 --no-act-order --scale-dtype float16 \
    --nsamples "${MQ_DEMO_NSAMPLES:-128}" --seqlen "$seqlen" --quiet
  "$bin" export --in "$res" --format gguf --out "$gguf" --quiet
  ours=$(perplexity --quantized "$res" --nwindows "$windows")
  theirs=$(node tools/llamacpp_perplexity.mjs --llamacpp "${MQ_LLAMACPP_DIR:-$PWD/.llamacpp}" \
    --model "$gguf" --tokens data/demo-eval.txt --seqlen "$seqlen" --nwindows "$windows" |
    node -e 'const l = require("fs").readFileSync(0, "utf8").trim().split("\n").pop();
             console.log(JSON.parse(l).perplexity.toFixed(4))')
  printf '\nOPTQ 4-bit as GGUF Q4_0 (%s, %d bytes), perplexity on the same %d windows\n' \
    "$gguf" "$(stat -c %s "$gguf")" "$windows"
  printf '%-28s %10.4f\n' "mpiquant eval" "$ours" "llama.cpp (node-llama-cpp)" "$theirs"
}
gguf_demo

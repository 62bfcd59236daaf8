#!/bin/bash
# README "GGUF at equal size": the demo model quantized by RTN, OPTQ and Qronos into llama.cpp's
# own blocks (Q4_0, Q4_1, Q5_0, Q5_1: same type = same file size), exported with
# `mpiquant export --format gguf`, and its perplexity on the held-out text measured by llama.cpp
# itself (node-llama-cpp's prebuilt CPU build, tools/llamacpp_perplexity.mjs), next to
# `mpiquant eval --quantized` on the same windows. RTN is mpiquant's round-to-nearest in the
# same blocks (no error feedback, as llama.cpp's quantizer without an importance matrix; its
# Q4_0 picks d = max/−8 instead of the min-max grid). Quantized with --scale-dtype float16 and
# static groups, so the blocks hold exactly the optimised weights; Q4_1/Q5_1 also store the
# minimum −d·zero in float16 and need --allow-requantize (the added error is printed).
#
#   bash tools/gguf_size_table.sh [OUTDIR]     # default build/gguf-size-table
#
# MQ_BIN (default build/bin/mpiquant), MQ_NP [2] ranks, MQ_NSAMPLES [128] calibration windows
# of 256 bytes, MQ_WINDOWS [all 195] evaluation windows of 256 bytes, MQ_TYPES ["Q4_0 Q4_1 Q5_0
# Q5_1"], MQ_METHODS ["rtn optq qronos"]. Needs node (llama.cpp is installed by
# tools/install-llamacpp.sh). Prints a Markdown table.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
. jobs/launch.sh
bin=$(mq_bin)
work=${1:-build/gguf-size-table}
mkdir -p "$work"
seqlen=256
eval_bytes=$(stat -c %s data/demo-eval.txt)
windows=${MQ_WINDOWS:-$((eval_bytes / seqlen))}
llamacpp=${MQ_LLAMACPP_DIR:-$root/.llamacpp}
MQ_LLAMACPP_DIR=$llamacpp bash tools/install-llamacpp.sh >&2

grid() { # GGUF type -> quantize options
  case $1 in
    Q4_0) echo "--bits 4 --sym" ;;
    Q4_1) echo "--bits 4 --asym" ;;
    Q5_0) echo "--bits 5 --sym" ;;
    Q5_1) echo "--bits 5 --asym" ;;
    Q8_0) echo "--bits 8 --sym" ;;
    *) echo "gguf_size_table: unknown type $1" >&2; exit 2 ;;
  esac
}

mq_ppl() { # mpiquant eval on the same windows
  mq_launch "$bin" eval --model data/demo-model --tokens data/demo-eval.txt --seqlen "$seqlen" \
    --nwindows "$windows" --quiet "$@" | awk '/^perplexity/ { p = $2 } END { print p }'
}

ll_ppl() { # llama.cpp on the GGUF file
  node tools/llamacpp_perplexity.mjs --llamacpp "$llamacpp" --model "$1" \
    --tokens data/demo-eval.txt --seqlen "$seqlen" --nwindows "$windows" |
    node -e 'const l = require("fs").readFileSync(0, "utf8").trim().split("\n").pop();
             console.log(JSON.parse(l).perplexity.toFixed(4))'
}

rows=()
for type in ${MQ_TYPES:-Q4_0 Q4_1 Q5_0 Q5_1}; do
  for method in ${MQ_METHODS:-rtn optq qronos}; do
    res="$work/$method-$type.h5" gguf="$work/$method-$type.gguf"
    # shellcheck disable=SC2046
    mq_launch "$bin" quantize --model data/demo-model --calib data/demo-calib.txt --out "$res" \
      --method "$method" $(grid "$type") --group-size 32 --no-act-order --scale-dtype float16 \
      --nsamples "${MQ_NSAMPLES:-128}" --seqlen "$seqlen" --quiet
    extra=()
    case $type in Q4_1 | Q5_1) extra=(--allow-requantize) ;; esac
    "$bin" export --in "$res" --format gguf --out "$gguf" --force --quiet "${extra[@]}" >/dev/null
    rows+=("$(printf '| %s | %s | %d | %.4f | %s |' "$type" "$method" "$(stat -c %s "$gguf")" \
      "$(mq_ppl --quantized "$res")" "$(ll_ppl "$gguf")")")
  done
done
printf '\nDemo model, %d windows of %d bytes of data/demo-eval.txt; ' "$windows" "$seqlen"
printf 'full precision (mpiquant eval): %.4f\n\n' "$(mq_ppl)"
echo "| GGUF type | method | file bytes | mpiquant eval | llama.cpp |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"

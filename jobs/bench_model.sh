#!/bin/bash
#SBATCH --job-name=mpiquant-bench-model
#SBATCH --ntasks=2
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
#SBATCH --time=02:00:00
# The whole-model pipeline at real shapes (a benchmark: prints numbers, asserts nothing): a
# random checkpoint with Llama-2-7B block shapes (hidden 4096, intermediate 11008, 32 heads,
# vocabulary 32000; MQ_BLOCKS blocks [1]) quantized with MQ_NSAMPLES windows of MQ_SEQLEN
# tokens [16 x 2048] on MQ_NP ranks [2], then where the seconds went (tools/report_phases.py)
# against the same run's GEMM/SYRK rates. MQ_METHOD [optq], MQ_GRAM_PRODUCTS [double] (or
# float32: quantize --gram-products), MQ_HIDDEN/MQ_INTER override shapes.
set -euo pipefail
root=${MQ_ROOT:-$(dirname "$0")/..} # sbatch runs a copy of this script: then the submitted path
[ -f "$root/jobs/launch.sh" ] || root=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")/.." && pwd) || { echo "bench_model.sh: cannot find the repository: set MQ_ROOT" >&2; exit 2; }
cd "$root"
. jobs/launch.sh
bin=${MQ_BIN:-build/bin/mpiquant}
py=${MQ_PYTHON:-$(command -v /usr/bin/python3 || command -v python3)} # Debian's: numpy
work=${MQ_BENCH_DIR:-build/bench-model}
hidden=${MQ_HIDDEN:-4096} inter=${MQ_INTER:-11008} blocks=${MQ_BLOCKS:-1}
nsamples=${MQ_NSAMPLES:-16} seqlen=${MQ_SEQLEN:-2048} method=${MQ_METHOD:-optq}
gram=${MQ_GRAM_PRODUCTS:-double}
model=$work/model-$hidden-$inter-$blocks
mkdir -p "$work"
if [ ! -f "$model/config.json" ]; then
  "$py" tools/make_random_checkpoint.py "$model" --hidden "$hidden" --inter "$inter" \
    --blocks "$blocks" --tokens $((nsamples * seqlen * 2)) --tokens-out "$model/calib.npy"
fi
machine=$(mq_launch "$bin" bench --rows 256 --cols 4096 --tokens 2048 --quiet | grep '^machine')
echo "$machine"
rate() { echo "$machine" | sed -E "s/.*$1 ([0-9.]+).*/\1/"; }
mq_launch "$bin" quantize --model "$model" --calib "$model/calib.npy" --out "$work/out.h5" \
  --method "$method" --gram-products "$gram" --nsamples "$nsamples" --seqlen "$seqlen" \
  --json "$work/report.json"
"$py" tools/report_phases.py "$work/report.json" "$model/config.json" --method "$method" \
  --dgemm "$(rate DGEMM)" --sgemm "$(rate SGEMM)" --dsyrk "$(rate DSYRK)" \
  --ssyrk "$(rate SSYRK)" --gram-products "$gram" \
  --ranks "${SLURM_NTASKS:-${MQ_NP:-2}}"

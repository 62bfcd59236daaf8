#!/bin/bash
#SBATCH --job-name=mpiquant-scaling
#SBATCH --ntasks=16
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
# Strong scaling of one layer (issue "distributed layer engine"): `mpiquant bench` at 1, 2, 4,
# 8, 16 ranks (MQ_SCALING_NPS overrides), one BLAS thread per rank, local and ScaLAPACK factor.
# Prints one table row per run: phases in seconds (maximum over ranks), parallel efficiency of
# hessian + factor + sweep against the 1-rank run, bytes reduced, peak memory per rank.
#   sbatch jobs/scaling.sh            # on a cluster node
#   MQ_SCALING_NPS="1 2" bash jobs/scaling.sh   # here
# Layer size: MQ_ROWS, MQ_COLS, MQ_TOKENS (default 8192 x 8192, 16384 tokens).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
. jobs/launch.sh
export OPENBLAS_NUM_THREADS=1
bin=${MQ_BIN:-build/bin/mpiquant}
[ -x "$bin" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
rows=${MQ_ROWS:-8192} cols=${MQ_COLS:-8192} tokens=${MQ_TOKENS:-16384}
printf '%-10s %4s %9s %9s %9s %9s %11s %8s %10s\n' factor ranks hessian factor sweep sum efficiency MiB_red peak_MiB
for factor in local scalapack; do
  base=""
  for np in ${MQ_SCALING_NPS:-1 2 4 8 16}; do
    out=$(MQ_NP=$np mq_launch "$bin" bench --rows "$rows" --cols "$cols" --tokens "$tokens" \
            --factor "$factor" --quiet)
    h=$(awk '/^hessian/ {print $(NF-6)}' <<<"$out")
    f=$(awk '/^factor/ {print $(NF-6)}' <<<"$out")
    s=$(awk '/^sweep/ {print $(NF-6)}' <<<"$out")
    red=$(sed -n 's/.*reductions: \([0-9.]*\) MiB.*/\1/p' <<<"$out")
    peak=$(sed -n 's/.*per rank: \([0-9.]*\) MiB counted.*/\1/p' <<<"$out")
    sum=$(awk -v a="$h" -v b="$f" -v c="$s" 'BEGIN {print a + b + c}')
    [ -n "$base" ] || base=$sum
    eff=$(awk -v b="$base" -v t="$sum" -v p="$np" 'BEGIN {printf "%.0f%%", 100 * b / (t * p)}')
    printf '%-10s %4d %9s %9s %9s %9.3f %11s %8s %10s\n' "$factor" "$np" "$h" "$f" "$s" "$sum" "$eff" "$red" "$peak"
  done
done

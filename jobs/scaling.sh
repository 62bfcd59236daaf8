#!/bin/bash
#SBATCH --job-name=mpiquant-scaling
#SBATCH --time=01:00:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
# Strong scaling of one layer (issue "distributed layer engine"): `mpiquant bench` at 1, 2, 4,
# … ranks, one BLAS thread per rank, local and ScaLAPACK factor. Prints one table row per run:
# the ranks the run reported, phases in seconds (maximum over ranks), parallel efficiency of
# hessian + factor + sweep against the first row, bytes reduced, peak memory per rank.
#   sbatch --ntasks=16 jobs/scaling.sh          # rows 1 2 4 8 16: one `srun -n k` step each,
#                                               # inside the one allocation
#   bash jobs/scaling.sh                        # here: mpirun, rows up to MQ_NP (else nproc)
#   MQ_SCALING_NPS="1 2" bash jobs/scaling.sh   # the rows given
# The rows are the powers of two up to the ranks available (the allocation's tasks; without
# Slurm MQ_NP, else nproc), plus that count itself. Layer size: MQ_ROWS, MQ_COLS, MQ_TOKENS
# (default 8192 x 8192, 16384 tokens).
set -euo pipefail
root=${MQ_ROOT:-$(dirname "$0")/..} # sbatch runs a copy of this script: then the submitted path
[ -f "$root/jobs/launch.sh" ] || root=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")/.." && pwd) || { echo "scaling.sh: cannot find the repository: set MQ_ROOT" >&2; exit 2; }
. "$root/jobs/launch.sh"
export OPENBLAS_NUM_THREADS=1
bin=$(mq_bin)
if mq_in_slurm; then max=$(mq_ranks); else max=${MQ_NP:-$(nproc)}; fi
nps=${MQ_SCALING_NPS:-$(k=1; while [ $k -lt "$max" ]; do printf '%d ' $k; k=$((k * 2)); done; echo "$max")}
for np in $nps; do
  if mq_in_slurm && [ "$np" -gt "$max" ]; then
    echo "scaling.sh: $np ranks requested, the allocation has $max tasks (sbatch --ntasks=$np)" >&2
    exit 2
  fi
done
mq_attempt
rows=${MQ_ROWS:-8192} cols=${MQ_COLS:-8192} tokens=${MQ_TOKENS:-16384}
printf '%-10s %5s %9s %9s %9s %9s %11s %8s %10s\n' factor ranks hessian factor sweep sum efficiency MiB_red peak_MiB
for factor in local scalapack; do
  base=""
  for np in $nps; do
    out=$(mq_launch -n "$np" "$bin" bench --rows "$rows" --cols "$cols" --tokens "$tokens" \
            --factor "$factor" --quiet)
    ranks=$(sed -n 's/^bench:.* \([0-9][0-9]*\) rank(s).*/\1/p' <<<"$out")
    h=$(awk '/^hessian/ {print $(NF-6)}' <<<"$out")
    f=$(awk '/^factor/ {print $(NF-6)}' <<<"$out")
    s=$(awk '/^sweep/ {print $(NF-6)}' <<<"$out")
    red=$(sed -n 's/.*reductions: \([0-9.]*\) MiB.*/\1/p; s/.*handed to MPI: \([0-9.]*\) MiB.*/\1/p' <<<"$out")
    peak=$(sed -n 's/.*per rank: \([0-9.]*\) MiB counted.*/\1/p' <<<"$out")
    sum=$(awk -v a="$h" -v b="$f" -v c="$s" 'BEGIN {print a + b + c}')
    [ -n "$base" ] || base=$sum base_np=$ranks
    eff=$(awk -v b="$base" -v b0="$base_np" -v t="$sum" -v p="$ranks" 'BEGIN {printf "%.0f%%", 100 * b * b0 / (t * p)}')
    printf '%-10s %5d %9s %9s %9s %9.3f %11s %8s %10s\n' "$factor" "$ranks" "$h" "$f" "$s" "$sum" "$eff" "$red" "$peak"
  done
done

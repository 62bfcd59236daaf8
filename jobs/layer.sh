#!/bin/bash
#SBATCH --job-name=mpiquant-layer
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
# Quantize a layer-problem file on every rank of the allocation:
#   sbatch jobs/layer.sh P.h5 O.h5 [mpiquant layer options...]     (srun under Slurm)
#   MQ_NP=4 bash jobs/layer.sh P.h5 O.h5 --method qronos --bits 3  (mpirun without it)
# Every option after the two files goes to `mpiquant layer` unchanged; a JSON report lands
# beside O.h5 (O.json) unless --json is given.
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
. jobs/launch.sh
[ $# -ge 2 ] || { echo "usage: jobs/layer.sh P.h5 O.h5 [options]" >&2; exit 2; }
in=$1 out=$2
shift 2
export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${OPENBLAS_NUM_THREADS:-1}}
bin=${MQ_BIN:-build/bin/mpiquant}
[ -x "$bin" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j >/dev/null; }
json=()
[[ " $* " == *" --json "* ]] || json=(--json "${out%.h5}.json")
mq_launch "$bin" layer --in "$in" --out "$out" "${json[@]}" "$@"
"$bin" inspect "$out"

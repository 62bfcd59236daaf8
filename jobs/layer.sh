#!/bin/bash
#SBATCH --job-name=mpiquant-layer
#SBATCH --time=04:00:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
# Quantize a layer-problem file on every rank of the allocation:
#   sbatch --ntasks=4 jobs/layer.sh P.h5 O.h5 [mpiquant layer options...]   (srun under Slurm)
#   MQ_NP=4 bash jobs/layer.sh P.h5 O.h5 --method qronos --bits 3         (mpirun without it)
# The ranks are the allocation's: no task count here, so `sbatch jobs/layer.sh` (1 task) runs
# on any node and `sbatch -n N` / `-N 2 --ntasks-per-node=8` are taken as given; each rank gets
# --cpus-per-task BLAS threads. Every option after the two files goes to `mpiquant layer`
# unchanged; a JSON report lands beside O.h5 (O.json) unless --json is given. Relative paths
# are taken from the folder the job was submitted from.
set -euo pipefail
root=${MQ_ROOT:-$(dirname "$0")/..} # sbatch runs a copy of this script: then the submitted path
[ -f "$root/jobs/launch.sh" ] || root=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")/.." && pwd) || { echo "layer.sh: cannot find the repository: set MQ_ROOT" >&2; exit 2; }
. "$root/jobs/launch.sh"
[ $# -ge 2 ] || { echo "usage: jobs/layer.sh P.h5 O.h5 [options]" >&2; exit 2; }
in=$1 out=$2
shift 2
bin=$(mq_bin)
mq_attempt
json=()
[[ " $* " == *" --json "* ]] || json=(--json "${out%.h5}.json")
mq_launch "$bin" layer --in "$in" --out "$out" "${json[@]}" "$@"
"$bin" inspect "$out"

#!/bin/bash
#SBATCH --job-name=mpiquant-memory
#SBATCH --ntasks=4
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
#SBATCH --time=00:30:00
# A 16384-column layer on 4 ranks with --mem-per-rank 1.5G, below the 2 GiB of one replicated
# double H: once with H given in the file, once with 2048 samples X. Prints the peak resident
# memory of every rank (from the --json report) and the phase seconds. Needs ~2.3 GB of disk
# in ${MQ_WORK:-build/memory}; MQ_NP overrides the 4 ranks without Slurm.
set -euo pipefail
root=${MQ_ROOT:-$(dirname "$0")/..} # sbatch runs a copy of this script: then the submitted path
[ -f "$root/jobs/launch.sh" ] || root=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")/.." && pwd) || { echo "memory_proof.sh: cannot find the repository: set MQ_ROOT" >&2; exit 2; }
cd "$root"
. jobs/launch.sh
export MQ_NP=${MQ_NP:-4}
bin=${MQ_BIN:-build/bin/mpiquant}
work=${MQ_WORK:-build/memory}
mkdir -p "$work"
[ -f "$work/h16k.h5" ] || /usr/bin/python3 tools/make_hessian_problem.py "$work/h16k.h5" --rows 256 --cols 16384
[ -f "$work/x16k.h5" ] || /usr/bin/python3 tools/make_hessian_problem.py "$work/x16k.h5" --rows 256 --cols 16384 --samples 2048
for p in h16k x16k; do
  mq_launch "$bin" layer --in "$work/$p.h5" --out "$work/$p-out.h5" --mem-per-rank 1.5G \
    --json "$work/$p.json" --quiet
  /usr/bin/python3 - "$work/$p.json" "$p" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ph = r["layers"][0]["phases_max_over_ranks"]
print("%s: peak resident MiB per rank %s; seconds: %s" % (
    sys.argv[2], [round(x / 2**20) for x in r["max_resident_bytes_per_rank"]],
    ", ".join("%s %.1f" % (k, v) for k, v in ph.items() if not k.endswith("flops"))))
PY
done

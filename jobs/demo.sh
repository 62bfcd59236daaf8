#!/bin/bash
#SBATCH --job-name=mpiquant-demo
#SBATCH --ntasks=2
#SBATCH --time=00:20:00
# README command 1: installs what is missing, builds, and quantizes a demo problem with MPI
# (2 ranks by default; MQ_NP overrides; under Slurm: sbatch jobs/demo.sh).
# Until the model pipeline lands the demo is a generated transformer-like layer file whose
# inputs Xq differ from X as in a partially quantized model; the table compares RTN, OPTQ and
# Qronos at 3 and 4 bits.
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
. jobs/launch.sh

bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

work=${MQ_DEMO_DIR:-build/demo}
mkdir -p "$work"
/usr/bin/python3 tools/make_layer_problem.py "$work/problem.h5"

printf '\n%-6s %4s %12s %12s %10s\n' method bits mean_rel_err worst_rel_err seconds
for method in rtn optq qronos; do
  for bits in 3 4; do
    out="$work/$method-$bits.h5"
    t0=$(date +%s%N)
    mq_launch build/bin/mpiquant layer --in "$work/problem.h5" --out "$out" \
      --method "$method" --bits "$bits" --group-size 64 --quiet
    t1=$(date +%s%N)
    # inspect's layer rows: name shape lambda loss bound_l2 ratio err rel_err clipped seconds
    build/bin/mpiquant inspect "$out" | awk -v m="$method" -v b="$bits" -v ns="$((t1 - t0))" '
      /^[0-9]+\.[a-z]/ { n++; sum += $8; if ($8 > worst) worst = $8 }
      END { printf "%-6s %4d %12.4g %12.4g %10.2f\n", m, b, sum / n, worst, ns / 1e9 }'
  done
done
echo
echo "Per-layer details: build/bin/mpiquant inspect $work/optq-4.h5"

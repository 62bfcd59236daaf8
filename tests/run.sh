#!/bin/bash
# README command 2: installs what is missing (Debian 12), builds, runs the whole CTest suite
# except the benchmarks (label "bench", run by hand: ctest --test-dir build -L bench -V) and the
# load-sensitive Slurm walltime test (label "walltime").
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh

build=${MQ_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMQ_PYTHON=/usr/bin/python3 >/dev/null
cmake --build "$build" -j "$(nproc)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
ctest --test-dir "$build" -LE 'bench|walltime' --output-on-failure -j "${MQ_TEST_JOBS:-$(nproc)}"

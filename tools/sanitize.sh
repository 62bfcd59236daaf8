#!/bin/bash
# The sanitizer subset: mpiquant built with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DMQ_SANITIZE=ON) in ${MQ_ASAN_DIR:-build-asan}, then the CTest labels unit, errors and
# hostile there (the serial numerics and readers, every error path at 1-3 ranks, the hostile
# runs of issue 13). Leak checking is off (Open MPI and HDF5 keep global allocations to exit);
# every other report fails the run (halt_on_error, UBSan aborts).
#
#   bash tools/sanitize.sh [extra ctest arguments, e.g. -R hostile]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
build=${MQ_ASAN_DIR:-build-asan}
t0=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQ_SANITIZE=ON -DMQ_NATIVE=OFF \
  -DMQ_PYTHON=/usr/bin/python3 >/dev/null
cmake --build "$build" -j "$(nproc)"
t1=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rc=0
ctest --test-dir "$build" -L "unit|errors|hostile" --output-on-failure "$@" || rc=$?
t2=$(date +%s)
echo "sanitize.sh: build $((t1 - t0))s, tests $((t2 - t1))s"
exit $rc

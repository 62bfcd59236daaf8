#!/bin/bash
# The installed package as a user meets it: `cmake --install` of this build into a fresh prefix,
# examples/ configured against it with find_package(mpiquant), built, and run at 1 and 3 ranks
# (the example checks its own results and exits non-zero on any failed check).
#   run_package_test.sh BUILD_DIR SOURCE_DIR WORK_DIR "MPIRUN"
set -euo pipefail
build=$1 src=$2 work=$3 mpirun=$4
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/mpiquant.h"
cmake -S "$src/examples" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example" >/dev/null
for np in 1 3; do
  $mpirun -np "$np" "$work/example/random_layer"
done
echo "package: 1 passed, 0 failed"

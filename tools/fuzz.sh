#!/bin/bash
# Fuzzes mpiquant's file readers with libFuzzer for as long as you like (tests/fuzz/run_fuzz.py;
# the CTest test fuzz_readers runs the same for 20 s per harness).
#
#   bash tools/fuzz.sh [SECONDS per harness, default 600] [run_fuzz.py options: --harness
#                       fuzz_result ..., --jobs N, --raw]
#
# Installs clang-14 and libclang-rt-14-dev (Debian 12) when clang cannot link a libFuzzer
# program; builds mpiquant in ${MQ_BUILD_DIR:-build} for the raw-mode seeds. Crash inputs are
# copied to tests/fuzz/regressions/<harness>/ (commit them: the test replays them). Work files in
# ${MQ_FUZZ_DIR:-build-fuzz}.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
[ $# -gt 0 ] && shift
cc=${MQ_FUZZ_CC:-clang}
probe() {
  local d; d=$(mktemp -d)
  printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$d/t.c"
  "$cc" -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1; local rc=$?
  rm -rf "$d"; return $rc
}
if ! command -v "$cc" >/dev/null 2>&1 || ! probe; then
  echo "fuzz.sh: installing clang-14 and libclang-rt-14-dev"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    clang-14 libclang-rt-14-dev >/dev/null
  command -v "$cc" >/dev/null 2>&1 || cc=clang-14
fi
bash tools/install-deps.sh
build=${MQ_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMQ_PYTHON=/usr/bin/python3 >/dev/null
cmake --build "$build" -j "$(nproc)" --target mpiquant >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec /usr/bin/python3 tests/fuzz/run_fuzz.py --source . --workdir "${MQ_FUZZ_DIR:-build-fuzz}" \
  --mpiquant "$build/bin/mpiquant" --cc "$cc" --seconds "$seconds" --jobs "$(nproc)" "$@"

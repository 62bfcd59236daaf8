#!/bin/bash
# Installs llama.cpp's prebuilt CPU build for Linux x86-64 as the npm packages node-llama-cpp and
# @node-llama-cpp/linux-x64 (pinned version) into a git-ignored folder, for the GGUF tests
# (tests/io/gguf/run_gguf_llamacpp.py), jobs/demo.sh and tools/gguf_size_table.sh. Nothing is
# compiled and nothing is downloaded at run time: the binary ships inside the npm package. Idempotent: an existing install of the same version is kept.
#
#   bash tools/install-llamacpp.sh            # -> .llamacpp/node_modules/...
#   MQ_LLAMACPP_DIR=/some/dir bash tools/install-llamacpp.sh
#
# Needs Node.js >= 20 and npm (Debian: apt-get install nodejs npm) and the npm registry.
# Exits non-zero, with the reason on stderr, when anything is missing or the install fails.
set -euo pipefail

VERSION=3.21.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${MQ_LLAMACPP_DIR:-$ROOT/.llamacpp}

die() { echo "install-llamacpp: error: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found (apt-get install nodejs npm; Node.js >= 20 is needed)"
command -v npm >/dev/null || die "npm not found (apt-get install npm)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "Node.js $(node --version) is too old (node-llama-cpp $VERSION needs >= 20)"
[ "$(uname -m)" = x86_64 ] || die "only the linux-x64 prebuilt binary is installed by this script"

installed() {
  local p="$DIR/node_modules/node-llama-cpp/package.json" b="$DIR/node_modules/@node-llama-cpp/linux-x64/package.json"
  [ -f "$p" ] && [ -f "$b" ] &&
    [ "$(node -p "require('$p').version")" = "$VERSION" ] &&
    [ "$(node -p "require('$b').version")" = "$VERSION" ]
}

mkdir -p "$DIR"
exec 9>"$DIR/.install.lock"
flock 9 # two test runs at once: the second waits and then finds the install done
if installed; then
  echo "install-llamacpp: node-llama-cpp $VERSION already in $DIR"
  exit 0
fi
cd "$DIR"
[ -f package.json ] || echo '{"private": true, "description": "llama.cpp for mpiquant tests (tools/install-llamacpp.sh)"}' > package.json
# SKIP_DOWNLOAD: never fetch or build llama.cpp sources; --omit=optional: only the CPU binary
# named explicitly (no CUDA/Vulkan packages).
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --save-exact --omit=optional --no-audit --no-fund \
  "node-llama-cpp@$VERSION" "@node-llama-cpp/linux-x64@$VERSION" ||
  die "npm install of node-llama-cpp@$VERSION failed (registry reachable?)"
installed || die "node-llama-cpp $VERSION not found in $DIR after npm install"
echo "install-llamacpp: installed node-llama-cpp $VERSION in $DIR"

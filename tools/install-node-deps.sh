#!/bin/bash
# Installs the npm package the tokenizer tests compare against (Hugging Face's JavaScript
# tokenizer, the exact version pinned in tests/text/package-lock.json) into
# tests/text/node_modules, when it is missing or another version. Installs Debian's nodejs/npm
# first when there is no node. Exits non-zero, loudly, when anything cannot be installed: the
# tests that need it must fail then, never pass silently.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$root/tests/text
pkg=@huggingface/tokenizers

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-node-deps: installing nodejs npm (Debian)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

want=$(node -e "console.log(require(process.argv[1]).dependencies[process.argv[2]])" "$dir/package.json" "$pkg")
have() {
  node -e "try { console.log(require(process.argv[1]).version) } catch (e) { console.log('none') }" \
    "$dir/node_modules/$pkg/package.json"
}
if [ "$(have)" != "$want" ]; then
  echo "install-node-deps: installing $pkg@$want into $dir/node_modules"
  if ! npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error; then
    echo "install-node-deps: ERROR: npm could not install $pkg@$want (is the npm registry reachable?)" >&2
    exit 1
  fi
fi
if [ "$(have)" != "$want" ]; then
  echo "install-node-deps: ERROR: $dir/node_modules/$pkg is $(have), not $want" >&2
  exit 1
fi
echo "install-node-deps: $pkg@$want ready ($(node --version))"

#!/bin/bash
# Installs the Debian 12 packages mpiquant builds, runs and tests with, when any is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libscalapack-openmpi-dev
      libopenblas-dev libhdf5-openmpi-dev hdf5-tools librandom123-dev libjansson-dev
      libpcre2-dev libutf8proc-dev clang-14 libclang-rt-14-dev
      python3 python3-numpy python3-h5py)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

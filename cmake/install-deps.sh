#!/usr/bin/env bash
# Installs the Debian 12 packages FlashRNN builds and tests with. Used by the
# README's two commands (examples/run.sh, tests/run.sh); safe to re-run.
set -euo pipefail
PKGS=(cmake g++ ninja-build libtbb-dev catch2 libbenchmark-dev)
PKGS+=("$@")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[flashrnn] installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

#!/usr/bin/env bash
# The README's run command: installs the Debian packages, builds the main job
# (examples/paragru_modes, a C++ target of its own) and runs it. Arguments are
# passed to the program: --batch B --units H --steps T --threads N.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/cmake/install-deps.sh"
build="${FLASHRNN_BUILD_DIR:-$root/build}/example"
jobs="$(nproc)"

echo "[flashrnn] configuring $build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFLASHRNN_ENABLE_CUDA=OFF -DFLASHRNN_ENABLE_TESTS=OFF -DFLASHRNN_ENABLE_EXAMPLES=ON >/dev/null
echo "[flashrnn] building the paragru_modes example"
cmake --build "$build" -j "$jobs" --target paragru_modes
echo "[flashrnn] running"
"$build/examples/paragru_modes/paragru_modes" "$@"

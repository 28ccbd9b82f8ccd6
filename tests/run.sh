#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, and runs the
# whole suite (Release build at 1 and 2 threads, then an ASan+UBSan build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/cmake/install-deps.sh"
build="${FLASHRNN_BUILD_DIR:-$root/build}"
jobs="$(nproc)"

echo "[flashrnn] Release build + tests"
cmake -S "$root" -B "$build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build/release" -j "$jobs"
ctest --test-dir "$build/release" --output-on-failure -j "$jobs"

echo "[flashrnn] ASan+UBSan build + tests"
cmake -S "$root" -B "$build/asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DFLASHRNN_SANITIZE=address,undefined -DFLASHRNN_ENABLE_EXAMPLES=OFF -DFLASHRNN_ENABLE_CUDA=OFF >/dev/null
cmake --build "$build/asan" -j "$jobs"
ctest --test-dir "$build/asan" --output-on-failure -j "$jobs" -LE slow

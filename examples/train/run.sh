#!/usr/bin/env bash
# The main job: builds the FlashRNN Python extension with CMake (no pip needed)
# and trains a small ParaGRU on running parity on the CPU (a few minutes on 2
# cores), or on the GPU when PyTorch sees one. Arguments go to train.py, e.g.
#   examples/train/run.sh --data ../shared/data/tinyshakespeare.txt --steps 500
# Outputs (checkpoint, loss curve PNG, samples, metrics.json) land in
# $FLASHRNN_BUILD_DIR/train-run unless --out is given.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# Debian 12 packages; the Python ones live under /usr/bin/python3.
bash "$root/cmake/install-deps.sh" python3-dev python3-torch python3-numpy python3-tqdm \
  python3-matplotlib pybind11-dev libdlpack-dev
build="${FLASHRNN_BUILD_DIR:-$root/build}/python"
jobs="$(nproc)"
# The interpreter that has torch: Debian's python3 unless PYTHON says otherwise.
py="${PYTHON:-/usr/bin/python3}"
if ! "$py" -c "import torch" 2>/dev/null; then py="$(command -v python3)"; fi

echo "[flashrnn] configuring $build (Python: $py)"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DFLASHRNN_ENABLE_PYTHON=ON -DPython_EXECUTABLE="$py" \
  -DFLASHRNN_ENABLE_TESTS=OFF -DFLASHRNN_ENABLE_EXAMPLES=OFF >/dev/null
echo "[flashrnn] building the Python extension"
cmake --build "$build" -j "$jobs" --target flashrnn_python_ext
out_args=(--out "${FLASHRNN_BUILD_DIR:-$root/build}/train-run")
for a in "$@"; do [ "$a" = "--out" ] && out_args=(); done
echo "[flashrnn] training"
PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" exec "$py" "$root/examples/train/train.py" "${out_args[@]}" "$@"

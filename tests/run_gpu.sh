#!/usr/bin/env bash
# Everything the GPU machine checks, built there from source in one go (it
# starts bare; Ubuntu, Catch2 v3, no oneTBB -> OpenMP runtime, PyTorch 2.11):
# the C++ suites (CPU + CUDA), the Python suite (CPU + CUDA, torch.compile),
# compute-sanitizer on the CUDA suite's small shapes, and a quick benchmark.
# Usage: tests/run_gpu.sh [stage ...]   stages: build test sanitize bench pip train bench_train
# Logs go to $OUT (the device tool's output folder) or /tmp/flashrnn-gpu.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-/tmp/flashrnn-gpu}"; mkdir -p "$out"
build="$root/build/gpu"
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(build test sanitize bench)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
status=0
for stage in "${stages[@]}"; do
  echo "=== $stage ($(date +%T))"
  case "$stage" in
    build)
      cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHRNN_ENABLE_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DFLASHRNN_ENABLE_PYTHON=ON -DPython_EXECUTABLE="$(command -v python3)" \
        -DFLASHRNN_ENABLE_PERF=ON > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
      grep -E "^--   " "$out/configure.log"
      cmake --build "$build" -j "$(nproc)" -- -k 0 > "$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; } ;;
    test)
      ctest --test-dir "$build" -j 8 --output-on-failure -LE "perf|install" > "$out/ctest.log" 2>&1 || status=1
      tail -25 "$out/ctest.log"
      PYTHONPATH="$build/python" python3 -m pytest -q -rs "$root/tests/python/test_cuda.py" \
        "$root/tests/python/test_compile.py" "$root/tests/python/test_nonconvergence.py" > "$out/pytest_gpu.log" 2>&1 || status=1
      tail -15 "$out/pytest_gpu.log" ;;
    sanitize)
      for tool in memcheck racecheck initcheck; do
        compute-sanitizer --tool $tool --error-exitcode 9 "$build/tests/cuda/flashrnn_cuda_tests" \
          "[sanitize],[step],[errors],[segments]" > "$out/sanitize_$tool.log" 2>&1
        rc=$?; echo "compute-sanitizer $tool: exit $rc"; tail -3 "$out/sanitize_$tool.log"
        [ $rc -eq 0 ] || status=1
      done ;;
    bench)
      bench="$(find "$build" -name bench_cuda -o -name flashrnn_bench_cuda | head -1)"
      timeout 120 "$bench" --quick 2>&1 | tee "$out/bench_quick.log" ;;
    pip)
      # `pip install .` without PyPI: only where scikit-build-core is already installed
      # (into a --target folder: a fresh venv would not see this interpreter's packages).
      if ! python3 -c "import scikit_build_core" 2>/dev/null; then
        echo "pip: scikit-build-core is not installed here; pip install . not tried"; continue
      fi
      rm -rf /tmp/flashrnn-pip
      CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" python3 -m pip install --no-build-isolation --no-deps --no-index \
        --target /tmp/flashrnn-pip -C cmake.define.CMAKE_CUDA_ARCHITECTURES=90 "$root" > "$out/pip.log" 2>&1
      echo "pip install: exit $?"; tail -3 "$out/pip.log"
      (cd /tmp && PYTHONPATH=/tmp/flashrnn-pip python3 -c "import flashrnn, torch; m = flashrnn.ParaGRU(8, 16).cuda(); y, _ = m(torch.randn(2, 50, 8, device='cuda')); print('installed', flashrnn.__file__, tuple(y.shape))") || status=1 ;;
    train)
      # ParaGRU vs nn.GRU on tinyshakespeare (needs ../shared/data carried in as .data/): the same
      # residual blocks with a width-4 causal conv, width 512, 300 steps, each at its best LR of the
      # H200 sweep (perf/README.md: 5e-3 for both).
      # FLASHRNN_TRAIN_RUNS replaces the runs: "rnn lr block [train.py args...]" separated by ';'.
      # --time-limit makes a slow run stop and still write its metrics before the timeout.
      data="${FLASHRNN_DATA:-$root/.data/tinyshakespeare.txt}"
      runs="${FLASHRNN_TRAIN_RUNS:-paragru 5e-3 residual --conv 4 --steps 300;torch-gru 5e-3 residual --conv 4 --steps 300}"
      dirs=()
      IFS=';' read -ra run_list <<< "$runs"
      for run in "${run_list[@]}"; do
        read -r rnn lr block more <<< "$run"
        read -ra more <<< "${more:-}"
        tag="$(printf '%s' "${more[*]:-}" | tr -c 'A-Za-z0-9' '_')"
        name="lm-$rnn-$block-$lr${tag:+-$tag}"; dirs+=("$out/$name")
        extra=("${more[@]}"); [ "$block" = residual ] && extra+=(--out-gate)
        PYTHONPATH="$build/python" PYTHONUNBUFFERED=1 timeout 110 python3 "$root/examples/train/train.py" \
          --data "$data" --steps 200 --block "$block" "${extra[@]}" --hidden 512 --rnn "$rnn" --lr "$lr" \
          --val-every 25 --time-limit 1.5 --no-progress --out "$out/$name" > "$out/train_$name.log" 2>&1
        echo "train $rnn ($block, lr $lr ${more[*]:-}): exit $?"; tail -3 "$out/train_$name.log"
      done
      python3 "$root/examples/train/compare.py" "${dirs[@]}" -o "$out/lm_compare.png" || true ;;
    bench_train)
      PYTHONPATH="$build/python" timeout 100 python3 "$root/examples/train/bench_train.py" --iters 5 --json "$out/bench_train.json" \
        2>&1 | tail -12 ;;
  esac
done
exit $status

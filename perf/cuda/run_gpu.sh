#!/usr/bin/env bash
# What the GPU machine runs for issue 3 (binaries prebuilt for sm_90 in
# .gpubin/ by the CI machine and carried over; see perf/README.md).
# Usage: perf/cuda/run_gpu.sh [tests] [sanitize] [quick] [tune] [segments] [bench] [torch]
# (segments: perf/cuda/experiments/segments.cu, CMake target flashrnn_exp_segments, in .gpubin/segments)
set -u
out="${OUT:-/tmp/flashrnn-out}"; mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.gpubin:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
b=.gpubin
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
for step in "$@"; do
  case "$step" in
    tests) timeout 420 $b/flashrnn_cuda_tests --durations yes > "$out/tests.log" 2>&1; echo "cuda tests exit $?"; tail -40 "$out/tests.log" ;;
    sanitize)
      for tool in memcheck racecheck initcheck; do
        timeout 200 compute-sanitizer --tool $tool --error-exitcode 9 \
          $b/flashrnn_cuda_tests "[sanitize],[step],[errors],[segments]" > "$out/san_$tool.log" 2>&1
        echo "compute-sanitizer $tool exit $?"; tail -4 "$out/san_$tool.log"
      done ;;
    quick) for c in 8 16 32; do echo "--chunk $c"; timeout 120 $b/bench_cuda --quick --chunk $c; done 2>&1 | tee "$out/bench_quick.log" ;;
    tune) timeout 300 $b/bench_cuda --tune --json "$out/bench_tune.json" > "$out/bench_tune.log" 2>&1
          echo "tune exit $?"; python3 perf/cuda/tune_table.py "$out/bench_tune.json" ;;
    segments) timeout 150 $b/segments "${SEGMENTS_ARGS:-}" > "$out/segments.txt" 2>&1; echo "segments exit $?"; cat "$out/segments.txt" ;;
    bench) timeout 330 $b/bench_cuda --json "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.log" ;;
    torch) PYTHONUNBUFFERED=1 timeout 190 python3 perf/cuda/bench_torch.py --json "$out/bench_torch.json" --budget-s 150 2>&1 | tee "$out/bench_torch.log" ;;
  esac
done

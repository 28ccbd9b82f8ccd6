#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian 12 packages),
# builds every configuration a CPU-only machine can build, and runs the tests:
#   1. Release, oneTBB: C++ suite at 1 and 2 threads, Python suite (torch 1.13),
#      installed-package example, benchmark smoke slice; the CUDA backend is
#      compiled (nvcc) and its tests skip with a message (no GPU here).
#   2. ASan + UBSan (Debug): the C++ suite.
#   3. Kokkos backend against Debian's Kokkos 3.4 (Serial) + the Kokkos example
#      built against the installed package.
#   4. HIP: the GPU kernel sources compiled with hipcc for gfx90a (no AMD GPU to run).
#   5. libFuzzer: a bounded 60 s run over forward/backward (clang, ASan + UBSan).
#   6. OpenMP CPU runtime under ThreadSanitizer (clang + Archer): the C++ suite
#      at 1 and 2 threads.
# The GPU machine runs tests/run_gpu.sh instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/cmake/install-deps.sh" \
  python3-dev python3-torch python3-numpy python3-pytest pybind11-dev libdlpack-dev \
  libtrilinos-kokkos-dev hipcc librocprim-dev clang-14 libclang-rt-14-dev libomp-14-dev
build="${FLASHRNN_BUILD_DIR:-$root/build}"
jobs="$(nproc)"
stage() { echo; echo "[flashrnn] === $* ($(date +%T))"; }

stage "1/6 Release (oneTBB, CUDA compiled, Python, perf smoke)"
cmake -S "$root" -B "$build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFLASHRNN_ENABLE_PYTHON=ON -DPython_EXECUTABLE=/usr/bin/python3 -DFLASHRNN_ENABLE_PERF=ON >/dev/null
cmake --build "$build/release" -j "$jobs"
ctest --test-dir "$build/release" --output-on-failure -j "$jobs"

stage "2/6 ASan + UBSan (Debug): C++ suite"
cmake -S "$root" -B "$build/asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DFLASHRNN_SANITIZE=address,undefined -DFLASHRNN_ENABLE_EXAMPLES=OFF -DFLASHRNN_ENABLE_CUDA=OFF >/dev/null
cmake --build "$build/asan" -j "$jobs" --target flashrnn_cpu_tests
ctest --test-dir "$build/asan" --output-on-failure -j "$jobs" -L cpu

stage "3/6 Kokkos backend (Debian's Kokkos 3.4, Serial) + installed example"
cmake -S "$root" -B "$build/kokkos" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFLASHRNN_ENABLE_KOKKOS=ON -DFLASHRNN_ENABLE_CUDA=OFF -DFLASHRNN_ENABLE_EXAMPLES=OFF >/dev/null
cmake --build "$build/kokkos" -j "$jobs" --target flashrnn_kokkos_tests
ctest --test-dir "$build/kokkos" --output-on-failure -j "$jobs" -L kokkos
cmake --install "$build/kokkos" --prefix "$build/kokkos-install" >/dev/null
cmake -S "$root/examples/kokkos_app" -B "$build/kokkos-app" -G Ninja \
  -DCMAKE_PREFIX_PATH="$build/kokkos-install" >/dev/null
cmake --build "$build/kokkos-app"
"$build/kokkos-app/kokkos_app"

stage "4/6 HIP (hipcc, gfx90a): compile and link only"
cmake -S "$root" -B "$build/hip" -G Ninja -DFLASHRNN_ENABLE_HIP=ON -DFLASHRNN_ENABLE_CUDA=OFF \
  -DFLASHRNN_ENABLE_TESTS=OFF -DFLASHRNN_ENABLE_EXAMPLES=OFF >/dev/null
cmake --build "$build/hip" -j "$jobs" --target flashrnn_hip_kernels flashrnn_hip_cuda_sources
"$build/hip/backends/hip/hip_kernels_test"

stage "5/6 libFuzzer: bounded run (60 s)"
FLASHRNN_FUZZ_BUILD_DIR="$build/fuzz" bash "$root/tests/fuzz/run_fuzz.sh" 60

stage "6/6 OpenMP runtime under ThreadSanitizer (clang 14 + Archer): C++ suite"
cmake -S "$root" -B "$build/tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DFLASHRNN_CPU_RUNTIME=OPENMP -DFLASHRNN_SANITIZE=thread \
  -DFLASHRNN_ENABLE_EXAMPLES=OFF -DFLASHRNN_ENABLE_CUDA=OFF >/dev/null
cmake --build "$build/tsan" -j "$jobs" --target flashrnn_cpu_tests
OMP_TOOL_LIBRARIES=/usr/lib/llvm-14/lib/libarcher.so \
  TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
  ctest --test-dir "$build/tsan" --output-on-failure -L cpu

#!/usr/bin/env bash
# Bounded libFuzzer run of tests/fuzz/fuzz_forward.cpp (forward + backward):
#   tests/fuzz/run_fuzz.sh [seconds=60] [extra libFuzzer flags...]
# Builds with clang (ASan + UBSan + libFuzzer) in its own build directory
# (FLASHRNN_FUZZ_BUILD_DIR, default build/fuzz), fuzzes for the given time
# starting from the committed seeds plus the corpus kept in the build
# directory, and exits non-zero if the fuzzer found a failing input (saved as
# crash-*/timeout-*/oom-* in the build directory).
set -euo pipefail
secs="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${FLASHRNN_FUZZ_BUILD_DIR:-$root/build/fuzz}"
cxx="${FLASHRNN_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}"
if [ -z "$cxx" ]; then
  echo "[flashrnn] run_fuzz.sh needs clang++ (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$root/tests/fuzz" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build" --target flashrnn_fuzz_forward -j "$(nproc)"
corpus="$build/corpus"
mkdir -p "$corpus"
echo "[flashrnn] fuzzing flashrnn::forward/backward for ${secs}s (corpus $corpus)"
# Fresh inputs go to $corpus; the committed seeds are read only.
"$build/flashrnn_fuzz_forward" -max_total_time="$secs" -timeout=60 -rss_limit_mb=4096 \
  -max_len=4096 -print_final_stats=1 -artifact_prefix="$build/" "$@" "$corpus" "$root/tests/fuzz/seeds"

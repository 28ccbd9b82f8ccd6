// The counters the CPU and Kokkos benchmarks report for a solve, and the
// check that turns a wrong solve into a benchmark error.
#pragma once
#include <benchmark/benchmark.h>

#include <cstdint>

#include "flashrnn/flashrnn.hpp"

namespace flashrnn_bench {

/// Rates per iteration (`lane_steps`, `io_bytes`), Newton iterations, lanes
/// that fell back, and `max_diff` from sequential stepping; an error when the
/// solve did not converge or disagrees with stepping.
inline void report_solve(benchmark::State& state, const flashrnn::SolveReport& rep, double max_diff,
                         flashrnn::index_t lane_steps, double io_bytes) {
  state.SetItemsProcessed(state.iterations() * lane_steps);
  state.SetBytesProcessed(static_cast<int64_t>(double(state.iterations()) * io_bytes));
  state.counters["newton_iters"] = rep.iterations;
  state.counters["fell_back"] = static_cast<double>(rep.lanes_fell_back);
  state.counters["max_diff"] = max_diff;
  if (!rep.converged || rep.lanes_fell_back > 0 || !(max_diff < 1e-3))
    state.SkipWithError("solve did not converge or disagrees with sequential stepping");
}

}  // namespace flashrnn_bench

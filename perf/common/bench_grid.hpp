// The shapes the CPU and Kokkos benchmarks run, their names, and the
// --flashrnn_max_steps flag that trims them: one definition, so that the two
// benchmarks' results line up row by row.
#pragma once
#include <cstdlib>
#include <cstring>
#include <string>

#include "flashrnn/flashrnn.hpp"

namespace flashrnn_bench {

using flashrnn::index_t;

/// Takes --flashrnn_max_steps=N out of argv (before Google Benchmark parses
/// the rest) and returns N; 4194304 when it is absent.
inline index_t take_max_steps_flag(int& argc, char** argv) {
  index_t max_steps = index_t(1) << 22;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const char* flag = "--flashrnn_max_steps=";
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0)
      max_steps = std::atoll(argv[i] + std::strlen(flag));
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  return max_steps;
}

/// f(lanes, T) for every shape of the grid with lanes * T <= max_steps.
template <class F>
void for_each_shape(index_t max_steps, F&& f) {
  // lanes = 1 is below the requested 64..16384 range: it is the one case where
  // lanes < threads, so the solver parallelises along time inside the lane.
  for (index_t lanes : {1, 64, 1024, 16384})
    for (index_t T : {256, 4096, 65536})
      if (lanes * T <= max_steps) f(lanes, T);
}

/// <pass>/<cell>/<mode>/lanes:<B*H>/T:<T>, the part of a benchmark name both
/// benchmarks share; each appends its own last field.
inline std::string shape_name(bool with_backward, const char* cell, flashrnn::Mode mode,
                              index_t lanes, index_t T) {
  return std::string(with_backward ? "fwdbwd/" : "fwd/") + cell + "/" + flashrnn::to_string(mode) +
         "/lanes:" + std::to_string(lanes) + "/T:" + std::to_string(T);
}

}  // namespace flashrnn_bench

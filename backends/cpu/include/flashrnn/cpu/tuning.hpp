// The CPU backend's choice for Mode::automatic, kept apart from the algorithm.
#pragma once
#include <cstddef>

#include "flashrnn/core/options.hpp"

namespace flashrnn {
namespace cpu {
namespace tuning {

/// Newton does several passes of cell evaluations where stepping does one, so
/// on a CPU it wins only when lanes cannot keep the threads busy and there are
/// enough threads to pay for the extra passes (chunked Newton needs about
/// 3 passes: two iterations plus the final sweep). Measured in perf/README.md.
inline Mode choose_mode(index_t lanes, index_t steps, int threads, std::size_t /*storage_bytes*/) {
  constexpr int passes_of_chunked_newton = 4;
  if (lanes >= threads || threads < passes_of_chunked_newton || steps < 4096)
    return Mode::sequential;
  return Mode::newton_chunked;
}

}  // namespace tuning
}  // namespace cpu
}  // namespace flashrnn

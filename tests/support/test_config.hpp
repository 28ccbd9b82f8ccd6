// Settings shared by the CPU test files.
#pragma once
#include <cstdlib>

#include "flashrnn/flashrnn.hpp"

namespace flashrnn_test {

/// Threads for this run of the suite (ctest runs it at 1 and 2).
inline flashrnn::Context context() {
  flashrnn::Context ctx;
  if (const char* s = std::getenv("FLASHRNN_TEST_THREADS")) ctx.num_threads = std::atoi(s);
  return ctx;
}

}  // namespace flashrnn_test

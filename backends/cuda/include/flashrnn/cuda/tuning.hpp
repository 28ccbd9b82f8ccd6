// Launch choices of the CUDA backend, kept apart from the kernels: the mode
// Mode::automatic picks, threads per block, lanes per block and chunk lengths.
// Numbers come from perf/cuda (see perf/README.md, section CUDA).
#pragma once
#include <cstddef>

#include "flashrnn/core/options.hpp"

namespace flashrnn {
namespace cuda {
namespace tuning {

/// Threads per block of the Newton and parallel-adjoint kernels.
constexpr int block_threads = 256;
/// Threads per block of the one-thread-per-lane kernels.
constexpr int sequential_block_threads = 64;
/// Steps each thread prefetches ahead in the sequential kernels.
constexpr int sequential_prefetch = 8;
/// Chunk lengths (steps per thread) compiled for the chunked kernels; a
/// requested chunk_length rounds down to one of these (1 = per-step Newton).
constexpr int chunk_lengths[] = {1, 8, 16, 32};
/// Default chunk length of Mode::newton_chunked and of the parallel adjoint.
constexpr int default_chunk_length = 16;

/// Lanes per block (a power of two <= 32): 32 keeps loads coalesced over
/// units; fewer lanes per block means more chunks per block, i.e. longer
/// segments and a shorter chain between blocks when lanes are few.
inline int lanes_per_block(index_t lanes) {
  int lt = 1;
  while (lt < 32 && lt < lanes) lt *= 2;
  return lt;
}

/// Mode::automatic. Sequential stepping reads u once with one thread per lane;
/// it is the fastest form once lanes fill the GPU enough to hide the latency
/// of one step behind the others, and Newton wins when lanes are few and
/// sequences long. Thresholds from perf/cuda on an H100 (perf/README.md).
inline Mode choose_mode(index_t lanes, index_t steps, std::size_t /*storage_bytes*/) {
  if (steps < 64) return Mode::sequential;
  if (lanes >= 65536) return Mode::sequential;
  return Mode::newton_chunked;
}

/// The backward counterpart: true for the one-thread-per-lane reverse sweep.
inline bool backward_sequential(index_t lanes, index_t steps) {
  if (steps < 64) return true;
  return lanes >= 65536;
}

}  // namespace tuning
}  // namespace cuda
}  // namespace flashrnn

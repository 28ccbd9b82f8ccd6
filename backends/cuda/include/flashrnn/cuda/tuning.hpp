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

/// Mode::automatic. Sequential stepping reads u once with one thread per lane
/// and is latency-bound (~0.1 us a step on an H100): it wins once lanes fill
/// the GPU (B*H = 32768 reaches 89-91% (fp32) / 63-70% (bf16) of copy
/// bandwidth), and chunked Newton wins when lanes are few and sequences long.
/// Measured on an NVIDIA H100 80GB HBM3 (perf/README.md, section CUDA), B = 8,
/// sequential time / chunked-Newton time, ParaGRU and ParaLSTM alike:
///   lanes 2048:  0.4-0.5 (T 512), 1.0 (2048), 1.0-1.6 (8192), 1.7-2.0 (65536)
///   lanes 8192 and 32768: 0.2-0.7 at every T (sequential faster)
/// Storage type does not move the crossover. Lanes below 2048 were not
/// benchmarked; Newton's advantage only grows there.
inline Mode choose_mode(index_t lanes, index_t steps, std::size_t /*storage_bytes*/) {
  if (steps < 256) return Mode::sequential;
  if (lanes <= 1024) return Mode::newton_chunked;
  if (lanes <= 4096 && steps >= 4096) return Mode::newton_chunked;
  return Mode::sequential;
}

/// The backward counterpart: true for the one-thread-per-lane reverse sweep.
/// Not yet measured against the parallel adjoint (perf/cuda times only the
/// latter); the threshold is where the parallel form has < 1 block per lane tile
/// and SM to spare.
inline bool backward_sequential(index_t lanes, index_t steps) {
  if (steps < 64) return true;
  return lanes >= 65536;
}

}  // namespace tuning
}  // namespace cuda
}  // namespace flashrnn

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
/// Most segments the sequential forward kernel cuts a lane's sequence into
/// (one warp each: blocks of 32 x segments threads).
constexpr int max_sequential_segments = 8;
/// Shortest segment worth its correction pass (which costs the steps until
/// the guessed and the true trajectory merge, tens for contracting cells).
constexpr index_t min_segment_steps = 256;

/// Segments of the sequential forward kernel (sequential_forward.cuh): enough
/// that lanes x segments threads keep about 16 warps on each SM of an H100/H200.
inline int sequential_segments(index_t lanes, index_t steps) {
  int c = 1;
  while (c < max_sequential_segments && lanes * c < 65536 && steps >= 2 * c * min_segment_steps) c *= 2;
  return c;
}

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
/// and is latency-bound (~0.14 us a step): it wins once lanes fill the GPU,
/// and chunked Newton (u read once too, but 4-7x the arithmetic) wins when
/// lanes are few and sequences long. Measured with the default IEEE fp32
/// kernels on an NVIDIA H200 (`bench_cuda --tune`, B = 8; perf/README.md,
/// section CUDA; perf/cuda/results/bench_tune_h200.*): sequential time /
/// chunked-Newton time, bf16 and fp32 alike (storage does not move it):
///   T 256, 512:            0.2-0.8 at every lane count (sequential faster)
///   T 2048,  K = 1 (ParaGRU):  1.1-1.5 for lanes <= 4096, <= 0.88 above
///   T 2048,  K = 2 (ParaLSTM): 1.0-1.2 for lanes <= 1024, <= 0.95 above
///   T >= 8192, K = 1: 1.6-1.9 for lanes <= 4096, 0.95-0.99 at 8192, <= 0.5 above
///   T >= 8192, K = 2: 1.1-1.5 for lanes <= 4096, 0.73 at 8192, <= 0.37 above
/// K = 2's Jacobians make its Newton passes dearer, so its crossover sits at
/// fewer lanes for mid lengths. Larger K (dense per-lane maps) follows K = 2.
inline Mode choose_mode(index_t lanes, index_t steps, int state_dim) {
  if (steps < 1024 || lanes > 4096) return Mode::sequential;
  if (steps < 4096 && state_dim > 1 && lanes > 1024) return Mode::sequential;
  return Mode::newton_chunked;
}

/// The backward counterpart: true for the one-thread-per-lane reverse sweep,
/// false for the parallel adjoint (chunked reverse scan). Measured on an NVIDIA
/// H200 (perf/cuda/experiments/adjoint_choice.cu, B = 8, T 256 .. 8192, ParaGRU
/// fp32/bf16 and ParaLSTM fp32; perf/README.md): sequential time / parallel time
/// is 1.6-32 up to 16384 lanes, 1.0-1.5 at 32768 and 0.65-0.84 at 65536 lanes.
inline bool backward_sequential(index_t lanes, index_t steps) {
  if (steps < 64) return true;
  return lanes >= 65536;
}

}  // namespace tuning
}  // namespace cuda
}  // namespace flashrnn

// The correction rounds shared by the segmented sequential kernels (forward:
// sequential_forward.cuh, backward: sequential_backward.cuh). Each segment
// has stepped its part of the sequence from a guessed start; the rounds hand
// every segment its neighbour's end (the predecessor's going forward, the
// successor's going backward) until no start changes.
#pragma once
#include "kernels.cuh"

namespace flashrnn {
namespace cuda {
namespace detail {

/// Runs the rounds for a block of blockDim.x lanes' threads by C segments
/// (c: this thread's; `ends`: C x blockDim.x x N values of shared memory).
/// `end` is the segment's end, `start` the start it was stepped from. A
/// segment whose neighbour's end differs bitwise from `start` needs a
/// resweep: step again from `fresh` beside the guessed `old` (both ending as
/// the values handed on), true when the two merged, which leaves `end` as it
/// was. Otherwise `end` becomes `fresh` and is published. resweep(fresh,
/// old, needs) is called where needs, or with EveryThread by every thread
/// (it must return true where !needs): a kernel whose warps copy their inputs
/// together (input_stage.cuh) keeps the whole warp in step. At most C - 1 rounds (after round r the first r + 1
/// starts from the exact side are exact); fewer when a round changes nothing.
/// Every thread of the block must call it (it synchronises the block).
template <int N, bool FromPrevious, bool EveryThread = false, class R, class Resweep>
__device__ __forceinline__ void correction_rounds(R* ends, int c, int C, bool active, R (&end)[N],
                                                  R (&start)[N], Resweep&& resweep) {
  const int x = threadIdx.x, stride = static_cast<int>(blockDim.x) * N;
  const bool has_neighbour = FromPrevious ? c > 0 : c < C - 1;
  const int neighbour = FromPrevious ? c - 1 : c + 1;
#pragma unroll
  for (int k = 0; k < N; ++k) ends[c * stride + x * N + k] = end[k];
  __syncthreads();
  for (int round = 1; round < C; ++round) {
    R in[N];
#pragma unroll
    for (int k = 0; k < N; ++k) in[k] = has_neighbour ? ends[neighbour * stride + x * N + k] : start[k];
    __syncthreads();
    bool changed = false;
    const bool needs = active && !same_bits<N>(in, start);
    if (EveryThread || needs) {
      R fresh[N], old[N];
#pragma unroll
      for (int k = 0; k < N; ++k) {
        fresh[k] = in[k];
        old[k] = start[k];
        if (needs) start[k] = in[k];
      }
      if (!resweep(fresh, old, needs)) {
#pragma unroll
        for (int k = 0; k < N; ++k) ends[c * stride + x * N + k] = end[k] = fresh[k];
        changed = true;
      }
    }
    if (!__syncthreads_or(changed)) break;
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

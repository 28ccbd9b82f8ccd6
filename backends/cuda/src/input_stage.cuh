// Shared-memory staging of the sequential forward's inputs (cp.async, sm_80+).
//
// The register prefetch (step_range in sequential_forward.cuh) holds D steps
// of every input in registers and issues one load per input and step, each
// with its own 64-bit address: in a bf16 ParaGRU step that is 3 loads and ~9
// address instructions of ~54, and ~24 of its ~126 registers (ncu on an H200,
// perf/README.md). Staged, the 32 threads of a warp (one segment of 32 lanes,
// or 64 with lane pairs) copy the inputs of D steps together, 16 bytes a copy,
// into shared memory: for ParaGRU in bf16 that is 3 copies a thread for 8
// steps instead of 24 loads. A step then reads its inputs at offsets fixed at
// compile time, and NS blocks of D steps are in flight without registers
// (the kernel needs ~64 of them).
//
// A thread copies inputs that other threads of its warp step, so the warp
// moves through the blocks together: a thread with nothing left to step (an
// idle lane past the end, a merged correction) keeps copying until the whole
// warp is done (step_range_staged).
//
// Tried and rejected (H200, perf/README.md): staging the states too (written
// to shared memory by the steps, copied out 16 bytes at a time after each
// block) and blocks of 16 steps; both were slower.
#pragma once
#include <cstdint>

#include "kernels.cuh"

// HIP has no cp.async: its builds compile the register prefetch only.
#if defined(__HIPCC__)
#define FLASHRNN_CUDA_STAGING 0
#else
#define FLASHRNN_CUDA_STAGING 1
#include <cuda_pipeline_primitives.h>

namespace flashrnn {
namespace cuda {
namespace detail {

/// Warp-cooperative input staging for lanes of storage type S, G inputs a
/// step, V lanes a thread: NS stages of D steps. Shared memory of one warp:
/// NS stages of G x D rows (input-major: row g * D + i) of 32 * V elements.
template <class S, int D, int G, int V, int NS>
struct InputStage {
  static constexpr int E = 16 / static_cast<int>(sizeof(S));  // elements (lanes) of one copy
  static constexpr int W = 32 * V;                             // elements of a row: the warp's lanes
  static constexpr int CH = W / E;                             // copies per row
  static constexpr int R = 32 / CH;                            // rows one pass of the warp copies
  static constexpr int M = D * G / R;                          // copies per thread and stage
  static constexpr int STAGE = D * G * W;                      // elements per stage
  static constexpr int stages = NS, steps = D, lanes_per_thread = V;
  static_assert(E >= 1 && W % E == 0 && 32 % CH == 0 && D % R == 0, "16-byte copies tile a stage");
  static_assert(NS >= 2, "at least double buffering");

  /// Shared-memory bytes per warp.
  static constexpr std::size_t warp_bytes() { return static_cast<std::size_t>(NS) * STAGE * sizeof(S); }

  S* smem;            // this warp's NS stages
  const S* read;      // smem + this thread's column (x * V)
  const S* base;      // source of this thread's copies at step 0 (nullptr: its piece is past the lanes)
  const S* next;      // the next block's source
  index_t step_stride;
  index_t offset[M];  // copy m's source offset from `next`: i_m * stride_t + g_m * stride_c
  int dst;            // this thread's first copy within a stage
  int row0;           // its step within a block (copy m: row0 + (m * R) % D)

  /// `lane0`: the warp's first lane; `x`: this thread's index in the warp.
  __device__ InputStage(S* warp_smem, const View<const S>& u, index_t lane0, int x, index_t lanes, index_t H)
      : smem(warp_smem), read(warp_smem + x * V), base(nullptr), next(nullptr), step_stride(u.stride_t) {
    const int chunk = x % CH;
    row0 = x / CH;
    dst = row0 * W + chunk * E;
    const index_t first = lane0 + chunk * E;  // the piece's first lane (the piece lies in one row: H % E == 0)
    if (first < lanes) base = u.data + (first / H) * u.stride_b + (first % H) * u.stride_h + row0 * u.stride_t;
#pragma unroll
    for (int m = 0; m < M; ++m)
      offset[m] = static_cast<index_t>((m * R) % D) * u.stride_t + static_cast<index_t>((m * R) / D) * u.stride_c;
  }

  /// Points the copies at step t.
  __device__ void seek(index_t t) { next = base ? base + t * step_stride : nullptr; }

  /// Starts the copies of the next block (its first `count` steps) into
  /// `stage` and moves on by D steps. One commit group per call.
  template <bool Partial>
  __device__ void issue(int stage, int count) {
    if (next) {
      S* to = smem + stage * STAGE + dst;
#pragma unroll
      for (int m = 0; m < M; ++m)
        if (!Partial || row0 + (m * R) % D < count) __pipeline_memcpy_async(to + m * R * W, next + offset[m], 16);
      next += D * step_stride;
    }
    __pipeline_commit();
  }

  /// Input g of the thread's lanes at step i of `stage`.
  __device__ const S* at(int stage, int i, int g) const { return read + stage * STAGE + (g * D + i) * W; }
};

/// Whether a view's rows can be copied 16 bytes at a time: lanes contiguous
/// over units, data and every stride aligned to 16 bytes, H a multiple of the
/// lanes of one copy.
template <class S>
bool stage_fits(const View<S>& v) {
  constexpr index_t E = 16 / sizeof(S);
  const bool strides = (v.steps == 1 || v.stride_t % E == 0) && (v.batch == 1 || v.stride_b % E == 0) &&
                       (v.channels == 1 || v.stride_c % E == 0);
  return v.stride_h == 1 && v.units % E == 0 && strides && reinterpret_cast<std::uintptr_t>(v.data) % 16 == 0;
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn
#endif  // FLASHRNN_CUDA_STAGING

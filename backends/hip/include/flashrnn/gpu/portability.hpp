// One GPU kernel source for CUDA (nvcc) and HIP (hipcc): runtime API names,
// the warp (wavefront) size as a compile-time property, warp shuffles, and
// the vendor block primitives (CUB on CUDA, rocPRIM on HIP).
//
// Kernels written against this header use
//   gpu::warp_size / gpu::lane_mask_t          32 / uint32 on NVIDIA; 64 / uint64 on CDNA
//   gpu::shfl_up(v, d), shfl_down, shfl, ballot  any trivially copyable v (Affine maps too)
//   gpu::warp_inclusive_scan(v, op)            Kogge-Stone over the warp, op(later, earlier)
//   gpu::BlockScan<T, Threads>                 cub::BlockScan / rocprim::block_scan
//   FLASHRNN_GPU_RT(Name)                      cudaName / hipName (Malloc, MemcpyAsync, ...)
//   FLASHRNN_GPU_CHECK(expr)                   throws flashrnn::BackendError with the API's message
//
// Warp size. On HIP it depends on the target: 64 on gfx9 (CDNA: gfx90a,
// gfx942), 32 on RDNA in wave32 mode. The device pass knows it
// (__AMDGCN_WAVEFRONT_SIZE); the host pass, which sizes launches, does not,
// so the build passes -DFLASHRNN_HIP_WARP_SIZE=<64|32> for its one target
// family and the device pass checks that the two agree.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "flashrnn/core/config.hpp"
#include "flashrnn/core/error.hpp"

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#define FLASHRNN_GPU_HIP 1
#include <hip/hip_runtime.h>
#include <rocprim/block/block_scan.hpp>
#elif defined(__CUDACC__)
#define FLASHRNN_GPU_CUDA 1
#include <cuda_runtime.h>
#include <cub/block/block_scan.cuh>
#else
#error "flashrnn/gpu/portability.hpp needs nvcc (CUDA) or hipcc (HIP)"
#endif

#if defined(FLASHRNN_GPU_HIP)
#define FLASHRNN_GPU_RT(name) hip##name
#ifndef FLASHRNN_HIP_WARP_SIZE
#define FLASHRNN_HIP_WARP_SIZE 64  // gfx90a (MI200), gfx942 (MI300)
#endif
#if defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
static_assert(__AMDGCN_WAVEFRONT_SIZE == FLASHRNN_HIP_WARP_SIZE,
              "FLASHRNN_HIP_WARP_SIZE does not match the target's wavefront size");
#endif
#else
#define FLASHRNN_GPU_RT(name) cuda##name
#endif

namespace flashrnn {
namespace gpu {

#if defined(FLASHRNN_GPU_HIP)
using stream_t = hipStream_t;
using event_t = hipEvent_t;
using error_t = hipError_t;
constexpr error_t success = hipSuccess;
constexpr int warp_size = FLASHRNN_HIP_WARP_SIZE;
using lane_mask_t = std::conditional_t<warp_size == 64, std::uint64_t, std::uint32_t>;
inline const char* error_string(error_t e) { return hipGetErrorString(e); }
constexpr const char* runtime_name = "HIP";
#else
using stream_t = cudaStream_t;
using event_t = cudaEvent_t;
using error_t = cudaError_t;
constexpr error_t success = cudaSuccess;
constexpr int warp_size = 32;
using lane_mask_t = std::uint32_t;
inline const char* error_string(error_t e) { return cudaGetErrorString(e); }
constexpr const char* runtime_name = "CUDA";
#endif
constexpr lane_mask_t full_mask = ~lane_mask_t(0);
static_assert(warp_size == 32 || warp_size == 64, "warps are 32 or 64 lanes");

/// Throws BackendError naming the call and the runtime's message.
inline void check(error_t e, const char* what, const char* file, int line) {
  if (e != success)
    throw BackendError(detail::concat(runtime_name, " error '", error_string(e), "' in ", what, " (", file, ":",
                                      line, ")"));
}
#define FLASHRNN_GPU_CHECK(expr) ::flashrnn::gpu::check((expr), #expr, __FILE__, __LINE__)

/// This thread's lane within its warp.
__device__ __forceinline__ int lane_id() {
#if defined(FLASHRNN_GPU_HIP)
  return static_cast<int>(__lane_id());
#else
  return static_cast<int>(threadIdx.x & (warp_size - 1));  // 1-D blocks
#endif
}

// Shuffles of 32-bit words; HIP (ROCm 5) has no *_sync forms and needs none
// (a wavefront executes in lockstep), CUDA needs the mask since Volta.
__device__ __forceinline__ int shfl_word(int v, int src) {
#if defined(FLASHRNN_GPU_HIP)
  return __shfl(v, src, warp_size);
#else
  return __shfl_sync(full_mask, v, src, warp_size);
#endif
}
__device__ __forceinline__ int shfl_up_word(int v, unsigned d) {
#if defined(FLASHRNN_GPU_HIP)
  return __shfl_up(v, d, warp_size);
#else
  return __shfl_up_sync(full_mask, v, d, warp_size);
#endif
}
__device__ __forceinline__ int shfl_down_word(int v, unsigned d) {
#if defined(FLASHRNN_GPU_HIP)
  return __shfl_down(v, d, warp_size);
#else
  return __shfl_down_sync(full_mask, v, d, warp_size);
#endif
}
__device__ __forceinline__ lane_mask_t ballot(bool pred) {
#if defined(FLASHRNN_GPU_HIP)
  return static_cast<lane_mask_t>(__ballot(pred));
#else
  return __ballot_sync(full_mask, pred);
#endif
}

namespace detail {
/// Applies a word shuffle to every 32-bit word of a trivially copyable value.
template <class T, class Shfl>
__device__ __forceinline__ T shuffle_words(const T& v, Shfl&& shfl) {
  static_assert(std::is_trivially_copyable<T>::value, "shuffled values must be trivially copyable");
  constexpr int words = (sizeof(T) + sizeof(int) - 1) / sizeof(int);
  int in[words] = {}, out[words];
  memcpy(in, &v, sizeof(T));
  FLASHRNN_UNROLL
  for (int i = 0; i < words; ++i) out[i] = shfl(in[i]);
  T r;
  memcpy(&r, out, sizeof(T));
  return r;
}
}  // namespace detail

template <class T>
__device__ __forceinline__ T shfl(const T& v, int src) {
  return detail::shuffle_words(v, [src](int w) { return shfl_word(w, src); });
}
template <class T>
__device__ __forceinline__ T shfl_up(const T& v, unsigned d) {
  return detail::shuffle_words(v, [d](int w) { return shfl_up_word(w, d); });
}
template <class T>
__device__ __forceinline__ T shfl_down(const T& v, unsigned d) {
  return detail::shuffle_words(v, [d](int w) { return shfl_down_word(w, d); });
}

/// Inclusive scan over the warp in lane order: lane i gets
/// v_i ∘ v_{i-1} ∘ ... ∘ v_0 with op(later, earlier) (non-commutative ops such
/// as affine composition are fine). log2(warp_size) steps: 5 on NVIDIA, 6 on CDNA.
template <class T, class Op>
__device__ __forceinline__ T warp_inclusive_scan(T v, Op op) {
  const int lane = lane_id();
  FLASHRNN_UNROLL
  for (int d = 1; d < warp_size; d *= 2) {
    const T earlier = shfl_up(v, static_cast<unsigned>(d));
    if (lane >= d) v = op(v, earlier);
  }
  return v;
}

/// The vendor block scan (CUB / rocPRIM) for plain arithmetic types, behind
/// one interface: BlockScan<T, Threads>::inclusive_sum(v, storage).
template <class T, int Threads>
struct BlockScan {
#if defined(FLASHRNN_GPU_HIP)
  using impl = rocprim::block_scan<T, Threads>;
  using storage_type = typename impl::storage_type;
  __device__ static T inclusive_sum(T v, storage_type& storage) {
    T out;
    impl().inclusive_scan(v, out, storage, rocprim::plus<T>());
    return out;
  }
#else
  using impl = cub::BlockScan<T, Threads>;
  using storage_type = typename impl::TempStorage;
  __device__ static T inclusive_sum(T v, storage_type& storage) {
    T out;
    impl(storage).InclusiveSum(v, out);
    return out;
  }
#endif
};

}  // namespace gpu
}  // namespace flashrnn

// Portability macros shared by every backend: host/device qualifiers and the index type.
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
// Same meaning as KOKKOS_FUNCTION: callable from host and device code.
#define FLASHRNN_HOST_DEVICE __host__ __device__
#define FLASHRNN_DEVICE_COMPILE 1
#else
#define FLASHRNN_HOST_DEVICE
#endif

#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__) || defined(__CUDACC__) || defined(__HIPCC__)
#define FLASHRNN_UNROLL _Pragma("unroll")
#elif defined(__clang__)
#define FLASHRNN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FLASHRNN_UNROLL _Pragma("GCC unroll 16")
#else
#define FLASHRNN_UNROLL
#endif

namespace flashrnn {
/// Signed 64-bit index: B*T*H*K products overflow 32 bits on real shapes.
using index_t = std::int64_t;
}  // namespace flashrnn

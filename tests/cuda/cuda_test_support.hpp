// Device buffers and storage-type conversions shared by the CUDA test files.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "catch.hpp"

namespace flashrnn_test {

/// cudaMalloc'd array of n elements, freed on scope exit.
template <class S>
struct DeviceBuffer {
  S* ptr = nullptr;
  std::size_t n = 0;
  explicit DeviceBuffer(std::size_t count) : n(count) {
    REQUIRE(cudaMalloc(&ptr, std::max<std::size_t>(1, n) * sizeof(S)) == cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<S>& h) {
    REQUIRE(h.size() == n);
    REQUIRE(cudaMemcpy(ptr, h.data(), n * sizeof(S), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<S> download() const {
    std::vector<S> h(n);
    REQUIRE(cudaMemcpy(h.data(), ptr, n * sizeof(S), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
};

/// Host conversions to and from a storage type (round to nearest).
template <class S>
S to_s(double x) {
  return static_cast<S>(x);
}
template <>
inline __nv_bfloat16 to_s<__nv_bfloat16>(double x) {
  return __float2bfloat16_rn(static_cast<float>(x));
}
template <>
inline __half to_s<__half>(double x) {
  return __float2half_rn(static_cast<float>(x));
}
inline double to_d(float x) { return x; }
inline double to_d(double x) { return x; }
inline double to_d(__nv_bfloat16 x) { return __bfloat162float(x); }
inline double to_d(__half x) { return __half2float(x); }

/// Device memory still free, in bytes (0 if CUDA cannot say).
inline std::size_t free_device_bytes() {
  std::size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
  return free_b;
}

}  // namespace flashrnn_test

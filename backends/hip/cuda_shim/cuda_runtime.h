// CUDA runtime names on HIP, for compiling backends/cuda's sources with hipcc
// (FLASHRNN_ENABLE_HIP puts this folder first on the include path of the HIP
// build only). Covers the calls those sources make; new calls need a line here.
#pragma once
#include <hip/hip_runtime.h>

#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaStream_t hipStream_t
#define cudaGetLastError hipGetLastError
#define cudaGetErrorName hipGetErrorName
#define cudaGetErrorString hipGetErrorString
#define cudaGetDevice hipGetDevice
#define cudaSetDevice hipSetDevice
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaMalloc hipMalloc
#define cudaMallocAsync hipMallocAsync
#define cudaFreeAsync hipFreeAsync
#define cudaFree hipFree
#define cudaMemsetAsync hipMemsetAsync
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaStreamSynchronize hipStreamSynchronize

// cudaPointerAttributes::type over ROCm 5's hipPointerAttribute_t (memoryType,
// isManaged; unregistered host memory is an error there, a type in CUDA).
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3
};
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};
inline hipError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* ptr) {
  hipPointerAttribute_t h{};
  const hipError_t e = hipPointerGetAttributes(&h, ptr);
  if (e == hipErrorInvalidValue) {
    (void)hipGetLastError();
    *a = cudaPointerAttributes{cudaMemoryTypeUnregistered, -1, nullptr, const_cast<void*>(ptr)};
    return hipSuccess;
  }
  if (e != hipSuccess) return e;
  a->type = h.isManaged ? cudaMemoryTypeManaged
                        : (h.memoryType == hipMemoryTypeHost ? cudaMemoryTypeHost : cudaMemoryTypeDevice);
  a->device = h.device;
  a->devicePointer = h.devicePointer;
  a->hostPointer = h.hostPointer;
  return hipSuccess;
}

// Warp intrinsics: ROCm 5 has no *_sync forms (a wavefront runs in lockstep).
#define __shfl_xor_sync(mask, v, lane) __shfl_xor((v), (lane))
#define __shfl_sync(mask, v, lane) __shfl((v), (lane))
#define __shfl_up_sync(mask, v, d) __shfl_up((v), (d))
#define __shfl_down_sync(mask, v, d) __shfl_down((v), (d))
#define __syncwarp(...)
#define __any_sync(mask, p) __any(p)
__device__ inline void __nanosleep(unsigned ns) {
  if (ns > 1024)
    __builtin_amdgcn_s_sleep(15);  // s_sleep takes a constant of ~64 cycles
  else
    __builtin_amdgcn_s_sleep(1);
}

// Helpers shared by the standalone CUDA experiments in this folder (each
// file's header says how it is built): error check, a deterministic device
// fill, a median-of-7 timer and the copy bandwidth.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace xb {
#define CK(x)                                                     \
  do {                                                            \
    cudaError_t e_ = (x);                                         \
    if (e_ != cudaSuccess) {                                      \
      std::printf("%s: %s\n", #x, cudaGetErrorString(e_));        \
      std::exit(1);                                               \
    }                                                             \
  } while (0)

template <class S>
__global__ void fill_kernel(S* x, size_t n, float scale, unsigned seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    x[i] = S(scale * (float(h & 0xffffff) / 8388608.0f - 1.0f));
  }
}

/// Keeps the default stream busy for `ns` nanoseconds (one thread spinning
/// on the global timer).
__global__ void hold_kernel(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); while (t - t0 < ns);
}

/// Median of 7 timed calls of f, after 2 warm-up calls. Each call is timed by
/// events around it on a stream held busy for 100 us first (as NVBench's
/// blocking kernel does), so the start event is not recorded before f's work
/// is queued: the time is the GPU's, not the host's enqueueing (up to
/// 100 us of it). `idle` times from an idle GPU instead, host latency included.
template <class F>
float median_ms(F f, bool idle = false) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 2; ++i) f();
  std::vector<float> ts;
  for (int i = 0; i < 7; ++i) {
    if (!idle) hold_kernel<<<1, 1>>>(100000);
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    ts.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ts.begin(), ts.end());
  return ts[3];
}

/// Device-to-device copy bandwidth in GB/s (reads + writes), 1 GiB each way.
inline double copy_gbs() {
  const size_t n = size_t(1) << 30;
  void *a, *b;
  CK(cudaMalloc(&a, n));
  CK(cudaMalloc(&b, n));
  const float ms = median_ms([&] { cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * n / (ms * 1e6);
}

}  // namespace xb

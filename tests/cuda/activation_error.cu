// The 16-bit kernels' sigmoid and tanh against fp64 over all 2^32 floats:
// they are the activations those kernels compute from approximate hardware
// ex2/rcp, so their bounds are measured, not assumed.
#define FLASHRNN_CUDA_16BIT_ACTIVATIONS 1
#include <cuda_runtime.h>

#include "activation_error.hpp"
#include "flashrnn/core/math.hpp"

namespace flashrnn_test {
namespace {

struct Sigmoid {
  static constexpr double lo = 0.0;
  __device__ static float f(float x) { return flashrnn::math::sigmoid(x); }
  __device__ static double exact(double x) { return 1.0 / (1.0 + exp(-x)); }
};
struct Tanh {
  static constexpr double lo = -1.0;
  __device__ static float f(float x) { return flashrnn::math::tanh(x); }
  __device__ static double exact(double x) { return tanh(x); }
};

template <class A>
__global__ void activation_error_kernel(unsigned* max_rel_bits, unsigned* worst_bits, unsigned long long* wrong) {
  const unsigned long long n = 1ull << 32, stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long i = blockIdx.x * static_cast<unsigned long long>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    const unsigned bits = static_cast<unsigned>(i);
    const float x = __uint_as_float(bits);
    const float s = A::f(x);
    if (x != x) {
      if (s == s) atomicAdd(wrong, 1ull);  // NaN must stay NaN
      continue;
    }
    if (!(s >= A::lo && s <= 1.0f)) {
      atomicAdd(wrong, 1ull);
      continue;
    }
    const double exact = A::exact(static_cast<double>(x));
    if (fabs(exact) >= 0x1p-126) {
      const float rel = static_cast<float>(fabs(static_cast<double>(s) - exact) / fabs(exact));
      const unsigned rb = __float_as_uint(rel);  // non-negative floats order as their bits
      if (atomicMax(max_rel_bits, rb) < rb) *worst_bits = bits;  // racy, but some x with a large error
    } else if (fabsf(s) > 0x1p-125f) {
      atomicAdd(wrong, 1ull);  // below the normal range the result must stay tiny
    }
  }
}

template <class A>
ActivationError measure() {
  unsigned* d = nullptr;
  unsigned long long* w = nullptr;
  ActivationError e;
  if (cudaMalloc(&d, 2 * sizeof(unsigned)) != cudaSuccess || cudaMalloc(&w, sizeof(unsigned long long)) != cudaSuccess) {
    e.wrong = ~0ull;
    return e;
  }
  cudaMemset(d, 0, 2 * sizeof(unsigned));
  cudaMemset(w, 0, sizeof(unsigned long long));
  activation_error_kernel<A><<<4096, 256>>>(d, d + 1, w);
  unsigned h[2] = {0, 0};
  if (cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost) != cudaSuccess ||
      cudaMemcpy(&e.wrong, w, sizeof(e.wrong), cudaMemcpyDeviceToHost) != cudaSuccess)
    e.wrong = ~0ull;
  cudaFree(d);
  cudaFree(w);
  float rel, x;
  static_assert(sizeof(float) == sizeof(unsigned), "32-bit float");
  __builtin_memcpy(&rel, &h[0], sizeof(rel));
  __builtin_memcpy(&x, &h[1], sizeof(x));
  e.max_rel = rel;
  e.worst_x = x;
  return e;
}

}  // namespace

ActivationError measure_sigmoid_16bit() { return measure<Sigmoid>(); }
ActivationError measure_tanh_16bit() { return measure<Tanh>(); }

}  // namespace flashrnn_test

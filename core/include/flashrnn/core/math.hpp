// Scalar activation functions usable on host and device, overloaded for
// float and double so that cells are written once for both precisions.
#pragma once
#include <cmath>

#include "config.hpp"

namespace flashrnn {
namespace math {

FLASHRNN_HOST_DEVICE inline float exp(float x) { return ::expf(x); }
FLASHRNN_HOST_DEVICE inline double exp(double x) { return ::exp(x); }
FLASHRNN_HOST_DEVICE inline float tanh(float x) { return ::tanhf(x); }
FLASHRNN_HOST_DEVICE inline double tanh(double x) { return ::tanh(x); }
FLASHRNN_HOST_DEVICE inline float abs(float x) { return ::fabsf(x); }
FLASHRNN_HOST_DEVICE inline double abs(double x) { return ::fabs(x); }

// Device code for 16-bit storage (bf16, fp16: the CUDA build defines
// FLASHRNN_CUDA_16BIT_ACTIVATIONS in those instantiations) computes sigmoid
// from the hardware ex2 and rcp alone: 4 instructions instead of ~15, where
// the 16-bit kernels are bound by instructions, not bytes (ncu on an H200,
// perf/README.md). Its relative error over every float with sigmoid >=
// 2^-126 is at most 3.9e-6 (measured on an H200 by tests/cuda; the largest
// errors are near x = -87, from rounding x log2 e), 1/60 of fp16's and
// 1/500 of bf16's smallest relative half-ulp, so 16-bit results stay fp64
// stepping rounded to storage except in rare ties (tested). The inline
// namespace gives the two variants different names, so translation units
// built with and without it never mix them.
#if defined(FLASHRNN_CUDA_16BIT_ACTIVATIONS)
inline namespace activations_16bit {
#else
inline namespace activations_ieee {
#endif

// 1 / (1 + e^-x): saturates to exactly 0 or 1 for |x| ~ 1e4 without NaN
// (e^-x overflows to inf and 1/inf = 0).
FLASHRNN_HOST_DEVICE inline float sigmoid(float x) {
#if defined(__CUDA_ARCH__) && defined(FLASHRNN_CUDA_16BIT_ACTIVATIONS)
  // e^-x = 2^(-x log2 e); inf -> 1/inf = 0 and NaN -> NaN by the hardware.
  float e, r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(x * -1.4426950408889634f));
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + e));
  return r;
#elif defined(__CUDA_ARCH__)
  // IEEE division (div.rn.f32) is a long dependent sequence with a slow-path
  // check, and it dominated the CUDA kernels' step latency: sequential ParaGRU
  // ran 1.7x slower than with approximate division (H100, perf/README.md).
  // The hardware reciprocal (rel. error <= 2^-23) refined by one Newton step
  // is correctly rounded but in rare ties (<= 1 ulp), with no branch.
  const float d = 1.0f + ::expf(-x);  // >= 1, or +inf
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
  r = ::fmaf(r, ::fmaf(-d, r, 1.0f), r);
  return d <= 3.4e38f ? r : (d == d ? 0.0f : d);  // 1/inf = 0; NaN stays NaN
#else
  return 1.0f / (1.0f + ::expf(-x));
#endif
}

}  // inline namespace
FLASHRNN_HOST_DEVICE inline double sigmoid(double x) { return 1.0 / (1.0 + ::exp(-x)); }

template <class T>
FLASHRNN_HOST_DEVICE inline bool is_finite(T x) {
  return x - x == x - x;  // false for inf and NaN; works in device code without <cmath>
}

}  // namespace math
}  // namespace flashrnn

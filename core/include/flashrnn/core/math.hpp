// Scalar activation functions usable on host and device, overloaded for
// float and double so that cells are written once for both precisions.
#pragma once
#include <cmath>

#include "config.hpp"

namespace flashrnn {
namespace math {

FLASHRNN_HOST_DEVICE inline float exp(float x) { return ::expf(x); }
FLASHRNN_HOST_DEVICE inline double exp(double x) { return ::exp(x); }
FLASHRNN_HOST_DEVICE inline double tanh(double x) { return ::tanh(x); }
FLASHRNN_HOST_DEVICE inline float abs(float x) { return ::fabsf(x); }
FLASHRNN_HOST_DEVICE inline double abs(double x) { return ::fabs(x); }

// Device code for 16-bit storage (bf16, fp16: the CUDA build defines
// FLASHRNN_CUDA_16BIT_ACTIVATIONS in those instantiations) computes sigmoid
// and tanh from the hardware ex2 and rcp: sigmoid in 4 instructions instead
// of ~15, tanh in 12 instead of 15, where the 16-bit kernels are bound by
// instructions, not bytes (ncu on an H200, perf/README.md). Their relative
// errors over every float are measured on the device by tests/cuda (sigmoid
// at most 3.9e-6 where sigmoid >= 2^-126, the largest near x = -87 from
// rounding x log2 e): far below fp16's smallest relative half-ulp (2.4e-4)
// and bf16's (2e-3), so 16-bit results stay fp64 stepping rounded to storage
// except in rare ties (tested). The inline namespace gives the two variants
// different names, so translation units built with and without it never mix
// them.
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

// tanh for 16-bit storage: 1 - 2 / (1 + e^2x) from the hardware ex2/rcp for
// |x| >= 0.2 (absolute error ~3e-7 there), and below, where the first form
// would lose the small result to cancellation, x + c3 x^3 + c5 x^5 with the
// minimax coefficients of the relative error on [0, 0.2] (1.2e-7; 1.8e-7
// evaluated in float): one FMA fewer than the degree-7 Taylor polynomial it
// replaced (9e-8). The largest relative error over every float, measured on
// an H200 by tests/cuda with the degree-7 polynomial, is the first form's
// 9.5e-7 (at x = -0.215); the degree-5 one stays below it (the test's bound
// is 1e-5). CUDA's tanhf is the same two forms with a wider polynomial
// range, a clamp and a copysign (15 instructions); tanh.approx (error
// ~2^-11) was rejected for accuracy (perf/README.md; it serves only the
// burn-in's rough steps, backends/cuda/src/rough_float.cuh). Saturates to exactly
// +-1 (e^2x overflows to inf or flushes to 0); NaN stays NaN.
FLASHRNN_HOST_DEVICE inline float tanh(float x) {
#if defined(__CUDA_ARCH__) && defined(FLASHRNN_CUDA_16BIT_ACTIVATIONS)
  float e, r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(x * 2.8853900817779268f));  // 2 log2 e
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + e));
  const float wide = ::fmaf(-2.0f, r, 1.0f);
  const float x2 = x * x;
  const float odd = ::fmaf(x2, 0.13038154f, -0.33329734f);
  const float near0 = ::fmaf(x2 * x, odd, x);
  return ::fabsf(x) < 0.2f ? near0 : wide;
#else
  return ::tanhf(x);
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

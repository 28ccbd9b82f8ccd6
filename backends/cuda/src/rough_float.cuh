// A float whose activations are the hardware's one-instruction
// approximations, for the first steps of a segment's burn-in (the steps that
// guess its start state; sequential_forward.cuh). Those steps only have to
// forget the zero they start from: errors of ~2^-11 in tanh and sigmoid leave
// the guess ~1e-3 from the true state, which the exact steps that follow
// close as fast as from any other start, and a guess that is still wrong is
// corrected anyway (the result stays bitwise that of exact stepping). A
// ParaGRU step with them is 7 instructions of activations and 3 MUFU
// operations instead of 19 and 6.
//
// The operations are those of Dual (core/dual.hpp), so every cell that can be
// differentiated can be stepped roughly: instantiate its step with RoughFloat.
#pragma once
#include "flashrnn/core/config.hpp"
#include "flashrnn/core/math.hpp"

namespace flashrnn {
namespace cuda {
namespace detail {

struct RoughFloat {
  float v;
  RoughFloat() = default;
  // Constants convert implicitly, as for Dual, so that cells can write `1 - z`.
  FLASHRNN_HOST_DEVICE RoughFloat(float x) : v(x) {}  // NOLINT(google-explicit-constructor)
};

FLASHRNN_HOST_DEVICE inline RoughFloat operator+(RoughFloat x, RoughFloat y) { return x.v + y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator-(RoughFloat x, RoughFloat y) { return x.v - y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator*(RoughFloat x, RoughFloat y) { return x.v * y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator/(RoughFloat x, RoughFloat y) { return x.v / y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator-(RoughFloat x) { return -x.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator+(RoughFloat x, float y) { return x.v + y; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator+(float x, RoughFloat y) { return x + y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator-(RoughFloat x, float y) { return x.v - y; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator-(float x, RoughFloat y) { return x - y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator*(RoughFloat x, float y) { return x.v * y; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator*(float x, RoughFloat y) { return x * y.v; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator/(RoughFloat x, float y) { return x.v / y; }
FLASHRNN_HOST_DEVICE inline RoughFloat operator/(float x, RoughFloat y) { return x / y.v; }

/// tanh.approx (sm_75 and later: relative error ~2^-11, saturates to +-1, NaN
/// stays NaN); elsewhere the exact tanh.
FLASHRNN_HOST_DEVICE inline RoughFloat tanh(RoughFloat x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x.v));
  return y;
#else
  return math::tanh(x.v);
#endif
}

/// sigmoid(x) = (1 + tanh(x / 2)) / 2: one MUFU operation instead of two.
FLASHRNN_HOST_DEVICE inline RoughFloat sigmoid(RoughFloat x) {
  return 0.5f * tanh(RoughFloat(0.5f * x.v)).v + 0.5f;
}

/// ex2.approx (relative error ~2^-22 plus the rounding of x log2 e).
FLASHRNN_HOST_DEVICE inline RoughFloat exp(RoughFloat x) {
#if defined(__CUDA_ARCH__)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x.v * 1.4426950408889634f));
  return y;
#else
  return math::exp(x.v);
#endif
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

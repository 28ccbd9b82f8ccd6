// How a thread of the sequential forward kernel moves the inputs and states
// of the V adjacent lanes (units j .. j+V-1 of one batch row) it steps.
//
// V = 2 reads and writes both lanes with one access (a 32-bit access for
// 16-bit storage, 64-bit for fp32), so a warp touches 128 bytes where it
// touched 64, and a thread runs two independent dependency chains. The
// sequential kernel is bound by instruction latency and issue, not by memory
// (ncu on an H200, perf/README.md), so the second chain is close to free.
// Conversions round each lane exactly as the scalar ones do: the results are
// bitwise those of one lane per thread.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "kernels.cuh"

namespace flashrnn {
namespace cuda {
namespace detail {

/// probe + 0 * x: stays finite until x is inf or NaN (a check in one FMA).
__device__ __forceinline__ float fold_finite(float x, float probe) { return __fmaf_rn(x, 0.0f, probe); }
__device__ __forceinline__ double fold_finite(double x, double probe) { return __fma_rn(x, 0.0, probe); }

// Each pack also checks its inputs for inf/NaN: `probe` accumulates
// probe + 0 * x over every packed input (fold) and is finite() exactly when
// all were. Two 16-bit lanes fold with one packed FMA, where unpacked lanes
// took one each (3 of the ~37 instructions of a ParaGRU lane's step).
template <class S, int V>
struct LanePack;

/// One lane: the storage type itself.
template <class S>
struct LanePack<S, 1> {
  using packed = S;
  template <class R>
  __device__ static void unpack(packed x, R* r) {
    r[0] = to_r(x);
  }
  __device__ static packed load(const S* p) { return load_s(p); }
  template <class R>
  __device__ static void store(S* p, const R* r) {
    store_r(p, r[0]);
  }
  __device__ static packed zero() { return packed(0.0f); }
  using probe = decltype(to_r(S()));
  __device__ static probe probe_zero() { return probe(0); }
  __device__ static void fold(packed x, probe& p) { p = fold_finite(to_r(x), p); }
  __device__ static bool finite(probe p) { return detail::finite(p); }
};

/// Loads 32 bits through the read-only path with the integer builtin (the
/// 16-bit types' own __ldg is an asm statement the compiler schedules less
/// freely; see load_s).
template <class P>
__device__ __forceinline__ P load_32(const void* p) {
  static_assert(sizeof(P) == 4, "a 32-bit type");
  const unsigned bits = __ldg(static_cast<const unsigned*>(p));
  P x;
  memcpy(&x, &bits, sizeof x);
  return x;
}

/// Two 16-bit lanes in one 32-bit register (P2 = __nv_bfloat162 or __half2).
__device__ __forceinline__ float2 to_float2(__nv_bfloat162 x) {
  return __bfloat1622float2(x);
}
__device__ __forceinline__ float2 to_float2(__half2 x) {
  return __half22float2(x);
}
template <class P2>
__device__ __forceinline__ P2 round_pair(float a, float b);
template <>
__device__ __forceinline__ __nv_bfloat162 round_pair<__nv_bfloat162>(float a, float b) {
  return __floats2bfloat162_rn(a, b);
}
template <>
__device__ __forceinline__ __half2 round_pair<__half2>(float a, float b) {
  return __floats2half2_rn(a, b);
}

/// Two 16-bit lanes to floats. bf16 is a float's upper half, so each lane
/// is one shift or mask (the intrinsic spends three instructions a pair).
__device__ __forceinline__ void unpack_pair(__nv_bfloat162 x, float* r) {
  unsigned bits;
  memcpy(&bits, &x, sizeof bits);
  r[0] = __uint_as_float(bits << 16);
  r[1] = __uint_as_float(bits & 0xffff0000u);
}
__device__ __forceinline__ void unpack_pair(__half2 x, float* r) {
  const float2 f = to_float2(x);
  r[0] = f.x;
  r[1] = f.y;
}

/// +0 in both halves of a pair, a constant (no conversion).
template <class P2>
__device__ __forceinline__ P2 zero_pair() {
  const unsigned bits = 0;
  P2 z;
  memcpy(&z, &bits, sizeof z);
  return z;
}

/// probe + 0 * x in each half of a pair: one packed FMA where the hardware
/// has it (f16x2 everywhere; bf16x2 from sm_80), else in float (sm_75, HIP).
__device__ __forceinline__ __half2 fold_pair(__half2 x, __half2 probe) {
  return __hfma2(x, zero_pair<__half2>(), probe);
}
__device__ __forceinline__ __nv_bfloat162 fold_pair(__nv_bfloat162 x, __nv_bfloat162 probe) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __hfma2(x, zero_pair<__nv_bfloat162>(), probe);
#else
  const float2 fx = to_float2(x), fp = to_float2(probe);
  return round_pair<__nv_bfloat162>(fold_finite(fx.x, fp.x), fold_finite(fx.y, fp.y));
#endif
}

template <class S, class P2>
struct LanePack16x2 {
  using packed = P2;
  __device__ static void unpack(packed x, float* r) { unpack_pair(x, r); }
  __device__ static packed load(const S* p) { return load_32<packed>(p); }
  __device__ static void store(S* p, const float* r) {
    *reinterpret_cast<packed*>(p) = round_pair<P2>(r[0], r[1]);
  }
  __device__ static packed zero() { return zero_pair<P2>(); }
  using probe = P2;
  __device__ static probe probe_zero() { return zero(); }
  __device__ static void fold(packed x, probe& p) { p = fold_pair(x, p); }
  __device__ static bool finite(probe p) {
    const float2 f = to_float2(p);
    return detail::finite(f.x) && detail::finite(f.y);
  }
};

template <>
struct LanePack<__nv_bfloat16, 2> : LanePack16x2<__nv_bfloat16, __nv_bfloat162> {};
template <>
struct LanePack<__half, 2> : LanePack16x2<__half, __half2> {};

template <>
struct LanePack<float, 2> {
  using packed = float2;
  __device__ static void unpack(packed x, float* r) {
    r[0] = x.x;
    r[1] = x.y;
  }
  __device__ static packed load(const float* p) {
    return __ldg(reinterpret_cast<const float2*>(p));
  }
  __device__ static void store(float* p, const float* r) {
    *reinterpret_cast<float2*>(p) = make_float2(r[0], r[1]);
  }
  __device__ static packed zero() { return make_float2(0.0f, 0.0f); }
  using probe = float;
  __device__ static probe probe_zero() { return 0.0f; }
  __device__ static void fold(packed x, probe& p) { p = fold_finite(x.y, fold_finite(x.x, p)); }
  __device__ static bool finite(probe p) { return detail::finite(p); }
};

/// Whether LanePack<S, 2> exists (double and wide cells keep one lane a thread).
template <class S>
struct has_lane_pairs : std::false_type {};
template <>
struct has_lane_pairs<__nv_bfloat16> : std::true_type {};
template <>
struct has_lane_pairs<__half> : std::true_type {};
template <>
struct has_lane_pairs<float> : std::true_type {};

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

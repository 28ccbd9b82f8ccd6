// __nv_bfloat16 on HIP (see cuda_runtime.h in this folder).
#pragma once
#include <hip/hip_bfloat16.h>
using __nv_bfloat16 = hip_bfloat16;
__host__ __device__ inline float __bfloat162float(hip_bfloat16 x) { return static_cast<float>(x); }
__host__ __device__ inline hip_bfloat16 __float2bfloat16_rn(float x) { return hip_bfloat16(x); }
__host__ __device__ inline hip_bfloat16 __ushort_as_bfloat16(unsigned short bits) {
  hip_bfloat16 r;
  r.data = bits;  // hip_bfloat16 stores its bit pattern in `data`
  return r;
}

// A pair of adjacent values, as the sequential kernel's lane pairs load and
// store them (backends/cuda/src/lane_pack.cuh): two bf16 in 32 bits.
struct __nv_bfloat162 {
  hip_bfloat16 x, y;
};
__host__ __device__ inline float2 __bfloat1622float2(__nv_bfloat162 v) {
  return make_float2(static_cast<float>(v.x), static_cast<float>(v.y));
}
__host__ __device__ inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{hip_bfloat16(a), hip_bfloat16(b)};
}

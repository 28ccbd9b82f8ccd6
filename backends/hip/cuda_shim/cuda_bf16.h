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

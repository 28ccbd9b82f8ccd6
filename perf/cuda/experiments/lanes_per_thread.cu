// Experiment for the next step of the bf16 forward (perf/README.md, "Issue 3
// targets"): does a thread that steps two adjacent lanes (bf16x2 loads and
// stores: 128-byte warp accesses, two independent dependency chains, half the
// address arithmetic per lane) beat one lane per thread? Standalone kernels,
// ParaGRU, bf16 storage with the library's 16-bit sigmoid, batch-first
// (B, T, 3, H) inputs, no segments, no non-finite probe: the two variants
// differ only in lanes per thread, so only their ratio is the result.
// Built by CMake with the perf targets (flashrnn_exp_lanes_per_thread).
#define FLASHRNN_CUDA_16BIT_ACTIVATIONS 1
#include <cuda_bf16.h>

#include <cstdio>

#include "common.cuh"
#include "flashrnn/cells/para_gru.hpp"

namespace xb {

constexpr int D = 8;  // steps prefetched, as tuning::sequential_prefetch

/// V lanes per thread: V = 1 loads __nv_bfloat16, V = 2 __nv_bfloat162.
template <int V>
struct Pack;
template <>
struct Pack<1> {
  using T = __nv_bfloat16;
  // Through the integer builtin, as the library (cuda_bf16.h's __ldg is an asm
  // statement the compiler schedules less freely).
  __device__ static T load(const T* p) {
    return __ushort_as_bfloat16(__ldg(reinterpret_cast<const unsigned short*>(p)));
  }
  __device__ static void to_f(T x, float* f) { f[0] = __bfloat162float(x); }
  __device__ static T from_f(const float* f) { return __float2bfloat16_rn(f[0]); }
};
template <>
struct Pack<2> {
  using T = __nv_bfloat162;
  __device__ static T load(const T* p) {
    const unsigned bits = __ldg(reinterpret_cast<const unsigned*>(p));
    T x;
    memcpy(&x, &bits, sizeof x);
    return x;
  }
  __device__ static void to_f(T x, float* f) {
    const float2 v = __bfloat1622float2(x);
    f[0] = v.x;
    f[1] = v.y;
  }
  __device__ static T from_f(const float* f) { return __floats2bfloat162_rn(f[0], f[1]); }
};

/// One thread steps V adjacent units j .. j+V-1 of one batch row over all T
/// steps (T a multiple of D), prefetching D steps ahead through the read-only
/// path (as the library: the loads may then pass the state stores).
template <int V>
__global__ void __launch_bounds__(64) forward_kernel(const __nv_bfloat16* u, const __nv_bfloat16* p,
                                                     __nv_bfloat16* st, int B, long T, int H) {
  using P = Pack<V>;
  using T2 = typename P::T;
  const long tid = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tid * V >= static_cast<long>(B) * H) return;
  const int b = static_cast<int>(tid * V / H), j = static_cast<int>(tid * V % H);
  const T2* in = reinterpret_cast<const T2*>(u + (static_cast<long>(b) * T * 3) * H + j);
  T2* out = reinterpret_cast<T2*>(st + static_cast<long>(b) * T * H + j);
  const long in_step = 3L * H / V, out_step = static_cast<long>(H) / V, gate = static_cast<long>(H) / V;
  float pa[3][V], h[V];
  for (int q = 0; q < 3; ++q)
    for (int v = 0; v < V; ++v) pa[q][v] = __bfloat162float(p[q * H + j + v]);
  for (int v = 0; v < V; ++v) h[v] = 0.0f;
  T2 buf[D][3];
#pragma unroll
  for (int i = 0; i < D; ++i)
#pragma unroll
    for (int g = 0; g < 3; ++g) buf[i][g] = P::load(in + i * in_step + g * gate);
  for (long blk = 0; blk < T / D; ++blk) {
    in += D * in_step;
    float cur[D][3][V];
#pragma unroll
    for (int i = 0; i < D; ++i)
#pragma unroll
      for (int g = 0; g < 3; ++g) P::to_f(buf[i][g], cur[i][g]);
    if (blk + 1 < T / D) {
#pragma unroll
      for (int i = 0; i < D; ++i)
#pragma unroll
        for (int g = 0; g < 3; ++g) buf[i][g] = P::load(in + i * in_step + g * gate);
    }
#pragma unroll
    for (int i = 0; i < D; ++i) {
      float nx[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const float uu[3] = {cur[i][0][v], cur[i][1][v], cur[i][2][v]};
        const float pp[3] = {pa[0][v], pa[1][v], pa[2][v]};
        flashrnn::cells::ParaGRU::step(&h[v], uu, pp, &nx[v]);
        h[v] = nx[v];
      }
      *out = P::from_f(h);
      out += out_step;
    }
  }
}

template <int V>
float time_variant(const __nv_bfloat16* u, const __nv_bfloat16* p, __nv_bfloat16* st, int B, long T, int H) {
  const long threads = static_cast<long>(B) * H / V;
  return median_ms([&] { forward_kernel<V><<<static_cast<unsigned>((threads + 63) / 64), 64>>>(u, p, st, B, T, H); });
}

void run() {
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  const int B = 8;
  for (int H : {8192, 16384})
    for (long T : {2048L, 8192L}) {
      const size_t nu = size_t(B) * T * 3 * H, ns = size_t(B) * T * H;
      __nv_bfloat16 *u, *p, *st;
      CK(cudaMalloc(&u, nu * sizeof(*u)));
      CK(cudaMalloc(&p, 3 * size_t(H) * sizeof(*p)));
      CK(cudaMalloc(&st, ns * sizeof(*st)));
      fill_kernel<<<1024, 256>>>(u, nu, 1.5f, 1);
      fill_kernel<<<64, 256>>>(p, 3 * size_t(H), 0.9f, 3);
      CK(cudaDeviceSynchronize());
      const float one = time_variant<1>(u, p, st, B, T, H), two = time_variant<2>(u, p, st, B, T, H);
      const double gb = double(nu + ns) * sizeof(*u) / 1e9;
      std::printf("ParaGRU bf16 lanes=%-6d T=%-5ld  1 lane/thread %7.3f ms (%4.1f%% of copy)  2 lanes/thread %7.3f ms "
                  "(%4.1f%%)  ratio %.2f\n",
                  B * H, T, one, 100 * gb / (one * 1e-3) / peak, two, 100 * gb / (two * 1e-3) / peak, one / two);
      for (auto* x : {u, p, st}) cudaFree(x);
    }
}

}  // namespace xb

int main() { xb::run(); }

// The fused kernels of the CUDA backend, templated on the cell (its `step`
// struct; Jacobians come from the dual numbers of core/cell.hpp), the storage
// type S and the compute type R.
//
// Thread layout of the block kernels: tid = y * LT + x, x = lane within the
// block's tile of LT lanes (consecutive units j, so loads coalesce), y = chunk.
// A block owns a segment of NC * L steps of its LT lanes; a long sequence is a
// chain of segments whose blocks take tickets in segment order and hand the
// state across the segment boundary through global memory (a chained scan:
// every block first solves its segment from a guessed incoming state in
// parallel with the others, then waits for its predecessor's exact end state
// and finishes Newton from there, which takes one or two iterations).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "flashrnn/core/affine.hpp"
#include "flashrnn/core/cell.hpp"
#include "flashrnn/core/math.hpp"
#include "flashrnn/core/views.hpp"
#include "flashrnn/cuda/api.hpp"

namespace flashrnn {
namespace cuda {
namespace detail {

template <class S>
struct compute_type {
  using type = S;
};
template <>
struct compute_type<__nv_bfloat16> {
  using type = float;
};
template <>
struct compute_type<__half> {
  using type = float;
};

__device__ __forceinline__ float load_r(const float* p) { return __ldg(p); }
__device__ __forceinline__ double load_r(const double* p) { return __ldg(p); }
// Read-only cache loads for every type: they also tell the compiler that the
// stores of states cannot alias u, so the prefetch loads can be issued early.
// (16-bit types through the unsigned short builtin: cuda_bf16.h's __ldg is an
// asm statement the compiler may hoist out of a `ptr ? load : 0` guard.)
__device__ __forceinline__ float load_r(const __nv_bfloat16* p) {
  return __bfloat162float(__ushort_as_bfloat16(__ldg(reinterpret_cast<const unsigned short*>(p))));
}
__device__ __forceinline__ float load_r(const __half* p) {
  return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
}

__device__ __forceinline__ void store_r(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_r(double* p, double v) { *p = v; }
__device__ __forceinline__ void store_r(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_r(__half* p, float v) { *p = __float2half_rn(v); }

// Raw loads (storage type) and conversions, for prefetch buffers: keeping the
// conversion at the point of use lets the loads stay in flight across the
// steps that run meanwhile (converting at load time made the bf16 sequential
// kernel wait on every load: 2-4x slower than fp32 on an H100).
__device__ __forceinline__ float load_s(const float* p) { return __ldg(p); }
__device__ __forceinline__ double load_s(const double* p) { return __ldg(p); }
__device__ __forceinline__ __nv_bfloat16 load_s(const __nv_bfloat16* p) {
  return __ushort_as_bfloat16(__ldg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ __half load_s(const __half* p) {
  return __ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ float to_r(float x) { return x; }
__device__ __forceinline__ double to_r(double x) { return x; }
__device__ __forceinline__ float to_r(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_r(__half x) { return __half2float(x); }

/// Bit patterns, for the sequential kernels' exact merge tests.
__device__ __forceinline__ unsigned long long bits_of(float x) { return __float_as_uint(x); }
__device__ __forceinline__ unsigned long long bits_of(double x) {
  return static_cast<unsigned long long>(__double_as_longlong(x));
}

template <int K, class R>
__device__ __forceinline__ bool same_bits(const R* a, const R* b) {
  bool eq = true;
#pragma unroll
  for (int k = 0; k < K; ++k) eq &= bits_of(a[k]) == bits_of(b[k]);
  return eq;
}

template <class R>
__device__ __forceinline__ bool finite(R x) {
  return math::is_finite(x);
}

/// Per-lane addressing of a view: element (t, c) of lane (b, j).
template <class S>
struct LanePtr {
  S* base;
  index_t st, sc;
  __device__ LanePtr(const View<S>& v, index_t b, index_t j)
      : base(v.data ? v.data + b * v.stride_b + j * v.stride_h : nullptr),
        st(v.stride_t),
        sc(v.stride_c) {}
  __device__ S* at(index_t t, int c) const { return base + t * st + c * sc; }
};

/// Everything a forward kernel needs, passed by value.
template <class S, class R>
struct FwdArgs {
  View<const S> u, p, s0;
  View<S> states, final_state;
  index_t T, H, lanes;
  int LT, NC, n_tiles;
  index_t n_seg, seg_len;
  int max_iters;
  R atol, rtol, damping;
  int policy;  // OnNonConvergence as int
  R* carry;    // n_seg x lanes x K: end state of every segment
  int* flags;  // n_seg x n_tiles: 1 once carry of (segment, tile) is written
  int* counter;
  DeviceReport* rep;
  int burn_in = 0;  // sequential forward: steps before a segment that make its start guess
  int rough_burn_in = 0;      // ... of which the first, in whole blocks, rough (rough_float.cuh; staged 16-bit)
  int balanced_segments = 0;  // 1: segments of equal work (segment_range.hpp)
  int defer_copies = 0;       // staged: 1 copies a range's later blocks once its first has landed
};

template <class S, class R>
struct BwdArgs {
  View<const S> u, p, s0, states, grad_states, grad_final;
  View<S> grad_u, grad_s0;
  index_t T, H, lanes;
  int LT, NC, n_tiles;
  index_t n_seg, seg_len;
  R* carry;     // n_seg x lanes x K: λ at the first step of every segment
  int* flags;   // n_seg x n_tiles
  int* counter;
  R* partial;   // slabs x lanes x P: parameter-gradient partials per chunk segment
                // (parallel) or time segment (sequential sweep), or null
  int burn_in = 0;  // sequential backward: steps after a segment that make its hand-over guess
};

// ---- report -------------------------------------------------------------

__device__ __forceinline__ void report_max_int(int* addr, int v) {
  if (v > *reinterpret_cast<volatile int*>(addr)) atomicMax(addr, v);
}
__device__ __forceinline__ void report_max_double(unsigned long long* addr, double v) {
  if (!(v > 0.0)) return;  // zero and NaN leave the max alone (NaN sets `nonfinite`)
  const unsigned long long bits = static_cast<unsigned long long>(__double_as_longlong(v));
  if (bits > *reinterpret_cast<volatile unsigned long long*>(addr)) atomicMax(addr, bits);
}

/// Block-wide max of a per-thread value (all threads call; result valid in thread 0).
template <class R>
__device__ R block_max(R v, R* sh_red) {
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh_red[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < nw; ++w) v = fmax(v, sh_red[w]);
  return v;
}

// ---- block scan of affine maps along y -----------------------------------

/// Inclusive scan over the chunks y of each lane x (forward: map_y ∘ ... ∘ map_0;
/// reverse: map_y ∘ ... ∘ map_{NC-1}). All threads call. On return sh[tid]
/// holds this thread's inclusive value, visible to the whole block.
/// Not cub::BlockScan: CUB scans one sequence over the thread ranks, while
/// here each of the LT lanes has its own scan over NC = 256 / LT chunk rows,
/// interleaved (tid = y * LT + x) so that the global loads of a row stay
/// coalesced; but for LT = 1 CUB would need a segmented operator over a
/// transposed copy (two more passes through shared memory). One code path
/// for every LT keeps the kernel's barriers uniform.
template <class R, int K>
__device__ Affine<R, K> block_scan_y(Affine<R, K> m, Affine<R, K>* sh, int y, int LT, int NC,
                                     bool reverse) {
  const int tid = threadIdx.x;
  sh[tid] = m;
  __syncthreads();
  for (int d = 1; d < NC; d <<= 1) {
    const bool has = reverse ? (y + d < NC) : (y >= d);
    Affine<R, K> other;
    if (has) other = sh[reverse ? tid + d * LT : tid - d * LT];
    __syncthreads();
    if (has) {
      m = compose(m, other);
      sh[tid] = m;
    }
    __syncthreads();
  }
  return m;
}

/// acc <- A acc (K x K).
template <class R, int K>
__device__ __forceinline__ void left_multiply(const R* A, R* acc) {
  R out[K * K];
#pragma unroll
  for (int i = 0; i < K; ++i)
#pragma unroll
    for (int j = 0; j < K; ++j) {
      R s = R(0);
#pragma unroll
      for (int k = 0; k < K; ++k) s += A[i * K + k] * acc[k * K + j];
      out[i * K + j] = s;
    }
#pragma unroll
  for (int i = 0; i < K * K; ++i) acc[i] = out[i];
}

// ---- chained hand-over between segment blocks -------------------------------

__device__ __forceinline__ void wait_flag(const int* flag) {
  if (threadIdx.x == 0) {
    while (*reinterpret_cast<const volatile int*>(flag) == 0) __nanosleep(32);
    __threadfence();
  }
  __syncthreads();
}
__device__ __forceinline__ void raise_flag(int* flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) atomicExch(flag, 1);
}
template <class R>
__device__ __forceinline__ R load_volatile(const R* p) {
  return *reinterpret_cast<const volatile R*>(p);
}

__device__ __forceinline__ int take_ticket(int* counter, int* sh) {
  if (threadIdx.x == 0) *sh = atomicAdd(counter, 1);
  __syncthreads();
  return *sh;
}

/// Where a thread of the chunked kernels (Newton forward, parallel adjoint)
/// works: lane x of tile `tile` (LT lanes a tile; lane, and its batch row b
/// and unit j), chunk row y of L steps from t0 in time segment `seg`
/// (starting at seg_begin), n steps of it (0 past T and for a lane past the
/// last).
struct ChunkPlace {
  int x, y;
  index_t lane;
  bool valid_lane;
  index_t b, j, seg_begin, t0;
  int n;
};
template <int L, class Args>
__device__ __forceinline__ ChunkPlace chunk_place(const Args& a, index_t seg, int tile) {
  ChunkPlace c;
  c.x = threadIdx.x % a.LT;
  c.y = threadIdx.x / a.LT;
  c.lane = static_cast<index_t>(tile) * a.LT + c.x;
  c.valid_lane = c.lane < a.lanes;
  c.b = c.valid_lane ? c.lane / a.H : 0;
  c.j = c.valid_lane ? c.lane % a.H : 0;
  c.seg_begin = seg * a.seg_len;
  c.t0 = c.seg_begin + static_cast<index_t>(c.y) * L;
  const index_t left = a.T - c.t0;
  c.n = c.valid_lane ? static_cast<int>(left <= 0 ? 0 : (left < L ? left : L)) : 0;
  return c;
}

// ---- Newton forward (chunked; L = 1 is per-step Newton) ----------------------

template <class Cell, class S, class R, int L>
// Two blocks per SM at least: the chunk passes are chains of dependent steps,
// so occupancy is what hides their latency (caps registers at 128).
__global__ void __launch_bounds__(256, 2) newton_forward_kernel(FwdArgs<S, R> a) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1;
  using Map = Affine<R, K>;
  // The chunk maps of a Newton update (sh_map) and the chunk end states of a
  // verifying pass (sh_F) are never live at once: one buffer holds either, so
  // dense K (HeadTanh<4> in fp64) stays within 48 KB of static shared memory.
  constexpr int kMapBytes = 256 * static_cast<int>(sizeof(Map));
  constexpr int kEndBytes = 256 * K * static_cast<int>(sizeof(R));
  __shared__ __align__(16) unsigned char sh_maps_or_ends[kMapBytes > kEndBytes ? kMapBytes : kEndBytes];
  Map* const sh_map = reinterpret_cast<Map*>(sh_maps_or_ends);
  R* const sh_F = reinterpret_cast<R*>(sh_maps_or_ends);  // end state of every chunk after a pass
  __shared__ R sh_red[8];
  __shared__ int sh_ticket;

  const int ticket = a.n_seg > 1 ? take_ticket(a.counter, &sh_ticket) : static_cast<int>(blockIdx.x);
  const index_t seg = ticket / a.n_tiles;
  const int tile = ticket % a.n_tiles;
  const ChunkPlace at = chunk_place<L>(a, seg, tile);
  const int x = at.x, y = at.y, n = at.n;
  const index_t lane = at.lane, b = at.b, j = at.j, seg_begin = at.seg_begin, t0 = at.t0;
  const bool valid_lane = at.valid_lane, active = n > 0;
  // Chunks holding steps in this segment (block-uniform).
  const index_t seg_steps = (a.T - seg_begin) < a.seg_len ? (a.T - seg_begin) : a.seg_len;
  const int nc_active = static_cast<int>((seg_steps + L - 1) / L);

  const LanePtr<const S> u(a.u, b, j);
  R ur[L][G];
  R p[PP];
  bool bad = false;
#pragma unroll
  for (int i = 0; i < L; ++i)
#pragma unroll
    for (int g = 0; g < G; ++g) {
      ur[i][g] = i < n ? load_r(u.at(t0 + i, g)) : R(0);
      bad |= !finite(ur[i][g]);
    }
#pragma unroll
  for (int q = 0; q < P; ++q) {
    p[q] = valid_lane ? load_r(a.p.data + q * a.p.stride_c + j * a.p.stride_h) : R(0);
    bad |= !finite(p[q]);
  }

  // Incoming state of this thread's chunk: s0 for the very first chunk, else
  // the guess f(0, u at the step before).
  R xin[K];
  if (active && t0 == 0) {
    const LanePtr<const S> s0(a.s0, b, j);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      xin[k] = s0.base ? load_r(s0.at(0, k)) : R(0);
      bad |= !finite(xin[k]);
    }
  } else if (active) {
    R zero[K], ug[G];
#pragma unroll
    for (int k = 0; k < K; ++k) zero[k] = R(0);
#pragma unroll
    for (int g = 0; g < G; ++g) ug[g] = load_r(u.at(t0 - 1, g));
    cell_step<Cell>(zero, ug, p, xin);
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) xin[k] = R(0);
  }

  __shared__ R sh_x0[32 * K];  // incoming state of chunk 0, per lane of the tile
  const LanePtr<S> st(a.states, b, j);
  const index_t seg_last = seg_begin + seg_steps - 1;
  const bool multi = nc_active > 1;

  int iters = 0;  // Newton updates (scans of the chunk maps)
  R resid = R(0);
  bool nonfinite = false;

  // One pass over the chunk from xin: end state F; with `jac` also Φ (K x K);
  // with `write` the states go to memory.
  auto pass = [&](bool jac, bool write, R* F, R* phi) {
    R s[K];
#pragma unroll
    for (int i = 0; i < K; ++i) {
      s[i] = xin[i];
      if (jac)
#pragma unroll
        for (int jj = 0; jj < K; ++jj) phi[i * K + jj] = i == jj ? R(1) : R(0);
    }
#pragma unroll
    for (int i = 0; i < L; ++i) {
      if (i < n) {
        R nx[K];
        if (jac) {
          R A[K * K];
          cell_step_state_jacobian<Cell>(s, ur[i], p, nx, A);
          left_multiply<R, K>(A, phi);
        } else {
          cell_step<Cell>(s, ur[i], p, nx);
        }
#pragma unroll
        for (int q = 0; q < K; ++q) {
          s[q] = nx[q];
          if (write && st.base) store_r(st.at(t0 + i, q), nx[q]);
        }
      }
    }
#pragma unroll
    for (int q = 0; q < K; ++q) F[q] = s[q];
  };

  // One Newton update of the boundaries: linearise every chunk at xin, scan
  // the chunk maps, move xin (y >= 1) toward the solution. With `affine0`
  // chunk 0's map keeps its dependence on the segment's incoming state and
  // `lin` receives boundary y as an affine function of it.
  Map lin = Map::identity();
  auto update = [&](bool affine0) {
    Map m = Map::identity();
    if (active) {
      R F[K], phi[K * K];
      pass(true, false, F, phi);
      if (y == 0 && !affine0) {
        m = Map::constant(F);
      } else {
        m = Map::tangent(F, phi, xin);
      }
      if (y == 0 && affine0)
#pragma unroll
        for (int k = 0; k < K; ++k) sh_x0[x * K + k] = xin[k];
    }
    block_scan_y<R, K>(m, sh_map, y, a.LT, a.NC, false);
    if (active && y > 0) {
      const Map& prev = sh_map[threadIdx.x - a.LT];
      R target[K];
      if (affine0) {
        lin = prev;
        prev.apply(sh_x0 + x * K, target);
      } else {
#pragma unroll
        for (int k = 0; k < K; ++k) target[k] = prev.c[k];
      }
      R r = R(0);
#pragma unroll
      for (int i = 0; i < K; ++i) {
        const R next = xin[i] + a.damping * (target[i] - xin[i]);
        if (!finite(next)) nonfinite = true;
        r = fmax(r, fabs(target[i] - xin[i]));
        xin[i] = next;
      }
      resid = r;
    }
    ++iters;
    __syncthreads();  // reads of sh_map done before a verifying pass writes sh_F over it
  };

  // Phase A: one update from the guesses (for seg > 0 in parallel with the
  // blocks before it, its incoming state still a guess).
  if (multi) update(seg > 0);
  int exact_updates = seg == 0 && multi ? 1 : 0;
  if (seg > 0) {
    wait_flag(a.flags + (seg - 1) * a.n_tiles + tile);
    if (active && y == 0) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        xin[k] = load_volatile(a.carry + ((seg - 1) * a.lanes + lane) * K + k);
        sh_x0[x * K + k] = xin[k];
      }
    }
    __syncthreads();
    // The boundaries as functions of the now exact incoming state (first order).
    if (multi && active && y > 0 && a.damping == R(1)) lin.apply(sh_x0 + x * K, xin);
  }

  // Verify-and-write passes: plain stepping from the boundaries writes the
  // states and measures the boundary mismatch |F_{y-1} - x_y|; accepted when
  // every mismatch is within tolerance, else one more Newton update.
  R F[K];
  bool converged = false;
  for (;;) {
    if (active) pass(false, true, F, nullptr);
    bool bad_step = false;
    if (multi) {
      if (active)
#pragma unroll
        for (int k = 0; k < K; ++k) sh_F[threadIdx.x * K + k] = F[k];
      __syncthreads();
      if (active && y > 0) {
        R r = R(0);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const R mis = fabs(sh_F[(threadIdx.x - a.LT) * K + k] - xin[k]);
          r = fmax(r, mis);
          // A tenth of the Newton tolerance: accepting a mismatch m leaves an
          // error of about m in the states, where a Newton update of size m
          // would leave about m^2.
          if (!(mis <= R(0.1) * (a.atol + a.rtol * fabs(xin[k])))) bad_step = true;
        }
        resid = r;
      }
    }
    const bool any_bad = __syncthreads_or(bad_step || nonfinite);
    const bool exact = a.damping == R(1) && exact_updates >= nc_active - 1;
    if (!any_bad || exact) {
      converged = true;
      break;
    }
    if (exact_updates >= a.max_iters || __syncthreads_or(nonfinite)) break;
    update(false);
    ++exact_updates;
  }
  const bool fallback = !converged && a.policy == static_cast<int>(OnNonConvergence::fallback_sequential);

  if (!fallback) {
    if (active && t0 + n - 1 == seg_last) {
      if (a.carry)
#pragma unroll
        for (int k = 0; k < K; ++k) a.carry[(seg * a.lanes + lane) * K + k] = F[k];
      if (seg_last == a.T - 1 && a.final_state.data) {
        const LanePtr<S> fs(a.final_state, b, j);
#pragma unroll
        for (int k = 0; k < K; ++k) store_r(fs.at(0, k), F[k]);
      }
    }
  } else {
    __syncthreads();  // the Newton passes' stores are done before stepping overwrites them
    if (y == 0 && valid_lane) {
      // Exact stepping over the whole segment from its exact incoming state.
      R s[K];
#pragma unroll
      for (int k = 0; k < K; ++k) s[k] = xin[k];
      for (index_t t = seg_begin; t <= seg_last; ++t) {
        R ug[G], nx[K];
#pragma unroll
        for (int g = 0; g < G; ++g) ug[g] = load_r(u.at(t, g));
        cell_step<Cell>(s, ug, p, nx);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          s[k] = nx[k];
          if (st.base) store_r(st.at(t, k), nx[k]);
        }
      }
      if (a.carry)
#pragma unroll
        for (int k = 0; k < K; ++k) a.carry[(seg * a.lanes + lane) * K + k] = s[k];
      if (seg_last == a.T - 1 && a.final_state.data) {
        const LanePtr<S> fs(a.final_state, b, j);
#pragma unroll
        for (int k = 0; k < K; ++k) store_r(fs.at(0, k), s[k]);
      }
    }
  }
  if (a.n_seg > 1 && seg + 1 < a.n_seg) raise_flag(a.flags + seg * a.n_tiles + tile);

  if (a.rep) {
    const R bmax = block_max(resid, sh_red);
    const bool any_bad = __syncthreads_or(bad);
    if (threadIdx.x == 0) {
      report_max_int(&a.rep->iterations, iters);
      report_max_double(&a.rep->residual_bits, static_cast<double>(bmax));
      if (!converged) a.rep->not_converged = 1;
      if (nonfinite) a.rep->nonfinite = 1;
      if (any_bad) a.rep->input_nonfinite = 1;
      if (fallback) {
        const index_t first = static_cast<index_t>(tile) * a.LT;
        const index_t nl = a.lanes - first < a.LT ? a.lanes - first : a.LT;
        atomicAdd(&a.rep->lanes_fell_back, static_cast<unsigned long long>(nl));
      }
    }
    if (nonfinite) a.rep->nonfinite = 1;
  }
}

// ---- backward -----------------------------------------------------------------

/// Upstream gradient g_t (+ grad_final at the last step).
template <int K, class S, class R>
__device__ __forceinline__ void upstream(const LanePtr<const S>& gs, const LanePtr<const S>& gf,
                                         index_t T, index_t t, R* g) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
    R v = gs.base ? load_r(gs.at(t, k)) : R(0);
    if (t == T - 1 && gf.base) v += load_r(gf.at(0, k));
    g[k] = v;
  }
}

/// State entering step t (s0 or zeros at t = 0).
template <int K, class S, class R>
__device__ __forceinline__ void state_before(const LanePtr<const S>& st, const LanePtr<const S>& s0,
                                             index_t t, R* s) {
#pragma unroll
  for (int k = 0; k < K; ++k)
    s[k] = t > 0 ? load_r(st.at(t - 1, k)) : (s0.base ? load_r(s0.at(0, k)) : R(0));
}

template <int G, class S, class R>
__device__ __forceinline__ void load_u(const LanePtr<const S>& u, index_t t, R* ug) {
#pragma unroll
  for (int g = 0; g < G; ++g) ug[g] = load_r(u.at(t, g));
}

/// One reverse step: given λ_t and the full Jacobian at step t, writes
/// grad_u_t, accumulates grad_p, and returns A_t^T λ_t in `back`.
/// grad_u_t goes to gu_t[g * gu_sc] (nothing when gu_t is null).
template <int K, int G, int P, class S, class R>
__device__ __forceinline__ void adjoint_step(const R* A, const R* Ju, const R* Jp, const R* lam, S* gu_t,
                                             index_t gu_sc, R* gp, R* back) {
  if (gu_t) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      R acc = R(0);
#pragma unroll
      for (int i = 0; i < K; ++i) acc += Ju[i * G + g] * lam[i];
      store_r(gu_t + g * gu_sc, acc);
    }
  }
#pragma unroll
  for (int q = 0; q < P; ++q) {
    R acc = R(0);
#pragma unroll
    for (int i = 0; i < K; ++i) acc += Jp[i * P + q] * lam[i];
    gp[q] += acc;
  }
#pragma unroll
  for (int jj = 0; jj < K; ++jj) {
    R acc = R(0);
#pragma unroll
    for (int i = 0; i < K; ++i) acc += A[i * K + jj] * lam[i];
    back[jj] = acc;
  }
}

/// Parallel adjoint: each thread owns L steps of one lane. Pass 1 builds the
/// chunk's reverse map λ_begin = M λ_end + c from state Jacobians; a block
/// scan and the chained hand-over give every chunk its exact λ_end; pass 2
/// walks the chunk again with full Jacobians writing grad_u and summing grad_p.
template <class Cell, class S, class R, int L>
__global__ void __launch_bounds__(256) parallel_backward_kernel(BwdArgs<S, R> a) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1;
  using Map = Affine<R, K>;
  __shared__ Map sh_map[256];
  __shared__ R sh_gp[P > 0 ? 256 : 1];
  __shared__ int sh_ticket;

  const int ticket = a.n_seg > 1 ? take_ticket(a.counter, &sh_ticket) : static_cast<int>(blockIdx.x);
  const index_t seg = a.n_seg - 1 - ticket / a.n_tiles;  // last segment first
  const int tile = ticket % a.n_tiles;
  const ChunkPlace at = chunk_place<L>(a, seg, tile);
  const int y = at.y, n = at.n;
  const index_t lane = at.lane, b = at.b, j = at.j, t0 = at.t0;
  const bool valid_lane = at.valid_lane, active = n > 0;
  const index_t t_end = t0 + n;  // first step after the chunk

  const LanePtr<const S> u(a.u, b, j), st(a.states, b, j), s0(a.s0, b, j),
      gs(a.grad_states, b, j), gf(a.grad_final, b, j);
  const LanePtr<S> gu(a.grad_u, b, j);
  R p[PP];
#pragma unroll
  for (int q = 0; q < P; ++q) p[q] = valid_lane ? load_r(a.p.data + q * a.p.stride_c + j * a.p.stride_h) : R(0);

  // A_{t_end}: the state Jacobian of the step after the chunk (zero past T).
  R A_after[K * K];
#pragma unroll
  for (int i = 0; i < K * K; ++i) A_after[i] = R(0);
  if (active && t_end < a.T) {
    R prev[K], ug[G], f[K];
    state_before<K>(st, s0, t_end, prev);
    load_u<G>(u, t_end, ug);
    cell_step_state_jacobian<Cell>(prev, ug, p, f, A_after);
  }

  // Pass 1: M maps λ_{t_end} to λ_{t0}.
  Map M = Map::identity();
  if (active) {
    R A_next[K * K];
#pragma unroll
    for (int i = 0; i < K * K; ++i) A_next[i] = A_after[i];
    for (int i = n - 1; i >= 0; --i) {
      const index_t t = t0 + i;
      R g[K];
      upstream<K>(gs, gf, a.T, t, g);
      const Map step = transposed_linear<R, K>(A_next, g);
      M = compose(step, M);
      if (i > 0) {
        R prev[K], ug[G], f[K];
        state_before<K>(st, s0, t, prev);
        load_u<G>(u, t, ug);
        cell_step_state_jacobian<Cell>(prev, ug, p, f, A_next);
      }
    }
  }
  const Map incl = block_scan_y<R, K>(M, sh_map, y, a.LT, a.NC, true);

  // λ entering the segment from the right (zero for the last segment).
  R lam_in[K];
#pragma unroll
  for (int k = 0; k < K; ++k) lam_in[k] = R(0);
  if (seg + 1 < a.n_seg) {
    wait_flag(a.flags + (seg + 1) * a.n_tiles + tile);
    if (valid_lane) {
#pragma unroll
      for (int k = 0; k < K; ++k) lam_in[k] = load_volatile(a.carry + ((seg + 1) * a.lanes + lane) * K + k);
    }
  }
  // λ_{t_end} for this chunk: the scan of the chunks to the right applied to lam_in.
  R lam[K];
  {
    const bool has_right = y + 1 < a.NC;
    if (has_right) {
      const Map& r = sh_map[threadIdx.x + a.LT];
      r.apply(lam_in, lam);
    } else {
#pragma unroll
      for (int k = 0; k < K; ++k) lam[k] = lam_in[k];
    }
  }
  if (y == 0 && valid_lane && a.n_seg > 1) {
    R lam0[K];
    incl.apply(lam_in, lam0);
#pragma unroll
    for (int k = 0; k < K; ++k) a.carry[(seg * a.lanes + lane) * K + k] = lam0[k];
  }
  if (a.n_seg > 1 && seg > 0) raise_flag(a.flags + seg * a.n_tiles + tile);

  // Pass 2: λ_t = A_{t+1}^T λ_{t+1} + g_t, walking down with full Jacobians.
  R gp[PP];
#pragma unroll
  for (int q = 0; q < PP; ++q) gp[q] = R(0);
  if (active) {
    R back[K];
    {
      R tmp[K];
#pragma unroll
      for (int jj = 0; jj < K; ++jj) {
        R acc = R(0);
#pragma unroll
        for (int i = 0; i < K; ++i) acc += A_after[i * K + jj] * lam[i];
        tmp[jj] = acc;
      }
#pragma unroll
      for (int k = 0; k < K; ++k) back[k] = tmp[k];
    }
    for (int i = n - 1; i >= 0; --i) {
      const index_t t = t0 + i;
      R g[K];
      upstream<K>(gs, gf, a.T, t, g);
#pragma unroll
      for (int k = 0; k < K; ++k) lam[k] = g[k] + back[k];
      R prev[K], ug[G], f[K], A[K * K], Ju[K * G], Jp[K * PP];
      state_before<K>(st, s0, t, prev);
      load_u<G>(u, t, ug);
      cell_step_full_jacobian<Cell>(prev, ug, p, f, A, Ju, Jp);
      adjoint_step<K, G, P, S, R>(A, Ju, Jp, lam, gu.base ? gu.at(t, 0) : nullptr, gu.sc, gp, back);
    }
    if (t0 == 0 && a.grad_s0.data) {
      const LanePtr<S> g0(a.grad_s0, b, j);
#pragma unroll
      for (int k = 0; k < K; ++k) store_r(g0.at(0, k), back[k]);
    }
  }
  // Fixed-order tree over the chunks of each lane, then one partial per lane and segment.
  if (P > 0 && a.partial) {
    for (int q = 0; q < P; ++q) {
      __syncthreads();
      sh_gp[threadIdx.x] = gp[q];
      __syncthreads();
      for (int d = 1; d < a.NC; d <<= 1) {
        if ((y % (2 * d)) == 0 && y + d < a.NC) sh_gp[threadIdx.x] += sh_gp[threadIdx.x + d * a.LT];
        __syncthreads();
      }
      if (y == 0 && valid_lane) a.partial[(seg * a.lanes + lane) * P + q] = sh_gp[threadIdx.x];
    }
  }
}

/// grad_p(q, j) = Σ_b Σ_seg partial[seg][b*H + j][q], in that fixed order.
template <class S, class R>
__global__ void reduce_param_grad_kernel(const R* partial, index_t n_seg, index_t B, index_t H,
                                         int P, View<S> grad_p) {
  const index_t idx = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= H * P) return;
  const index_t q = idx / H, j = idx % H;
  const index_t lanes = B * H;
  double acc = 0.0;
  for (index_t b = 0; b < B; ++b)
    for (index_t s = 0; s < n_seg; ++s)
      acc += static_cast<double>(partial[(s * lanes + b * H + j) * P + q]);
  store_r(grad_p.data + q * grad_p.stride_c + j * grad_p.stride_h, static_cast<R>(acc));
}

// ---- step-by-step inference ------------------------------------------------------

template <class Cell, class S, class R>
__global__ void step_kernel(View<const S> u, View<const S> pv, View<const S> s_prev, View<S> s_next,
                            index_t H, index_t lanes) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1;
  const index_t lane = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lane >= lanes) return;
  const index_t b = lane / H, j = lane % H;
  R ug[G], p[PP], s[K], nx[K];
#pragma unroll
  for (int g = 0; g < G; ++g) ug[g] = load_r(u.data + b * u.stride_b + g * u.stride_c + j * u.stride_h);
#pragma unroll
  for (int q = 0; q < P; ++q) p[q] = load_r(pv.data + q * pv.stride_c + j * pv.stride_h);
  // A plain (coherent) load, not the read-only cache: s_next may be s_prev (in place).
#pragma unroll
  for (int k = 0; k < K; ++k)
    s[k] = to_r(s_prev.data[b * s_prev.stride_b + k * s_prev.stride_c + j * s_prev.stride_h]);
  cell_step<Cell>(s, ug, p, nx);
#pragma unroll
  for (int k = 0; k < K; ++k)
    store_r(s_next.data + b * s_next.stride_b + k * s_next.stride_c + j * s_next.stride_h, nx[k]);
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

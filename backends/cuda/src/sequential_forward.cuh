// The sequential forward kernel: exact stepping, one thread per lane (or per
// pair of adjacent lanes, lane_pack.cuh) and segment of the sequence.
//
// One thread per lane is latency-bound (~0.1 us a step on an H200) and
// leaves most of the GPU idle when lanes are few. So the sequence may be cut
// into C segments (blockDim.y = C; blockDim.x threads of consecutive lanes
// per segment, a warp up to 8 segments, half a warp beyond). Every segment is
// first stepped from a guessed start (the first from s0; the others from the
// state that a.burn_in steps before the segment, stepped from zero, lead to,
// which for contracting cells is usually already exact), then corrected: a
// segment whose start turns out different steps the true trajectory and the
// guessed one side by side, writing the true states, until the two are
// bitwise equal. From there on they are the same computation on the same
// inputs, so the states already written are the exact ones. Contracting
// cells merge within tens of steps, so the sequence costs about T / C steps
// plus the burn-in and the merge. A segment that does not merge changes its
// end state and its successor is corrected again in the next round; after
// C - 1 rounds every start is exact. The result is bitwise that of stepping
// the whole sequence in one thread, whatever the cell does.
#pragma once
#include "kernels.cuh"
#include "lane_pack.cuh"
#include "segment_rounds.cuh"

namespace flashrnn {
namespace cuda {
namespace detail {

/// probe + 0 * x: stays finite until x is inf or NaN (a check in one FMA).
__device__ __forceinline__ float fold_finite(float x, float probe) { return __fmaf_rn(x, 0.0f, probe); }
__device__ __forceinline__ double fold_finite(double x, double probe) { return __fma_rn(x, 0.0, probe); }

/// Loads the inputs of `count` (<= D) consecutive steps from `src` into `buf`
/// (zeros past `count`), V lanes an access.
template <class Pack, class S, int D, int G>
__device__ __forceinline__ void load_steps(typename Pack::packed (&buf)[D][G], const S* src, index_t st,
                                           index_t sc, int count) {
#pragma unroll
  for (int i = 0; i < D; ++i)
#pragma unroll
    for (int g = 0; g < G; ++g) buf[i][g] = i < count ? Pack::load(src + i * st + g * sc) : Pack::zero();
}

/// Converts a prefetched block to the compute type: cur[i][v][g] is input g
/// of lane v at step i.
template <class Pack, class R, int D, int V, int G>
__device__ __forceinline__ void unpack_steps(const typename Pack::packed (&buf)[D][G], R (&cur)[D][V][G]) {
#pragma unroll
  for (int i = 0; i < D; ++i)
#pragma unroll
    for (int g = 0; g < G; ++g) {
      R lanes[V];
      Pack::unpack(buf[i][g], lanes);
#pragma unroll
      for (int v = 0; v < V; ++v) cur[i][v][g] = lanes[v];
    }
}

/// One step of step_range for the V lanes of a thread (lane v's state at
/// a + v * K): true once the corrected trajectories `a` have all merged with
/// `b` (Correct); otherwise writes the states (Write). A lane that merged
/// before the others keeps stepping: its a and b stay equal, and the states
/// it writes again are the same bits.
template <class Cell, class Pack, class S, class R, int V, int PP, bool Correct, bool Write>
__device__ __forceinline__ bool one_step(const R (&in)[V][cell_traits<Cell>::G], const R (&p)[V][PP], R* a, R* b,
                                         R& probe, S*& out, index_t out_st, index_t out_sc) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  R nx[V * K];
#pragma unroll
  for (int v = 0; v < V; ++v) cell_step<Cell>(a + v * K, in[v], p[v], nx + v * K);
  if (Correct) {
    R nb[V * K];
#pragma unroll
    for (int v = 0; v < V; ++v) cell_step<Cell>(b + v * K, in[v], p[v], nb + v * K);
    if (same_bits<V * K>(nx, nb)) return true;
#pragma unroll
    for (int k = 0; k < V * K; ++k) b[k] = nb[k];
  } else {
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int g = 0; g < G; ++g) probe = fold_finite(in[v][g], probe);
  }
#pragma unroll
  for (int k = 0; k < V * K; ++k) a[k] = nx[k];
  if (Write) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      R lanes[V];
#pragma unroll
      for (int v = 0; v < V; ++v) lanes[v] = nx[v * K + k];
      Pack::store(out + k * out_sc, lanes);
    }
    out += out_st;
  }
  return false;
}

/// Steps the V lanes' states `a` over t in [t0, t1), writing them when
/// Write, with the inputs prefetched D steps ahead. Pass 1 (Correct = false)
/// also folds the inputs into `probe` (0 * x is NaN exactly for inf/NaN x).
/// Correction (Correct = true) steps `b`, the trajectories whose states are
/// already written, beside `a` and returns true at the first step where all
/// agree bitwise: every later state is then already in memory.
///
/// The loop runs over whole blocks of D steps with no per-step bound checks
/// (a block's loads and steps are all in range); only the last, partial block
/// checks its length. The checks were a fifth of the instructions of a
/// ParaGRU step (ncu on an H200, perf/README.md).
template <class Cell, class S, class R, int D, int V, int PP, bool Correct, bool Write>
__device__ __forceinline__ bool step_range(const LanePtr<const S>& u, const LanePtr<S>& st,
                                           const R (&p)[V][PP], index_t t0, index_t t1, R* a, R* b,
                                           R& probe) {
  constexpr int G = cell_traits<Cell>::G;
  using SS = typename std::remove_const<S>::type;
  using Pack = LanePack<SS, V>;
  const index_t full = (t1 - t0) / D;                // whole blocks
  const int rest = static_cast<int>((t1 - t0) % D);  // steps of the partial block
  // Running pointers (one add a block or step) rather than base + t * stride.
  const S* next = u.at(t0, 0);
  SS* out = Write ? st.at(t0, 0) : nullptr;
  typename Pack::packed buf[D][G];  // storage type: converted when used, so the loads overlap compute
  load_steps<Pack>(buf, next, u.st, u.sc, full > 0 ? D : rest);
  for (index_t blk = 0; blk < full; ++blk) {
    next += D * u.st;
    R cur[D][V][G];
    unpack_steps<Pack>(buf, cur);
    if (blk + 1 < full)
      load_steps<Pack>(buf, next, u.st, u.sc, D);
    else if (rest > 0)
      load_steps<Pack>(buf, next, u.st, u.sc, rest);
#pragma unroll
    for (int i = 0; i < D; ++i)
      if (one_step<Cell, Pack, SS, R, V, PP, Correct, Write>(cur[i], p, a, b, probe, out, st.st, st.sc))
        return true;
  }
  R cur[D][V][G];
  unpack_steps<Pack>(buf, cur);
#pragma unroll
  for (int i = 0; i < D - 1; ++i)
    if (i < rest && one_step<Cell, Pack, SS, R, V, PP, Correct, Write>(cur[i], p, a, b, probe, out, st.st, st.sc))
      return true;
  return false;
}

/// Block (LT threads of V lanes each, C segments); dynamic shared memory
/// C * LT * V * K values of R when C > 1 (the segments' end states). With
/// V = 2 the lanes are pairs of adjacent units of one batch row (H even, u
/// and the states contiguous over units and aligned to the pair: the
/// launcher checks).
template <class Cell, class S, class R, int D, int V, bool Write>
__global__ void __launch_bounds__(256) sequential_forward_kernel(FwdArgs<S, R> a) {
  constexpr int K = cell_traits<Cell>::K, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1, VK = V * K;
  extern __shared__ unsigned char sequential_smem[];
  const int x = threadIdx.x, c = threadIdx.y, C = blockDim.y;
  const index_t lane = (static_cast<index_t>(blockIdx.x) * blockDim.x + x) * V;  // the thread's first lane
  const bool active = lane < a.lanes;
  if (C == 1 && !active) return;  // with C > 1 every thread reaches the barriers
  const index_t b = active ? lane / a.H : 0, j = active ? lane % a.H : 0;
  const LanePtr<const S> u(a.u, b, j);
  const LanePtr<S> st(a.states, b, j);
  R p[V][PP], s[VK], start[VK];
  R probe = R(0);
  if (active) {
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int q = 0; q < P; ++q) {
        p[v][q] = load_r(a.p.data + q * a.p.stride_c + (j + v) * a.p.stride_h);
        probe = fold_finite(p[v][q], probe);
      }
  }
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const LanePtr<const S> s0(a.s0, b, j + v);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      s[v * K + k] = active && c == 0 && s0.base ? load_r(s0.at(0, k)) : R(0);
      probe = fold_finite(s[v * K + k], probe);
      start[v * K + k] = s[v * K + k];
    }
  }
  const index_t len = (a.T + C - 1) / C;
  const index_t t0 = min(a.T, c * len), t1 = min(a.T, t0 + len);
  if (active && c > 0 && a.burn_in > 0) {
    // The start guess: the last burn_in steps before t0 from zero (from s0
    // when they reach back to step 0, which makes the guess exact).
    const index_t tb = max(index_t(0), t0 - a.burn_in);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const LanePtr<const S> s0(a.s0, b, j + v);
#pragma unroll
      for (int k = 0; k < K; ++k) s[v * K + k] = tb == 0 && s0.base ? load_r(s0.at(0, k)) : R(0);
    }
    R unused = R(0);
    step_range<Cell, S, R, D, V, PP, false, false>(u, st, p, tb, t0, s, nullptr, unused);
#pragma unroll
    for (int k = 0; k < VK; ++k) start[k] = s[k];
  }
  if (active) step_range<Cell, S, R, D, V, PP, false, Write>(u, st, p, t0, t1, s, nullptr, probe);
  if (C > 1)
    correction_rounds<VK, true>(reinterpret_cast<R*>(sequential_smem), c, C, active, s, start,
                                [&](R (&fresh)[VK], R (&old)[VK]) {
                                  return step_range<Cell, S, R, D, V, PP, true, Write>(
                                      u, st, p, t0, t1, fresh, old, probe);
                                });
  if (!active) return;
  if (c == C - 1 && a.final_state.data) {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const LanePtr<S> fs(a.final_state, b, j + v);
#pragma unroll
      for (int k = 0; k < K; ++k) store_r(fs.at(0, k), s[v * K + k]);
    }
  }
  if (!finite(probe) && a.rep) a.rep->input_nonfinite = 1;
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

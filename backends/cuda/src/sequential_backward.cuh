// The sequential backward kernel: the exact reverse sweep of the adjoint,
// one thread per lane and segment of the sequence.
//
// The adjoint runs backwards in time, λ_t = g_t + A_{t+1}^T λ_{t+1} (A the
// state Jacobian of a step, g the upstream gradient), and a step hands
// A_t^T λ_t ("back") to the step before it. Like the forward kernel
// (sequential_forward.cuh), the sequence is cut into C segments (blockDim.y)
// when lanes are too few to fill the GPU, mirrored in time: the last segment
// starts exact (nothing after T); every other segment guesses the hand-over
// from its successor by sweeping the a.burn_in steps after it from zero, then
// is corrected: a segment whose guess turns out wrong sweeps the true and the
// guessed adjoint side by side, rewriting grad_u, until their λ agree
// bitwise; from there on both are the same computation on the same inputs.
// The adjoint of a contracting cell forgets as fast as the forward does. After
// at most C - 1 rounds every hand-over is exact, so grad_u and grad_s0 are
// bitwise those of one thread sweeping the whole sequence. grad_p is summed
// per segment (the correction adds the difference of the corrected steps'
// terms), so its rounding differs from one sweep; it is deterministic.
#pragma once
#include "kernels.cuh"

namespace flashrnn {
namespace cuda {
namespace detail {

/// What a reverse step at t reads: the upstream gradient (grad_states_t, plus
/// grad_final at T - 1), the state entering the step and u_t.
template <int K, int G, class R>
struct ReverseInputs {
  R g[K], prev[K], u[G];
};

/// Loads the reverse-step inputs of `count` (<= D) steps t, t - 1, ... into
/// buf[0], buf[1], ... (the rest untouched).
template <int K, int G, int D, class S, class R>
__device__ __forceinline__ void load_reverse(ReverseInputs<K, G, R> (&buf)[D],
                                             const LanePtr<const S>& gs, const LanePtr<const S>& gf,
                                             const LanePtr<const S>& st, const LanePtr<const S>& s0,
                                             const LanePtr<const S>& u, index_t T, index_t t,
                                             int count) {
#pragma unroll
  for (int i = 0; i < D; ++i)
    if (i < count) {
      upstream<K>(gs, gf, T, t - i, buf[i].g);
      state_before<K>(st, s0, t - i, buf[i].prev);
      load_u<G>(u, t - i, buf[i].u);
    }
}

/// One reverse step at t. Plain (Correct = false): λ = g + back; writes
/// grad_u_t (where gu has a base), adds Jp^T λ to gp, and back = A^T λ.
/// Correct: steps the guessed adjoint `old` beside; returns true, doing
/// nothing, if the two λ are bitwise equal (every earlier step then is too);
/// otherwise adds Jp^T (λ - λ_old) to gp and steps both.
template <class Cell, bool Correct, class S, class R, int PP>
__device__ __forceinline__ bool reverse_step(
    const ReverseInputs<cell_traits<Cell>::K, cell_traits<Cell>::G, R>& in, const R (&p)[PP],
    R* back, R* old, R* gp, const LanePtr<S>& gu, index_t t) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  R lam[K], lo[K];
#pragma unroll
  for (int k = 0; k < K; ++k) lam[k] = in.g[k] + back[k];
  if (Correct) {
#pragma unroll
    for (int k = 0; k < K; ++k) lo[k] = in.g[k] + old[k];
    if (same_bits<K>(lam, lo)) return true;
  }
  R f[K], A[K * K], Ju[K * G], Jp[K * PP];
  cell_step_full_jacobian<Cell>(in.prev, in.u, p, f, A, Ju, Jp);
  if (!Correct) {
    adjoint_step<K, G, P, S, R>(A, Ju, Jp, lam, gu, t, gp, back);
    return false;
  }
  R gp_new[PP], gp_old[PP];
#pragma unroll
  for (int q = 0; q < P; ++q) gp_new[q] = gp_old[q] = R(0);
  const LanePtr<S> none(View<S>{}, 0, 0);  // the guessed adjoint writes nothing
  adjoint_step<K, G, P, S, R>(A, Ju, Jp, lam, gu, t, gp_new, back);
  adjoint_step<K, G, P, S, R>(A, Ju, Jp, lo, none, t, gp_old, old);
#pragma unroll
  for (int q = 0; q < P; ++q) gp[q] += gp_new[q] - gp_old[q];
  return false;
}

/// Sweeps t = t1 - 1 down to t0 from the hand-over `back` (A_{t1}^T λ_{t1};
/// zero at T), with the inputs prefetched D steps ahead; `back` ends as the
/// hand-over to step t0 - 1. Correct: see reverse_step; returns true on
/// merging.
template <class Cell, bool Correct, int D, class S, class R, int PP>
__device__ __forceinline__ bool reverse_range(const LanePtr<const S>& gs,
                                              const LanePtr<const S>& gf,
                                              const LanePtr<const S>& st,
                                              const LanePtr<const S>& s0, const LanePtr<const S>& u,
                                              const LanePtr<S>& gu, const R (&p)[PP], index_t T,
                                              index_t t0, index_t t1, R* back, R* old, R* gp) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  using In = ReverseInputs<K, G, R>;
  const index_t full = (t1 - t0) / D;
  const int rest = static_cast<int>((t1 - t0) % D);
  In nxt[D];
  load_reverse<K, G, D>(nxt, gs, gf, st, s0, u, T, t1 - 1, full > 0 ? D : rest);
  index_t t = t1 - 1;
  for (index_t blk = 0; blk < full; ++blk) {
    In cur[D];
#pragma unroll
    for (int i = 0; i < D; ++i) cur[i] = nxt[i];
    if (blk + 1 < full)
      load_reverse<K, G, D>(nxt, gs, gf, st, s0, u, T, t - D, D);
    else if (rest > 0)
      load_reverse<K, G, D>(nxt, gs, gf, st, s0, u, T, t - D, rest);
#pragma unroll
    for (int i = 0; i < D; ++i)
      if (reverse_step<Cell, Correct, S>(cur[i], p, back, old, gp, gu, t - i)) return true;
    t -= D;
  }
#pragma unroll
  for (int i = 0; i < D - 1; ++i)
    if (i < rest && reverse_step<Cell, Correct, S>(nxt[i], p, back, old, gp, gu, t - i))
      return true;
  return false;
}

/// Block (LT lanes, C segments); dynamic shared memory C * LT * K values of R
/// when C > 1 (the segments' hand-overs). grad_p partials go to
/// a.partial[(c * lanes + lane) * P + q] (reduced over segments and batch by
/// reduce_param_grad_kernel).
template <class Cell, class S, class R, int D>
__global__ void __launch_bounds__(256) sequential_backward_kernel(BwdArgs<S, R> a) {
  constexpr int K = cell_traits<Cell>::K, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1;
  extern __shared__ unsigned char sequential_backward_smem[];
  const int x = threadIdx.x, c = threadIdx.y, C = blockDim.y;
  const index_t lane = static_cast<index_t>(blockIdx.x) * blockDim.x + x;
  const bool active = lane < a.lanes;
  if (C == 1 && !active) return;  // with C > 1 every thread reaches the barriers
  const index_t b = active ? lane / a.H : 0, j = active ? lane % a.H : 0;
  const LanePtr<const S> u(a.u, b, j), st(a.states, b, j), s0(a.s0, b, j), gs(a.grad_states, b, j),
      gf(a.grad_final, b, j);
  const LanePtr<S> gu(a.grad_u, b, j);
  R p[PP], gp[PP];
#pragma unroll
  for (int q = 0; q < PP; ++q) {
    p[q] = active && q < P ? load_r(a.p.data + q * a.p.stride_c + j * a.p.stride_h) : R(0);
    gp[q] = R(0);
  }
  const index_t len = (a.T + C - 1) / C;
  const index_t t0 = min(a.T, c * len), t1 = min(a.T, t0 + len);
  // back: the hand-over entering the segment from step t1; start: its guess.
  R back[K], start[K];
  R* const no_old = nullptr;  // the plain sweep steps no guessed adjoint
#pragma unroll
  for (int k = 0; k < K; ++k) back[k] = R(0);
  if (active && c < C - 1 && a.burn_in > 0) {
    // The guess: the adjoint over the burn_in steps after the segment, from
    // zero (exact when they reach T).
    const index_t tb = min(a.T, t1 + a.burn_in);
    R unused[PP] = {};
    const LanePtr<S> none(View<S>{}, 0, 0);
    reverse_range<Cell, false, D>(gs, gf, st, s0, u, none, p, a.T, t1, tb, back, no_old, unused);
  }
#pragma unroll
  for (int k = 0; k < K; ++k) start[k] = back[k];
  if (active)
    reverse_range<Cell, false, D>(gs, gf, st, s0, u, gu, p, a.T, t0, t1, back, no_old, gp);
  if (C > 1) {
    R* ends = reinterpret_cast<R*>(sequential_backward_smem);
    const int stride = static_cast<int>(blockDim.x) * K;
#pragma unroll
    for (int k = 0; k < K; ++k) ends[c * stride + x * K + k] = back[k];
    __syncthreads();
    for (int round = 1; round < C; ++round) {
      R in[K];
#pragma unroll
      for (int k = 0; k < K; ++k) in[k] = c < C - 1 ? ends[(c + 1) * stride + x * K + k] : start[k];
      __syncthreads();
      bool changed = false;
      if (active && !same_bits<K>(in, start)) {
        R fresh[K], old[K];
#pragma unroll
        for (int k = 0; k < K; ++k) {
          fresh[k] = in[k];
          old[k] = start[k];
          start[k] = in[k];
        }
        if (!reverse_range<Cell, true, D>(gs, gf, st, s0, u, gu, p, a.T, t0, t1, fresh, old, gp)) {
#pragma unroll
          for (int k = 0; k < K; ++k) ends[c * stride + x * K + k] = back[k] = fresh[k];
          changed = true;
        }
      }
      if (!__syncthreads_or(changed)) break;
    }
  }
  if (!active) return;
  if (c == 0 && a.grad_s0.data) {
    const LanePtr<S> g0(a.grad_s0, b, j);
#pragma unroll
    for (int k = 0; k < K; ++k) store_r(g0.at(0, k), back[k]);
  }
  if (a.partial)
#pragma unroll
    for (int q = 0; q < P; ++q) a.partial[(c * a.lanes + lane) * P + q] = gp[q];
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

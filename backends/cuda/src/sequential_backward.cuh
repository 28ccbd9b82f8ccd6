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
#include "segment_rounds.cuh"

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

/// One reverse step. Plain (Correct = false): λ = g + back; writes grad_u
/// to gu_t[g * gu_sc] (where gu_t is not null), adds Jp^T λ to gp, and
/// back = A^T λ. Correct: steps the guessed adjoint `old` beside; returns
/// true, doing nothing, if the two λ are bitwise equal (every earlier step
/// then is too); otherwise adds Jp^T (λ - λ_old) to gp and steps both.
template <class Cell, bool Correct, class S, class R, int PP>
__device__ __forceinline__ bool reverse_step(
    const ReverseInputs<cell_traits<Cell>::K, cell_traits<Cell>::G, R>& in, const R (&p)[PP],
    R* back, R* old, R* gp, S* gu_t, index_t gu_sc) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  R lam[K], lo[K];
#pragma unroll
  for (int k = 0; k < K; ++k) lam[k] = in.g[k] + back[k];
  if constexpr (Correct) {
#pragma unroll
    for (int k = 0; k < K; ++k) lo[k] = in.g[k] + old[k];
    if (same_bits<K>(lam, lo)) return true;
  }
  R f[K], A[K * K], Ju[K * G], Jp[K * PP];
  cell_step_full_jacobian<Cell>(in.prev, in.u, p, f, A, Ju, Jp);
  if constexpr (!Correct) {
    adjoint_step<K, G, P, S, R>(A, Ju, Jp, lam, gu_t, gu_sc, gp, back);
  } else {
    R gp_new[PP], gp_old[PP];
#pragma unroll
    for (int q = 0; q < P; ++q) gp_new[q] = gp_old[q] = R(0);
    adjoint_step<K, G, P, S, R>(A, Ju, Jp, lam, gu_t, gu_sc, gp_new, back);
    adjoint_step<K, G, P, S, R>(A, Ju, Jp, lo, static_cast<S*>(nullptr), 0, gp_old,
                                old);  // writes nothing
#pragma unroll
    for (int q = 0; q < P; ++q) gp[q] += gp_new[q] - gp_old[q];
  }
  return false;
}

/// Loads the inputs of `count` (<= D) interior steps t, t - 1, ... (0 < t - i
/// < T - 1: no grad_final, the state before is in `states`) into buf[0],
/// buf[1], ... through running pointers at step t, moved one step back per
/// step loaded: grad_states at t (`g`, null: zeros, g_step 0), states at
/// t - 1 (`prev`), u at t (`u`). sc: the strides between components.
template <int K, int G, int D, class S, class R>
__device__ __forceinline__ void load_interior(ReverseInputs<K, G, R> (&buf)[D], const S*& g,
                                              index_t g_step, index_t g_sc, const S*& prev,
                                              index_t s_step, index_t s_sc, const S*& u,
                                              index_t u_step, index_t u_sc, int count) {
#pragma unroll
  for (int i = 0; i < D; ++i)
    if (i < count) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        buf[i].g[k] = g ? load_r(g + k * g_sc) : R(0);
        buf[i].prev[k] = load_r(prev + k * s_sc);
      }
#pragma unroll
      for (int c = 0; c < G; ++c) buf[i].u[c] = load_r(u + c * u_sc);
      g -= g_step;
      prev -= s_step;
      u -= u_step;
    }
}

/// Sweeps the interior steps t = t1 - 1 down to t0 (0 < t0, t1 < T) from the
/// hand-over `back`, with the inputs prefetched D steps ahead through running
/// pointers (no per-step tests or index arithmetic); see reverse_range.
template <class Cell, bool Correct, int D, class S, class R, int PP>
__device__ __forceinline__ bool reverse_interior(const LanePtr<const S>& gs,
                                                 const LanePtr<const S>& st,
                                                 const LanePtr<const S>& u, const LanePtr<S>& gu,
                                                 const R (&p)[PP], index_t t0, index_t t1, R* back,
                                                 R* old, R* gp) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  using In = ReverseInputs<K, G, R>;
  if (t1 <= t0) return false;
  const index_t full = (t1 - t0) / D;
  const int rest = static_cast<int>((t1 - t0) % D);
  // A missing grad_states or grad_u keeps its null pointer (step 0).
  const index_t g_step = gs.base ? gs.st : 0, w_step = gu.base ? gu.st : 0;
  const S* g = gs.base ? gs.at(t1 - 1, 0) : nullptr;
  const S* prev = st.at(t1 - 2, 0);
  const S* uu = u.at(t1 - 1, 0);
  S* w = gu.base ? gu.at(t1 - 1, 0) : nullptr;
  In buf[D];
  load_interior<K, G, D>(buf, g, g_step, gs.sc, prev, st.st, st.sc, uu, u.st, u.sc,
                         full > 0 ? D : rest);
  for (index_t blk = 0; blk < full; ++blk) {
    const int refill = blk + 1 < full ? D : rest;
#pragma unroll
    for (int i = 0; i < D; ++i) {
      const In cur = buf[i];
      if (i < refill) {
        In one[1];
        load_interior<K, G, 1>(one, g, g_step, gs.sc, prev, st.st, st.sc, uu, u.st, u.sc, 1);
        buf[i] = one[0];
      }
      if (reverse_step<Cell, Correct, S>(cur, p, back, old, gp, w, gu.sc)) return true;
      w -= w_step;
    }
  }
#pragma unroll
  for (int i = 0; i < D - 1; ++i) {
    if (i < rest) {
      if (reverse_step<Cell, Correct, S>(buf[i], p, back, old, gp, w, gu.sc)) return true;
      w -= w_step;
    }
  }
  return false;
}

/// One step with the general loads (grad_final at T - 1, s0 at 0).
template <class Cell, bool Correct, class S, class R, int PP>
__device__ __forceinline__ bool reverse_edge_body(
    const LanePtr<const S>& gs, const LanePtr<const S>& gf, const LanePtr<const S>& st,
    const LanePtr<const S>& s0, const LanePtr<const S>& u, const LanePtr<S>& gu, const R (&p)[PP],
    index_t T, index_t t, R* back, R* old, R* gp) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  ReverseInputs<K, G, R> in[1];
  load_reverse<K, G, 1>(in, gs, gf, st, s0, u, T, t, 1);
  return reverse_step<Cell, Correct, S>(in[0], p, back, old, gp, gu.base ? gu.at(t, 0) : nullptr,
                                        gu.sc);
}

/// reverse_edge_body out of line, for wider states: it runs at most twice a
/// sweep, and inlined its registers would add to the interior loop's
/// (ParaLSTM: 177-185 registers instead of 124-128). The price is back,
/// old and gp in local memory (their addresses are taken), so for state_dim
/// 1, which stays at 128 registers inlined, reverse_range inlines it.
template <class Cell, bool Correct, class S, class R, int PP>
__device__ __noinline__ bool reverse_edge_step(
    const LanePtr<const S>& gs, const LanePtr<const S>& gf, const LanePtr<const S>& st,
    const LanePtr<const S>& s0, const LanePtr<const S>& u, const LanePtr<S>& gu, const R (&p)[PP],
    index_t T, index_t t, R* back, R* old, R* gp) {
  return reverse_edge_body<Cell, Correct>(gs, gf, st, s0, u, gu, p, T, t, back, old, gp);
}

/// Sweeps t = t1 - 1 down to t0 from the hand-over `back` (A_{t1}^T λ_{t1};
/// zero at T); `back` ends as the hand-over to step t0 - 1. Correct: see
/// reverse_step; returns true on merging. Step T - 1 (which adds grad_final)
/// and step 0 (whose state before is s0) take the general loads, one step
/// each; the steps between run through reverse_interior.
template <class Cell, bool Correct, int D, class S, class R, int PP>
__device__ __forceinline__ bool reverse_range(const LanePtr<const S>& gs,
                                              const LanePtr<const S>& gf,
                                              const LanePtr<const S>& st,
                                              const LanePtr<const S>& s0, const LanePtr<const S>& u,
                                              const LanePtr<S>& gu, const R (&p)[PP], index_t T,
                                              index_t t0, index_t t1, R* back, R* old, R* gp) {
  auto edge_step = [&](index_t t) {
    if constexpr (cell_traits<Cell>::K == 1)
      return reverse_edge_body<Cell, Correct>(gs, gf, st, s0, u, gu, p, T, t, back, old, gp);
    else
      return reverse_edge_step<Cell, Correct>(gs, gf, st, s0, u, gu, p, T, t, back, old, gp);
  };
  index_t hi = t1;
  if (hi > t0 && hi == T) {
    if (edge_step(T - 1)) return true;
    --hi;
  }
  const index_t lo = t0 == 0 && hi > 0 ? 1 : t0;
  if (reverse_interior<Cell, Correct, D>(gs, st, u, gu, p, lo, hi, back, old, gp)) return true;
  if (lo > t0) return edge_step(0);
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
  if (C > 1)
    correction_rounds<K, false>(reinterpret_cast<R*>(sequential_backward_smem), c, C, active, back,
                                start, [&](R (&fresh)[K], R (&old)[K], bool /*needs: always*/) {
                                  return reverse_range<Cell, true, D>(gs, gf, st, s0, u, gu, p, a.T,
                                                                      t0, t1, fresh, old, gp);
                                });
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

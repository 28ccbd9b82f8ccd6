// Backward (adjoint) of one lane. With upstream gradients g_t = ∂L/∂s_t:
//   λ_{T-1} = g_{T-1} + g_final,  λ_t = g_t + A_{t+1}^T λ_{t+1}
//   ∂L/∂u_t = Ju_t^T λ_t,  ∂L/∂p = Σ_t Jp_t^T λ_t,  ∂L/∂s0 = A_0^T λ_0
// with all local derivatives taken at the solved trajectory (recomputed, not stored
// by the forward).
#pragma once
#include <vector>

#include "affine.hpp"
#include "cell.hpp"
#include "lane_forward.hpp"

namespace flashrnn {

/// Per-lane adjoint inputs and outputs (contiguous compute-precision arrays).
/// grad_states (T x K) and grad_final (K) may be null (zero upstream gradient).
template <class R>
struct LaneAdjointIO {
  const R* u;            // T x G
  const R* p;            // P
  const R* s0;           // K
  const R* states;       // T x K, the forward solution
  const R* grad_states;  // T x K or null
  const R* grad_final;   // K or null
  R* grad_u;             // T x G, written
  double* grad_p;        // P, accumulated into (double: sums over B*T terms)
  R* grad_s0;            // K, written
};

namespace detail {
template <class Cell, class R>
struct JacobianSizes {
  static constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G,
                       P = cell_traits<Cell>::P;
  static constexpr int per_step = K * K + K * G + K * (P > 0 ? P : 1);
};

/// g_t (+ g_final at the last step) into `out`.
template <int K, class R>
void upstream(const LaneAdjointIO<R>& io, index_t T, index_t t, R* out) {
  for (int i = 0; i < K; ++i) {
    R g = io.grad_states ? io.grad_states[t * K + i] : R(0);
    if (t == T - 1 && io.grad_final) g += io.grad_final[i];
    out[i] = g;
  }
}

/// grad_u[t] = Ju^T λ and grad_p += Jp^T λ.
template <int K, int G, int P, class R>
void scatter_input_grads(const R* Ju, const R* Jp, const R* lam, R* grad_u_t, double* grad_p) {
  for (int g = 0; g < G; ++g) {
    R acc = R(0);
    for (int i = 0; i < K; ++i) acc += Ju[i * G + g] * lam[i];
    grad_u_t[g] = acc;
  }
  for (int q = 0; q < P; ++q) {
    double acc = 0.0;
    for (int i = 0; i < K; ++i) acc += static_cast<double>(Jp[i * P + q]) * lam[i];
    grad_p[q] += acc;
  }
}

template <int K, class R>
void transpose_apply(const R* A, const R* lam, R* out) {
  for (int j = 0; j < K; ++j) {
    R acc = R(0);
    for (int i = 0; i < K; ++i) acc += A[i * K + j] * lam[i];
    out[j] = acc;
  }
}
}  // namespace detail

/// Reverse sweep, one step at a time: the exact adjoint at the cost of one
/// Jacobian evaluation per step and no storage.
template <class Cell, class R>
void adjoint_lane_sequential(index_t T, const LaneAdjointIO<R>& io) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  R lam[K], A[K * K], Ju[K * G], Jp[K * (P > 0 ? P : 1)], f[K];
  detail::upstream<K>(io, T, T - 1, lam);
  for (index_t t = T - 1; t >= 0; --t) {
    const R* prev = t == 0 ? io.s0 : io.states + (t - 1) * K;
    cell_step_full_jacobian<Cell>(prev, io.u + t * G, io.p, f, A, Ju, Jp);
    detail::scatter_input_grads<K, G, P>(Ju, Jp, lam, io.grad_u + t * G, io.grad_p);
    R back[K];
    detail::transpose_apply<K>(A, lam, back);
    if (t == 0) {
      for (int i = 0; i < K; ++i) io.grad_s0[i] = back[i];
    } else {
      detail::upstream<K>(io, T, t - 1, lam);
      for (int i = 0; i < K; ++i) lam[i] += back[i];
    }
  }
}

/// Time-parallel adjoint: local derivatives of all steps in parallel, one
/// reverse affine scan for λ, then the input and parameter gradients in parallel.
template <class Cell, class R, class Exec>
void adjoint_lane_parallel(const Exec& exec, index_t T, const LaneAdjointIO<R>& io,
                           LaneScratch<R, cell_traits<Cell>::K>& scratch) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr int J = detail::JacobianSizes<Cell, R>::per_step;
  using Map = Affine<R, K>;
  scratch.jac.resize(static_cast<size_t>(T * J));
  scratch.maps.resize(static_cast<size_t>(T));
  R* jac = scratch.jac.data();
  Map* maps = scratch.maps.data();

  exec.for_each(T, [&](index_t t) {
    const R* prev = t == 0 ? io.s0 : io.states + (t - 1) * K;
    R f[K];
    R* A = jac + t * J;
    cell_step_full_jacobian<Cell>(prev, io.u + t * G, io.p, f, A, A + K * K, A + K * K + K * G);
  });
  // maps[t]: λ_t = A_{t+1}^T λ_{t+1} + g_t; the last one is the constant g_{T-1}.
  exec.for_each(T, [&](index_t t) {
    R g[K];
    detail::upstream<K>(io, T, t, g);
    maps[t] = t == T - 1 ? Map::constant(g) : transposed_linear<R, K>(jac + (t + 1) * J, g);
  });
  exec.reverse_inclusive_scan(maps, T);  // maps[t].c = λ_t

  struct ParamSum {
    double v[P > 0 ? P : 1] = {};
  };
  const ParamSum dp = exec.reduce(
      T, ParamSum{},
      [&](index_t t) {
        ParamSum s;
        const R* A = jac + t * J;
        detail::scatter_input_grads<K, G, P>(A + K * K, A + K * K + K * G, maps[t].c,
                                             io.grad_u + t * G, s.v);
        return s;
      },
      [](ParamSum a, const ParamSum& b) {
        for (int q = 0; q < P; ++q) a.v[q] += b.v[q];
        return a;
      });
  for (int q = 0; q < P; ++q) io.grad_p[q] += dp.v[q];
  detail::transpose_apply<K>(jac, maps[0].c, io.grad_s0);
}

}  // namespace flashrnn

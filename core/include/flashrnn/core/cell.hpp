// The cell concept and the local derivatives derived from it.
//
// A cell is a stateless struct:
//   struct MyCell {
//     static constexpr int state_dim = K;   // state per lane
//     static constexpr int input_dim = G;   // pre-activations per lane and step
//     static constexpr int param_dim = P;   // recurrent parameters per unit
//     static constexpr const char* name = "MyCell";
//     template <class V> FLASHRNN_HOST_DEVICE
//     static void step(const V* s, const V* u, const V* p, V* s_next);
//   };
// `step` is instantiated with plain scalars (stepping) and with Dual numbers
// (Jacobians), on host and device alike.
#pragma once
#include <type_traits>

#include "config.hpp"
#include "dual.hpp"

namespace flashrnn {

template <class Cell>
struct cell_traits {
  static constexpr int K = Cell::state_dim;
  static constexpr int G = Cell::input_dim;
  static constexpr int P = Cell::param_dim;
  static_assert(K >= 1 && G >= 1 && P >= 0, "cell dimensions must be positive");
};

/// Plain step: s_next = f(s, u; p).
template <class Cell, class T>
FLASHRNN_HOST_DEVICE inline void cell_step(const T* s, const T* u, const T* p, T* s_next) {
  Cell::template step<T>(s, u, p, s_next);
}

/// s_next = f(s, u; p) and A = ∂f/∂s (K x K row-major): K tangents, what the
/// Newton forward needs.
template <class Cell, class T>
FLASHRNN_HOST_DEVICE inline void cell_step_state_jacobian(const T* s, const T* u, const T* p,
                                                          T* s_next, T* A) {
  constexpr int K = cell_traits<Cell>::K;
  constexpr int G = cell_traits<Cell>::G;
  constexpr int P = cell_traits<Cell>::P;
  using D = Dual<T, K>;
  D sd[K], ud[G], pd[P > 0 ? P : 1], out[K];
  FLASHRNN_UNROLL
  for (int i = 0; i < K; ++i) sd[i] = D::variable(s[i], i);
  FLASHRNN_UNROLL
  for (int i = 0; i < G; ++i) ud[i] = D(u[i]);
  FLASHRNN_UNROLL
  for (int i = 0; i < P; ++i) pd[i] = D(p[i]);
  Cell::template step<D>(sd, ud, pd, out);
  FLASHRNN_UNROLL
  for (int i = 0; i < K; ++i) {
    s_next[i] = out[i].v;
    FLASHRNN_UNROLL
    for (int j = 0; j < K; ++j) A[i * K + j] = out[i].d[j];
  }
}

/// All local derivatives at once (K + G + P tangents), what the adjoint needs:
/// A = ∂f/∂s (K x K), Ju = ∂f/∂u (K x G), Jp = ∂f/∂p (K x P), all row-major.
template <class Cell, class T>
FLASHRNN_HOST_DEVICE inline void cell_step_full_jacobian(const T* s, const T* u, const T* p,
                                                         T* s_next, T* A, T* Ju, T* Jp) {
  constexpr int K = cell_traits<Cell>::K;
  constexpr int G = cell_traits<Cell>::G;
  constexpr int P = cell_traits<Cell>::P;
  using D = Dual<T, K + G + P>;
  D sd[K], ud[G], pd[P > 0 ? P : 1], out[K];
  FLASHRNN_UNROLL
  for (int i = 0; i < K; ++i) sd[i] = D::variable(s[i], i);
  FLASHRNN_UNROLL
  for (int i = 0; i < G; ++i) ud[i] = D::variable(u[i], K + i);
  FLASHRNN_UNROLL
  for (int i = 0; i < P; ++i) pd[i] = D::variable(p[i], K + G + i);
  Cell::template step<D>(sd, ud, pd, out);
  FLASHRNN_UNROLL
  for (int i = 0; i < K; ++i) {
    s_next[i] = out[i].v;
    FLASHRNN_UNROLL
    for (int j = 0; j < K; ++j) A[i * K + j] = out[i].d[j];
    FLASHRNN_UNROLL
    for (int j = 0; j < G; ++j) Ju[i * G + j] = out[i].d[K + j];
    FLASHRNN_UNROLL
    for (int j = 0; j < P; ++j) Jp[i * (P > 0 ? P : 1) + j] = out[i].d[K + G + j];
  }
}

}  // namespace flashrnn

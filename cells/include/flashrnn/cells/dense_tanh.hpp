// Dense tanh (Elman) cell: s' = tanh(W s + u), s and u in R^H, W an H x H
// recurrent matrix shared by the batch. One lane per batch element with state
// size K = H known only at run time, so it is not a `Cell` of core/cell.hpp
// (compile-time K, per-unit parameters): it follows the dense-cell concept of
// core/dense_lane.hpp instead, and its local derivatives are written by hand
// (tangents over the H x H parameters would be wasteful).
//
// All arrays are contiguous and row-major: W[i * H + j] multiplies s[j] into
// output i. Hidden sizes are small (the full-Newton solver composes H x H maps).
#pragma once
#include "flashrnn/core/config.hpp"
#include "flashrnn/core/math.hpp"

namespace flashrnn {
namespace cells {

struct DenseTanh {
  static constexpr const char* name = "DenseTanh";

  /// s_next = tanh(W s + u). s_next must not alias s.
  template <class R>
  FLASHRNN_HOST_DEVICE static void step(index_t H, const R* W, const R* s, const R* u, R* s_next) {
    for (index_t i = 0; i < H; ++i) {
      R acc = u[i];
      const R* w = W + i * H;
      for (index_t j = 0; j < H; ++j) acc += w[j] * s[j];
      s_next[i] = math::tanh(acc);
    }
  }

  /// s_next = f(s, u) and the full state Jacobian A = ∂f/∂s = diag(1 - s_next^2) W
  /// (H x H, row-major).
  template <class R>
  FLASHRNN_HOST_DEVICE static void step_jacobian(index_t H, const R* W, const R* s, const R* u,
                                                 R* s_next, R* A) {
    step(H, W, s, u, s_next);
    for (index_t i = 0; i < H; ++i) {
      const R d = R(1) - s_next[i] * s_next[i];
      for (index_t j = 0; j < H; ++j) A[i * H + j] = d * W[i * H + j];
    }
  }

  /// s_next = f(s, u) and the diagonal of ∂f/∂s only: a[i] = (1 - s_next[i]^2) W[i][i]
  /// (what the quasi-Newton solver keeps).
  template <class R>
  FLASHRNN_HOST_DEVICE static void step_jacobian_diag(index_t H, const R* W, const R* s,
                                                      const R* u, R* s_next, R* a) {
    step(H, W, s, u, s_next);
    for (index_t i = 0; i < H; ++i) a[i] = (R(1) - s_next[i] * s_next[i]) * W[i * H + i];
  }

  /// Vector-Jacobian products of one step at s (input) and s_next = f(s, u)
  /// (output, already known from the trajectory), for the cotangent lam = ∂L/∂s_next:
  ///   du = (∂f/∂u)^T lam = diag(1 - s_next^2) lam                 (written)
  ///   ds = (∂f/∂s)^T lam = W^T du                                  (written unless null)
  ///   dW += (∂f/∂W)^T lam, i.e. dW[i][j] += du[i] s[j]             (accumulated unless null)
  /// du must not alias lam when ds is requested from the same buffer.
  template <class R>
  FLASHRNN_HOST_DEVICE static void step_vjp(index_t H, const R* W, const R* s, const R* /*u*/,
                                            const R* s_next, const R* lam, R* du, R* ds,
                                            double* dW) {
    for (index_t i = 0; i < H; ++i) du[i] = (R(1) - s_next[i] * s_next[i]) * lam[i];
    if (ds != nullptr) {
      for (index_t j = 0; j < H; ++j) ds[j] = R(0);
      for (index_t i = 0; i < H; ++i) {
        const R* w = W + i * H;
        for (index_t j = 0; j < H; ++j) ds[j] += w[j] * du[i];
      }
    }
    if (dW != nullptr) {
      for (index_t i = 0; i < H; ++i) {
        const double di = static_cast<double>(du[i]);
        for (index_t j = 0; j < H; ++j) dW[i * H + j] += di * static_cast<double>(s[j]);
      }
    }
  }
};

}  // namespace cells
}  // namespace flashrnn

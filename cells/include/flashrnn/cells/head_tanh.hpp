// Multi-head dense tanh (Elman) cell: the hidden layer is split into heads of
// K units, each head a dense K x K recurrence of its own,
//   s' = tanh(W_j s + u),   s, u in R^K, W_j in R^{K x K},
// so a lane (batch b, head j) has a K-vector state: the small-dense-K case
// between the diagonal cells (K = 1, 2) and DenseTanh (one runtime-sized lane
// per batch element). G = K: u is the head's pre-activation x W_in^T + bias,
// computed outside the recurrence (so no recurrent bias). P = K * K: the head's
// W_j, row-major (p[i * K + k] multiplies s[k] into output i).
//
// Jacobians come from the dual numbers of core/cell.hpp like every cell; the
// adjoint carries K + K + K*K tangents (24 for K = 4, 80 for K = 8).
#pragma once
#include "flashrnn/core/cell.hpp"

namespace flashrnn {
namespace detail {
/// "HeadTanh<K>" as a constant string (Cell::name is a const char*).
template <int K>
struct head_tanh_name {
  static_assert(K >= 1 && K <= 99, "HeadTanh: state size K must be in 1 .. 99");
  static constexpr char value[] = {'H', 'e', 'a', 'd', 'T', 'a', 'n', 'h', '<',
                                   K >= 10 ? static_cast<char>('0' + K / 10) : static_cast<char>('0' + K),
                                   K >= 10 ? static_cast<char>('0' + K % 10) : '>',
                                   K >= 10 ? '>' : '\0', '\0'};
};
}  // namespace detail

namespace cells {

/// Dense tanh recurrence of K units per lane (one lane = one head of one
/// batch element). State, input and parameter layouts as in the file comment.
template <int K>
struct HeadTanh {
  static_assert(K >= 1, "HeadTanh: state size K must be positive");
  static constexpr int state_dim = K;
  static constexpr int input_dim = K;
  static constexpr int param_dim = K * K;
  static constexpr const char* name = flashrnn::detail::head_tanh_name<K>::value;

  template <class V>
  FLASHRNN_HOST_DEVICE static void step(const V* s, const V* u, const V* p, V* s_next) {
    V out[K];  // s_next may alias s
    FLASHRNN_UNROLL
    for (int i = 0; i < K; ++i) {
      V acc = u[i];
      FLASHRNN_UNROLL
      for (int k = 0; k < K; ++k) acc = acc + p[i * K + k] * s[k];
      out[i] = tanh(acc);
    }
    FLASHRNN_UNROLL
    for (int i = 0; i < K; ++i) s_next[i] = out[i];
  }
};

/// Heads of 4 units (P = 16): the size the CUDA backend instantiates.
using HeadTanh4 = HeadTanh<4>;
/// Heads of 8 units (P = 64): CPU only (see docs/api.md, cells).
using HeadTanh8 = HeadTanh<8>;

}  // namespace cells
}  // namespace flashrnn

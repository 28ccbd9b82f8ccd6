// Diagonal tanh (Elman) cell: h' = tanh(a h + u). K = G = P = 1. The simplest
// nonlinear recurrence; with |a| > 1 it is the library's stress case for Newton.
#pragma once
#include "flashrnn/core/cell.hpp"

namespace flashrnn {
namespace cells {

struct DiagTanh {
  static constexpr int state_dim = 1;
  static constexpr int input_dim = 1;
  static constexpr int param_dim = 1;
  static constexpr const char* name = "DiagTanh";

  template <class V>
  FLASHRNN_HOST_DEVICE static void step(const V* s, const V* u, const V* p, V* s_next) {
    s_next[0] = tanh(p[0] * s[0] + u[0]);
  }
};

}  // namespace cells
}  // namespace flashrnn

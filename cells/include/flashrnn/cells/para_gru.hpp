// ParaGRU (ParaRNN, 2025): a GRU whose recurrent weights are diagonal, so each
// hidden unit is an independent scalar recurrence (K = 1).
//   z = σ(a_z h + u_z),  r = σ(a_r h + u_r),  ĥ = tanh(a_h (h r) + u_h),
//   h' = z ĥ + (1 − z) h, computed as h + z (ĥ − h): one operation fewer
//   (two instructions instead of three in the CUDA kernels' step).
// u = (u_z, u_r, u_h) are the unit's pre-activations (x W^T + b, computed
// outside the recurrence); p = (a_z, a_r, a_h).
#pragma once
#include "flashrnn/core/cell.hpp"

namespace flashrnn {
namespace cells {

struct ParaGRU {
  static constexpr int state_dim = 1;
  static constexpr int input_dim = 3;
  static constexpr int param_dim = 3;
  static constexpr const char* name = "ParaGRU";

  template <class V>
  FLASHRNN_HOST_DEVICE static void step(const V* s, const V* u, const V* p, V* s_next) {
    const V h = s[0];
    const V z = sigmoid(p[0] * h + u[0]);
    const V r = sigmoid(p[1] * h + u[1]);
    const V h_cand = tanh(p[2] * (h * r) + u[2]);
    s_next[0] = h + z * (h_cand - h);
  }
};

}  // namespace cells
}  // namespace flashrnn

// ParaLSTM: coupled-input-forget-gate LSTM with peepholes and diagonal
// recurrent weights (ParaRNN, 2025). State s = (c, h), K = 2; the layer's
// output is h (state channel 1).
//   f = σ(a_f h + u_f + C_f c),  c̃ = tanh(a_c h + u_c),  c' = f c + (1 − f) c̃,
//   o = σ(a_o h + u_o + C_o c'), h' = o tanh(c')
// u = (u_f, u_c, u_o); p = (a_f, a_c, a_o, C_f, C_o).
#pragma once
#include "flashrnn/core/cell.hpp"

namespace flashrnn {
namespace cells {

struct ParaLSTM {
  static constexpr int state_dim = 2;
  static constexpr int input_dim = 3;
  static constexpr int param_dim = 5;
  static constexpr const char* name = "ParaLSTM";
  static constexpr int output_channel = 1;  ///< h

  template <class V>
  FLASHRNN_HOST_DEVICE static void step(const V* s, const V* u, const V* p, V* s_next) {
    const V c = s[0], h = s[1];
    const V f = sigmoid(p[0] * h + u[0] + p[3] * c);
    const V c_cand = tanh(p[1] * h + u[1]);
    const V c_next = c_cand + f * (c - c_cand);  // f c + (1 - f) c_cand, one operation fewer
    const V o = sigmoid(p[2] * h + u[2] + p[4] * c_next);
    s_next[0] = c_next;
    s_next[1] = o * tanh(c_next);
  }
};

}  // namespace cells
}  // namespace flashrnn

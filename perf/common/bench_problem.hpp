// The host data of one benchmark shape, shared by perf/cpu and perf/kokkos so
// that both benchmarks solve the same inputs and count the same I/O.
#pragma once
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "flashrnn/flashrnn.hpp"

namespace flashrnn_bench {

using flashrnn::index_t;

/// One layer's inputs and outputs, batch_first ([B][T][C*H]), and the states
/// sequential stepping gives for them (`reference`).
template <class Cell, class Real>
struct HostProblem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  index_t B, H, T;
  std::vector<Real> u, p, states, reference, grad_states, grad_u, grad_p;

  HostProblem(index_t lanes, index_t steps) : T(steps) {
    H = lanes < 256 ? lanes : 256;  // units per layer; the rest is batch
    B = lanes / H;
    std::mt19937_64 rng(1234);
    std::normal_distribution<Real> normal(0, 1);
    u.resize(static_cast<size_t>(B * T * G * H));
    // Pre-activations as x W^T + b would give: unit variance around a gate
    // bias that keeps the first gate (update / forget) leaning towards memory.
    for (index_t i = 0; i < B * T; ++i)
      for (int g = 0; g < G; ++g)
        for (index_t j = 0; j < H; ++j)
          u[static_cast<size_t>((i * G + g) * H + j)] = normal(rng) + (g == 0 ? Real(-1) : Real(0));
    // Recurrent weights of moderate size, as after training (|a| < ~1).
    p.resize(static_cast<size_t>(P * H));
    for (auto& x : p) x = Real(0.5) * normal(rng);
    states.assign(static_cast<size_t>(B * T * K * H), Real(0));
    grad_states.resize(states.size());
    for (auto& x : grad_states) x = normal(rng);
    grad_u.assign(u.size(), Real(0));
    grad_p.assign(p.size(), Real(0));
    reference.assign(states.size(), Real(0));
    flashrnn::SolverOptions o;
    o.mode = flashrnn::Mode::sequential;
    flashrnn::forward<Cell, Real>(u_view(), p_view(), {},
                                  flashrnn::batch_first(reference.data(), B, T, K, H), {}, o);
  }
  flashrnn::View<const Real> u_view() const {
    return flashrnn::batch_first<const Real>(u.data(), B, T, G, H);
  }
  flashrnn::View<const Real> p_view() const {
    return flashrnn::param_view<const Real>(p.data(), P, H);
  }
  flashrnn::View<Real> states_view() { return flashrnn::batch_first(states.data(), B, T, K, H); }
  flashrnn::View<const Real> grad_states_view() const {
    return flashrnn::batch_first<const Real>(grad_states.data(), B, T, K, H);
  }
  flashrnn::View<Real> grad_u_view() { return flashrnn::batch_first(grad_u.data(), B, T, G, H); }
  flashrnn::View<Real> grad_p_view() { return flashrnn::param_view(grad_p.data(), P, H); }

  /// One forward solve on the native backend, then its backward when asked.
  flashrnn::SolveReport solve_native(const flashrnn::SolverOptions& opts, bool with_backward,
                                     const flashrnn::Context& ctx) {
    const flashrnn::SolveReport rep =
        flashrnn::forward<Cell, Real>(u_view(), p_view(), {}, states_view(), {}, opts, ctx);
    if (with_backward)
      flashrnn::backward<Cell, Real>(u_view(), p_view(), {}, states_view(), grad_states_view(), {},
                                     grad_u_view(), grad_p_view(), {}, ctx);
    return rep;
  }

  /// max |s - reference| over a batch_first trajectory `s` of this shape.
  double max_diff(const Real* s) const {
    double d = 0;
    for (size_t i = 0; i < reference.size(); ++i)
      d = std::max(d, double(std::fabs(s[i] - reference[i])));
    return d;
  }
  /// Unavoidable I/O of one solve: forward reads u and writes states once;
  /// backward reads u, states, grad_states and writes grad_u once.
  double io_bytes(bool with_backward) const {
    const double fwd = double(B * T * H) * (G + K) * sizeof(Real);
    const double bwd = double(B * T * H) * (G + K + K + G) * sizeof(Real);
    return with_backward ? fwd + bwd : fwd;
  }
};

}  // namespace flashrnn_bench

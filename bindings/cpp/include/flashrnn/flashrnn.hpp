// FlashRNN public C++ API: solve nonlinear recurrences in parallel along time.
//
// For a cell (see flashrnn/core/cell.hpp and flashrnn/cells/) with state size K,
// G pre-activations and P per-unit parameters, a layer of B sequences of T steps
// and H units has B*H independent lanes:
//   states(t, b, :, j) = f(states(t-1, b, :, j), u(t, b, :, j); p(:, j)),
//   states(-1, b, :, j) = s0(b, :, j)  (zeros when s0 is absent)
// All tensors are caller-owned, strided 4-D views (flashrnn/core/views.hpp):
//   u (T, B, G, H)   p (1, 1, P, H)   s0, final_state (1, B, K, H)   states (T, B, K, H)
// An absent optional view is View<T>{} (data == nullptr).
//
// Errors: InvalidArgument names the argument, what was expected and what was
// given; ConvergenceError only when options.on_nonconvergence == throw_error.
// Precisions: float and double (storage = compute precision).
#pragma once
#include "flashrnn/cells/diag_tanh.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/core/error.hpp"
#include "flashrnn/core/options.hpp"
#include "flashrnn/core/solver.hpp"
#include "flashrnn/core/views.hpp"
#include "flashrnn/cpu/backend.hpp"

namespace flashrnn {

/// Where and how a call runs. Host memory runs on the CPU backend with
/// `num_threads` threads (0 = all).
struct Context {
  int num_threads = 0;
};

namespace detail {
template <class S>
using compute_t = S;  // bf16/fp16 storage will map to float here
}

/// Solves the recurrence for all lanes; writes `states` and/or `final_state`
/// (at least one must be given). Returns the solve report (mode used, Newton
/// iterations, final residual, convergence, lanes recomputed by stepping).
template <class Cell, class S>
SolveReport forward(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                    View<S> final_state, const SolverOptions& options = {},
                    const Context& ctx = {}) {
  return solve_forward<Cell, detail::compute_t<S>, S>(cpu::Backend(ctx.num_threads), u, p, s0,
                                                      states, final_state, options);
}

/// Gradients of a loss L given ∂L/∂states (`grad_states`, optional) and
/// ∂L/∂final_state (`grad_final`, optional), at the trajectory `states` that
/// forward returned. Writes (overwrites) whichever of grad_u (T, B, G, H),
/// grad_p (1, 1, P, H) and grad_s0 (1, B, K, H) are given. grad_p sums over the
/// batch in a fixed order (deterministic).
template <class Cell, class S>
void backward(View<const S> u, View<const S> p, View<const S> s0, View<const S> states,
              View<const S> grad_states, View<const S> grad_final, View<S> grad_u, View<S> grad_p,
              View<S> grad_s0, const Context& ctx = {}) {
  solve_backward<Cell, detail::compute_t<S>, S>(cpu::Backend(ctx.num_threads), u, p, s0, states,
                                                grad_states, grad_final, grad_u, grad_p, grad_s0);
}

/// One step for every lane, for autoregressive generation:
/// s_next(b, :, j) = f(s_prev(b, :, j), u_t(b, :, j); p(:, j)). Shapes
/// u_t (1, B, G, H), s_prev / s_next (1, B, K, H); s_next may equal s_prev.
template <class Cell, class S>
void step(View<const S> u_t, View<const S> p, View<const S> s_prev, View<S> s_next,
          const Context& ctx = {}) {
  solve_step<Cell, detail::compute_t<S>, S>(cpu::Backend(ctx.num_threads), u_t, p, s_prev, s_next);
}

}  // namespace flashrnn

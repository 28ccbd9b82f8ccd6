// FlashRNN public C++ API for dense-recurrence cells (small hidden sizes).
//
// For a dense cell (cells::DenseTanh: s_t = tanh(W s_{t-1} + u_t)) every batch
// element is one lane whose state s_t in R^H couples all H units through the
// H x H recurrent matrix W:
//   states(t, b, :) = f(states(t-1, b, :), u(t, b, :); W),
//   states(-1, b, :) = s0(b, :)  (zeros when s0 is absent)
// Tensors are caller-owned, strided 4-D views (flashrnn/core/views.hpp) with the
// H components on the *channel* axis and a single unit:
//   u, states          (T, B, H, 1)   e.g. time_first(ptr, T, B, H, 1) = [T][B][H]
//   s0, final_state    (1, B, H, 1)   e.g. state_view(ptr, B, H, 1)   = [B][H]
//   W                  (1, 1, H, H)   W(0, 0, i, j) multiplies s_j into output i;
//                                     param_view(ptr, H, H) = row-major [H][H]
// An absent optional view is View<T>{} (data == nullptr).
//
// Solvers (DenseOptions): Mode::sequential steps exactly (H^2 a step);
// Mode::newton with the full Jacobian A_t = diag(1 - s_t^2) W (DEER) converges
// quadratically but its time-parallel scan composes H x H maps, H^3 a step and
// T H^2 memory a lane: meant for small H (<= 16 or so). quasi_newton = true
// keeps diag(A_t) only (H a step, linear convergence, same exact result).
// Mode::automatic picks one of these; newton_chunked is rejected.
// Batch elements run in parallel; with fewer of them than threads each is
// parallelised along time instead.
//
// Errors: InvalidArgument names the argument, what was expected and what was
// given; ConvergenceError only when options.solver.on_nonconvergence == throw_error.
// Precisions: float and double (storage = compute precision).
#pragma once
#include "flashrnn/cells/dense_tanh.hpp"
#include "flashrnn/core/dense_solver.hpp"
#include "flashrnn/core/error.hpp"
#include "flashrnn/core/options.hpp"
#include "flashrnn/core/views.hpp"
#include "flashrnn/cpu/backend.hpp"
#include "flashrnn/flashrnn.hpp"  // Context

namespace flashrnn {
namespace dense {

using Options = DenseOptions;

/// Solves the dense recurrence for every batch element; writes `states` and/or
/// `final_state` (at least one). Returns the solve report (lanes = B; mode used,
/// Newton iterations (max over the batch), final residual, convergence, batch
/// elements recomputed by stepping).
template <class Cell, class S>
SolveReport forward(View<const S> u, View<const S> W, View<const S> s0, View<S> states,
                    View<S> final_state, const DenseOptions& options = {},
                    const Context& ctx = {}) {
  return solve_dense_forward<Cell, detail::compute_t<S>, S>(cpu::Backend(ctx.num_threads), u, W,
                                                            s0, states, final_state, options);
}

/// Gradients of a loss L given ∂L/∂states (`grad_states`, optional) and
/// ∂L/∂final_state (`grad_final`, optional) at the trajectory `states` that
/// forward returned:
///   λ_{T-1} = g_{T-1} + g_final,  λ_t = g_t + A_{t+1}^T λ_{t+1},
///   grad_u_t = diag(1 - s_t^2) λ_t,  grad_W = Σ_{b,t} grad_u_t s_{t-1}^T,
///   grad_s0 = A_0^T λ_0 = W^T grad_u_0.
/// Writes (overwrites) whichever of grad_u (T, B, H, 1), grad_W (1, 1, H, H)
/// and grad_s0 (1, B, H, 1) are given. grad_W sums over the batch in a fixed
/// order (deterministic at a given thread count).
template <class Cell, class S>
void backward(View<const S> u, View<const S> W, View<const S> s0, View<const S> states,
              View<const S> grad_states, View<const S> grad_final, View<S> grad_u, View<S> grad_W,
              View<S> grad_s0, const Context& ctx = {}) {
  solve_dense_backward<Cell, detail::compute_t<S>, S>(cpu::Backend(ctx.num_threads), u, W, s0,
                                                      states, grad_states, grad_final, grad_u,
                                                      grad_W, grad_s0);
}

/// One step for every batch element, for autoregressive generation:
/// s_next(b, :) = f(s_prev(b, :), u_t(b, :); W). Shapes u_t, s_prev, s_next
/// (1, B, H, 1); s_next may equal s_prev (in place).
template <class Cell, class S>
void step(View<const S> u_t, View<const S> W, View<const S> s_prev, View<S> s_next,
          const Context& ctx = {}) {
  solve_dense_step<Cell, detail::compute_t<S>, S>(cpu::Backend(ctx.num_threads), u_t, W, s_prev,
                                                  s_next);
}

}  // namespace dense
}  // namespace flashrnn

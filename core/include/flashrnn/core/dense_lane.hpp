// Forward and adjoint solves of one dense lane: a recurrence s_t = f(s_{t-1}, u_t; W)
// with state size H known at run time (one lane per batch element). Arrays are
// contiguous compute-precision: u and states T x H, W H x H row-major.
//
// A dense cell is a stateless struct (see cells/dense_tanh.hpp):
//   static void step(H, W, s, u, s_next);                       s_next = f(s, u)
//   static void step_jacobian(H, W, s, u, s_next, A);           and A = ∂f/∂s (H x H)
//   static void step_jacobian_diag(H, W, s, u, s_next, a);      and a = diag(∂f/∂s)
//   static void step_vjp(H, W, s, u, s_next, lam, du, ds, dW);  (∂f/∂u)^T lam,
//                                                               (∂f/∂s)^T lam, dW += (∂f/∂W)^T lam
// Every pre-activation u_t has H entries (one per state component).
//
// Newton linearises every step at the current trajectory, s_t ≈ A_t s_{t-1} + c_t,
// and solves that linear recurrence with a blocked scan (dense_affine.hpp).
//   full (DEER):   A_t = ∂f/∂s, H x H. A parallel scan composes H x H maps
//                  (H^3 a step), so this is for small H; quadratic convergence.
//   quasi-Newton:  A_t = diag(∂f/∂s), H values, H a step; linear convergence.
// Either way step t's update is exact once step t-1 is (c_t + A_t s_{t-1} =
// f(s_{t-1}) whatever A_t is), so after k undamped iterations the first k
// steps are exact and T iterations solve any lane; the fixed point is the
// sequential trajectory in both forms.
#pragma once
#include <algorithm>
#include <vector>

#include "dense_affine.hpp"
#include "lane_forward.hpp"
#include "math.hpp"

namespace flashrnn {

/// Scratch reused across lanes by one worker, so that a solve allocates once.
template <class R>
struct DenseLaneScratch {
  std::vector<R> maps;    // T affine maps
  std::vector<R> target;  // T x H: the solution of the linear recurrence
  std::vector<R> zeros;   // H zeros
  RecurrenceScratch<R> rec;
  std::vector<double> dW_blocks;  // adjoint: parameter gradient per time block
};

/// Exact sequential stepping: states[t] = f(states[t-1], u[t]), states[-1] = s0.
template <class Cell, class R>
void dense_sequential_lane(index_t T, index_t H, const R* W, const R* u, const R* s0, R* states) {
  const R* prev = s0;
  for (index_t t = 0; t < T; ++t) {
    Cell::step(H, W, prev, u + t * H, states + t * H);
    prev = states + t * H;
  }
}

namespace detail {

/// Evaluates step t and its (full or diagonal) state Jacobian into L, f into c.
template <class Cell, class R>
void dense_linearise(DenseLinear, index_t H, const R* W, const R* s, const R* u, R* L, R* c) {
  Cell::step_jacobian(H, W, s, u, c, L);
}
template <class Cell, class R>
void dense_linearise(DiagonalLinear, index_t H, const R* W, const R* s, const R* u, R* L, R* c) {
  Cell::step_jacobian_diag(H, W, s, u, c, L);
}

}  // namespace detail

/// Newton on one dense lane; `Lin` = DenseLinear (full Jacobian) or
/// DiagonalLinear (quasi-Newton). `states` holds the result (the last iterate
/// if not converged). Initial guess s^0_t = f(0, u_t).
template <class Cell, class Lin, class R, class Loop>
LaneResult dense_newton_lane(const DenseTimeExec<Loop>& ex, index_t T, index_t H, const R* W,
                             const R* u, const R* s0, R* states, const NewtonParams<R>& np,
                             DenseLaneScratch<R>& scratch) {
  using Maps = AffineMaps<Lin, R>;
  scratch.maps.resize(static_cast<size_t>(T * Maps::stride(H)));
  scratch.target.resize(static_cast<size_t>(T * H));
  scratch.zeros.assign(static_cast<size_t>(H), R(0));
  const Maps maps{scratch.maps.data(), H};
  R* target = scratch.target.data();
  const R* zeros = scratch.zeros.data();

  ex.for_blocks(T, [&](index_t, index_t begin, index_t end) {
    for (index_t t = begin; t < end; ++t) Cell::step(H, W, zeros, u + t * H, states + t * H);
  });

  LaneResult result;
  for (int k = 1; k <= np.max_iters; ++k) {
    // Linearise: s_t ≈ A_t s_{t-1} + (f(s^k_{t-1}) - A_t s^k_{t-1}); step 0 sees the fixed s0.
    ex.for_blocks(T, [&](index_t, index_t begin, index_t end) {
      for (index_t t = begin; t < end; ++t) {
        const R* prev = t == 0 ? s0 : states + (t - 1) * H;
        detail::dense_linearise<Cell>(Lin{}, H, W, prev, u + t * H, maps.L(t), maps.c(t));
        Lin::apply_sub(H, maps.L(t), prev, maps.c(t));
      }
    });
    solve_affine_recurrence(ex, AffineMaps<Lin, const R>{maps.data, H}, T, s0, target,
                            scratch.rec);
    const auto err = ex.reduce(
        T, detail::StepError{},
        [&](index_t t) {
          return detail::damped_update<R>(H, states + t * H, target + t * H, np);
        },
        detail::StepError::join);
    const bool exact = np.damping == R(1) && k >= T;
    if (detail::finish_iteration(result, k, err, exact)) break;
  }
  return result;
}

/// Per-lane adjoint inputs and outputs (contiguous compute-precision arrays).
/// grad_states (T x H) and grad_final (H) may be null (zero upstream gradient).
template <class R>
struct DenseAdjointIO {
  const R* u;            // T x H
  const R* W;            // H x H
  const R* s0;           // H
  const R* states;       // T x H, the forward solution
  const R* grad_states;  // T x H or null
  const R* grad_final;   // H or null
  R* grad_u;             // T x H, written
  double* grad_W;        // H x H, accumulated into (double: sums over B*T terms)
  R* grad_s0;            // H, written
};

namespace detail {
/// g_t (+ g_final at the last step) into `out`.
template <class R>
void dense_upstream(const DenseAdjointIO<R>& io, index_t T, index_t H, index_t t, R* out) {
  for (index_t i = 0; i < H; ++i) {
    R g = io.grad_states ? io.grad_states[t * H + i] : R(0);
    if (t == T - 1 && io.grad_final) g += io.grad_final[i];
    out[i] = g;
  }
}
}  // namespace detail

/// Reverse sweep, one step at a time (H^2 a step, no storage):
///   λ_{T-1} = g_{T-1} + g_final,  λ_{t-1} = g_{t-1} + A_t^T λ_t,
///   ∂L/∂u_t = (∂f/∂u)^T λ_t, ∂L/∂W = Σ_t (∂f/∂W)^T λ_t, ∂L/∂s0 = A_0^T λ_0.
template <class Cell, class R>
void dense_adjoint_lane_sequential(index_t T, index_t H, const DenseAdjointIO<R>& io) {
  std::vector<R> lam(static_cast<size_t>(H)), back(static_cast<size_t>(H));
  detail::dense_upstream(io, T, H, T - 1, lam.data());
  for (index_t t = T - 1; t >= 0; --t) {
    const R* prev = t == 0 ? io.s0 : io.states + (t - 1) * H;
    Cell::step_vjp(H, io.W, prev, io.u + t * H, io.states + t * H, lam.data(),
                   io.grad_u + t * H, back.data(), io.grad_W);
    if (t == 0) {
      std::copy(back.begin(), back.end(), io.grad_s0);
    } else {
      detail::dense_upstream(io, T, H, t - 1, lam.data());
      for (index_t i = 0; i < H; ++i) lam[static_cast<size_t>(i)] += back[static_cast<size_t>(i)];
    }
  }
}

/// Time-parallel adjoint: the maps λ_t = A_{t+1}^T λ_{t+1} + g_t of all steps in
/// parallel (full H x H Jacobians: the adjoint is linear, there is nothing to
/// approximate), one reverse blocked scan for λ, then the input gradients and
/// per-block parameter gradients in parallel, summed over blocks in order.
template <class Cell, class R, class Loop>
void dense_adjoint_lane_parallel(const DenseTimeExec<Loop>& ex, index_t T, index_t H,
                                 const DenseAdjointIO<R>& io, DenseLaneScratch<R>& scratch) {
  using Maps = AffineMaps<DenseLinear, R>;
  scratch.maps.resize(static_cast<size_t>(T * Maps::stride(H)));
  scratch.target.resize(static_cast<size_t>(T * H));
  const Maps maps{scratch.maps.data(), H};
  R* lam = scratch.target.data();

  ex.for_blocks(T, [&](index_t, index_t begin, index_t end) {
    std::vector<R> A(static_cast<size_t>(H * H)), f(static_cast<size_t>(H));
    for (index_t t = begin; t < end; ++t) {
      R* L = maps.L(t);
      detail::dense_upstream(io, T, H, t, maps.c(t));
      if (t == T - 1) {
        std::fill(L, L + H * H, R(0));
        continue;
      }
      // A_{t+1} is taken at (s_t, u_{t+1}); the map needs its transpose.
      Cell::step_jacobian(H, io.W, io.states + t * H, io.u + (t + 1) * H, f.data(), A.data());
      for (index_t i = 0; i < H; ++i)
        for (index_t j = 0; j < H; ++j) L[i * H + j] = A[static_cast<size_t>(j * H + i)];
    }
  });
  solve_affine_recurrence_reverse(ex, AffineMaps<DenseLinear, const R>{maps.data, H}, T,
                                  static_cast<const R*>(nullptr), lam, scratch.rec);

  const index_t nb = ex.blocks(T), HH = H * H;
  scratch.dW_blocks.assign(static_cast<size_t>(io.grad_W ? nb * HH : 0), 0.0);
  ex.for_blocks(T, [&](index_t blk, index_t begin, index_t end) {
    double* dW = io.grad_W ? scratch.dW_blocks.data() + blk * HH : nullptr;
    for (index_t t = begin; t < end; ++t) {
      const R* prev = t == 0 ? io.s0 : io.states + (t - 1) * H;
      Cell::step_vjp(H, io.W, prev, io.u + t * H, io.states + t * H, lam + t * H,
                     io.grad_u + t * H, t == 0 ? io.grad_s0 : static_cast<R*>(nullptr), dW);
    }
  });
  if (io.grad_W)
    for (index_t blk = 0; blk < nb; ++blk)
      for (index_t i = 0; i < HH; ++i) io.grad_W[i] += scratch.dW_blocks[static_cast<size_t>(blk * HH + i)];
}

}  // namespace flashrnn

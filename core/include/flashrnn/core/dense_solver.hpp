// The batch-parallel drivers behind the public dense-cell entry points
// (bindings/cpp/include/flashrnn/dense.hpp): argument checks, one lane per
// batch element, the non-convergence policy and the merged report. Written
// against the HostBackend interface of solver.hpp (workers, for_blocks,
// time_exec, choose_mode).
//
// Layouts (flashrnn::View, strides arbitrary):
//   u, states        (T, B, H, 1)   channel i = state / pre-activation component i
//   s0, final_state  (1, B, H, 1)
//   W                (1, 1, H, H)   W(0, 0, i, j) multiplies s_j into output i
// so time_first(p, T, B, H, 1) is a contiguous [T][B][H] tensor and
// param_view(w, H, H) a contiguous row-major H x H matrix.
#pragma once
#include <algorithm>
#include <vector>

#include "dense_lane.hpp"
#include "error.hpp"
#include "lane_io.hpp"
#include "options.hpp"
#include "serial_exec.hpp"
#include "solver.hpp"
#include "validate.hpp"
#include "views.hpp"

namespace flashrnn {

/// Options of the dense-cell solvers.
struct DenseOptions {
  /// mode: sequential, newton or automatic (newton_chunked is not offered for
  /// dense cells). Tolerances, max_iters, damping, policy and finite checks as
  /// for the per-unit cells.
  SolverOptions solver;
  /// Keep only diag(∂f/∂s) in the Newton linearisation: H instead of H^3 work
  /// per step and composition, linear instead of quadratic convergence (often
  /// more than the default max_iters = 50; then the policy applies), a tighter
  /// default tolerance (quasi_newton_default_tolerance); the converged result
  /// is the same exact trajectory.
  bool quasi_newton = false;
};

/// Default tolerance of the quasi-Newton stop (atol, rtol < 0). It converges
/// linearly, so the error left when the step falls below the tolerance is about
/// rate / (1 - rate) times the step, not the step squared as for Newton: with
/// default_tolerance it measured ~1e-10 (fp64) and 10-40x fp32 stepping's
/// error (fp32). Tighter, but above the fp32 noise floor of the iterates
/// (~1e-7: at 1e-7 some lanes stagnated for ~T iterations), it measured
/// <= 1.1e-13 (fp64) and <= 1.6x fp32 stepping's error (T = 1000, H <= 16).
template <class Real>
constexpr double quasi_newton_default_tolerance() {
  return sizeof(Real) >= 8 ? 1e-13 : 3e-7;
}

/// Mode::automatic for dense lanes: Newton only where the backend's table
/// would pick it for B lanes, and then only full Newton at tiny H. Measured on
/// 2 CPU threads (T = 1e5, one lane, fp64): full Newton 5-7 iterations at
/// 6-20x the time of stepping (H = 1..16: its scan composes H x H maps, H^3 a
/// step); quasi-Newton 5-60 iterations (up to ~250 at gain 1.5) of about one
/// stepping pass each, so it needs more threads than a CPU has and is never
/// picked here.
template <class Backend>
Mode choose_dense_mode(const Backend& be, index_t batch, index_t steps, index_t hidden,
                       bool quasi_newton, size_t storage_bytes) {
  constexpr index_t max_hidden_full_newton = 2;
  if (be.choose_mode(batch, steps, storage_bytes) == Mode::sequential) return Mode::sequential;
  if (quasi_newton || hidden > max_hidden_full_newton) return Mode::sequential;
  return Mode::newton;
}

namespace detail {

inline void check_dense_shape(const char* where, const char* arg, index_t steps, index_t batch,
                              index_t hidden) {
  if (steps < 1) fail_argument(where, arg, "steps >= 1", concat("steps = ", steps));
  if (batch < 1) fail_argument(where, arg, "batch >= 1", concat("batch = ", batch));
  if (hidden < 1) fail_argument(where, arg, "channels (H) >= 1", concat("channels = ", hidden));
}

template <class S>
void check_dense_forward_args(const char* where, const View<const S>& u, const View<const S>& W,
                              const View<const S>& s0, const View<S>& states,
                              const View<S>& final_state, const DenseOptions& opts) {
  if (u.data == nullptr) fail_argument(where, "u", "a non-null data pointer", "nullptr");
  check_dense_shape(where, "u", u.steps, u.batch, u.channels);
  const index_t T = u.steps, B = u.batch, H = u.channels;
  check_view(where, "u", u, T, B, H, 1);
  check_view(where, "W", W, 1, 1, H, H);
  check_view(where, "s0", s0, 1, B, H, 1, /*optional=*/true);
  check_view(where, "states", states, T, B, H, 1, /*optional=*/true);
  check_view(where, "final_state", final_state, 1, B, H, 1, /*optional=*/true);
  check_forward_outputs(where, u, "W", W, s0, states, final_state);
  check_options(where, opts.solver);
  if (opts.solver.mode == Mode::newton_chunked)
    fail_argument(where, "options.solver.mode", "sequential, newton or automatic for dense cells",
                  "newton_chunked");
  if (opts.solver.check_finite) {
    check_finite(where, "u", u);
    check_finite(where, "W", W);
    check_finite(where, "s0", s0);
  }
}

/// W as a contiguous row-major H x H compute-precision matrix.
template <class R, class S>
std::vector<R> gather_matrix(const View<const S>& W, index_t H) {
  std::vector<R> out(static_cast<size_t>(H * H));
  for (index_t i = 0; i < H; ++i)
    for (index_t j = 0; j < H; ++j) out[static_cast<size_t>(i * H + j)] = static_cast<R>(W(0, 0, i, j));
  return out;
}

template <class R, class S>
void gather_dense_state(const View<const S>& v, index_t b, index_t H, R* out) {
  for (index_t i = 0; i < H; ++i) out[i] = v.data ? static_cast<R>(v(0, b, i, 0)) : R(0);
}

}  // namespace detail

/// Forward solve of every batch element. See flashrnn/dense.hpp for the contract.
template <class Cell, class R, class S, class Backend>
SolveReport solve_dense_forward(const Backend& be, const View<const S>& u, const View<const S>& W,
                                const View<const S>& s0, const View<S>& states,
                                const View<S>& final_state, const DenseOptions& opts) {
  constexpr const char* where = "flashrnn::dense::forward";
  detail::check_dense_forward_args<S>(where, u, W, s0, states, final_state, opts);
  const index_t T = u.steps, B = u.batch, H = u.channels;
  const SolverOptions& so = opts.solver;

  SolveReport report;
  report.lanes = B;
  report.mode_used = so.mode == Mode::automatic
                         ? choose_dense_mode(be, B, T, H, opts.quasi_newton, sizeof(S))
                         : so.mode;
  NewtonParams<R> np{so.max_iters, R(0), R(0), static_cast<R>(so.damping)};
  detail::resolve_tolerances(so, np.atol, np.rtol);
  if (opts.quasi_newton) {
    if (so.atol < 0) np.atol = static_cast<R>(quasi_newton_default_tolerance<R>());
    if (so.rtol < 0) np.rtol = static_cast<R>(quasi_newton_default_tolerance<R>());
  }
  const std::vector<R> Wl = detail::gather_matrix<R>(W, H);
  // Few batch elements: parallelise each along time; many: one per task.
  const bool time_parallel = B < static_cast<index_t>(be.workers());

  std::vector<LaneResult> results(static_cast<size_t>(B));
  std::vector<char> fell_back(static_cast<size_t>(B), 0);

  auto solve_lanes = [&](index_t begin, index_t end, const auto& ex) {
    std::vector<R> ul(static_cast<size_t>(T * H)), sl(static_cast<size_t>(T * H)),
        s0l(static_cast<size_t>(H));
    DenseLaneScratch<R> scratch;
    for (index_t b = begin; b < end; ++b) {
      detail::gather_lane(u, b, 0, ul.data());
      detail::gather_dense_state(s0, b, H, s0l.data());
      LaneResult r;
      if (report.mode_used == Mode::newton) {
        r = opts.quasi_newton
                ? dense_newton_lane<Cell, DiagonalLinear>(ex, T, H, Wl.data(), ul.data(),
                                                          s0l.data(), sl.data(), np, scratch)
                : dense_newton_lane<Cell, DenseLinear>(ex, T, H, Wl.data(), ul.data(),
                                                       s0l.data(), sl.data(), np, scratch);
      } else {
        dense_sequential_lane<Cell>(T, H, Wl.data(), ul.data(), s0l.data(), sl.data());
      }
      if (!r.converged && so.on_nonconvergence == OnNonConvergence::fallback_sequential) {
        dense_sequential_lane<Cell>(T, H, Wl.data(), ul.data(), s0l.data(), sl.data());
        fell_back[static_cast<size_t>(b)] = 1;
      }
      results[static_cast<size_t>(b)] = r;
      if (states.data) detail::scatter_lane(states, b, 0, sl.data());
      if (final_state.data)
        for (index_t i = 0; i < H; ++i)
          final_state(0, b, i, 0) = static_cast<S>(sl[static_cast<size_t>((T - 1) * H + i)]);
    }
  };
  if (time_parallel) {
    solve_lanes(0, B, make_dense_exec(be.time_exec()));
  } else {
    be.for_blocks(B, 1, [&](index_t begin, index_t end) {
      solve_lanes(begin, end, make_dense_exec(SerialExec{}));
    });
  }

  for (index_t b = 0; b < B; ++b) {
    detail::merge(report, results[static_cast<size_t>(b)]);
    report.lanes_fell_back += fell_back[static_cast<size_t>(b)];
  }
  if (!report.converged && so.on_nonconvergence == OnNonConvergence::throw_error)
    throw ConvergenceError(detail::concat(
        where, ": ", opts.quasi_newton ? "quasi-Newton" : "Newton", " did not converge in ",
        report.iterations, " iterations (max_iters = ", so.max_iters, "); final residual ",
        report.final_residual, report.nonfinite_detected ? "; non-finite iterates" : "",
        ". Raise max_iters, use damping < 1, or OnNonConvergence::fallback_sequential."));
  return report;
}

/// Gradients through a solved forward. See flashrnn/dense.hpp.
template <class Cell, class R, class S, class Backend>
void solve_dense_backward(const Backend& be, const View<const S>& u, const View<const S>& W,
                          const View<const S>& s0, const View<const S>& states,
                          const View<const S>& grad_states, const View<const S>& grad_final,
                          const View<S>& grad_u, const View<S>& grad_W, const View<S>& grad_s0) {
  constexpr const char* where = "flashrnn::dense::backward";
  if (u.data == nullptr) detail::fail_argument(where, "u", "a non-null data pointer", "nullptr");
  detail::check_dense_shape(where, "u", u.steps, u.batch, u.channels);
  const index_t T = u.steps, B = u.batch, H = u.channels, HH = H * H;
  detail::check_view(where, "u", u, T, B, H, 1);
  detail::check_view(where, "W", W, 1, 1, H, H);
  detail::check_view(where, "s0", s0, 1, B, H, 1, true);
  detail::check_view(where, "states", states, T, B, H, 1);
  detail::check_view(where, "grad_states", grad_states, T, B, H, 1, true);
  detail::check_view(where, "grad_final", grad_final, 1, B, H, 1, true);
  detail::check_view(where, "grad_u", grad_u, T, B, H, 1, true);
  detail::check_view(where, "grad_W", grad_W, 1, 1, H, H, true);
  detail::check_view(where, "grad_s0", grad_s0, 1, B, H, 1, true);
  if (grad_u.data == nullptr && grad_W.data == nullptr && grad_s0.data == nullptr)
    detail::fail_argument(where, "grad_u/grad_W/grad_s0", "at least one output", "all nullptr");
  const char* outs[3] = {"grad_u", "grad_W", "grad_s0"};
  const View<S> out_views[3] = {grad_u, grad_W, grad_s0};
  for (int o = 0; o < 3; ++o) {
    detail::check_output_strides(where, outs[o], out_views[o]);
    detail::check_no_alias(where, outs[o], out_views[o], "u", u);
    detail::check_no_alias(where, outs[o], out_views[o], "W", W);
    detail::check_no_alias(where, outs[o], out_views[o], "s0", s0);
    detail::check_no_alias(where, outs[o], out_views[o], "states", states);
    detail::check_no_alias(where, outs[o], out_views[o], "grad_states", grad_states);
    detail::check_no_alias(where, outs[o], out_views[o], "grad_final", grad_final);
    for (int q = 0; q < o; ++q)
      detail::check_no_alias(where, outs[o], out_views[o], outs[q], View<const S>(out_views[q]));
  }

  const std::vector<R> Wl = detail::gather_matrix<R>(W, H);
  const bool time_parallel = B < static_cast<index_t>(be.workers());
  // dW per batch element, summed over the batch afterwards in a fixed order.
  std::vector<double> dW_lane(static_cast<size_t>(grad_W.data ? B * HH : 0), 0.0);

  auto run_lanes = [&](index_t begin, index_t end, const auto& ex) {
    const size_t TH = static_cast<size_t>(T * H);
    std::vector<R> ul(TH), sl(TH), gl(grad_states.data ? TH : 0), dul(TH),
        s0l(static_cast<size_t>(H)), gfl(static_cast<size_t>(H)), ds0l(static_cast<size_t>(H));
    DenseLaneScratch<R> scratch;
    for (index_t b = begin; b < end; ++b) {
      detail::gather_lane(u, b, 0, ul.data());
      detail::gather_lane(states, b, 0, sl.data());
      if (grad_states.data) detail::gather_lane(grad_states, b, 0, gl.data());
      detail::gather_dense_state(grad_final, b, H, gfl.data());
      detail::gather_dense_state(s0, b, H, s0l.data());
      DenseAdjointIO<R> io{ul.data(), Wl.data(), s0l.data(), sl.data(),
                           grad_states.data ? gl.data() : nullptr,
                           grad_final.data ? gfl.data() : nullptr, dul.data(),
                           grad_W.data ? dW_lane.data() + b * HH : nullptr, ds0l.data()};
      if (ex.parallel)
        dense_adjoint_lane_parallel<Cell>(ex, T, H, io, scratch);
      else
        dense_adjoint_lane_sequential<Cell>(T, H, io);
      if (grad_u.data) detail::scatter_lane(grad_u, b, 0, dul.data());
      if (grad_s0.data)
        for (index_t i = 0; i < H; ++i) grad_s0(0, b, i, 0) = static_cast<S>(ds0l[static_cast<size_t>(i)]);
    }
  };
  if (time_parallel) {
    run_lanes(0, B, make_dense_exec(be.time_exec()));
  } else {
    be.for_blocks(B, 1, [&](index_t begin, index_t end) {
      run_lanes(begin, end, make_dense_exec(SerialExec{}));
    });
  }
  if (grad_W.data) {
    for (index_t i = 0; i < H; ++i)
      for (index_t j = 0; j < H; ++j) {
        double acc = 0.0;
        for (index_t b = 0; b < B; ++b) acc += dW_lane[static_cast<size_t>(b * HH + i * H + j)];
        grad_W(0, 0, i, j) = static_cast<S>(acc);
      }
  }
}

/// One step for every batch element (autoregressive inference).
template <class Cell, class R, class S, class Backend>
void solve_dense_step(const Backend& be, const View<const S>& u_t, const View<const S>& W,
                      const View<const S>& s_prev, const View<S>& s_next) {
  constexpr const char* where = "flashrnn::dense::step";
  if (u_t.data == nullptr) detail::fail_argument(where, "u_t", "a non-null data pointer", "nullptr");
  detail::check_dense_shape(where, "u_t", u_t.steps, u_t.batch, u_t.channels);
  const index_t B = u_t.batch, H = u_t.channels;
  detail::check_view(where, "u_t", u_t, 1, B, H, 1);
  detail::check_view(where, "W", W, 1, 1, H, H);
  detail::check_view(where, "s_prev", s_prev, 1, B, H, 1);
  detail::check_view(where, "s_next", s_next, 1, B, H, 1);
  detail::check_output_strides(where, "s_next", s_next);
  detail::check_no_alias(where, "s_next", s_next, "u_t", u_t);
  detail::check_no_alias(where, "s_next", s_next, "W", W);
  // s_next == s_prev exactly (same data and strides) is allowed: each batch row is read
  // whole before it is written. The same memory through other strides is not.
  const bool in_place = s_next.data == s_prev.data && s_next.stride_b == s_prev.stride_b &&
                        s_next.stride_c == s_prev.stride_c;
  if (!in_place) detail::check_no_alias(where, "s_next", s_next, "s_prev", s_prev);
  const std::vector<R> Wl = detail::gather_matrix<R>(W, H);
  be.for_blocks(B, 16, [&](index_t begin, index_t end) {
    std::vector<R> ul(static_cast<size_t>(H)), sl(static_cast<size_t>(H)), out(static_cast<size_t>(H));
    for (index_t b = begin; b < end; ++b) {
      for (index_t i = 0; i < H; ++i) ul[static_cast<size_t>(i)] = static_cast<R>(u_t(0, b, i, 0));
      detail::gather_dense_state(s_prev, b, H, sl.data());
      Cell::step(H, Wl.data(), sl.data(), ul.data(), out.data());
      for (index_t i = 0; i < H; ++i) s_next(0, b, i, 0) = static_cast<S>(out[static_cast<size_t>(i)]);
    }
  });
}

}  // namespace flashrnn

// The lane-parallel drivers behind the public forward / backward / step entry
// points of host backends. They validate arguments, gather each lane, run the
// lane algorithms of lane_forward.hpp / lane_adjoint.hpp, apply the
// non-convergence policy and merge the per-lane reports.
//
// A HostBackend supplies
//   int workers() const                        threads available
//   for_blocks(n, grain, f)                    f(begin, end) over [0, n), in parallel
//   time_exec()                                an executor for time-parallel work in one lane
//   Mode choose_mode(lanes, T, storage_bytes)  the tuning table behind Mode::automatic
#pragma once
#include <algorithm>
#include <type_traits>
#include <vector>

#include "blocked_exec.hpp"
#include "cell.hpp"
#include "error.hpp"
#include "lane_adjoint.hpp"
#include "lane_forward.hpp"
#include "lane_block.hpp"
#include "lane_io.hpp"
#include "options.hpp"
#include "serial_exec.hpp"
#include "validate.hpp"
#include "views.hpp"

namespace flashrnn {
namespace detail {

/// Shapes shared by the checks of every entry point.
template <class Cell, class S>
void check_forward_args(const char* where, const View<const S>& u, const View<const S>& p,
                        const View<const S>& s0, const View<S>& states,
                        const View<S>& final_state, const SolverOptions& opts) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  if (u.data == nullptr) fail_argument(where, "u", "a non-null data pointer", "nullptr");
  check_shape_positive(where, u.steps, u.batch, u.units);
  const index_t T = u.steps, B = u.batch, H = u.units;
  check_view(where, "u", u, T, B, G, H);
  check_view(where, "p", p, 1, 1, P, H, /*optional=*/P == 0);
  check_view(where, "s0", s0, 1, B, K, H, /*optional=*/true);
  check_view(where, "states", states, T, B, K, H, /*optional=*/true);
  check_view(where, "final_state", final_state, 1, B, K, H, /*optional=*/true);
  check_forward_outputs(where, u, "p", p, s0, states, final_state);
  check_options(where, opts);
  if (opts.check_finite) {
    check_finite(where, "u", u);
    check_finite(where, "p", p);
    check_finite(where, "s0", s0);
  }
}

/// The checks of every backend's backward entry point, in one order.
template <class Cell, class S>
void check_backward_args(const char* where, const View<const S>& u, const View<const S>& p,
                         const View<const S>& s0, const View<const S>& states,
                         const View<const S>& grad_states, const View<const S>& grad_final,
                         const View<S>& grad_u, const View<S>& grad_p, const View<S>& grad_s0) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  if (u.data == nullptr) fail_argument(where, "u", "a non-null data pointer", "nullptr");
  check_shape_positive(where, u.steps, u.batch, u.units);
  const index_t T = u.steps, B = u.batch, H = u.units;
  check_view(where, "u", u, T, B, G, H);
  check_view(where, "p", p, 1, 1, P, H, P == 0);
  check_view(where, "s0", s0, 1, B, K, H, true);
  check_view(where, "states", states, T, B, K, H);
  check_view(where, "grad_states", grad_states, T, B, K, H, true);
  check_view(where, "grad_final", grad_final, 1, B, K, H, true);
  check_view(where, "grad_u", grad_u, T, B, G, H, true);
  check_view(where, "grad_p", grad_p, 1, 1, P, H, true);
  check_view(where, "grad_s0", grad_s0, 1, B, K, H, true);
  if (grad_u.data == nullptr && grad_p.data == nullptr && grad_s0.data == nullptr)
    fail_argument(where, "grad_u/grad_p/grad_s0", "at least one output", "all nullptr");
  const char* outs[3] = {"grad_u", "grad_p", "grad_s0"};
  const View<S> out_views[3] = {grad_u, grad_p, grad_s0};
  for (int o = 0; o < 3; ++o) {
    check_output_strides(where, outs[o], out_views[o]);
    check_no_alias(where, outs[o], out_views[o], "u", u);
    check_no_alias(where, outs[o], out_views[o], "p", p);
    check_no_alias(where, outs[o], out_views[o], "s0", s0);
    check_no_alias(where, outs[o], out_views[o], "states", states);
    check_no_alias(where, outs[o], out_views[o], "grad_states", grad_states);
    check_no_alias(where, outs[o], out_views[o], "grad_final", grad_final);
    for (int q = 0; q < o; ++q)
      check_no_alias(where, outs[o], out_views[o], outs[q], View<const S>(out_views[q]));
  }
}

/// The checks of every backend's step entry point.
template <class Cell, class S>
void check_step_args(const char* where, const View<const S>& u_t, const View<const S>& p,
                     const View<const S>& s_prev, const View<S>& s_next) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  if (u_t.data == nullptr) fail_argument(where, "u_t", "a non-null data pointer", "nullptr");
  check_shape_positive(where, u_t.steps, u_t.batch, u_t.units);
  const index_t B = u_t.batch, H = u_t.units;
  check_view(where, "u_t", u_t, 1, B, G, H);
  check_view(where, "p", p, 1, 1, P, H, P == 0);
  check_view(where, "s_prev", s_prev, 1, B, K, H);
  check_view(where, "s_next", s_next, 1, B, K, H);
  check_output_strides(where, "s_next", s_next);
  check_no_alias(where, "s_next", s_next, "u_t", u_t);
  check_no_alias(where, "s_next", s_next, "p", p);
  // s_next == s_prev exactly (in-place update: same data and strides) is allowed: each lane
  // reads its own elements before it writes them. The same memory through other strides is
  // not: lanes would read elements that other lanes already overwrote.
  const bool in_place = s_next.data == s_prev.data && s_next.stride_b == s_prev.stride_b &&
                        s_next.stride_c == s_prev.stride_c && s_next.stride_h == s_prev.stride_h;
  if (!in_place) check_no_alias(where, "s_next", s_next, "s_prev", s_prev);
}

/// Per-unit parameters of unit j as a contiguous array.
template <class R, class S>
void gather_params(const View<const S>& p, index_t j, int P, R* out) {
  for (int q = 0; q < P; ++q) out[q] = static_cast<R>(p(0, 0, q, j));
}

/// Runs a blocked executor's blocks one after another, on the calling thread.
struct SerialBlocks {
  template <class F>
  void operator()(index_t n, const F& f) const {
    for (index_t i = 0; i < n; ++i) f(i);
  }
};

/// The executor for lanes solved one per task: the time executor's own blocking
/// run serially. A lane then computes bitwise the same whether the solver
/// parallelises over time (lanes < workers) or over lanes, so results do not
/// depend on the thread count (a plain serial scan would round differently).
template <class Loop>
BlockedExec<SerialBlocks> serial_twin(const BlockedExec<Loop>& e) {
  return BlockedExec<SerialBlocks>{SerialBlocks{}, e.min_block, e.max_blocks};
}
inline SerialExec serial_twin(const SerialExec&) { return SerialExec{}; }

inline void merge(SolveReport& rep, const LaneResult& r) {
  rep.iterations = std::max(rep.iterations, r.iterations);
  rep.final_residual = std::max(rep.final_residual, r.residual);
  rep.converged = rep.converged && r.converged;
  rep.nonfinite_detected = rep.nonfinite_detected || r.nonfinite;
}

}  // namespace detail

/// Forward solve of every lane. See flashrnn/flashrnn.hpp for the contract.
template <class Cell, class R, class S, class Backend>
SolveReport solve_forward(const Backend& be, const View<const S>& u, const View<const S>& p,
                          const View<const S>& s0, const View<S>& states,
                          const View<S>& final_state, const SolverOptions& opts) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr const char* where = "flashrnn::forward";
  detail::check_forward_args<Cell, S>(where, u, p, s0, states, final_state, opts);
  const index_t T = u.steps, B = u.batch, H = u.units, lanes = B * H;

  SolveReport report;
  report.lanes = lanes;
  report.mode_used = opts.mode == Mode::automatic ? be.choose_mode(lanes, T, sizeof(S)) : opts.mode;
  NewtonParams<R> np{opts.max_iters, R(0), R(0), static_cast<R>(opts.damping)};
  detail::resolve_tolerances(opts, np.atol, np.rtol);
  // Few lanes: parallelise each lane along time; many lanes: one lane per task.
  const bool time_parallel = lanes < static_cast<index_t>(be.workers());
  const index_t chunk = opts.chunk_length > 0
                            ? std::min(opts.chunk_length, T)
                            : default_chunk_length(T);

  std::vector<LaneResult> results(static_cast<size_t>(lanes));
  std::vector<char> fell_back(static_cast<size_t>(lanes), 0);

  auto solve_lanes = [&](index_t begin, index_t end, auto&& exec) {
    std::vector<R> ul(static_cast<size_t>(T * G)), sl(static_cast<size_t>(T * K));
    LaneScratch<R, K> scratch;
    for (index_t lane = begin; lane < end; ++lane) {
      const index_t b = lane / H, j = lane % H;
      R pl[P > 0 ? P : 1], s0l[K];
      detail::gather_lane(u, b, j, ul.data());
      detail::gather_params(p, j, P, pl);
      detail::gather_optional_state(s0, b, j, K, s0l);
      LaneResult r;
      switch (report.mode_used) {
        case Mode::newton:
          r = newton_lane<Cell>(exec, T, ul.data(), pl, s0l, sl.data(), np, scratch);
          break;
        case Mode::newton_chunked:
          r = newton_chunked_lane<Cell>(exec, T, chunk, ul.data(), pl, s0l, sl.data(), np, scratch);
          break;
        default:
          sequential_lane<Cell>(T, ul.data(), pl, s0l, sl.data());
      }
      if (!r.converged && opts.on_nonconvergence == OnNonConvergence::fallback_sequential) {
        sequential_lane<Cell>(T, ul.data(), pl, s0l, sl.data());
        fell_back[static_cast<size_t>(lane)] = 1;
      }
      results[static_cast<size_t>(lane)] = r;
      if (states.data) detail::scatter_lane(states, b, j, sl.data());
      if (final_state.data)
        for (int k = 0; k < K; ++k) final_state(0, b, k, j) = static_cast<S>(sl[(T - 1) * K + k]);
    }
  };
  if (time_parallel) {
    solve_lanes(0, lanes, be.time_exec());
  } else if (report.mode_used == Mode::sequential) {
    be.for_blocks(lanes, 1, [&](index_t begin, index_t end) {
      detail::for_lane_runs(begin, end, H, [&](index_t b, index_t j0, index_t j1) {
        detail::sequential_lane_block<Cell, R, S>(u, p, s0, states, final_state, b, j0, j1);
      });
    });
  } else {
    const auto lane_exec = detail::serial_twin(be.time_exec());
    be.for_blocks(lanes, 1, [&](index_t begin, index_t end) { solve_lanes(begin, end, lane_exec); });
  }

  for (index_t lane = 0; lane < lanes; ++lane) {
    detail::merge(report, results[static_cast<size_t>(lane)]);
    report.lanes_fell_back += fell_back[static_cast<size_t>(lane)];
  }
  if (!report.converged && opts.on_nonconvergence == OnNonConvergence::throw_error)
    throw ConvergenceError(detail::concat(
        where, ": Newton (", to_string(report.mode_used), ") did not converge in ",
        report.iterations, " iterations (max_iters = ", opts.max_iters,
        "); final residual ", report.final_residual,
        report.nonfinite_detected ? "; non-finite iterates" : "",
        ". Raise max_iters, use damping < 1, or OnNonConvergence::fallback_sequential."));
  return report;
}

/// Gradients of a loss through a solved forward. See flashrnn/flashrnn.hpp.
template <class Cell, class R, class S, class Backend>
void solve_backward(const Backend& be, const View<const S>& u, const View<const S>& p,
                    const View<const S>& s0, const View<const S>& states,
                    const View<const S>& grad_states, const View<const S>& grad_final,
                    const View<S>& grad_u, const View<S>& grad_p, const View<S>& grad_s0) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr const char* where = "flashrnn::backward";
  detail::check_backward_args<Cell, S>(where, u, p, s0, states, grad_states, grad_final, grad_u,
                                       grad_p, grad_s0);
  const index_t T = u.steps, B = u.batch, H = u.units, lanes = B * H;

  const bool time_parallel = lanes < static_cast<index_t>(be.workers());
  // Parameter gradients per lane, reduced over the batch afterwards in a fixed
  // order so that results are identical run to run.
  std::vector<double> dp_lane(static_cast<size_t>(lanes * (P > 0 ? P : 1)), 0.0);

  auto run_lanes = [&](index_t begin, index_t end, auto&& exec) {
    std::vector<R> ul(static_cast<size_t>(T * G)), sl(static_cast<size_t>(T * K)),
        gl(static_cast<size_t>(T * K)), dul(static_cast<size_t>(T * G));
    LaneScratch<R, K> scratch;
    for (index_t lane = begin; lane < end; ++lane) {
      const index_t b = lane / H, j = lane % H;
      R pl[P > 0 ? P : 1], s0l[K], gfl[K], ds0l[K];
      detail::gather_lane(u, b, j, ul.data());
      detail::gather_lane(states, b, j, sl.data());
      if (grad_states.data) detail::gather_lane(grad_states, b, j, gl.data());
      detail::gather_optional_state(grad_final, b, j, K, gfl);
      detail::gather_params(p, j, P, pl);
      detail::gather_optional_state(s0, b, j, K, s0l);
      LaneAdjointIO<R> io{ul.data(), pl, s0l, sl.data(), grad_states.data ? gl.data() : nullptr,
                          grad_final.data ? gfl : nullptr, dul.data(),
                          dp_lane.data() + lane * (P > 0 ? P : 1), ds0l};
      // The same algorithm on both paths (see serial_twin): adjoint_lane_sequential
      // would be cheaper here but round differently from the time-parallel path.
      adjoint_lane_parallel<Cell>(exec, T, io, scratch);
      if (grad_u.data) detail::scatter_lane(grad_u, b, j, dul.data());
      if (grad_s0.data)
        for (int k = 0; k < K; ++k) grad_s0(0, b, k, j) = static_cast<S>(ds0l[k]);
    }
  };
  if (time_parallel) {
    run_lanes(0, lanes, be.time_exec());
  } else {
    const auto lane_exec = detail::serial_twin(be.time_exec());
    be.for_blocks(lanes, 1, [&](index_t begin, index_t end) { run_lanes(begin, end, lane_exec); });
  }
  if (grad_p.data) {
    for (index_t j = 0; j < H; ++j)
      for (int q = 0; q < P; ++q) {
        double acc = 0.0;
        for (index_t b = 0; b < B; ++b) acc += dp_lane[static_cast<size_t>((b * H + j) * P + q)];
        grad_p(0, 0, q, j) = static_cast<S>(acc);
      }
  }
}

/// One step for a batch of lanes (autoregressive inference).
template <class Cell, class R, class S, class Backend>
void solve_step(const Backend& be, const View<const S>& u_t, const View<const S>& p,
                const View<const S>& s_prev, const View<S>& s_next) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr const char* where = "flashrnn::step";
  detail::check_step_args<Cell, S>(where, u_t, p, s_prev, s_next);
  const index_t B = u_t.batch, H = u_t.units;
  be.for_blocks(B * H, 64, [&](index_t begin, index_t end) {
    for (index_t lane = begin; lane < end; ++lane) {
      const index_t b = lane / H, j = lane % H;
      R ul[G], pl[P > 0 ? P : 1], sl[K], out[K];
      for (int g = 0; g < G; ++g) ul[g] = static_cast<R>(u_t(0, b, g, j));
      detail::gather_params(p, j, P, pl);
      detail::gather_optional_state(s_prev, b, j, K, sl);
      cell_step<Cell>(sl, ul, pl, out);
      for (int k = 0; k < K; ++k) s_next(0, b, k, j) = static_cast<S>(out[k]);
    }
  });
}

}  // namespace flashrnn

// Drivers of the Kokkos backend: argument checks (core/validate.hpp), mode and
// strategy choice (tuning.hpp), workspaces, and the kernels that run the lane
// operations of lane_ops.hpp through parallel_for, the segmented parallel_scan
// or team kernels. Everything stays on the execution space; only per-lane
// status words come back to the host for the report.
#pragma once
#include <Kokkos_Core.hpp>
#include <string>

#include "flashrnn/core/error.hpp"
#include "flashrnn/core/options.hpp"
#include "flashrnn/core/solver.hpp"
#include "flashrnn/core/validate.hpp"
#include "flashrnn/core/views.hpp"
#include "flashrnn/kokkos/lane_ops.hpp"
#include "flashrnn/kokkos/scan.hpp"
#include "flashrnn/kokkos/tuning.hpp"

namespace flashrnn {
namespace kokkos {
namespace detail {

/// Kokkos::Profiling::ScopedRegion where it exists (4.1+), push/pop before.
class ProfilingRegion {
 public:
  explicit ProfilingRegion(const std::string& name) { Kokkos::Profiling::pushRegion(name); }
  ~ProfilingRegion() { Kokkos::Profiling::popRegion(); }
  ProfilingRegion(const ProfilingRegion&) = delete;
  ProfilingRegion& operator=(const ProfilingRegion&) = delete;
};
#if KOKKOS_VERSION >= 40100
using ScopedRegion = Kokkos::Profiling::ScopedRegion;
#else
using ScopedRegion = ProfilingRegion;
#endif

template <class ExecSpace>
using RangeN = Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<index_t>>;
template <class ExecSpace>
using Teams = Kokkos::TeamPolicy<ExecSpace>;

template <class ExecSpace, class T>
Kokkos::View<T*, typename ExecSpace::memory_space> workspace(const char* label, index_t n) {
  return Kokkos::View<T*, typename ExecSpace::memory_space>(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("flashrnn::kokkos::") + label),
      static_cast<size_t>(n > 0 ? n : 1));
}

/// core's check_finite for views that may live in device memory: one
/// reduction for the first non-finite element, then its value for the message.
template <class ExecSpace, class S>
void check_finite_on(const ExecSpace& space, const char* where, const char* arg, const View<const S>& v) {
  if (v.data == nullptr) return;
  const index_t n = v.size();
  index_t first = n;
  Kokkos::parallel_reduce(
      "flashrnn::kokkos::check_finite", RangeN<ExecSpace>(space, 0, n),
      KOKKOS_LAMBDA(const index_t i, index_t& lo) {
        index_t r = i;
        const index_t h = r % v.units;
        r /= v.units;
        const index_t c = r % v.channels;
        r /= v.channels;
        const index_t b = r % v.batch;
        const index_t t = r / v.batch;
        if (!math::is_finite(static_cast<double>(v(t, b, c, h))) && i < lo) lo = i;
      },
      Kokkos::Min<index_t>(first));
  if (first >= n) return;
  index_t r = first;
  const index_t h = r % v.units;
  r /= v.units;
  const index_t c = r % v.channels;
  r /= v.channels;
  const index_t b = r % v.batch, t = r / v.batch;
  S value;
  Kokkos::View<const S, typename ExecSpace::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>> dev(&v(t, b, c, h));
  Kokkos::View<S, Kokkos::HostSpace> host(&value);
  Kokkos::deep_copy(host, dev);
  flashrnn::detail::fail_argument(where, arg, "finite values",
                                  flashrnn::detail::concat(static_cast<double>(value), " at (t=", t, ", b=", b,
                                                           ", channel=", c, ", unit=", h, ")"));
}

/// Merges per-lane status into the report (on the host).
template <class StatusView>
void merge_status(const StatusView& status, SolveReport& rep) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), status);
  for (size_t l = 0; l < h.extent(0); ++l) {
    const LaneStatus& s = h(l);
    if (s.iterations > rep.iterations) rep.iterations = s.iterations;
    if (s.residual > rep.final_residual) rep.final_residual = s.residual;
    rep.converged = rep.converged && s.converged != 0;
    rep.nonfinite_detected = rep.nonfinite_detected || s.nonfinite != 0;
    rep.lanes_fell_back += s.fell_back;
  }
}

/// Newton over all lanes as flat kernels: per iteration one parallel_for
/// (linearise), one segmented parallel_scan and one team kernel that applies
/// the update and decides convergence lane by lane.
template <class Ops, class ExecSpace, class Data, class StatusView>
void newton_range(const ExecSpace& space, const Data& d, index_t lanes, int team_size,
                  const StatusView& status) {
  const index_t n = Ops::unknowns(d), ng = Ops::guesses(d), nf = Ops::finals(d);
  Kokkos::parallel_for("flashrnn::kokkos::newton_guess", RangeN<ExecSpace>(space, 0, lanes * ng),
                       KOKKOS_LAMBDA(const index_t i) { Ops::guess(d, i / ng, i / ng, i % ng); });
  using Policy = Teams<ExecSpace>;
  const size_t scratch = static_cast<size_t>(team_size) * sizeof(StepErr);
  for (int k = 1; k <= d.np.max_iters && n > 0; ++k) {
    Kokkos::parallel_for("flashrnn::kokkos::newton_linearise", RangeN<ExecSpace>(space, 0, lanes * n),
                         KOKKOS_LAMBDA(const index_t i) {
                           const index_t lane = i / n;
                           if (status(lane).active) Ops::linearise(d, lane, lane, i % n);
                         });
    segmented_scan(space, d.maps, lanes, n, /*reverse=*/false);
    const bool exact = Ops::exact(d, k);
    index_t active = 0;
    Kokkos::parallel_reduce(
        "flashrnn::kokkos::newton_update",
        Policy(space, static_cast<int>(lanes), team_size).set_scratch_size(0, Kokkos::PerTeam(scratch)),
        KOKKOS_LAMBDA(const typename Policy::member_type& m, index_t& still) {
          const index_t lane = m.league_rank();
          if (!status(lane).active) return;
          StepErr* buf = static_cast<StepErr*>(m.team_scratch(0).get_shmem(scratch));
          const StepErr e = team_reduce(
              m, n, no_error(), [&](index_t i) { return Ops::update(d, lane, lane, i); },
              [](const StepErr& a, const StepErr& b) { return join_err(a, b); }, buf);
          if (m.team_rank() == 0) {
            LaneStatus s = status(lane);
            if (finish_iteration(s, k, e, exact)) s.active = 0;
            status(lane) = s;
            still += s.active;
          }
        },
        Kokkos::Sum<index_t>(active));
    if (active == 0) break;
  }
  if (nf > 0)
    Kokkos::parallel_for("flashrnn::kokkos::newton_final_pass", RangeN<ExecSpace>(space, 0, lanes * nf),
                         KOKKOS_LAMBDA(const index_t i) { Ops::finish(d, i / nf, i / nf, i % nf); });
}

/// Teams for `lanes` lanes: enough to fill the space several times over, each
/// solving a contiguous block of lanes in one workspace slot.
template <class ExecSpace>
index_t team_league(const ExecSpace& space, index_t lanes, int team_size) {
  const index_t want = 4 * static_cast<index_t>(space.concurrency()) / team_size;
  return lanes < want ? lanes : (want > 0 ? want : 1);
}

/// Newton with a team per block of lanes: the team solves its lanes one after
/// another in its own workspace slot, every iteration on team-scratch
/// carries, decides convergence, falls back and writes the results itself.
/// No host round trip per iteration.
template <class Ops, class ExecSpace, class Data, class StatusView, class S>
void newton_team(const ExecSpace& space, const Data& d, index_t lanes, index_t league, int team_size,
                 const StatusView& status, bool fallback, const View<S>& states, const View<S>& final_state) {
  using Map = typename Data::Map;
  using Policy = Teams<ExecSpace>;
  constexpr int K = Data::K;
  const index_t n = Ops::unknowns(d), ng = Ops::guesses(d), nf = Ops::finals(d), T = d.T, H = d.H;
  const index_t per_team = (lanes + league - 1) / league;
  const size_t bytes = static_cast<size_t>(team_size) *
                       (sizeof(Map) > sizeof(StepErr) ? sizeof(Map) : sizeof(StepErr));
  Kokkos::parallel_for(
      "flashrnn::kokkos::newton_team",
      Policy(space, static_cast<int>(league), team_size).set_scratch_size(0, Kokkos::PerTeam(bytes)),
      KOKKOS_LAMBDA(const typename Policy::member_type& m) {
        void* shm = m.team_scratch(0).get_shmem(bytes);
        Map* carry = static_cast<Map*>(shm);
        StepErr* ebuf = static_cast<StepErr*>(shm);
        const index_t l0 = m.league_rank() * per_team;
        const index_t l1 = l0 + per_team < lanes ? l0 + per_team : lanes;
        const index_t slot = m.league_rank();
        for (index_t lane = l0; lane < l1; ++lane) {
          team_for(m, ng, [&](index_t e) { Ops::guess(d, lane, slot, e); });
          LaneStatus s = fresh_status();
          for (int k = 1; k <= d.np.max_iters && n > 0; ++k) {
            team_for(m, n, [&](index_t e) { Ops::linearise(d, lane, slot, e); });
            team_inclusive_scan(m, d.maps + slot * n, n, carry);
            const StepErr e = team_reduce(
                m, n, no_error(), [&](index_t i) { return Ops::update(d, lane, slot, i); },
                [](const StepErr& a, const StepErr& b) { return join_err(a, b); }, ebuf);
            if (finish_iteration(s, k, e, Ops::exact(d, k))) break;  // uniform over the team
          }
          team_for(m, nf, [&](index_t e) { Ops::finish(d, lane, slot, e); });
          if (fallback && !s.converged) {
            if (m.team_rank() == 0) d.sequential(lane, slot);
            s.fell_back = 1;
            m.team_barrier();
          }
          s.active = 0;
          if (m.team_rank() == 0) status(lane) = s;
          const index_t b = lane / H, j = lane % H;
          if (states.data)
            team_for(m, T, [&](index_t t) {
              for (int k = 0; k < K; ++k) states(t, b, k, j) = static_cast<S>(d.state(slot, t)[k]);
            });
          if (final_state.data && m.team_rank() == 0)
            for (int k = 0; k < K; ++k) final_state(0, b, k, j) = static_cast<S>(d.state(slot, T - 1)[k]);
          m.team_barrier();  // the slot is reused by the next lane
        }
      });
}

}  // namespace detail

/// Forward solve on `space`. Views are flashrnn::View descriptors of memory
/// `space` can access; see flashrnn/kokkos/flashrnn_kokkos.hpp for the contract.
template <class Cell, class R, class S, class ExecSpace>
SolveReport solve_forward(const ExecSpace& space, const View<const S>& u, const View<const S>& p,
                          const View<const S>& s0, const View<S>& states, const View<S>& final_state,
                          const SolverOptions& opts, const KokkosOptions& kopts) {
  using namespace kokkos::detail;
  constexpr int K = cell_traits<Cell>::K;
  constexpr const char* where = "flashrnn::kokkos::forward";
  SolverOptions checked = opts;
  checked.check_finite = false;  // the host-side check cannot read device memory
  flashrnn::detail::check_forward_args<Cell, S>(where, u, p, s0, states, final_state, checked);
  if (opts.check_finite) {
    check_finite_on(space, where, "u", u);
    check_finite_on(space, where, "p", p);
    check_finite_on(space, where, "s0", s0);
  }
  const index_t T = u.steps, B = u.batch, H = u.units, lanes = B * H;

  SolveReport report;
  report.lanes = lanes;
  report.mode_used =
      opts.mode == Mode::automatic ? tuning::choose_mode(space, lanes, T, sizeof(S)) : opts.mode;

  LaneData<Cell, R, S> d;
  d.u = u;
  d.p = p;
  d.s0 = s0;
  d.T = T;
  d.H = H;
  d.np = NewtonParams<R>{opts.max_iters, R(0), R(0), static_cast<R>(opts.damping)};
  flashrnn::detail::resolve_tolerances(opts, d.np.atol, d.np.rtol);

  if (report.mode_used == Mode::sequential) {
    // Stepping, on the caller's views in place. A thread takes W lanes
    // consecutive in the unit index and steps them together, so a cache line
    // of u or states serves W lanes at once (W = 16 on host spaces; 1 on
    // devices, where the threads of a warp already share the lines).
    constexpr int W = tuning::sequential_lane_block<ExecSpace>();
    const index_t blocks = (lanes + W - 1) / W;
    Kokkos::parallel_for(
        "flashrnn::kokkos::forward_sequential", RangeN<ExecSpace>(space, 0, blocks),
        KOKKOS_LAMBDA(const index_t blk) {
          constexpr int G = cell_traits<Cell>::G, P1 = LaneData<Cell, R, S>::P1;
          using UC = typename LaneData<Cell, R, S>::template Cursor<const S>;
          using SC = typename LaneData<Cell, R, S>::template Cursor<S>;
          const index_t l0 = blk * W;
          const int n = lanes - l0 < W ? static_cast<int>(lanes - l0) : W;
          R s[W][K], pl[W][P1];
          UC uc[W];
          SC sc[W];
          for (int i = 0; i < n; ++i) {
            d.load_s0(l0 + i, s[i]);
            d.load_p(l0 + i, pl[i]);
            uc[i] = d.cursor(d.u, l0 + i);
            sc[i] = d.cursor(states, l0 + i);
          }
          for (index_t t = 0; t < T; ++t)
            for (int i = 0; i < n; ++i) {
              R ul[G], next[K];
              for (int g = 0; g < G; ++g) ul[g] = static_cast<R>(uc[i].at(t, g));
              cell_step<Cell>(s[i], ul, pl[i], next);
              for (int k = 0; k < K; ++k) {
                s[i][k] = next[k];
                if (sc[i].base) sc[i].at(t, k) = static_cast<S>(next[k]);
              }
            }
          if (final_state.data)
            for (int i = 0; i < n; ++i) {
              const auto fc = d.cursor(final_state, l0 + i);
              for (int k = 0; k < K; ++k) fc.at(0, k) = static_cast<S>(s[i][k]);
            }
        });
    space.fence();
    return report;
  }

  const Strategy strategy = tuning::choose_strategy(space, lanes, kopts.strategy, /*backward=*/false);
  const int ts = tuning::team_size<ExecSpace>(kopts, strategy);
  const bool time_parallel = strategy == Strategy::range_scan;
  d.chunk = opts.chunk_length > 0 ? (opts.chunk_length < T ? opts.chunk_length : T)
                                  : default_chunk_length(T);
  d.nc = (T + d.chunk - 1) / d.chunk;
  const bool chunked = report.mode_used == Mode::newton_chunked;
  const index_t n = chunked ? d.nc - 1 : T;
  const index_t league = time_parallel ? lanes : team_league(space, lanes, ts);
  const index_t slots = time_parallel ? lanes : league;

  auto states_ws = workspace<ExecSpace, R>("states", slots * T * K);
  auto maps_ws = workspace<ExecSpace, Affine<R, K>>("maps", slots * (n > 0 ? n : 1));
  auto x_ws = workspace<ExecSpace, R>("boundaries", chunked ? slots * d.nc * K : 1);
  Kokkos::View<LaneStatus*, typename ExecSpace::memory_space> status(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "flashrnn::kokkos::lane_status"), static_cast<size_t>(lanes));
  d.states = states_ws.data();
  d.maps = maps_ws.data();
  d.x = x_ws.data();
  Kokkos::parallel_for("flashrnn::kokkos::status_init", RangeN<ExecSpace>(space, 0, lanes),
                       KOKKOS_LAMBDA(const index_t l) { status(l) = fresh_status(); });

  using PS = PerStepNewton<Cell, R, S>;
  using CH = ChunkedNewton<Cell, R, S>;
  const bool fallback = opts.on_nonconvergence == OnNonConvergence::fallback_sequential;
  if (!time_parallel) {
    if (chunked)
      newton_team<CH>(space, d, lanes, league, ts, status, fallback, states, final_state);
    else
      newton_team<PS>(space, d, lanes, league, ts, status, fallback, states, final_state);
  } else {
    if (chunked)
      newton_range<CH>(space, d, lanes, ts, status);
    else
      newton_range<PS>(space, d, lanes, ts, status);
    // Non-convergence policy, then the results into the caller's views.
    Kokkos::parallel_for(
      "flashrnn::kokkos::forward_fallback", RangeN<ExecSpace>(space, 0, lanes), KOKKOS_LAMBDA(const index_t l) {
        if (fallback && !status(l).converged) {
          d.sequential(l, l);
          status(l).fell_back = 1;
        }
      });
    if (states.data)
      Kokkos::parallel_for(
          "flashrnn::kokkos::forward_store", RangeN<ExecSpace>(space, 0, lanes * T), KOKKOS_LAMBDA(const index_t i) {
            const index_t lane = i / T, t = i % T, b = lane / H, j = lane % H;
            for (int k = 0; k < K; ++k) states(t, b, k, j) = static_cast<S>(d.state(lane, t)[k]);
          });
    if (final_state.data)
      Kokkos::parallel_for(
          "flashrnn::kokkos::forward_store_final", RangeN<ExecSpace>(space, 0, lanes),
          KOKKOS_LAMBDA(const index_t lane) {
            const index_t b = lane / H, j = lane % H;
            for (int k = 0; k < K; ++k) final_state(0, b, k, j) = static_cast<S>(d.state(lane, T - 1)[k]);
          });
  }
  merge_status(status, report);  // fences
  if (!report.converged && opts.on_nonconvergence == OnNonConvergence::throw_error)
    throw ConvergenceError(flashrnn::detail::concat(
        where, ": Newton (", to_string(report.mode_used), ") did not converge in ", report.iterations,
        " iterations (max_iters = ", opts.max_iters, "); final residual ", report.final_residual,
        report.nonfinite_detected ? "; non-finite iterates" : "",
        ". Raise max_iters, use damping < 1, or OnNonConvergence::fallback_sequential."));
  return report;
}

/// Gradients through a solved forward. See flashrnn/kokkos/flashrnn_kokkos.hpp.
template <class Cell, class R, class S, class ExecSpace>
void solve_backward(const ExecSpace& space, const View<const S>& u, const View<const S>& p,
                    const View<const S>& s0, const View<const S>& states, const View<const S>& grad_states,
                    const View<const S>& grad_final, const View<S>& grad_u, const View<S>& grad_p,
                    const View<S>& grad_s0, const KokkosOptions& kopts) {
  using namespace kokkos::detail;
  constexpr int P = cell_traits<Cell>::P;
  constexpr const char* where = "flashrnn::kokkos::backward";
  flashrnn::detail::check_backward_args<Cell, S>(where, u, p, s0, states, grad_states, grad_final,
                                                 grad_u, grad_p, grad_s0);
  const index_t T = u.steps, B = u.batch, H = u.units, lanes = B * H;

  using AD = AdjointData<Cell, R, S>;
  using Map = typename AD::Map;
  using ParamSum = typename AD::ParamSum;
  constexpr int P1 = AD::P1, J = AD::J;
  AD a;
  a.fw.u = u;
  a.fw.p = p;
  a.fw.s0 = s0;
  a.fw.T = T;
  a.fw.H = H;
  a.states = states;
  a.grad_states = grad_states;
  a.grad_final = grad_final;
  a.grad_u = grad_u;
  a.grad_s0 = grad_s0;
  auto dp_ws = workspace<ExecSpace, double>("dp_lane", lanes * P1);
  a.dp_lane = dp_ws.data();

  const Strategy strategy = tuning::choose_strategy(space, lanes, kopts.strategy, /*backward=*/true);
  if (strategy == Strategy::lane_sequential) {
    Kokkos::parallel_for("flashrnn::kokkos::backward_sequential", RangeN<ExecSpace>(space, 0, lanes),
                         KOKKOS_LAMBDA(const index_t lane) { a.sequential(lane); });
  } else {
    const int ts = tuning::team_size<ExecSpace>(kopts, strategy);
    const index_t league = team_league(space, lanes, ts);
    const index_t slots = strategy == Strategy::range_scan ? lanes : league;
    auto jac_ws = workspace<ExecSpace, R>("jacobians", slots * T * J);
    auto maps_ws = workspace<ExecSpace, Map>("adjoint_maps", slots * T);
    a.jac = jac_ws.data();
    a.maps = maps_ws.data();
    using Policy = Teams<ExecSpace>;
    if (strategy == Strategy::range_scan) {
      Kokkos::parallel_for("flashrnn::kokkos::adjoint_derivatives", RangeN<ExecSpace>(space, 0, lanes * T),
                           KOKKOS_LAMBDA(const index_t i) { a.derivatives_step(i / T, i / T, i % T); });
      Kokkos::parallel_for("flashrnn::kokkos::adjoint_maps", RangeN<ExecSpace>(space, 0, lanes * T),
                           KOKKOS_LAMBDA(const index_t i) { a.map_step(i / T, i / T, i % T); });
      segmented_scan(space, a.maps, lanes, T, /*reverse=*/true);
      const size_t bytes = static_cast<size_t>(ts) * sizeof(ParamSum);
      Kokkos::parallel_for(
          "flashrnn::kokkos::adjoint_gradients",
          Policy(space, static_cast<int>(lanes), ts).set_scratch_size(0, Kokkos::PerTeam(bytes)),
          KOKKOS_LAMBDA(const typename Policy::member_type& m) {
            const index_t lane = m.league_rank();
            ParamSum* buf = static_cast<ParamSum*>(m.team_scratch(0).get_shmem(bytes));
            const ParamSum dp = team_reduce(
                m, T, AD::zero_sum(), [&](index_t t) { return a.grads_step(lane, lane, t); },
                [](const ParamSum& x, const ParamSum& y) { return AD::add(x, y); }, buf);
            if (m.team_rank() == 0) a.finish_lane(lane, lane, dp);
          });
    } else {
      const index_t per_team = (lanes + league - 1) / league;
      const size_t bytes = static_cast<size_t>(ts) * (sizeof(Map) > sizeof(ParamSum) ? sizeof(Map) : sizeof(ParamSum));
      Kokkos::parallel_for(
          "flashrnn::kokkos::adjoint_team",
          Policy(space, static_cast<int>(league), ts).set_scratch_size(0, Kokkos::PerTeam(bytes)),
          KOKKOS_LAMBDA(const typename Policy::member_type& m) {
            void* shm = m.team_scratch(0).get_shmem(bytes);
            const index_t slot = m.league_rank();
            const index_t l0 = m.league_rank() * per_team;
            const index_t l1 = l0 + per_team < lanes ? l0 + per_team : lanes;
            for (index_t lane = l0; lane < l1; ++lane) {
              team_for(m, T, [&](index_t t) { a.derivatives_step(lane, slot, t); });
              team_for(m, T, [&](index_t t) { a.map_step(lane, slot, t); });
              team_reverse_inclusive_scan(m, a.maps + slot * T, T, static_cast<Map*>(shm));
              const ParamSum dp = team_reduce(
                  m, T, AD::zero_sum(), [&](index_t t) { return a.grads_step(lane, slot, t); },
                  [](const ParamSum& x, const ParamSum& y) { return AD::add(x, y); }, static_cast<ParamSum*>(shm));
              if (m.team_rank() == 0) a.finish_lane(lane, slot, dp);
              m.team_barrier();  // the slot is reused by the next lane
            }
          });
    }
  }
  // ∂L/∂p: per-lane sums reduced over the batch in a fixed order.
  if (grad_p.data) {
    const double* dp = a.dp_lane;
    Kokkos::parallel_for("flashrnn::kokkos::grad_p", RangeN<ExecSpace>(space, 0, H * P),
                         KOKKOS_LAMBDA(const index_t i) {
                           const index_t j = i / (P > 0 ? P : 1), q = i % (P > 0 ? P : 1);
                           double acc = 0.0;
                           for (index_t b = 0; b < B; ++b) acc += dp[(b * H + j) * P1 + q];
                           grad_p(0, 0, q, j) = static_cast<S>(acc);
                         });
  }
  space.fence();
}

/// One step for every lane (autoregressive inference); s_next may equal s_prev.
template <class Cell, class R, class S, class ExecSpace>
void solve_step(const ExecSpace& space, const View<const S>& u_t, const View<const S>& p,
                const View<const S>& s_prev, const View<S>& s_next) {
  using namespace kokkos::detail;
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  constexpr const char* where = "flashrnn::kokkos::step";
  flashrnn::detail::check_step_args<Cell, S>(where, u_t, p, s_prev, s_next);
  const index_t B = u_t.batch, H = u_t.units;
  LaneData<Cell, R, S> d;
  d.u = u_t;
  d.p = p;
  d.s0 = s_prev;
  d.T = 1;
  d.H = H;
  Kokkos::parallel_for("flashrnn::kokkos::step", RangeN<ExecSpace>(space, 0, B * H), KOKKOS_LAMBDA(const index_t lane) {
    constexpr int P1 = LaneData<Cell, R, S>::P1;
    const index_t b = lane / H, j = lane % H;
    R s[K], next[K], ul[G], pl[P1];
    d.load_s0(lane, s);
    d.load_p(lane, pl);
    d.load_u(lane, 0, ul);
    cell_step<Cell>(s, ul, pl, next);
    for (int k = 0; k < K; ++k) s_next(0, b, k, j) = static_cast<S>(next[k]);
  });
  space.fence();
}

}  // namespace kokkos
}  // namespace flashrnn

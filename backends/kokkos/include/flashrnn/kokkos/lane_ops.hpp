// Device-callable pieces of the lane algorithms, indexed by (lane, element) so
// that a RangePolicy over lanes*n and a team walking one lane run the same
// code. The mathematics is core's: cell_step*, Affine, compose,
// transposed_linear; these functions only say which step reads what. They
// mirror core/lane_forward.hpp and core/lane_adjoint.hpp, which are host-only
// (std::vector scratch, std::max).
#pragma once
#include <Kokkos_Core.hpp>

#include "flashrnn/core/affine.hpp"
#include "flashrnn/core/cell.hpp"
#include "flashrnn/core/lane_forward.hpp"
#include "flashrnn/core/math.hpp"
#include "flashrnn/core/views.hpp"

namespace flashrnn {
namespace kokkos {
namespace detail {

/// One iteration's step error over a lane (see core's detail::StepError).
struct StepErr {
  double residual;
  double scaled;
  int nonfinite;
};
KOKKOS_INLINE_FUNCTION StepErr no_error() { return StepErr{0.0, 0.0, 0}; }
KOKKOS_INLINE_FUNCTION StepErr join_err(const StepErr& a, const StepErr& b) {
  return StepErr{a.residual > b.residual ? a.residual : b.residual,
                 a.scaled > b.scaled ? a.scaled : b.scaled, a.nonfinite | b.nonfinite};
}

/// Per-lane outcome, kept in device memory across iterations.
struct LaneStatus {
  int iterations;
  double residual;
  int converged;
  int nonfinite;
  int active;  ///< still iterating
  int fell_back;
};
KOKKOS_INLINE_FUNCTION LaneStatus fresh_status() { return LaneStatus{0, 0.0, 1, 0, 1, 0}; }

/// core's detail::finish_iteration: record iteration k; true when the lane stops.
KOKKOS_INLINE_FUNCTION bool finish_iteration(LaneStatus& s, int k, const StepErr& e, bool exact) {
  s.iterations = k;
  s.residual = e.residual;
  if (e.nonfinite) {
    s.nonfinite = 1;
    s.converged = 0;
    return true;
  }
  s.converged = (exact || e.scaled <= 1.0) ? 1 : 0;
  return s.converged != 0;
}

/// core's detail::damped_update: move `state` toward `target`, return the error.
template <int K, class R>
KOKKOS_INLINE_FUNCTION StepErr damped_update(R* state, const R* target, const NewtonParams<R>& np) {
  StepErr e = no_error();
  for (int i = 0; i < K; ++i) {
    const R delta = target[i] - state[i];
    const R next = state[i] + np.damping * delta;
    if (!math::is_finite(next)) e.nonfinite = 1;
    const double ad = math::abs(delta);
    const double sc = ad / (np.atol + np.rtol * math::abs(next));
    if (ad > e.residual) e.residual = ad;
    if (sc > e.scaled) e.scaled = sc;
    state[i] = next;
  }
  return e;
}

/// What a lane kernel needs: the caller's inputs as strided descriptors
/// (read in place, converted to the compute precision R) and the backend's
/// workspaces. Inputs are indexed by lane; workspaces by *slot*: the range
/// kernels give every lane its own slot, a team reuses one slot for the lanes
/// it solves one after another (so workspace stays small and cache-resident).
template <class Cell, class R, class S>
struct LaneData {
  static constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  static constexpr int P1 = P > 0 ? P : 1;
  using Map = Affine<R, K>;

  View<const S> u, p, s0;
  index_t T = 0, H = 1;
  index_t chunk = 1, nc = 1;  ///< chunked form: steps per chunk, chunks
  R* states = nullptr;        ///< slots x T x K
  R* x = nullptr;             ///< slots x nc x K (chunked: incoming state of each chunk)
  Map* maps = nullptr;        ///< slots x n
  NewtonParams<R> np{};

  /// One lane's channels of a (T, B, C, H) descriptor, addressed without
  /// per-step index arithmetic (the hot loops of stepping use these).
  template <class E>
  struct Cursor {
    E* base;
    index_t st, sc;
    KOKKOS_INLINE_FUNCTION E& at(index_t t, int c) const { return base[t * st + c * sc]; }
  };
  template <class E>
  KOKKOS_INLINE_FUNCTION Cursor<E> cursor(const View<E>& v, index_t lane) const {
    const index_t b = lane / H, j = lane % H;
    return Cursor<E>{v.data ? v.data + b * v.stride_b + j * v.stride_h : nullptr, v.stride_t, v.stride_c};
  }

  KOKKOS_INLINE_FUNCTION void load_u(index_t lane, index_t t, R* out) const {
    const index_t b = lane / H, j = lane % H;
    for (int g = 0; g < G; ++g) out[g] = static_cast<R>(u(t, b, g, j));
  }
  KOKKOS_INLINE_FUNCTION void load_p(index_t lane, R* out) const {
    const index_t j = lane % H;
    for (int q = 0; q < P; ++q) out[q] = static_cast<R>(p(0, 0, q, j));
    if (P == 0) out[0] = R(0);
  }
  KOKKOS_INLINE_FUNCTION void load_s0(index_t lane, R* out) const {
    const index_t b = lane / H, j = lane % H;
    for (int k = 0; k < K; ++k) out[k] = s0.data ? static_cast<R>(s0(0, b, k, j)) : R(0);
  }
  KOKKOS_INLINE_FUNCTION R* state(index_t slot, index_t t) const { return states + (slot * T + t) * K; }

  /// Exact stepping over steps [begin, end) from `incoming`; with `phi`
  /// non-null also Φ = A_{end-1} ⋯ A_begin (core's run_chunk).
  KOKKOS_INLINE_FUNCTION void run_steps(index_t lane, index_t slot, index_t begin, index_t end,
                                        const R* incoming, R* phi) const {
    R pl[P1], ul[G];
    load_p(lane, pl);
    const auto uc = cursor(u, lane);
    const R* prev = incoming;
    if (phi == nullptr) {
      for (index_t t = begin; t < end; ++t) {
        for (int g = 0; g < G; ++g) ul[g] = static_cast<R>(uc.at(t, g));
        cell_step<Cell>(prev, ul, pl, state(slot, t));
        prev = state(slot, t);
      }
      return;
    }
    Map acc = Map::identity();
    for (index_t t = begin; t < end; ++t) {
      Map step;
      for (int g = 0; g < G; ++g) ul[g] = static_cast<R>(uc.at(t, g));
      cell_step_state_jacobian<Cell>(prev, ul, pl, state(slot, t), step.A);
      for (int i = 0; i < K; ++i) step.c[i] = R(0);
      acc = compose(step, acc);
      prev = state(slot, t);
    }
    for (int i = 0; i < K * K; ++i) phi[i] = acc.A[i];
  }

  /// The whole lane by exact stepping (the reference, and the fallback).
  KOKKOS_INLINE_FUNCTION void sequential(index_t lane, index_t slot) const {
    R s0l[K];
    load_s0(lane, s0l);
    run_steps(lane, slot, 0, T, s0l, nullptr);
  }
};

/// Per-step Newton (core's newton_lane): the unknowns are the T states.
template <class Cell, class R, class S>
struct PerStepNewton {
  using D = LaneData<Cell, R, S>;
  static constexpr int K = D::K;
  using Map = typename D::Map;

  KOKKOS_INLINE_FUNCTION static index_t unknowns(const D& d) { return d.T; }
  KOKKOS_INLINE_FUNCTION static index_t guesses(const D& d) { return d.T; }
  KOKKOS_INLINE_FUNCTION static index_t finals(const D&) { return 0; }
  KOKKOS_INLINE_FUNCTION static bool exact(const D& d, int k) { return d.np.damping == R(1) && k >= d.T; }

  /// s^0_t = f(0, u_t).
  KOKKOS_INLINE_FUNCTION static void guess(const D& d, index_t lane, index_t slot, index_t t) {
    R zero[K] = {}, pl[D::P1], ul[D::G];
    d.load_p(lane, pl);
    d.load_u(lane, t, ul);
    cell_step<Cell>(zero, ul, pl, d.state(slot, t));
  }
  /// maps[t] = (A_t, f - A_t s^k_{t-1}); step 0 is the constant f(s0, u_0).
  KOKKOS_INLINE_FUNCTION static void linearise(const D& d, index_t lane, index_t slot, index_t t) {
    R pl[D::P1], ul[D::G], s0l[K], f[K], A[K * K];
    d.load_p(lane, pl);
    d.load_u(lane, t, ul);
    const R* prev = s0l;
    if (t == 0)
      d.load_s0(lane, s0l);
    else
      prev = d.state(slot, t - 1);
    cell_step_state_jacobian<Cell>(prev, ul, pl, f, A);
    d.maps[slot * d.T + t] = t == 0 ? Map::constant(f) : Map::tangent(f, A, prev);
  }
  /// After the scan maps[t].c is s^{k+1}_t.
  KOKKOS_INLINE_FUNCTION static StepErr update(const D& d, index_t, index_t slot, index_t t) {
    return damped_update<K>(d.state(slot, t), d.maps[slot * d.T + t].c, d.np);
  }
  KOKKOS_INLINE_FUNCTION static void finish(const D&, index_t, index_t, index_t) {}
};

/// Chunked Newton (core's newton_chunked_lane): the unknowns are the incoming
/// states x[1..nc-1] of the chunks; x[0] is s0.
template <class Cell, class R, class S>
struct ChunkedNewton {
  using D = LaneData<Cell, R, S>;
  static constexpr int K = D::K;
  using Map = typename D::Map;

  KOKKOS_INLINE_FUNCTION static index_t unknowns(const D& d) { return d.nc - 1; }
  KOKKOS_INLINE_FUNCTION static index_t guesses(const D& d) { return d.nc; }
  KOKKOS_INLINE_FUNCTION static index_t finals(const D& d) { return d.nc; }
  KOKKOS_INLINE_FUNCTION static bool exact(const D& d, int k) { return d.np.damping == R(1) && k >= d.nc - 1; }

  KOKKOS_INLINE_FUNCTION static R* boundary(const D& d, index_t slot, index_t m) { return d.x + (slot * d.nc + m) * K; }

  /// x[0] = s0; x[m] = f(0, u at the step before chunk m).
  KOKKOS_INLINE_FUNCTION static void guess(const D& d, index_t lane, index_t slot, index_t m) {
    if (m == 0) {
      d.load_s0(lane, boundary(d, slot, 0));
      return;
    }
    R zero[K] = {}, pl[D::P1], ul[D::G];
    d.load_p(lane, pl);
    d.load_u(lane, m * d.chunk - 1, ul);
    cell_step<Cell>(zero, ul, pl, boundary(d, slot, m));
  }
  /// Runs chunk m exactly from x[m] with its Jacobian Φ_m; maps[m] is the
  /// linearised chunk map for x[m+1] (the last chunk's end is no unknown).
  KOKKOS_INLINE_FUNCTION static void linearise(const D& d, index_t lane, index_t slot, index_t m) {
    const index_t begin = m * d.chunk, end = begin + d.chunk < d.T ? begin + d.chunk : d.T;
    R phi[K * K];
    const R* xm = boundary(d, slot, m);
    d.run_steps(lane, slot, begin, end, xm, phi);
    const R* F = d.state(slot, end - 1);
    d.maps[slot * (d.nc - 1) + m] = m == 0 ? Map::constant(F) : Map::tangent(F, phi, xm);
  }
  KOKKOS_INLINE_FUNCTION static StepErr update(const D& d, index_t, index_t slot, index_t m) {
    return damped_update<K>(boundary(d, slot, m + 1), d.maps[slot * (d.nc - 1) + m].c, d.np);
  }
  /// The final exact pass of chunk m from the converged x[m].
  KOKKOS_INLINE_FUNCTION static void finish(const D& d, index_t lane, index_t slot, index_t m) {
    const index_t begin = m * d.chunk, end = begin + d.chunk < d.T ? begin + d.chunk : d.T;
    d.run_steps(lane, slot, begin, end, boundary(d, slot, m), nullptr);
  }
};

/// The adjoint of one lane (core/lane_adjoint.hpp), read in place from the
/// caller's views: λ_{T-1} = g_{T-1} + g_final, λ_t = g_t + A_{t+1}^T λ_{t+1},
/// ∂L/∂u_t = Ju_t^T λ_t, ∂L/∂p = Σ_t Jp_t^T λ_t, ∂L/∂s0 = A_0^T λ_0.
template <class Cell, class R, class S>
struct AdjointData {
  static constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  static constexpr int P1 = P > 0 ? P : 1;
  static constexpr int J = K * K + K * G + K * P1;  ///< local derivatives per step
  using Map = Affine<R, K>;
  struct ParamSum {
    double v[P1];
  };

  LaneData<Cell, R, S> fw;  ///< u, p, s0, T, H (states unused)
  View<const S> states, grad_states, grad_final;
  View<S> grad_u, grad_s0;
  double* dp_lane = nullptr;  ///< lanes x P1: this lane's Σ_t Jp^T λ
  R* jac = nullptr;           ///< slots x T x J (time-parallel form)
  Map* maps = nullptr;        ///< slots x T (time-parallel form)

  KOKKOS_INLINE_FUNCTION void load_state(index_t lane, index_t t, R* out) const {
    const index_t b = lane / fw.H, j = lane % fw.H;
    if (t < 0) {
      fw.load_s0(lane, out);
      return;
    }
    for (int k = 0; k < K; ++k) out[k] = static_cast<R>(states(t, b, k, j));
  }
  /// g_t (+ g_final at the last step).
  KOKKOS_INLINE_FUNCTION void upstream(index_t lane, index_t t, R* out) const {
    const index_t b = lane / fw.H, j = lane % fw.H;
    for (int k = 0; k < K; ++k) {
      R g = grad_states.data ? static_cast<R>(grad_states(t, b, k, j)) : R(0);
      if (t == fw.T - 1 && grad_final.data) g += static_cast<R>(grad_final(0, b, k, j));
      out[k] = g;
    }
  }
  /// A, Ju, Jp of step t at the solved trajectory, into out[0 .. J).
  KOKKOS_INLINE_FUNCTION void local_derivatives(index_t lane, index_t t, R* out) const {
    R prev[K], ul[G], pl[P1], f[K];
    load_state(lane, t - 1, prev);
    fw.load_u(lane, t, ul);
    fw.load_p(lane, pl);
    cell_step_full_jacobian<Cell>(prev, ul, pl, f, out, out + K * K, out + K * K + K * G);
  }
  /// grad_u[t] = Ju^T λ (written when requested); returns Jp^T λ.
  KOKKOS_INLINE_FUNCTION ParamSum input_grads(index_t lane, index_t t, const R* jac_t, const R* lam) const {
    const R* Ju = jac_t + K * K;
    const R* Jp = jac_t + K * K + K * G;
    const index_t b = lane / fw.H, j = lane % fw.H;
    if (grad_u.data) {
      for (int g = 0; g < G; ++g) {
        R acc = R(0);
        for (int i = 0; i < K; ++i) acc += Ju[i * G + g] * lam[i];
        grad_u(t, b, g, j) = static_cast<S>(acc);
      }
    }
    ParamSum s;
    for (int q = 0; q < P1; ++q) s.v[q] = 0.0;
    for (int q = 0; q < P; ++q) {
      double acc = 0.0;
      for (int i = 0; i < K; ++i) acc += static_cast<double>(Jp[i * P1 + q]) * lam[i];
      s.v[q] = acc;
    }
    return s;
  }
  KOKKOS_INLINE_FUNCTION static ParamSum add(ParamSum a, const ParamSum& b) {
    for (int q = 0; q < P1; ++q) a.v[q] += b.v[q];
    return a;
  }
  KOKKOS_INLINE_FUNCTION static ParamSum zero_sum() {
    ParamSum s;
    for (int q = 0; q < P1; ++q) s.v[q] = 0.0;
    return s;
  }
  KOKKOS_INLINE_FUNCTION void write_grad_s0(index_t lane, const R* A0, const R* lam0) const {
    if (!grad_s0.data) return;
    const index_t b = lane / fw.H, j = lane % fw.H;
    for (int c = 0; c < K; ++c) {
      R acc = R(0);
      for (int i = 0; i < K; ++i) acc += A0[i * K + c] * lam0[i];
      grad_s0(0, b, c, j) = static_cast<S>(acc);
    }
  }
  KOKKOS_INLINE_FUNCTION void write_dp(index_t lane, const ParamSum& s) const {
    for (int q = 0; q < P1; ++q) dp_lane[lane * P1 + q] = s.v[q];
  }

  /// Reverse sweep, one step at a time (core's adjoint_lane_sequential).
  KOKKOS_INLINE_FUNCTION void sequential(index_t lane) const {
    R lam[K], jt[J], pl[P1], ul[G], prev[K], f[K];
    ParamSum dp = zero_sum();
    fw.load_p(lane, pl);
    const auto uc = fw.cursor(fw.u, lane);
    const auto sc = fw.cursor(states, lane);
    const auto gsc = fw.cursor(grad_states, lane);
    const auto guc = fw.cursor(grad_u, lane);
    upstream(lane, fw.T - 1, lam);
    for (index_t t = fw.T - 1; t >= 0; --t) {
      if (t == 0)
        fw.load_s0(lane, prev);
      else
        for (int k = 0; k < K; ++k) prev[k] = static_cast<R>(sc.at(t - 1, k));
      for (int g = 0; g < G; ++g) ul[g] = static_cast<R>(uc.at(t, g));
      cell_step_full_jacobian<Cell>(prev, ul, pl, f, jt, jt + K * K, jt + K * K + K * G);
      const R* Ju = jt + K * K;
      const R* Jp = jt + K * K + K * G;
      if (guc.base)
        for (int g = 0; g < G; ++g) {
          R acc = R(0);
          for (int i = 0; i < K; ++i) acc += Ju[i * G + g] * lam[i];
          guc.at(t, g) = static_cast<S>(acc);
        }
      for (int q = 0; q < P; ++q) {
        double acc = 0.0;
        for (int i = 0; i < K; ++i) acc += static_cast<double>(Jp[i * P1 + q]) * lam[i];
        dp.v[q] += acc;
      }
      R back[K];
      for (int c = 0; c < K; ++c) {
        R acc = R(0);
        for (int i = 0; i < K; ++i) acc += jt[i * K + c] * lam[i];
        back[c] = acc;
      }
      if (t == 0) {
        write_grad_s0(lane, jt, lam);
      } else {
        for (int k = 0; k < K; ++k) lam[k] = back[k] + (gsc.base ? static_cast<R>(gsc.at(t - 1, k)) : R(0));
      }
    }
    write_dp(lane, dp);
  }

  // Time-parallel form: derivatives of every step, the reverse scan's maps,
  // then gradients from λ = maps[t].c.
  KOKKOS_INLINE_FUNCTION R* jac_at(index_t slot, index_t t) const { return jac + (slot * fw.T + t) * J; }
  KOKKOS_INLINE_FUNCTION void derivatives_step(index_t lane, index_t slot, index_t t) const {
    local_derivatives(lane, t, jac_at(slot, t));
  }
  /// maps[t]: λ_t = A_{t+1}^T λ_{t+1} + g_t; the last is the constant g_{T-1}.
  KOKKOS_INLINE_FUNCTION void map_step(index_t lane, index_t slot, index_t t) const {
    R g[K];
    upstream(lane, t, g);
    maps[slot * fw.T + t] =
        t == fw.T - 1 ? Map::constant(g) : transposed_linear<R, K>(jac_at(slot, t + 1), g);
  }
  KOKKOS_INLINE_FUNCTION ParamSum grads_step(index_t lane, index_t slot, index_t t) const {
    return input_grads(lane, t, jac_at(slot, t), maps[slot * fw.T + t].c);
  }
  KOKKOS_INLINE_FUNCTION void finish_lane(index_t lane, index_t slot, const ParamSum& dp) const {
    write_grad_s0(lane, jac_at(slot, 0), maps[slot * fw.T].c);
    write_dp(lane, dp);
  }
};

}  // namespace detail
}  // namespace kokkos
}  // namespace flashrnn

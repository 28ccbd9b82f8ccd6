// Forward solves of one lane: a K-dimensional recurrence of T steps held in
// contiguous compute-precision arrays (u: T x G, states: T x K). Time-parallel
// work goes through the executor `exec` (see serial_exec.hpp), so the same
// code is the serial reference and the threaded CPU solver.
#pragma once
#include <algorithm>
#include <vector>

#include "affine.hpp"
#include "cell.hpp"
#include "math.hpp"

namespace flashrnn {

/// Outcome of one lane's Newton solve.
struct LaneResult {
  int iterations = 0;
  double residual = 0.0;  ///< last max |s^{k+1} - s^k|
  bool converged = true;
  bool nonfinite = false;
};

/// Convergence test parameters, resolved to the compute precision.
template <class R>
struct NewtonParams {
  int max_iters;
  R atol, rtol, damping;
};

/// Scratch reused across lanes by one worker, so that a solve allocates once.
template <class R, int K>
struct LaneScratch {
  std::vector<Affine<R, K>> maps;
  std::vector<R> boundary;  // chunked form: incoming state of every chunk
  std::vector<R> jac;       // adjoint: per-step local derivatives
};

/// Exact sequential stepping: states[t] = f(states[t-1], u[t]), states[-1] = s0.
template <class Cell, class R>
void sequential_lane(index_t T, const R* u, const R* p, const R* s0, R* states) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  const R* prev = s0;
  for (index_t t = 0; t < T; ++t) {
    cell_step<Cell>(prev, u + t * G, p, states + t * K);
    prev = states + t * K;
  }
}

namespace detail {

/// Running max of the step size and of the step size over its tolerance.
struct StepError {
  double residual = 0.0;  // max |delta|
  double scaled = 0.0;    // max |delta| / (atol + rtol |new|); <= 1 means converged
  bool nonfinite = false;
  static StepError join(const StepError& a, const StepError& b) {
    return {std::max(a.residual, b.residual), std::max(a.scaled, b.scaled),
            a.nonfinite || b.nonfinite};
  }
};

/// Moves `state` (n values) toward `target` by the damping factor and returns
/// the step's error.
template <class R>
StepError damped_update(index_t n, R* state, const R* target, const NewtonParams<R>& np) {
  StepError e;
  for (index_t i = 0; i < n; ++i) {
    const R delta = target[i] - state[i];
    const R next = state[i] + np.damping * delta;
    if (!math::is_finite(next)) e.nonfinite = true;
    const double ad = math::abs(delta);
    e.residual = std::max(e.residual, ad);
    e.scaled = std::max(e.scaled, ad / (np.atol + np.rtol * math::abs(next)));
    state[i] = next;
  }
  return e;
}
template <int K, class R>
StepError damped_update(R* state, const R* target, const NewtonParams<R>& np) {
  return damped_update<R>(K, state, target, np);
}

/// Records one iteration's error in `r`; returns true when iterating should stop.
inline bool finish_iteration(LaneResult& r, int k, const StepError& e, bool exact) {
  r.iterations = k;
  r.residual = e.residual;
  if (e.nonfinite) {
    r.nonfinite = true;
    r.converged = false;
    return true;
  }
  r.converged = exact || e.scaled <= 1.0;
  return r.converged;
}

}  // namespace detail

/// Per-step Newton. Each iteration linearises every step at the current
/// trajectory and solves the linear recurrence with one affine scan. After k
/// undamped iterations the first k steps are exact, so k = T is exact.
/// `states` holds the result (the last iterate if not converged).
template <class Cell, class R, class Exec>
LaneResult newton_lane(const Exec& exec, index_t T, const R* u, const R* p, const R* s0,
                       R* states, const NewtonParams<R>& np, LaneScratch<R, cell_traits<Cell>::K>& scratch) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  using Map = Affine<R, K>;
  scratch.maps.resize(static_cast<size_t>(T));
  Map* maps = scratch.maps.data();

  // Initial guess s^0_t = f(0, u_t): steps independent of each other.
  exec.for_each(T, [&](index_t t) {
    R zero[K] = {};
    cell_step<Cell>(zero, u + t * G, p, states + t * K);
  });

  LaneResult result;
  for (int k = 1; k <= np.max_iters; ++k) {
    // Linearise: s_t ≈ A_t s_{t-1} + (f - A_t s^k_{t-1}). Step 0 sees the fixed s0.
    exec.for_each(T, [&](index_t t) {
      const R* prev = t == 0 ? s0 : states + (t - 1) * K;
      R f[K], A[K * K];
      cell_step_state_jacobian<Cell>(prev, u + t * G, p, f, A);
      maps[t] = t == 0 ? Map::constant(f) : Map::tangent(f, A, prev);
    });
    exec.inclusive_scan(maps, T);  // maps[t].c is now s^{k+1}_t
    const auto err = exec.reduce(
        T, detail::StepError{},
        [&](index_t t) { return detail::damped_update<K>(states + t * K, maps[t].c, np); },
        detail::StepError::join);
    const bool exact = np.damping == R(1) && k >= T;
    if (detail::finish_iteration(result, k, err, exact)) {
      // Damped iterations converge only linearly, so the damped iterate is about
      // one tolerance from the solution; the full step (the scan's result) is
      // quadratically closer. Converged: return that instead.
      if (result.converged && np.damping != R(1))
        exec.for_each(T, [&](index_t t) {
          for (int i = 0; i < K; ++i) states[t * K + i] = maps[t].c[i];
        });
      break;
    }
  }
  return result;
}

/// Chunk length the chunked form uses when the options leave it to the backend:
/// about sqrt(T) chunks of sqrt(T) steps balances the chunk sweeps against the
/// boundary scan, and gives enough chunks to parallelise one lane. It depends
/// on T only, never on the thread count, so results do not either.
inline index_t default_chunk_length(index_t T) {
  index_t c = 16;
  while (c * c < T) c *= 2;
  return c;
}

/// Runs the exact recurrence over steps [begin, end) from `incoming`, writing
/// states; with `phi` non-null also accumulates Φ = A_end-1 ⋯ A_begin.
template <class Cell, class R>
void run_chunk(index_t begin, index_t end, const R* u, const R* p, const R* incoming, R* states,
               R* phi) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  const R* prev = incoming;
  if (phi == nullptr) {
    for (index_t t = begin; t < end; ++t) {
      cell_step<Cell>(prev, u + t * G, p, states + t * K);
      prev = states + t * K;
    }
    return;
  }
  Affine<R, K> acc = Affine<R, K>::identity();
  for (index_t t = begin; t < end; ++t) {
    Affine<R, K> step;
    cell_step_state_jacobian<Cell>(prev, u + t * G, p, states + t * K, step.A);
    for (int i = 0; i < K; ++i) step.c[i] = R(0);
    acc = compose(step, acc);
    prev = states + t * K;
  }
  for (int i = 0; i < K * K; ++i) phi[i] = acc.A[i];
}

/// Chunked Newton (multiple shooting). Unknowns are the incoming states of the
/// chunks; each iteration runs every chunk exactly from its guess (in
/// parallel), linearises the chunk map by its Jacobian Φ_m and solves for the
/// boundaries with one affine scan over the chunks. A final exact pass from
/// the converged boundaries writes `states`, so the result is sequential
/// stepping up to rounding in the boundaries.
template <class Cell, class R, class Exec>
LaneResult newton_chunked_lane(const Exec& exec, index_t T, index_t chunk, const R* u,
                               const R* p, const R* s0, R* states, const NewtonParams<R>& np,
                               LaneScratch<R, cell_traits<Cell>::K>& scratch) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  using Map = Affine<R, K>;
  const index_t nc = (T + chunk - 1) / chunk;
  scratch.maps.resize(static_cast<size_t>(nc));
  scratch.boundary.resize(static_cast<size_t>(nc * K));
  Map* maps = scratch.maps.data();
  R* x = scratch.boundary.data();  // x[m] = state entering chunk m

  for (int i = 0; i < K; ++i) x[i] = s0[i];
  exec.for_each(nc - 1, [&](index_t m) {  // guess x[m+1] = f(0, u at the step before)
    R zero[K] = {};
    cell_step<Cell>(zero, u + ((m + 1) * chunk - 1) * G, p, x + (m + 1) * K);
  });

  LaneResult result;
  for (int k = 1; k <= np.max_iters && nc > 1; ++k) {
    exec.for_each_heavy(nc - 1, [&](index_t m) {  // the last chunk's end state is not an unknown
      const index_t begin = m * chunk, end = std::min(T, begin + chunk);
      R phi[K * K];
      run_chunk<Cell>(begin, end, u, p, x + m * K, states, phi);
      const R* F = states + (end - 1) * K;
      maps[m] = m == 0 ? Map::constant(F) : Map::tangent(F, phi, x + m * K);
    });
    exec.inclusive_scan(maps, nc - 1);  // maps[m].c = x^{k+1}[m+1]
    const auto err = exec.reduce(
        nc - 1, detail::StepError{},
        [&](index_t m) { return detail::damped_update<K>(x + (m + 1) * K, maps[m].c, np); },
        detail::StepError::join);
    const bool exact = np.damping == R(1) && k >= nc - 1;
    if (detail::finish_iteration(result, k, err, exact)) {
      if (result.converged && np.damping != R(1))  // full final step, as in newton_lane
        exec.for_each(nc - 1, [&](index_t m) {
          for (int i = 0; i < K; ++i) x[(m + 1) * K + i] = maps[m].c[i];
        });
      break;
    }
  }
  exec.for_each_heavy(nc, [&](index_t m) {
    const index_t begin = m * chunk, end = std::min(T, begin + chunk);
    run_chunk<Cell>(begin, end, u, p, x + m * K, states, static_cast<R*>(nullptr));
  });
  return result;
}

}  // namespace flashrnn

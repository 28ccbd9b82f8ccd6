// Solver options and the report every forward solve returns.
#pragma once
#include <string>

#include "config.hpp"

namespace flashrnn {

/// How the forward recurrence is solved.
enum class Mode {
  sequential,      ///< exact stepping, one step after another (the reference)
  newton,          ///< per-step Newton: each iteration is an affine scan over T steps
  newton_chunked,  ///< multiple shooting: Newton on chunk-boundary states only
  automatic,       ///< the backend picks from its measured tuning table
};

/// What to do when Newton does not converge within max_iters or meets
/// non-finite iterates.
enum class OnNonConvergence {
  fallback_sequential,  ///< recompute the affected lanes by exact stepping (default)
  throw_error,          ///< throw ConvergenceError
  keep_last_iterate,    ///< return the last iterate; the report says converged = false
};

/// Largest SolverOptions::sequential_segments: the limit of the CUDA backend's
/// exact segmented sequential kernel (segments per lane).
constexpr int max_sequential_segments = 16;

struct SolverOptions {
  Mode mode = Mode::automatic;
  int max_iters = 50;  ///< Newton iterations at most (>= 1)
  /// Stop when max_t |s^{k+1}_t - s^k_t| <= atol + rtol |s^{k+1}_t|.
  /// Negative means "the default for the precision" (see default_tolerance).
  double atol = -1;
  double rtol = -1;
  /// s^{k+1} = s^k + damping (s_newton - s^k); 1 is plain Newton, (0, 1] allowed.
  double damping = 1.0;
  /// Steps per chunk for newton_chunked; 0 lets the backend choose.
  index_t chunk_length = 0;
  /// CUDA backend, Mode::sequential (also when automatic picks it): segments
  /// each lane's sequence is cut into by the exact segmented sequential kernel;
  /// 0 = the backend's tuned choice, 1 = one thread per lane (plain stepping,
  /// best for cells with very long memory), up to max_sequential_segments.
  /// Results are bitwise identical for every value; other backends ignore it.
  int sequential_segments = 0;
  OnNonConvergence on_nonconvergence = OnNonConvergence::fallback_sequential;
  /// Reject non-finite inputs and parameters up front (one extra read of them).
  bool check_finite = true;
};

/// Default tolerance for a compute precision: Newton converges quadratically,
/// so stopping at ~sqrt(eps) leaves an error near eps after the final step.
template <class Real>
constexpr double default_tolerance() {
  return sizeof(Real) >= 8 ? 1e-10 : 1e-5;
}

struct SolveReport {
  Mode mode_used = Mode::sequential;
  int iterations = 0;           ///< Newton iterations (max over lanes); 0 for sequential
  double final_residual = 0.0;  ///< last max |s^{k+1} - s^k| (max over lanes)
  bool converged = true;        ///< every lane met the tolerance (or was exact)
  index_t lanes = 0;            ///< lanes solved
  index_t lanes_fell_back = 0;  ///< lanes recomputed by sequential stepping
  bool nonfinite_detected = false;  ///< a Newton iterate was inf/NaN somewhere
};

inline const char* to_string(Mode m) {
  switch (m) {
    case Mode::sequential: return "sequential";
    case Mode::newton: return "newton";
    case Mode::newton_chunked: return "newton_chunked";
    case Mode::automatic: return "auto";
  }
  return "?";
}

}  // namespace flashrnn

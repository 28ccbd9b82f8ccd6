// Argument checks shared by every backend's entry points. Each failure names
// the entry point, the argument, what was expected and what was given.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include "error.hpp"
#include "math.hpp"
#include "options.hpp"
#include "views.hpp"

namespace flashrnn {
namespace detail {

template <class T>
void check_view(const char* where, const char* arg, const View<T>& v, index_t steps,
                index_t batch, index_t channels, index_t units, bool optional = false) {
  if (v.data == nullptr) {
    if (optional) return;
    fail_argument(where, arg, "a non-null data pointer", "nullptr");
  }
  auto dim = [&](const char* name, index_t expected, index_t actual) {
    if (expected != actual)
      fail_argument(where, arg, concat(name, " = ", expected), concat(name, " = ", actual));
  };
  dim("steps", steps, v.steps);
  dim("batch", batch, v.batch);
  dim("channels", channels, v.channels);
  dim("units", units, v.units);
  if (v.stride_t < 0 || v.stride_b < 0 || v.stride_c < 0 || v.stride_h < 0)
    fail_argument(where, arg, "non-negative strides",
                  concat("(", v.stride_t, ", ", v.stride_b, ", ", v.stride_c, ", ", v.stride_h, ")"));
}

/// Byte range [lo, hi) spanned by a view, for aliasing checks.
template <class T>
void view_extent(const View<T>& v, const char*& lo, const char*& hi) {
  lo = reinterpret_cast<const char*>(v.data);
  const index_t last = (v.steps - 1) * v.stride_t + (v.batch - 1) * v.stride_b +
                       (v.channels - 1) * v.stride_c + (v.units - 1) * v.stride_h;
  hi = reinterpret_cast<const char*>(v.data + last + 1);
}

/// Outputs must not overlap inputs or each other: the solver reads inputs
/// after it starts writing outputs.
template <class A, class B>
void check_no_alias(const char* where, const char* out_name, const View<A>& out,
                    const char* in_name, const View<B>& in) {
  if (out.data == nullptr || in.data == nullptr) return;
  const char *a0, *a1, *b0, *b1;
  view_extent(out, a0, a1);
  view_extent(in, b0, b1);
  if (a0 < b1 && b0 < a1)
    fail_argument(where, out_name, concat("memory disjoint from '", in_name, "'"),
                  "overlapping memory");
}

/// An output view must not write the same element twice (zero or overlapping strides).
template <class T>
void check_output_strides(const char* where, const char* arg, const View<T>& v) {
  if (v.data == nullptr) return;
  struct Axis { index_t n, s; };
  Axis ax[4] = {{v.steps, v.stride_t}, {v.batch, v.stride_b}, {v.channels, v.stride_c},
                {v.units, v.stride_h}};
  std::sort(ax, ax + 4, [](const Axis& x, const Axis& y) { return x.s < y.s; });
  index_t span = 1;  // elements covered by the smaller axes
  for (const Axis& a : ax) {
    if (a.n == 1) continue;
    if (a.s < span)
      fail_argument(where, arg, "strides that address every element once (an output)",
                    concat("stride ", a.s, " over an axis of size ", a.n, " overlapping a span of ", span));
    span = a.s * (a.n - 1) + span;
  }
}

template <class T>
void check_finite(const char* where, const char* arg, const View<const T>& v) {
  if (v.data == nullptr) return;
  for (index_t t = 0; t < v.steps; ++t)
    for (index_t b = 0; b < v.batch; ++b)
      for (index_t c = 0; c < v.channels; ++c)
        for (index_t h = 0; h < v.units; ++h) {
          const double x = static_cast<double>(v(t, b, c, h));
          if (!std::isfinite(x))
            fail_argument(where, arg, "finite values",
                          concat(x, " at (t=", t, ", b=", b, ", channel=", c, ", unit=", h, ")"));
        }
}

/// The outputs of a forward solve: at least one of states / final_state, each
/// writing every element once, neither overlapping the inputs (u, the
/// parameters named `param_name`, s0) nor the other.
template <class S>
void check_forward_outputs(const char* where, const View<const S>& u, const char* param_name,
                           const View<const S>& param, const View<const S>& s0,
                           const View<S>& states, const View<S>& final_state) {
  if (states.data == nullptr && final_state.data == nullptr)
    fail_argument(where, "states/final_state", "at least one output", "both nullptr");
  check_output_strides(where, "states", states);
  check_output_strides(where, "final_state", final_state);
  check_no_alias(where, "states", states, "u", u);
  check_no_alias(where, "states", states, param_name, param);
  check_no_alias(where, "states", states, "s0", s0);
  check_no_alias(where, "final_state", final_state, "u", u);
  check_no_alias(where, "final_state", final_state, param_name, param);
  check_no_alias(where, "final_state", final_state, "s0", s0);
  check_no_alias(where, "final_state", final_state, "states", View<const S>(states));
}

inline void check_shape_positive(const char* where, index_t steps, index_t batch, index_t units) {
  if (steps < 1) fail_argument(where, "u", "steps >= 1", concat("steps = ", steps));
  if (batch < 1) fail_argument(where, "u", "batch >= 1", concat("batch = ", batch));
  if (units < 1) fail_argument(where, "u", "units >= 1", concat("units = ", units));
}

inline void check_options(const char* where, const SolverOptions& o) {
  if (o.max_iters < 1) fail_argument(where, "options.max_iters", ">= 1", o.max_iters);
  if (!(o.damping > 0.0 && o.damping <= 1.0))
    fail_argument(where, "options.damping", "a value in (0, 1]", o.damping);
  if (o.chunk_length < 0)
    fail_argument(where, "options.chunk_length", ">= 0 (0 = automatic)", o.chunk_length);
  if (o.sequential_segments < 0 || o.sequential_segments > max_sequential_segments)
    fail_argument(where, "options.sequential_segments",
                  concat("0 (tuned) to ", max_sequential_segments), o.sequential_segments);
  if (std::isnan(o.atol) || std::isnan(o.rtol))
    fail_argument(where, "options.atol/rtol", "numbers (negative = default)", "NaN");
}

/// Tolerances with the precision defaults filled in.
template <class Real>
void resolve_tolerances(const SolverOptions& o, Real& atol, Real& rtol) {
  atol = static_cast<Real>(o.atol < 0 ? default_tolerance<Real>() : o.atol);
  rtol = static_cast<Real>(o.rtol < 0 ? default_tolerance<Real>() : o.rtol);
}

}  // namespace detail
}  // namespace flashrnn

// Moving one lane (batch element b, unit j) between strided storage views and
// the contiguous compute-precision arrays the lane algorithms work on.
#pragma once
#include "views.hpp"

namespace flashrnn {
namespace detail {

/// out[t * C + c] = R(v(t, b, c, j)) for all steps t and channels c.
template <class R, class S>
void gather_lane(const View<S>& v, index_t b, index_t j, R* out) {
  const index_t C = v.channels;
  for (index_t t = 0; t < v.steps; ++t)
    for (index_t c = 0; c < C; ++c) out[t * C + c] = static_cast<R>(v(t, b, c, j));
}

/// The inverse of gather_lane.
template <class R, class S>
void scatter_lane(const View<S>& v, index_t b, index_t j, const R* in) {
  const index_t C = v.channels;
  for (index_t t = 0; t < v.steps; ++t)
    for (index_t c = 0; c < C; ++c) v(t, b, c, j) = static_cast<S>(in[t * C + c]);
}

/// Gathers an optional single-step view (zeros when absent).
template <class R, class S>
void gather_optional_state(const View<S>& v, index_t b, index_t j, int K, R* out) {
  for (int k = 0; k < K; ++k) out[k] = v.data ? static_cast<R>(v(0, b, k, j)) : R(0);
}

}  // namespace detail
}  // namespace flashrnn

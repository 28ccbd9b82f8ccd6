// Sequential stepping of a block of neighbouring lanes (one batch element,
// units j0..j1) directly on the strided views. Walking time in the outer loop
// and units in the inner one reads each step's pre-activations of the block as
// contiguous runs (units are usually the fastest axis), where stepping lane by
// lane would stride through memory once per lane.
#pragma once
#include <algorithm>
#include <vector>

#include "cell.hpp"
#include "views.hpp"

namespace flashrnn {
namespace detail {

template <class Cell, class R, class S>
void sequential_lane_block(const View<const S>& u, const View<const S>& p, const View<const S>& s0,
                           const View<S>& states, const View<S>& final_state, index_t b,
                           index_t j0, index_t j1) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1;
  const index_t n = j1 - j0;
  std::vector<R> s(static_cast<size_t>(n * K)), params(static_cast<size_t>(n * PP));
  for (index_t j = j0; j < j1; ++j) {
    for (int k = 0; k < K; ++k) s[(j - j0) * K + k] = s0.data ? static_cast<R>(s0(0, b, k, j)) : R(0);
    for (int q = 0; q < P; ++q) params[(j - j0) * PP + q] = static_cast<R>(p(0, 0, q, j));
  }
  for (index_t t = 0; t < u.steps; ++t) {
    for (index_t j = j0; j < j1; ++j) {
      R ul[G], next[K];
      for (int g = 0; g < G; ++g) ul[g] = static_cast<R>(u(t, b, g, j));
      R* sj = s.data() + (j - j0) * K;
      cell_step<Cell>(sj, ul, params.data() + (j - j0) * PP, next);
      for (int k = 0; k < K; ++k) sj[k] = next[k];
      if (states.data)
        for (int k = 0; k < K; ++k) states(t, b, k, j) = static_cast<S>(next[k]);
    }
  }
  if (final_state.data)
    for (index_t j = j0; j < j1; ++j)
      for (int k = 0; k < K; ++k) final_state(0, b, k, j) = static_cast<S>(s[(j - j0) * K + k]);
}

/// Calls f(b, j0, j1) for the runs of lanes [begin, end) (lane = b * H + j)
/// that share one batch element.
template <class F>
void for_lane_runs(index_t begin, index_t end, index_t H, F&& f) {
  while (begin < end) {
    const index_t b = begin / H, j0 = begin % H;
    const index_t j1 = std::min(H, j0 + (end - begin));
    f(b, j0, j1);
    begin += j1 - j0;
  }
}

}  // namespace detail
}  // namespace flashrnn

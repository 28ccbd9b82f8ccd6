// Kokkos::View -> flashrnn::View (core/views.hpp): the strided descriptor every
// FlashRNN kernel indexes. Any Kokkos layout works (LayoutRight, LayoutLeft,
// LayoutStride, subviews): only data() and stride(r) are used.
//
// Shapes accepted (batch-first, as Kokkos applications usually store them):
//   sequences  u, states, grads   rank 4 (B, T, C, H)  or rank 3 (B, T, C*H)
//                                 with channel c of unit j at c*H + j
//   states     s0, final_state    rank 3 (B, C, H)     or rank 2 (B, C*H)
//   parameters p                  rank 2 (P, H)
// A default-constructed Kokkos::View (data() == nullptr) means "absent".
#pragma once
#include <Kokkos_Core.hpp>

#include "flashrnn/core/error.hpp"
#include "flashrnn/core/views.hpp"

namespace flashrnn {
namespace kokkos {

/// The element type the descriptor of a Kokkos view points to (keeps const).
template <class KV>
using element_t = typename KV::value_type;

namespace detail {
template <class KV>
constexpr int rank_of() {
  return static_cast<int>(KV::rank);
}
template <class KV>
index_t stride_of(const KV& v, int r) {
  return static_cast<index_t>(v.stride(r));
}
}  // namespace detail

/// A sequence tensor: rank 4 (B, T, C, H) or rank 3 (B, T, C*H).
template <class KV>
View<element_t<KV>> sequence_view(const KV& v, int channels, const char* where, const char* arg) {
  constexpr int rank = detail::rank_of<KV>();
  static_assert(rank == 3 || rank == 4,
                "flashrnn::kokkos: sequence views are (B, T, C, H) or (B, T, C*H)");
  View<element_t<KV>> d;
  if (v.data() == nullptr) return d;
  d.data = v.data();
  d.batch = static_cast<index_t>(v.extent(0));
  d.steps = static_cast<index_t>(v.extent(1));
  d.stride_b = detail::stride_of(v, 0);
  d.stride_t = detail::stride_of(v, 1);
  if constexpr (rank == 4) {
    d.channels = static_cast<index_t>(v.extent(2));
    d.units = static_cast<index_t>(v.extent(3));
    d.stride_c = detail::stride_of(v, 2);
    d.stride_h = detail::stride_of(v, 3);
  } else {
    const index_t last = static_cast<index_t>(v.extent(2));
    if (last % channels != 0)
      flashrnn::detail::fail_argument(where, arg,
                                      flashrnn::detail::concat("extent(2) a multiple of ", channels, " (C*H)"),
                                      last);
    d.channels = channels;
    d.units = last / channels;
    d.stride_h = detail::stride_of(v, 2);
    d.stride_c = d.units * d.stride_h;
  }
  return d;
}

/// A one-step state tensor: rank 3 (B, C, H) or rank 2 (B, C*H).
template <class KV>
View<element_t<KV>> state_view(const KV& v, int channels, const char* where, const char* arg) {
  constexpr int rank = detail::rank_of<KV>();
  static_assert(rank == 2 || rank == 3,
                "flashrnn::kokkos: state views are (B, C, H) or (B, C*H)");
  View<element_t<KV>> d;
  if (v.data() == nullptr) return d;
  d.data = v.data();
  d.steps = 1;
  d.stride_t = 0;
  d.batch = static_cast<index_t>(v.extent(0));
  d.stride_b = detail::stride_of(v, 0);
  if constexpr (rank == 3) {
    d.channels = static_cast<index_t>(v.extent(1));
    d.units = static_cast<index_t>(v.extent(2));
    d.stride_c = detail::stride_of(v, 1);
    d.stride_h = detail::stride_of(v, 2);
  } else {
    const index_t last = static_cast<index_t>(v.extent(1));
    if (last % channels != 0)
      flashrnn::detail::fail_argument(where, arg,
                                      flashrnn::detail::concat("extent(1) a multiple of ", channels, " (C*H)"),
                                      last);
    d.channels = channels;
    d.units = last / channels;
    d.stride_h = detail::stride_of(v, 1);
    d.stride_c = d.units * d.stride_h;
  }
  return d;
}

/// Per-unit parameters: rank 2 (P, H).
template <class KV>
View<element_t<KV>> param_view(const KV& v) {
  static_assert(detail::rank_of<KV>() == 2, "flashrnn::kokkos: parameter views are (P, H)");
  View<element_t<KV>> d;
  if (v.data() == nullptr) return d;
  d.data = v.data();
  d.channels = static_cast<index_t>(v.extent(0));
  d.units = static_cast<index_t>(v.extent(1));
  d.stride_c = detail::stride_of(v, 0);
  d.stride_h = detail::stride_of(v, 1);
  return d;
}

}  // namespace kokkos
}  // namespace flashrnn

// The two scan forms of the Kokkos backend, both over core's Affine maps and
// compose() (core/affine.hpp):
//  - SegmentedAffineScan: a Kokkos::parallel_scan functor (custom init/join)
//    scanning many lanes laid end to end in one RangePolicy; a head flag
//    restarts the composition at each lane's first element, so one launch
//    scans every lane and a non-finite lane cannot leak into its neighbour.
//  - team_inclusive_scan / team_reverse_inclusive_scan / team_reduce: the
//    sequence of one lane scanned by the threads of a team, carries in team
//    scratch. Written by hand because Kokkos' nested parallel_scan
//    (TeamThreadRange) only supports sums (kokkos/kokkos#8826), and an affine
//    composition is not commutative.
// Both are deterministic for a given execution space and team size.
#pragma once
#include <Kokkos_Core.hpp>

#include "flashrnn/core/affine.hpp"
#include "flashrnn/core/config.hpp"

namespace flashrnn {
namespace kokkos {
namespace detail {

/// Value type of the segmented scan: the composed map and whether a lane
/// boundary lies inside the range it covers.
template <class T, int K>
struct SegmentedMap {
  Affine<T, K> m;
  int head;
};

/// Inclusive scan of maps[0 .. lanes*n), lane-major, restarting at every
/// lane: maps[l*n + e] <- maps[l*n + e] ∘ ... ∘ maps[l*n]. With `reverse`
/// each lane is scanned from its end: maps[l*n + e] <- maps[l*n + e] ∘ ... ∘
/// maps[l*n + n - 1] (the adjoint's λ recurrence). In place: the final pass
/// reads element i before it overwrites it, and touches no other element.
template <class T, int K>
struct SegmentedAffineScan {
  using value_type = SegmentedMap<T, K>;
  using Map = Affine<T, K>;
  Map* maps;
  index_t n;      // elements per lane
  index_t total;  // lanes * n
  bool reverse;

  KOKKOS_INLINE_FUNCTION void operator()(const index_t i, value_type& update, const bool final) const {
    const index_t g = reverse ? total - 1 - i : i;
    const index_t e = g % n;
    value_type v;
    v.m = maps[g];
    v.head = reverse ? (e == n - 1) : (e == 0);
    join(update, v);
    if (final) maps[g] = update.m;
  }
  KOKKOS_INLINE_FUNCTION void init(value_type& v) const {
    v.m = Map::identity();
    v.head = 0;
  }
  /// dst <- dst ⊕ src where dst covers the earlier elements (Kokkos' order).
  KOKKOS_INLINE_FUNCTION void join(value_type& dst, const value_type& src) const {
    dst.m = src.head ? src.m : compose(src.m, dst.m);
    dst.head = dst.head | src.head;
  }
#if KOKKOS_VERSION < 40000
  // Kokkos 3.x joins through volatile references; copy member-wise through them.
  KOKKOS_INLINE_FUNCTION void join(volatile value_type& dst, const volatile value_type& src) const {
    value_type a, b;
    load(a, dst);
    load(b, src);
    join(a, b);
    for (int i = 0; i < K * K; ++i) dst.m.A[i] = a.m.A[i];
    for (int i = 0; i < K; ++i) dst.m.c[i] = a.m.c[i];
    dst.head = a.head;
  }
  KOKKOS_INLINE_FUNCTION static void load(value_type& to, const volatile value_type& from) {
    for (int i = 0; i < K * K; ++i) to.m.A[i] = from.m.A[i];
    for (int i = 0; i < K; ++i) to.m.c[i] = from.m.c[i];
    to.head = from.head;
  }
#endif
};

/// Runs the segmented scan over `lanes` lanes of `n` maps each.
template <class ExecSpace, class T, int K>
void segmented_scan(const ExecSpace& space, Affine<T, K>* maps, index_t lanes, index_t n, bool reverse) {
  if (lanes * n == 0) return;
  SegmentedAffineScan<T, K> f{maps, n, lanes * n, reverse};
  Kokkos::parallel_scan("flashrnn::kokkos::segmented_affine_scan",
                        Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<index_t>>(space, 0, lanes * n), f);
}

/// This thread's contiguous slice [begin, end) of n elements split over the team.
template <class Member>
KOKKOS_INLINE_FUNCTION void team_slice(const Member& m, index_t n, index_t& begin, index_t& end) {
  const index_t ts = m.team_size();
  const index_t cs = (n + ts - 1) / ts;
  begin = m.team_rank() * cs;
  if (begin > n) begin = n;
  end = begin + cs < n ? begin + cs : n;
}

/// f(i) for i in [0, n) over the team's threads, then a team barrier.
template <class Member, class F>
KOKKOS_INLINE_FUNCTION void team_for(const Member& m, index_t n, const F& f) {
  index_t b, e;
  team_slice(m, n, b, e);
  for (index_t i = b; i < e; ++i) f(i);
  m.team_barrier();
}

/// join over f(i), i in [0, n): per-thread slices then the slice results in
/// rank order. Every thread returns the total. `buf` holds team_size values
/// of team scratch.
template <class Member, class V, class F, class Join>
KOKKOS_INLINE_FUNCTION V team_reduce(const Member& m, index_t n, const V& init, const F& f,
                                     const Join& join, V* buf) {
  index_t b, e;
  team_slice(m, n, b, e);
  V acc = init;
  for (index_t i = b; i < e; ++i) acc = join(acc, f(i));
  buf[m.team_rank()] = acc;
  m.team_barrier();
  V total = init;
  for (int q = 0; q < m.team_size(); ++q) total = join(total, buf[q]);
  m.team_barrier();  // buf may be reused on return
  return total;
}

/// The inclusive scan of maps[0, n) over the team, in scan order: forward
/// maps[i] <- maps[i] ∘ ... ∘ maps[0], Reverse maps[i] <- maps[i] ∘ ... ∘
/// maps[n-1]. Both directions keep team_slice's slices, so a team size groups
/// the compositions the same way every run. `carry` holds team_size maps of
/// team scratch. Ends with a team barrier.
template <bool Reverse, class Member, class T, int K>
KOKKOS_INLINE_FUNCTION void team_scan(const Member& m, Affine<T, K>* maps, index_t n,
                                      Affine<T, K>* carry) {
  using Map = Affine<T, K>;
  index_t b, e;
  team_slice(m, n, b, e);
  const int r = m.team_rank();
  const int dir = Reverse ? -1 : 1;
  // This slice's first and one-past-last element in scan order.
  const index_t first = Reverse ? e - 1 : b, stop = Reverse ? b - 1 : e;
  // The slice the scan starts in: slice 0, or in reverse the last non-empty one.
  int lead = 0;
  if (Reverse) {
    const index_t ts = m.team_size();
    const index_t cs = (n + ts - 1) / ts;
    lead = cs > 0 ? static_cast<int>((n + cs - 1) / cs) - 1 : -1;
  }
  if (b < e) {
    Map acc = maps[first];
    for (index_t i = first + dir; i != stop; i += dir) acc = compose(maps[i], acc);
    carry[r] = acc;
  }
  m.team_barrier();
  if (b < e) {
    if (r == lead) {
      for (index_t i = first + dir; i != stop; i += dir) maps[i] = compose(maps[i], maps[i - dir]);
    } else {
      Map acc = carry[lead];  // slices ahead of a non-empty one in scan order are non-empty
      for (int q = lead + dir; q != r; q += dir) acc = compose(carry[q], acc);
      for (index_t i = first; i != stop; i += dir) maps[i] = acc = compose(maps[i], acc);
    }
  }
  m.team_barrier();
}

/// maps[i] <- maps[i] ∘ ... ∘ maps[0] over the team (see team_scan).
template <class Member, class T, int K>
KOKKOS_INLINE_FUNCTION void team_inclusive_scan(const Member& m, Affine<T, K>* maps, index_t n,
                                                Affine<T, K>* carry) {
  team_scan<false>(m, maps, n, carry);
}

/// maps[i] <- maps[i] ∘ maps[i+1] ∘ ... ∘ maps[n-1], the mirror image.
template <class Member, class T, int K>
KOKKOS_INLINE_FUNCTION void team_reverse_inclusive_scan(const Member& m, Affine<T, K>* maps,
                                                        index_t n, Affine<T, K>* carry) {
  team_scan<true>(m, maps, n, carry);
}

}  // namespace detail
}  // namespace kokkos
}  // namespace flashrnn

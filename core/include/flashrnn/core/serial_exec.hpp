// The serial executor: the reference implementation of the small interface
// through which core/ algorithms ask a backend for parallel loops and scans.
//
// An executor provides
//   for_each(n, f)                      f(i) for i in [0, n), any order
//   for_each_heavy(n, f)                the same, for elements that are large
//                                       tasks (a whole chunk sweep each)
//   reduce(n, init, f, join)            join over f(i), join associative
//   inclusive_scan(maps, n)             maps[i] <- maps[i] ∘ ... ∘ maps[0]
//   reverse_inclusive_scan(maps, n)     maps[i] <- maps[i] ∘ maps[i+1] ∘ ... ∘ maps[n-1]
// Backends (oneTBB, OpenMP, Kokkos) supply parallel versions of the same calls.
#pragma once
#include "affine.hpp"
#include "config.hpp"

namespace flashrnn {

struct SerialExec {
  template <class F>
  void for_each(index_t n, F&& f) const {
    for (index_t i = 0; i < n; ++i) f(i);
  }
  template <class F>
  void for_each_heavy(index_t n, F&& f) const {
    for_each(n, f);
  }
  template <class V, class F, class Join>
  V reduce(index_t n, V init, F&& f, Join&& join) const {
    V acc = init;
    for (index_t i = 0; i < n; ++i) acc = join(acc, f(i));
    return acc;
  }
  template <class T, int K>
  void inclusive_scan(Affine<T, K>* maps, index_t n) const {
    for (index_t i = 1; i < n; ++i) maps[i] = compose(maps[i], maps[i - 1]);
  }
  template <class T, int K>
  void reverse_inclusive_scan(Affine<T, K>* maps, index_t n) const {
    for (index_t i = n - 2; i >= 0; --i) maps[i] = compose(maps[i], maps[i + 1]);
  }
};

}  // namespace flashrnn

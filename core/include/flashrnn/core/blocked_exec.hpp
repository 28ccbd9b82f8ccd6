// A parallel executor built from one primitive: a parallel loop over blocks.
// Scans and reductions use a fixed blocking that depends only on n (never on
// the thread count or on scheduling), so results are bitwise identical run to
// run and at any number of threads.
//
// `Loop` is a callable loop(nblocks, f) running f(block) for block in
// [0, nblocks) in parallel (oneTBB, OpenMP, Kokkos host spaces, ...).
#pragma once
#include <algorithm>
#include <vector>

#include "affine.hpp"
#include "config.hpp"

namespace flashrnn {

template <class Loop>
struct BlockedExec {
  Loop loop;
  index_t min_block = 512;  ///< elements per block at least: amortises scheduling
  index_t max_blocks = 64;  ///< blocks at most: bounds the serial carry pass

  index_t block_size(index_t n) const {
    return std::max(min_block, (n + max_blocks - 1) / max_blocks);
  }

  template <class F>
  void for_each(index_t n, F&& f) const {
    const index_t bs = block_size(n), nb = (n + bs - 1) / bs;
    loop(nb, [&](index_t blk) {
      const index_t end = std::min(n, (blk + 1) * bs);
      for (index_t i = blk * bs; i < end; ++i) f(i);
    });
  }

  /// One task per element: for elements that are whole sweeps (chunks).
  template <class F>
  void for_each_heavy(index_t n, F&& f) const {
    loop(n, f);
  }

  template <class V, class F, class Join>
  V reduce(index_t n, V init, F&& f, Join&& join) const {
    const index_t bs = block_size(n), nb = (n + bs - 1) / bs;
    std::vector<V> partial(static_cast<size_t>(nb), init);
    loop(nb, [&](index_t blk) {
      const index_t end = std::min(n, (blk + 1) * bs);
      V acc = init;
      for (index_t i = blk * bs; i < end; ++i) acc = join(acc, f(i));
      partial[static_cast<size_t>(blk)] = acc;
    });
    V acc = init;
    for (const V& v : partial) acc = join(acc, v);
    return acc;
  }

  /// maps[i] <- maps[i] ∘ ... ∘ maps[0]: block aggregates, a serial carry over
  /// the blocks, then each block rescanned from its carry.
  template <class T, int K>
  void inclusive_scan(Affine<T, K>* maps, index_t n) const {
    using Map = Affine<T, K>;
    const index_t bs = block_size(n), nb = (n + bs - 1) / bs;
    if (nb <= 1) {
      for (index_t i = 1; i < n; ++i) maps[i] = compose(maps[i], maps[i - 1]);
      return;
    }
    std::vector<Map> carry(static_cast<size_t>(nb));
    loop(nb, [&](index_t blk) {
      const index_t begin = blk * bs, end = std::min(n, begin + bs);
      Map acc = maps[begin];
      for (index_t i = begin + 1; i < end; ++i) acc = compose(maps[i], acc);
      carry[static_cast<size_t>(blk)] = acc;
    });
    for (index_t blk = 1; blk < nb; ++blk)
      carry[static_cast<size_t>(blk)] = compose(carry[static_cast<size_t>(blk)], carry[static_cast<size_t>(blk - 1)]);
    loop(nb, [&](index_t blk) {
      const index_t begin = blk * bs, end = std::min(n, begin + bs);
      if (blk == 0) {
        for (index_t i = begin + 1; i < end; ++i) maps[i] = compose(maps[i], maps[i - 1]);
        return;
      }
      Map acc = carry[static_cast<size_t>(blk - 1)];
      for (index_t i = begin; i < end; ++i) maps[i] = acc = compose(maps[i], acc);
    });
  }

  /// maps[i] <- maps[i] ∘ maps[i+1] ∘ ... ∘ maps[n-1], the mirror image.
  template <class T, int K>
  void reverse_inclusive_scan(Affine<T, K>* maps, index_t n) const {
    using Map = Affine<T, K>;
    const index_t bs = block_size(n), nb = (n + bs - 1) / bs;
    if (nb <= 1) {
      for (index_t i = n - 2; i >= 0; --i) maps[i] = compose(maps[i], maps[i + 1]);
      return;
    }
    std::vector<Map> carry(static_cast<size_t>(nb));
    loop(nb, [&](index_t blk) {
      const index_t begin = blk * bs, end = std::min(n, begin + bs);
      Map acc = maps[end - 1];
      for (index_t i = end - 2; i >= begin; --i) acc = compose(maps[i], acc);
      carry[static_cast<size_t>(blk)] = acc;
    });
    for (index_t blk = nb - 2; blk >= 0; --blk)
      carry[static_cast<size_t>(blk)] = compose(carry[static_cast<size_t>(blk)], carry[static_cast<size_t>(blk + 1)]);
    loop(nb, [&](index_t blk) {
      const index_t begin = blk * bs, end = std::min(n, begin + bs);
      if (blk == nb - 1) {
        for (index_t i = end - 2; i >= begin; --i) maps[i] = compose(maps[i], maps[i + 1]);
        return;
      }
      Map acc = carry[static_cast<size_t>(blk + 1)];
      for (index_t i = end - 1; i >= begin; --i) maps[i] = acc = compose(maps[i], acc);
    });
  }
};

}  // namespace flashrnn

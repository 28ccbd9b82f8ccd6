// Runtime-sized affine maps x -> L x + c on R^n and the linear recurrences
// they define, for lanes whose state size is only known at run time (dense
// cells: one lane per batch element, n = H). The compile-time Affine<T, K> of
// affine.hpp stays the hot path for the per-unit cells.
//
// The linear part is a policy:
//   DenseLinear     L is n x n row-major: compose costs n^3, apply n^2
//   DiagonalLinear  L is diagonal (n values): compose and apply cost n
// Maps live back to back in one caller-owned buffer (AffineMaps), so a
// recurrence of T steps allocates once.
#pragma once
#include <algorithm>
#include <vector>

#include "blocked_exec.hpp"
#include "config.hpp"
#include "serial_exec.hpp"

namespace flashrnn {

/// Full n x n linear parts (row-major).
struct DenseLinear {
  static index_t size(index_t n) { return n * n; }
  template <class T>
  static void set_identity(index_t n, T* L) {
    for (index_t i = 0; i < n * n; ++i) L[i] = T(0);
    for (index_t i = 0; i < n; ++i) L[i * n + i] = T(1);
  }
  /// y += L x (y must not alias x).
  template <class T>
  static void apply_add(index_t n, const T* L, const T* x, T* y) {
    for (index_t i = 0; i < n; ++i) {
      T acc = y[i];
      const T* l = L + i * n;
      for (index_t j = 0; j < n; ++j) acc += l[j] * x[j];
      y[i] = acc;
    }
  }
  /// y -= L x (y must not alias x).
  template <class T>
  static void apply_sub(index_t n, const T* L, const T* x, T* y) {
    for (index_t i = 0; i < n; ++i) {
      T acc = y[i];
      const T* l = L + i * n;
      for (index_t j = 0; j < n; ++j) acc -= l[j] * x[j];
      y[i] = acc;
    }
  }
  /// out = L2 L1 (out must alias neither).
  template <class T>
  static void multiply(index_t n, const T* L2, const T* L1, T* out) {
    for (index_t i = 0; i < n * n; ++i) out[i] = T(0);
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < n; ++k) {
        const T a = L2[i * n + k];
        const T* b = L1 + k * n;
        T* o = out + i * n;
        for (index_t j = 0; j < n; ++j) o[j] += a * b[j];
      }
  }
};

/// Diagonal linear parts (n values): the quasi-Newton maps.
struct DiagonalLinear {
  static index_t size(index_t n) { return n; }
  template <class T>
  static void set_identity(index_t n, T* L) {
    for (index_t i = 0; i < n; ++i) L[i] = T(1);
  }
  template <class T>
  static void apply_add(index_t n, const T* L, const T* x, T* y) {
    for (index_t i = 0; i < n; ++i) y[i] += L[i] * x[i];
  }
  template <class T>
  static void apply_sub(index_t n, const T* L, const T* x, T* y) {
    for (index_t i = 0; i < n; ++i) y[i] -= L[i] * x[i];
  }
  template <class T>
  static void multiply(index_t n, const T* L2, const T* L1, T* out) {
    for (index_t i = 0; i < n; ++i) out[i] = L2[i] * L1[i];
  }
};

/// `count` maps x -> L x + c on R^n stored back to back: L(i) then c(i).
template <class Lin, class T>
struct AffineMaps {
  T* data = nullptr;
  index_t n = 0;

  static index_t stride(index_t n) { return Lin::size(n) + n; }
  index_t stride() const { return stride(n); }
  T* L(index_t i) const { return data + i * stride(); }
  T* c(index_t i) const { return L(i) + Lin::size(n); }
};

/// y = L x + c for one map (y must not alias x).
template <class Lin, class T>
void affine_apply(index_t n, const T* L, const T* c, const T* x, T* y) {
  for (index_t i = 0; i < n; ++i) y[i] = c[i];
  Lin::apply_add(n, L, x, y);
}

/// (Lo, co) = later ∘ earlier = (L2 L1, L2 c1 + c2): apply `earlier` first.
/// The output must alias neither input.
template <class Lin, class T>
void affine_compose(index_t n, const T* L2, const T* c2, const T* L1, const T* c1, T* Lo, T* co) {
  Lin::multiply(n, L2, L1, Lo);
  for (index_t i = 0; i < n; ++i) co[i] = c2[i];
  Lin::apply_add(n, L2, c1, co);
}

// ---- executors for runtime-sized maps ---------------------------------------

namespace detail {
/// A loop(n, f) that runs f(0), ..., f(n-1) in order on the calling thread.
struct InlineLoop {
  template <class F>
  void operator()(index_t n, const F& f) const {
    for (index_t i = 0; i < n; ++i) f(i);
  }
};
/// A loop(n, f) over any executor's for_each (the generic fallback).
template <class Exec>
struct ForEachLoop {
  const Exec* exec;
  template <class F>
  void operator()(index_t n, const F& f) const {
    exec->for_each(n, f);
  }
};
}  // namespace detail

/// Time-parallel work on runtime-sized maps. The executors of serial_exec.hpp
/// scan compile-time Affine<T, K> only, and their blocking (>= 512 elements a
/// block) suits maps of a few values, not n x n ones; this adapter takes their
/// parallel loop and blocks by its own rule. As in BlockedExec the blocking
/// depends only on the length (never on threads), so results are bitwise
/// reproducible at any thread count. A serial executor uses one block: the
/// recurrence is then plain stepping (n^2 a step, no n^3 composition).
template <class Loop>
struct DenseTimeExec {
  Loop loop;
  bool parallel = false;    ///< false: one block, the sequential algorithm
  index_t min_block = 32;   ///< steps per block at least (a dense compose costs n^3)
  index_t max_blocks = 64;  ///< blocks at most: bounds the serial carry pass

  index_t block_size(index_t len) const {
    if (!parallel) return std::max<index_t>(len, 1);
    return std::max(min_block, (len + max_blocks - 1) / max_blocks);
  }
  index_t blocks(index_t len) const { return (len + block_size(len) - 1) / block_size(len); }

  /// f(block, begin, end) over the fixed blocks of [0, len), in parallel:
  /// a block can keep scratch for all of its elements.
  template <class F>
  void for_blocks(index_t len, F&& f) const {
    const index_t bs = block_size(len), nb = (len + bs - 1) / bs;
    loop(nb, [&](index_t blk) { f(blk, blk * bs, std::min(len, (blk + 1) * bs)); });
  }

  /// join over f(i) for i in [0, len): per block in order, then over the blocks in order.
  template <class V, class F, class Join>
  V reduce(index_t len, V init, F&& f, Join&& join) const {
    const index_t nb = blocks(len);
    std::vector<V> partial(static_cast<size_t>(nb), init);
    for_blocks(len, [&](index_t blk, index_t begin, index_t end) {
      V acc = init;
      for (index_t i = begin; i < end; ++i) acc = join(acc, f(i));
      partial[static_cast<size_t>(blk)] = acc;
    });
    V acc = init;
    for (const V& v : partial) acc = join(acc, v);
    return acc;
  }
};

inline DenseTimeExec<detail::InlineLoop> make_dense_exec(const SerialExec&) {
  return DenseTimeExec<detail::InlineLoop>{detail::InlineLoop{}, false};
}
template <class Loop>
DenseTimeExec<Loop> make_dense_exec(const BlockedExec<Loop>& exec) {
  return DenseTimeExec<Loop>{exec.loop, true};
}
/// Any other executor: its for_each over blocks (correct; it may group blocks).
template <class Exec>
DenseTimeExec<detail::ForEachLoop<Exec>> make_dense_exec(const Exec& exec) {
  return DenseTimeExec<detail::ForEachLoop<Exec>>{detail::ForEachLoop<Exec>{&exec}, true};
}

/// Scratch of the recurrence solvers, reused across calls by one worker.
template <class T>
struct RecurrenceScratch {
  std::vector<T> agg;    // per block: its aggregate map and a ping-pong buffer
  std::vector<T> carry;  // per block: the state entering it
};

namespace detail {
/// Composition of maps[first..last] in the direction of travel, written to
/// `out`; `tmp` is a second buffer of one map.
template <class Lin, class T>
void aggregate_block(const AffineMaps<Lin, const T>& maps, index_t first, index_t last,
                     index_t dir, T* out, T* tmp) {
  const index_t n = maps.n, ls = Lin::size(n), count = (last - first) * dir + 1;
  // Ping-pong so that the final composition lands in `out`.
  T* acc = (count % 2 == 1) ? out : tmp;
  T* next = (count % 2 == 1) ? tmp : out;
  std::copy(maps.L(first), maps.L(first) + AffineMaps<Lin, T>::stride(n), acc);
  for (index_t i = first + dir; i != last + dir; i += dir) {
    affine_compose<Lin>(n, maps.L(i), maps.c(i), acc, acc + ls, next, next + ls);
    std::swap(acc, next);
  }
}
}  // namespace detail

/// Solves x_t = L_t x_{t-1} + c_t for t in [0, len), x_{-1} = x0, into x (len x n,
/// contiguous). Blocked scan: aggregates of all blocks but the last in parallel
/// (n^3 a step for dense maps), a serial carry over the blocks, then every
/// block steps from its incoming state in parallel (n^2 a step).
template <class Lin, class Loop, class T>
void solve_affine_recurrence(const DenseTimeExec<Loop>& ex, const AffineMaps<Lin, const T>& maps,
                             index_t len, const T* x0, T* x, RecurrenceScratch<T>& scratch) {
  const index_t n = maps.n, stride = maps.stride();
  auto run = [&](index_t begin, index_t end, const T* in) {
    for (index_t t = begin; t < end; ++t) {
      affine_apply<Lin>(n, maps.L(t), maps.c(t), in, x + t * n);
      in = x + t * n;
    }
  };
  const index_t bs = ex.block_size(len), nb = (len + bs - 1) / bs;
  if (nb <= 1) {
    run(0, len, x0);
    return;
  }
  scratch.agg.resize(static_cast<size_t>(2 * nb * stride));
  scratch.carry.resize(static_cast<size_t>(nb * n));
  T* agg = scratch.agg.data();
  T* carry = scratch.carry.data();
  ex.loop(nb - 1, [&](index_t blk) {
    const index_t begin = blk * bs, end = std::min(len, begin + bs);
    detail::aggregate_block(maps, begin, end - 1, 1, agg + 2 * blk * stride,
                            agg + (2 * blk + 1) * stride);
  });
  std::copy(x0, x0 + n, carry);
  for (index_t blk = 1; blk < nb; ++blk) {
    const T* a = agg + 2 * (blk - 1) * stride;
    affine_apply<Lin>(n, a, a + Lin::size(n), carry + (blk - 1) * n, carry + blk * n);
  }
  ex.loop(nb, [&](index_t blk) {
    const index_t begin = blk * bs, end = std::min(len, begin + bs);
    run(begin, end, carry + blk * n);
  });
}

/// The mirror image: y_t = L_t y_{t+1} + c_t for t = len-1 down to 0,
/// y_len = y_end (zero when null), into y (len x n, contiguous).
template <class Lin, class Loop, class T>
void solve_affine_recurrence_reverse(const DenseTimeExec<Loop>& ex,
                                     const AffineMaps<Lin, const T>& maps, index_t len,
                                     const T* y_end, T* y, RecurrenceScratch<T>& scratch) {
  const index_t n = maps.n, stride = maps.stride();
  std::vector<T> zero;
  if (y_end == nullptr) {
    zero.assign(static_cast<size_t>(n), T(0));
    y_end = zero.data();
  }
  auto run = [&](index_t begin, index_t end, const T* in) {
    for (index_t t = end - 1; t >= begin; --t) {
      affine_apply<Lin>(n, maps.L(t), maps.c(t), in, y + t * n);
      in = y + t * n;
    }
  };
  const index_t bs = ex.block_size(len), nb = (len + bs - 1) / bs;
  if (nb <= 1) {
    run(0, len, y_end);
    return;
  }
  scratch.agg.resize(static_cast<size_t>(2 * nb * stride));
  scratch.carry.resize(static_cast<size_t>(nb * n));
  T* agg = scratch.agg.data();
  T* carry = scratch.carry.data();  // carry[blk] = y at the end of block blk (= y_{end})
  ex.loop(nb - 1, [&](index_t i) {
    const index_t blk = i + 1;  // every block but the first
    const index_t begin = blk * bs, end = std::min(len, begin + bs);
    detail::aggregate_block(maps, end - 1, begin, -1, agg + 2 * blk * stride,
                            agg + (2 * blk + 1) * stride);
  });
  std::copy(y_end, y_end + n, carry + (nb - 1) * n);
  for (index_t blk = nb - 2; blk >= 0; --blk) {
    const T* a = agg + 2 * (blk + 1) * stride;
    affine_apply<Lin>(n, a, a + Lin::size(n), carry + (blk + 1) * n, carry + blk * n);
  }
  ex.loop(nb, [&](index_t blk) {
    const index_t begin = blk * bs, end = std::min(len, begin + bs);
    run(begin, end, carry + blk * n);
  });
}

}  // namespace flashrnn

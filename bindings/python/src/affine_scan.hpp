// The generic affine scan behind Python-defined cells: per lane n,
//   out[t] = A[t] out[t-1] + c[t]  (forward, out[-1] = s0 or 0), or
//   out[t] = A[t] out[t+1] + c[t]  (reverse, out[T] = s0 or 0),
// with A diagonal (T, N, K), block-diagonal (T, N, K/b, b, b) or dense
// (T, N, K, K), all contiguous. The three are one case: a block-diagonal A with
// blocks of b = 1, b or K is, in memory, a dense scan of N*K/b lanes of size b.
// Uses core's Affine composition and the CPU backend's executors, so it is the
// same scan the built-in cells' Newton and adjoint solves run on.
#pragma once
#include <algorithm>
#include <vector>

#include "flashrnn/core/affine.hpp"
#include "flashrnn/core/serial_exec.hpp"
#include "flashrnn/cpu/backend.hpp"

namespace flashrnn {
namespace pybind_detail {

template <class R, int K, class Exec>
void scan_lane(const Exec& exec, std::vector<Affine<R, K>>& maps, const R* A, const R* c,
               const R* s0, R* out, index_t T, index_t N, index_t n, bool reverse) {
  using Map = Affine<R, K>;
  maps.resize(static_cast<size_t>(T));
  const index_t sA = N * K * K, sc = N * K;
  const R* A0 = A + n * K * K;
  const R* c0 = c + n * K;
  exec.for_each(T, [&](index_t t) {
    Map& m = maps[static_cast<size_t>(t)];
    for (int i = 0; i < K * K; ++i) m.A[i] = A0[t * sA + i];
    for (int i = 0; i < K; ++i) m.c[i] = c0[t * sc + i];
  });
  // The boundary value folds into the first map applied.
  const index_t first = reverse ? T - 1 : 0;
  R init[K];
  for (int i = 0; i < K; ++i) init[i] = s0 ? s0[n * K + i] : R(0);
  R y[K];
  maps[static_cast<size_t>(first)].apply(init, y);
  maps[static_cast<size_t>(first)] = Map::constant(y);
  if (reverse)
    exec.reverse_inclusive_scan(maps.data(), T);
  else
    exec.inclusive_scan(maps.data(), T);
  R* o = out + n * K;
  exec.for_each(T, [&](index_t t) {
    for (int i = 0; i < K; ++i) o[t * sc + i] = maps[static_cast<size_t>(t)].c[i];
  });
}

template <class R, int K>
void scan_fixed(const R* A, const R* c, const R* s0, R* out, index_t T, index_t N, bool reverse,
                int threads) {
  const cpu::Backend be(threads);
  if (N < static_cast<index_t>(be.workers())) {  // few lanes: parallel along time
    std::vector<Affine<R, K>> maps;
    for (index_t n = 0; n < N; ++n) scan_lane<R, K>(be.time_exec(), maps, A, c, s0, out, T, N, n, reverse);
    return;
  }
  be.for_blocks(N, 1, [&](index_t begin, index_t end) {
    std::vector<Affine<R, K>> maps;
    for (index_t n = begin; n < end; ++n) scan_lane<R, K>(SerialExec{}, maps, A, c, s0, out, T, N, n, reverse);
  });
}

/// Runtime K (dense cells with many state components): the recurrence run
/// directly per lane, O(T K^2), lanes in parallel.
template <class R>
void scan_dynamic(const R* A, const R* c, const R* s0, R* out, index_t T, index_t N, index_t K,
                  bool reverse, int threads) {
  const cpu::Backend be(threads);
  be.for_blocks(N, 1, [&](index_t begin, index_t end) {
    std::vector<R> prev(static_cast<size_t>(K)), next(static_cast<size_t>(K));
    for (index_t n = begin; n < end; ++n) {
      for (index_t i = 0; i < K; ++i) prev[i] = s0 ? s0[n * K + i] : R(0);
      for (index_t q = 0; q < T; ++q) {
        const index_t t = reverse ? T - 1 - q : q;
        const R* At = A + (t * N + n) * K * K;
        const R* ct = c + (t * N + n) * K;
        for (index_t i = 0; i < K; ++i) {
          R acc = ct[i];
          for (index_t j = 0; j < K; ++j) acc += At[i * K + j] * prev[j];
          next[i] = acc;
        }
        std::copy(next.begin(), next.end(), out + (t * N + n) * K);
        prev.swap(next);
      }
    }
  });
}

/// block: 1 (diagonal A), b (block-diagonal, b divides K) or K (dense).
template <class R>
void affine_scan(const R* A, const R* c, const R* s0, R* out, index_t T, index_t N, index_t K,
                 index_t block, bool reverse, int threads) {
  if (T == 0 || N == 0 || K == 0) return;
  const index_t lanes = N * (K / block);
  switch (block) {
    case 1: return scan_fixed<R, 1>(A, c, s0, out, T, lanes, reverse, threads);
    case 2: return scan_fixed<R, 2>(A, c, s0, out, T, lanes, reverse, threads);
    case 3: return scan_fixed<R, 3>(A, c, s0, out, T, lanes, reverse, threads);
    case 4: return scan_fixed<R, 4>(A, c, s0, out, T, lanes, reverse, threads);
    default: return scan_dynamic<R>(A, c, s0, out, T, lanes, block, reverse, threads);
  }
}

}  // namespace pybind_detail
}  // namespace flashrnn

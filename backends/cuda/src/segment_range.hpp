// How the segmented sequential forward (sequential_forward.cuh) cuts a
// lane's sequence among its C segments. Plain C++ so that the host tests
// check it without a GPU.
#pragma once
#include "flashrnn/core/config.hpp"

namespace flashrnn {
namespace cuda {
namespace detail {

/// The steps [t0, t1) of one segment.
struct SegmentRange {
  index_t t0, t1;
};

/// Segment c of C over T steps. Balanced (burn_in > 0), cut for equal
/// work: every segment but the first also steps burn_in steps before its
/// range for its start guess, so the first takes that much more of the
/// sequence, and lengths are whole multiples of `grain` (the kernel's block
/// of prefetched steps: a partial block costs a block's copies and per-step
/// bound checks) but for the last segment's. With burn_in = 0, equal
/// lengths (ceil(T / C) rounded up to the grain; the last one shorter). The
/// ranges tile [0, T) in order; trailing ones may be empty.
///
/// The staged kernel balances (H200, segments.cu rough, perf/README.md):
/// each of its warps steps one segment, and at equal lengths the first
/// segment's warp idled through the others' burn-in (4 % of the work at
/// C = 12, T = 2048, burn-in 48): 1-3 % faster at 8192-32768 lanes. The
/// register path keeps equal lengths: where a warp holds several segments
/// (half-warp segments) their burn-in and their ranges run one after the
/// other in it, and balancing was 10-13 % slower (2048 lanes); with
/// whole-warp segments (fp32, 8192 lanes, 8 segments) 0.5-3 % slower.
FLASHRNN_HOST_DEVICE inline SegmentRange segment_range(int c, int C, index_t T, int burn_in, int grain) {
  auto round_up = [grain](index_t n) { return (n + grain - 1) / grain * grain; };
  // The first segment: its share of T plus the others' burn-ins.
  const index_t share = round_up((T + static_cast<index_t>(C - 1) * burn_in + C - 1) / C);
  const index_t first = share < T ? share : T;
  // The others: an equal share of the rest (without burn-in, of T).
  const index_t other = burn_in > 0 && C > 1 ? round_up((T - first + C - 2) / (C - 1)) : first;
  const index_t after = first + (c - 1) * other;
  const index_t lo = c == 0 ? 0 : (after < T ? after : T);
  const index_t hi = c == 0 ? first : (lo + other < T ? lo + other : T);
  return SegmentRange{lo, hi};
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

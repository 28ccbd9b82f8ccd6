// The sequential forward kernel: exact stepping, one thread per lane (or per
// pair of adjacent lanes, lane_pack.cuh) and segment of the sequence.
//
// One thread per lane is latency-bound (~0.1 us a step on an H200) and
// leaves most of the GPU idle when lanes are few. So the sequence may be cut
// into C segments (blockDim.y = C; blockDim.x threads of consecutive lanes
// per segment, a warp up to 8 segments, half a warp beyond). Every segment is
// first stepped from a guessed start (the first from s0; the others from the
// state that a.burn_in steps before the segment, stepped from zero, lead to,
// which for contracting cells is usually already exact), then corrected: a
// segment whose start turns out different steps the true trajectory and the
// guessed one side by side, writing the true states, until the two are
// bitwise equal. From there on they are the same computation on the same
// inputs, so the states already written are the exact ones. Contracting
// cells merge within tens of steps, so the sequence costs about T / C steps
// plus the burn-in and the merge. A segment that does not merge changes its
// end state and its successor is corrected again in the next round; after
// C - 1 rounds every start is exact. The result is bitwise that of stepping
// the whole sequence in one thread, whatever the cell does. So the guess may
// be cheap: the staged 16-bit kernel steps the burn-in's first blocks with
// rough activations (rough_float.cuh), and the staged kernel makes the first
// segment longer by the others' burn-in (segment_range.hpp).
#pragma once
#include "input_stage.cuh"
#include "kernels.cuh"
#include "lane_pack.cuh"
#include "rough_float.cuh"
#include "segment_range.hpp"
#include "segment_rounds.cuh"

namespace flashrnn {
namespace cuda {
namespace detail {

/// Loads the inputs of `count` (<= D) consecutive steps from `src` into `buf`
/// (zeros past `count`), V lanes an access.
template <class Pack, class S, int D, int G>
__device__ __forceinline__ void load_steps(typename Pack::packed (&buf)[D][G], const S* src, index_t st,
                                           index_t sc, int count) {
#pragma unroll
  for (int i = 0; i < D; ++i)
#pragma unroll
    for (int g = 0; g < G; ++g) buf[i][g] = i < count ? Pack::load(src + i * st + g * sc) : Pack::zero();
}

/// Converts one step's packed inputs to the compute type: cur[v][g] is input
/// g of lane v.
template <class Pack, class R, int V, int G>
__device__ __forceinline__ void unpack_step(const typename Pack::packed (&x)[G], R (&cur)[V][G]) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    R lanes[V];
    Pack::unpack(x[g], lanes);
#pragma unroll
    for (int v = 0; v < V; ++v) cur[v][g] = lanes[v];
  }
}

/// Converts a prefetched block to the compute type: cur[i][v][g] is input g
/// of lane v at step i.
template <class Pack, class R, int D, int V, int G>
__device__ __forceinline__ void unpack_steps(const typename Pack::packed (&buf)[D][G], R (&cur)[D][V][G]) {
#pragma unroll
  for (int i = 0; i < D; ++i) unpack_step<Pack>(buf[i], cur[i]);
}

/// Folds a prefetched block into the inputs' finiteness probe (the zeros
/// past the sequence's end are finite).
template <class Pack, int D, int G>
__device__ __forceinline__ void fold_steps(const typename Pack::packed (&buf)[D][G], typename Pack::probe& probe) {
#pragma unroll
  for (int i = 0; i < D; ++i)
#pragma unroll
    for (int g = 0; g < G; ++g) Pack::fold(buf[i][g], probe);
}

/// The finiteness probe of a thread's inputs (LanePack::fold).
template <class S, int V>
using InputProbe = typename LanePack<typename std::remove_const<S>::type, V>::probe;

/// The cell's step with rough activations (rough_float.cuh), in float.
template <class Cell, int PP>
__device__ __forceinline__ void rough_cell_step(const float* s, const float* u, const float (&p)[PP],
                                                float* s_next) {
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  RoughFloat rs[K], ru[G], rp[PP], rn[K];
#pragma unroll
  for (int k = 0; k < K; ++k) rs[k] = s[k];
#pragma unroll
  for (int g = 0; g < G; ++g) ru[g] = u[g];
#pragma unroll
  for (int q = 0; q < PP; ++q) rp[q] = p[q];
  cell_step<Cell>(rs, ru, rp, rn);
#pragma unroll
  for (int k = 0; k < K; ++k) s_next[k] = rn[k].v;
}

/// One step of step_range for the V lanes of a thread (lane v's state at
/// a + v * K): true once the corrected trajectories `a` have all merged with
/// `b` (Correct); otherwise writes the states (Write). A lane that merged
/// before the others keeps stepping: its a and b stay equal, and the states
/// it writes again are the same bits. Rough: with rough activations (a
/// burn-in's first steps; 16-bit storage, neither Correct nor Write).
template <class Cell, class Pack, class S, class R, int V, int PP, bool Correct, bool Write, bool Rough = false>
__device__ __forceinline__ bool one_step(const R (&in)[V][cell_traits<Cell>::G], const R (&p)[V][PP], R* a, R* b,
                                         S*& out, index_t out_st, index_t out_sc) {
  constexpr int K = cell_traits<Cell>::K;
  static_assert(!Rough || (!Correct && !Write), "rough steps only guess a start");
  R nx[V * K];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    if constexpr (Rough)
      rough_cell_step<Cell>(a + v * K, in[v], p[v], nx + v * K);
    else
      cell_step<Cell>(a + v * K, in[v], p[v], nx + v * K);
  }
  if (Correct) {
    R nb[V * K];
#pragma unroll
    for (int v = 0; v < V; ++v) cell_step<Cell>(b + v * K, in[v], p[v], nb + v * K);
    if (same_bits<V * K>(nx, nb)) return true;
#pragma unroll
    for (int k = 0; k < V * K; ++k) b[k] = nb[k];
  }
#pragma unroll
  for (int k = 0; k < V * K; ++k) a[k] = nx[k];
  if (Write) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      R lanes[V];
#pragma unroll
      for (int v = 0; v < V; ++v) lanes[v] = nx[v * K + k];
      Pack::store(out + k * out_sc, lanes);
    }
    out += out_st;
  }
  return false;
}

/// Steps the V lanes' states `a` over t in [t0, t1), writing them when
/// Write, with the inputs prefetched D steps ahead. Pass 1 (Correct = false)
/// also folds the inputs into `probe` (LanePack::fold).
/// Correction (Correct = true) steps `b`, the trajectories whose states are
/// already written, beside `a` and returns true at the first step where all
/// agree bitwise: every later state is then already in memory.
///
/// The loop runs over whole blocks of D steps with no per-step bound checks
/// (a block's loads and steps are all in range); only the last, partial block
/// checks its length. The checks were a fifth of the instructions of a
/// ParaGRU step (ncu on an H200, perf/README.md).
template <class Cell, class S, class R, int D, int V, int PP, bool Correct, bool Write>
__device__ __forceinline__ bool step_range(const LanePtr<const S>& u, const LanePtr<S>& st,
                                           const R (&p)[V][PP], index_t t0, index_t t1, R* a, R* b,
                                           InputProbe<S, V>& probe) {
  constexpr int G = cell_traits<Cell>::G;
  using SS = typename std::remove_const<S>::type;
  using Pack = LanePack<SS, V>;
  const index_t full = (t1 - t0) / D;                // whole blocks
  const int rest = static_cast<int>((t1 - t0) % D);  // steps of the partial block
  // Running pointers (one add a block or step) rather than base + t * stride.
  const S* next = u.at(t0, 0);
  SS* out = Write ? st.at(t0, 0) : nullptr;
  typename Pack::packed buf[D][G];  // storage type: converted when used, so the loads overlap compute
  load_steps<Pack>(buf, next, u.st, u.sc, full > 0 ? D : rest);
  for (index_t blk = 0; blk < full; ++blk) {
    next += D * u.st;
    R cur[D][V][G];
    unpack_steps<Pack>(buf, cur);
    if (!Correct) fold_steps<Pack>(buf, probe);
    if (blk + 1 < full)
      load_steps<Pack>(buf, next, u.st, u.sc, D);
    else if (rest > 0)
      load_steps<Pack>(buf, next, u.st, u.sc, rest);
#pragma unroll
    for (int i = 0; i < D; ++i)
      if (one_step<Cell, Pack, SS, R, V, PP, Correct, Write>(cur[i], p, a, b, out, st.st, st.sc)) return true;
  }
  R cur[D][V][G];
  unpack_steps<Pack>(buf, cur);
  if (!Correct) fold_steps<Pack>(buf, probe);
#pragma unroll
  for (int i = 0; i < D - 1; ++i)
    if (i < rest && one_step<Cell, Pack, SS, R, V, PP, Correct, Write>(cur[i], p, a, b, out, st.st, st.sc))
      return true;
  return false;
}

#if FLASHRNN_CUDA_STAGING
/// step_range with the inputs staged in shared memory (input_stage.cuh):
/// the same steps on the same values, so the same bits. Every thread of the
/// warp calls it with the same range; `live` says whether this thread steps
/// (an idle lane, or a correction this thread does not need, only copies).
/// Correct: returns true where the thread merged (or was not live); the warp
/// stops once none of its threads is live. The first `rough_blocks` whole
/// blocks of a burn-in (16-bit storage, neither Correct nor Write) step with
/// rough activations (rough_float.cuh). defer_first: the first block's
/// copies are waited for before the next block's start
/// (tuning::sequential_defer_copies).
template <class Cell, class S, class R, int PP, bool Correct, bool Write, class Stage>
__device__ __forceinline__ bool step_range_staged(Stage& sg, const LanePtr<S>& st,
                                                  const R (&p)[Stage::lanes_per_thread][PP], index_t t0, index_t t1,
                                                  R* a, R* b, InputProbe<S, Stage::lanes_per_thread>& probe,
                                                  bool live, int rough_blocks, bool defer_first) {
  constexpr int G = cell_traits<Cell>::G;
  constexpr int D = Stage::steps, V = Stage::lanes_per_thread, NS = Stage::stages;
  using Pack = LanePack<S, V>;
  using packed = typename Pack::packed;
  bool merged = !live;
  if (!__any_sync(0xffffffffu, live)) return merged;
  // 32-bit counters (the launcher stages only sequences shorter than 2^31).
  const int n = static_cast<int>(t1 - t0), full = n / D, rest = n % D, blocks = full + (rest > 0);
  S* out = Write ? st.at(t0, 0) : nullptr;
  sg.seek(t0);
  // Block k's copies go to stage k % NS; NS - 1 blocks are in flight ahead
  // (with defer_first, from the second block on).
  auto issue = [&](int k) {
    const int stage = static_cast<int>(static_cast<unsigned>(k) % NS);
    if (k < full)
      sg.template issue<false>(stage, D);
    else if (k < blocks)
      sg.template issue<true>(stage, rest);
    else
      __pipeline_commit();  // an empty group keeps wait_prior's count
  };
  issue(0);
  if (!defer_first)
#pragma unroll
    for (int j = 1; j < NS - 1; ++j) issue(j);
  for (int k = 0; k < blocks; ++k) {
    if (k == 0 && defer_first) {  // the first block alone, then the others
      __pipeline_wait_prior(0);
#pragma unroll
      for (int j = 1; j < NS; ++j) issue(j);
    } else {
      issue(k + NS - 1);
      __pipeline_wait_prior(NS - 1);
    }
    __syncwarp();  // the warp's copies of block k have landed
    const int stage = static_cast<int>(static_cast<unsigned>(k) % NS);
    // Step i of the block (rough: a std::integral_constant<bool, ...>);
    // true where the thread merged.
    auto step = [&](int i, auto rough) {
      R cur[V][G];
#pragma unroll
      for (int g = 0; g < G; ++g) {  // load, check and convert input g (unpack_step, interleaved)
        R lanes[V];
        const packed x = *reinterpret_cast<const packed*>(sg.at(stage, i, g));
        if (!Correct) Pack::fold(x, probe);
        Pack::unpack(x, lanes);
#pragma unroll
        for (int v = 0; v < V; ++v) cur[v][g] = lanes[v];
      }
      return one_step<Cell, Pack, S, R, V, PP, Correct, Write, decltype(rough)::value>(cur, p, a, b, out, st.st,
                                                                                       st.sc);
    };
    // Rough steps are compiled where staging is tuned (16-bit storage): in
    // fp32's 64-register staged kernel they cost spills.
    constexpr bool can_rough = !Correct && !Write && sizeof(S) == 2;
    using exact = std::false_type;
    if (live) {
      const int len = k < full ? D : rest;
      int i = 0;
      if (can_rough && k < full && k < rough_blocks) {  // never merges: no check
#pragma unroll
        for (; i < D; ++i) step(i, std::integral_constant<bool, can_rough>{});
      } else if (k < full) {  // a whole block: no per-step bound checks
#pragma unroll
        for (; i < D; ++i)
          if (step(i, exact{})) break;
      } else {
#pragma unroll
        for (; i < D - 1; ++i)
          if (i >= rest || step(i, exact{})) break;
      }
      if (i < len) {  // stopped before the block's end: merged
        live = false;
        merged = true;
      }
    }
    __syncwarp();  // block k's stage is read before it is refilled
    if (Correct && !__any_sync(0xffffffffu, live)) break;
  }
  __pipeline_wait_prior(0);  // no copy of this range lands in the next one's stages
  __syncwarp();
  return merged;
}

#endif  // FLASHRNN_CUDA_STAGING

/// Stands for "no staging": the kernel prefetches into registers.
struct NoStage {};

/// Steps a kernel prefetches together: a stage's (Stage::steps), or D for
/// the register path.
template <class Stage, int D>
constexpr int prefetch_block_steps() {
  if constexpr (std::is_same<Stage, NoStage>::value)
    return D;
  else
    return Stage::steps;
}

/// The calling thread's part of its warp's input stages, in the block's
/// staging memory `smem` (one warp's after another); nothing for NoStage.
template <class Stage, class S>
__device__ __forceinline__ Stage make_stage(unsigned char* smem, const View<const S>& u, index_t lanes, index_t H) {
  if constexpr (std::is_same<Stage, NoStage>::value) {
    return {};
  } else {
    constexpr int V = Stage::lanes_per_thread;
    const int tid = threadIdx.y * blockDim.x + threadIdx.x, x = threadIdx.x & 31;
    const index_t lane0 = (static_cast<index_t>(blockIdx.x) * blockDim.x + (threadIdx.x & ~31u)) * V;
    return Stage(reinterpret_cast<S*>(smem + (tid / 32) * Stage::warp_bytes()), u, lane0, x, lanes, H);
  }
}

/// One range of steps by the kernel's chosen path (`sg`: an InputStage, or
/// NoStage for the register prefetch). Returns what step_range returns, and
/// true where !live. `rough_blocks`: step_range_staged's (the register path
/// steps exactly).
template <class Cell, class S, class R, int D, int V, int PP, bool Correct, bool Write, class Stage>
__device__ __forceinline__ bool run_range(Stage& sg, const LanePtr<const S>& u, const LanePtr<S>& st,
                                          const R (&p)[V][PP], index_t t0, index_t t1, R* a, R* b,
                                          InputProbe<S, V>& probe, bool live, int rough_blocks = 0,
                                          bool defer_first = false) {
#if FLASHRNN_CUDA_STAGING
  if constexpr (!std::is_same<Stage, NoStage>::value) {
    return step_range_staged<Cell, S, R, PP, Correct, Write>(sg, st, p, t0, t1, a, b, probe, live, rough_blocks,
                                                             defer_first);
  } else  // NOLINT(readability/braces): the register path closes both branches
#endif
  {
    return !live || step_range<Cell, S, R, D, V, PP, Correct, Write>(u, st, p, t0, t1, a, b, probe);
  }
}

/// Bytes of the kernel's dynamic shared memory before the input stages: the
/// segments' end states (C x LT x V x K values of R when C > 1), rounded up
/// to 16 bytes.
template <class R>
__host__ __device__ inline std::size_t segment_ends_bytes(int C, int lt, int VK) {
  return C > 1 ? (static_cast<std::size_t>(C) * lt * VK * sizeof(R) + 15) / 16 * 16 : 0;
}

/// Launch bounds of the sequential forward kernel: blocks of up to 256
/// threads prefetching into registers; staged, up to 512 (16 segments of a
/// warp), at most 64 registers for one lane a thread (two such blocks an SM;
/// ptxas chose 64 even unasked, but then spilled for lane pairs), up to 128
/// for two.
template <class Stage>
constexpr int sequential_max_threads() {
  return std::is_same<Stage, NoStage>::value ? 256 : 512;
}
template <class Stage, int V>
constexpr int sequential_min_blocks() {
  return std::is_same<Stage, NoStage>::value ? 0 : V == 2 ? 1 : 2;
}

/// Block (LT threads of V lanes each, C segments); dynamic shared memory:
/// the segments' end states (segment_ends_bytes), then, with Stage an
/// InputStage, one warp's stages per warp of the block (a warp is one
/// segment's lanes: LT = 32 for C > 1, so up to 512 threads a block). With
/// V = 2 the lanes are pairs of adjacent units of one batch row (H even, u
/// and the states contiguous over units and aligned to the pair: the launcher
/// checks).
template <class Cell, class S, class R, int D, int V, bool Write, class Stage>
__global__ void __launch_bounds__((sequential_max_threads<Stage>()), (sequential_min_blocks<Stage, V>()))
    sequential_forward_kernel(FwdArgs<S, R> a) {
  constexpr int K = cell_traits<Cell>::K, P = cell_traits<Cell>::P;
  constexpr int PP = P > 0 ? P : 1, VK = V * K;
  constexpr bool staged = !std::is_same<Stage, NoStage>::value;
  extern __shared__ __align__(16) unsigned char sequential_smem[];
  const int x = threadIdx.x, c = threadIdx.y, C = blockDim.y;
  const index_t lane = (static_cast<index_t>(blockIdx.x) * blockDim.x + x) * V;  // the thread's first lane
  const bool active = lane < a.lanes;
  // With C > 1 every thread reaches the barriers; staged, a warp copies its
  // lanes' inputs together.
  if (C == 1 && !(staged ? __any_sync(0xffffffffu, active) : active)) return;
  Stage sg = make_stage<Stage>(sequential_smem + segment_ends_bytes<R>(C, blockDim.x, VK), a.u, a.lanes, a.H);
  const index_t b = active ? lane / a.H : 0, j = active ? lane % a.H : 0;
  const LanePtr<const S> u(a.u, b, j);
  const LanePtr<S> st(a.states, b, j);
  R p[V][PP], s[VK], start[VK];
  R probe = R(0);  // p and s0; the inputs fold into u_probe
  if (active) {
#pragma unroll
    for (int v = 0; v < V; ++v)
#pragma unroll
      for (int q = 0; q < P; ++q) {
        p[v][q] = load_r(a.p.data + q * a.p.stride_c + (j + v) * a.p.stride_h);
        probe = fold_finite(p[v][q], probe);
      }
  }
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const LanePtr<const S> s0(a.s0, b, j + v);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      s[v * K + k] = active && c == 0 && s0.base ? load_r(s0.at(0, k)) : R(0);
      probe = fold_finite(s[v * K + k], probe);
      start[v * K + k] = s[v * K + k];
    }
  }
  const SegmentRange range = a.balanced_segments ? segment_range(c, C, a.T, a.burn_in, prefetch_block_steps<Stage, D>())
                                                 : segment_range(c, C, a.T, 0, 1);
  const index_t t0 = range.t0, t1 = range.t1;
  if (c > 0 && a.burn_in > 0) {
    // The start guess: the last burn_in steps before t0 from zero (from s0
    // when they reach back to step 0, which makes the guess exact).
    const index_t tb = max(index_t(0), t0 - a.burn_in);
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const LanePtr<const S> s0(a.s0, b, j + v);
#pragma unroll
      for (int k = 0; k < K; ++k) s[v * K + k] = active && tb == 0 && s0.base ? load_r(s0.at(0, k)) : R(0);
    }
    InputProbe<S, V> unused = LanePack<S, V>::probe_zero();
    // Rough first steps only where the guess starts from zero (from s0 it is exact).
    const int rough_blocks = tb > 0 ? a.rough_burn_in / prefetch_block_steps<Stage, D>() : 0;
    run_range<Cell, S, R, D, V, PP, false, false>(sg, u, st, p, tb, t0, s, nullptr, unused, active, rough_blocks,
                                                  a.defer_copies);
#pragma unroll
    for (int k = 0; k < VK; ++k) start[k] = s[k];
  }
  InputProbe<S, V> u_probe = LanePack<S, V>::probe_zero();
  run_range<Cell, S, R, D, V, PP, false, Write>(sg, u, st, p, t0, t1, s, nullptr, u_probe, active, 0,
                                                a.defer_copies);
  if (C > 1)
    correction_rounds<VK, true, staged>(reinterpret_cast<R*>(sequential_smem), c, C, active, s, start,
                                        [&](R (&fresh)[VK], R (&old)[VK], bool needs) {
                                          return run_range<Cell, S, R, D, V, PP, true, Write>(
                                              sg, u, st, p, t0, t1, fresh, old, u_probe, needs);
                                        });
  if (!active) return;
  if (c == C - 1 && a.final_state.data) {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const LanePtr<S> fs(a.final_state, b, j + v);
#pragma unroll
      for (int k = 0; k < K; ++k) store_r(fs.at(0, k), s[v * K + k]);
    }
  }
  if (!(finite(probe) && LanePack<S, V>::finite(u_probe)) && a.rep) a.rep->input_nonfinite = 1;
}

}  // namespace detail
}  // namespace cuda
}  // namespace flashrnn

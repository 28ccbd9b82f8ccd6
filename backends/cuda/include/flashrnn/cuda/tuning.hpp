// Launch choices of the CUDA backend, kept apart from the kernels: the mode
// Mode::automatic picks, threads per block, lanes per block and chunk lengths.
// Numbers come from perf/cuda (see perf/README.md, section CUDA).
#pragma once
#include <algorithm>
#include <cstddef>

#include "flashrnn/core/options.hpp"

namespace flashrnn {
namespace cuda {
namespace tuning {

/// Threads per block of the Newton and parallel-adjoint kernels.
constexpr int block_threads = 256;
/// Threads per block of the one-thread-per-lane kernels.
constexpr int sequential_block_threads = 64;
/// Steps each thread prefetches ahead in the sequential kernels (a macro only
/// so that experiments can build the library with another depth).
#ifdef FLASHRNN_CUDA_SEQUENTIAL_PREFETCH
constexpr int sequential_prefetch = FLASHRNN_CUDA_SEQUENTIAL_PREFETCH;
#else
constexpr int sequential_prefetch = 8;
#endif
/// Steps prefetched by a thread that steps a pair of lanes: the same bytes
/// in flight as one lane at depth 8, in fewer registers. Measured on an
/// NVIDIA H200 (perf/cuda/experiments/segments.cu "pairs", pairs at depth 4
/// and 8): depth 4 up to 1.13x faster at 8192-131072 lanes, bf16 and fp32.
#ifdef FLASHRNN_CUDA_SEQUENTIAL_PREFETCH_PAIRS
constexpr int sequential_prefetch_pairs = FLASHRNN_CUDA_SEQUENTIAL_PREFETCH_PAIRS;
#else
constexpr int sequential_prefetch_pairs = 4;
#endif
/// Most segments the sequential forward kernel cuts a lane's sequence into
/// (a warp of threads each, half a warp beyond 8: at most 256 threads a block).
/// (The limit SolverOptions::sequential_segments is validated against.)
constexpr int max_sequential_segments = flashrnn::max_sequential_segments;
/// Shortest segment worth its correction pass (which costs the steps until
/// the guessed and the true trajectory merge: tens for contracting cells).
constexpr index_t min_segment_steps = 64;

/// Steps a segment of the sequential forward kernel (but the first) steps
/// before its start, from zero and without writing, to guess its start state.
/// A contracting cell forgets the zero within tens of steps, so the guess is
/// mostly already exact and the segment skips its correction pass (which
/// steps two trajectories side by side, writing, until they merge; a warp
/// waits for its slowest lane). Measured on an NVIDIA H200 (segments.cu
/// burn, 0-96 steps, tuned launches; perf/README.md): 40-56 is best at
/// nearly every shape; 48 is 2-4 % faster than the former 32 at the
/// issue's bf16 8192 x 2048 and up to 3 % slower only at ParaLSTM fp32,
/// 32768 lanes, T = 512.
constexpr int sequential_burn_in = 48;
/// Steps at the start of that burn-in (whole blocks of the staged kernel's
/// prefetch, 16-bit storage; the others step exactly) stepped with rough
/// activations (rough_float.cuh): they only have to forget the zero start,
/// which the hardware's tanh.approx does as well as exact activations do
/// (a CPU emulation, perf/cuda/experiments/merge_lengths.py: 16 rough and
/// 32 exact steps leave about as few corrections as 48 exact ones; 32 rough
/// and 16 exact leave many). On an H200 (segments.cu rough, perf/README.md)
/// 16 and 24 are 0.5-3 % faster than none for bf16 ParaGRU/ParaLSTM.
constexpr int sequential_rough_burn_in = 16;
/// Whether the staged forward copies a range's first block alone and the
/// next once it has landed (step_range_staged): every warp starts its burn-in
/// at the kernel's start and its range at the burn-in's end, all together,
/// and the first blocks then arrive ahead of the burst of the second ones.
/// With equal-work segments, 2-3 % faster at the bf16 8192 x 2048
/// (H200, segments.cu rough).
constexpr bool sequential_defer_copies = true;
/// The backward's sequential adjoint keeps the 32 measured with the forward's
/// earlier sweep (its burn-in was not swept again).
constexpr int sequential_backward_burn_in = 32;

/// Threads x segments that fill an H100/H200 for the sequential kernels'
/// light steps: ~16 warps on each SM.
constexpr index_t sequential_fill_threads = 65536;

/// Threads x segments the sequential forward aims for (sequential_segments):
/// ~16 warps on each SM of an H100/H200 (65536) for light steps, half that for
/// fp64 storage or dense cells (state_dim > 2), whose steps keep the SM's
/// pipes busy with fewer warps, so more segments add burn-in and correction
/// work without hiding more latency. Measured on an NVIDIA H200
/// (perf/cuda/experiments/segments.cu "others", B = 8, lanes 1024 / 8192 /
/// 32768, T 2048 / 8192; perf/README.md): with 65536 the tuned count was
/// 1.05-1.23x slower than the best one for ParaGRU and ParaLSTM in fp64 at
/// 8192 and 32768 lanes, and for HeadTanh4 up to 1.3x (fp32), 1.4x (bf16)
/// and 1.8x (fp64); with 32768 the count it picks (4 at 8192 lanes, 1 at
/// 32768) was the fastest of 1, 2, 4, 8 at each of these shapes or within
/// 2 % of it, and at 1024 lanes both pick 16. DiagTanh (fp32/bf16, one
/// input) is light and keeps 65536. The backward sweep keeps 65536 too (its
/// rule, backward_sequential, was measured with it).
inline index_t sequential_target_threads(std::size_t storage_bytes, int state_dim) {
  return storage_bytes == 8 || state_dim > 2 ? sequential_fill_threads / 2 : sequential_fill_threads;
}

/// Segments of the sequential kernels (sequential_forward.cuh,
/// sequential_backward.cuh) for `threads` threads of lanes (lanes / lanes per
/// thread): enough that threads x segments reach `target`
/// (sequential_target_threads; 65536: ~16 warps on each SM of an H100/H200).
/// Measured on an NVIDIA H200 (perf/cuda/experiments/segments.cu, B = 8,
/// ParaGRU fp32/bf16 and ParaLSTM fp32, T 512..65536; perf/README.md):
/// one-segment time / tuned time is 4.1-6.7 at 64-512 lanes, 2.1-5.9 at
/// 1024-8192 lanes and T >= 2048, 1.35-2.2 at 16384 lanes, 1.06-1.41 at
/// 32768; at 65536 lanes one segment is best (0.99-1.08).
inline int sequential_segments(index_t threads, index_t steps, index_t target = sequential_fill_threads) {
  int c = 1;
  while (c < max_sequential_segments && threads * c < target && steps >= 2 * c * min_segment_steps) c *= 2;
  return c;
}

/// Lanes one thread of the sequential forward kernel steps (1 or 2), where
/// the cell (state_dim <= 2), the storage type (bf16/fp16/fp32) and the layout
/// allow pairs (lane_pack.cuh). A second independent chain fills issue slots
/// a latency-bound thread leaves idle and a warp's accesses double in width,
/// but pairs halve the threads: they pay only where halving costs no
/// parallelism (lanes / 2 x the most segments still fill the GPU) and the
/// segments they need stay at least 512 steps long (burn-in and correction
/// weigh on short ones). Measured on an NVIDIA H200 (perf/cuda/experiments/
/// segments.cu "pairs", B = 8, ParaGRU/ParaLSTM bf16/fp32; perf/README.md):
/// pairs are 1.1-1.4x faster in bf16 from 32768 lanes and at 8192 lanes with
/// T = 65536, up to 1.12x in fp32; 0.6-0.95x below 8192 lanes and at 8192
/// lanes with T = 2048. Where the inputs are staged (sequential_staged), the
/// launch takes pairs with sequential_staged_segments' count instead.
inline int sequential_lanes_per_thread(index_t lanes, index_t steps) {
  const index_t pairs = lanes / 2;
  const bool fills = pairs * max_sequential_segments >= sequential_fill_threads;
  return fills && steps / sequential_segments(pairs, steps) >= 512 ? 2 : 1;
}

/// Steps a stage of the staged sequential forward copies at once, and the
/// stages it keeps (input_stage.cuh): double buffering of 8 steps. 16 steps
/// a stage was slower (H200, perf/README.md).
constexpr int sequential_stage_steps = 8;
constexpr int sequential_stages = 2;

/// Whether the sequential forward stages its inputs in shared memory
/// (input_stage.cuh) where it can, rather than prefetching them into
/// registers: for 16-bit storage and state_dim <= 2 from 8192 lanes. Measured
/// on an NVIDIA H200 (perf/cuda/experiments/segments.cu "staged", B = 8,
/// ParaGRU/ParaLSTM bf16/fp32, lanes 2048-65536, T 2048/8192, every segment
/// count and one or two lanes a thread; perf/README.md): in bf16 the best
/// staged launch is 1.01-1.14x faster than the best register one from 8192
/// lanes (1.05-1.08x for ParaGRU at 8192 lanes, T = 2048; 1.13-1.14x at
/// T = 8192) and 0.56-0.85x at 2048 lanes, where the register kernel's
/// latency per step matters more; in fp32 the two are within -5 % / +4 %.
inline bool sequential_staged(index_t lanes, std::size_t storage_bytes, int state_dim) {
  return storage_bytes == 2 && state_dim <= 2 && lanes >= 8192;
}

/// Threads x segments of the staged forward with lane pairs: ~12 warps on
/// each SM of an H100/H200 (sequential_staged_segments).
constexpr index_t sequential_staged_pairs_threads = 49152;

/// Segments of the staged forward with lane pairs (the choice wherever
/// sequential_staged holds and pairs fit) for `threads` threads: the count,
/// any from 1 to 16, that brings threads x segments to
/// sequential_staged_pairs_threads, with segments of at least
/// 2 x min_segment_steps. Measured on an NVIDIA H200 (perf/cuda/experiments/
/// segments.cu "fit", ParaGRU/ParaLSTM bf16, lanes 8192-65536, T 2048/8192,
/// segment counts 1, 2, 3, 4, 6, 8, 12, 16, one and two lanes a thread,
/// every launch timed on a busy stream; perf/README.md): pairs were the
/// fastest or within 1 % at all 16 shapes, and this count (12 at 8192 lanes,
/// 6, 3, 2 at 16384, 32768, 65536) was within 1.4 % of the best one. The
/// power-of-two rule of sequential_segments with one lane a thread (the
/// choice before) was up to 6 % slower (ParaLSTM, 8192 and 16384 lanes,
/// T = 2048).
inline int sequential_staged_segments(index_t threads, index_t steps) {
  index_t c = (sequential_staged_pairs_threads + threads - 1) / std::max<index_t>(threads, 1);
  c = std::min<index_t>(std::max<index_t>(c, 1), max_sequential_segments);
  while (c > 1 && steps < 2 * c * min_segment_steps) --c;
  return static_cast<int>(c);
}

/// Chunk lengths (steps per thread) compiled for the chunked kernels; a
/// requested chunk_length rounds down to one of these (1 = per-step Newton).
constexpr int chunk_lengths[] = {1, 8, 16, 32};
/// Default chunk length of Mode::newton_chunked and of the parallel adjoint.
constexpr int default_chunk_length = 16;

/// Lanes per block (a power of two <= 32): 32 keeps loads coalesced over
/// units; fewer lanes per block means more chunks per block, i.e. longer
/// segments and a shorter chain between blocks when lanes are few.
inline int lanes_per_block(index_t lanes) {
  int lt = 1;
  while (lt < 32 && lt < lanes) lt *= 2;
  return lt;
}

/// Mode::automatic: the segmented sequential kernel at every shape. It reads
/// u once, does no more arithmetic than stepping (plus a 48-step burn-in per
/// segment), and is bitwise exact; chunked Newton reads u once too but does
/// 4-7x the arithmetic. Measured on an NVIDIA H200 after the burn-in and
/// 16-bit activation changes (perf/cuda/experiments/segments.cu, B = 8,
/// ParaGRU fp32/bf16 and ParaLSTM fp32; perf/README.md): chunked-Newton time
/// / segmented time is 4.6-5.1 at 64-512 lanes (T 2048-65536) and 4.2-6.4 at
/// 1024-65536 lanes (T 512-8192). Chunked Newton wins only where segments
/// never merge (a cell that keeps its state for the whole sequence: 2.1x at
/// 1024 lanes, 1.9x at 8192); such models pick Mode::newton_chunked or
/// SolverOptions::sequential_segments = 1 themselves.
inline Mode choose_mode(index_t /*lanes*/, index_t /*steps*/, int /*state_dim*/) { return Mode::sequential; }

/// Steps prefetched by a thread of the sequential backward kernel (each step
/// reads grad_states, the state before it and u, held converted to the
/// compute type). Four for state_dim 1; two beyond, where four steps of
/// inputs next to the step's Jacobians cost too many registers: ParaLSTM's
/// sweep needs 205-214 registers with four (8 warps per SM) and 128 with two
/// (16 warps); HeadTanh4's spills 316 bytes with four and none with two
/// (ptxas, sm_90).
constexpr int sequential_backward_prefetch(int state_dim) { return state_dim == 1 ? 4 : 2; }

/// The backward counterpart: true for the exact reverse sweep
/// (sequential_backward.cuh: one thread per lane and, where lanes are few,
/// per segment, with sequential_segments(lanes, steps) segments), false for
/// the parallel adjoint (chunked reverse scan). Measured on an NVIDIA H200
/// (perf/cuda/experiments/adjoint_choice.cu, seventh session, after the
/// sweep's interior went to running pointers; B = 8, lanes 256 .. 65536,
/// T 256 .. 8192; perf/README.md, "Adjoint kernel choice"): the sweep wins
/// once lanes x T reaches a threshold that grows with the bytes per step and
/// shrinks with the work per step, and loses where lanes are few (up to 3.0x
/// below 4096 lanes for state_dim <= 2, 3.5x below 1024 for HeadTanh4; fp64
/// the most):
///   - from 4096 lanes for state_dim <= 2, from 1024 for wider states;
///   - lanes x T >= 2^21 for ParaLSTM (state_dim 2) and the dense cells in
///     fp32 and 16-bit storage, 2^22 for ParaGRU in fp32, 2^23 for ParaGRU in
///     16-bit storage and for every cell in fp64.
/// Sweep / parallel time is 0.23-1.00 where this rule picks the sweep
/// (HeadTanh4 bf16 the most). Over ParaGRU, ParaLSTM and HeadTanh4 in fp32,
/// bf16 and fp64 (189 shapes) it picks the faster kernel but at 4, each
/// within 5 %; DiagTanh, a one-input cell with a lighter step, would take
/// the sweep at fewer lanes (fp32: up to 1.22x lost below 8192 lanes). fp16
/// is assumed like bf16 (the same kernels on another 16-bit type). Short
/// sequences (< 64 steps) always sweep: too few chunks for the parallel adjoint.
inline bool backward_sequential(index_t lanes, index_t steps, std::size_t storage_bytes, int state_dim) {
  if (steps < 64) return true;
  const bool dense = state_dim > 2;
  const index_t min_lanes = dense ? 1024 : 4096;
  int log2_work = 23;  // fp64, and state_dim 1 in 16-bit storage
  if (storage_bytes != 8 && (dense || state_dim == 2))
    log2_work = 21;
  else if (storage_bytes == 4 && state_dim == 1)
    log2_work = 22;
  return lanes >= min_lanes && lanes * steps >= (index_t(1) << log2_work);
}

}  // namespace tuning
}  // namespace cuda
}  // namespace flashrnn

// FlashRNN CUDA backend: the same forward / backward / step contracts as the
// CPU API (flashrnn/flashrnn.hpp), on device memory and a CUDA stream.
//
// Shapes and layouts are the strided 4-D views of flashrnn/core/views.hpp:
//   u (T, B, G, H)  p (1, 1, P, H)  s0, final_state (1, B, K, H)  states (T, B, K, H)
// Every data pointer must be device memory (cudaMalloc, cudaMallocAsync or
// managed); an absent optional view is View<T>{}.
//
// Storage types S: float, double, __nv_bfloat16 and __half. Arithmetic is in
// double for double and in float for the others (bf16/fp16 storage, fp32 compute).
// Cells with fused kernels: cells::ParaGRU, cells::ParaLSTM, cells::DiagTanh.
//
// Synchronisation: forward() returns the SolveReport and therefore waits for the
// stream (one cudaStreamSynchronize at the end, nothing before). forward_async()
// enqueues the same work, writes the report into device memory and never waits.
// backward() and step() never synchronise. Results are deterministic run to run
// (fixed-order reductions, no floating-point atomics).
//
// Errors: InvalidArgument (shapes, strides, aliasing, host pointers) before any
// launch; BackendError naming the kernel or runtime call when CUDA reports a
// failure; ConvergenceError only with OnNonConvergence::throw_error.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "flashrnn/core/error.hpp"
#include "flashrnn/core/options.hpp"
#include "flashrnn/core/views.hpp"
#include "flashrnn/dispatch.hpp"

namespace flashrnn {
namespace cuda {

/// The solve report as the kernels write it, in device memory. Zero it (or let
/// forward_async do it) before a solve; read it with to_solve_report after the
/// stream has passed the solve.
struct DeviceReport {
  int iterations;                      ///< max Newton iterations over blocks
  int not_converged;                   ///< nonzero: some lane missed the tolerance
  int nonfinite;                       ///< nonzero: a Newton iterate was inf/NaN
  int input_nonfinite;                 ///< nonzero: u, p or s0 held inf/NaN
  unsigned long long residual_bits;    ///< bits of the max final residual (a double >= 0)
  unsigned long long lanes_fell_back;  ///< lane-segments recomputed by stepping
};

/// Converts a device report copied to the host into the public SolveReport.
SolveReport to_solve_report(const DeviceReport& r, Mode mode_used, index_t lanes);

/// Enqueues the forward solve on `stream` without waiting for it. If `report`
/// is non-null (device memory) it is zeroed and filled; the non-convergence
/// policy fallback_sequential and keep_last_iterate act on the device;
/// throw_error and check_finite can only act in forward(), which reads the
/// report. Returns the mode used (Mode::automatic resolved by tuning.hpp).
template <class Cell, class S>
Mode forward_async(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                   View<S> final_state, const SolverOptions& options, DeviceReport* report,
                   cudaStream_t stream);

namespace detail {
/// Mode::sequential's launch choices, forced for tests and benchmarks (other
/// modes ignore them, but they are range-checked in every mode).
struct SequentialOverrides {
  int segments = 0;          ///< 1 to tuning::max_sequential_segments; 0 = the options' or tuned
  int burn_in = -1;          ///< start-guess steps, >= 0; -1 = tuned
  int lanes_per_thread = 0;  ///< 1, or 2 (InvalidArgument where pairs do not fit); 0 = tuned
  int staged = 0;            ///< 1: inputs prefetched into registers; 2: staged in shared memory
                             ///< (InvalidArgument where staging does not fit); 0 = tuned
  int rough_burn_in = -1;    ///< burn-in steps with rough activations (staged 16-bit), >= 0; -1 = tuned
  int balanced = -1;         ///< 1: segments of equal work, 0: of equal length; -1 = tuned (staged: 1)
  int defer_copies = -1;     ///< staged: 1 copies a range's later blocks once its first landed, 0 with it;
                             ///< -1 = tuned
};
/// forward_async with Mode::sequential's launch choices forced.
template <class Cell, class S>
Mode forward_async_with(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                        View<S> final_state, const SolverOptions& options, DeviceReport* report,
                        const SequentialOverrides& forced, cudaStream_t stream);
}  // namespace detail

/// Solves the recurrence for all B*H lanes (see flashrnn::forward) and returns
/// the report. Synchronises `stream` once, at the end, to read the report.
/// Newton forms: every thread owns a chunk of steps; one Newton update (a
/// scan of the chunk maps) is followed by a pass that steps every chunk from
/// its boundary, writes the states and accepts them when every boundary
/// mismatch |f-chunk end - next boundary| is within a tenth of the tolerance
/// (atol + rtol |x|), else another update follows. report.iterations counts
/// the updates (max over blocks), report.final_residual the last mismatch.
/// Lanes of a block that misses max_iters are recomputed by exact stepping on
/// the device (fallback_sequential; report.lanes_fell_back counts lane-segments).
/// Mode::newton runs per-step Newton (chunks of one step), Mode::newton_chunked
/// multiple shooting with options.chunk_length steps per thread (supported: 1,
/// 8, 16, 32; others round down to the nearest; 0 = tuned), Mode::sequential
/// exact stepping: one thread per lane or, where the layout and the shape
/// allow, per pair of adjacent lanes (lane_pack.cuh); when lanes are few, one
/// per lane (or pair) and segment, each segment corrected from its
/// predecessor's end until bitwise equal to stepping the whole sequence
/// (sequential_forward.cuh). Sequences of any length are split across blocks.
template <class Cell, class S>
SolveReport forward(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                    View<S> final_state, const SolverOptions& options = {},
                    cudaStream_t stream = nullptr);

/// Gradients through a solved forward (see flashrnn::backward): the adjoint
/// fused with the local derivatives, either as the exact reverse sweep (one
/// thread per lane, and when lanes are few per lane and segment of the
/// sequence, corrected like the forward's segments: sequential_backward.cuh)
/// or as a chunked reverse scan (tuning::backward_sequential picks). grad_u
/// and grad_s0 of the sweep are bitwise those of one thread per lane; grad_p
/// is reduced per thread or block and then over segments, blocks and the
/// batch in a fixed order (deterministic). Does not synchronise.
template <class Cell, class S>
void backward(View<const S> u, View<const S> p, View<const S> s0, View<const S> states,
              View<const S> grad_states, View<const S> grad_final, View<S> grad_u,
              View<S> grad_p, View<S> grad_s0, cudaStream_t stream = nullptr);

namespace detail {
/// Which adjoint kernel backward() runs: the tuned choice, or one forced.
enum class AdjointKernel { tuned, sequential, parallel };
/// backward()'s launch choices, forced for tests and benchmarks: the kernel,
/// and for the sequential one its segments (1 to tuning::max_sequential_segments;
/// 0 = tuned) and hand-over burn-in steps (>= 0; -1 = tuned).
struct AdjointOverrides {
  AdjointKernel kernel = AdjointKernel::tuned;
  int segments = 0;
  int burn_in = -1;
};
template <class Cell, class S>
void backward_with(View<const S> u, View<const S> p, View<const S> s0, View<const S> states,
                   View<const S> grad_states, View<const S> grad_final, View<S> grad_u, View<S> grad_p,
                   View<S> grad_s0, const AdjointOverrides& forced, cudaStream_t stream);
}  // namespace detail

/// One step for every lane (autoregressive inference); s_next may equal s_prev.
template <class Cell, class S>
void step(View<const S> u_t, View<const S> p, View<const S> s_prev, View<S> s_next,
          cudaStream_t stream = nullptr);

// Runtime-typed entry points with the signatures of flashrnn::forward /
// backward / step in flashrnn/dispatch.hpp; every tensor must have
// device == Device::cuda and the same dtype; ctx.stream is a cudaStream_t.
SolveReport dispatch_forward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                             const Tensor& states, const Tensor& final_state,
                             const SolverOptions& options = {}, const ExecutionContext& ctx = {});
void dispatch_backward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                       const Tensor& states, const Tensor& grad_states, const Tensor& grad_final,
                       const Tensor& grad_u, const Tensor& grad_p, const Tensor& grad_s0,
                       const ExecutionContext& ctx = {});
void dispatch_step(CellKind cell, const Tensor& u_t, const Tensor& p, const Tensor& s_prev,
                   const Tensor& s_next, const ExecutionContext& ctx = {});

/// Number of CUDA devices visible (0 when no driver or no GPU); never throws.
int device_count() noexcept;

}  // namespace cuda
}  // namespace flashrnn

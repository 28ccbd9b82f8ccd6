// Host side of the CUDA backend: argument checks, the choice of kernel and
// launch shape (tuning.hpp), stream-ordered workspace and error handling.
// Included by the per-(cell, dtype) translation units, which instantiate it.
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "flashrnn/core/solver.hpp"  // detail::check_forward_args and friends
#include "flashrnn/core/validate.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/cuda/tuning.hpp"
#include "kernels.cuh"
#include "sequential_backward.cuh"
#include "sequential_forward.cuh"

#if FLASHRNN_CUDA_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace flashrnn {
namespace cuda {
namespace detail {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw BackendError(flashrnn::detail::concat("flashrnn::cuda: ", what, " failed: ",
                                                cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
  }
}
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw BackendError(flashrnn::detail::concat("flashrnn::cuda: launch of kernel ", kernel,
                                                " failed: ", cudaGetErrorName(e), " (",
                                                cudaGetErrorString(e), ")"));
}

template <class S>
constexpr const char* storage_name() {
  return std::is_same<S, double>::value           ? "fp64"
         : std::is_same<S, float>::value          ? "fp32"
         : std::is_same<S, __nv_bfloat16>::value ? "bf16"
                                                  : "fp16";
}

/// Every data pointer must be device-accessible memory.
template <class T>
void check_device(const char* where, const char* arg, const View<T>& v) {
  if (v.data == nullptr) return;
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, v.data);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    flashrnn::detail::fail_argument(
        where, arg, "device memory",
        flashrnn::detail::concat("a pointer CUDA does not recognise (", cudaGetErrorName(e), ")"));
  }
  if (attr.type == cudaMemoryTypeUnregistered || attr.type == cudaMemoryTypeHost)
    flashrnn::detail::fail_argument(where, arg, "device memory (cudaMalloc or managed)",
                                    "host memory");
}

/// A stream-ordered workspace freed on the same stream.
struct Workspace {
  void* ptr = nullptr;
  cudaStream_t stream;
  Workspace(std::size_t bytes, cudaStream_t s, const char* what) : stream(s) {
    if (bytes) check_cuda(cudaMallocAsync(&ptr, bytes, s), what);
  }
  ~Workspace() {
    if (ptr) (void)cudaFreeAsync(ptr, stream);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
};

/// An NVTX range around one entry point ("flashrnn::cuda::forward ParaGRU bf16"), so
/// Nsight Systems shows which layer call enqueued which kernels. Host-side push/pop:
/// nothing waits for the GPU. Compiled out with -DFLASHRNN_CUDA_NVTX=OFF.
template <class Cell, class S>
struct ProfileRange {
  explicit ProfileRange(const char* where) {
#if FLASHRNN_CUDA_NVTX
    nvtxRangePushA(flashrnn::detail::concat(where, " ", Cell::name, " ", storage_name<S>()).c_str());
#else
    (void)where;
#endif
  }
  ~ProfileRange() {
#if FLASHRNN_CUDA_NVTX
    nvtxRangePop();
#endif
  }
  ProfileRange(const ProfileRange&) = delete;
  ProfileRange& operator=(const ProfileRange&) = delete;
};

inline std::size_t align_up(std::size_t n) { return (n + 255) / 256 * 256; }

inline int pick_chunk(const SolverOptions& o) {
  if (o.mode == Mode::newton) return 1;
  const index_t want = o.chunk_length > 0 ? o.chunk_length : tuning::default_chunk_length;
  int best = tuning::chunk_lengths[0];
  for (int c : tuning::chunk_lengths)
    if (c <= want) best = c;
  return best;
}

struct BlockShape {
  int LT, NC, n_tiles;
  index_t seg_len, n_seg;
};
inline BlockShape block_shape(index_t lanes, index_t T, int L, const char* where) {
  BlockShape s;
  s.LT = tuning::lanes_per_block(lanes);
  s.NC = tuning::block_threads / s.LT;
  s.n_tiles = static_cast<int>((lanes + s.LT - 1) / s.LT);
  s.seg_len = static_cast<index_t>(s.NC) * L;
  s.n_seg = (T + s.seg_len - 1) / s.seg_len;
  if (static_cast<double>(s.n_tiles) * static_cast<double>(s.n_seg) > INT_MAX)
    flashrnn::detail::fail_argument(where, "u", "at most 2^31 blocks of work",
                                    flashrnn::detail::concat(s.n_tiles, " x ", s.n_seg));
  return s;
}

/// A forced launch choice of the sequential kernels (test and benchmark
/// hooks) within [lo, hi]; `expected` says what is.
inline void check_override(const char* where, const char* name, int value, int lo, int hi, const std::string& expected) {
  if (value < lo || value > hi) flashrnn::detail::fail_argument(where, name, expected, value);
}

/// The forced segment count and burn-in of the sequential kernels: 0..max
/// segments (0 = tuned), burn-in >= -1 (-1 = tuned).
inline void check_segment_overrides(const char* where, int segments, int burn_in) {
  check_override(where, "segments", segments, 0, tuning::max_sequential_segments,
                 flashrnn::detail::concat("0 (tuned) to ", tuning::max_sequential_segments));
  check_override(where, "burn_in", burn_in, -1, INT_MAX, ">= 0 (or -1: tuned)");
}

/// Every forced choice of the sequential forward (SequentialOverrides).
inline void check_forward_overrides(const char* where, const SequentialOverrides& forced) {
  check_segment_overrides(where, forced.segments, forced.burn_in);
  check_override(where, "lanes_per_thread", forced.lanes_per_thread, 0, 2, "0 (tuned), 1 or 2");
  check_override(where, "staged", forced.staged, 0, 2, "0 (tuned), 1 (registers) or 2 (shared memory)");
  check_override(where, "rough_burn_in", forced.rough_burn_in, -1, INT_MAX, ">= 0 (or -1: tuned)");
  check_override(where, "balanced", forced.balanced, -1, 1, "0, 1 or -1 (tuned)");
  check_override(where, "defer_copies", forced.defer_copies, -1, 1, "0, 1 or -1 (tuned)");
}

/// Whether V = 2 lanes a thread can read or write `v` with one access each:
/// units contiguous, every other stride even and the data aligned to a pair
/// (a null view, not written, allows it).
template <class S>
bool pairs_fit(const View<S>& v) {
  if (!v.data) return true;
  const bool strides_even = (v.steps == 1 || v.stride_t % 2 == 0) && (v.batch == 1 || v.stride_b % 2 == 0) &&
                            (v.channels == 1 || v.stride_c % 2 == 0);
  return v.stride_h == 1 && strides_even && reinterpret_cast<std::uintptr_t>(v.data) % (2 * sizeof(S)) == 0;
}

template <class Cell, class S>
constexpr bool pairs_compiled() {
  return has_lane_pairs<S>::value && cell_traits<Cell>::K <= 2;
}

/// blockDim.x of the sequential kernels (forward and backward) for `segments`
/// segments: a warp of consecutive lanes' threads per segment, half a warp
/// beyond 8 segments (the block stays within the kernels' 256 threads);
/// without segments the wider block of the one-thread-per-lane kernels.
inline int sequential_block_lanes(int segments) {
  static_assert(16 * tuning::max_sequential_segments <= 256 && tuning::sequential_block_threads <= 256,
                "the sequential kernels are compiled with __launch_bounds__(256)");
  return segments > 8 ? 16 : segments > 1 ? 32 : tuning::sequential_block_threads;
}

/// Segments of a sequential kernel (forward or backward) over `threads`
/// threads of lanes: `want` where the caller or the options ask (> 0; at most
/// one a step), else tuning's for `target` threads x segments.
inline int resolve_segments(int want, index_t threads, index_t steps, index_t target) {
  return want > 0 ? static_cast<int>(std::min<index_t>(want, std::max<index_t>(steps, 1)))
                  : tuning::sequential_segments(threads, steps, target);
}

#if FLASHRNN_CUDA_STAGING
/// The input staging of the sequential forward for V lanes a thread
/// (input_stage.cuh): tuning::sequential_stage_steps steps a stage,
/// tuning::sequential_stages stages.
template <class Cell, class S, int V>
using SequentialStage =
    InputStage<S, tuning::sequential_stage_steps, cell_traits<Cell>::G, V, tuning::sequential_stages>;

/// Whether the staged forward is compiled for this cell, type and V: 16-bit
/// and fp32 storage (fp64 steps are bound by arithmetic), at most 12 KB of
/// stages a warp (16 segments: 192 KB a block). Never in HIP builds.
template <class Cell, class S, int V>
constexpr bool staging_compiled() {
  return sizeof(S) <= 4 && SequentialStage<Cell, S, V>::warp_bytes() <= 12 * 1024;
}

/// Shared memory of the staged kernel's block for `segments` segments.
template <class Cell, class S, int V>
std::size_t staged_block_bytes(int segments) {
  using R = typename compute_type<S>::type;
  const int lt = segments > 1 ? 32 : tuning::sequential_block_threads;
  return segment_ends_bytes<R>(segments, lt, V * cell_traits<Cell>::K) +
         static_cast<std::size_t>(lt * segments / 32) * SequentialStage<Cell, S, V>::warp_bytes();
}

#else
template <class Cell, class S, int V>
constexpr bool staging_compiled() {
  return false;
}
#endif

template <class Cell, class S, class R, int V, class Stage>
void launch_sequential_kernel(const FwdArgs<S, R>& a, int segments, cudaStream_t stream) {
  constexpr int K = cell_traits<Cell>::K;
  constexpr bool staged = !std::is_same<Stage, NoStage>::value;
  // Staged, a segment's lanes are always a whole warp (blocks of up to 512
  // threads: the kernel needs ~64 registers).
  const int lt = staged && segments > 1 ? 32 : sequential_block_lanes(segments);
  const index_t threads = (a.lanes + V - 1) / V;
  const index_t blocks = (threads + lt - 1) / lt;
  std::size_t smem = segment_ends_bytes<R>(segments, lt, V * K);
#if FLASHRNN_CUDA_STAGING
  if constexpr (staged) smem = staged_block_bytes<Cell, S, V>(segments);  // the same lt
#endif
  constexpr int D = V == 2 ? tuning::sequential_prefetch_pairs : tuning::sequential_prefetch;
  // Writing the states or not is compiled in (a per-step check costs two
  // instructions of a ParaGRU step's ~54).
  void (*kernel)(FwdArgs<S, R>) = a.states.data ? sequential_forward_kernel<Cell, S, R, D, V, true, Stage>
                                                : sequential_forward_kernel<Cell, S, R, D, V, false, Stage>;
#if FLASHRNN_CUDA_STAGING
  if (smem > 48 * 1024)
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
               "cudaFuncSetAttribute(sequential_forward_kernel)");
#endif
  kernel<<<static_cast<unsigned>(blocks), dim3(lt, segments), smem, stream>>>(a);
  check_launch("sequential_forward_kernel");
}

template <class Cell, class S, class R, int V>
void launch_sequential_v(const FwdArgs<S, R>& a, int segments, bool staged, cudaStream_t stream) {
#if FLASHRNN_CUDA_STAGING
  if constexpr (staging_compiled<Cell, S, V>()) {
    if (staged) return launch_sequential_kernel<Cell, S, R, V, SequentialStage<Cell, S, V>>(a, segments, stream);
  }
#endif
  (void)staged;
  launch_sequential_kernel<Cell, S, R, V, NoStage>(a, segments, stream);
}

template <class Cell, class S, class R>
void launch_sequential(const FwdArgs<S, R>& a, int segments, int lanes_per_thread, bool staged,
                       cudaStream_t stream) {
  if constexpr (pairs_compiled<Cell, S>()) {
    if (lanes_per_thread == 2) return launch_sequential_v<Cell, S, R, 2>(a, segments, staged, stream);
  }
  launch_sequential_v<Cell, S, R, 1>(a, segments, staged, stream);
}

#if FLASHRNN_CUDA_STAGING
/// Whether the staged forward can run here: compiled for the cell, type and
/// V, u copyable 16 bytes at a time, sequences shorter than 2^31 steps (its
/// counters are 32-bit), and the block's shared memory within what a block
/// of this device may use.
template <class Cell, class S>
bool staging_possible(const View<const S>& u, int V, int segments) {
  std::size_t bytes = 0;
  if (V == 2) {
    if constexpr (staging_compiled<Cell, S, 2>()) bytes = staged_block_bytes<Cell, S, 2>(segments);
  } else {
    if constexpr (staging_compiled<Cell, S, 1>()) bytes = staged_block_bytes<Cell, S, 1>(segments);
  }
  if (bytes == 0 || !stage_fits(u) || u.steps >= (index_t(1) << 31) - 64) return false;
  int device = 0, max_block_bytes = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&max_block_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
             "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  return bytes <= static_cast<std::size_t>(max_block_bytes);
}
#else
template <class Cell, class S>
bool staging_possible(const View<const S>&, int, int) {
  return false;
}
#endif

template <class Cell, class S, class R, int L>
void launch_newton(const FwdArgs<S, R>& a, int blocks, cudaStream_t stream) {
  newton_forward_kernel<Cell, S, R, L><<<blocks, tuning::block_threads, 0, stream>>>(a);
  check_launch("newton_forward_kernel");
}

template <class Cell, class S, class R, int L>
void launch_backward(const BwdArgs<S, R>& a, int blocks, cudaStream_t stream) {
  parallel_backward_kernel<Cell, S, R, L><<<blocks, tuning::block_threads, 0, stream>>>(a);
  check_launch("parallel_backward_kernel");
}

}  // namespace detail

template <class Cell, class S>
Mode forward_async(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                   View<S> final_state, const SolverOptions& options, DeviceReport* report,
                   cudaStream_t stream) {
  return detail::forward_async_with<Cell, S>(u, p, s0, states, final_state, options, report, {}, stream);
}

template <class Cell, class S>
Mode detail::forward_async_with(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                                View<S> final_state, const SolverOptions& options,
                                DeviceReport* report, const SequentialOverrides& forced,
                                cudaStream_t stream) {
  using R = typename detail::compute_type<S>::type;
  constexpr int K = cell_traits<Cell>::K;
  constexpr const char* where = "flashrnn::cuda::forward";
  const detail::ProfileRange<Cell, S> profile_range(where);
  SolverOptions chk = options;
  chk.check_finite = false;  // device data: checked inside the kernels instead
  flashrnn::detail::check_forward_args<Cell, S>(where, u, p, s0, states, final_state, chk);
  detail::check_forward_overrides(where, forced);
  detail::check_device(where, "u", u);
  detail::check_device(where, "p", p);
  detail::check_device(where, "s0", s0);
  detail::check_device(where, "states", states);
  detail::check_device(where, "final_state", final_state);

  const index_t T = u.steps, B = u.batch, H = u.units, lanes = B * H;
  const Mode mode = options.mode == Mode::automatic ? tuning::choose_mode(lanes, T, K)
                                                    : options.mode;
  if (report) detail::check_cuda(cudaMemsetAsync(report, 0, sizeof(DeviceReport), stream), "cudaMemsetAsync(report)");
  const double tol = default_tolerance<R>();
  const double atol = options.atol < 0 ? tol : options.atol;
  const double rtol = options.rtol < 0 ? tol : options.rtol;
  detail::FwdArgs<S, R> a{u, p, s0, states, final_state, T, H, lanes, 1, 1, 1, 1, 1,
                          options.max_iters, static_cast<R>(atol), static_cast<R>(rtol),
                          static_cast<R>(options.damping),
                          static_cast<int>(options.on_nonconvergence), nullptr, nullptr, nullptr,
                          report};
  if (mode == Mode::sequential) {
    // Pairs of lanes where the cell, the storage type and the layout allow
    // them (and tuning picks them, unless forced).
    const bool pairs_possible = detail::pairs_compiled<Cell, S>() && H % 2 == 0 && detail::pairs_fit(u) &&
                                detail::pairs_fit(states);
    if (forced.lanes_per_thread == 2 && !pairs_possible)
      flashrnn::detail::fail_argument(
          where, "lanes_per_thread",
          "1 or 0 here: pairs need ParaGRU-sized cells (K <= 2), bf16/fp16/fp32 storage, an even H, and u and "
          "states contiguous over units with even strides and pair-aligned data",
          2);
    // Segments forced by the caller, else by the options, else tuned.
    const int want_segments = forced.segments > 0 ? forced.segments : options.sequential_segments;
    a.burn_in = forced.burn_in >= 0 ? forced.burn_in : tuning::sequential_burn_in;
    a.rough_burn_in = forced.rough_burn_in >= 0 ? forced.rough_burn_in : tuning::sequential_rough_burn_in;
    a.defer_copies = forced.defer_copies >= 0 ? forced.defer_copies : tuning::sequential_defer_copies;
    // Where tuning stages the inputs in shared memory, lane pairs with their
    // own segment count, if pairs and staging fit and nothing forces another
    // choice; otherwise one or two lanes a thread by their rule, then inputs
    // staged or prefetched into registers.
    const bool stage_tuned = forced.staged != 1 && tuning::sequential_staged(lanes, sizeof(S), K);
    int V = 2, C = 0;
    bool staged = false;
    if (stage_tuned && pairs_possible && forced.lanes_per_thread != 1) {
      C = want_segments > 0 ? detail::resolve_segments(want_segments, lanes / 2, T, 0)
                            : tuning::sequential_staged_segments(lanes / 2, T);
      staged = detail::staging_possible<Cell, S>(u, 2, C);
    }
    if (!staged) {
      V = forced.lanes_per_thread > 0 ? forced.lanes_per_thread
          : pairs_possible            ? tuning::sequential_lanes_per_thread(lanes, T)
                                      : 1;
      C = detail::resolve_segments(want_segments, lanes / V, T, tuning::sequential_target_threads(sizeof(S), K));
      const bool stage_possible = detail::staging_possible<Cell, S>(u, V, C);
      if (forced.staged == 2 && !stage_possible)
        flashrnn::detail::fail_argument(
            where, "staged",
            "0 or 1 here: staging needs bf16/fp16/fp32 storage, u contiguous over units with 16-byte aligned "
            "data and strides, H a multiple of 16 bytes' worth of elements, and the block's stages (at most 12 "
            "KB a warp, one warp a segment) within the device's shared memory per block",
            2);
      staged = forced.staged == 2 || (stage_tuned && stage_possible);
    }
    // Segments of equal work where the inputs are staged (segment_range.hpp).
    a.balanced_segments = forced.balanced >= 0 ? forced.balanced : staged;
    detail::launch_sequential<Cell, S, R>(a, C, V, staged, stream);
    return mode;
  }
  const int L = detail::pick_chunk(options);
  const detail::BlockShape sh = detail::block_shape(lanes, T, L, where);
  a.LT = sh.LT;
  a.NC = sh.NC;
  a.n_tiles = sh.n_tiles;
  a.n_seg = sh.n_seg;
  a.seg_len = sh.seg_len;
  std::size_t carry_bytes = 0, flag_bytes = 0;
  if (sh.n_seg > 1) {
    carry_bytes = detail::align_up(static_cast<std::size_t>(sh.n_seg * lanes * K) * sizeof(R));
    flag_bytes = static_cast<std::size_t>(sh.n_seg * sh.n_tiles + 1) * sizeof(int);
  }
  detail::Workspace ws(carry_bytes + flag_bytes, stream, "cudaMallocAsync(forward workspace)");
  if (sh.n_seg > 1) {
    a.carry = static_cast<R*>(ws.ptr);
    a.flags = reinterpret_cast<int*>(static_cast<char*>(ws.ptr) + carry_bytes);
    a.counter = a.flags + sh.n_seg * sh.n_tiles;
    detail::check_cuda(cudaMemsetAsync(a.flags, 0, flag_bytes, stream), "cudaMemsetAsync(forward flags)");
  }
  const int blocks = static_cast<int>(sh.n_tiles * sh.n_seg);
  switch (L) {
    case 1: detail::launch_newton<Cell, S, R, 1>(a, blocks, stream); break;
    case 8: detail::launch_newton<Cell, S, R, 8>(a, blocks, stream); break;
    case 32: detail::launch_newton<Cell, S, R, 32>(a, blocks, stream); break;
    default: detail::launch_newton<Cell, S, R, 16>(a, blocks, stream); break;
  }
  return mode;
}

template <class Cell, class S>
SolveReport forward(View<const S> u, View<const S> p, View<const S> s0, View<S> states,
                    View<S> final_state, const SolverOptions& options, cudaStream_t stream) {
  constexpr const char* where = "flashrnn::cuda::forward";
  DeviceReport* d = nullptr;
  detail::check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&d), sizeof(DeviceReport), stream),
                     "cudaMallocAsync(report)");
  Mode mode;
  try {
    mode = forward_async<Cell, S>(u, p, s0, states, final_state, options, d, stream);
  } catch (...) {
    (void)cudaFreeAsync(d, stream);
    throw;
  }
  DeviceReport h{};
  const cudaError_t e1 = cudaMemcpyAsync(&h, d, sizeof(DeviceReport), cudaMemcpyDeviceToHost, stream);
  (void)cudaFreeAsync(d, stream);
  detail::check_cuda(e1, "cudaMemcpyAsync(report)");
  detail::check_cuda(cudaStreamSynchronize(stream),
                     "flashrnn::cuda::forward kernels (seen at the report's cudaStreamSynchronize)");
  const SolveReport rep = to_solve_report(h, mode, u.batch * u.units);
  if (options.check_finite && h.input_nonfinite)
    flashrnn::detail::fail_argument(where, "u/p/s0", "finite values", "inf or NaN");
  if (!rep.converged && options.on_nonconvergence == OnNonConvergence::throw_error)
    throw ConvergenceError(flashrnn::detail::concat(
        where, ": Newton (", to_string(rep.mode_used), ") did not converge in ", rep.iterations,
        " iterations (max_iters = ", options.max_iters, "); final residual ", rep.final_residual,
        rep.nonfinite_detected ? "; non-finite iterates" : "",
        ". Raise max_iters, use damping < 1, or OnNonConvergence::fallback_sequential."));
  return rep;
}

template <class Cell, class S>
void backward(View<const S> u, View<const S> p, View<const S> s0, View<const S> states,
              View<const S> grad_states, View<const S> grad_final, View<S> grad_u, View<S> grad_p,
              View<S> grad_s0, cudaStream_t stream) {
  detail::backward_with<Cell, S>(u, p, s0, states, grad_states, grad_final, grad_u, grad_p, grad_s0, {},
                                 stream);
}

template <class Cell, class S>
void detail::backward_with(View<const S> u, View<const S> p, View<const S> s0,
                           View<const S> states, View<const S> grad_states,
                           View<const S> grad_final, View<S> grad_u, View<S> grad_p,
                           View<S> grad_s0, const AdjointOverrides& forced, cudaStream_t stream) {
  using R = typename detail::compute_type<S>::type;
  constexpr int K = cell_traits<Cell>::K, P = cell_traits<Cell>::P;
  constexpr const char* where = "flashrnn::cuda::backward";
  const detail::ProfileRange<Cell, S> profile_range(where);
  flashrnn::detail::check_backward_args<Cell, S>(where, u, p, s0, states, grad_states, grad_final,
                                                 grad_u, grad_p, grad_s0);
  const index_t T = u.steps, B = u.batch, H = u.units, lanes = B * H;
  detail::check_device(where, "grad_u", grad_u);
  detail::check_device(where, "grad_p", grad_p);
  detail::check_device(where, "grad_s0", grad_s0);
  detail::check_device(where, "u", u);
  detail::check_device(where, "p", p);
  detail::check_device(where, "s0", s0);
  detail::check_device(where, "states", states);
  detail::check_device(where, "grad_states", grad_states);
  detail::check_device(where, "grad_final", grad_final);

  detail::check_segment_overrides(where, forced.segments, forced.burn_in);

  detail::BwdArgs<S, R> a{u, p, s0, states, grad_states, grad_final, grad_u, grad_s0,
                          T, H, lanes, 1, 1, 1, 1, 1, nullptr, nullptr, nullptr, nullptr};
  const bool seq = forced.kernel == detail::AdjointKernel::tuned
                       ? tuning::backward_sequential(lanes, T, sizeof(S), K)
                       : forced.kernel == detail::AdjointKernel::sequential;
  detail::BlockShape sh{1, 1, 1, T, 1};
  int C = 1;  // segments of the sequential kernel
  if (seq) {
    // The backward's rules were measured with the light steps' target.
    C = detail::resolve_segments(forced.segments, lanes, T, tuning::sequential_fill_threads);
    a.burn_in = forced.burn_in >= 0 ? forced.burn_in : tuning::sequential_backward_burn_in;
  } else {
    sh = detail::block_shape(lanes, T, tuning::default_chunk_length, where);
  }
  a.LT = sh.LT;
  a.NC = sh.NC;
  a.n_tiles = sh.n_tiles;
  a.n_seg = sh.n_seg;
  a.seg_len = sh.seg_len;
  // grad_p partials: one slab per chunk segment (parallel) or time segment (sequential).
  const index_t partial_slabs = seq ? C : sh.n_seg;
  std::size_t partial_bytes = 0, carry_bytes = 0, flag_bytes = 0;
  if (grad_p.data && P > 0)
    partial_bytes = detail::align_up(static_cast<std::size_t>(partial_slabs * lanes * P) * sizeof(R));
  if (sh.n_seg > 1) {
    carry_bytes = detail::align_up(static_cast<std::size_t>(sh.n_seg * lanes * K) * sizeof(R));
    flag_bytes = static_cast<std::size_t>(sh.n_seg * sh.n_tiles + 1) * sizeof(int);
  }
  detail::Workspace ws(partial_bytes + carry_bytes + flag_bytes, stream,
                       "cudaMallocAsync(backward workspace)");
  char* base = static_cast<char*>(ws.ptr);
  if (partial_bytes) a.partial = reinterpret_cast<R*>(base);
  if (sh.n_seg > 1) {
    a.carry = reinterpret_cast<R*>(base + partial_bytes);
    a.flags = reinterpret_cast<int*>(base + partial_bytes + carry_bytes);
    a.counter = a.flags + sh.n_seg * sh.n_tiles;
    detail::check_cuda(cudaMemsetAsync(a.flags, 0, flag_bytes, stream), "cudaMemsetAsync(backward flags)");
  }
  if (seq) {
    const int lt = detail::sequential_block_lanes(C);
    const index_t blocks = (lanes + lt - 1) / lt;
    const std::size_t smem = C > 1 ? static_cast<std::size_t>(C) * lt * K * sizeof(R) : 0;
    detail::sequential_backward_kernel<Cell, S, R, tuning::sequential_backward_prefetch(K)>
        <<<static_cast<unsigned>(blocks), dim3(lt, C), smem, stream>>>(a);
    detail::check_launch("sequential_backward_kernel");
  } else {
    detail::launch_backward<Cell, S, R, tuning::default_chunk_length>(
        a, static_cast<int>(sh.n_tiles * sh.n_seg), stream);
  }
  if (a.partial) {
    const index_t n = H * P;
    detail::reduce_param_grad_kernel<S, R><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
        a.partial, partial_slabs, B, H, P, grad_p);
    detail::check_launch("reduce_param_grad_kernel");
  }
}

template <class Cell, class S>
void step(View<const S> u_t, View<const S> p, View<const S> s_prev, View<S> s_next,
          cudaStream_t stream) {
  using R = typename detail::compute_type<S>::type;
  constexpr const char* where = "flashrnn::cuda::step";
  const detail::ProfileRange<Cell, S> profile_range(where);
  // The same checks as the CPU and Kokkos step(): shapes, strides, and s_next
  // either exactly s_prev (in place) or disjoint from it.
  flashrnn::detail::check_step_args<Cell, S>(where, u_t, p, s_prev, s_next);
  const index_t B = u_t.batch, H = u_t.units;
  detail::check_device(where, "u_t", u_t);
  detail::check_device(where, "p", p);
  detail::check_device(where, "s_prev", s_prev);
  detail::check_device(where, "s_next", s_next);
  const index_t lanes = B * H;
  detail::step_kernel<Cell, S, R><<<static_cast<unsigned>((lanes + 127) / 128), 128, 0, stream>>>(
      u_t, p, s_prev, s_next, H, lanes);
  detail::check_launch("step_kernel");
}

}  // namespace cuda
}  // namespace flashrnn

/// Explicit instantiation of the whole API for one cell and storage type.
#define FLASHRNN_CUDA_INSTANTIATE(CELL, S)                                                       \
  template flashrnn::Mode flashrnn::cuda::forward_async<CELL, S>(                                \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<S>, flashrnn::View<S>, const flashrnn::SolverOptions&,                      \
      flashrnn::cuda::DeviceReport*, cudaStream_t);                                               \
  template flashrnn::Mode flashrnn::cuda::detail::forward_async_with<CELL, S>(                   \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<S>, flashrnn::View<S>, const flashrnn::SolverOptions&,                      \
      flashrnn::cuda::DeviceReport*, const flashrnn::cuda::detail::SequentialOverrides&,          \
      cudaStream_t);                                                                              \
  template flashrnn::SolveReport flashrnn::cuda::forward<CELL, S>(                               \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<S>, flashrnn::View<S>, const flashrnn::SolverOptions&, cudaStream_t);       \
  template void flashrnn::cuda::backward<CELL, S>(                                               \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<S>, flashrnn::View<S>, flashrnn::View<S>, cudaStream_t);                     \
  template void flashrnn::cuda::detail::backward_with<CELL, S>(                                   \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<const S>, flashrnn::View<const S>, flashrnn::View<const S>,                  \
      flashrnn::View<S>, flashrnn::View<S>, flashrnn::View<S>,                                    \
      const flashrnn::cuda::detail::AdjointOverrides&, cudaStream_t);                             \
  template void flashrnn::cuda::step<CELL, S>(flashrnn::View<const S>, flashrnn::View<const S>,  \
                                              flashrnn::View<const S>, flashrnn::View<S>,         \
                                              cudaStream_t);

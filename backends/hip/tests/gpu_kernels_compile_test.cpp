// Representative FlashRNN GPU kernels written once against
// flashrnn/gpu/portability.hpp, compiled by hipcc for gfx90a (wavefront 64)
// and by nvcc (warp 32). There is no AMD GPU here: this is a compile (and
// link) test; main() launches the kernels where a device exists.
//   newton_iteration_warp  one per-step Newton iteration of one lane per warp:
//                          Jacobians from core's dual numbers, a warp-level
//                          affine scan in tiles of warp_size steps, the update
//   paragru_sequential     the fused sequential ParaGRU kernel, a lane per thread
//   count_unconverged      a vendor block scan (CUB / rocPRIM) compacting lanes
#include <cstdio>

#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/core/affine.hpp"
#include "flashrnn/core/cell.hpp"
#include "flashrnn/core/views.hpp"
#include "flashrnn/gpu/portability.hpp"

namespace fg = flashrnn::gpu;
using flashrnn::Affine;
using flashrnn::index_t;

/// Block = warps_per_block warps; warp w of block b solves lane b*warps + w.
/// states (lanes x T x K) holds s^k on entry and s^{k+1} on exit.
template <class Cell, class R>
__global__ void newton_iteration_warp(const R* __restrict__ u, const R* __restrict__ p, const R* __restrict__ s0,
                                      R* __restrict__ states, index_t lanes, index_t T, R* __restrict__ residual) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  using Map = Affine<R, K>;
  const index_t lane = blockIdx.x * (blockDim.x / fg::warp_size) + threadIdx.x / fg::warp_size;
  if (lane >= lanes) return;  // whole warps leave together
  const int l = fg::lane_id();
  const R* ul = u + lane * T * G;
  const R* pl = p + lane * P;
  R* sl = states + lane * T * K;
  Map carry = Map::constant(s0 + lane * K);  // x -> s0: scanning from it yields states
  struct State {
    R v[K];
  };
  State last_old;  // s^k of the step before the tile (s0 for the first)
  for (int k = 0; k < K; ++k) last_old.v[k] = s0[lane * K + k];
  R worst = 0;
  for (index_t t0 = 0; t0 < T; t0 += fg::warp_size) {
    const index_t t = t0 + l;
    State old{};
    if (t < T)
      for (int k = 0; k < K; ++k) old.v[k] = sl[t * K + k];
    // s^k_{t-1}: the neighbour's old state, across tiles the carried one.
    State prev = fg::shfl_up(old, 1u);
    if (l == 0) prev = last_old;
    Map m = Map::identity();
    if (t < T) {
      R f[K];
      flashrnn::cell_step_state_jacobian<Cell>(prev.v, ul + t * G, pl, f, m.A);
      for (int i = 0; i < K; ++i) {
        R c = f[i];
        for (int j = 0; j < K; ++j) c -= m.A[i * K + j] * prev.v[j];
        m.c[i] = c;
      }
    }
    m = fg::warp_inclusive_scan(m, [](const Map& later, const Map& earlier) { return flashrnn::compose(later, earlier); });
    const Map total = flashrnn::compose(m, carry);
    if (t < T)
      for (int k = 0; k < K; ++k) {
        const R d = total.c[k] - old.v[k];
        worst = fmax(worst, d < 0 ? -d : d);
        sl[t * K + k] = total.c[k];
      }
    carry = fg::shfl(total, fg::warp_size - 1);
    last_old = fg::shfl(old, fg::warp_size - 1);
  }
  for (int d = fg::warp_size / 2; d > 0; d /= 2) worst = fmax(worst, fg::shfl_down(worst, d));
  if (l == 0) residual[lane] = worst;
}

/// Exact stepping, a lane per thread, reading (T, B, G, H) strided views.
template <class R>
__global__ void paragru_sequential(flashrnn::View<const R> u, flashrnn::View<const R> p,
                                   flashrnn::View<R> states) {
  using Cell = flashrnn::cells::ParaGRU;
  const index_t lane = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  const index_t B = u.batch, H = u.units;
  if (lane >= B * H) return;
  const index_t b = lane / H, j = lane % H;
  R s[1] = {R(0)}, pl[3], ul[3];
  for (int q = 0; q < 3; ++q) pl[q] = p(0, 0, q, j);
  for (index_t t = 0; t < u.steps; ++t) {
    for (int g = 0; g < 3; ++g) ul[g] = u(t, b, g, j);
    R next[1];
    flashrnn::cell_step<Cell>(s, ul, pl, next);
    s[0] = next[0];
    states(t, b, 0, j) = s[0];
  }
}

/// Positions of the lanes whose residual exceeds tol (stream compaction with
/// the vendor block scan), one block of Threads lanes.
template <int Threads, class R>
__global__ void count_unconverged(const R* residual, index_t lanes, R tol, int* position, int* count) {
  using Scan = fg::BlockScan<int, Threads>;
  __shared__ typename Scan::storage_type storage;
  const index_t i = blockIdx.x * static_cast<index_t>(Threads) + threadIdx.x;
  const int bad = i < lanes && residual[i] > tol ? 1 : 0;
  const int inclusive = Scan::inclusive_sum(bad, storage);
  if (i < lanes) position[i] = bad ? inclusive - 1 : -1;
  if (threadIdx.x == Threads - 1) atomicAdd(count, inclusive);
}

template <class Cell, class R>
void launch_all(index_t lanes, index_t T, fg::stream_t stream) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  R *u, *p, *s0, *states, *res;
  int *pos, *count;
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&u), lanes * T * G * sizeof(R)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&p), lanes * P * sizeof(R)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&s0), lanes * K * sizeof(R)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&states), lanes * T * K * sizeof(R)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&res), lanes * sizeof(R)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&pos), lanes * sizeof(int)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Malloc)(reinterpret_cast<void**>(&count), sizeof(int)));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(MemsetAsync)(u, 0, lanes * T * G * sizeof(R), stream));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(MemsetAsync)(p, 0, lanes * P * sizeof(R), stream));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(MemsetAsync)(s0, 0, lanes * K * sizeof(R), stream));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(MemsetAsync)(states, 0, lanes * T * K * sizeof(R), stream));
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(MemsetAsync)(count, 0, sizeof(int), stream));
  constexpr int warps = 4, threads = 256;
  const unsigned blocks = static_cast<unsigned>((lanes + warps - 1) / warps);
  newton_iteration_warp<Cell, R><<<blocks, warps * fg::warp_size, 0, stream>>>(u, p, s0, states, lanes, T, res);
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(GetLastError)());
  if constexpr (K == 1) {
    paragru_sequential<R><<<static_cast<unsigned>((lanes + 127) / 128), 128, 0, stream>>>(
        flashrnn::time_first<const R>(u, T, 1, G, lanes), flashrnn::param_view<const R>(p, P, lanes),
        flashrnn::time_first<R>(states, T, 1, K, lanes));
    FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(GetLastError)());
  }
  count_unconverged<threads, R><<<static_cast<unsigned>((lanes + threads - 1) / threads), threads, 0, stream>>>(
      res, lanes, R(1e-5), pos, count);
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(GetLastError)());
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(StreamSynchronize)(stream));
  for (void* q : {static_cast<void*>(u), static_cast<void*>(p), static_cast<void*>(s0), static_cast<void*>(states),
                  static_cast<void*>(res), static_cast<void*>(pos), static_cast<void*>(count)})
    FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(Free)(q));
}

int main() {
  int devices = 0;
  if (FLASHRNN_GPU_RT(GetDeviceCount)(&devices) != fg::success || devices == 0) {
    std::printf("%s build (warp size %d): compiled; no GPU to run on\n", fg::runtime_name, fg::warp_size);
    return 0;
  }
  fg::stream_t stream;
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(StreamCreate)(&stream));
  launch_all<flashrnn::cells::ParaGRU, float>(1000, 300, stream);
  launch_all<flashrnn::cells::ParaLSTM, double>(100, 300, stream);
  FLASHRNN_GPU_CHECK(FLASHRNN_GPU_RT(StreamDestroy)(stream));
  std::printf("%s build (warp size %d): kernels ran\n", fg::runtime_name, fg::warp_size);
  return 0;
}

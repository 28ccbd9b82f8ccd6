// Experiment behind tuning::sequential_segments and choose_mode (perf/README.md,
// "Segmented sequential forward"): the sequential forward with its lanes'
// sequences cut into C = 1, 2, 4, 8 segments with no burn-in, then the tuned C
// with the start of each segment guessed from 16 .. 128 burn-in steps (forced
// through detail::forward_async_with), against chunked Newton, B = 8. Reports ms and
// GB/s of unavoidable I/O (read u once, write the states once) as a fraction
// of the card's measured device-to-device copy bandwidth. Built by CMake with
// the perf targets (flashrnn_exp_segments), linked to the library so that it
// times the kernels the library ships (e.g. its 16-bit activations).
// Arguments: none (the grid below), "quick" (three shapes), "few" (64-512
// lanes, T up to 65536), "pairs" (one lane a thread against two, the
// experiment behind tuning::sequential_lanes_per_thread; "pairs-issue": only
// the issue's widths at T = 2048 and 8192), "others" (the grid's columns for
// the cells and types it leaves out: ParaGRU/ParaLSTM fp64, DiagTanh
// fp32/bf16, HeadTanh4 fp32/bf16/fp64), "staged" (registers against inputs
// staged in shared memory), "miss" (staged at the issue's bf16 miss), "fit"
// (staged, bf16, segment counts 1-16 and lanes 8192-65536; "fit-fine":
// lane pairs, every count 2-16), "burn" (burn-in lengths), "rough" (burn-ins with rough first steps) or
// "profile" (one launch each of five shapes, for ncu --kernel-name
// regex:sequential_forward; "profile-miss": the issue's bf16 miss only).
#include <cstdio>
#include <cstring>
#include <vector>

#include "flashrnn/cells/diag_tanh.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/cuda/tuning.hpp"

#include "common.cuh"

namespace xb {
using namespace flashrnn;

/// Slow memory for segments: ParaGRU's update-gate input set to `value` for
/// every step and unit. -30: h never changes, so no corrected segment merges
/// (the worst case); -2.5: z ~ 0.08, trajectories merge after a few hundred steps.
template <class S>
__global__ void set_update_gate(S* u, size_t steps_x_batch, int H, float value) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < steps_x_batch * H;
       i += size_t(gridDim.x) * blockDim.x)
    u[(i / H) * 3 * H + i % H] = S(value);  // gate 0 of batch_first (B, T, 3, H)
}

/// B = 8 lanes of H units over T steps on the device: random inputs (u in
/// +-1.5, p in +-0.9, as bench_cuda), parameters and a state buffer.
template <class Cell, class S>
struct Problem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim, B = 8;
  int H;
  long T;
  size_t nu, ns;
  S *u = nullptr, *p = nullptr, *st = nullptr;
  Problem(int h, long t) : H(h), T(t), nu(size_t(B) * t * G * h), ns(size_t(B) * t * K * h) {
    CK(cudaMalloc(&u, nu * sizeof(S)));
    CK(cudaMalloc(&st, ns * sizeof(S)));
    CK(cudaMalloc(&p, size_t(P) * H * sizeof(S)));
    fill_kernel<<<1024, 256>>>(u, nu, 1.5f, 1);
    fill_kernel<<<64, 256>>>(p, size_t(P) * H, 0.9f, 3);
  }
  ~Problem() {
    for (S* x : {u, p, st}) cudaFree(x);
  }
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;
  View<const S> uv() const { return batch_first<const S>(u, B, T, G, H); }
  View<const S> pv() const { return param_view<const S>(p, P, H); }
  View<S> sv() const { return batch_first(st, B, T, K, H); }
  double gigabytes() const { return double(nu + ns) * sizeof(S) / 1e9; }
};

/// The lanes a thread the library picks for this cell and type (contiguous
/// buffers from cudaMalloc, H even).
template <class Cell, class S>
int tuned_lanes_per_thread(index_t lanes, index_t T) {
  return sizeof(S) <= 4 && Cell::state_dim <= 2 ? cuda::tuning::sequential_lanes_per_thread(lanes, T) : 1;
}

/// Options for timing: no host-side finiteness check (a read of u).
SolverOptions timing_options() {
  SolverOptions o;
  o.check_finite = false;
  return o;
}

template <class Cell, class S>
void shape(const char* dtype, int H, long T, double peak, float update_gate = 0.0f) {
  Problem<Cell, S> pr(H, T);
  if (update_gate != 0.0f) set_update_gate<<<1024, 256>>>(pr.u, size_t(pr.B) * T, H, update_gate);
  CK(cudaDeviceSynchronize());
  const auto uv = pr.uv();
  const auto pv = pr.pv();
  const auto sv = pr.sv();
  SolverOptions o = timing_options();
  std::printf("%-11s %s", Cell::name, dtype);
  if (update_gate != 0.0f) std::printf(" u_z=%g", update_gate);
  std::printf(" lanes=%-6d T=%-6ld", pr.B * H, T);
  float best = 1e30f;
  o.mode = Mode::sequential;
  for (int C : {1, 2, 4, 8}) {  // no burn-in: segments start from 0
    const float ms = median_ms([&] {
      cuda::detail::forward_async_with<Cell, S>(uv, pv, {}, sv, {}, o, nullptr, {C, 0, 1}, nullptr);
    });
    best = std::min(best, ms);
    std::printf("  C%d %6.3f", C, ms);
  }
  std::printf("  burn-in");
  for (int w : {16, 32, 64, 128}) {  // the tuned segment count, start guessed from w steps
    const float ms = median_ms([&] {
      cuda::detail::forward_async_with<Cell, S>(uv, pv, {}, sv, {}, o, nullptr, {0, w, 1}, nullptr);
    });
    best = std::min(best, ms);
    std::printf(" %d:%6.3f", w, ms);
  }
  o.mode = Mode::newton_chunked;
  const float chunked = median_ms([&] { cuda::forward_async<Cell, S>(uv, pv, {}, sv, {}, o, nullptr, nullptr); });
  o.mode = Mode::sequential;
  const float tuned = median_ms([&] { cuda::forward_async<Cell, S>(uv, pv, {}, sv, {}, o, nullptr, nullptr); });
  const double gb = pr.gigabytes();
  std::printf("  chunked %6.3f  tuned(C=%d) %6.3f ms = %5.1f%% of copy; best seq %5.1f%%\n", chunked,
              cuda::tuning::sequential_segments(index_t(pr.B) * H / tuned_lanes_per_thread<Cell, S>(pr.B * H, T), T,
                                                cuda::tuning::sequential_target_threads(sizeof(S), Cell::state_dim)),
              tuned, 100.0 * gb / (tuned * 1e-3) / peak,
              100.0 * gb / (best * 1e-3) / peak);
  CK(cudaDeviceSynchronize());
}

/// One launch (after one warm-up launch) of the sequential forward at a
/// forced segment count, for a profiler.
template <class Cell, class S>
void profile_once(const char* dtype, int H, long T, int C, int V = 1) {
  Problem<Cell, S> pr(H, T);
  SolverOptions o;
  o.check_finite = false;
  o.mode = Mode::sequential;
  auto launch = [&] {
    cuda::detail::forward_async_with<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr, {C, -1, V}, nullptr);
  };
  launch();
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  launch();
  cudaEventRecord(b);
  CK(cudaEventSynchronize(b));
  float ms;
  cudaEventElapsedTime(&ms, a, b);
  std::printf("profile %-8s %s lanes=%d T=%ld C=%d V=%d  %.3f ms\n", Cell::name, dtype, pr.B * H, T, C, V, ms);
}

void profile() {
  profile_once<cells::ParaGRU, float>("fp32", 8192, 2048, 1);
  profile_once<cells::ParaGRU, __nv_bfloat16>("bf16", 8192, 2048, 1);
  profile_once<cells::ParaGRU, __nv_bfloat16>("bf16", 1024, 2048, 8);
  profile_once<cells::ParaLSTM, float>("fp32", 8192, 2048, 1);
  profile_once<cells::ParaLSTM, __nv_bfloat16>("bf16", 1024, 2048, 8);
  profile_once<cells::ParaGRU, __nv_bfloat16>("bf16", 8192, 2048, 1, 2);
  profile_once<cells::ParaGRU, __nv_bfloat16>("bf16", 1024, 2048, 16, 2);
}
/// The issue's bf16 miss only (B*H = 8192, T = 2048), staged: 8 segments of
/// one lane a thread and 12 of two (the tuned launch), ParaGRU and ParaLSTM.
void profile_miss() {
  for (int pass = 0; pass < 2; ++pass) {
    profile_once<cells::ParaGRU, __nv_bfloat16>("bf16", 1024, 2048, 8, 1);
    profile_once<cells::ParaGRU, __nv_bfloat16>("bf16", 1024, 2048, 12, 2);
    profile_once<cells::ParaLSTM, __nv_bfloat16>("bf16", 1024, 2048, 8, 1);
    profile_once<cells::ParaLSTM, __nv_bfloat16>("bf16", 1024, 2048, 12, 2);
  }
}

/// One lane a thread (V = 1) against pairs (V = 2): for each V, every
/// power-of-two segment count (tuned burn-in), then the segment count tuning
/// picks for lanes / V threads. Reports ms, the % of copy of the tuned launch
/// and tuned-V1 time / tuned-V2 time.
template <class Cell, class S>
void pairs_shape(const char* dtype, int H, long T, double peak) {
  Problem<Cell, S> pr(H, T);
  CK(cudaDeviceSynchronize());
  const auto uv = pr.uv();
  const auto pv = pr.pv();
  const auto sv = pr.sv();
  SolverOptions o = timing_options();
  o.mode = Mode::sequential;
  const index_t lanes = index_t(pr.B) * H;
  std::printf("%-8s %s lanes=%-6ld T=%-6ld", Cell::name, dtype, static_cast<long>(lanes), T);
  float tuned[3] = {0, 0, 0};
  for (int V : {1, 2}) {
    std::printf("  V%d", V);
    for (int C : {1, 2, 4, 8, 12, 16}) {
      if (T < 2 * C * cuda::tuning::min_segment_steps && C > 1) break;
      const float ms = median_ms([&] {
        cuda::detail::forward_async_with<Cell, S>(uv, pv, {}, sv, {}, o, nullptr, {C, -1, V}, nullptr);
      });
      std::printf(" C%d:%.3f", C, ms);
    }
    tuned[V] = median_ms([&] {
      cuda::detail::forward_async_with<Cell, S>(uv, pv, {}, sv, {}, o, nullptr, {0, -1, V}, nullptr);
    });
    std::printf(" tuned(C%d) %.3f ms %4.1f%%", cuda::tuning::sequential_segments(lanes / V, T), tuned[V],
                100.0 * pr.gigabytes() / (tuned[V] * 1e-3) / peak);
  }
  std::printf("  V1/V2 %.2f  library picks V%d\n", tuned[1] / tuned[2], tuned_lanes_per_thread<Cell, S>(lanes, T));
  CK(cudaDeviceSynchronize());
}

/// The pairs grid; `issue`: only the issue's benchmark widths (B = 8, H 256,
/// 1024, 4096) at T = 2048 and 8192.
void pairs(bool issue) {
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  for (int H : {32, 256, 1024, 4096, 8192, 16384})
    for (long T : {2048L, 8192L, 65536L}) {
      if (T == 65536 && H > 4096) continue;
      if (issue && (H < 256 || H > 4096 || T > 8192)) continue;
      pairs_shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T, peak);
      pairs_shape<cells::ParaLSTM, __nv_bfloat16>("bf16", H, T, peak);
      pairs_shape<cells::ParaGRU, float>("fp32", H, T, peak);
      pairs_shape<cells::ParaLSTM, float>("fp32", H, T, peak);
    }
}

/// Inputs prefetched into registers (r) against staged in shared memory (s,
/// input_stage.cuh), the experiment behind tuning::sequential_staged: for
/// one lane and two lanes a thread, segment counts 1-16, tuned burn-in. Reports ms and the best of each path
/// as a % of copy.
template <class Cell, class S>
void staged_shape(const char* dtype, int H, long T, double peak) {
  Problem<Cell, S> pr(H, T);
  CK(cudaDeviceSynchronize());
  SolverOptions o = timing_options();
  o.mode = Mode::sequential;
  const index_t lanes = index_t(pr.B) * H;
  std::printf("%-8s %s lanes=%-6ld T=%-6ld", Cell::name, dtype, static_cast<long>(lanes), T);
  float best[3] = {1e30f, 1e30f, 1e30f};
  std::vector<S> states[3];
  int mismatches = 0;
  for (int V : {1, 2}) {
    std::printf("  V%d", V);
    for (int C : {1, 2, 4, 8, 16}) {
      if (T < 2 * C * cuda::tuning::min_segment_steps && C > 1) break;
      std::printf(" C%d", C);
      for (int staged : {1, 2}) {
        auto launch = [&] {
          cuda::detail::forward_async_with<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr,
                                                    {C, -1, V, staged}, nullptr);
        };
        try {
          launch();
        } catch (const InvalidArgument&) {  // staging does not fit (shared memory of the block)
          std::printf(" s-");
          states[2] = states[1];
          continue;
        }
        const float ms = median_ms(launch);
        best[staged] = std::min(best[staged], ms);
        std::printf(" %c%.3f", staged == 2 ? 's' : 'r', ms);
        // Both paths must write the same bits (the CUDA suite checks this in detail).
        CK(cudaMemset(pr.st, 0xff, pr.ns * sizeof(S)));
        launch();
        states[staged].resize(pr.ns);
        CK(cudaMemcpy(states[staged].data(), pr.st, pr.ns * sizeof(S), cudaMemcpyDeviceToHost));
      }
      if (std::memcmp(states[1].data(), states[2].data(), pr.ns * sizeof(S)) != 0) {
        std::printf(" MISMATCH");
        ++mismatches;
      }
    }
  }
  std::printf("  staged burn-in 16:");  // a shorter start guess at the larger segment counts
  for (int V : {1, 2})
    for (int C : {8, 16}) {
      if (T < 2 * C * cuda::tuning::min_segment_steps) continue;
      auto launch = [&] {
        cuda::detail::forward_async_with<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr, {C, 16, V, 2},
                                                  nullptr);
      };
      try {
        launch();
      } catch (const InvalidArgument&) {
        continue;
      }
      const float ms = median_ms(launch);
      best[2] = std::min(best[2], ms);
      std::printf(" V%dC%d %.3f", V, C, ms);
    }
  const float tuned = median_ms(
      [&] { cuda::forward_async<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr, nullptr); });
  std::printf("  best r %.3f (%4.1f%%) s %.3f (%4.1f%%) r/s %.2f  tuned %.3f%s\n", best[1],
              100.0 * pr.gigabytes() / (best[1] * 1e-3) / peak, best[2],
              100.0 * pr.gigabytes() / (best[2] * 1e-3) / peak, best[1] / best[2], tuned,
              mismatches ? "  STATES DIFFER" : "");
  CK(cudaDeviceSynchronize());
}

void staged() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive an abort
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  for (int H : {256, 1024, 4096, 8192})
    for (long T : {2048L, 8192L}) {
      staged_shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T, peak);
      staged_shape<cells::ParaLSTM, __nv_bfloat16>("bf16", H, T, peak);
      staged_shape<cells::ParaGRU, float>("fp32", H, T, peak);
      staged_shape<cells::ParaLSTM, float>("fp32", H, T, peak);
      if (H >= 1024) staged_shape<cells::DiagTanh, __nv_bfloat16>("bf16", H, T, peak);
    }
}

/// Staged launches at the issue's bf16 miss (B*H = 8192, T = 2048) and two
/// neighbours, for comparing kernel variants: segment counts 6-16 (not only
/// powers of two), one and two lanes a thread, burn-in tuned and 24; the
/// best against the registers' best at 8 segments and the tuned launch.
template <class Cell, class S>
void miss_shape(const char* dtype, int H, long T, double peak) {
  Problem<Cell, S> pr(H, T);
  SolverOptions o = timing_options();
  o.mode = Mode::sequential;
  std::printf("%-8s %s lanes=%-6ld T=%-6ld", Cell::name, dtype, static_cast<long>(index_t(pr.B) * H), T);
  auto time = [&](int C, int burn, int V, int staged) {
    auto launch = [&] {
      cuda::detail::forward_async_with<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr, {C, burn, V, staged},
                                                nullptr);
    };
    try {
      launch();
    } catch (const InvalidArgument&) {
      return 1e30f;
    }
    return median_ms(launch);
  };
  float best = 1e30f;
  for (int V : {1, 2}) {
    std::printf("  V%d", V);
    for (int C : {6, 8, 10, 12, 16})
      for (int burn : {-1, 24}) {
        const float ms = time(C, burn, V, 2);
        best = std::min(best, ms);
        std::printf(" C%d%s %.4f", C, burn < 0 ? "" : "b24", ms);
      }
  }
  const float regs = std::min(time(8, -1, 1, 1), time(8, -1, 2, 1));
  auto tuned_call = [&] { cuda::forward_async<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr, nullptr); };
  const float tuned = median_ms(tuned_call), tuned_idle = median_ms(tuned_call, true);
  // With a device report (zeroed by a memset before the kernel), and with
  // that and two copies of u taken in turn (no input left in L2), as bench_cuda.
  cuda::DeviceReport* rep = nullptr;
  CK(cudaMalloc(&rep, sizeof(cuda::DeviceReport)));
  const float reported =
      median_ms([&] { cuda::forward_async<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, rep, nullptr); });
  S* u2 = nullptr;
  CK(cudaMalloc(&u2, pr.nu * sizeof(S)));
  CK(cudaMemcpy(u2, pr.u, pr.nu * sizeof(S), cudaMemcpyDeviceToDevice));
  int turn = 0;
  const float rotated = median_ms([&] {
    View<const S> u = pr.uv();
    if (++turn % 2) u.data = u2;
    cuda::forward_async<Cell, S>(u, pr.pv(), {}, pr.sv(), {}, o, rep, nullptr);
  });
  CK(cudaFree(u2));
  CK(cudaFree(rep));
  auto pct = [&](float ms) { return 100.0 * pr.gigabytes() / (ms * 1e-3) / peak; };
  std::printf("  | staged best %.4f (%4.1f%%) regs C8 %.4f tuned %.4f (%4.1f%%) idle-start %.4f (%4.1f%%)"
              " report %.4f (%4.1f%%) report+rotated %.4f (%4.1f%%)\n",
              best, pct(best), regs, tuned, pct(tuned), tuned_idle, pct(tuned_idle), reported, pct(reported), rotated,
              pct(rotated));
  CK(cudaDeviceSynchronize());
}

/// Calls run(cell, H, T) (cell: a value of the cell type) at the bf16 shapes
/// around the issue's miss: ParaGRU and ParaLSTM at 8192 lanes x T 2048 /
/// 8192 and 32768 x 2048, then DiagTanh at 8192 x 2048.
template <class Run>
void over_miss_shapes(Run&& run) {
  for (int H : {1024, 4096})
    for (long T : {2048L, 8192L}) {
      if (H == 4096 && T == 8192) continue;
      run(cells::ParaGRU{}, H, T);
      run(cells::ParaLSTM{}, H, T);
    }
  run(cells::DiagTanh{}, 1024, 2048L);
}

void miss() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  over_miss_shapes(
      [&](auto cell, int H, long T) { miss_shape<decltype(cell), __nv_bfloat16>("bf16", H, T, peak); });
}

/// Burn-in lengths: what a longer start guess saves in correction (double
/// steps with writes) against what it costs in steps. At the issue's bf16
/// miss for the staged launches the rule and the fit pick (V2 C12, V1 C8,
/// V2 C8); elsewhere the tuned launch (`full` false).
template <class Cell, class S>
void burn_shape(const char* dtype, int H, long T, double peak, bool full) {
  Problem<Cell, S> pr(H, T);
  SolverOptions o = timing_options();
  o.mode = Mode::sequential;
  std::printf("%-8s %s lanes=%-6ld T=%-6ld", Cell::name, dtype, static_cast<long>(index_t(pr.B) * H), T);
  const int launches[][3] = {{0, 0, 0}, {2, 12, 2}, {1, 8, 2}, {2, 8, 2}};  // V, C, staged; 0 = tuned
  for (const auto& l : launches) {
    if (!full && l[0] != 0) break;
    if (l[0] == 0)
      std::printf("  tuned");
    else
      std::printf("  V%dC%d", l[0], l[1]);
    for (int burn : {0, 16, 24, 32, 40, 48, 56, 64, 80, 96}) {
      auto launch = [&] {
        cuda::detail::forward_async_with<Cell, S>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr,
                                                  {l[1], burn, l[0], l[2]}, nullptr);
      };
      const float ms = median_ms(launch);
      std::printf(" b%d %.4f (%4.1f%%)", burn, ms, 100.0 * pr.gigabytes() / (ms * 1e-3) / peak);
    }
  }
  std::printf("\n");
}

void burn() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  for (long T : {2048L, 8192L}) {
    burn_shape<cells::ParaGRU, __nv_bfloat16>("bf16", 1024, T, peak, true);
    burn_shape<cells::ParaLSTM, __nv_bfloat16>("bf16", 1024, T, peak, true);
  }
  for (int H : {256, 4096})
    for (long T : {512L, 2048L}) {
      burn_shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T, peak, false);
      burn_shape<cells::ParaLSTM, __nv_bfloat16>("bf16", H, T, peak, false);
    }
  for (int H : {1024, 4096})
    for (long T : {512L, 2048L}) {
      burn_shape<cells::ParaGRU, float>("fp32", H, T, peak, false);
      burn_shape<cells::ParaLSTM, float>("fp32", H, T, peak, false);
    }
}

/// Rough burn-in steps (tuning::sequential_rough_burn_in), segments of equal
/// work and deferred copies: the tuned launch with each forced on and off,
/// timed as bench_cuda times (a device report, two copies of u taken in
/// turn). Columns: r<rough steps of the 48-step burn-in>, b = balanced, d =
/// deferred; the first column is repeated at the end (the first launches of
/// a shape run a little slower).
template <class Cell, class S>
void rough_shape(const char* dtype, int H, long T, double peak) {
  Problem<Cell, S> pr(H, T);
  SolverOptions o = timing_options();
  o.mode = Mode::sequential;
  std::printf("%-8s %s lanes=%-6ld T=%-6ld", Cell::name, dtype, static_cast<long>(index_t(pr.B) * H), T);
  cuda::DeviceReport* rep = nullptr;
  CK(cudaMalloc(&rep, sizeof(cuda::DeviceReport)));
  S* u2 = nullptr;
  CK(cudaMalloc(&u2, pr.nu * sizeof(S)));
  CK(cudaMemcpy(u2, pr.u, pr.nu * sizeof(S), cudaMemcpyDeviceToDevice));
  const int variants[][3] = {{0, 0, 0},  {16, 0, 0}, {24, 0, 0}, {0, 1, 0},  {0, 0, 1},
                             {0, 1, 1},  {16, 1, 0}, {16, 0, 1}, {16, 1, 1}, {0, 0, 0}};  // rough, balanced, deferred
  for (const auto& v : variants) {
    int turn = 0;
    const float ms = median_ms([&] {
      View<const S> u = pr.uv();
      if (++turn % 2) u.data = u2;
      cuda::detail::forward_async_with<Cell, S>(u, pr.pv(), {}, pr.sv(), {}, o, rep, {0, 48, 0, 0, v[0], v[1], v[2]},
                                                nullptr);
    });
    std::printf(" r%d%s%s %.4f (%4.1f%%)", v[0], v[1] ? "b" : "", v[2] ? "d" : "", ms,
                100.0 * pr.gigabytes() / (ms * 1e-3) / peak);
  }
  std::printf("\n");
  CK(cudaFree(u2));
  CK(cudaFree(rep));
}

void rough() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  over_miss_shapes(
      [&](auto cell, int H, long T) { rough_shape<decltype(cell), __nv_bfloat16>("bf16", H, T, peak); });
  for (int H : {256, 1024}) {
    const long T = H == 256 ? 2048L : 512L;
    rough_shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T, peak);
    rough_shape<cells::ParaLSTM, __nv_bfloat16>("bf16", H, T, peak);
  }
  // fp32: the register path (equal-work segments only), whole-warp
  // segments from 16384 lanes.
  for (int H : {1024, 2048, 4096}) {
    rough_shape<cells::ParaGRU, float>("fp32", H, 2048, peak);
    rough_shape<cells::ParaLSTM, float>("fp32", H, 2048, peak);
  }
}

/// Staged launches over every segment count 1-16 worth trying, one and two
/// lanes a thread, lanes 8192-65536, T 2048 / 8192: the data behind the
/// staged segment and pairs rule.
template <class Cell>
void fit_shape(int H, long T, double peak, bool fine) {
  Problem<Cell, __nv_bfloat16> pr(H, T);
  SolverOptions o = timing_options();
  o.mode = Mode::sequential;
  std::printf("%-8s bf16 lanes=%-6ld T=%-6ld", Cell::name, static_cast<long>(index_t(pr.B) * H), T);
  float best = 1e30f;
  std::vector<int> counts{1, 2, 3, 4, 6, 8, 12, 16};
  if (fine) counts = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  for (int V : {1, 2}) {
    if (fine && V == 1) continue;  // pairs only: the rule's launch
    std::printf("  V%d", V);
    for (int C : counts) {
      auto launch = [&] {
        cuda::detail::forward_async_with<Cell, __nv_bfloat16>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr,
                                                              {C, -1, V, 2}, nullptr);
      };
      float ms = 1e30f;
      try {
        launch();
        ms = median_ms(launch);
      } catch (const InvalidArgument&) {
      }
      best = std::min(best, ms);
      std::printf(" C%d %.4f", C, ms < 1e29f ? ms : 0.0f);
    }
  }
  const float tuned = median_ms(
      [&] { cuda::forward_async<Cell, __nv_bfloat16>(pr.uv(), pr.pv(), {}, pr.sv(), {}, o, nullptr, nullptr); });
  std::printf("  | best %.4f (%4.1f%%) tuned %.4f (%4.1f%%)\n", best,
              100.0 * pr.gigabytes() / (best * 1e-3) / peak, tuned, 100.0 * pr.gigabytes() / (tuned * 1e-3) / peak);
  CK(cudaDeviceSynchronize());
}

void fit(bool fine) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  for (int H : {1024, 2048, 4096, 8192})
    for (long T : {2048L, 8192L}) {
      fit_shape<cells::ParaGRU>(H, T, peak, fine);
      fit_shape<cells::ParaLSTM>(H, T, peak, fine);
    }
}

void run(bool quick, bool few) {
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  if (few) {  // below 1024 lanes, where Mode::automatic picks chunked Newton for T >= 1024
    for (int H : {8, 32, 64})
      for (long T : {2048L, 8192L, 65536L}) {
        shape<cells::ParaGRU, float>("fp32", H, T, peak);
        shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T, peak);
      }
    return;
  }
  // Slow memory first: nothing merges (u_z = -30, every round runs) or merging is slow.
  for (float gate : {-30.0f, -2.5f})
    for (int H : {128, 1024}) shape<cells::ParaGRU, float>("fp32", H, 2048, peak, gate);
  if (quick) {
    shape<cells::ParaGRU, float>("fp32", 1024, 2048, peak);
    shape<cells::ParaGRU, __nv_bfloat16>("bf16", 4096, 2048, peak);
    shape<cells::ParaLSTM, float>("fp32", 512, 8192, peak);
    return;
  }
  for (int H : {128, 512, 1024, 2048, 4096, 8192})
    for (long T : {512L, 2048L, 8192L}) {
      shape<cells::ParaGRU, float>("fp32", H, T, peak);
      shape<cells::ParaGRU, __nv_bfloat16>("bf16", H, T, peak);
      shape<cells::ParaLSTM, float>("fp32", H, T, peak);
    }
}
/// The forward grid for the cells and storage types `run` leaves out.
void others() {
  const double peak = copy_gbs();
  std::printf("device-to-device copy: %.0f GB/s\n", peak);
  for (int H : {128, 1024, 4096})
    for (long T : {2048L, 8192L}) {
      shape<cells::ParaGRU, double>("fp64", H, T, peak);
      shape<cells::ParaLSTM, double>("fp64", H, T, peak);
      shape<cells::DiagTanh, float>("fp32", H, T, peak);
      shape<cells::DiagTanh, __nv_bfloat16>("bf16", H, T, peak);
      shape<cells::HeadTanh4, float>("fp32", H, T, peak);
      shape<cells::HeadTanh4, __nv_bfloat16>("bf16", H, T, peak);
      shape<cells::HeadTanh4, double>("fp64", H, T, peak);
    }
}
}  // namespace xb

int main(int argc, char** argv) {
  if (argc > 1 && !std::strcmp(argv[1], "others")) return xb::others(), 0;
  if (argc > 1 && !std::strcmp(argv[1], "profile")) return xb::profile(), 0;
  if (argc > 1 && !std::strcmp(argv[1], "profile-miss")) return xb::profile_miss(), 0;
  if (argc > 1 && !std::strcmp(argv[1], "pairs")) return xb::pairs(false), 0;
  if (argc > 1 && !std::strcmp(argv[1], "pairs-issue")) return xb::pairs(true), 0;
  if (argc > 1 && !std::strcmp(argv[1], "staged")) return xb::staged(), 0;
  if (argc > 1 && !std::strcmp(argv[1], "miss")) return xb::miss(), 0;
  if (argc > 1 && !std::strcmp(argv[1], "fit")) return xb::fit(false), 0;
  if (argc > 1 && !std::strcmp(argv[1], "fit-fine")) return xb::fit(true), 0;
  if (argc > 1 && !std::strcmp(argv[1], "burn")) return xb::burn(), 0;
  if (argc > 1 && !std::strcmp(argv[1], "rough")) return xb::rough(), 0;
  xb::run(argc > 1 && !std::strcmp(argv[1], "quick"), argc > 1 && !std::strcmp(argv[1], "few"));
}

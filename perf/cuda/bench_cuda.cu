// Standalone CUDA benchmark of FlashRNN's fused kernels (issue 3 grid).
//
// For B = 8, H in {256, 1024, 4096}, T in {512, 2048, 8192, 65536}, bf16 and
// fp32, ParaGRU and ParaLSTM: forward and forward+backward of the chunked
// Newton, per-step Newton and sequential kernels. Times are CUDA events
// around each call, after warm-up, median of `reps`, inputs rotated across
// copies so that no repetition reads its input from L2. Before each call the
// stream is held busy for 100 us (hold_kernel, as NVBench's blocking kernel),
// so the start event is not recorded before the call's work is queued: the
// time is the GPU's, without the host's enqueueing (which a training step
// overlaps with earlier GPU work); perf/README.md says how much that was.
// Reports ms, Newton iterations, GB/s of the unavoidable I/O (forward: read
// u, write states; backward: read u, states, grad_states, write grad_u) and
// that rate over the card's copy bandwidth, measured in the same run
// (cudaMemcpy device to device).
//
// Usage: bench_cuda [--quick] [--tune] [--json FILE] [--max-bytes GB] [--chunk L] [--dtype bf16|fp32]
// --tune: forward only, sequential vs chunked Newton, over a finer grid of
// lanes (B = 8, H = 32 .. 4096) and T = 256 .. 65536: the data behind
// Mode::automatic's table (backends/cuda/include/flashrnn/cuda/tuning.hpp).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/cuda/api.hpp"
#include "experiments/common.cuh"  // CK, fill_kernel

// No global using-directive: it would make flashrnn::math::exp ambiguous in
// the CUDA headers nvcc appends to the translation unit.
namespace bench {
using namespace flashrnn;

using xb::fill_kernel;  // the experiments' deterministic fill (same inputs as they use)
using xb::hold_kernel;  // holds the stream while a timed call is queued

template <class S>
void fill(S* x, size_t n, float scale, unsigned seed) {
  fill_kernel<<<1024, 256>>>(x, n, scale, seed);
  CK(cudaGetLastError());
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  template <class F>
  double median_ms(int warm, int reps, F&& f) {
    for (int i = 0; i < warm; ++i) f(i);
    std::vector<float> ts;
    for (int i = 0; i < reps; ++i) {
      hold_kernel<<<1, 1>>>(100000);  // the start event waits until f's work is queued
      CK(cudaEventRecord(a));
      f(i + warm);
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float ms;
      CK(cudaEventElapsedTime(&ms, a, b));
      ts.push_back(ms);
    }
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
  }
};

double copy_bandwidth_gbs() {
  const size_t bytes = size_t(2) << 30;
  void *x, *y;
  CK(cudaMalloc(&x, bytes));
  CK(cudaMalloc(&y, bytes));
  CK(cudaMemset(x, 1, bytes));
  Timer t;
  const double ms = t.median_ms(2, 10, [&](int) { CK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice)); });
  CK(cudaFree(x));
  CK(cudaFree(y));
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write
}

FILE* json = nullptr;
int chunk = 0;  // --chunk: steps per thread of newton_chunked (0 = tuned)
bool tune = false;  // --tune: forward only, sequential vs chunked
bool first_row = true;
double peak = 0;

void row(const char* cell, const char* dtype, int H, long T, const char* what, const char* mode,
         double ms, int iters, double bytes) {
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  std::printf("%-8s %-5s H=%-5d T=%-6ld %-7s %-15s %9.3f ms  iters=%-3d %8.1f GB/s  %5.1f%% of copy\n", cell,
              dtype, H, T, what, mode, ms, iters, gbs, 100.0 * gbs / peak);
  std::fflush(stdout);
  if (json) {
    std::fprintf(json,
                 "%s\n  {\"cell\":\"%s\",\"dtype\":\"%s\",\"B\":8,\"H\":%d,\"T\":%ld,\"pass\":\"%s\","
                 "\"mode\":\"%s\",\"ms\":%.5f,\"iterations\":%d,\"gbs\":%.2f,\"fraction_of_copy\":%.4f}",
                 first_row ? "" : ",", cell, dtype, H, T, what, mode, ms, iters, gbs, gbs / peak);
    first_row = false;
  }
}

template <class Cell, class S>
void bench_shape(const char* dtype, int B, int H, long T, double max_gb, int reps) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  const size_t nu = size_t(B) * T * G * H, ns = size_t(B) * T * K * H;
  const double gb_fwd = (nu + ns) * sizeof(S) / 1e9;
  const double gb_all = (2.0 * nu + 3.0 * ns) * sizeof(S) / 1e9;
  const bool do_bwd = !tune && gb_all <= max_gb;
  if (gb_fwd > max_gb) {
    std::printf("%-8s %-5s H=%-5d T=%-6ld skipped (%.1f GB > --max-bytes)\n", Cell::name, dtype, H, T, gb_fwd);
    return;
  }
  // Rotate over copies of u so that each repetition reads from HBM, not L2.
  const int nrot = static_cast<int>(std::min<size_t>(4, std::max<size_t>(1, (size_t(200) << 20) / (nu * sizeof(S)))));
  std::vector<S*> u(nrot);
  for (int r = 0; r < nrot; ++r) {
    CK(cudaMalloc(&u[r], nu * sizeof(S)));
    fill(u[r], nu, 1.5f, 17 + r);
  }
  S *p, *st, *gs = nullptr, *gu = nullptr, *gp = nullptr;
  CK(cudaMalloc(&p, size_t(P) * H * sizeof(S)));
  fill(p, size_t(P) * H, 0.9f, 5);
  CK(cudaMalloc(&st, ns * sizeof(S)));
  if (do_bwd) {
    CK(cudaMalloc(&gs, ns * sizeof(S)));
    fill(gs, ns, 1.0f, 9);
    CK(cudaMalloc(&gu, nu * sizeof(S)));
    CK(cudaMalloc(&gp, size_t(P) * H * sizeof(S)));
  }
  cuda::DeviceReport* drep;
  CK(cudaMalloc(&drep, sizeof(cuda::DeviceReport)));
  auto uv = [&](int i) { return batch_first<const S>(u[i % nrot], B, T, G, H); };
  const auto pv = param_view<const S>(p, P, H);
  const auto sv = batch_first(st, B, T, K, H);
  Timer tm;
  const std::vector<Mode> modes = tune ? std::vector<Mode>{Mode::newton_chunked, Mode::sequential}
                                       : std::vector<Mode>{Mode::newton_chunked, Mode::newton,
                                                           Mode::sequential, Mode::automatic};
  for (Mode m : modes) {
    // Per-step Newton needs many iterations on long sequences; keep its rows to
    // the smaller shapes so that the whole grid fits one device lease.
    if (m == Mode::newton && static_cast<double>(T) * H > 2048.0 * 1024) continue;
    SolverOptions o;
    o.mode = m;
    o.chunk_length = chunk;
    o.check_finite = false;
    const SolveReport rep = cuda::forward<Cell, S>(uv(0), pv, {}, sv, {}, o);
    if (!rep.converged) std::printf("  (not converged: %d lanes fell back)\n", int(rep.lanes_fell_back));
    const double ms = tm.median_ms(2, reps, [&](int i) {
      cuda::forward_async<Cell, S>(uv(i), pv, {}, sv, {}, o, drep, nullptr);
    });
    const char* mname = m == Mode::automatic ? (rep.mode_used == Mode::sequential ? "auto=seq" : "auto=chunked")
                                              : to_string(m);
    row(Cell::name, dtype, H, T, "fwd", mname, ms, rep.iterations, gb_fwd * 1e9);
    if (do_bwd && m != Mode::automatic) {
      const double ms2 = tm.median_ms(1, reps, [&](int i) {
        cuda::forward_async<Cell, S>(uv(i), pv, {}, sv, {}, o, drep, nullptr);
        cuda::backward<Cell, S>(uv(i), pv, {}, batch_first<const S>(st, B, T, K, H),
                                batch_first<const S>(gs, B, T, K, H), {}, batch_first(gu, B, T, G, H),
                                param_view(gp, P, H), {}, nullptr);
      });
      row(Cell::name, dtype, H, T, "fwd+bwd", mname, ms2, rep.iterations, gb_all * 1e9);
    }
  }
  if (do_bwd) {
    const double ms3 = tm.median_ms(1, reps, [&](int i) {
      cuda::backward<Cell, S>(uv(i), pv, {}, batch_first<const S>(st, B, T, K, H),
                              batch_first<const S>(gs, B, T, K, H), {}, batch_first(gu, B, T, G, H),
                              param_view(gp, P, H), {}, nullptr);
    });
    row(Cell::name, dtype, H, T, "bwd", "adjoint", ms3, 0, (2.0 * nu + 2.0 * ns) * sizeof(S));
  }
  for (S* x : u) CK(cudaFree(x));
  CK(cudaFree(p));
  CK(cudaFree(st));
  if (gs) CK(cudaFree(gs));
  if (gu) CK(cudaFree(gu));
  if (gp) CK(cudaFree(gp));
  CK(cudaFree(drep));
  CK(cudaDeviceSynchronize());
}

int run(int argc, char** argv) {
  bool quick = false, tiny = false;
  const char* only_dtype = nullptr;  // --dtype: rows of one storage type only
  double max_gb = 60;
  const char* json_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--tiny")) tiny = true;
    else if (!std::strcmp(argv[i], "--tune")) tune = true;
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--max-bytes") && i + 1 < argc) max_gb = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--chunk") && i + 1 < argc) chunk = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) only_dtype = argv[++i];
  }
  const bool bf16 = !only_dtype || !std::strcmp(only_dtype, "bf16");
  const bool fp32 = !only_dtype || !std::strcmp(only_dtype, "fp32");
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  peak = tiny ? 1.0 : copy_bandwidth_gbs();
  std::printf("device: %s, %d SMs; measured copy bandwidth %.0f GB/s (read+write of a 2 GiB cudaMemcpy)\n",
              prop.name, prop.multiProcessorCount, peak);
  if (json_path) {
    json = std::fopen(json_path, "w");
    std::fprintf(json, "{\"device\":\"%s\",\"copy_gbs\":%.1f,\"rows\":[", prop.name, peak);
  }
  const int B = 8;
  std::vector<int> Hs = {256, 1024, 4096};
  std::vector<long> Ts = {512, 2048, 8192, 65536};
  if (quick) {
    Hs = {1024};
    Ts = {2048};
  }
  if (tiny) {
    Hs = {256};
    Ts = {512};
  }
  if (tune) {
    Hs = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    Ts = {256, 512, 2048, 8192, 65536};
    max_gb = std::min(max_gb, 20.0);
  }
  for (int H : Hs)
    for (long T : Ts) {
      const int reps = T * H >= 8192L * 4096 ? 3 : 7;
      if (bf16) bench_shape<cells::ParaGRU, __nv_bfloat16>("bf16", B, H, T, max_gb, reps);
      if (fp32) bench_shape<cells::ParaGRU, float>("fp32", B, H, T, max_gb, reps);
      if (bf16) bench_shape<cells::ParaLSTM, __nv_bfloat16>("bf16", B, H, T, max_gb, reps);
      if (fp32) bench_shape<cells::ParaLSTM, float>("fp32", B, H, T, max_gb, reps);
    }
  if (json) {
    std::fprintf(json, "\n]}\n");
    std::fclose(json);
  }
  return 0;
}

}  // namespace bench

int main(int argc, char** argv) { return bench::run(argc, argv); }

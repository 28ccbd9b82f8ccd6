// CPU benchmark: sequential vs per-step Newton vs chunked Newton, forward and
// forward+backward, for ParaGRU and ParaLSTM, over lanes (B*H) x steps (T) and
// 1 vs 2 threads. fp32 storage and compute, PyTorch batch_first layout.
//
// Benchmark names: <pass>/<cell>/<mode>/lanes:<B*H>/T:<T>/threads:<n>
//   pass  fwd     forward (states for all steps)
//         fwdbwd  forward, then backward for grad_u and grad_p given grad_states
// Counters:
//   newton_iters   Newton iterations the solve reported (max over lanes; 0 = sequential)
//   fell_back      lanes recomputed by stepping after non-convergence (should be 0)
//   max_diff       max |states - sequential states| for the same inputs (a sanity check)
//   io_MB          unavoidable I/O of one solve in 10^6 bytes (see bytes_per_second)
//   items_per_second  lane-steps per second (lanes * T / time)
//   bytes_per_second  unavoidable I/O per second: forward reads u once and writes
//                     states once; backward reads u, states, grad_states once and
//                     writes grad_u once. Everything else (Newton iterates,
//                     Jacobians, scan maps) is overhead above this floor.
// Times: real (wall-clock) time is the measure; CPU time is the whole
// process's (all threads), i.e. the work done, which a loaded machine inflates
// far less than wall-clock time.
// Speed-up vs sequential is computed by perf/report.py from the JSON output.
// With --benchmark_repetitions=N a "min" aggregate is reported next to mean and
// median: on a shared machine the fastest repetition is the least disturbed
// one, and report.py prefers it.
//
// Extra flag (before the --benchmark_* flags are parsed):
//   --flashrnn_max_steps=N   keep only shapes with lanes*T <= N (default 4194304)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "flashrnn/flashrnn.hpp"

namespace {

using flashrnn::index_t;
using flashrnn::Mode;
using Real = float;

/// One layer's inputs and outputs, batch_first ([B][T][C*H]).
template <class Cell>
struct Problem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  index_t B, H, T;
  std::vector<Real> u, p, states, reference, grad_states, grad_u, grad_p;

  Problem(index_t lanes, index_t steps) : T(steps) {
    H = lanes < 256 ? lanes : 256;  // units per layer; the rest is batch
    B = lanes / H;
    std::mt19937_64 rng(1234);
    std::normal_distribution<Real> normal(0, 1);
    u.resize(static_cast<size_t>(B * T * G * H));
    // Pre-activations as x W^T + b would give: unit variance around a gate
    // bias that keeps the first gate (update / forget) leaning towards memory.
    for (index_t i = 0; i < B * T; ++i)
      for (int g = 0; g < G; ++g)
        for (index_t j = 0; j < H; ++j)
          u[static_cast<size_t>((i * G + g) * H + j)] = normal(rng) + (g == 0 ? Real(-1) : Real(0));
    // Recurrent weights of moderate size, as after training (|a| < ~1).
    p.resize(static_cast<size_t>(P * H));
    for (auto& x : p) x = Real(0.5) * normal(rng);
    states.assign(static_cast<size_t>(B * T * K * H), Real(0));
    grad_states.resize(states.size());
    for (auto& x : grad_states) x = normal(rng);
    grad_u.assign(u.size(), Real(0));
    grad_p.assign(p.size(), Real(0));
    reference.assign(states.size(), Real(0));
    flashrnn::SolverOptions o;
    o.mode = Mode::sequential;
    flashrnn::forward<Cell, Real>(u_view(), p_view(), {}, flashrnn::batch_first(reference.data(), B, T, K, H),
                                  {}, o);
  }
  flashrnn::View<const Real> u_view() const { return flashrnn::batch_first<const Real>(u.data(), B, T, G, H); }
  flashrnn::View<const Real> p_view() const { return flashrnn::param_view<const Real>(p.data(), P, H); }
  flashrnn::View<Real> states_view() { return flashrnn::batch_first(states.data(), B, T, K, H); }
  flashrnn::View<const Real> grad_states_view() const {
    return flashrnn::batch_first<const Real>(grad_states.data(), B, T, K, H);
  }
  flashrnn::View<Real> grad_u_view() { return flashrnn::batch_first(grad_u.data(), B, T, G, H); }
  flashrnn::View<Real> grad_p_view() { return flashrnn::param_view(grad_p.data(), P, H); }
  double io_bytes(bool with_backward) const {
    const double fwd = double(B * T * H) * (G + K) * sizeof(Real);
    const double bwd = double(B * T * H) * (G + K + K + G) * sizeof(Real);
    return with_backward ? fwd + bwd : fwd;
  }
};

/// The problem of the shape being benchmarked. Benchmarks are registered
/// grouped by shape, so each shape is generated once; only one is alive.
template <class Cell>
Problem<Cell>& problem(index_t lanes, index_t steps) {
  static std::unique_ptr<Problem<Cell>> cached;
  if (!cached || cached->B * cached->H != lanes || cached->T != steps) {
    cached.reset();
    cached = std::make_unique<Problem<Cell>>(lanes, steps);
  }
  return *cached;
}

template <class Cell>
void run_solve(benchmark::State& state, Mode mode, bool with_backward, index_t lanes, index_t T,
               int threads) {
  Problem<Cell>& pr = problem<Cell>(lanes, T);
  flashrnn::SolverOptions opts;
  opts.mode = mode;
  opts.check_finite = false;  // the same input scan for every mode; not what is compared
  const flashrnn::Context ctx{threads};
  flashrnn::SolveReport rep;
  for (auto _ : state) {
    rep = flashrnn::forward<Cell, Real>(pr.u_view(), pr.p_view(), {}, pr.states_view(), {}, opts, ctx);
    if (with_backward)
      flashrnn::backward<Cell, Real>(pr.u_view(), pr.p_view(), {}, pr.states_view(), pr.grad_states_view(), {},
                                     pr.grad_u_view(), pr.grad_p_view(), {}, ctx);
    benchmark::ClobberMemory();
  }
  double diff = 0;
  for (size_t i = 0; i < pr.states.size(); ++i)
    diff = std::max(diff, double(std::fabs(pr.states[i] - pr.reference[i])));
  state.SetItemsProcessed(state.iterations() * lanes * T);
  state.SetBytesProcessed(static_cast<int64_t>(double(state.iterations()) * pr.io_bytes(with_backward)));
  state.counters["newton_iters"] = rep.iterations;
  state.counters["fell_back"] = static_cast<double>(rep.lanes_fell_back);
  state.counters["max_diff"] = diff;
  state.counters["io_MB"] = pr.io_bytes(with_backward) / 1e6;
  if (!rep.converged || rep.lanes_fell_back > 0 || !(diff < 1e-3))
    state.SkipWithError("solve did not converge or disagrees with sequential stepping");
}

template <class Cell>
void register_cell(index_t lanes, index_t T) {
  const Mode modes[] = {Mode::sequential, Mode::newton, Mode::newton_chunked};
  for (bool bwd : {false, true})
    for (Mode m : modes)
      for (int threads : {1, 2}) {
        const std::string name = std::string(bwd ? "fwdbwd/" : "fwd/") + Cell::name + "/" +
                                 flashrnn::to_string(m) + "/lanes:" + std::to_string(lanes) +
                                 "/T:" + std::to_string(T) + "/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
          run_solve<Cell>(st, m, bwd, lanes, T, threads);
        })
            ->Unit(benchmark::kMillisecond)
            ->MeasureProcessCPUTime()
            ->UseRealTime()
            ->ComputeStatistics("min", [](const std::vector<double>& v) {
              return *std::min_element(v.begin(), v.end());
            });
      }
}

}  // namespace

int main(int argc, char** argv) {
  index_t max_steps = index_t(1) << 22;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const char* flag = "--flashrnn_max_steps=";
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0)
      max_steps = std::atoll(argv[i] + std::strlen(flag));
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  // lanes = 1 is below the requested 64..16384 range: it is the one case where
  // lanes < threads, so the solver parallelises along time inside the lane.
  for (index_t lanes : {1, 64, 1024, 16384})
    for (index_t T : {256, 4096, 65536})
      if (lanes * T <= max_steps) {
        register_cell<flashrnn::cells::ParaGRU>(lanes, T);
        register_cell<flashrnn::cells::ParaLSTM>(lanes, T);
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("flashrnn.cpu_runtime", flashrnn::cpu::runtime_name());
  benchmark::AddCustomContext("flashrnn.precision", "fp32");
  benchmark::AddCustomContext("flashrnn.layout", "batch_first");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

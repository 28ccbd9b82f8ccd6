// CPU benchmark: sequential vs per-step Newton vs chunked Newton, forward and
// forward+backward, for ParaGRU and ParaLSTM, over lanes (B*H) x steps (T) and
// 1 vs 2 threads. fp32 storage and compute, PyTorch batch_first layout. Plus
// jacobian/HeadTanh<4>/fp64: one step's full dual Jacobian of the widest cell.
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
#include <memory>
#include <string>
#include <vector>

#include "common/bench_grid.hpp"
#include "common/bench_problem.hpp"
#include "common/bench_report.hpp"
#include "flashrnn/flashrnn.hpp"

namespace {

using flashrnn::index_t;
using flashrnn::Mode;
using Real = float;
template <class Cell>
using Problem = flashrnn_bench::HostProblem<Cell, Real>;

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
    rep = pr.solve_native(opts, with_backward, ctx);
    benchmark::ClobberMemory();
  }
  state.counters["io_MB"] = pr.io_bytes(with_backward) / 1e6;
  flashrnn_bench::report_solve(state, rep, pr.max_diff(pr.states.data()), lanes * T,
                               pr.io_bytes(with_backward));
}

template <class Cell>
void register_cell(index_t lanes, index_t T) {
  const Mode modes[] = {Mode::sequential, Mode::newton, Mode::newton_chunked};
  for (bool bwd : {false, true})
    for (Mode m : modes)
      for (int threads : {1, 2}) {
        const std::string name = flashrnn_bench::shape_name(bwd, Cell::name, m, lanes, T) +
                                 "/threads:" + std::to_string(threads);
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

/// One step's full dual Jacobian (A, Ju, Jp by K + G + P tangents), what the
/// adjoint evaluates once per step and lane: its cost for the widest cell,
/// HeadTanh<4> in fp64 (24 tangents). Name: jacobian/HeadTanh<4>/fp64.
void jacobian_head_tanh4(benchmark::State& state) {
  using Cell = flashrnn::cells::HeadTanh4;
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  double s[K] = {0.1, -0.2, 0.3, -0.4}, u[G] = {0.5, -0.6, 0.7, -0.8}, W[P];
  for (int i = 0; i < P; ++i) W[i] = 0.05 * (i % 7) - 0.15;
  double next[K], A[K * K], Ju[K * G], Jp[K * P];
  int r = 0;
  for (auto _ : state) {
    u[r++ & 3] += 1e-9;  // a new input each step, so nothing is hoisted out of the loop
    flashrnn::cell_step_full_jacobian<Cell>(s, u, W, next, A, Ju, Jp);
    benchmark::DoNotOptimize(Jp);
    benchmark::DoNotOptimize(A);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("jacobian/HeadTanh<4>/fp64", jacobian_head_tanh4);
  const index_t max_steps = flashrnn_bench::take_max_steps_flag(argc, argv);
  flashrnn_bench::for_each_shape(max_steps, [](index_t lanes, index_t T) {
    register_cell<flashrnn::cells::ParaGRU>(lanes, T);
    register_cell<flashrnn::cells::ParaLSTM>(lanes, T);
  });
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("flashrnn.cpu_runtime", flashrnn::cpu::runtime_name());
  benchmark::AddCustomContext("flashrnn.precision", "fp32");
  benchmark::AddCustomContext("flashrnn.layout", "batch_first");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

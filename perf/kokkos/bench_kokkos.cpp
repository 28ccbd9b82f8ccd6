// Kokkos backend vs the native CPU backend on the same threads, same shapes as
// perf/cpu/bench_cpu.cpp: ParaGRU and ParaLSTM, fp32, sequential / per-step
// Newton / chunked Newton, forward and forward+backward, lanes (B*H) x T.
//
// Benchmark names: <pass>/<cell>/<mode>/lanes:<B*H>/T:<T>/<backend>
//   backend  native   flashrnn::forward/backward on host arrays (batch_first)
//            kokkos   flashrnn::kokkos::forward/backward on Kokkos::Views
//                     (B, T, G*H) LayoutRight of DefaultExecutionSpace
// Threads: the Kokkos default execution space's concurrency; the native
// backend is given the same number (Debian's Kokkos is Serial: 1 thread).
// Counters as in bench_cpu: newton_iters, fell_back, max_diff (vs stepping),
// items_per_second (lane-steps/s), bytes_per_second (unavoidable I/O).
// perf/kokkos/ratio.py turns the JSON into the kokkos/native table of
// perf/README.md.
//
// Extra flag (before the --benchmark_* flags are parsed):
//   --flashrnn_max_steps=N   keep only shapes with lanes*T <= N (default 4194304)
#include <benchmark/benchmark.h>

#include <Kokkos_Core.hpp>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/bench_grid.hpp"
#include "common/bench_problem.hpp"
#include "common/bench_report.hpp"
#include "flashrnn/flashrnn.hpp"
#include "flashrnn/kokkos/flashrnn_kokkos.hpp"

namespace {

using flashrnn::index_t;
using flashrnn::Mode;
using Real = float;
using Space = Kokkos::DefaultExecutionSpace;
using Seq = Kokkos::View<Real***, Kokkos::LayoutRight, Space>;   // (B, T, C*H)
using Par = Kokkos::View<Real**, Kokkos::LayoutRight, Space>;    // (P, H)

/// The shared host problem (bench_problem.hpp) and the same data in the
/// application's Views.
template <class Cell>
struct Problem : flashrnn_bench::HostProblem<Cell, Real> {
  using Host = flashrnn_bench::HostProblem<Cell, Real>;
  Seq ku, kstates, kgrad_states, kgrad_u;
  Par kp, kgrad_p;

  Problem(index_t lanes, index_t steps) : Host(lanes, steps) {
    constexpr int K = Host::K, G = Host::G, P = Host::P;
    const index_t B = this->B, T = this->T, H = this->H;
    ku = Seq("u", B, T, G * H);
    kstates = Seq("states", B, T, K * H);
    kgrad_states = Seq("grad_states", B, T, K * H);
    kgrad_u = Seq("grad_u", B, T, G * H);
    kp = Par("p", P, H);
    kgrad_p = Par("grad_p", P, H);
    copy_in(ku, this->u);
    copy_in(kgrad_states, this->grad_states);
    auto hp = Kokkos::create_mirror_view(kp);
    for (int q = 0; q < P; ++q)
      for (index_t j = 0; j < H; ++j) hp(q, j) = this->p[static_cast<size_t>(q * H + j)];
    Kokkos::deep_copy(kp, hp);
  }
  static void copy_in(const Seq& v, const std::vector<Real>& src) {
    auto h = Kokkos::create_mirror_view(v);
    std::memcpy(h.data(), src.data(), src.size() * sizeof(Real));  // LayoutRight == batch_first
    Kokkos::deep_copy(v, h);
  }
  double max_diff_kokkos() const {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), kstates);
    return this->max_diff(h.data());
  }
  double max_diff_native() const { return this->max_diff(this->states.data()); }
};

/// Problems hold Kokkos::Views: they must be gone before Kokkos::finalize.
std::vector<std::function<void()>>& cleanups() {
  static std::vector<std::function<void()>> c;
  return c;
}

template <class Cell>
Problem<Cell>& problem(index_t lanes, index_t steps) {
  static std::unique_ptr<Problem<Cell>> cached;
  if (!cached) cleanups().push_back([] { cached.reset(); });
  if (!cached || cached->B * cached->H != lanes || cached->T != steps) {
    cached.reset();
    cached = std::make_unique<Problem<Cell>>(lanes, steps);
  }
  return *cached;
}

template <class Cell>
void run_solve(benchmark::State& state, Mode mode, bool with_backward, index_t lanes, index_t T, bool kokkos) {
  Problem<Cell>& pr = problem<Cell>(lanes, T);
  flashrnn::SolverOptions opts;
  opts.mode = mode;
  opts.check_finite = false;
  const int threads = Space().concurrency();
  const flashrnn::Context ctx{threads};
  const Kokkos::View<Real***, Space> none3;
  flashrnn::SolveReport rep;
  for (auto _ : state) {
    if (kokkos) {
      rep = flashrnn::kokkos::forward<Cell>(Space(), pr.ku, pr.kp, none3, pr.kstates, none3, opts);
      if (with_backward)
        flashrnn::kokkos::backward<Cell>(Space(), pr.ku, pr.kp, none3, pr.kstates, pr.kgrad_states, none3,
                                         pr.kgrad_u, pr.kgrad_p, none3);
      Space().fence();
    } else {
      rep = pr.solve_native(opts, with_backward, ctx);
    }
    benchmark::ClobberMemory();
  }
  state.counters["threads"] = threads;
  flashrnn_bench::report_solve(state, rep, kokkos ? pr.max_diff_kokkos() : pr.max_diff_native(),
                               lanes * T, pr.io_bytes(with_backward));
}

template <class Cell>
void register_cell(index_t lanes, index_t T) {
  const Mode modes[] = {Mode::sequential, Mode::newton, Mode::newton_chunked};
  for (bool bwd : {false, true})
    for (Mode m : modes)
      for (bool kokkos : {false, true}) {
        const std::string name = flashrnn_bench::shape_name(bwd, Cell::name, m, lanes, T) +
                                 (kokkos ? "/kokkos" : "/native");
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
          run_solve<Cell>(st, m, bwd, lanes, T, kokkos);
        })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::initialize(argc, argv);
  const index_t max_steps = flashrnn_bench::take_max_steps_flag(argc, argv);
  flashrnn_bench::for_each_shape(max_steps, [](index_t lanes, index_t T) {
    register_cell<flashrnn::cells::ParaGRU>(lanes, T);
    register_cell<flashrnn::cells::ParaLSTM>(lanes, T);
  });
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("flashrnn.cpu_runtime", flashrnn::cpu::runtime_name());
  benchmark::AddCustomContext("flashrnn.kokkos_space", Space::name());
  benchmark::AddCustomContext("flashrnn.kokkos_version", std::to_string(KOKKOS_VERSION));
  benchmark::AddCustomContext("flashrnn.precision", "fp32");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (auto& c : cleanups()) c();
  Kokkos::finalize();
  return 0;
}

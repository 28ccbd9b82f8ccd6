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
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "flashrnn/flashrnn.hpp"
#include "flashrnn/kokkos/flashrnn_kokkos.hpp"

namespace {

using flashrnn::index_t;
using flashrnn::Mode;
using Real = float;
using Space = Kokkos::DefaultExecutionSpace;
using Seq = Kokkos::View<Real***, Kokkos::LayoutRight, Space>;   // (B, T, C*H)
using Par = Kokkos::View<Real**, Kokkos::LayoutRight, Space>;    // (P, H)

template <class Cell>
struct Problem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  index_t B, H, T;
  std::vector<Real> u, p, states, reference, grad_states, grad_u, grad_p;
  Seq ku, kstates, kgrad_states, kgrad_u;
  Par kp, kgrad_p;

  Problem(index_t lanes, index_t steps) : T(steps) {
    H = lanes < 256 ? lanes : 256;
    B = lanes / H;
    std::mt19937_64 rng(1234);
    std::normal_distribution<Real> normal(0, 1);
    u.resize(static_cast<size_t>(B * T * G * H));
    for (index_t i = 0; i < B * T; ++i)
      for (int g = 0; g < G; ++g)
        for (index_t j = 0; j < H; ++j)
          u[static_cast<size_t>((i * G + g) * H + j)] = normal(rng) + (g == 0 ? Real(-1) : Real(0));
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
    flashrnn::forward<Cell, Real>(flashrnn::batch_first<const Real>(u.data(), B, T, G, H),
                                  flashrnn::param_view<const Real>(p.data(), P, H), {},
                                  flashrnn::batch_first(reference.data(), B, T, K, H), {}, o);
    // The same data in the application's Views.
    ku = Seq("u", B, T, G * H);
    kstates = Seq("states", B, T, K * H);
    kgrad_states = Seq("grad_states", B, T, K * H);
    kgrad_u = Seq("grad_u", B, T, G * H);
    kp = Par("p", P, H);
    kgrad_p = Par("grad_p", P, H);
    copy_in(ku, u);
    copy_in(kgrad_states, grad_states);
    auto hp = Kokkos::create_mirror_view(kp);
    for (int q = 0; q < P; ++q)
      for (index_t j = 0; j < H; ++j) hp(q, j) = p[static_cast<size_t>(q * H + j)];
    Kokkos::deep_copy(kp, hp);
  }
  static void copy_in(const Seq& v, const std::vector<Real>& src) {
    auto h = Kokkos::create_mirror_view(v);
    std::memcpy(h.data(), src.data(), src.size() * sizeof(Real));  // LayoutRight == batch_first
    Kokkos::deep_copy(v, h);
  }
  double max_diff_kokkos() const {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), kstates);
    double d = 0;
    for (size_t i = 0; i < reference.size(); ++i) d = std::max(d, double(std::fabs(h.data()[i] - reference[i])));
    return d;
  }
  double max_diff_native() const {
    double d = 0;
    for (size_t i = 0; i < reference.size(); ++i) d = std::max(d, double(std::fabs(states[i] - reference[i])));
    return d;
  }
  double io_bytes(bool with_backward) const {
    const double fwd = double(B * T * H) * (G + K) * sizeof(Real);
    const double bwd = double(B * T * H) * (G + K + K + G) * sizeof(Real);
    return with_backward ? fwd + bwd : fwd;
  }
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
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  Problem<Cell>& pr = problem<Cell>(lanes, T);
  const index_t B = pr.B, H = pr.H;
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
      rep = flashrnn::forward<Cell, Real>(flashrnn::batch_first<const Real>(pr.u.data(), B, T, G, H),
                                          flashrnn::param_view<const Real>(pr.p.data(), P, H), {},
                                          flashrnn::batch_first(pr.states.data(), B, T, K, H), {}, opts, ctx);
      if (with_backward)
        flashrnn::backward<Cell, Real>(
            flashrnn::batch_first<const Real>(pr.u.data(), B, T, G, H),
            flashrnn::param_view<const Real>(pr.p.data(), P, H), {},
            flashrnn::batch_first<const Real>(pr.states.data(), B, T, K, H),
            flashrnn::batch_first<const Real>(pr.grad_states.data(), B, T, K, H), {},
            flashrnn::batch_first(pr.grad_u.data(), B, T, G, H), flashrnn::param_view(pr.grad_p.data(), P, H), {},
            ctx);
    }
    benchmark::ClobberMemory();
  }
  const double diff = kokkos ? pr.max_diff_kokkos() : pr.max_diff_native();
  state.SetItemsProcessed(state.iterations() * lanes * T);
  state.SetBytesProcessed(static_cast<int64_t>(double(state.iterations()) * pr.io_bytes(with_backward)));
  state.counters["newton_iters"] = rep.iterations;
  state.counters["fell_back"] = static_cast<double>(rep.lanes_fell_back);
  state.counters["max_diff"] = diff;
  state.counters["threads"] = threads;
  if (!rep.converged || rep.lanes_fell_back > 0 || !(diff < 1e-3))
    state.SkipWithError("solve did not converge or disagrees with sequential stepping");
}

template <class Cell>
void register_cell(index_t lanes, index_t T) {
  const Mode modes[] = {Mode::sequential, Mode::newton, Mode::newton_chunked};
  for (bool bwd : {false, true})
    for (Mode m : modes)
      for (bool kokkos : {false, true}) {
        const std::string name = std::string(bwd ? "fwdbwd/" : "fwd/") + Cell::name + "/" +
                                 flashrnn::to_string(m) + "/lanes:" + std::to_string(lanes) +
                                 "/T:" + std::to_string(T) + (kokkos ? "/kokkos" : "/native");
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
  for (index_t lanes : {1, 64, 1024, 16384})
    for (index_t T : {256, 4096, 65536})
      if (lanes * T <= max_steps) {
        register_cell<flashrnn::cells::ParaGRU>(lanes, T);
        register_cell<flashrnn::cells::ParaLSTM>(lanes, T);
      }
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

// The main job (first version): solve one ParaGRU layer on a generated sequence
// with every solver mode, and report agreement, Newton iterations and timings.
//
//   paragru_modes [--batch B] [--units H] [--steps T] [--threads N]
//
// Defaults: B = 4, H = 256, T = 16384 (1024 lanes of 16384 steps), all threads.
// Agreement is max |states - sequential fp64 states|; the fp32 sequential row
// shows what plain fp32 stepping itself differs by, the scale against which the
// fp32 Newton rows should be read.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "flashrnn/flashrnn.hpp"

namespace {

using flashrnn::index_t;
using flashrnn::Mode;
using Cell = flashrnn::cells::ParaGRU;
constexpr index_t K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;

struct Shape {
  index_t B = 4, H = 256, T = 16384;
  int threads = 0;
};

/// A layer's pre-activations and recurrent weights, as a trained model might
/// have them: u ~ N(bias, 1) with the update gate biased towards memory
/// (z ≈ 0.3 on average, so the state carries information over many steps) and
/// small diagonal recurrent weights a ~ N(0, 0.5²).
struct Layer {
  std::vector<double> u, p;
  Layer(const Shape& s) : u(static_cast<size_t>(s.B * s.T * G * s.H)), p(static_cast<size_t>(P * s.H)) {
    std::mt19937_64 rng(2026);
    std::normal_distribution<double> normal(0, 1);
    for (index_t i = 0; i < s.B * s.T; ++i)
      for (index_t g = 0; g < G; ++g)
        for (index_t j = 0; j < s.H; ++j)
          u[static_cast<size_t>((i * G + g) * s.H + j)] = normal(rng) + (g == 0 ? -1.0 : 0.0);
    for (auto& x : p) x = 0.5 * normal(rng);
  }
};

template <class S>
std::vector<S> cast(const std::vector<double>& x) {
  return std::vector<S>(x.begin(), x.end());
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
  return d;
}

/// "[i/n] what ..." before a long step, flushed so that it shows while it runs.
struct Progress {
  int done = 0, total;
  explicit Progress(int n) : total(n) {}
  void begin(const std::string& what) {
    std::printf("[%d/%d] %-34s ", ++done, total, (what + " ...").c_str());
    std::fflush(stdout);
  }
  void end(double ms, const std::string& note = "") {
    std::printf("%9.1f ms%s\n", ms, note.c_str());
    std::fflush(stdout);
  }
};

struct Row {
  std::string mode, precision;
  double ms, diff;
  int iterations;
  bool converged;
  index_t fell_back;
};

/// Forward with one mode; returns the row and leaves the states in `states`.
template <class S>
Row run_forward(const Shape& s, const std::vector<S>& u, const std::vector<S>& p, Mode mode,
                std::vector<S>& states, const std::vector<double>& reference, Progress& progress) {
  const std::string precision = sizeof(S) == 8 ? "fp64" : "fp32";
  progress.begin(std::string(flashrnn::to_string(mode)) + " " + precision);
  flashrnn::SolverOptions opts;
  opts.mode = mode;
  states.assign(static_cast<size_t>(s.B * s.T * K * s.H), S(0));
  const auto t0 = std::chrono::steady_clock::now();
  const flashrnn::SolveReport rep = flashrnn::forward<Cell, S>(
      flashrnn::batch_first<const S>(u.data(), s.B, s.T, G, s.H),
      flashrnn::param_view<const S>(p.data(), P, s.H), {},
      flashrnn::batch_first(states.data(), s.B, s.T, K, s.H), {}, opts,
      flashrnn::Context{s.threads});
  const double ms = elapsed_ms(t0);
  const double diff = reference.empty() ? 0.0 : max_abs_diff(states, reference);
  std::string note;
  if (mode == Mode::automatic) note = std::string("  (chose ") + flashrnn::to_string(rep.mode_used) + ")";
  progress.end(ms, note);
  return {flashrnn::to_string(mode), precision, ms, diff, rep.iterations, rep.converged, rep.lanes_fell_back};
}

/// Backward for L = sum_t,b,j w(t,b,j) h(t,b,j) with fixed random weights w;
/// returns the time and leaves grad_u, grad_p.
template <class S>
double run_backward(const Shape& s, const std::vector<S>& u, const std::vector<S>& p,
                    const std::vector<S>& states, const std::vector<S>& grad_states,
                    std::vector<S>& grad_u, std::vector<S>& grad_p) {
  grad_u.assign(u.size(), S(0));
  grad_p.assign(p.size(), S(0));
  const auto t0 = std::chrono::steady_clock::now();
  flashrnn::backward<Cell, S>(flashrnn::batch_first<const S>(u.data(), s.B, s.T, G, s.H),
                              flashrnn::param_view<const S>(p.data(), P, s.H), {},
                              flashrnn::batch_first<const S>(states.data(), s.B, s.T, K, s.H),
                              flashrnn::batch_first<const S>(grad_states.data(), s.B, s.T, K, s.H), {},
                              flashrnn::batch_first(grad_u.data(), s.B, s.T, G, s.H),
                              flashrnn::param_view(grad_p.data(), P, s.H), {},
                              flashrnn::Context{s.threads});
  return elapsed_ms(t0);
}

template <class A, class B>
double max_rel_diff(const std::vector<A>& a, const std::vector<B>& ref) {
  double scale = 0;
  for (const auto& x : ref) scale = std::max(scale, std::fabs(double(x)));
  return max_abs_diff(a, ref) / (scale > 0 ? scale : 1.0);
}

Shape parse(int argc, char** argv) {
  Shape s;
  for (int i = 1; i < argc; ++i) {
    auto value = [&]() -> long long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", argv[i]);
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (!std::strcmp(argv[i], "--batch")) s.B = value();
    else if (!std::strcmp(argv[i], "--units")) s.H = value();
    else if (!std::strcmp(argv[i], "--steps")) s.T = value();
    else if (!std::strcmp(argv[i], "--threads")) s.threads = static_cast<int>(value());
    else {
      std::fprintf(stderr, "usage: %s [--batch B] [--units H] [--steps T] [--threads N]\n", argv[0]);
      std::exit(2);
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const Shape s = parse(argc, argv);
  const int threads = s.threads > 0 ? s.threads : flashrnn::cpu::default_threads();
  std::printf("FlashRNN main job: one ParaGRU layer, every solver mode\n");
  std::printf("  batch B = %lld, units H = %lld, steps T = %lld  ->  %lld lanes x %lld steps\n",
              (long long)s.B, (long long)s.H, (long long)s.T, (long long)(s.B * s.H), (long long)s.T);
  std::printf("  CPU runtime %s, %d thread(s); layout batch_first; initial state 0\n\n",
              flashrnn::cpu::runtime_name(), threads);
  std::fflush(stdout);

  try {
    Progress progress(9);
    progress.begin("generating inputs");
    auto t0 = std::chrono::steady_clock::now();
    const Layer layer(s);
    const std::vector<float> u32 = cast<float>(layer.u), p32 = cast<float>(layer.p);
    progress.end(elapsed_ms(t0));

    std::vector<double> reference, states64;
    std::vector<float> states32;
    std::vector<Row> rows;
    rows.push_back(run_forward(s, layer.u, layer.p, Mode::sequential, reference, {}, progress));
    for (Mode m : {Mode::sequential, Mode::newton, Mode::newton_chunked, Mode::automatic})
      rows.push_back(run_forward(s, u32, p32, m, states32, reference, progress));
    rows.push_back(run_forward(s, layer.u, layer.p, Mode::newton_chunked, states64, reference, progress));

    // Forward + backward: time the fp32 training step (automatic forward, then
    // the adjoint); check its gradients against the fp64 adjoint.
    std::mt19937_64 rng(7);
    std::normal_distribution<double> normal(0, 1);
    std::vector<double> w(reference.size());
    for (auto& x : w) x = normal(rng);
    const std::vector<float> w32 = cast<float>(w);
    std::vector<double> gu64, gp64;
    std::vector<float> gu32, gp32;

    progress.begin("forward+backward fp32");
    t0 = std::chrono::steady_clock::now();
    flashrnn::SolverOptions opts;
    const flashrnn::SolveReport rep = flashrnn::forward<Cell, float>(
        flashrnn::batch_first<const float>(u32.data(), s.B, s.T, G, s.H),
        flashrnn::param_view<const float>(p32.data(), P, s.H), {},
        flashrnn::batch_first(states32.data(), s.B, s.T, K, s.H), {}, opts, flashrnn::Context{s.threads});
    const double fwd_ms = elapsed_ms(t0);
    const double bwd_ms = run_backward(s, u32, p32, states32, w32, gu32, gp32);
    progress.end(fwd_ms + bwd_ms, "  (forward " + std::to_string(int(fwd_ms)) + " ms, " +
                                      flashrnn::to_string(rep.mode_used) + ")");

    progress.begin("backward fp64 (reference)");
    const double bwd64_ms = run_backward(s, layer.u, layer.p, reference, w, gu64, gp64);
    progress.end(bwd64_ms);

    std::printf("\nForward, T = %lld (agreement: max |states - sequential fp64|)\n", (long long)s.T);
    std::printf("  %-16s %-5s %10s %10s %11s %10s %9s\n", "mode", "prec", "ms", "vs seq32", "max|diff|",
                "iterations", "converged");
    const double seq32_ms = rows[1].ms;
    bool ok = true;
    for (const Row& r : rows) {
      std::printf("  %-16s %-5s %10.1f %9.2fx %11.2e %10d %9s%s\n", r.mode.c_str(), r.precision.c_str(), r.ms,
                  seq32_ms / r.ms, r.diff, r.iterations, r.converged ? "yes" : "no",
                  r.fell_back ? (" (" + std::to_string(r.fell_back) + " lanes fell back)").c_str() : "");
      ok = ok && r.converged;
    }
    // fp32 modes should agree with fp64 about as well as fp32 stepping does.
    const double fp32_floor = std::max(rows[1].diff, 1e-6);
    for (size_t i = 2; i <= 4; ++i) ok = ok && rows[i].diff <= 20 * fp32_floor;
    ok = ok && rows[5].diff <= 1e-9;

    const double gu_rel = max_rel_diff(gu32, gu64), gp_rel = max_rel_diff(gp32, gp64);
    std::printf("\nForward+backward fp32 (L = sum w * h, w random): %.1f ms = forward %.1f + backward %.1f\n",
                fwd_ms + bwd_ms, fwd_ms, bwd_ms);
    std::printf("  gradients vs fp64 adjoint: grad_u max rel diff %.2e, grad_p max rel diff %.2e\n", gu_rel,
                gp_rel);
    ok = ok && gu_rel < 1e-3 && gp_rel < 1e-3;

    std::printf("\nOn a CPU with few cores, Newton does several passes over the sequence where\n"
                "stepping does one, and %lld lanes already keep %d thread(s) busy: expect Newton to\n"
                "be slower here and `automatic` to choose sequential. Newton pays off with many\n"
                "cores per lane or on GPUs (see perf/README.md).\n",
                (long long)(s.B * s.H), threads);
    std::printf("\nresult: %s\n", ok ? "all modes agree" : "DISAGREEMENT (see table)");
    return ok ? 0 : 1;
  } catch (const flashrnn::Error& e) {
    std::fprintf(stderr, "flashrnn error: %s\n", e.what());
    return 1;
  }
}

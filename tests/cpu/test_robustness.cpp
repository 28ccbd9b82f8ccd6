// Numerical robustness of the forward solve (issue 6): recurrent weights from
// contracting to strongly expanding, saturated gates, denormals, inf/NaN, and
// damped Newton. The property under test is the library's promise: whatever
// the input, a forward call either equals sequential stepping (within a
// tolerance tied to the precision and to the problem's own sensitivity) or
// raises an error, and the report says what happened. Never NaN or garbage
// where stepping gives numbers.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "test_config.hpp"

namespace {

using namespace flashrnn;

template <class S>
struct Problem {
  index_t B, T, H;
  std::vector<S> u, p, s0;
};

/// u ~ u_scale * U(-1, 1), recurrent parameters p ~ scale * U(-1, 1), s0 ~ U(-0.5, 0.5).
template <class Cell, class S>
Problem<S> make_problem(index_t B, index_t T, index_t H, double scale, unsigned seed,
                        double u_scale = 1.0) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  Problem<S> pr{B, T, H, {}, {}, {}};
  pr.u.resize(static_cast<size_t>(B * T * G * H));
  pr.p.resize(static_cast<size_t>(P * H));
  pr.s0.resize(static_cast<size_t>(B * K * H));
  for (auto& x : pr.u) x = static_cast<S>(u_scale * d(rng));
  for (auto& x : pr.p) x = static_cast<S>(scale * d(rng));
  for (auto& x : pr.s0) x = static_cast<S>(0.5 * d(rng));
  return pr;
}

template <class Cell, class S>
SolveReport solve(const Problem<S>& pr, const SolverOptions& o, std::vector<S>& out) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  out.assign(static_cast<size_t>(pr.B * pr.T * K * pr.H), S(-7));
  return forward<Cell, S>(batch_first<const S>(pr.u.data(), pr.B, pr.T, G, pr.H),
                          param_view<const S>(pr.p.data(), P, pr.H),
                          state_view<const S>(pr.s0.data(), pr.B, K, pr.H),
                          batch_first(out.data(), pr.B, pr.T, K, pr.H), {}, o,
                          flashrnn_test::context());
}

template <class Cell, class S>
std::vector<S> sequential(const Problem<S>& pr) {
  SolverOptions o;
  o.mode = Mode::sequential;
  o.check_finite = false;  // the reference steps through whatever it is given
  std::vector<S> out;
  const SolveReport rep = solve<Cell>(pr, o, out);
  REQUIRE(rep.mode_used == Mode::sequential);
  REQUIRE(rep.converged);
  return out;
}

/// Sensitivity of stepping to a per-step perturbation: max over lanes and t of
/// kappa_t = 1 + ||A_t||_inf kappa_{t-1}, A_t = df/ds along the sequential
/// trajectory. Stepping itself is only accurate to about eps * kappa.
template <class Cell, class S>
double amplification(const Problem<S>& pr, const std::vector<S>& seq) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  double worst = 1.0;
  for (index_t b = 0; b < pr.B; ++b)
    for (index_t j = 0; j < pr.H; ++j) {
      double kappa = 1.0;
      double p[P], prev[K], u[G], f[K], A[K * K];
      for (int q = 0; q < P; ++q) p[q] = static_cast<double>(pr.p[static_cast<size_t>(q * pr.H + j)]);
      for (int k = 0; k < K; ++k)
        prev[k] = static_cast<double>(pr.s0[static_cast<size_t>((b * K + k) * pr.H + j)]);
      for (index_t t = 0; t < pr.T; ++t) {
        for (int g = 0; g < G; ++g)
          u[g] = static_cast<double>(pr.u[static_cast<size_t>(((b * pr.T + t) * G + g) * pr.H + j)]);
        cell_step_state_jacobian<Cell>(prev, u, p, f, A);
        double norm = 0.0;
        for (int i = 0; i < K; ++i) {
          double row = 0.0;
          for (int k = 0; k < K; ++k) row += std::fabs(A[i * K + k]);
          norm = std::max(norm, row);
        }
        kappa = std::min(1.0 + norm * kappa, 1e300);
        worst = std::max(worst, kappa);
        for (int k = 0; k < K; ++k)
          prev[k] = static_cast<double>(seq[static_cast<size_t>(((b * pr.T + t) * K + k) * pr.H + j)]);
      }
    }
  return worst;
}

/// max |a - b|; NaN in both places counts as equal, NaN in one as infinity.
template <class S>
double max_diff(const std::vector<S>& a, const std::vector<S>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool na = std::isnan(a[i]), nb = std::isnan(b[i]);
    if (na || nb) {
      if (na != nb) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (a[i] == b[i]) continue;  // equal infinities
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return m;
}

template <class S>
bool all_finite(const std::vector<S>& v) {
  return std::all_of(v.begin(), v.end(), [](S x) { return std::isfinite(x); });
}

/// The precision-tied tolerance: a small multiple of what stepping's own
/// rounding can amount to on this problem, never below 64 eps.
template <class S>
double tolerance_for(double kappa) {
  return 64.0 * std::numeric_limits<S>::epsilon() * std::max(1.0, kappa);
}

/// Report fields that must hold for every solve.
inline void check_report_invariants(const SolveReport& rep, const SolverOptions& o, index_t lanes) {
  CHECK(rep.lanes == lanes);
  CHECK(rep.mode_used != Mode::automatic);
  CHECK(rep.lanes_fell_back >= 0);
  CHECK(rep.lanes_fell_back <= rep.lanes);
  CHECK(rep.iterations >= 0);
  CHECK(rep.iterations <= o.max_iters);
  CHECK_FALSE(rep.final_residual < 0.0);
  if (rep.mode_used == Mode::sequential) {
    CHECK(rep.iterations == 0);
    CHECK(rep.converged);
  }
  if (o.on_nonconvergence != OnNonConvergence::fallback_sequential) CHECK(rep.lanes_fell_back == 0);
  if (o.on_nonconvergence == OnNonConvergence::fallback_sequential)
    CHECK(rep.converged == (rep.lanes_fell_back == 0));
  if (rep.nonfinite_detected) CHECK_FALSE(rep.converged);
}

const char* policy_name(OnNonConvergence p) {
  switch (p) {
    case OnNonConvergence::fallback_sequential: return "fallback_sequential";
    case OnNonConvergence::throw_error: return "throw_error";
    case OnNonConvergence::keep_last_iterate: return "keep_last_iterate";
  }
  return "?";
}

struct SweepCounts {
  int solves = 0, converged = 0, fell_back = 0, thrown = 0, not_converged_kept = 0;
};

/// One (cell, precision, shape) over the whole scale sweep, both Newton forms,
/// every policy and damping 0.5.
template <class Cell, class S>
void sweep(index_t B, index_t T, index_t H, unsigned seed, SweepCounts& counts) {
  const int n_scales = 12;
  for (int i = 0; i < n_scales; ++i) {
    const double scale = 0.1 * std::pow(100.0, static_cast<double>(i) / (n_scales - 1));
    const auto pr = make_problem<Cell, S>(B, T, H, scale, seed + static_cast<unsigned>(i));
    const auto ref = sequential<Cell>(pr);
    REQUIRE(all_finite(ref));
    const double kappa = amplification<Cell>(pr, ref);
    const double tol = tolerance_for<S>(kappa);
    for (Mode mode : {Mode::newton, Mode::newton_chunked})
      for (index_t chunk : {index_t(0), index_t(8)}) {
        if (mode == Mode::newton && chunk != 0) continue;
        for (double damping : {1.0, 0.5})
          for (OnNonConvergence policy :
               {OnNonConvergence::fallback_sequential, OnNonConvergence::throw_error,
                OnNonConvergence::keep_last_iterate}) {
            SolverOptions o;
            o.mode = mode;
            o.chunk_length = chunk;
            o.damping = damping;
            o.max_iters = damping < 1.0 ? 100 : 50;
            o.on_nonconvergence = policy;
            INFO(Cell::name << (sizeof(S) == 8 ? " double" : " float") << " B=" << B << " T=" << T
                            << " H=" << H << " scale=" << scale << " mode=" << to_string(mode)
                            << " chunk=" << chunk << " damping=" << damping << " policy="
                            << policy_name(policy) << " kappa=" << kappa << " tol=" << tol);
            std::vector<S> out;
            ++counts.solves;
            SolveReport rep;
            try {
              rep = solve<Cell>(pr, o, out);
            } catch (const ConvergenceError& e) {
              CHECK(policy == OnNonConvergence::throw_error);
              CHECK(std::string(e.what()).find("did not converge") != std::string::npos);
              ++counts.thrown;
              continue;
            }
            check_report_invariants(rep, o, B * H);
            CHECK(rep.mode_used == mode);
            if (rep.converged) ++counts.converged;
            if (rep.lanes_fell_back > 0) ++counts.fell_back;
            if (policy == OnNonConvergence::keep_last_iterate && !rep.converged) {
              ++counts.not_converged_kept;  // documented: the last iterate, flagged
              continue;
            }
            // Converged, or the non-converged lanes were recomputed by stepping.
            CHECK(all_finite(out));
            CHECK(max_diff(out, ref) <= tol);
          }
      }
  }
}

template <class Cell>
void sweep_cell(unsigned seed) {
  SweepCounts c;
  // Many lanes: one lane per task. One long lane: time-parallel inside the
  // lane whenever the suite runs with more than one thread.
  // (T = 800 > 512 steps: BlockedExec splits the lane into several blocks.)
  sweep<Cell, double>(2, 160, 8, seed, c);
  sweep<Cell, float>(2, 160, 8, seed + 100, c);
  sweep<Cell, double>(1, 800, 1, seed + 200, c);
  sweep<Cell, float>(1, 800, 1, seed + 300, c);
  // The sweep must actually reach the regimes it is about.
  CHECK(c.converged > 0);
  CHECK(c.fell_back > 0);
  CHECK(c.thrown > 0);
  WARN(Cell::name << ": " << c.solves << " solves, " << c.converged << " converged, " << c.fell_back
                  << " with lanes recomputed by stepping, " << c.thrown << " ConvergenceError, "
                  << c.not_converged_kept << " kept non-converged iterates (flagged)");
}

template <class Cell, class S>
void check_matches_sequential(const Problem<S>& pr, Mode mode, double damping = 1.0) {
  const auto ref = sequential<Cell>(pr);
  SolverOptions o;
  o.mode = mode;
  o.damping = damping;
  o.max_iters = 200;
  std::vector<S> out;
  const SolveReport rep = solve<Cell>(pr, o, out);
  check_report_invariants(rep, o, pr.B * pr.H);
  const double tol = tolerance_for<S>(amplification<Cell>(pr, ref));
  INFO(Cell::name << " mode=" << to_string(mode) << " damping=" << damping << " converged="
                  << rep.converged << " iterations=" << rep.iterations
                  << " fell_back=" << rep.lanes_fell_back << " tol=" << tol);
  CHECK(all_finite(out));
  CHECK(max_diff(out, ref) <= tol);
}

}  // namespace

TEST_CASE("robustness: recurrent-weight scale sweep 0.1..10, ParaGRU", "[robustness][sweep]") {
  sweep_cell<cells::ParaGRU>(11);
}
TEST_CASE("robustness: recurrent-weight scale sweep 0.1..10, ParaLSTM", "[robustness][sweep]") {
  sweep_cell<cells::ParaLSTM>(22);
}
TEST_CASE("robustness: recurrent-weight scale sweep 0.1..10, DiagTanh", "[robustness][sweep]") {
  sweep_cell<cells::DiagTanh>(33);
}

TEST_CASE("robustness: damped Newton (0.5) converges to the sequential answer", "[robustness][damping]") {
  // Scales where plain per-step Newton fails to converge in 50 iterations on
  // some lanes; the damped iteration must converge by itself, without the
  // fallback, and land on stepping to rounding (not merely to the tolerance).
  for (Mode mode : {Mode::newton, Mode::newton_chunked}) {
    SolverOptions o;
    o.mode = mode;
    o.damping = 0.5;
    o.max_iters = 200;
    o.on_nonconvergence = OnNonConvergence::throw_error;
    const auto pr = make_problem<cells::ParaLSTM, double>(2, 300, 8, 4.3, 5);
    const auto ref = sequential<cells::ParaLSTM>(pr);
    std::vector<double> out;
    const SolveReport rep = solve<cells::ParaLSTM>(pr, o, out);
    INFO("mode=" << to_string(mode) << " iterations=" << rep.iterations);
    CHECK(rep.converged);
    CHECK(rep.lanes_fell_back == 0);
    CHECK(rep.iterations > 3);  // damped: linear phase, more iterations than plain Newton
    CHECK(max_diff(out, ref) <= 1e-13);

    const auto prf = make_problem<cells::ParaGRU, float>(1, 1200, 1, 6.6, 6);
    const auto reff = sequential<cells::ParaGRU>(prf);
    std::vector<float> outf;
    const SolveReport repf = solve<cells::ParaGRU>(prf, o, outf);
    CHECK(repf.converged);
    CHECK(max_diff(outf, reff) <= tolerance_for<float>(amplification<cells::ParaGRU>(prf, reff)));
  }
}

TEST_CASE("robustness: saturated gates, |pre-activations| ~ 1e4", "[robustness][saturation]") {
  for (Mode mode : {Mode::newton, Mode::newton_chunked}) {
    // Pre-activations of 1e4 from the inputs...
    check_matches_sequential<cells::ParaGRU>(make_problem<cells::ParaGRU, double>(2, 100, 4, 1.0, 7, 1e4), mode);
    check_matches_sequential<cells::ParaLSTM>(make_problem<cells::ParaLSTM, double>(2, 100, 4, 1.0, 8, 1e4), mode);
    check_matches_sequential<cells::DiagTanh>(make_problem<cells::DiagTanh, double>(2, 100, 4, 1.0, 9, 1e4), mode);
    check_matches_sequential<cells::ParaGRU>(make_problem<cells::ParaGRU, float>(2, 100, 4, 1.0, 7, 1e4), mode);
    check_matches_sequential<cells::ParaLSTM>(make_problem<cells::ParaLSTM, float>(2, 100, 4, 1.0, 8, 1e4), mode);
    // ...and from recurrent weights of 1e4 (exp overflows to inf inside sigmoid).
    check_matches_sequential<cells::ParaGRU>(make_problem<cells::ParaGRU, double>(2, 100, 4, 1e4, 10), mode);
    check_matches_sequential<cells::ParaLSTM>(make_problem<cells::ParaLSTM, double>(2, 100, 4, 1e4, 11), mode);
    check_matches_sequential<cells::DiagTanh>(make_problem<cells::DiagTanh, float>(2, 100, 4, 1e4, 12), mode);
  }
}

TEST_CASE("robustness: denormal inputs, parameters and initial states", "[robustness][denormal]") {
  auto denormalise = [](auto& pr) {
    using S = typename std::decay_t<decltype(pr.u)>::value_type;
    const S tiny = std::numeric_limits<S>::denorm_min();
    for (size_t i = 0; i < pr.u.size(); ++i) pr.u[i] = static_cast<S>(i % 7) * tiny * S(3);
    for (size_t i = 0; i < pr.p.size(); ++i) pr.p[i] = static_cast<S>(i % 3) * tiny;
    for (size_t i = 0; i < pr.s0.size(); ++i) pr.s0[i] = tiny;
    pr.u[0] = std::numeric_limits<S>::min() / S(2);  // a larger subnormal
  };
  for (Mode mode : {Mode::newton, Mode::newton_chunked}) {
    auto a = make_problem<cells::ParaGRU, double>(2, 64, 4, 1.0, 13);
    denormalise(a);
    check_matches_sequential<cells::ParaGRU>(a, mode);
    auto b = make_problem<cells::ParaLSTM, float>(2, 64, 4, 1.0, 14);
    denormalise(b);
    check_matches_sequential<cells::ParaLSTM>(b, mode);
    auto c = make_problem<cells::DiagTanh, float>(2, 64, 4, 1.0, 15);
    denormalise(c);
    check_matches_sequential<cells::DiagTanh>(c, mode);
    // Denormal damping is a legal (if useless) option: no NaN, falls back.
    auto d = make_problem<cells::ParaGRU, double>(1, 32, 2, 1.0, 16);
    check_matches_sequential<cells::ParaGRU>(d, mode, std::numeric_limits<double>::denorm_min());
  }
}

namespace {

template <class Cell, class S>
void poison(Problem<S>& pr, const char* arg, S value) {
  const std::string a = arg;
  if (a == "u") pr.u[pr.u.size() / 2 + 1] = value;
  if (a == "p") pr.p[pr.p.size() - 1] = value;
  if (a == "s0") pr.s0[0] = value;
}

}  // namespace

TEST_CASE("robustness: check_finite rejects inf/NaN and names the argument", "[robustness][nonfinite]") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (const char* arg : {"u", "p", "s0"})
    for (double bad : {nan, inf, -inf})
      for (Mode mode : {Mode::sequential, Mode::newton, Mode::newton_chunked, Mode::automatic}) {
        auto pr = make_problem<cells::ParaLSTM, double>(2, 16, 3, 1.0, 17);
        poison<cells::ParaLSTM>(pr, arg, bad);
        SolverOptions o;
        o.mode = mode;
        std::vector<double> out;
        INFO("argument " << arg << " value " << bad << " mode " << to_string(mode));
        bool thrown = false;
        try {
          solve<cells::ParaLSTM>(pr, o, out);
        } catch (const InvalidArgument& e) {
          thrown = true;
          const std::string msg = e.what();
          CHECK(msg.find(std::string("argument '") + arg + "'") != std::string::npos);
          CHECK(msg.find("finite") != std::string::npos);
        }
        CHECK(thrown);
      }
  // float storage too
  auto pf = make_problem<cells::ParaGRU, float>(1, 8, 2, 1.0, 18);
  pf.u[3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> outf;
  CHECK_THROWS_AS(solve<cells::ParaGRU>(pf, SolverOptions{}, outf), InvalidArgument);
}

TEST_CASE("robustness: check_finite off, inf/NaN give what stepping gives", "[robustness][nonfinite]") {
  // With check_finite off the contract is: the output equals sequential
  // stepping on the same data (NaN exactly where stepping gives NaN, numbers
  // within tolerance elsewhere). nonfinite_detected reports that a Newton
  // iterate went non-finite; the lanes concerned are then recomputed by
  // stepping (fallback), kept and flagged (keep_last_iterate) or reported by
  // ConvergenceError (throw_error).
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  int cases = 0;
  auto run = [&](auto cell_tag, const char* arg, double bad, Mode mode) {
    using Cell = decltype(cell_tag);
    auto pr = make_problem<Cell, double>(2, 40, 3, 1.0, 19);
    poison<Cell>(pr, arg, bad);
    const auto ref = sequential<Cell>(pr);
    const bool ref_has_nan = !all_finite(ref);
    INFO(Cell::name << " argument " << arg << " value " << bad << " mode " << to_string(mode)
                    << " stepping gives NaN: " << ref_has_nan);
    for (OnNonConvergence policy : {OnNonConvergence::fallback_sequential, OnNonConvergence::throw_error,
                                    OnNonConvergence::keep_last_iterate}) {
      ++cases;
      SolverOptions o;
      o.mode = mode;
      o.check_finite = false;
      o.chunk_length = 8;
      o.on_nonconvergence = policy;
      std::vector<double> out;
      SolveReport rep;
      try {
        rep = solve<Cell>(pr, o, out);
      } catch (const ConvergenceError& e) {
        CHECK(policy == OnNonConvergence::throw_error);
        CHECK(std::string(e.what()).find("non-finite") != std::string::npos);
        continue;
      }
      check_report_invariants(rep, o, pr.B * pr.H);
      if (policy == OnNonConvergence::keep_last_iterate && !rep.converged) continue;
      CHECK(max_diff(out, ref) <= 1e-12);
      // The per-step form carries every step, so a NaN trajectory is seen.
      if (ref_has_nan && mode == Mode::newton) CHECK(rep.nonfinite_detected);
      if (rep.nonfinite_detected && policy == OnNonConvergence::fallback_sequential)
        CHECK(rep.lanes_fell_back > 0);
    }
  };
  for (Mode mode : {Mode::newton, Mode::newton_chunked})
    for (const char* arg : {"u", "p", "s0"})
      for (double bad : {nan, inf, -inf}) {
        run(cells::ParaGRU{}, arg, bad, mode);
        run(cells::ParaLSTM{}, arg, bad, mode);
        run(cells::DiagTanh{}, arg, bad, mode);
      }
  WARN("check_finite off: " << cases << " inf/NaN cases");
}

TEST_CASE("robustness: NaN confined to the last chunk", "[robustness][nonfinite]") {
  // The chunked form never iterates on the last chunk's end state, so a NaN
  // there is not a Newton iterate: not flagged, yet the output still equals
  // stepping (the final exact pass produces the NaN).
  auto pr = make_problem<cells::ParaGRU, double>(1, 64, 1, 1.0, 20);
  pr.u[static_cast<size_t>(62 * 3)] = std::numeric_limits<double>::quiet_NaN();
  const auto ref = sequential<cells::ParaGRU>(pr);
  SolverOptions o;
  o.mode = Mode::newton_chunked;
  o.chunk_length = 16;
  o.check_finite = false;
  std::vector<double> out;
  const SolveReport rep = solve<cells::ParaGRU>(pr, o, out);
  CHECK(rep.converged);
  CHECK(max_diff(out, ref) <= 1e-12);
  CHECK(std::isnan(out[62]));
  CHECK(std::isfinite(out[61]));
}

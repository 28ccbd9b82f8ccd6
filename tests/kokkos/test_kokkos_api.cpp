// The Kokkos entry points as an application sees them: default execution
// space overloads, automatic mode, step(), argument errors, the
// non-convergence policies, and gradients against finite differences.
#include <cmath>
#include <string>

#include "backends.hpp"
#include "catch.hpp"
#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
using Catch::Approx;
#endif

namespace {
using namespace kt;
using flashrnn::Mode;
using flashrnn::SolverOptions;
using GRU = flashrnn::cells::ParaGRU;
using LSTM = flashrnn::cells::ParaLSTM;
using V4 = Kokkos::View<double****, Mem>;
using V3 = Kokkos::View<double***, Mem>;
using V2 = Kokkos::View<double**, Mem>;

/// Substring test spelled the same for Catch2 v2 and v3.
bool has(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

template <class F>
std::string error_of(const F& f) {
  try {
    f();
  } catch (const flashrnn::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("default execution space overloads and Mode::automatic", "[kokkos][api]") {
  const auto pb = make_problem<LSTM, double>(2, 50, 3, 31);
  const auto ref = NativeSerial::forward<LSTM, double>(pb, SolverOptions{});
  auto u = to_seq<double, Shape::rank4_right>("u", pb.u, 2, 50, 3, 3);
  auto p = to_params(pb.p, 5, 3);
  auto s0 = to_state<double, Shape::rank4_right>("s0", pb.s0, 2, 2, 3);
  V4 states("states", 2, 50, 2, 3);
  const auto rep = flashrnn::kokkos::forward<LSTM>(u, p, s0, states, V3());
  CHECK(rep.converged);
  CHECK(rep.lanes == 6);
  const auto got = from_seq<double, Shape::rank4_right>(states, 2, 50, 2, 3);
  CHECK(max_abs_diff(got, widen(ref.states)) <= 1e-12);

  // backward with only grad_final and only grad_p requested.
  V2 gp("gp", 5, 3);
  auto gf = to_state<double, Shape::rank4_right>("gf", pb.gf, 2, 2, 3);
  flashrnn::kokkos::backward<LSTM>(u, p, s0, states, V4(), gf, V4(), gp, V3());
  Problem<double> only_final = pb;
  std::fill(only_final.gs.begin(), only_final.gs.end(), 0.0);
  const auto gref = NativeSerial::backward<LSTM, double>(only_final, ref.states);
  CHECK(max_abs_diff(from_params<double>(gp, 5, 3), gref.gp) <= 1e-12);
}

TEST_CASE("step() equals the first step of a forward solve", "[kokkos][api]") {
  const auto pb = make_problem<GRU, double>(3, 1, 4, 41);
  const auto ref = NativeSerial::forward<GRU, double>(pb, SolverOptions{});
  V3 u("u", 3, 3, 4);
  {
    auto h = Kokkos::create_mirror_view(u);
    for (int b = 0; b < 3; ++b)
      for (int g = 0; g < 3; ++g)
        for (int j = 0; j < 4; ++j) h(b, g, j) = pb.u[(b * 3 + g) * 4 + j];
    Kokkos::deep_copy(u, h);
  }
  auto p = to_params(pb.p, 3, 4);
  auto s = to_state<double, Shape::rank4_right>("s", pb.s0, 3, 1, 4);
  flashrnn::kokkos::step<GRU>(Space(), u, p, s, s);  // in place
  const auto got = from_state<double, Shape::rank4_right>(s, 3, 1, 4);
  CHECK(max_abs_diff(got, ref.final_state) <= 1e-15);
}

TEST_CASE("argument errors name the argument", "[kokkos][api]") {
  V4 u("u", 2, 10, 3, 4), states("states", 2, 10, 1, 4), bad_states("states", 2, 9, 1, 4);
  V2 p("p", 3, 4), bad_p("p", 2, 4);
  V3 none;
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(u, p, none, bad_states, none); });
    INFO(msg);
    CHECK(has(msg, "argument 'states'"));
    CHECK(has(msg, "steps = 10"));
  }
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(u, bad_p, none, states, none); });
    INFO(msg);
    CHECK(has(msg, "argument 'p'"));
  }
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(u, p, none, V4(), none); });
    INFO(msg);
    CHECK(has(msg, "at least one output"));
  }
  Kokkos::View<double***, Mem> u3("u3", 2, 10, 13);  // 13 is no multiple of G = 3
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(u3, p, none, states, none); });
    INFO(msg);
    CHECK(has(msg, "argument 'u'"));
    CHECK(has(msg, "multiple of 3"));
  }
  // Aliasing outputs with inputs.
  V4 both("both", 2, 10, 3, 4);
  auto alias = Kokkos::subview(both, Kokkos::ALL, Kokkos::ALL, std::make_pair(0, 1), Kokkos::ALL);
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(both, p, none, alias, none); });
    INFO(msg);
    CHECK(has(msg, "overlapping memory"));
  }
  // A non-finite input is found where it is, even in device memory.
  Kokkos::deep_copy(u, 0.5);
  Kokkos::deep_copy(Kokkos::subview(u, 1, 7, 2, 3), std::nan(""));
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(u, p, none, states, none); });
    INFO(msg);
    CHECK(has(msg, "argument 'u'"));
    CHECK(has(msg, "t=7, b=1, channel=2, unit=3"));
  }
  SolverOptions bad;
  bad.max_iters = 0;
  Kokkos::deep_copy(u, 0.5);
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::forward<GRU>(u, p, none, states, none, bad); });
    INFO(msg);
    CHECK(has(msg, "max_iters"));
  }
  V4 gu("gu", 2, 10, 3, 4);
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::backward<GRU>(u, p, none, states, V4(), none, V4(), V2(), none); });
    INFO(msg);
    CHECK(has(msg, "at least one output"));
  }
  {
    const std::string msg = error_of([&] { flashrnn::kokkos::backward<GRU>(u, p, none, bad_states, V4(), none, gu, V2(), none); });
    INFO(msg);
    CHECK(has(msg, "argument 'states'"));
  }
}

TEMPLATE_TEST_CASE("non-convergence: fallback to stepping, or an error", "[kokkos][api]", kt::KokkosRange,
                   kt::KokkosTeam, kt::KokkosLane) {
  using Cell = flashrnn::cells::DiagTanh;
  auto pb = make_problem<Cell, double>(2, 200, 2, 51);
  for (auto& a : pb.p) a = 3.0;  // strongly nonlinear: Newton needs many iterations
  SolverOptions seq;
  seq.mode = Mode::sequential;
  const auto ref = NativeSerial::forward<Cell, double>(pb, seq);
  SolverOptions o;
  o.mode = Mode::newton;
  o.max_iters = 2;
  const auto got = TestType::template forward<Cell, double>(pb, o);
  CHECK_FALSE(got.report.converged);
  CHECK(got.report.lanes_fell_back == 4);
  CHECK(max_abs_diff(got.states, ref.states) == 0.0);  // the fallback is exact stepping

  o.on_nonconvergence = flashrnn::OnNonConvergence::keep_last_iterate;
  const auto kept = TestType::template forward<Cell, double>(pb, o);
  CHECK(kept.report.lanes_fell_back == 0);
  CHECK(kept.report.iterations == 2);

  o.on_nonconvergence = flashrnn::OnNonConvergence::throw_error;
  CHECK_THROWS_AS((TestType::template forward<Cell, double>(pb, o)), flashrnn::ConvergenceError);
}

TEMPLATE_TEST_CASE("Kokkos gradients match finite differences of the Kokkos forward", "[kokkos][api]",
                   kt::KokkosRange, kt::KokkosTeam, kt::KokkosLane) {
  using Cell = LSTM;
  const auto pb = make_problem<Cell, double>(1, 20, 2, 61);
  SolverOptions o;
  o.mode = Mode::newton;
  o.atol = o.rtol = 1e-14;
  auto loss = [&](const Problem<double>& q) {
    const auto f = TestType::template forward<Cell, double>(q, o);
    double L = 0;
    for (size_t i = 0; i < f.states.size(); ++i) L += q.gs[i] * f.states[i];
    for (size_t i = 0; i < f.final_state.size(); ++i) L += q.gf[i] * f.final_state[i];
    return L;
  };
  const auto fw = TestType::template forward<Cell, double>(pb, o);
  const auto g = TestType::template backward<Cell, double>(pb, fw.states);
  const double h = 1e-6;
  for (size_t i : {size_t(0), size_t(17), pb.u.size() - 1}) {
    auto a = pb, b = pb;
    a.u[i] += h;
    b.u[i] -= h;
    CHECK(g.gu[i] == Approx((loss(a) - loss(b)) / (2 * h)).margin(1e-7));
  }
  for (size_t i = 0; i < pb.p.size(); ++i) {
    auto a = pb, b = pb;
    a.p[i] += h;
    b.p[i] -= h;
    CHECK(g.gp[i] == Approx((loss(a) - loss(b)) / (2 * h)).margin(1e-7));
  }
  for (size_t i = 0; i < pb.s0.size(); ++i) {
    auto a = pb, b = pb;
    a.s0[i] += h;
    b.s0[i] -= h;
    CHECK(g.gs0[i] == Approx((loss(a) - loss(b)) / (2 * h)).margin(1e-7));
  }
}

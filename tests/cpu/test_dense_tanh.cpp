// Dense tanh cell s_t = tanh(W s_{t-1} + u_t): Newton (full Jacobian and
// quasi-Newton diagonal) against sequential stepping, fp32 against fp64, the
// adjoint against finite differences, argument checks and the
// non-convergence policy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "catch.hpp"
#include "flashrnn/dense.hpp"
#include "test_config.hpp"

namespace {

using flashrnn::index_t;
using flashrnn::Mode;
using flashrnn::View;
using Cell = flashrnn::cells::DenseTanh;

/// A dense problem: u [T][B][H], W [H][H] row-major, s0 [B][H]. `scale` is
/// the gain of W (entries uniform in [-scale, scale] / sqrt(H)).
struct Problem {
  index_t T, B, H;
  std::vector<double> u, W, s0;
};

Problem make_problem(index_t T, index_t B, index_t H, double scale, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  Problem p{T, B, H, {}, {}, {}};
  p.u.resize(static_cast<size_t>(T * B * H));
  p.W.resize(static_cast<size_t>(H * H));
  p.s0.resize(static_cast<size_t>(B * H));
  for (auto& x : p.u) x = uni(rng);
  for (auto& x : p.W) x = scale * uni(rng) / std::sqrt(static_cast<double>(H));
  for (auto& x : p.s0) x = 0.5 * uni(rng);
  return p;
}

/// The plain sequential recurrence in precision R, written independently of the library.
template <class R>
std::vector<R> reference(const Problem& p) {
  const index_t T = p.T, B = p.B, H = p.H;
  std::vector<R> out(static_cast<size_t>(T * B * H));
  std::vector<R> prev(static_cast<size_t>(H));
  for (index_t b = 0; b < B; ++b) {
    for (index_t i = 0; i < H; ++i) prev[i] = static_cast<R>(p.s0[b * H + i]);
    for (index_t t = 0; t < T; ++t) {
      for (index_t i = 0; i < H; ++i) {
        R acc = static_cast<R>(p.u[(t * B + b) * H + i]);
        for (index_t j = 0; j < H; ++j) acc += static_cast<R>(p.W[i * H + j]) * prev[j];
        out[(t * B + b) * H + i] = std::tanh(acc);
      }
      for (index_t i = 0; i < H; ++i) prev[i] = out[(t * B + b) * H + i];
    }
  }
  return out;
}

template <class R>
std::vector<R> cast(const std::vector<double>& v) {
  return std::vector<R>(v.begin(), v.end());
}

template <class R>
flashrnn::SolveReport run_forward(const Problem& p, const flashrnn::DenseOptions& o,
                                  std::vector<R>& states) {
  const auto u = cast<R>(p.u), W = cast<R>(p.W), s0 = cast<R>(p.s0);
  states.assign(static_cast<size_t>(p.T * p.B * p.H), R(0));
  return flashrnn::dense::forward<Cell, R>(
      flashrnn::time_first<const R>(u.data(), p.T, p.B, p.H, 1),
      flashrnn::param_view<const R>(W.data(), p.H, p.H),
      flashrnn::state_view<const R>(s0.data(), p.B, p.H, 1),
      flashrnn::time_first(states.data(), p.T, p.B, p.H, 1), {}, o, flashrnn_test::context());
}

template <class A, class B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

flashrnn::DenseOptions newton_options(bool quasi, int max_iters = 100000) {
  flashrnn::DenseOptions o;
  o.solver.mode = Mode::newton;
  o.solver.max_iters = max_iters;
  o.quasi_newton = quasi;
  return o;
}

}  // namespace

TEST_CASE("dense tanh: sequential mode equals the plain recurrence", "[dense]") {
  for (index_t H : {1, 2, 5}) {
    const Problem p = make_problem(37, 3, H, 0.9, 11u + static_cast<unsigned>(H));
    flashrnn::DenseOptions o;
    o.solver.mode = Mode::sequential;
    std::vector<double> s;
    const auto rep = run_forward(p, o, s);
    CHECK(rep.mode_used == Mode::sequential);
    CHECK(rep.iterations == 0);
    CHECK(rep.lanes == 3);
    CHECK(max_abs_diff(s, reference<double>(p)) <= 1e-15);
  }
}

TEST_CASE("dense tanh: full and quasi Newton equal sequential stepping in fp64", "[dense]") {
  const index_t Ts[] = {1, 2, 3, 17, 1000};
  const index_t Hs[] = {1, 2, 4, 8, 16};
  const index_t Bs[] = {1, 3};
  unsigned seed = 100;
  for (index_t T : Ts)
    for (index_t H : Hs)
      for (index_t B : Bs)
        for (bool quasi : {false, true}) {
          const Problem p = make_problem(T, B, H, 0.9, ++seed);
          const auto ref = reference<double>(p);
          const auto o = newton_options(quasi);  // default tolerances
          std::vector<double> s;
          const auto rep = run_forward(p, o, s);
          INFO("T=" << T << " H=" << H << " B=" << B << " quasi=" << quasi
                    << " iterations=" << rep.iterations);
          CHECK(rep.mode_used == Mode::newton);
          CHECK(rep.converged);
          CHECK(rep.lanes_fell_back == 0);
          CHECK_FALSE(rep.nonfinite_detected);
          CHECK(rep.iterations >= 1);
          // Undamped Newton (either linearisation) makes step t exact at iteration t+1.
          CHECK(rep.iterations <= T);
          CHECK(max_abs_diff(s, ref) <= 1e-12);
        }
}

TEST_CASE("dense tanh: long sequences, small H", "[dense]") {
  const index_t T = 20000;
  for (index_t H : {1, 2, 4})
    for (bool quasi : {false, true}) {
      const Problem p = make_problem(T, 2, H, 0.9, 7u + static_cast<unsigned>(H));
      const auto ref = reference<double>(p);
      const auto o = newton_options(quasi, 200);
      std::vector<double> s;
      const auto rep = run_forward(p, o, s);
      INFO("H=" << H << " quasi=" << quasi << " iterations=" << rep.iterations);
      CHECK(rep.converged);
      CHECK(rep.lanes_fell_back == 0);
      CHECK(max_abs_diff(s, ref) <= 1e-12);
    }
}

TEST_CASE("dense tanh: fp32 Newton within a small multiple of fp32 stepping's error",
          "[dense]") {
  for (index_t T : {17, 1000})
    for (index_t H : {1, 4, 16})
      for (bool quasi : {false, true}) {
        const Problem p = make_problem(T, 2, H, 0.9, 300u + static_cast<unsigned>(T + H));
        const auto ref = reference<double>(p);
        const double plain = max_abs_diff(reference<float>(p), ref);
        const auto o = newton_options(quasi, 5000);  // default fp32 tolerances
        std::vector<float> s;
        const auto rep = run_forward(p, o, s);
        const double err = max_abs_diff(s, ref);
        INFO("T=" << T << " H=" << H << " quasi=" << quasi << " iterations=" << rep.iterations
                  << " err=" << err << " plain fp32 err=" << plain);
        CHECK(rep.converged);
        CHECK(err <= 4 * std::max(plain, 1e-7));
      }
}

TEST_CASE("dense tanh: iteration counts, full vs quasi Newton", "[dense][report]") {
  // Printed for the record; only convergence and exactness are asserted (full
  // Newton need not beat quasi on every input).
  std::printf("dense tanh iterations (T=1000, B=1, fp64, default tolerances):\n");
  std::printf("  gain   H  full  quasi\n");
  for (double gain : {0.5, 0.9, 1.5})
    for (index_t H : {1, 2, 4, 8, 16}) {
      const Problem p = make_problem(1000, 1, H, gain, 900u + static_cast<unsigned>(H));
      const auto ref = reference<double>(p);
      int iters[2];
      for (int quasi = 0; quasi < 2; ++quasi) {
        const auto o = newton_options(quasi != 0);
        std::vector<double> s;
        const auto rep = run_forward(p, o, s);
        iters[quasi] = rep.iterations;
        INFO("gain=" << gain << " H=" << H << " quasi=" << quasi);
        CHECK(rep.converged);
        CHECK(max_abs_diff(s, ref) <= 1e-11);
      }
      std::printf("  %4.1f %3d %5d %6d\n", gain, static_cast<int>(H), iters[0], iters[1]);
    }
}

TEST_CASE("dense tanh: step-by-step inference equals the sequential forward", "[dense]") {
  const Problem p = make_problem(9, 4, 3, 0.9, 5u);
  const auto ref = reference<double>(p);
  std::vector<double> s = p.s0;  // updated in place
  for (index_t t = 0; t < p.T; ++t) {
    flashrnn::dense::step<Cell, double>(
        flashrnn::state_view<const double>(p.u.data() + t * p.B * p.H, p.B, p.H, 1),
        flashrnn::param_view<const double>(p.W.data(), p.H, p.H),
        flashrnn::state_view<const double>(s.data(), p.B, p.H, 1),
        flashrnn::state_view(s.data(), p.B, p.H, 1), flashrnn_test::context());
    for (index_t i = 0; i < p.B * p.H; ++i)
      REQUIRE(std::fabs(s[i] - ref[t * p.B * p.H + i]) <= 1e-15);
  }
}

namespace {

/// L = Σ g·states + Σ gf·final_state through a sequential fp64 forward.
double loss(const Problem& p, const std::vector<double>& g, const std::vector<double>& gf) {
  const auto s = reference<double>(p);
  double L = 0.0;
  for (size_t i = 0; i < s.size(); ++i) L += g[i] * s[i];
  const size_t last = static_cast<size_t>((p.T - 1) * p.B * p.H);
  for (size_t i = 0; i < gf.size(); ++i) L += gf[i] * s[last + i];
  return L;
}

}  // namespace

TEST_CASE("dense tanh: adjoint equals central finite differences (fp64)", "[dense]") {
  for (index_t T : {1, 6})
    for (index_t H : {1, 3}) {
      const index_t B = 2;
      Problem p = make_problem(T, B, H, 1.2, 40u + static_cast<unsigned>(T * 10 + H));
      std::mt19937_64 rng(77);
      std::uniform_real_distribution<double> uni(-1.0, 1.0);
      std::vector<double> g(p.u.size()), gf(p.s0.size());
      for (auto& x : g) x = uni(rng);
      for (auto& x : gf) x = uni(rng);
      const auto states = reference<double>(p);
      std::vector<double> du(p.u.size()), dW(p.W.size()), ds0(p.s0.size());
      flashrnn::dense::backward<Cell, double>(
          flashrnn::time_first<const double>(p.u.data(), T, B, H, 1),
          flashrnn::param_view<const double>(p.W.data(), H, H),
          flashrnn::state_view<const double>(p.s0.data(), B, H, 1),
          flashrnn::time_first<const double>(states.data(), T, B, H, 1),
          flashrnn::time_first<const double>(g.data(), T, B, H, 1),
          flashrnn::state_view<const double>(gf.data(), B, H, 1),
          flashrnn::time_first(du.data(), T, B, H, 1), flashrnn::param_view(dW.data(), H, H),
          flashrnn::state_view(ds0.data(), B, H, 1), flashrnn_test::context());

      const double h = 1e-6;
      auto fd = [&](std::vector<double>& x, size_t i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double lp = loss(p, g, gf);
        x[i] = keep - h;
        const double lm = loss(p, g, gf);
        x[i] = keep;
        return (lp - lm) / (2 * h);
      };
      INFO("T=" << T << " H=" << H);
      // Central differences: truncation ~h^2, rounding ~eps |L| / h ~ 1e-9.
      auto close = [](double a, double b) { return std::fabs(a - b) <= 1e-8 + 1e-7 * std::fabs(b); };
      for (size_t i = 0; i < p.u.size(); ++i) CHECK(close(du[i], fd(p.u, i)));
      for (size_t i = 0; i < p.W.size(); ++i) CHECK(close(dW[i], fd(p.W, i)));
      for (size_t i = 0; i < p.s0.size(); ++i) CHECK(close(ds0[i], fd(p.s0, i)));
    }
}

TEST_CASE("dense tanh: absent gradient inputs and outputs", "[dense]") {
  // grad_final only, grad_W only: must equal the corresponding parts of a full call.
  const index_t T = 12, B = 3, H = 4;
  const Problem p = make_problem(T, B, H, 0.9, 61u);
  const auto states = reference<double>(p);
  std::vector<double> gf(static_cast<size_t>(B * H), 0.0);
  for (size_t i = 0; i < gf.size(); ++i) gf[i] = 0.1 * static_cast<double>(i) - 0.5;
  std::vector<double> g_zero(states.size(), 0.0);
  std::vector<double> dW_a(static_cast<size_t>(H * H)), dW_b(dW_a.size()), du(states.size()),
      ds0(gf.size());
  const auto u = flashrnn::time_first<const double>(p.u.data(), T, B, H, 1);
  const auto W = flashrnn::param_view<const double>(p.W.data(), H, H);
  const auto s0 = flashrnn::state_view<const double>(p.s0.data(), B, H, 1);
  const auto st = flashrnn::time_first<const double>(states.data(), T, B, H, 1);
  flashrnn::dense::backward<Cell, double>(u, W, s0, st, {},
                                          flashrnn::state_view<const double>(gf.data(), B, H, 1),
                                          {}, flashrnn::param_view(dW_a.data(), H, H), {},
                                          flashrnn_test::context());
  flashrnn::dense::backward<Cell, double>(
      u, W, s0, st, flashrnn::time_first<const double>(g_zero.data(), T, B, H, 1),
      flashrnn::state_view<const double>(gf.data(), B, H, 1),
      flashrnn::time_first(du.data(), T, B, H, 1), flashrnn::param_view(dW_b.data(), H, H),
      flashrnn::state_view(ds0.data(), B, H, 1), flashrnn_test::context());
  CHECK(max_abs_diff(dW_a, dW_b) <= 1e-14);
}

// ---- the core algorithms with a blocked executor forced on (any thread count) ----

namespace {
/// A "parallel" loop that runs blocks in reverse order on the calling thread:
/// exercises the blocked scans and catches order dependencies.
struct ReverseLoop {
  template <class F>
  void operator()(index_t n, const F& f) const {
    for (index_t i = n - 1; i >= 0; --i) f(i);
  }
};

flashrnn::DenseTimeExec<ReverseLoop> blocked_exec(index_t min_block) {
  auto ex = flashrnn::make_dense_exec(flashrnn::BlockedExec<ReverseLoop>{ReverseLoop{}});
  ex.min_block = min_block;
  ex.max_blocks = 1000;
  return ex;
}

template <class Lin>
void check_recurrences(index_t n, index_t len, index_t min_block) {
  using Maps = flashrnn::AffineMaps<Lin, double>;
  std::mt19937_64 rng(static_cast<unsigned>(n * 1000 + len));
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<double> buf(static_cast<size_t>(len * Maps::stride(n))), x0(static_cast<size_t>(n));
  for (auto& v : buf) v = uni(rng) / std::sqrt(static_cast<double>(n));
  for (auto& v : x0) v = uni(rng);
  const flashrnn::AffineMaps<Lin, const double> maps{buf.data(), n};
  std::vector<double> ref(static_cast<size_t>(len * n)), got(ref.size());
  flashrnn::RecurrenceScratch<double> scratch;
  // Forward: serial executor is plain stepping, the reference.
  flashrnn::solve_affine_recurrence(flashrnn::make_dense_exec(flashrnn::SerialExec{}), maps, len,
                                    x0.data(), ref.data(), scratch);
  std::vector<double> prev = x0, next(static_cast<size_t>(n));
  for (index_t t = 0; t < len; ++t) {  // and plain stepping written out
    flashrnn::affine_apply<Lin>(n, maps.L(t), maps.c(t), prev.data(), next.data());
    for (index_t i = 0; i < n; ++i) REQUIRE(ref[t * n + i] == next[i]);
    prev = next;
  }
  flashrnn::solve_affine_recurrence(blocked_exec(min_block), maps, len, x0.data(), got.data(),
                                    scratch);
  CHECK(max_abs_diff(got, ref) <= 1e-12);
  // Reverse, from y_end = x0.
  flashrnn::solve_affine_recurrence_reverse(flashrnn::make_dense_exec(flashrnn::SerialExec{}), maps,
                                            len, x0.data(), ref.data(), scratch);
  prev = x0;
  for (index_t t = len - 1; t >= 0; --t) {
    flashrnn::affine_apply<Lin>(n, maps.L(t), maps.c(t), prev.data(), next.data());
    for (index_t i = 0; i < n; ++i) REQUIRE(ref[t * n + i] == next[i]);
    prev = next;
  }
  flashrnn::solve_affine_recurrence_reverse(blocked_exec(min_block), maps, len, x0.data(),
                                            got.data(), scratch);
  CHECK(max_abs_diff(got, ref) <= 1e-12);
}
}  // namespace

TEST_CASE("dense affine: blocked recurrences equal stepping", "[dense][core]") {
  for (index_t n : {1, 3, 6})
    for (index_t len : {1, 2, 5, 50, 301})
      for (index_t min_block : {1, 4, 64}) {
        INFO("n=" << n << " len=" << len << " min_block=" << min_block);
        check_recurrences<flashrnn::DenseLinear>(n, len, min_block);
        check_recurrences<flashrnn::DiagonalLinear>(n, len, min_block);
      }
}

TEST_CASE("dense lane: blocked Newton and blocked adjoint equal their serial forms",
          "[dense][core]") {
  for (index_t H : {1, 3, 8})
    for (index_t T : {1, 7, 200}) {
      const Problem p = make_problem(T, 1, H, 0.9, 500u + static_cast<unsigned>(T + H));
      const auto ref = reference<double>(p);
      flashrnn::NewtonParams<double> np{10000, 1e-14, 1e-14, 1.0};
      flashrnn::DenseLaneScratch<double> scratch;
      std::vector<double> s(ref.size());
      INFO("H=" << H << " T=" << T);
      auto r = flashrnn::dense_newton_lane<Cell, flashrnn::DenseLinear>(
          blocked_exec(5), T, H, p.W.data(), p.u.data(), p.s0.data(), s.data(), np, scratch);
      CHECK(r.converged);
      CHECK(r.iterations <= T);
      CHECK(max_abs_diff(s, ref) <= 1e-12);
      r = flashrnn::dense_newton_lane<Cell, flashrnn::DiagonalLinear>(
          blocked_exec(5), T, H, p.W.data(), p.u.data(), p.s0.data(), s.data(), np, scratch);
      CHECK(r.converged);
      CHECK(r.iterations <= T);
      CHECK(max_abs_diff(s, ref) <= 1e-12);

      std::mt19937_64 rng(3);
      std::uniform_real_distribution<double> uni(-1.0, 1.0);
      std::vector<double> g(ref.size()), gf(static_cast<size_t>(H));
      for (auto& x : g) x = uni(rng);
      for (auto& x : gf) x = uni(rng);
      std::vector<double> du_a(ref.size()), du_b(ref.size()), dW_a(static_cast<size_t>(H * H), 0.0),
          dW_b(dW_a.size(), 0.0), ds_a(gf.size()), ds_b(gf.size());
      flashrnn::DenseAdjointIO<double> a{p.u.data(), p.W.data(), p.s0.data(), ref.data(), g.data(),
                                         gf.data(), du_a.data(), dW_a.data(), ds_a.data()};
      auto b = a;
      b.grad_u = du_b.data();
      b.grad_W = dW_b.data();
      b.grad_s0 = ds_b.data();
      flashrnn::dense_adjoint_lane_sequential<Cell>(T, H, a);
      flashrnn::dense_adjoint_lane_parallel<Cell>(blocked_exec(5), T, H, b, scratch);
      CHECK(max_abs_diff(du_a, du_b) <= 1e-12);
      CHECK(max_abs_diff(dW_a, dW_b) <= 1e-11);
      CHECK(max_abs_diff(ds_a, ds_b) <= 1e-12);
    }
}

// ---- argument checks -----------------------------------------------------------

namespace {
template <class F>
void expect_invalid(F&& f, const std::string& arg) {
  try {
    f();
    FAIL("expected flashrnn::InvalidArgument naming " << arg);
  } catch (const flashrnn::InvalidArgument& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("argument '" + arg + "'") != std::string::npos);
    CHECK(msg.find("expected") != std::string::npos);
    CHECK(msg.find("got") != std::string::npos);
  }
}
}  // namespace

TEST_CASE("dense tanh: bad arguments throw InvalidArgument naming the argument", "[dense]") {
  using flashrnn::param_view;
  using flashrnn::state_view;
  using flashrnn::time_first;
  const index_t T = 5, B = 2, H = 3;
  Problem p = make_problem(T, B, H, 0.9, 1u);
  std::vector<double> s(static_cast<size_t>(T * B * H)), fin(static_cast<size_t>(B * H)),
      big(static_cast<size_t>(T * B * 4 * 4));
  const auto u = time_first<const double>(p.u.data(), T, B, H, 1);
  const auto W = param_view<const double>(p.W.data(), H, H);
  const auto s0 = state_view<const double>(p.s0.data(), B, H, 1);
  const auto st = time_first(s.data(), T, B, H, 1);
  const auto ctx = flashrnn_test::context();
  const flashrnn::DenseOptions o = newton_options(false, 50);
  auto fwd = [&](View<const double> u_, View<const double> W_, View<const double> s0_,
                 View<double> st_, View<double> fin_, const flashrnn::DenseOptions& o_) {
    return [=] { flashrnn::dense::forward<Cell, double>(u_, W_, s0_, st_, fin_, o_, ctx); };
  };

  expect_invalid(fwd({}, W, s0, st, {}, o), "u");
  expect_invalid(fwd(u, {}, s0, st, {}, o), "W");
  expect_invalid(fwd(u, param_view<const double>(p.W.data(), H - 1, H), s0, st, {}, o), "W");
  expect_invalid(fwd(u, W, state_view<const double>(p.s0.data(), B - 1, H, 1), st, {}, o), "s0");
  expect_invalid(fwd(u, W, s0, time_first(s.data(), T - 1, B, H, 1), {}, o), "states");
  expect_invalid(fwd(u, W, s0, time_first(big.data(), T, B, H + 1, 1), {}, o), "states");
  expect_invalid(fwd(u, W, s0, time_first(big.data(), T, B, H, 2), {}, o), "states");
  expect_invalid(fwd(u, W, s0, {}, state_view(fin.data(), B, H, 2), o), "final_state");
  expect_invalid(fwd(u, W, s0, {}, {}, o), "states/final_state");
  {
    auto bad = o;
    bad.solver.max_iters = 0;
    expect_invalid(fwd(u, W, s0, st, {}, bad), "options.max_iters");
    bad = o;
    bad.solver.damping = 0.0;
    expect_invalid(fwd(u, W, s0, st, {}, bad), "options.damping");
    bad = o;
    bad.solver.mode = Mode::newton_chunked;
    expect_invalid(fwd(u, W, s0, st, {}, bad), "options.solver.mode");
  }
  {  // an output overlapping an input
    std::vector<double> both(p.u);
    const auto u_alias = time_first<const double>(both.data(), T, B, H, 1);
    expect_invalid(fwd(u_alias, W, s0, time_first(both.data(), T, B, H, 1), {}, o), "states");
  }
  {  // non-finite inputs
    Problem q = p;
    q.u[7] = std::nan("");
    expect_invalid(fwd(time_first<const double>(q.u.data(), T, B, H, 1), W, s0, st, {}, o), "u");
    q = p;
    q.W[4] = INFINITY;
    expect_invalid(fwd(u, param_view<const double>(q.W.data(), H, H), s0, st, {}, o), "W");
    q = p;
    q.s0[1] = -INFINITY;
    expect_invalid(fwd(u, W, state_view<const double>(q.s0.data(), B, H, 1), st, {}, o), "s0");
  }

  // backward and step
  std::vector<double> du(s.size()), dW(p.W.size()), ds0(p.s0.size());
  const auto sc = time_first<const double>(s.data(), T, B, H, 1);
  expect_invalid([&] {
    flashrnn::dense::backward<Cell, double>(u, W, s0, {}, {}, {}, time_first(du.data(), T, B, H, 1),
                                            {}, {}, ctx);
  }, "states");
  expect_invalid([&] {
    flashrnn::dense::backward<Cell, double>(u, W, s0, sc, {}, {}, {}, {}, {}, ctx);
  }, "grad_u/grad_W/grad_s0");
  expect_invalid([&] {
    flashrnn::dense::backward<Cell, double>(u, W, s0, sc, {}, {}, {},
                                            param_view(dW.data(), H, H - 1), {}, ctx);
  }, "grad_W");
  expect_invalid([&] {
    flashrnn::dense::backward<Cell, double>(u, W, s0, sc,
                                            time_first<const double>(du.data(), T, B + 1, H, 1),
                                            {}, time_first(du.data(), T, B, H, 1), {}, {}, ctx);
  }, "grad_states");
  expect_invalid([&] {
    flashrnn::dense::step<Cell, double>(state_view<const double>(p.u.data(), B, H, 1), W,
                                        state_view<const double>(p.s0.data(), B, H + 1, 1),
                                        state_view(fin.data(), B, H, 1), ctx);
  }, "s_prev");
  expect_invalid([&] {
    flashrnn::dense::step<Cell, double>({}, W, s0, state_view(fin.data(), B, H, 1), ctx);
  }, "u_t");
  {  // in place through other strides: rows would read elements other rows overwrote
    std::vector<double> st0(p.s0);
    View<double> transposed{st0.data(), 1, B, H, 1, 0, 1, B, 1};
    expect_invalid([&] {
      flashrnn::dense::step<Cell, double>(state_view<const double>(p.u.data(), B, H, 1), W,
                                          state_view<const double>(st0.data(), B, H, 1),
                                          transposed, ctx);
    }, "s_next");
  }
}

TEST_CASE("dense tanh: the non-convergence policy on a diverging case", "[dense]") {
  // A large gain makes the recurrence chaotic: the linearisation is poor far
  // from the solution and a few Newton iterations cannot converge.
  const index_t T = 400, B = 3, H = 4;
  const Problem p = make_problem(T, B, H, 6.0, 2024u);
  const auto ref = reference<double>(p);
  for (bool quasi : {false, true}) {
    INFO("quasi=" << quasi);
    auto o = newton_options(quasi, 5);
    std::vector<double> s;

    o.solver.on_nonconvergence = flashrnn::OnNonConvergence::fallback_sequential;
    auto rep = run_forward(p, o, s);
    CHECK_FALSE(rep.converged);
    CHECK(rep.lanes_fell_back == B);
    CHECK(rep.iterations <= 5);
    CHECK(max_abs_diff(s, ref) <= 1e-15);  // recomputed by the same stepping

    o.solver.on_nonconvergence = flashrnn::OnNonConvergence::keep_last_iterate;
    rep = run_forward(p, o, s);
    CHECK_FALSE(rep.converged);
    CHECK(rep.lanes_fell_back == 0);
    CHECK_FALSE(max_abs_diff(s, ref) <= 1e-3);  // the last iterate (maybe non-finite), not the solution

    o.solver.on_nonconvergence = flashrnn::OnNonConvergence::throw_error;
    CHECK_THROWS_AS(run_forward(p, o, s), flashrnn::ConvergenceError);
  }
}

TEST_CASE("dense tanh: strided layouts, damping and automatic mode", "[dense]") {
  const index_t T = 40, B = 3, H = 5;
  const Problem p = make_problem(T, B, H, 0.9, 8u);
  const auto ref = reference<double>(p);  // [T][B][H]
  // u and states batch-first [B][T][H], final_state with a padded batch stride.
  std::vector<double> ubf(p.u.size()), sbf(p.u.size()), fin(static_cast<size_t>(B * (H + 2)));
  for (index_t t = 0; t < T; ++t)
    for (index_t b = 0; b < B; ++b)
      for (index_t i = 0; i < H; ++i) ubf[(b * T + t) * H + i] = p.u[(t * B + b) * H + i];
  View<double> fv{fin.data(), 1, B, H, 1, 0, H + 2, 1, 1};
  for (bool quasi : {false, true})
    for (double damping : {1.0, 0.7}) {
      auto o = newton_options(quasi, 2000);
      o.solver.damping = damping;
      const auto rep = flashrnn::dense::forward<Cell, double>(
          flashrnn::batch_first<const double>(ubf.data(), B, T, H, 1),
          flashrnn::param_view<const double>(p.W.data(), H, H),
          flashrnn::state_view<const double>(p.s0.data(), B, H, 1),
          flashrnn::batch_first(sbf.data(), B, T, H, 1), fv, o, flashrnn_test::context());
      INFO("quasi=" << quasi << " damping=" << damping << " iterations=" << rep.iterations);
      CHECK(rep.converged);
      double err = 0.0;
      for (index_t t = 0; t < T; ++t)
        for (index_t b = 0; b < B; ++b)
          for (index_t i = 0; i < H; ++i)
            err = std::max(err, std::fabs(sbf[(b * T + t) * H + i] - ref[(t * B + b) * H + i]));
      for (index_t b = 0; b < B; ++b)
        for (index_t i = 0; i < H; ++i)
          err = std::max(err, std::fabs(fin[b * (H + 2) + i] - ref[((T - 1) * B + b) * H + i]));
      // Damping makes even full Newton converge linearly (rate 1 - damping):
      // the error at the stop is then a few times the tolerance (1e-10).
      CHECK(err <= (damping == 1.0 ? 1e-12 : 1e-9));
    }
  flashrnn::DenseOptions o;  // Mode::automatic
  std::vector<double> s;
  const auto rep = run_forward(p, o, s);
  CHECK((rep.mode_used == Mode::sequential || rep.mode_used == Mode::newton));
  CHECK(rep.converged);
  CHECK(max_abs_diff(s, ref) <= 1e-12);
}

TEST_CASE("dense tanh: fp32 adjoint within a small multiple of its rounding", "[dense]") {
  // The same gradients in fp32 and fp64 (time-parallel or not, by thread count).
  const index_t T = 300, B = 2, H = 6;
  const Problem p = make_problem(T, B, H, 0.9, 31u);
  const auto s64 = reference<double>(p);
  std::vector<double> g(s64.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(0.1 * static_cast<double>(i));
  auto grads = [&](auto zero) {
    using R = decltype(zero);
    const auto u = cast<R>(p.u), W = cast<R>(p.W), s0 = cast<R>(p.s0), gr = cast<R>(g);
    const auto st = cast<R>(s64);
    std::vector<R> du(u.size()), dW(W.size()), ds0(s0.size());
    flashrnn::dense::backward<Cell, R>(
        flashrnn::time_first<const R>(u.data(), T, B, H, 1),
        flashrnn::param_view<const R>(W.data(), H, H),
        flashrnn::state_view<const R>(s0.data(), B, H, 1),
        flashrnn::time_first<const R>(st.data(), T, B, H, 1),
        flashrnn::time_first<const R>(gr.data(), T, B, H, 1), {},
        flashrnn::time_first(du.data(), T, B, H, 1), flashrnn::param_view(dW.data(), H, H),
        flashrnn::state_view(ds0.data(), B, H, 1), flashrnn_test::context());
    std::vector<double> all(du.begin(), du.end());
    all.insert(all.end(), dW.begin(), dW.end());
    all.insert(all.end(), ds0.begin(), ds0.end());
    return all;
  };
  const auto a = grads(0.0), b = grads(0.0f);
  double scale = 0.0;
  for (double x : a) scale = std::max(scale, std::fabs(x));
  CHECK(max_abs_diff(a, b) <= 1e-5 * scale);
}

// HeadTanh<K>, the small-dense-K cell: its step against the formula, its dual
// Jacobians against the hand-derived ones, every CPU mode against the fp64
// reference for K = 3, 4 and 8, gradients against finite differences, and
// shape errors naming the argument. (HeadTanh4 also runs in the cell lists of
// the forward, gradient, step and determinism suites.)
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "catch.hpp"
#include "expect_invalid.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;

namespace {

/// s' = tanh(W s + u) written out in fp64, and its derivatives:
/// A = diag(1 - s'^2) W, Ju = diag(1 - s'^2), Jp[i][i K + k] = (1 - s'_i^2) s_k.
template <int K>
struct Analytic {
  double next[K], A[K * K], Ju[K * K], Jp[K * K * K];
  Analytic(const double* s, const double* u, const double* W) {
    for (double& x : Jp) x = 0;
    for (int i = 0; i < K; ++i) {
      double acc = u[i];
      for (int k = 0; k < K; ++k) acc += W[i * K + k] * s[k];
      next[i] = std::tanh(acc);
      const double d = 1 - next[i] * next[i];
      for (int k = 0; k < K; ++k) {
        A[i * K + k] = d * W[i * K + k];
        Ju[i * K + k] = i == k ? d : 0.0;
        Jp[i * K * K + i * K + k] = d * s[k];
      }
    }
  }
};

template <int K>
void check_jacobians(std::uint64_t seed) {
  using Cell = cells::HeadTanh<K>;
  constexpr int P = K * K;
  Rng rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    double s[K], u[K], W[P];
    for (double& x : s) x = rng.uniform(-1, 1);
    for (double& x : u) x = rng.uniform(-2, 2);
    for (double& x : W) x = rng.uniform(-1, 1) / std::sqrt(double(K));
    const Analytic<K> want(s, u, W);
    double next[K], A[K * K], Ju[K * K], Jp[K * P], next2[K], A2[K * K];
    flashrnn::cell_step_full_jacobian<Cell>(s, u, W, next, A, Ju, Jp);
    flashrnn::cell_step_state_jacobian<Cell>(s, u, W, next2, A2);
    INFO(Cell::name << " trial " << trial);
    for (int i = 0; i < K; ++i) {
      CHECK(std::fabs(next[i] - want.next[i]) <= 1e-15);
      CHECK(std::fabs(next2[i] - next[i]) <= 1e-15);
    }
    for (int i = 0; i < K * K; ++i) {
      CHECK(std::fabs(A[i] - want.A[i]) <= 1e-15);
      CHECK(std::fabs(A2[i] - A[i]) <= 1e-15);
      CHECK(std::fabs(Ju[i] - want.Ju[i]) <= 1e-15);
    }
    for (int i = 0; i < K * P; ++i) CHECK(std::fabs(Jp[i] - want.Jp[i]) <= 1e-15);
    // The plain step is the value part of the dual one (to an ulp: the
    // compiler may evaluate either tanh at compile time, correctly rounded).
    double plain[K];
    cells::HeadTanh<K>::template step<double>(s, u, W, plain);
    for (int i = 0; i < K; ++i) CHECK(std::fabs(plain[i] - next[i]) <= 1e-15);
  }
}

/// Recurrent weights ~ w_scale U(-1, 1) / sqrt(K) (make_problem's random
/// weights, which are divided by sqrt(K) already, times w_scale).
template <class Cell>
Problem head_problem(index_t T, index_t B, index_t H, std::uint64_t seed, double w_scale) {
  Problem pr = make_problem<Cell>(T, B, H, seed);
  for (double& x : pr.p) x *= w_scale;
  return pr;
}

/// Every CPU mode against the fp64 reference (fp64: 1e-12; fp32: `factor` x
/// fp32 stepping's error), at the default tolerance or at atol = rtol = `tol`.
template <class Cell, class S>
void all_modes(const Problem& pr0, double tol = -1, double factor = 4) {
  Problem pr = pr0;
  pr.round_to<S>();
  const auto ref64 = reference_states<Cell, double>(pr, true);
  const auto seq = reference_states<Cell, S>(pr, true);
  struct MC {
    Mode mode;
    index_t chunk;
  };
  for (const MC& mc : {MC{Mode::sequential, 0}, MC{Mode::newton, 0}, MC{Mode::newton_chunked, 0},
                       MC{Mode::newton_chunked, 5}, MC{Mode::automatic, 0}})
    for (Layout layout : {Layout::batch_first, Layout::padded}) {
      ForwardCall call;
      call.opts = options(mc.mode, mc.chunk);
      call.opts.atol = call.opts.rtol = tol;
      call.layout = layout;
      const ForwardOut out = run_forward<Cell, S>(pr, call);
      Verdict v = judge<S>(out.states, ref64, seq);
      if (sizeof(S) == 4 && factor != 4) {
        v.bound += (factor - 4) * v.baseline;
        v.ok = v.err <= v.bound;
      }
      INFO(Cell::name << (sizeof(S) == 8 ? " fp64" : " fp32") << " T=" << pr.T << " B=" << pr.B
                      << " H=" << pr.H << " mode=" << mode_name(mc.mode, mc.chunk)
                      << " layout=" << to_string(layout) << " iterations=" << out.rep.iterations
                      << " " << v.describe());
      CHECK(out.rep.converged);
      CHECK(out.rep.lanes_fell_back == 0);
      CHECK(out.padding_touched == 0);
      CHECK(v.ok);
      CHECK(out.final_state == last_step(out.states, pr));
    }
}

/// fp64 adjoint against central differences of the fp64 reference and exact duals.
template <class Cell>
void gradients_fd(index_t T, index_t B, index_t H, std::uint64_t seed) {
  const Problem pr = head_problem<Cell>(T, B, H, seed, 1.5);
  const LossWeights w = make_loss(pr, seed + 1, true, true);
  const auto states = reference_states<Cell, double>(pr, true);
  const Grads adj = run_backward<Cell, double>(pr, w, states, BackwardCall{});
  const Grads exact = dual_gradients<Cell, double>(pr, w, true);
  auto fd = [&](std::vector<double> Problem::*field) {
    return finite_differences<Cell>(pr, field, w, true, {});
  };
  auto close = [](const char* what, const std::vector<double>& got, const std::vector<double>& want,
                  double rel) {
    REQUIRE(got.size() == want.size());
    const double scale = std::max(1.0, max_abs(want));
    const double err = max_abs_diff(got, want);
    INFO(what << ": err " << err << " bound " << rel * scale);
    CHECK(err <= rel * scale);
  };
  INFO(Cell::name << " T=" << T << " B=" << B << " H=" << H);
  close("grad_u vs FD", adj.u, fd(&Problem::u), 1e-7);
  close("grad_p vs FD", adj.p, fd(&Problem::p), 1e-7);
  close("grad_s0 vs FD", adj.s0, fd(&Problem::s0), 1e-7);
  close("grad_u vs dual", adj.u, exact.u, 1e-12);
  close("grad_p vs dual", adj.p, exact.p, 1e-12);
  close("grad_s0 vs dual", adj.s0, exact.s0, 1e-12);
}


}  // namespace

TEST_CASE("head tanh: names and dimensions", "[HeadTanh]") {
  CHECK(std::strcmp(cells::HeadTanh4::name, "HeadTanh<4>") == 0);
  CHECK(std::strcmp(cells::HeadTanh8::name, "HeadTanh<8>") == 0);
  CHECK(std::strcmp(cells::HeadTanh<1>::name, "HeadTanh<1>") == 0);
  CHECK(std::strcmp(cells::HeadTanh<16>::name, "HeadTanh<16>") == 0);
  STATIC_REQUIRE(cells::HeadTanh4::state_dim == 4);
  STATIC_REQUIRE(cells::HeadTanh4::input_dim == 4);
  STATIC_REQUIRE(cells::HeadTanh4::param_dim == 16);
  STATIC_REQUIRE(cells::HeadTanh8::param_dim == 64);
}

TEST_CASE("head tanh: dual Jacobians equal the hand-derived ones", "[HeadTanh][jacobian]") {
  SECTION("K = 1") { check_jacobians<1>(1); }
  SECTION("K = 2") { check_jacobians<2>(2); }
  SECTION("K = 3") { check_jacobians<3>(3); }
  SECTION("K = 4") { check_jacobians<4>(4); }
  SECTION("K = 8") { check_jacobians<8>(8); }
}

TEST_CASE("head tanh: HeadTanh<1> is DiagTanh", "[HeadTanh]") {
  const Problem pr = make_problem<cells::DiagTanh>(300, 2, 3, 17);
  CHECK(reference_states<cells::HeadTanh<1>, double>(pr, true) ==
        reference_states<cells::DiagTanh, double>(pr, true));
}

TEST_CASE("head tanh: every CPU mode equals fp64 stepping", "[HeadTanh][forward]") {
  for (index_t T : {1, 2, 17, 1000}) {
    SECTION("K = 4, T = " + std::to_string(T)) {
      all_modes<cells::HeadTanh4, double>(head_problem<cells::HeadTanh4>(T, 2, 3, 100 + T, 1.0));
      all_modes<cells::HeadTanh4, float>(head_problem<cells::HeadTanh4>(T, 2, 3, 200 + T, 1.0));
      // Large weights (spectral radius ~ 2): longer Newton, same answer.
      all_modes<cells::HeadTanh4, double>(head_problem<cells::HeadTanh4>(T, 1, 2, 300 + T, 3.0));
    }
    SECTION("K = 3, T = " + std::to_string(T)) {
      all_modes<cells::HeadTanh<3>, double>(head_problem<cells::HeadTanh<3>>(T, 2, 2, 400 + T, 1.0));
    }
    SECTION("K = 8, T = " + std::to_string(T)) {
      all_modes<cells::HeadTanh8, double>(head_problem<cells::HeadTanh8>(T, 2, 2, 500 + T, 1.0));
      all_modes<cells::HeadTanh8, float>(head_problem<cells::HeadTanh8>(T, 1, 2, 600 + T, 1.0));
    }
  }
  SECTION("one lane, T = 20000 (time-parallel at 2 threads)") {
    all_modes<cells::HeadTanh4, double>(head_problem<cells::HeadTanh4>(20000, 1, 1, 700, 1.0));
    all_modes<cells::HeadTanh4, float>(head_problem<cells::HeadTanh4>(20000, 1, 1, 701, 1.0));
  }
}

// Pre-activations ~ ±30 and ±1e4 mixed with random, weights up to ±2.5: gates
// switch between saturated and linear, per-step Newton converges only linearly,
// and the unsaturated stretches expand perturbations (fp32 stepping itself is
// off by ~10 ulps). At the default fp32 tolerance (stop when the update
// <= 1e-5) per-step Newton ended at ~6.5x stepping's error (seed 58 of the
// forward suite's adversarial sweep, T = 17); at 1e-6, chunked Newton at T =
// 1000 still measured 4.8x: two fp32 orderings differ by a random multiple of
// the same amplified rounding. So: tolerance 1e-6 and 8x here.
TEST_CASE("head tanh: saturating inputs, fp32", "[HeadTanh][forward][adversarial]") {
  for (index_t T : {1, 2, 3, 17, 1000})
    for (std::uint64_t seed : {1u, 2u, 3u}) {
      const Problem pr = make_problem<cells::HeadTanh4>(T, 2, 3, 58 + 1000 * T + 10 * seed, Inputs::saturating);
      all_modes<cells::HeadTanh4, float>(pr, 1e-6, 8);
    }
}

TEST_CASE("head tanh: fp64 adjoint equals finite differences and duals", "[HeadTanh][gradients]") {
  SECTION("K = 4") {
    gradients_fd<cells::HeadTanh4>(1, 1, 1, 11);
    gradients_fd<cells::HeadTanh4>(17, 2, 3, 12);
  }
  SECTION("K = 8") { gradients_fd<cells::HeadTanh8>(9, 1, 2, 13); }
  SECTION("K = 4, one lane, T = 600 (time-parallel adjoint)") {
    const Problem pr = head_problem<cells::HeadTanh4>(600, 1, 1, 14, 1.0);
    const LossWeights w = make_loss(pr, 15, true, true);
    const auto states = reference_states<cells::HeadTanh4, double>(pr, true);
    const Grads adj = run_backward<cells::HeadTanh4, double>(pr, w, states, BackwardCall{});
    const Grads exact = dual_gradients<cells::HeadTanh4, double>(pr, w, true);
    const double su = std::max(1.0, max_abs(exact.u)), sp = std::max(1.0, max_abs(exact.p));
    CHECK(max_abs_diff(adj.u, exact.u) <= 1e-12 * su);
    CHECK(max_abs_diff(adj.p, exact.p) <= 1e-12 * sp);
    CHECK(max_abs_diff(adj.s0, exact.s0) <= 1e-12 * std::max(1.0, max_abs(exact.s0)));
  }
}

TEST_CASE("head tanh: shape errors name the argument", "[HeadTanh][bad_input]") {
  using Cell = cells::HeadTanh4;
  const index_t T = 5, B = 2, H = 3;
  const Problem pr = make_problem<Cell>(T, B, H, 9);
  Inputs4<double> in(pr, Layout::batch_first);
  Tensor<double> st(Layout::batch_first, T, B, 4, H);
  auto run = [&](View<const double> u, View<const double> p, View<double> states) {
    flashrnn::forward<Cell, double>(u, p, in.s0.cview(), states, View<double>{}, options(Mode::newton),
                                    context());
  };
  REQUIRE_NOTHROW(run(in.u.cview(), in.p.cview(), st.view));
  SECTION("u with 3 channels instead of K = 4") {
    View<const double> u = in.u.cview();
    u.channels = 3;
    expect_invalid([&] { run(u, in.p.cview(), st.view); },
                   {"flashrnn::forward", "argument 'u'", "channels = 4", "channels = 3"});
  }
  SECTION("p with K = 4 instead of K * K = 16 channels") {
    View<const double> p = in.p.cview();
    p.channels = 4;
    expect_invalid([&] { run(in.u.cview(), p, st.view); },
                   {"flashrnn::forward", "argument 'p'", "channels = 16", "channels = 4"});
  }
  SECTION("states with 1 channel") {
    View<double> s = st.view;
    s.channels = 1;
    expect_invalid([&] { run(in.u.cview(), in.p.cview(), s); },
                   {"flashrnn::forward", "argument 'states'", "channels = 4"});
  }
  SECTION("backward: grad_p with the wrong channel count") {
    Tensor<double> gs(Layout::batch_first, T, B, 4, H, 0.5), gu(Layout::batch_first, T, B, 4, H),
        gp(Layout::batch_first, 1, 1, 16, H);
    View<double> gpv = gp.view;
    gpv.channels = 15;
    expect_invalid(
        [&] {
          flashrnn::backward<Cell, double>(in.u.cview(), in.p.cview(), in.s0.cview(), st.cview(),
                                           gs.cview(), View<const double>{}, gu.view, gpv,
                                           View<double>{}, context());
        },
        {"flashrnn::backward", "argument 'grad_p'", "channels = 16"});
  }
  SECTION("step: s_prev with 2 channels") {
    Tensor<double> s(Layout::batch_first, 1, B, 4, H, 0.0);
    View<const double> sp = s.cview();
    sp.channels = 2;
    View<const double> u1 = in.u.cview();
    u1.steps = 1;
    expect_invalid([&] { flashrnn::step<Cell, double>(u1, in.p.cview(), sp, s.view, context()); },
                   {"flashrnn::step", "argument 's_prev'", "channels = 4"});
  }
}

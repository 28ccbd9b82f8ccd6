// The adjoint (flashrnn::backward) against gradients obtained independently:
//  fp64: central finite differences of the loss through the fp64 reference,
//        and forward-mode duals through sequential stepping (exact BPTT);
//  fp32: forward-mode Dual<float> through fp32 sequential stepping, with the
//        flash-attention rule against the fp64 dual gradients.
// Loss: L = Σ_t w_t · s_t + w_final · s_{T-1} with random weights.
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "catch.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;

namespace {

/// Elementwise |a - b| <= tol * max(1, max |b|) over the indices (all when empty).
void require_close(const char* what, const std::vector<double>& got,
                   const std::vector<double>& want, double rel, const std::vector<size_t>& which = {}) {
  REQUIRE(got.size() == want.size());
  const double scale = std::max(1.0, max_abs(want));
  double err = 0;
  size_t worst = 0;
  auto visit = [&](size_t i) {
    const double d = std::fabs(got[i] - want[i]);
    if (!(d <= err)) err = d, worst = i;
  };
  if (which.empty())
    for (size_t i = 0; i < got.size(); ++i) visit(i);
  else
    for (size_t i : which) visit(i);
  INFO(what << ": max err " << err << " at " << worst << " (got " << got[worst] << ", want "
            << want[worst] << "), bound " << rel * scale);
  CHECK(err <= rel * scale);
}

/// fp32 rule: |adj32 - truth64| <= factor base + 4 eps32 scale, where base =
/// |dual32 - dual64| is the error of BPTT through fp32 stepping.
void require_fp32_rule(const char* what, const std::vector<double>& adj32,
                       const std::vector<double>& truth64, double base, double factor = 4) {
  REQUIRE(adj32.size() == truth64.size());
  const double scale = std::max(1.0, max_abs(truth64));
  const double err = max_abs_diff(adj32, truth64);
  const double bound = factor * base + 4 * FLT_EPSILON * scale;
  INFO(what << ": adjoint err " << err << ", fp32 BPTT err " << base << ", bound " << bound);
  CHECK(err <= bound);
}

struct GradCase {
  bool w_states, w_final, use_s0;
  Layout layout;
};

const GradCase kGradCases[] = {
    {true, true, true, Layout::batch_first},
    {true, false, false, Layout::time_first},
    {false, true, true, Layout::padded},
};

/// fp64: adjoint vs finite differences (all of u, p, s0) and vs exact duals.
template <class Cell>
void fd_check(Inputs kind, std::uint64_t seed) {
  struct Shape {
    index_t T, B, H;
  };
  for (const Shape& sh : {Shape{1, 1, 1}, Shape{2, 2, 3}, Shape{3, 1, 2}, Shape{17, 2, 3}})
    for (const GradCase& gc : kGradCases) {
      const Problem pr = make_problem<Cell>(sh.T, sh.B, sh.H, seed++, kind);
      const LossWeights w = make_loss(pr, seed++, gc.w_states, gc.w_final);
      const auto states = reference_states<Cell, double>(pr, gc.use_s0);
      BackwardCall call;
      call.layout = gc.layout;
      call.use_s0 = gc.use_s0;
      const Grads adj = run_backward<Cell, double>(pr, w, states, call);
      INFO(Cell::name << " T=" << sh.T << " B=" << sh.B << " H=" << sh.H << " layout="
                      << to_string(gc.layout) << " w_states=" << gc.w_states
                      << " w_final=" << gc.w_final << " s0=" << gc.use_s0);
      require_close("grad_u vs FD", adj.u, finite_differences<Cell>(pr, &Problem::u, w, gc.use_s0, {}), 1e-7);
      require_close("grad_p vs FD", adj.p, finite_differences<Cell>(pr, &Problem::p, w, gc.use_s0, {}), 1e-7);
      // Without s0 the solver starts from zeros: differentiate there.
      Problem at = pr;
      if (!gc.use_s0) std::fill(at.s0.begin(), at.s0.end(), 0.0);
      require_close("grad_s0 vs FD", adj.s0, finite_differences<Cell>(at, &Problem::s0, w, true, {}), 1e-7);
      const Grads exact = dual_gradients<Cell, double>(pr, w, gc.use_s0);
      require_close("grad_u vs dual", adj.u, exact.u, 1e-12);
      require_close("grad_p vs dual", adj.p, exact.p, 1e-12);
      require_close("grad_s0 vs dual", adj.s0, exact.s0, 1e-12);
    }
}

/// fp32: the adjoint against Dual<float> BPTT of sequential stepping.
///  (1) At the trajectory of fp32 stepping (the library's Mode::sequential,
///      which must equal the plain loop bitwise) the adjoint is BPTT computed
///      another way: flash-attention's rule against the fp64 dual gradients.
///  (2) At the trajectory fp32 Newton returns, the fp32 adjoint against the
///      fp64 adjoint evaluated at the very same states: same rule. (Against the
///      dual gradients this would also measure how the forward's rounding is
///      amplified by second derivatives, up to ~|a|^2 with saturated gates.)
template <class Cell>
void fp32_check(Inputs kind, std::uint64_t seed, index_t T, index_t B, index_t H,
                int cases = 3) {  // the dual gradients cost O(T^2): long lanes run fewer cases
  for (int ci = 0; ci < cases; ++ci) {
    const GradCase& gc = kGradCases[ci];
    Problem pr = make_problem<Cell>(T, B, H, seed++, kind);
    pr.round_to<float>();
    LossWeights w = make_loss(pr, seed++, gc.w_states, gc.w_final);
    round_loss<float>(w);
    ForwardCall fc;
    fc.opts = options(Mode::sequential);
    fc.use_s0 = gc.use_s0;
    const ForwardOut seq = run_forward<Cell, float>(pr, fc);
    REQUIRE(seq.states == reference_states<Cell, float>(pr, gc.use_s0));
    fc.opts = options(Mode::newton);
    const ForwardOut newton = run_forward<Cell, float>(pr, fc);
    BackwardCall call;
    call.layout = gc.layout;
    call.use_s0 = gc.use_s0;
    const Grads d32 = dual_gradients<Cell, float>(pr, w, gc.use_s0);
    const Grads d64 = dual_gradients<Cell, double>(pr, w, gc.use_s0);
    INFO(Cell::name << " fp32 T=" << T << " B=" << B << " H=" << H << " layout="
                    << to_string(gc.layout) << " w_states=" << gc.w_states
                    << " w_final=" << gc.w_final << " s0=" << gc.use_s0);
    {
      INFO("at the fp32 stepping trajectory");
      const Grads adj = run_backward<Cell, float>(pr, w, seq.states, call);
      require_fp32_rule("grad_u", adj.u, d64.u, max_abs_diff(d32.u, d64.u));
      require_fp32_rule("grad_p", adj.p, d64.p, max_abs_diff(d32.p, d64.p));
      require_fp32_rule("grad_s0", adj.s0, d64.s0, max_abs_diff(d32.s0, d64.s0));
      // And directly against the fp32 dual gradients (triangle inequality).
      require_fp32_rule("grad_u vs dual32", adj.u, d32.u, max_abs_diff(d32.u, d64.u), 5);
      require_fp32_rule("grad_p vs dual32", adj.p, d32.p, max_abs_diff(d32.p, d64.p), 5);
      require_fp32_rule("grad_s0 vs dual32", adj.s0, d32.s0, max_abs_diff(d32.s0, d64.s0), 5);
    }
    {
      INFO("at the fp32 Newton trajectory (" << newton.rep.iterations << " iterations)");
      const Grads adj = run_backward<Cell, float>(pr, w, newton.states, call);
      const Grads adj64 = run_backward<Cell, double>(pr, w, newton.states, call);
      require_fp32_rule("grad_u", adj.u, adj64.u, max_abs_diff(d32.u, d64.u));
      require_fp32_rule("grad_p", adj.p, adj64.p, max_abs_diff(d32.p, d64.p));
      require_fp32_rule("grad_s0", adj.s0, adj64.s0, max_abs_diff(d32.s0, d64.s0));
    }
  }
}

/// fp64 long lanes (time-parallel adjoint with several scan blocks at 2 threads):
/// exact duals for everything, finite differences for p, s0 and a few u entries.
template <class Cell>
void long_check(std::uint64_t seed) {
  const Problem pr = make_problem<Cell>(1000, 1, 2, seed);
  const LossWeights w = make_loss(pr, seed + 1, true, true);
  const auto states = reference_states<Cell, double>(pr, true);
  const Grads adj = run_backward<Cell, double>(pr, w, states, BackwardCall{});
  const Grads exact = dual_gradients<Cell, double>(pr, w, true);
  INFO(Cell::name << " T=1000");
  require_close("grad_u vs dual", adj.u, exact.u, 1e-12);
  require_close("grad_p vs dual", adj.p, exact.p, 1e-12);
  require_close("grad_s0 vs dual", adj.s0, exact.s0, 1e-12);
  std::vector<size_t> some;
  Rng rng(seed + 2);
  for (int i = 0; i < 12; ++i) some.push_back(static_cast<size_t>(rng.below(static_cast<int>(pr.u.size()))));
  some.push_back(0);
  some.push_back(pr.u.size() - 1);
  require_close("grad_u vs FD", adj.u, finite_differences<Cell>(pr, &Problem::u, w, true, some), 1e-7, some);
  require_close("grad_p vs FD", adj.p, finite_differences<Cell>(pr, &Problem::p, w, true, {}), 1e-7);
  require_close("grad_s0 vs FD", adj.s0, finite_differences<Cell>(pr, &Problem::s0, w, true, {}), 1e-7);
}

/// Each output may be requested alone, and gives the same values as when all are.
template <class Cell>
void output_subsets(std::uint64_t seed) {
  const Problem pr = make_problem<Cell>(17, 2, 3, seed);
  const LossWeights w = make_loss(pr, seed + 1, true, true);
  const auto states = reference_states<Cell, double>(pr, true);
  const Grads all = run_backward<Cell, double>(pr, w, states, BackwardCall{});
  for (int which = 0; which < 3; ++which) {
    BackwardCall call;
    call.want_u = which == 0, call.want_p = which == 1, call.want_s0 = which == 2;
    const Grads one = run_backward<Cell, double>(pr, w, states, call);
    if (which == 0) CHECK(one.u == all.u);
    if (which == 1) CHECK(one.p == all.p);
    if (which == 2) CHECK(one.s0 == all.s0);
  }
  // No upstream gradient at all: every gradient is zero.
  const Grads zero = run_backward<Cell, double>(pr, LossWeights{}, states, BackwardCall{});
  CHECK(max_abs(zero.u) == 0.0);
  CHECK(max_abs(zero.p) == 0.0);
  CHECK(max_abs(zero.s0) == 0.0);
}

}  // namespace

TEST_CASE("gradients: fp64 adjoint equals finite differences", "[gradients][fd]") {
  SECTION("ParaGRU") { fd_check<cells::ParaGRU>(Inputs::random, 100); }
  SECTION("ParaLSTM") { fd_check<cells::ParaLSTM>(Inputs::random, 200); }
  SECTION("DiagTanh") { fd_check<cells::DiagTanh>(Inputs::random, 300); }
  SECTION("HeadTanh4") { fd_check<cells::HeadTanh4>(Inputs::random, 350); }
}

TEST_CASE("gradients: fp64 adjoint on long lanes", "[gradients][long]") {
  SECTION("ParaGRU") { long_check<cells::ParaGRU>(400); }
  SECTION("ParaLSTM") { long_check<cells::ParaLSTM>(500); }
  SECTION("DiagTanh") { long_check<cells::DiagTanh>(600); }
  SECTION("HeadTanh4") { long_check<cells::HeadTanh4>(650); }
}

TEST_CASE("gradients: fp32 adjoint equals Dual<float> backprop through stepping",
          "[gradients][fp32]") {
  struct Shape {
    index_t T, B, H;
  };
  for (const Shape& sh : {Shape{1, 2, 2}, Shape{3, 1, 1}, Shape{17, 2, 3}, Shape{200, 1, 1},
                          Shape{200, 2, 2}}) {
    SECTION("ParaGRU T=" + std::to_string(sh.T) + " lanes=" + std::to_string(sh.B * sh.H)) {
      fp32_check<cells::ParaGRU>(Inputs::random, 700 + sh.T, sh.T, sh.B, sh.H);
      fp32_check<cells::ParaGRU>(Inputs::saturating, 750 + sh.T, sh.T, sh.B, sh.H);
    }
    SECTION("ParaLSTM T=" + std::to_string(sh.T) + " lanes=" + std::to_string(sh.B * sh.H)) {
      fp32_check<cells::ParaLSTM>(Inputs::random, 800 + sh.T, sh.T, sh.B, sh.H);
      fp32_check<cells::ParaLSTM>(Inputs::saturating, 850 + sh.T, sh.T, sh.B, sh.H);
    }
    SECTION("DiagTanh T=" + std::to_string(sh.T) + " lanes=" + std::to_string(sh.B * sh.H)) {
      fp32_check<cells::DiagTanh>(Inputs::random, 900 + sh.T, sh.T, sh.B, sh.H);
      fp32_check<cells::DiagTanh>(Inputs::saturating, 950 + sh.T, sh.T, sh.B, sh.H);
    }
    SECTION("HeadTanh4 T=" + std::to_string(sh.T) + " lanes=" + std::to_string(sh.B * sh.H)) {
      fp32_check<cells::HeadTanh4>(Inputs::random, 1400 + sh.T, sh.T, sh.B, sh.H);
      fp32_check<cells::HeadTanh4>(Inputs::saturating, 1450 + sh.T, sh.T, sh.B, sh.H);
    }
  }
  SECTION("T = 600, one lane (time-parallel adjoint, two scan blocks)") {
    fp32_check<cells::ParaGRU>(Inputs::random, 1001, 600, 1, 1, 1);
    fp32_check<cells::ParaLSTM>(Inputs::random, 1002, 600, 1, 1, 1);
    fp32_check<cells::DiagTanh>(Inputs::random, 1003, 600, 1, 1, 1);
    fp32_check<cells::HeadTanh4>(Inputs::random, 1004, 600, 1, 1, 1);
  }
}

TEST_CASE("gradients: output subsets and zero upstream", "[gradients]") {
  output_subsets<cells::ParaGRU>(1100);
  output_subsets<cells::ParaLSTM>(1200);
  output_subsets<cells::DiagTanh>(1300);
  output_subsets<cells::HeadTanh4>(1350);
}

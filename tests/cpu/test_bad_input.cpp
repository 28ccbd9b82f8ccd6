// Bad input: every malformed call gives flashrnn::InvalidArgument with a
// message naming the entry point and the argument (never a crash, a hang or a
// silent NaN); non-convergence follows the chosen policy.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "catch.hpp"
#include "expect_invalid.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;
using flashrnn::ConvergenceError;
using flashrnn::InvalidArgument;
using flashrnn::OnNonConvergence;

namespace {


std::string arg(const std::string& name) { return "argument '" + name + "'"; }

/// A well-formed forward problem (ParaGRU, fp64, T=5, B=2, H=3) whose views the
/// cases below break one at a time.
struct Fixture {
  using Cell = cells::ParaGRU;
  static constexpr index_t T = 5, B = 2, H = 3, K = 1, G = 3, P = 3;
  Problem pr = make_problem<Cell>(T, B, H, 7);
  Inputs4<double> in{pr, Layout::batch_first};
  Tensor<double> states{Layout::batch_first, T, B, K, H}, fin{Layout::batch_first, 1, B, K, H};
  View<const double> u = in.u.cview(), p = in.p.cview(), s0 = in.s0.cview();
  View<double> st = states.view, fs = fin.view;
  SolverOptions opts = options(Mode::newton);

  Fixture() = default;
  Fixture(const Fixture&) = delete;  // the views point into this object's tensors
  /// Back to the well-formed call (data, views and options).
  void reset() {
    in.u.load(pr.u), in.p.load(pr.p), in.s0.load(pr.s0);
    u = in.u.cview(), p = in.p.cview(), s0 = in.s0.cview();
    st = states.view, fs = fin.view;
    opts = options(Mode::newton);
  }

  SolveReport run() const {
    return flashrnn::forward<Cell, double>(u, p, s0, st, fs, opts, context());
  }
};

}  // namespace

TEST_CASE("bad input: forward shapes", "[bad_input]") {
  Fixture f;
  REQUIRE_NOTHROW(f.run());
  const std::string where = "flashrnn::forward";

  SECTION("u channels (gates)") {
    f.u.channels = 2;
    expect_invalid([&] { f.run(); }, {where, arg("u"), "channels = 3", "channels = 2"});
  }
  SECTION("p: each dimension") {
    auto p0 = f.p;
    f.p.units = 4;
    expect_invalid([&] { f.run(); }, {arg("p"), "units = 3", "units = 4"});
    f.p = p0, f.p.channels = 2;
    expect_invalid([&] { f.run(); }, {arg("p"), "channels"});
    f.p = p0, f.p.batch = 2;
    expect_invalid([&] { f.run(); }, {arg("p"), "batch"});
    f.p = p0, f.p.steps = 5;
    expect_invalid([&] { f.run(); }, {arg("p"), "steps"});
  }
  SECTION("s0: each dimension") {
    auto s = f.s0;
    f.s0.batch = 1;
    expect_invalid([&] { f.run(); }, {arg("s0"), "batch = 2", "batch = 1"});
    f.s0 = s, f.s0.channels = 2;
    expect_invalid([&] { f.run(); }, {arg("s0"), "channels"});
    f.s0 = s, f.s0.units = 2;
    expect_invalid([&] { f.run(); }, {arg("s0"), "units"});
    f.s0 = s, f.s0.steps = 2;
    expect_invalid([&] { f.run(); }, {arg("s0"), "steps"});
  }
  SECTION("states: each dimension") {
    auto s = f.st;
    f.st.steps = 4;
    expect_invalid([&] { f.run(); }, {arg("states"), "steps = 5", "steps = 4"});
    f.st = s, f.st.batch = 3;
    expect_invalid([&] { f.run(); }, {arg("states"), "batch"});
    f.st = s, f.st.channels = 3;
    expect_invalid([&] { f.run(); }, {arg("states"), "channels"});
    f.st = s, f.st.units = 1;
    expect_invalid([&] { f.run(); }, {arg("states"), "units"});
  }
  SECTION("final_state: each dimension") {
    auto s = f.fs;
    f.fs.steps = 5;
    expect_invalid([&] { f.run(); }, {arg("final_state"), "steps"});
    f.fs = s, f.fs.batch = 1;
    expect_invalid([&] { f.run(); }, {arg("final_state"), "batch"});
    f.fs = s, f.fs.channels = 2;
    expect_invalid([&] { f.run(); }, {arg("final_state"), "channels"});
    f.fs = s, f.fs.units = 4;
    expect_invalid([&] { f.run(); }, {arg("final_state"), "units"});
  }
  SECTION("empty extents: T = 0, B = 0, H = 0") {
    f.u.steps = 0;
    expect_invalid([&] { f.run(); }, {arg("u"), "steps >= 1", "steps = 0"});
    f.u.steps = Fixture::T, f.u.batch = 0;
    expect_invalid([&] { f.run(); }, {arg("u"), "batch >= 1"});
    f.u.batch = Fixture::B, f.u.units = 0;
    expect_invalid([&] { f.run(); }, {arg("u"), "units >= 1"});
    f.u.units = -3;
    expect_invalid([&] { f.run(); }, {arg("u"), "units >= 1"});
  }
}

TEST_CASE("bad input: forward pointers, strides, aliasing", "[bad_input]") {
  Fixture f;
  SECTION("null u / null p") {
    f.u.data = nullptr;
    expect_invalid([&] { f.run(); }, {arg("u"), "non-null"});
    f.reset();
    f.p.data = nullptr;
    expect_invalid([&] { f.run(); }, {arg("p"), "non-null"});
  }
  SECTION("both outputs null") {
    f.st = View<double>{}, f.fs = View<double>{};
    expect_invalid([&] { f.run(); }, {"states/final_state", "at least one output"});
  }
  SECTION("negative strides, each axis, inputs and outputs") {
    for (int axis = 0; axis < 4; ++axis) {
      auto neg = [axis](auto v) {
        index_t* s[4] = {&v.stride_t, &v.stride_b, &v.stride_c, &v.stride_h};
        *s[axis] = -1;
        return v;
      };
      Fixture g;
      g.u = neg(g.u);
      expect_invalid([&] { g.run(); }, {arg("u"), "non-negative strides"});
      g.reset(), g.st = neg(g.st);
      expect_invalid([&] { g.run(); }, {arg("states"), "non-negative strides"});
      g.reset(), g.fs = neg(g.fs);
      expect_invalid([&] { g.run(); }, {arg("final_state"), "non-negative strides"});
      g.reset(), g.s0 = neg(g.s0);
      expect_invalid([&] { g.run(); }, {arg("s0"), "non-negative strides"});
    }
  }
  SECTION("overlapping output strides") {
    auto st = f.st;
    f.st.stride_t = 0;  // every step written to the same place
    expect_invalid([&] { f.run(); }, {arg("states"), "every element once"});
    f.st = st, f.st.stride_b = 1;  // batch overlaps units
    expect_invalid([&] { f.run(); }, {arg("states"), "every element once"});
    f.st = st, f.fs.stride_h = 0;
    expect_invalid([&] { f.run(); }, {arg("final_state"), "every element once"});
  }
  SECTION("outputs aliasing inputs or each other") {
    std::vector<double> big(1000, 0.0);
    Fixture g;
    // states over u
    g.st.data = const_cast<double*>(g.u.data);
    expect_invalid([&] { g.run(); }, {arg("states"), "disjoint from 'u'"});
    // final_state over the tail of p
    g.reset();
    g.fs.data = const_cast<double*>(g.p.data) + 2;
    expect_invalid([&] { g.run(); }, {arg("final_state"), "disjoint from 'p'"});
    // states over s0
    g.reset();
    g.st.data = const_cast<double*>(g.s0.data);
    expect_invalid([&] { g.run(); }, {arg("states"), "disjoint from 's0'"});
    // final_state inside states
    g.reset();
    g.fs.data = g.st.data + 3;
    expect_invalid([&] { g.run(); }, {arg("final_state"), "disjoint from 'states'"});
  }
}

TEST_CASE("bad input: non-finite inputs and options", "[bad_input]") {
  const double bad_values[] = {std::numeric_limits<double>::quiet_NaN(),
                               std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity()};
  SECTION("non-finite u / p / s0 rejected with check_finite") {
    for (double bad : bad_values) {
      Fixture f;
      f.in.u(3, 1, 2, 1) = bad;
      expect_invalid([&] { f.run(); }, {arg("u"), "finite values", "t=3", "b=1", "channel=2", "unit=1"});
      f.reset();
      f.in.p(0, 0, 1, 2) = bad;
      expect_invalid([&] { f.run(); }, {arg("p"), "finite values"});
      f.reset();
      f.in.s0(0, 1, 0, 0) = bad;
      expect_invalid([&] { f.run(); }, {arg("s0"), "finite values"});
    }
  }
  SECTION("non-finite u without check_finite: flagged, other lanes intact") {
    for (OnNonConvergence pol : {OnNonConvergence::fallback_sequential,
                                 OnNonConvergence::keep_last_iterate}) {
      Fixture f;
      f.in.u(2, 0, 1, 1) = std::numeric_limits<double>::quiet_NaN();
      f.opts.check_finite = false;
      f.opts.on_nonconvergence = pol;
      const SolveReport rep = f.run();
      CHECK(rep.nonfinite_detected);
      CHECK_FALSE(rep.converged);
      // Lanes other than (b=0, j=1) equal the reference.
      Problem pr = f.pr;
      const auto ref = reference_states<Fixture::Cell, double>(pr, true);
      for (index_t t = 0; t < Fixture::T; ++t)
        for (index_t b = 0; b < Fixture::B; ++b)
          for (index_t j = 0; j < Fixture::H; ++j)
            if (!(b == 0 && j == 1))
              CHECK(std::fabs(f.states(t, b, 0, j) -
                              ref[static_cast<size_t>(cidx(t, b, 0, j, Fixture::B, 1, Fixture::H))]) <= 1e-12);
    }
    Fixture f;
    f.in.u(2, 0, 1, 1) = std::numeric_limits<double>::quiet_NaN();
    f.opts.check_finite = false;
    f.opts.on_nonconvergence = OnNonConvergence::throw_error;
    REQUIRE_THROWS_AS(f.run(), ConvergenceError);
  }
  SECTION("max_iters") {
    Fixture f;
    f.opts.max_iters = 0;
    expect_invalid([&] { f.run(); }, {arg("options.max_iters"), ">= 1"});
    f.opts.max_iters = -5;
    expect_invalid([&] { f.run(); }, {arg("options.max_iters")});
  }
  SECTION("damping out of (0, 1]") {
    for (double d : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()}) {
      Fixture f;
      f.opts.damping = d;
      expect_invalid([&] { f.run(); }, {arg("options.damping"), "(0, 1]"});
    }
    Fixture f;
    f.opts.damping = 0.5;  // in range: converges (slower), equals the reference
    const SolveReport rep = f.run();
    CHECK(rep.converged);
    CHECK(max_abs_diff(f.states.canonical(), reference_states<Fixture::Cell, double>(f.pr, true)) <= 1e-9);
  }
  SECTION("chunk_length, sequential_segments, atol / rtol") {
    Fixture f;
    f.opts.chunk_length = -1;
    expect_invalid([&] { f.run(); }, {arg("options.chunk_length")});
    f.opts.chunk_length = 0;
    for (int segs : {-1, flashrnn::max_sequential_segments + 1}) {
      f.opts.sequential_segments = segs;
      expect_invalid([&] { f.run(); },
                     {arg("options.sequential_segments"),
                      "0 (tuned) to " + std::to_string(flashrnn::max_sequential_segments),
                      "got " + std::to_string(segs)});
    }
    f.opts.sequential_segments = 3;  // in range: the CPU ignores it
    CHECK(f.run().converged);
    f.opts.sequential_segments = 0;
    f.opts.atol = std::numeric_limits<double>::quiet_NaN();
    expect_invalid([&] { f.run(); }, {arg("options.atol/rtol")});
    f.opts.atol = -1, f.opts.rtol = std::numeric_limits<double>::quiet_NaN();
    expect_invalid([&] { f.run(); }, {arg("options.atol/rtol")});
  }
  SECTION("fp32 storage is checked the same way") {
    using Cell = cells::ParaLSTM;
    Problem pr = make_problem<Cell>(4, 1, 2, 3);
    Inputs4<float> in(pr, Layout::time_first);
    Tensor<float> st(Layout::time_first, 4, 1, 2, 2);
    in.u(1, 0, 0, 1) = std::numeric_limits<float>::infinity();
    expect_invalid([&] {
      flashrnn::forward<Cell, float>(in.u.cview(), in.p.cview(), {}, st.view, {}, {}, context());
    }, {arg("u"), "finite"});
    in.u(1, 0, 0, 1) = 0.f;
    auto p = in.p.cview();
    p.channels = 3;  // ParaLSTM has 5 parameters per unit
    expect_invalid([&] {
      flashrnn::forward<Cell, float>(in.u.cview(), p, {}, st.view, {}, {}, context());
    }, {arg("p"), "channels = 5", "channels = 3"});
  }
}

// ------------------------------------------------------------ backward ----

TEST_CASE("bad input: backward", "[bad_input]") {
  using Cell = cells::ParaGRU;
  const index_t T = 4, B = 2, H = 3;
  Problem pr = make_problem<Cell>(T, B, H, 9);
  Inputs4<double> in(pr, Layout::batch_first);
  Tensor<double> st(Layout::batch_first, T, B, 1, H), gs(Layout::batch_first, T, B, 1, H),
      gf(Layout::batch_first, 1, B, 1, H), du(Layout::batch_first, T, B, 3, H),
      dp(Layout::batch_first, 1, 1, 3, H), ds0(Layout::batch_first, 1, B, 1, H);
  st.load(reference_states<Cell, double>(pr, true));
  gs.load(std::vector<double>(static_cast<size_t>(T * B * H), 1.0));
  struct Args {
    View<const double> u, p, s0, states, gstates, gfinal;
    View<double> gu, gp, gs0;
  };
  const Args good{in.u.cview(), in.p.cview(), in.s0.cview(), st.cview(), gs.cview(), gf.cview(),
                  du.view, dp.view, ds0.view};
  auto run = [](const Args& a) {
    flashrnn::backward<Cell, double>(a.u, a.p, a.s0, a.states, a.gstates, a.gfinal, a.gu, a.gp,
                                     a.gs0, context());
  };
  REQUIRE_NOTHROW(run(good));
  const std::string where = "flashrnn::backward";
  Args a = good;
  a.u.data = nullptr;
  expect_invalid([&] { run(a); }, {where, arg("u"), "non-null"});
  a = good, a.p.data = nullptr;
  expect_invalid([&] { run(a); }, {arg("p"), "non-null"});
  a = good, a.states.data = nullptr;
  expect_invalid([&] { run(a); }, {arg("states"), "non-null"});
  a = good, a.u.steps = 0;
  expect_invalid([&] { run(a); }, {arg("u"), "steps >= 1"});
  a = good, a.states.steps = 3;
  expect_invalid([&] { run(a); }, {arg("states"), "steps"});
  a = good, a.gstates.units = 2;
  expect_invalid([&] { run(a); }, {arg("grad_states"), "units"});
  a = good, a.gfinal.batch = 1;
  expect_invalid([&] { run(a); }, {arg("grad_final"), "batch"});
  a = good, a.gu.channels = 1;
  expect_invalid([&] { run(a); }, {arg("grad_u"), "channels"});
  a = good, a.gp.units = 2;
  expect_invalid([&] { run(a); }, {arg("grad_p"), "units"});
  a = good, a.gs0.batch = 3;
  expect_invalid([&] { run(a); }, {arg("grad_s0"), "batch"});
  a = good, a.gu.stride_t = -1;
  expect_invalid([&] { run(a); }, {arg("grad_u"), "non-negative strides"});
  a = good, a.gu.stride_t = 0;
  expect_invalid([&] { run(a); }, {arg("grad_u"), "every element once"});
  a = good, a.gp.stride_h = 0;
  expect_invalid([&] { run(a); }, {arg("grad_p"), "every element once"});
  a = good, a.gu = a.gp = a.gs0 = View<double>{};
  expect_invalid([&] { run(a); }, {"grad_u/grad_p/grad_s0", "at least one output"});
  a = good, a.gu.data = const_cast<double*>(in.u.buf.data());
  expect_invalid([&] { run(a); }, {arg("grad_u"), "disjoint from 'u'"});
  a = good, a.gs0.data = gs.buf.data() + 1;
  expect_invalid([&] { run(a); }, {arg("grad_s0"), "disjoint from 'grad_states'"});
  a = good, a.gs0.data = st.buf.data();
  expect_invalid([&] { run(a); }, {arg("grad_s0"), "disjoint from 'states'"});
  a = good, a.gp.data = du.buf.data() + 5;
  expect_invalid([&] { run(a); }, {arg("grad_p"), "disjoint from 'grad_u'"});
}

// ------------------------------------------------------- non-convergence ----

namespace {

/// DiagTanh with a large recurrent weight: from the initial guess
/// s^0_t = tanh(u_t) ≈ 0 every |A_t| ≈ a, so the first linear solve grows like
/// a^t and overflows over long lanes: Newton's iterates diverge.
Problem divergent_problem(index_t T, index_t B, index_t H) {
  return make_problem<cells::DiagTanh>(T, B, H, 77, Inputs::chaotic, 5.0);
}

}  // namespace

TEST_CASE("non-convergence: the three policies", "[bad_input][nonconvergence]") {
  using Cell = cells::DiagTanh;
  struct Case {
    const char* what;
    index_t T, B, H;
    Mode mode;
    int max_iters;
    bool overflows;  ///< the iterates become non-finite
  };
  const Case cases[] = {
      // Diverging iterates (overflow to inf/NaN), one lane (time-parallel) and many.
      {"diverging per-step Newton, 1 lane", 3000, 1, 1, Mode::newton, 50, true},
      {"diverging per-step Newton, 6 lanes", 3000, 2, 3, Mode::newton, 50, true},
      // Finite but not converged within max_iters.
      {"per-step Newton, max_iters = 2", 400, 1, 2, Mode::newton, 2, false},
      {"chunked Newton, max_iters = 1", 400, 2, 2, Mode::newton_chunked, 1, false},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const Problem pr = divergent_problem(c.T, c.B, c.H);
    const auto ref = reference_states<Cell, double>(pr, true);
    ForwardCall call;
    call.opts = options(c.mode, c.mode == Mode::newton_chunked ? 10 : 0);
    call.opts.max_iters = c.max_iters;
    ForwardCall seq_call = call;
    seq_call.opts.mode = Mode::sequential;
    const ForwardOut seq = run_forward<Cell, double>(pr, seq_call);

    SECTION(std::string("fallback_sequential: ") + c.what) {
      call.opts.on_nonconvergence = OnNonConvergence::fallback_sequential;
      const ForwardOut out = run_forward<Cell, double>(pr, call);
      INFO("iterations=" << out.rep.iterations << " residual=" << out.rep.final_residual
                         << " nonfinite=" << out.rep.nonfinite_detected);
      CHECK_FALSE(out.rep.converged);
      CHECK(out.rep.lanes_fell_back > 0);
      CHECK(out.rep.lanes_fell_back <= c.B * c.H);
      CHECK(out.states == seq.states);  // the lanes are recomputed by exact stepping
      CHECK(out.final_state == seq.final_state);
      CHECK(max_abs_diff(out.states, ref) <= 1e-12);
    }
    SECTION(std::string("throw_error: ") + c.what) {
      call.opts.on_nonconvergence = OnNonConvergence::throw_error;
      std::string msg;
      try {
        run_forward<Cell, double>(pr, call);
      } catch (const ConvergenceError& e) {
        msg = e.what();
      }
      INFO("message: " << msg);
      CHECK(msg.find("did not converge") != std::string::npos);
      CHECK(msg.find("max_iters = " + std::to_string(c.max_iters)) != std::string::npos);
    }
    SECTION(std::string("keep_last_iterate: ") + c.what) {
      call.opts.on_nonconvergence = OnNonConvergence::keep_last_iterate;
      const ForwardOut out = run_forward<Cell, double>(pr, call);
      INFO("iterations=" << out.rep.iterations << " residual=" << out.rep.final_residual
                         << " nonfinite=" << out.rep.nonfinite_detected);
      CHECK_FALSE(out.rep.converged);
      CHECK(out.rep.lanes_fell_back == 0);
      CHECK(out.rep.nonfinite_detected == c.overflows);
      CHECK(out.rep.iterations >= 1);
      CHECK(out.rep.iterations <= c.max_iters);
      // Non-finite values in the output only when the report says so.
      bool finite = true;
      for (double x : out.states) finite = finite && std::isfinite(x);
      if (!finite) CHECK(out.rep.nonfinite_detected);
      if (!out.rep.nonfinite_detected) CHECK(out.rep.iterations == c.max_iters);
    }
  }
}

// flashrnn::step (one step for a batch) against one sequential step, in place
// and out of place, every layout; and T calls of step equal a sequential forward.
#include <functional>
#include <string>
#include <vector>

#include "catch.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;

namespace {

/// One step of every lane with plain Cell::step (canonical arrays).
template <class Cell, class S>
std::vector<double> one_step(const Problem& pr, index_t t, const std::vector<double>& s_prev) {
  constexpr int K = Dims<Cell>::K, G = Dims<Cell>::G, P = Dims<Cell>::P;
  std::vector<double> out(s_prev.size());
  for (index_t b = 0; b < pr.B; ++b)
    for (index_t h = 0; h < pr.H; ++h) {
      S s[K], u[G], p[P], next[K];
      for (int k = 0; k < K; ++k) s[k] = static_cast<S>(s_prev[static_cast<size_t>(cidx(0, b, k, h, pr.B, K, pr.H))]);
      for (int g = 0; g < G; ++g) u[g] = static_cast<S>(pr.u[static_cast<size_t>(cidx(t, b, g, h, pr.B, G, pr.H))]);
      for (int q = 0; q < P; ++q) p[q] = static_cast<S>(pr.p[static_cast<size_t>(q * pr.H + h)]);
      Cell::template step<S>(s, u, p, next);
      for (int k = 0; k < K; ++k) out[static_cast<size_t>(cidx(0, b, k, h, pr.B, K, pr.H))] = static_cast<double>(next[k]);
    }
  return out;
}

/// The u_t slice of a (T, B, G, H) view.
template <class S>
View<const S> at_step(View<const S> u, index_t t) {
  u.data += t * u.stride_t;
  u.steps = 1;
  return u;
}

template <class Cell, class S>
void check_step(Layout layout, index_t B, index_t H, Inputs kind, std::uint64_t seed) {
  const index_t T = 6;
  Problem pr = make_problem<Cell>(T, B, H, seed, kind);
  pr.round_to<S>();
  Inputs4<S> in(pr, layout);
  INFO(Cell::name << " layout=" << to_string(layout) << " B=" << B << " H=" << H);

  // Out of place, one step from s0: bitwise what Cell::step gives.
  Tensor<S> next(layout, 1, pr.B, pr.K, pr.H);
  flashrnn::step<Cell, S>(at_step(in.u.cview(), 0), in.p.cview(), in.s0.cview(), next.view, context());
  CHECK(next.canonical() == one_step<Cell, S>(pr, 0, pr.s0));
  CHECK(next.touched_padding() == 0);

  // In place (s_next == s_prev) T times: bitwise the sequential forward.
  Tensor<S> s(layout, 1, pr.B, pr.K, pr.H);
  s.load(pr.s0);
  const auto ref = reference_states<Cell, S>(pr, true);
  const index_t n = pr.B * pr.K * pr.H;
  for (index_t t = 0; t < T; ++t) {
    flashrnn::step<Cell, S>(at_step(in.u.cview(), t), in.p.cview(), s.cview(), s.view, context());
    const std::vector<double> want(ref.begin() + t * n, ref.begin() + (t + 1) * n);
    CHECK(s.canonical() == want);
  }
  CHECK(s.touched_padding() == 0);

  ForwardCall call;
  call.opts = options(Mode::sequential);
  call.layout = layout;
  CHECK(run_forward<Cell, S>(pr, call).final_state == s.canonical());
}

void expect_invalid(const std::function<void()>& call, const std::string& needle) {
  std::string msg;
  try {
    call();
  } catch (const flashrnn::InvalidArgument& e) {
    msg = e.what();
  }
  INFO("message: " << msg);
  CHECK(msg.find("flashrnn::step") != std::string::npos);
  CHECK(msg.find(needle) != std::string::npos);
}

}  // namespace

TEST_CASE("step: one step equals sequential stepping", "[step]") {
  for (Layout layout : {Layout::batch_first, Layout::time_first, Layout::padded}) {
    // 1 lane, fewer lanes than a step block, many lanes (several blocks at 2 threads).
    for (index_t BH : {1, 6, 300}) {
      const index_t B = BH == 300 ? 20 : BH == 6 ? 2 : 1, H = BH / B;
      check_step<cells::ParaGRU, double>(layout, B, H, Inputs::random, 1 + BH);
      check_step<cells::ParaGRU, float>(layout, B, H, Inputs::saturating, 2 + BH);
      check_step<cells::ParaLSTM, double>(layout, B, H, Inputs::saturating, 3 + BH);
      check_step<cells::ParaLSTM, float>(layout, B, H, Inputs::random, 4 + BH);
      check_step<cells::DiagTanh, double>(layout, B, H, Inputs::random, 5 + BH);
      check_step<cells::DiagTanh, float>(layout, B, H, Inputs::saturating, 6 + BH);
      check_step<cells::HeadTanh4, double>(layout, B, H, Inputs::random, 7 + BH);
      check_step<cells::HeadTanh4, float>(layout, B, H, Inputs::saturating, 8 + BH);
    }
  }
}

TEST_CASE("step: bad input", "[step][bad_input]") {
  using Cell = cells::ParaLSTM;
  const index_t B = 3, H = 4;
  Problem pr = make_problem<Cell>(2, B, H, 5);
  Inputs4<double> in(pr, Layout::batch_first);
  Tensor<double> next(Layout::batch_first, 1, B, 2, H);
  const auto u1 = at_step(in.u.cview(), 0);
  auto run = [&](View<const double> u, View<const double> p, View<const double> sp, View<double> sn) {
    flashrnn::step<Cell, double>(u, p, sp, sn, context());
  };
  REQUIRE_NOTHROW(run(u1, in.p.cview(), in.s0.cview(), next.view));
  expect_invalid([&] { run(in.u.cview(), in.p.cview(), in.s0.cview(), next.view); }, "argument 'u_t'");
  expect_invalid([&] { run({}, in.p.cview(), in.s0.cview(), next.view); }, "argument 'u_t'");
  expect_invalid([&] { run(u1, {}, in.s0.cview(), next.view); }, "argument 'p'");
  expect_invalid([&] { run(u1, in.p.cview(), {}, next.view); }, "argument 's_prev'");
  expect_invalid([&] { run(u1, in.p.cview(), in.s0.cview(), {}); }, "argument 's_next'");
  auto bad = next.view;
  bad.units = 3;
  expect_invalid([&] { run(u1, in.p.cview(), in.s0.cview(), bad); }, "argument 's_next'");
  bad = next.view, bad.stride_b = 0;
  expect_invalid([&] { run(u1, in.p.cview(), in.s0.cview(), bad); }, "argument 's_next'");
  bad = next.view, bad.stride_c = -1;
  expect_invalid([&] { run(u1, in.p.cview(), in.s0.cview(), bad); }, "argument 's_next'");
  // Partial overlap with s_prev, or s_next over u_t / p.
  std::vector<double> buf(static_cast<size_t>(2 * B * 2 * H + 1), 0.0);
  auto sp = flashrnn::state_view<const double>(buf.data(), B, 2, H);
  auto sn = flashrnn::state_view<double>(buf.data() + 1, B, 2, H);
  expect_invalid([&] { run(u1, in.p.cview(), sp, sn); }, "argument 's_next'");
  sn = View<double>{const_cast<double*>(u1.data), 1, B, 2, H, 0, 2 * H, H, 1};
  expect_invalid([&] { run(u1, in.p.cview(), in.s0.cview(), sn); }, "disjoint from 'u_t'");
  // The same memory read and written through different strides is not an
  // in-place update: lanes would read states other lanes already overwrote.
  sp = flashrnn::state_view<const double>(buf.data(), B, 2, H);
  sn = View<double>{buf.data(), 1, B, 2, H, 0, 2 * H, 1, 2};  // (k, j) transposed
  expect_invalid([&] { run(u1, in.p.cview(), sp, sn); }, "argument 's_next'");
}

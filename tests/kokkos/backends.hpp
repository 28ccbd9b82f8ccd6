// The backends under test, behind one small interface, so that one templated
// suite (TEMPLATE_LIST_TEST_CASE) runs for each and ctest names the backend:
//   NativeSerial     the native CPU backend at 1 thread: the serial reference
//   NativeThreaded   the native CPU backend (oneTBB or OpenMP, as configured)
//                    at FLASHRNN_TEST_THREADS threads
//   KokkosRange      Kokkos, RangePolicy + segmented parallel_scan; rank-4 LayoutRight views
//   KokkosTeam       Kokkos, TeamPolicy + team scans; rank-3 (B, T, C*H) LayoutLeft views
//   KokkosLane       Kokkos, a thread per lane; rank-4 LayoutStride subviews
// Problems and results live in host vectors laid out [B][T][C][H]; Kokkos
// backends copy them to views of DefaultExecutionSpace's memory and back, so
// the suite also runs on device builds of Kokkos.
#pragma once
#include <Kokkos_Core.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "flashrnn/flashrnn.hpp"
#include "flashrnn/kokkos/flashrnn_kokkos.hpp"

namespace kt {
using flashrnn::index_t;

inline int test_threads() {
  const char* s = std::getenv("FLASHRNN_TEST_THREADS");
  return s ? std::atoi(s) : 0;
}

/// One problem: inputs and upstream gradients, host, [B][T][C][H].
template <class S>
struct Problem {
  index_t B = 1, T = 1, H = 1;
  int K = 1, G = 1, P = 1;
  std::vector<S> u, p, s0, gs, gf;  // gs: dL/dstates, gf: dL/dfinal_state
};

/// Deterministic inputs in ranges where trained ParaGRU/ParaLSTM live
/// (|u| <= 1.5, |a| <= 0.9): Newton converges in a few iterations.
template <class Cell, class S>
Problem<S> make_problem(index_t B, index_t T, index_t H, std::uint64_t seed, bool with_s0 = true) {
  Problem<S> pb;
  pb.B = B;
  pb.T = T;
  pb.H = H;
  pb.K = Cell::state_dim;
  pb.G = Cell::input_dim;
  pb.P = Cell::param_dim;
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&]() {  // uniform in [-1, 1)
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return static_cast<double>(x >> 11) / static_cast<double>(1ull << 52) - 1.0;
  };
  pb.u.resize(static_cast<size_t>(B * T * pb.G * H));
  for (auto& v : pb.u) v = static_cast<S>(1.5 * next());
  pb.p.resize(static_cast<size_t>(pb.P * H));
  for (auto& v : pb.p) v = static_cast<S>(0.9 * next());
  if (with_s0) {
    pb.s0.resize(static_cast<size_t>(B * pb.K * H));
    for (auto& v : pb.s0) v = static_cast<S>(0.5 * next());
  }
  pb.gs.resize(static_cast<size_t>(B * T * pb.K * H));
  for (auto& v : pb.gs) v = static_cast<S>(next());
  pb.gf.resize(static_cast<size_t>(B * pb.K * H));
  for (auto& v : pb.gf) v = static_cast<S>(next());
  return pb;
}

template <class S>
struct Forward {
  std::vector<S> states, final_state;
  flashrnn::SolveReport report;
};
template <class S>
struct Backward {
  std::vector<S> gu, gp, gs0;
};

// ---------------------------------------------------------------- native CPU
template <int Threads>
struct Native {
  static int threads() { return Threads > 0 ? Threads : test_threads(); }
  template <class Cell, class S>
  static Forward<S> forward(const Problem<S>& pb, const flashrnn::SolverOptions& o) {
    using namespace flashrnn;
    Forward<S> r;
    r.states.assign(static_cast<size_t>(pb.B * pb.T * pb.K * pb.H), S(0));
    r.final_state.assign(static_cast<size_t>(pb.B * pb.K * pb.H), S(0));
    Context ctx;
    ctx.num_threads = threads();
    r.report = flashrnn::forward<Cell, S>(
        batch_first<const S>(pb.u.data(), pb.B, pb.T, pb.G, pb.H), param_view<const S>(pb.p.data(), pb.P, pb.H),
        pb.s0.empty() ? View<const S>{} : state_view<const S>(pb.s0.data(), pb.B, pb.K, pb.H),
        batch_first(r.states.data(), pb.B, pb.T, pb.K, pb.H), state_view(r.final_state.data(), pb.B, pb.K, pb.H),
        o, ctx);
    return r;
  }
  template <class Cell, class S>
  static Backward<S> backward(const Problem<S>& pb, const std::vector<S>& states) {
    using namespace flashrnn;
    Backward<S> r;
    r.gu.assign(pb.u.size(), S(0));
    r.gp.assign(pb.p.size(), S(0));
    r.gs0.assign(static_cast<size_t>(pb.B * pb.K * pb.H), S(0));
    Context ctx;
    ctx.num_threads = threads();
    flashrnn::backward<Cell, S>(
        batch_first<const S>(pb.u.data(), pb.B, pb.T, pb.G, pb.H), param_view<const S>(pb.p.data(), pb.P, pb.H),
        pb.s0.empty() ? View<const S>{} : state_view<const S>(pb.s0.data(), pb.B, pb.K, pb.H),
        batch_first<const S>(states.data(), pb.B, pb.T, pb.K, pb.H),
        batch_first<const S>(pb.gs.data(), pb.B, pb.T, pb.K, pb.H),
        state_view<const S>(pb.gf.data(), pb.B, pb.K, pb.H), batch_first(r.gu.data(), pb.B, pb.T, pb.G, pb.H),
        param_view(r.gp.data(), pb.P, pb.H), state_view(r.gs0.data(), pb.B, pb.K, pb.H), ctx);
    return r;
  }
};
struct NativeSerial : Native<1> {
  static constexpr const char* name = "native serial";
};
struct NativeThreaded : Native<0> {
  static constexpr const char* name = "native threaded";
};

// ---------------------------------------------------------------- Kokkos
using Space = Kokkos::DefaultExecutionSpace;
using Mem = Space::memory_space;

/// How a Kokkos backend lays out its views.
enum class Shape { rank4_right, rank3_left, rank4_strided };

template <class S, Shape Sh>
struct SeqView;  // a (B, T, C, H) tensor in the chosen layout
template <class S>
struct SeqView<S, Shape::rank4_right> {
  using type = Kokkos::View<S****, Kokkos::LayoutRight, Mem>;
  static type make(const char* n, index_t B, index_t T, index_t C, index_t H) { return type(std::string(n), B, T, C, H); }
  template <class HV>
  static S& at(const HV& v, index_t b, index_t t, index_t c, index_t h, index_t) { return v(b, t, c, h); }
};
template <class S>
struct SeqView<S, Shape::rank3_left> {
  using type = Kokkos::View<S***, Kokkos::LayoutLeft, Mem>;
  static type make(const char* n, index_t B, index_t T, index_t C, index_t H) { return type(std::string(n), B, T, C * H); }
  template <class HV>
  static S& at(const HV& v, index_t b, index_t t, index_t c, index_t h, index_t H) { return v(b, t, c * H + h); }
};
template <class S>
struct SeqView<S, Shape::rank4_strided> {
  using type = Kokkos::View<S****, Kokkos::LayoutStride, Mem>;
  static type make(const char* n, index_t B, index_t T, index_t C, index_t H) {
    // Padded units: a genuinely strided subview of a larger allocation.
    Kokkos::View<S****, Kokkos::LayoutRight, Mem> big(std::string(n), B, T, C, H + 3);
    return Kokkos::subview(big, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, std::make_pair<index_t, index_t>(1, H + 1));
  }
  template <class HV>
  static S& at(const HV& v, index_t b, index_t t, index_t c, index_t h, index_t) { return v(b, t, c, h); }
};

template <class S, Shape Sh>
struct StateView;  // a (B, C, H) tensor
template <class S>
struct StateView<S, Shape::rank4_right> {
  using type = Kokkos::View<S***, Kokkos::LayoutRight, Mem>;
  static type make(const char* n, index_t B, index_t C, index_t H) { return type(std::string(n), B, C, H); }
  template <class HV>
  static S& at(const HV& v, index_t b, index_t c, index_t h, index_t) { return v(b, c, h); }
};
template <class S>
struct StateView<S, Shape::rank3_left> {
  using type = Kokkos::View<S**, Kokkos::LayoutLeft, Mem>;
  static type make(const char* n, index_t B, index_t C, index_t H) { return type(std::string(n), B, C * H); }
  template <class HV>
  static S& at(const HV& v, index_t b, index_t c, index_t h, index_t H) { return v(b, c * H + h); }
};
template <class S>
struct StateView<S, Shape::rank4_strided> {
  using type = Kokkos::View<S***, Kokkos::LayoutStride, Mem>;
  static type make(const char* n, index_t B, index_t C, index_t H) {
    Kokkos::View<S***, Kokkos::LayoutLeft, Mem> big(std::string(n), B + 2, C, H);
    return Kokkos::subview(big, std::make_pair<index_t, index_t>(1, B + 1), Kokkos::ALL, Kokkos::ALL);
  }
  template <class HV>
  static S& at(const HV& v, index_t b, index_t c, index_t h, index_t) { return v(b, c, h); }
};

template <class S, Shape Sh>
typename SeqView<S, Sh>::type to_seq(const char* n, const std::vector<S>& src, index_t B, index_t T, index_t C,
                                     index_t H) {
  auto v = SeqView<S, Sh>::make(n, B, T, C, H);
  auto h = Kokkos::create_mirror_view(v);
  if (!src.empty())
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t)
        for (index_t c = 0; c < C; ++c)
          for (index_t j = 0; j < H; ++j)
            SeqView<S, Sh>::at(h, b, t, c, j, H) = src[static_cast<size_t>(((b * T + t) * C + c) * H + j)];
  Kokkos::deep_copy(v, h);
  return v;
}
template <class S, Shape Sh, class V>
std::vector<S> from_seq(const V& v, index_t B, index_t T, index_t C, index_t H) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<S> out(static_cast<size_t>(B * T * C * H));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t c = 0; c < C; ++c)
        for (index_t j = 0; j < H; ++j)
          out[static_cast<size_t>(((b * T + t) * C + c) * H + j)] = SeqView<S, Sh>::at(h, b, t, c, j, H);
  return out;
}
template <class S, Shape Sh>
typename StateView<S, Sh>::type to_state(const char* n, const std::vector<S>& src, index_t B, index_t C, index_t H) {
  if (src.empty()) return typename StateView<S, Sh>::type();
  auto v = StateView<S, Sh>::make(n, B, C, H);
  auto h = Kokkos::create_mirror_view(v);
  for (index_t b = 0; b < B; ++b)
    for (index_t c = 0; c < C; ++c)
      for (index_t j = 0; j < H; ++j) StateView<S, Sh>::at(h, b, c, j, H) = src[static_cast<size_t>((b * C + c) * H + j)];
  Kokkos::deep_copy(v, h);
  return v;
}
template <class S, Shape Sh, class V>
std::vector<S> from_state(const V& v, index_t B, index_t C, index_t H) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<S> out(static_cast<size_t>(B * C * H));
  for (index_t b = 0; b < B; ++b)
    for (index_t c = 0; c < C; ++c)
      for (index_t j = 0; j < H; ++j) out[static_cast<size_t>((b * C + c) * H + j)] = StateView<S, Sh>::at(h, b, c, j, H);
  return out;
}
template <class S>
Kokkos::View<S**, Mem> to_params(const std::vector<S>& src, index_t P, index_t H) {
  Kokkos::View<S**, Mem> v("p", P, H);
  auto h = Kokkos::create_mirror_view(v);
  for (index_t q = 0; q < P; ++q)
    for (index_t j = 0; j < H; ++j) h(q, j) = src[static_cast<size_t>(q * H + j)];
  Kokkos::deep_copy(v, h);
  return v;
}
template <class S, class V>
std::vector<S> from_params(const V& v, index_t P, index_t H) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<S> out(static_cast<size_t>(P * H));
  for (index_t q = 0; q < P; ++q)
    for (index_t j = 0; j < H; ++j) out[static_cast<size_t>(q * H + j)] = h(q, j);
  return out;
}

template <flashrnn::kokkos::Strategy St, Shape Sh>
struct KokkosBackend {
  static flashrnn::kokkos::KokkosOptions options() {
    flashrnn::kokkos::KokkosOptions o;
    o.strategy = St;
    return o;
  }
  template <class Cell, class S>
  static Forward<S> forward(const Problem<S>& pb, const flashrnn::SolverOptions& o) {
    const index_t B = pb.B, T = pb.T, H = pb.H;
    auto u = to_seq<S, Sh>("u", pb.u, B, T, pb.G, H);
    auto p = to_params(pb.p, pb.P, H);
    auto s0 = to_state<S, Sh>("s0", pb.s0, B, pb.K, H);
    auto states = SeqView<S, Sh>::make("states", B, T, pb.K, H);
    auto fin = StateView<S, Sh>::make("final", B, pb.K, H);
    typename SeqView<const S, Sh>::type uc = u;
    Forward<S> r;
    r.report = flashrnn::kokkos::forward<Cell>(Space(), uc, p, s0, states, fin, o, options());
    r.states = from_seq<S, Sh>(states, B, T, pb.K, H);
    r.final_state = from_state<S, Sh>(fin, B, pb.K, H);
    return r;
  }
  template <class Cell, class S>
  static Backward<S> backward(const Problem<S>& pb, const std::vector<S>& states_host) {
    const index_t B = pb.B, T = pb.T, H = pb.H;
    auto u = to_seq<S, Sh>("u", pb.u, B, T, pb.G, H);
    auto p = to_params(pb.p, pb.P, H);
    auto s0 = to_state<S, Sh>("s0", pb.s0, B, pb.K, H);
    auto states = to_seq<S, Sh>("states", states_host, B, T, pb.K, H);
    auto gs = to_seq<S, Sh>("grad_states", pb.gs, B, T, pb.K, H);
    auto gf = to_state<S, Sh>("grad_final", pb.gf, B, pb.K, H);
    auto gu = SeqView<S, Sh>::make("grad_u", B, T, pb.G, H);
    Kokkos::View<S**, Mem> gp("grad_p", pb.P, H);
    auto gs0 = StateView<S, Sh>::make("grad_s0", B, pb.K, H);
    flashrnn::kokkos::backward<Cell>(Space(), u, p, s0, states, gs, gf, gu, gp, gs0, options());
    Backward<S> r;
    r.gu = from_seq<S, Sh>(gu, B, T, pb.G, H);
    r.gp = from_params<S>(gp, pb.P, H);
    r.gs0 = from_state<S, Sh>(gs0, B, pb.K, H);
    return r;
  }
};
struct KokkosRange : KokkosBackend<flashrnn::kokkos::Strategy::range_scan, Shape::rank4_right> {
  static constexpr const char* name = "kokkos range_scan";
};
struct KokkosTeam : KokkosBackend<flashrnn::kokkos::Strategy::team_scan, Shape::rank3_left> {
  static constexpr const char* name = "kokkos team_scan";
};
struct KokkosLane : KokkosBackend<flashrnn::kokkos::Strategy::lane_sequential, Shape::rank4_strided> {
  static constexpr const char* name = "kokkos lane_sequential";
};


template <class S>
double max_abs_diff(const std::vector<S>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}
template <class S>
std::vector<double> widen(const std::vector<S>& a) {
  return std::vector<double>(a.begin(), a.end());
}
template <class S>
Problem<double> widen(const Problem<S>& pb) {
  Problem<double> w;
  w.B = pb.B; w.T = pb.T; w.H = pb.H; w.K = pb.K; w.G = pb.G; w.P = pb.P;
  w.u = widen(pb.u); w.p = widen(pb.p); w.s0 = widen(pb.s0); w.gs = widen(pb.gs); w.gf = widen(pb.gf);
  return w;
}

}  // namespace kt

// The backend list of every templated test case, spelled out so that Catch2
// names each instance after its backend ("... - kt::KokkosTeam") and ctest
// can run (and report) one backend at a time.
#define KT_BACKENDS kt::NativeSerial, kt::NativeThreaded, kt::KokkosRange, kt::KokkosTeam, kt::KokkosLane

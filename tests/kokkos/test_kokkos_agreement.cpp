// One suite for every backend: forward and gradients of every shipped cell
// agree with the fp64 sequential reference (and so with each other), in every
// solve mode, in double and float. Tolerances follow the house rule: a result
// may differ from the fp64 reference by a small multiple of what the plain
// sequential implementation in the same precision differs.
#include <algorithm>
#include <cmath>

#include "backends.hpp"
#include "catch.hpp"

namespace {
using namespace kt;
using flashrnn::Mode;
using flashrnn::SolverOptions;

/// The fp64 sequential reference of a problem (native backend, one thread).
template <class Cell, class S>
Forward<double> reference_forward(const Problem<S>& pb) {
  SolverOptions o;
  o.mode = Mode::sequential;
  return NativeSerial::forward<Cell, double>(widen(pb), o);
}

template <class S>
double precision_floor() {
  return sizeof(S) >= 8 ? 1e-12 : 1e-6;
}

template <class Backend, class Cell, class S>
void check_forward(index_t B, index_t T, index_t H, Mode mode, index_t chunk, std::uint64_t seed) {
  const auto pb = make_problem<Cell, S>(B, T, H, seed);
  const auto ref = reference_forward<Cell>(pb);
  SolverOptions seq;
  seq.mode = Mode::sequential;
  // What plain stepping in precision S differs from fp64 by.
  const auto plain = NativeSerial::forward<Cell, S>(pb, seq);
  const double base = max_abs_diff(plain.states, ref.states);
  SolverOptions o;
  o.mode = mode;
  o.chunk_length = chunk;
  const auto got = Backend::template forward<Cell, S>(pb, o);
  INFO(Backend::name << " " << Cell::name << " " << flashrnn::to_string(mode) << " S=" << sizeof(S)
                     << " B=" << B << " T=" << T << " H=" << H << " chunk=" << chunk << " base=" << base);
  CHECK(got.report.converged);
  CHECK(got.report.lanes == B * H);
  CHECK(got.report.mode_used == mode);
  CHECK(got.report.lanes_fell_back == 0);
  const double tol = 8 * base + 64 * precision_floor<S>();
  CHECK(max_abs_diff(got.states, ref.states) <= tol);
  CHECK(max_abs_diff(got.final_state, ref.final_state) <= tol);
}

template <class Backend, class Cell, class S>
void check_backward(index_t B, index_t T, index_t H, std::uint64_t seed) {
  const auto pb = make_problem<Cell, S>(B, T, H, seed);
  const auto pbd = widen(pb);
  const auto ref_fw = reference_forward<Cell>(pb);
  const auto ref = NativeSerial::backward<Cell, double>(pbd, ref_fw.states);
  // Plain precision-S baseline: native serial backward at the S trajectory.
  std::vector<S> states_s(ref_fw.states.begin(), ref_fw.states.end());
  const auto plain = NativeSerial::backward<Cell, S>(pb, states_s);
  const auto got = Backend::template backward<Cell, S>(pb, states_s);
  auto scale = [](const std::vector<double>& v) {
    double m = 1.0;
    for (double x : v) m = std::max(m, std::abs(x));
    return m;
  };
  INFO(Backend::name << " " << Cell::name << " S=" << sizeof(S) << " B=" << B << " T=" << T << " H=" << H);
  const double fl = 64 * precision_floor<S>();
  CHECK(max_abs_diff(got.gu, ref.gu) <= 8 * max_abs_diff(plain.gu, ref.gu) + fl * scale(ref.gu));
  CHECK(max_abs_diff(got.gp, ref.gp) <= 8 * max_abs_diff(plain.gp, ref.gp) + fl * scale(ref.gp));
  CHECK(max_abs_diff(got.gs0, ref.gs0) <= 8 * max_abs_diff(plain.gs0, ref.gs0) + fl * scale(ref.gs0));
}

template <class Backend, class Cell>
void forward_suite() {
  for (Mode mode : {Mode::sequential, Mode::newton, Mode::newton_chunked}) {
    check_forward<Backend, Cell, double>(2, 37, 3, mode, 0, 1);
    check_forward<Backend, Cell, float>(2, 37, 3, mode, 0, 2);
    check_forward<Backend, Cell, double>(1, 1, 1, mode, 0, 3);           // a single step
    check_forward<Backend, Cell, double>(3, 300, 2, mode, 7, 4);         // chunks not dividing T
    check_forward<Backend, Cell, float>(1, 513, 5, mode, 64, 5);
  }
}
}  // namespace

TEMPLATE_TEST_CASE("forward agrees with the fp64 sequential reference", "[kokkos][forward]", KT_BACKENDS) {
  SECTION("ParaGRU") { forward_suite<TestType, flashrnn::cells::ParaGRU>(); }
  SECTION("ParaLSTM") { forward_suite<TestType, flashrnn::cells::ParaLSTM>(); }
  SECTION("DiagTanh") { forward_suite<TestType, flashrnn::cells::DiagTanh>(); }
}

TEMPLATE_TEST_CASE("gradients agree with the fp64 sequential adjoint", "[kokkos][backward]", KT_BACKENDS) {
  SECTION("ParaGRU") {
    check_backward<TestType, flashrnn::cells::ParaGRU, double>(2, 41, 3, 11);
    check_backward<TestType, flashrnn::cells::ParaGRU, float>(2, 41, 3, 12);
  }
  SECTION("ParaLSTM") {
    check_backward<TestType, flashrnn::cells::ParaLSTM, double>(2, 41, 3, 13);
    check_backward<TestType, flashrnn::cells::ParaLSTM, float>(1, 300, 4, 14);
  }
  SECTION("DiagTanh") {
    check_backward<TestType, flashrnn::cells::DiagTanh, double>(3, 1, 2, 15);
    check_backward<TestType, flashrnn::cells::DiagTanh, float>(2, 129, 3, 16);
  }
}

TEMPLATE_TEST_CASE("Newton iteration counts match the native backend", "[kokkos][report]", KT_BACKENDS) {
  using Cell = flashrnn::cells::ParaLSTM;
  const auto pb = make_problem<Cell, double>(2, 200, 3, 21);
  for (Mode mode : {Mode::newton, Mode::newton_chunked}) {
    SolverOptions o;
    o.mode = mode;
    o.chunk_length = 16;
    const auto ref = NativeSerial::forward<Cell, double>(pb, o);
    const auto got = TestType::template forward<Cell, double>(pb, o);
    INFO(TestType::name << " " << flashrnn::to_string(mode));
    CHECK(got.report.iterations >= 2);
    CHECK(std::abs(got.report.iterations - ref.report.iterations) <= 1);
    CHECK(got.report.final_residual <= 1e-9);
  }
}

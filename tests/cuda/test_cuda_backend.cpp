// The CUDA backend against the CPU reference: forward (every mode, fp64, fp32,
// bf16, fp16, lengths 1 .. 2^20), backward, step, dispatch and bad inputs.
// HeadTanh4 (dense 4 x 4 heads) has its own cases, tagged [HeadTanh].
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "activation_error.hpp"
#include "cuda_test_support.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/flashrnn.hpp"

namespace {
using namespace flashrnn;
using flashrnn_test::DeviceBuffer;
using flashrnn_test::to_d;
using flashrnn_test::to_s;

/// Recurrent weights are divided by sqrt(fan_in) (a dense head mixes K states
/// per row; the diagonal cells one), so every cell sees trained-like weights.
template <class Cell>
struct fan_in {
  static constexpr int value = 1;
};
template <int K>
struct fan_in<cells::HeadTanh<K>> {
  static constexpr int value = K;
};

/// A random problem in the batch-first layout, inputs already representable in S.
template <class Cell>
struct Problem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  index_t B, T, H;
  std::vector<double> u, p, s0;
  Problem(index_t b, index_t t, index_t h, unsigned seed, double u_scale = 1.5) : B(b), T(t), H(h) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> U(-1.0, 1.0);
    u.resize(static_cast<size_t>(B * T * G * H));
    for (auto& x : u) x = u_scale * U(rng);
    p.resize(static_cast<size_t>(P * H));
    for (auto& x : p) x = 0.9 * U(rng) / std::sqrt(double(fan_in<Cell>::value));
    s0.resize(static_cast<size_t>(B * K * H));
    for (auto& x : s0) x = 0.5 * U(rng);
  }
  /// Rounds the inputs to S so that every precision solves the same problem.
  template <class S>
  void round_to() {
    for (auto* v : {&u, &p, &s0})
      for (auto& x : *v) x = to_d(to_s<S>(x));
  }
  std::vector<double> reference(Mode mode = Mode::sequential) const {
    std::vector<double> st(static_cast<size_t>(B * T * K * H));
    SolverOptions o;
    o.mode = mode;
    flashrnn::forward<Cell, double>(batch_first<const double>(u.data(), B, T, G, H),
                                    param_view<const double>(p.data(), P, H),
                                    state_view<const double>(s0.data(), B, K, H),
                                    batch_first(st.data(), B, T, K, H), {}, o);
    return st;
  }
  std::vector<float> reference_fp32() const {
    std::vector<float> uf(u.begin(), u.end()), pf(p.begin(), p.end()), sf(s0.begin(), s0.end());
    std::vector<float> st(static_cast<size_t>(B * T * K * H));
    SolverOptions o;
    o.mode = Mode::sequential;
    flashrnn::forward<Cell, float>(batch_first<const float>(uf.data(), B, T, G, H),
                                   param_view<const float>(pf.data(), P, H),
                                   state_view<const float>(sf.data(), B, K, H),
                                   batch_first(st.data(), B, T, K, H), {}, o);
    return st;
  }

  template <class S>
  struct Run {
    std::vector<S> states, final_state;
    SolveReport report;
  };
  template <class S>
  Run<S> gpu(const SolverOptions& o) const {
    std::vector<S> uh(u.size()), ph(p.size()), sh(s0.size());
    std::transform(u.begin(), u.end(), uh.begin(), to_s<S>);
    std::transform(p.begin(), p.end(), ph.begin(), to_s<S>);
    std::transform(s0.begin(), s0.end(), sh.begin(), to_s<S>);
    DeviceBuffer<S> du(uh.size()), dp(ph.size()), ds0(sh.size()),
        dst(static_cast<size_t>(B * T * K * H)), dfin(static_cast<size_t>(B * K * H));
    du.upload(uh);
    dp.upload(ph);
    ds0.upload(sh);
    Run<S> r;
    r.report = cuda::forward<Cell, S>(batch_first<const S>(du.ptr, B, T, G, H),
                                      param_view<const S>(dp.ptr, P, H),
                                      state_view<const S>(ds0.ptr, B, K, H),
                                      batch_first(dst.ptr, B, T, K, H),
                                      state_view(dfin.ptr, B, K, H), o);
    r.states = dst.download();
    r.final_state = dfin.download();
    return r;
  }
};

template <class V>
double max_err(const V& got, const std::vector<double>& ref) {
  double e = 0;
  for (size_t i = 0; i < ref.size(); ++i) e = std::max(e, std::fabs(to_d(got[i]) - ref[i]));
  return e;
}

/// Last step's state of every lane from a batch-first trajectory.
std::vector<double> last_states(const std::vector<double>& st, index_t B, index_t T, int K, index_t H) {
  std::vector<double> out(static_cast<size_t>(B * K * H));
  for (index_t b = 0; b < B; ++b)
    for (index_t i = 0; i < K * H; ++i) out[static_cast<size_t>(b * K * H + i)] = st[static_cast<size_t>((b * T + T - 1) * K * H + i)];
  return out;
}

const Mode all_modes[] = {Mode::sequential, Mode::newton, Mode::newton_chunked, Mode::automatic};

template <class Cell>
void check_fp64_all_modes(index_t B, index_t T, index_t H) {
  Problem<Cell> pr(B, T, H, 1234 + static_cast<unsigned>(T));
  const auto ref = pr.reference();
  const auto fin = last_states(ref, B, T, Cell::state_dim, H);
  for (Mode m : all_modes)
    for (index_t chunk : {index_t(0), index_t(8)}) {
      SolverOptions o;
      o.mode = m;
      o.chunk_length = chunk;
      const auto r = pr.template gpu<double>(o);
      INFO(Cell::name << " T=" << T << " B=" << B << " H=" << H << " mode=" << to_string(m)
                      << " chunk=" << chunk << " iters=" << r.report.iterations);
      CHECK(r.report.converged);
      CHECK(r.report.lanes_fell_back == 0);
      CHECK(max_err(r.states, ref) <= 1e-9);
      CHECK(max_err(r.final_state, fin) <= 1e-9);
    }
}
}  // namespace

TEST_CASE("cuda forward fp64 equals the CPU sequential reference", "[cuda][forward]") {
  for (index_t T : {1, 2, 3, 17, 1000}) {
    check_fp64_all_modes<cells::ParaGRU>(2, T, 37);
    check_fp64_all_modes<cells::ParaLSTM>(2, T, 37);
  }
  check_fp64_all_modes<cells::DiagTanh>(3, 300, 5);
  check_fp64_all_modes<cells::ParaGRU>(1, 100000, 3);   // few lanes, many segments
  check_fp64_all_modes<cells::ParaLSTM>(2, 100000, 1);
}

template <class Cell, class S>
void check_low_precision(index_t B, index_t T, index_t H, double slack) {
  Problem<Cell> pr(B, T, H, 99 + static_cast<unsigned>(T));
  pr.template round_to<S>();
  const auto ref = pr.reference();
  SolverOptions seq;
  seq.mode = Mode::sequential;
  const double base = max_err(pr.template gpu<S>(seq).states, ref);
  for (Mode m : {Mode::newton, Mode::newton_chunked, Mode::automatic}) {
    SolverOptions o;
    o.mode = m;
    const auto r = pr.template gpu<S>(o);
    const double err = max_err(r.states, ref);
    INFO(Cell::name << " S=" << sizeof(S) << "B T=" << T << " mode=" << to_string(m) << " err=" << err
                    << " sequential err=" << base << " iters=" << r.report.iterations);
    CHECK(r.report.converged);
    CHECK(err <= 2.0 * base + slack);
  }
}

TEST_CASE("cuda forward fp32 / bf16 / fp16 within the error of plain stepping", "[cuda][forward]") {
  for (index_t T : {1, 17, 1000, 100000}) {
    const index_t H = T >= 100000 ? 3 : 64;
    {
      Problem<cells::ParaGRU> pr(2, T, H, 7);
      const auto ref = pr.reference();
      const double base = max_err(pr.reference_fp32(), ref);
      for (Mode m : all_modes) {
        SolverOptions o;
        o.mode = m;
        const auto r = pr.gpu<float>(o);
        const double err = max_err(r.states, ref);
        INFO("ParaGRU fp32 T=" << T << " mode=" << to_string(m) << " err=" << err << " cpu fp32 err=" << base);
        CHECK(err <= 4.0 * base + 2e-5);
      }
    }
    check_low_precision<cells::ParaLSTM, float>(2, T, H, 2e-5);
    check_low_precision<cells::ParaGRU, __nv_bfloat16>(2, T, H, 2e-3);
    check_low_precision<cells::ParaLSTM, __nv_bfloat16>(2, T, H, 2e-3);
    check_low_precision<cells::ParaGRU, __half>(2, T, H, 5e-4);
  }
}

/// Spacing of S's values around v (bf16: 8 significant bits, fp16: 11).
template <class S>
double spacing(double v) {
  const bool bf16 = std::is_same<S, __nv_bfloat16>::value;
  int e = 0;
  std::frexp(v, &e);
  return std::max(std::ldexp(1.0, e - (bf16 ? 8 : 11)), bf16 ? 0x1p-133 : 0x1p-24);
}

/// 16-bit storage keeps the state in fp32 registers and rounds only what it
/// writes, so every written state should be the fp64 trajectory rounded to
/// S, but where the fp32 arithmetic lands across a rounding tie: then it is
/// the other neighbour, and that must be rare. (Near zero a state computed
/// from O(1) terms carries fp32's absolute error, up to ~2^-21, which can
/// exceed S's spacing there; that much is allowed on top of one spacing.)
/// Loose activations fail this: an error of 2^-11, tanh.approx's, would make
/// a large share of fp16 values the other neighbour.
template <class Cell, class S>
void check_rounded_trajectory(index_t T, index_t H, double u_scale) {
  Problem<Cell> pr(2, T, H, 5 + static_cast<unsigned>(T), u_scale);
  pr.template round_to<S>();
  const auto ref = pr.reference();
  SolverOptions o;
  o.mode = Mode::sequential;
  const auto r = pr.template gpu<S>(o);
  std::size_t ties = 0, far = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double got = to_d(r.states[i]);
    if (got == to_d(to_s<S>(ref[i]))) continue;
    ++ties;
    if (std::fabs(got - ref[i]) > spacing<S>(ref[i]) + 0x1p-21 * std::max(1.0, std::fabs(ref[i]))) ++far;
  }
  const double share = double(ties) / double(ref.size());
  INFO(Cell::name << (std::is_same<S, __half>::value ? " fp16" : " bf16") << " T=" << T << " u_scale=" << u_scale
                  << ": " << ties << " of " << ref.size() << " states are the other neighbour (" << share
                  << "), " << far << " farther");
  CHECK(far == 0);
  CHECK(share <= 0.002);  // measured on an H200: <= 5e-4 (fp16), <= 1.2e-4 (bf16)
}

TEST_CASE("cuda bf16 / fp16 states are the fp64 trajectory rounded to storage, ties aside", "[cuda][forward][rounding]") {
  for (index_t T : {1000, 20000})
    for (double u_scale : {1.5, 40.0}) {  // 40: sigmoid arguments far into saturation
      check_rounded_trajectory<cells::ParaGRU, __nv_bfloat16>(T, 64, u_scale);
      check_rounded_trajectory<cells::ParaGRU, __half>(T, 64, u_scale);
      check_rounded_trajectory<cells::ParaLSTM, __nv_bfloat16>(T, 64, u_scale);
      check_rounded_trajectory<cells::ParaLSTM, __half>(T, 64, u_scale);
    }
}

TEST_CASE("cuda 16-bit sigmoid over every float", "[cuda][rounding]") {
  const auto e = flashrnn_test::measure_sigmoid_16bit();
  INFO("max relative error " << e.max_rel << " (at x = " << e.worst_x << "), wrong results " << e.wrong);
  WARN("16-bit sigmoid: max relative error " << e.max_rel << " at x = " << e.worst_x);
  CHECK(e.wrong == 0);
  CHECK(e.max_rel <= 1e-5);
}

TEST_CASE("cuda 16-bit tanh over every float", "[cuda][rounding]") {
  const auto e = flashrnn_test::measure_tanh_16bit();
  INFO("max relative error " << e.max_rel << " (at x = " << e.worst_x << "), wrong results " << e.wrong);
  WARN("16-bit tanh: max relative error " << e.max_rel << " at x = " << e.worst_x);
  CHECK(e.wrong == 0);
  CHECK(e.max_rel <= 1e-5);  // 1/24 of fp16's smallest relative half-ulp, as for sigmoid
}

TEST_CASE("cuda forward of 2^20 steps", "[cuda][forward][long]") {
  const index_t T = index_t(1) << 20;
  Problem<cells::ParaGRU> pr(1, T, 2, 2024);
  pr.round_to<float>();
  const auto ref = pr.reference();
  const double base = max_err(pr.reference_fp32(), ref);
  for (Mode m : {Mode::newton_chunked, Mode::newton, Mode::sequential}) {
    SolverOptions o;
    o.mode = m;
    const auto r = pr.gpu<float>(o);
    const double err = max_err(r.states, ref);
    INFO("mode=" << to_string(m) << " err=" << err << " base=" << base << " iters=" << r.report.iterations);
    CHECK(r.report.converged);
    CHECK(err <= 4.0 * base + 2e-5);
  }
}

namespace {
template <class Cell>
void check_backward(index_t B, index_t T, index_t H) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  Problem<Cell> pr(B, T, H, 31 + static_cast<unsigned>(T));
  const auto st = pr.reference();
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> U(-1, 1);
  std::vector<double> gs(st.size()), gf(static_cast<size_t>(B * K * H));
  for (auto& x : gs) x = U(rng);
  for (auto& x : gf) x = U(rng);
  std::vector<double> gu(pr.u.size()), gp(pr.p.size()), g0(pr.s0.size());
  flashrnn::backward<Cell, double>(
      batch_first<const double>(pr.u.data(), B, T, G, H), param_view<const double>(pr.p.data(), P, H),
      state_view<const double>(pr.s0.data(), B, K, H), batch_first<const double>(st.data(), B, T, K, H),
      batch_first<const double>(gs.data(), B, T, K, H), state_view<const double>(gf.data(), B, K, H),
      batch_first(gu.data(), B, T, G, H), param_view(gp.data(), P, H), state_view(g0.data(), B, K, H));

  DeviceBuffer<double> du(pr.u.size()), dp(pr.p.size()), ds0(pr.s0.size()), dst(st.size()),
      dgs(gs.size()), dgf(gf.size()), dgu(gu.size()), dgp(gp.size()), dg0(g0.size());
  du.upload(pr.u);
  dp.upload(pr.p);
  ds0.upload(pr.s0);
  dst.upload(st);
  dgs.upload(gs);
  dgf.upload(gf);
  // The tuned kernel (public entry point), then each adjoint kernel forced:
  // the exact reverse sweep (segmented where lanes are few) and the parallel adjoint.
  using cuda::detail::AdjointKernel;
  for (AdjointKernel kernel : {AdjointKernel::tuned, AdjointKernel::sequential, AdjointKernel::parallel}) {
    std::vector<double> first_gp;
    for (int rep = 0; rep < 2; ++rep) {
      const auto uv = batch_first<const double>(du.ptr, B, T, G, H);
      const auto pv = param_view<const double>(dp.ptr, P, H);
      const auto s0v = state_view<const double>(ds0.ptr, B, K, H);
      const auto stv = batch_first<const double>(dst.ptr, B, T, K, H);
      const auto gsv = batch_first<const double>(dgs.ptr, B, T, K, H);
      const auto gfv = state_view<const double>(dgf.ptr, B, K, H);
      if (kernel == AdjointKernel::tuned)
        cuda::backward<Cell, double>(uv, pv, s0v, stv, gsv, gfv, batch_first(dgu.ptr, B, T, G, H),
                                     param_view(dgp.ptr, P, H), state_view(dg0.ptr, B, K, H));
      else
        cuda::detail::backward_with<Cell, double>(uv, pv, s0v, stv, gsv, gfv, batch_first(dgu.ptr, B, T, G, H),
                                                  param_view(dgp.ptr, P, H), state_view(dg0.ptr, B, K, H),
                                                  {kernel, 0, -1}, nullptr);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const auto hgu = dgu.download(), hgp = dgp.download(), hg0 = dg0.download();
      INFO(Cell::name << " backward B=" << B << " T=" << T << " H=" << H << " kernel=" << static_cast<int>(kernel));
      CHECK(max_err(hgu, gu) <= 1e-9);
      CHECK(max_err(hg0, g0) <= 1e-9);
      double scale = 1;
      for (double x : gp) scale = std::max(scale, std::fabs(x));
      CHECK(max_err(hgp, gp) <= 1e-9 * scale);
      if (rep == 0) first_gp = hgp;
      else CHECK(first_gp == hgp);  // deterministic run to run
    }
  }
}
}  // namespace

TEST_CASE("cuda backward equals the CPU backward", "[cuda][backward]") {
  for (index_t T : {1, 2, 3, 17, 1000, 20000}) {
    check_backward<cells::ParaGRU>(2, T, 37);
    check_backward<cells::ParaLSTM>(2, T, 37);
  }
  check_backward<cells::ParaGRU>(1, 100000, 2);
  check_backward<cells::ParaGRU>(64, 70, 1024);  // many lanes: one segment of the sweep a lane
  check_backward<cells::DiagTanh>(2, 500, 9);
}

TEST_CASE("cuda step equals the CPU step, also in place", "[cuda][step]") {
  using Cell = cells::ParaLSTM;
  const index_t B = 3, H = 50;
  Problem<Cell> pr(B, 1, H, 77);
  std::vector<double> ref(pr.s0.size());
  flashrnn::step<Cell, double>(batch_first<const double>(pr.u.data(), B, 1, 3, H),
                               param_view<const double>(pr.p.data(), 5, H),
                               state_view<const double>(pr.s0.data(), B, 2, H),
                               state_view(ref.data(), B, 2, H));
  DeviceBuffer<double> du(pr.u.size()), dp(pr.p.size()), ds(pr.s0.size());
  du.upload(pr.u);
  dp.upload(pr.p);
  ds.upload(pr.s0);
  cuda::step<Cell, double>(batch_first<const double>(du.ptr, B, 1, 3, H), param_view<const double>(dp.ptr, 5, H),
                           state_view<const double>(ds.ptr, B, 2, H), state_view(ds.ptr, B, 2, H));
  CHECK(max_err(ds.download(), ref) <= 1e-14);
}

TEST_CASE("cuda non-convergence policies", "[cuda][forward]") {
  // DiagTanh with a = 3 is the stress case: one Newton iteration is not enough.
  using Cell = cells::DiagTanh;
  Problem<Cell> pr(1, 4000, 8, 3);
  for (auto& a : pr.p) a = 3.0;
  const auto ref = pr.reference();
  SolverOptions o;
  o.mode = Mode::newton_chunked;
  o.max_iters = 1;
  const auto r = pr.gpu<double>(o);
  CHECK_FALSE(r.report.converged);
  CHECK(r.report.lanes_fell_back > 0);
  CHECK(max_err(r.states, ref) <= 1e-9);  // the fallback is exact stepping
  o.on_nonconvergence = OnNonConvergence::throw_error;
  CHECK_THROWS_AS(pr.gpu<double>(o), ConvergenceError);
  o.on_nonconvergence = OnNonConvergence::keep_last_iterate;
  CHECK_FALSE(pr.gpu<double>(o).report.converged);
}

TEST_CASE("cuda bad inputs give clear errors", "[cuda][errors]") {
  using Cell = cells::ParaGRU;
  const index_t B = 2, T = 10, H = 4;
  DeviceBuffer<float> du(B * T * 3 * H), dp(3 * H), dst(B * T * H);
  std::vector<float> host(B * T * 3 * H, 0.f), out(B * T * H);
  du.upload(host);
  dp.upload(std::vector<float>(3 * H, 0.1f));
  auto fwd = [&](View<const float> u, View<const float> p, View<float> st) {
    return cuda::forward<Cell, float>(u, p, {}, st, {});
  };
  const auto u = batch_first<const float>(du.ptr, B, T, 3, H);
  const auto p = param_view<const float>(dp.ptr, 3, H);
  const auto st = batch_first(dst.ptr, B, T, 1, H);
  CHECK_NOTHROW(fwd(u, p, st));
  // Host memory.
  try {
    fwd(batch_first<const float>(host.data(), B, T, 3, H), p, st);
    FAIL("expected InvalidArgument");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("device memory") != std::string::npos);
    CHECK(std::string(e.what()).find("'u'") != std::string::npos);
  }
  CHECK_THROWS_AS(fwd(u, p, batch_first(out.data(), B, T, 1, H)), InvalidArgument);
  // Wrong shapes, no output, aliasing.
  CHECK_THROWS_AS(fwd(batch_first<const float>(du.ptr, B, T, 2, H), p, st), InvalidArgument);
  CHECK_THROWS_AS(fwd(u, param_view<const float>(dp.ptr, 2, H), st), InvalidArgument);
  CHECK_THROWS_AS(fwd(u, p, View<float>{}), InvalidArgument);
  CHECK_THROWS_AS(fwd(u, p, batch_first(const_cast<float*>(du.ptr), B, T, 1, H)), InvalidArgument);
  SolverOptions bad;
  bad.max_iters = 0;
  CHECK_THROWS_AS((cuda::forward<Cell, float>(u, p, {}, st, {}, bad)), InvalidArgument);
  // Non-finite inputs are found by the kernels and reported after the solve.
  host[5] = std::nanf("");
  du.upload(host);
  for (Mode m : all_modes) {
    SolverOptions o;
    o.mode = m;
    CHECK_THROWS_AS((cuda::forward<Cell, float>(u, p, {}, st, {}, o)), InvalidArgument);
  }
  // Dispatch: dtype and device mismatches.
  Tensor tu{du.ptr, DType::float32, Device::cuda, 0, {T, B, 3, H}, {3 * H, T * 3 * H, H, 1}};
  Tensor tp{dp.ptr, DType::float32, Device::cuda, 0, {1, 1, 3, H}, {0, 0, H, 1}};
  Tensor ts{dst.ptr, DType::float64, Device::cuda, 0, {T, B, 1, H}, {H, T * H, H, 1}};
  CHECK_THROWS_AS(cuda::dispatch_forward(CellKind::para_gru, tu, tp, {}, ts, {}), InvalidArgument);
  ts.dtype = DType::float32;
  ts.device = Device::cpu;
  CHECK_THROWS_AS(cuda::dispatch_forward(CellKind::para_gru, tu, tp, {}, ts, {}), InvalidArgument);
}

TEST_CASE("cuda dispatch runs every cell and dtype", "[cuda][dispatch]") {
  const index_t B = 2, T = 50, H = 8;
  for (CellKind cell : {CellKind::para_gru, CellKind::para_lstm, CellKind::diag_tanh, CellKind::head_tanh4}) {
    const CellDims d = cell == CellKind::para_gru    ? CellDims{1, 3, 3}
                       : cell == CellKind::para_lstm ? CellDims{2, 3, 5}
                       : cell == CellKind::diag_tanh ? CellDims{1, 1, 1}
                                                     : CellDims{4, 4, 16};
    for (DType dt : {DType::float32, DType::float64, DType::bfloat16, DType::float16}) {
      const size_t es = dt == DType::float64 ? 8 : dt == DType::float32 ? 4 : 2;
      void *u, *p, *s, *gs, *gu, *gp;
      REQUIRE(cudaMalloc(&u, B * T * d.input_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMemset(u, 0, B * T * d.input_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMalloc(&p, d.param_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMemset(p, 0, d.param_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMalloc(&s, B * T * d.state_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMalloc(&gs, B * T * d.state_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMemset(gs, 0, B * T * d.state_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMalloc(&gu, B * T * d.input_dim * H * es) == cudaSuccess);
      REQUIRE(cudaMalloc(&gp, d.param_dim * H * es) == cudaSuccess);
      auto bf = [&](void* ptr, index_t C) {
        return Tensor{ptr, dt, Device::cuda, 0, {T, B, C, H}, {C * H, T * C * H, H, 1}};
      };
      const Tensor tp{p, dt, Device::cuda, 0, {1, 1, d.param_dim, H}, {0, 0, H, 1}};
      const auto rep = cuda::dispatch_forward(cell, bf(u, d.input_dim), tp, {}, bf(s, d.state_dim), {});
      CHECK(rep.converged);
      CHECK_NOTHROW(cuda::dispatch_backward(cell, bf(u, d.input_dim), tp, {}, bf(s, d.state_dim),
                                            bf(gs, d.state_dim), {}, bf(gu, d.input_dim),
                                            Tensor{gp, dt, Device::cuda, 0, {1, 1, d.param_dim, H}, {0, 0, H, 1}}, {}));
      Tensor u1{u, dt, Device::cuda, 0, {1, B, d.input_dim, H}, {0, d.input_dim * H, H, 1}};
      Tensor s1{s, dt, Device::cuda, 0, {1, B, d.state_dim, H}, {0, d.state_dim * H, H, 1}};
      CHECK_NOTHROW(cuda::dispatch_step(cell, u1, tp, s1, s1));
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      for (void* ptr : {u, p, s, gs, gu, gp}) cudaFree(ptr);
    }
  }
}

TEST_CASE("cuda small shapes (for compute-sanitizer)", "[cuda][sanitize]") {
  for (index_t T : {1, 17, 600}) {
    check_fp64_all_modes<cells::ParaGRU>(1, T, 3);
    check_fp64_all_modes<cells::ParaLSTM>(2, T, 33);
    check_backward<cells::ParaGRU>(1, T, 3);
    check_backward<cells::ParaLSTM>(2, T, 33);
  }
}

// ---- HeadTanh4: dense 4 x 4 recurrence per head (K = G = 4, P = 16) ----------

namespace {
using Head = cells::HeadTanh4;

/// fp32 GPU gradients against the CPU fp64 adjoint at the same (fp32-rounded)
/// trajectory: error <= 4 x the CPU fp32 adjoint's error + a floor.
void check_backward_fp32_head(index_t B, index_t T, index_t H) {
  constexpr int K = Head::state_dim, G = Head::input_dim, P = Head::param_dim;
  Problem<Head> pr(B, T, H, 41 + static_cast<unsigned>(T));
  pr.round_to<float>();
  std::vector<double> st = pr.reference();
  for (auto& x : st) x = static_cast<float>(x);
  std::mt19937_64 rng(6);
  std::uniform_real_distribution<double> U(-1, 1);
  std::vector<double> gs(st.size()), gf(static_cast<size_t>(B * K * H));
  for (auto& x : gs) x = static_cast<float>(U(rng));
  for (auto& x : gf) x = static_cast<float>(U(rng));
  struct Grads {
    std::vector<double> u, p, s0;
  };
  auto cpu = [&](auto real) {
    using R = decltype(real);
    std::vector<R> u(pr.u.begin(), pr.u.end()), p(pr.p.begin(), pr.p.end()), s0(pr.s0.begin(), pr.s0.end()),
        s(st.begin(), st.end()), g(gs.begin(), gs.end()), f(gf.begin(), gf.end()), du(u.size()), dp(p.size()),
        ds0(s0.size());
    flashrnn::backward<Head, R>(
        batch_first<const R>(u.data(), B, T, G, H), param_view<const R>(p.data(), P, H),
        state_view<const R>(s0.data(), B, K, H), batch_first<const R>(s.data(), B, T, K, H),
        batch_first<const R>(g.data(), B, T, K, H), state_view<const R>(f.data(), B, K, H),
        batch_first(du.data(), B, T, G, H), param_view(dp.data(), P, H), state_view(ds0.data(), B, K, H));
    return Grads{{du.begin(), du.end()}, {dp.begin(), dp.end()}, {ds0.begin(), ds0.end()}};
  };
  const Grads g64 = cpu(double{}), g32 = cpu(float{});

  auto up = [](const std::vector<double>& h) {
    std::vector<float> f(h.begin(), h.end());
    return f;
  };
  DeviceBuffer<float> du(pr.u.size()), dp(pr.p.size()), ds0(pr.s0.size()), dst(st.size()), dgs(gs.size()),
      dgf(gf.size()), dgu(pr.u.size()), dgp(pr.p.size()), dg0(pr.s0.size());
  du.upload(up(pr.u));
  dp.upload(up(pr.p));
  ds0.upload(up(pr.s0));
  dst.upload(up(st));
  dgs.upload(up(gs));
  dgf.upload(up(gf));
  cuda::backward<Head, float>(
      batch_first<const float>(du.ptr, B, T, G, H), param_view<const float>(dp.ptr, P, H),
      state_view<const float>(ds0.ptr, B, K, H), batch_first<const float>(dst.ptr, B, T, K, H),
      batch_first<const float>(dgs.ptr, B, T, K, H), state_view<const float>(dgf.ptr, B, K, H),
      batch_first(dgu.ptr, B, T, G, H), param_view(dgp.ptr, P, H), state_view(dg0.ptr, B, K, H));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  auto judge = [](const char* what, const std::vector<float>& gpu, const std::vector<double>& ref,
                  const std::vector<double>& cpu32) {
    double scale = 1;
    for (double x : ref) scale = std::max(scale, std::fabs(x));
    const double base = max_err(cpu32, ref), err = max_err(gpu, ref);
    INFO(what << ": gpu fp32 err " << err << ", cpu fp32 err " << base << ", scale " << scale);
    CHECK(err <= 4.0 * base + 1e-5 * scale);
  };
  INFO("HeadTanh4 fp32 backward B=" << B << " T=" << T << " H=" << H);
  judge("grad_u", dgu.download(), g64.u, g32.u);
  judge("grad_p", dgp.download(), g64.p, g32.p);
  judge("grad_s0", dg0.download(), g64.s0, g32.s0);
}
}  // namespace

TEST_CASE("cuda HeadTanh4 forward fp32 equals CPU stepping, every mode", "[cuda][forward][HeadTanh]") {
  for (index_t T : {1, 2, 17, 1000, 100000}) {
    const index_t B = 2, H = T >= 100000 ? 3 : 37;
    Problem<Head> pr(B, T, H, 11 + static_cast<unsigned>(T));
    pr.round_to<float>();
    const auto ref = pr.reference();
    const auto fin = last_states(ref, B, T, Head::state_dim, H);
    const double base = max_err(pr.reference_fp32(), ref);
    for (Mode m : all_modes)
      for (index_t chunk : {index_t(0), index_t(1), index_t(8), index_t(32)}) {
        if (m != Mode::newton_chunked && chunk != 0) continue;
        SolverOptions o;
        o.mode = m;
        o.chunk_length = chunk;
        const auto r = pr.gpu<float>(o);
        const double err = max_err(r.states, ref);
        INFO("HeadTanh4 fp32 T=" << T << " mode=" << to_string(m) << " chunk=" << chunk << " err=" << err
                                 << " cpu fp32 err=" << base << " iters=" << r.report.iterations);
        CHECK(r.report.converged);
        CHECK(r.report.lanes_fell_back == 0);
        CHECK(err <= 4.0 * base + 2e-5);
        CHECK(max_err(r.final_state, fin) <= 4.0 * base + 2e-5);
      }
  }
}

TEST_CASE("cuda HeadTanh4 forward bf16 / fp16 within the error of plain stepping", "[cuda][forward][HeadTanh]") {
  for (index_t T : {1, 17, 1000, 100000}) {
    const index_t H = T >= 100000 ? 3 : 64;
    check_low_precision<Head, float>(2, T, H, 2e-5);
    check_low_precision<Head, __nv_bfloat16>(2, T, H, 2e-3);
    check_low_precision<Head, __half>(2, T, H, 5e-4);
  }
}

TEST_CASE("cuda HeadTanh4 forward fp64 equals the CPU sequential reference", "[cuda][forward][HeadTanh]") {
  for (index_t T : {1, 2, 3, 17, 1000}) check_fp64_all_modes<Head>(2, T, 37);
  check_fp64_all_modes<Head>(1, 100000, 3);
}

TEST_CASE("cuda HeadTanh4 backward equals the CPU backward", "[cuda][backward][HeadTanh]") {
  // Few and many lanes, short and long sequences (check_backward also forces
  // each adjoint kernel; check_backward_fp32_head runs the tuned one).
  for (index_t T : {1, 17, 1000, 20000}) check_backward_fp32_head(2, T, 37);
  check_backward_fp32_head(1, 100000, 2);
  check_backward_fp32_head(64, 70, 1024);
  for (index_t T : {1, 2, 17, 1000}) check_backward<Head>(2, T, 37);
  check_backward<Head>(64, 70, 1024);
}

TEST_CASE("cuda HeadTanh4 step equals the CPU step, also in place", "[cuda][step][HeadTanh]") {
  const index_t B = 3, H = 50;
  constexpr int K = Head::state_dim, G = Head::input_dim, P = Head::param_dim;
  Problem<Head> pr(B, 1, H, 78);
  pr.round_to<float>();
  std::vector<float> u(pr.u.begin(), pr.u.end()), p(pr.p.begin(), pr.p.end()), s(pr.s0.begin(), pr.s0.end()),
      ref(s.size());
  flashrnn::step<Head, float>(batch_first<const float>(u.data(), B, 1, G, H), param_view<const float>(p.data(), P, H),
                              state_view<const float>(s.data(), B, K, H), state_view(ref.data(), B, K, H));
  DeviceBuffer<float> du(u.size()), dp(p.size()), ds(s.size()), dn(s.size());
  du.upload(u);
  dp.upload(p);
  ds.upload(s);
  cuda::step<Head, float>(batch_first<const float>(du.ptr, B, 1, G, H), param_view<const float>(dp.ptr, P, H),
                          state_view<const float>(ds.ptr, B, K, H), state_view(dn.ptr, B, K, H));
  const std::vector<double> refd(ref.begin(), ref.end());
  CHECK(max_err(dn.download(), refd) <= 1e-6);
  cuda::step<Head, float>(batch_first<const float>(du.ptr, B, 1, G, H), param_view<const float>(dp.ptr, P, H),
                          state_view<const float>(ds.ptr, B, K, H), state_view(ds.ptr, B, K, H));
  CHECK(max_err(ds.download(), refd) <= 1e-6);
}

TEST_CASE("cuda HeadTanh4 dispatch and shape errors", "[cuda][dispatch][HeadTanh]") {
  const index_t B = 2, T = 20, H = 6;
  DeviceBuffer<float> du(B * T * 4 * H), dp(16 * H), dst(B * T * 4 * H);
  du.upload(std::vector<float>(du.n, 0.25f));
  dp.upload(std::vector<float>(dp.n, 0.1f));
  const auto u = batch_first<const float>(du.ptr, B, T, 4, H);
  const auto st = batch_first(dst.ptr, B, T, 4, H);
  CHECK_NOTHROW(cuda::forward<Head, float>(u, param_view<const float>(dp.ptr, 16, H), {}, st, {}));
  try {  // K parameters instead of K * K
    cuda::forward<Head, float>(u, param_view<const float>(dp.ptr, 4, H), {}, st, {});
    FAIL("expected InvalidArgument");
  } catch (const InvalidArgument& e) {
    CHECK(std::string(e.what()).find("'p'") != std::string::npos);
    CHECK(std::string(e.what()).find("16") != std::string::npos);
  }
  CHECK_THROWS_AS((cuda::forward<Head, float>(batch_first<const float>(du.ptr, B, T, 3, H),
                                              param_view<const float>(dp.ptr, 16, H), {}, st, {})),
                  InvalidArgument);
}

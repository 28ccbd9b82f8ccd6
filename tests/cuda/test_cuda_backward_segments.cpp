// The segmented sequential backward (backends/cuda/src/sequential_backward.cuh):
// cutting each lane's reverse sweep into C segments whose hand-overs are
// guessed and then corrected must give bitwise the grad_u and grad_s0 of one
// thread sweeping the whole sequence (C = 1), and grad_p equal to rounding
// (it is summed per segment), for every cell and storage type, segment counts
// that do not divide T, partial warps of lanes, burn-in 0 (every guess wrong)
// to reaching T (every guess exact), and an adjoint that never forgets (every
// round of corrections needed). The parallel adjoint's grad_p agrees within
// rounding (test_cuda_backend.cpp checks every kernel against the CPU).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "catch.hpp"
#include "cuda_test_support.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/cuda/tuning.hpp"
#include "flashrnn/flashrnn.hpp"

namespace {
using namespace flashrnn;
using cuda::detail::AdjointKernel;
using cuda::detail::AdjointOverrides;
using flashrnn_test::DeviceBuffer;
using flashrnn_test::to_d;
using flashrnn_test::to_s;

enum class Inputs {
  random,  // contracting: the adjoint forgets within tens of steps
  hold,    // ParaGRU with the update gate shut: A = 1, the adjoint never forgets
};

template <class Cell, class S>
struct Problem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  index_t B, T, H;
  DeviceBuffer<S> u, p, s0, st, gs, gf, gu, gp, g0;

  Problem(index_t b, index_t t, index_t h, Inputs inputs, unsigned seed)
      : B(b),
        T(t),
        H(h),
        u(b * t * G * h),
        p(P * h),
        s0(b * K * h),
        st(b * t * K * h),
        gs(b * t * K * h),
        gf(b * K * h),
        gu(b * t * G * h),
        gp(P * h),
        g0(b * K * h) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> U(-1.0, 1.0);
    std::vector<S> uh(u.n), ph(p.n), sh(s0.n), gsh(gs.n), gfh(gf.n);
    for (std::size_t i = 0; i < uh.size(); ++i) {
      double x = 1.5 * U(rng);
      if (inputs == Inputs::hold && (i / H) % G == 0)
        x = -30.0;  // batch_first: gate 0 of ParaGRU is u_z
      uh[i] = to_s<S>(x);
    }
    const double scale = 0.9 / (P > K ? K : 1);
    for (auto& x : ph) x = to_s<S>(scale * U(rng));
    for (auto& x : sh) x = to_s<S>(0.5 * U(rng));
    for (auto& x : gsh) x = to_s<S>(U(rng));
    for (auto& x : gfh) x = to_s<S>(U(rng));
    u.upload(uh);
    p.upload(ph);
    s0.upload(sh);
    gs.upload(gsh);
    gf.upload(gfh);
    SolverOptions o;
    o.mode = Mode::sequential;
    cuda::forward<Cell, S>(batch_first<const S>(u.ptr, B, T, G, H),
                           param_view<const S>(p.ptr, P, H), state_view<const S>(s0.ptr, B, K, H),
                           batch_first(st.ptr, B, T, K, H), {}, o);
  }

  struct Grads {
    std::vector<unsigned char> u_s0;  // grad_u then grad_s0, raw bytes
    std::vector<double> p;
  };

  Grads backward(AdjointOverrides forced) {
    for (auto* b : {&gu, &g0}) REQUIRE(cudaMemset(b->ptr, 0xff, b->n * sizeof(S)) == cudaSuccess);
    REQUIRE(cudaMemset(gp.ptr, 0xff, gp.n * sizeof(S)) == cudaSuccess);
    cuda::detail::backward_with<Cell, S>(
        batch_first<const S>(u.ptr, B, T, G, H), param_view<const S>(p.ptr, P, H),
        state_view<const S>(s0.ptr, B, K, H), batch_first<const S>(st.ptr, B, T, K, H),
        batch_first<const S>(gs.ptr, B, T, K, H), state_view<const S>(gf.ptr, B, K, H),
        batch_first(gu.ptr, B, T, G, H), param_view(gp.ptr, P, H), state_view(g0.ptr, B, K, H),
        forced, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const auto a = gu.download(), c = g0.download(), q = gp.download();
    Grads out;
    out.u_s0.resize((a.size() + c.size()) * sizeof(S));
    std::memcpy(out.u_s0.data(), a.data(), a.size() * sizeof(S));
    std::memcpy(out.u_s0.data() + a.size() * sizeof(S), c.data(), c.size() * sizeof(S));
    for (const S& x : q) out.p.push_back(to_d(x));
    return out;
  }
};

/// grad_p of two summation orders: within 8 T roundings of the compute type
/// and 2 of the storage type, relative to the largest entry (however small:
/// with the update gate shut, ParaGRU's grad_p is ~1e-9).
template <class S>
bool grad_p_close(const std::vector<double>& a, const std::vector<double>& b, index_t T) {
  const double eps_r = sizeof(S) == 8 ? 1.1e-16 : 6.0e-8;
  const double eps_s = sizeof(S) == 8 ? 1.1e-16 : sizeof(S) == 4 ? 6.0e-8 : 3.9e-3;
  double scale = std::numeric_limits<double>::min(), diff = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return false;
    scale = std::max(scale, std::abs(b[i]));
    diff = std::max(diff, std::abs(a[i] - b[i]));
  }
  return diff <= std::max(8.0 * static_cast<double>(T) * eps_r, 2.0 * eps_s) * scale;
}

template <class Cell, class S>
void check_segments(Inputs inputs = Inputs::random) {
  for (index_t T : {1, 7, 100, 1000}) {
    for (index_t H : {1, 33}) {
      Problem<Cell, S> prob(2, T, H, inputs, static_cast<unsigned>(T * 17 + H));
      const auto whole = prob.backward({AdjointKernel::sequential, 1, -1});
      for (int C : {2, 3, 5, 9, cuda::tuning::max_sequential_segments})
        for (int burn_in : {0, 5, -1, 400}) {
          INFO(Cell::name << " bytes/value " << sizeof(S) << " T=" << T << " H=" << H
                          << " segments=" << C << " burn_in=" << burn_in);
          const auto seg = prob.backward({AdjointKernel::sequential, C, burn_in});
          CHECK(seg.u_s0 == whole.u_s0);
          CHECK(grad_p_close<S>(seg.p, whole.p, T));
        }
      INFO(Cell::name << " bytes/value " << sizeof(S) << " T=" << T << " H=" << H
                      << " parallel adjoint");
      const auto par = prob.backward({AdjointKernel::parallel, 0, -1});
      CHECK(grad_p_close<S>(par.p, whole.p, T));
    }
  }
}

}  // namespace

TEST_CASE("cuda segmented sequential backward equals one-thread sweeping",
          "[cuda][backward][segments]") {
  check_segments<cells::ParaGRU, float>();
  check_segments<cells::ParaGRU, __nv_bfloat16>();
  check_segments<cells::ParaGRU, __half>();
  check_segments<cells::ParaGRU, double>();
  check_segments<cells::ParaLSTM, float>();
  check_segments<cells::ParaLSTM, __nv_bfloat16>();
  check_segments<cells::DiagTanh, float>();
  check_segments<cells::HeadTanh4, float>();
  check_segments<cells::HeadTanh4, double>();
}

TEST_CASE("cuda segmented sequential backward: an adjoint that never forgets takes every round",
          "[cuda][backward][segments]") {
  check_segments<cells::ParaGRU, float>(Inputs::hold);
  check_segments<cells::ParaGRU, double>(Inputs::hold);
}

TEST_CASE("cuda backward rejects a forced segment count or burn-in out of range",
          "[cuda][backward][errors]") {
  Problem<cells::ParaGRU, float> prob(1, 10, 4, Inputs::random, 3);
  CHECK_THROWS_AS(
      prob.backward({AdjointKernel::sequential, cuda::tuning::max_sequential_segments + 1, -1}),
      InvalidArgument);
  CHECK_THROWS_AS(prob.backward({AdjointKernel::sequential, -1, -1}), InvalidArgument);
  CHECK_THROWS_AS(prob.backward({AdjointKernel::sequential, 2, -2}), InvalidArgument);
}

// Tagged [tuning], not [segments]: too large for the compute-sanitizer runs.
TEST_CASE("cuda backward: the tuned choice is the segmented sweep where lanes x T is large, same grad_u",
          "[cuda][backward][tuning]") {
  // 4096 lanes, T = 4096: the sweep with 16 segments against one thread per lane.
  REQUIRE(cuda::tuning::backward_sequential(4096, 4096, sizeof(float), 1));
  REQUIRE(cuda::tuning::sequential_segments(4096, 4096) == 16);
  Problem<cells::ParaGRU, float> gru(2, 4096, 2048, Inputs::random, 4);
  const auto whole = gru.backward({AdjointKernel::sequential, 1, -1});
  const auto tuned = gru.backward({});
  CHECK(tuned.u_s0 == whole.u_s0);
  CHECK(grad_p_close<float>(tuned.p, whole.p, 4096));
  // 65536 lanes of ParaLSTM bf16 (lanes x T = 2^24.2): the sweep, one segment.
  REQUIRE(cuda::tuning::backward_sequential(65536, 300, sizeof(__nv_bfloat16), 2));
  Problem<cells::ParaLSTM, __nv_bfloat16> lstm(2, 300, 32768, Inputs::random, 5);  // B = 2 x H = 32768
  const auto lstm_whole = lstm.backward({AdjointKernel::sequential, 1, -1});
  const auto lstm_tuned = lstm.backward({});
  CHECK(lstm_tuned.u_s0 == lstm_whole.u_s0);
  CHECK(grad_p_close<__nv_bfloat16>(lstm_tuned.p, lstm_whole.p, 300));
}

// Host code only ([host]): runs in CI without a GPU too (cuda_test_main.cpp).
TEST_CASE("cuda backward: the kernel rule's edges", "[cuda][backward][host]") {
  // The rule's edges: lanes x T from 2^21 for state_dim 2, 2^22 for
  // state_dim 1 in fp32 and 2^23 in 16-bit storage and for fp64, never below
  // 4096 lanes; wider states from 1024 lanes and 2^21 (2^23 in fp64).
  CHECK(cuda::tuning::backward_sequential(4096, 512, sizeof(float), 2));
  CHECK(cuda::tuning::backward_sequential(8192, 256, sizeof(__nv_bfloat16), 2));
  CHECK(!cuda::tuning::backward_sequential(4096, 256, sizeof(__nv_bfloat16), 2));
  CHECK(cuda::tuning::backward_sequential(4096, 1024, sizeof(float), 1));
  CHECK(!cuda::tuning::backward_sequential(4096, 512, sizeof(float), 1));
  CHECK(cuda::tuning::backward_sequential(4096, 2048, sizeof(__nv_bfloat16), 1));
  CHECK(!cuda::tuning::backward_sequential(16384, 256, sizeof(__nv_bfloat16), 1));
  CHECK(!cuda::tuning::backward_sequential(2048, 65536, sizeof(float), 1));
  CHECK(cuda::tuning::backward_sequential(4096, 2048, sizeof(double), 2));
  CHECK(!cuda::tuning::backward_sequential(16384, 256, sizeof(double), 1));
  CHECK(cuda::tuning::backward_sequential(1024, 2048, sizeof(float), 4));
  CHECK(!cuda::tuning::backward_sequential(4096, 256, sizeof(float), 4));
  CHECK(!cuda::tuning::backward_sequential(512, 65536, sizeof(float), 4));
  CHECK(!cuda::tuning::backward_sequential(1024, 2048, sizeof(double), 4));
  CHECK(cuda::tuning::backward_sequential(1024, 8192, sizeof(double), 4));
}

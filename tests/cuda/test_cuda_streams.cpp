// Concurrency of the CUDA backend: the same problems solved from several host
// threads on several streams at once give bitwise the results of solving them
// one after another (every call owns its workspace, report and ticket counter).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "cuda_test_support.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/flashrnn.hpp"

namespace {
using namespace flashrnn;
using flashrnn_test::DeviceBuffer;
using Cell = cells::ParaGRU;
constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;

/// One forward + backward problem resident on the device.
struct Job {
  index_t B, T, H;
  Mode mode;
  DeviceBuffer<float> u, p, s0, st, fin, gs, gu, gp, gs0;
  SolveReport report;

  Job(index_t b, index_t t, index_t h, Mode m, unsigned seed)
      : B(b), T(t), H(h), mode(m), u(b * t * G * h), p(P * h), s0(b * K * h), st(b * t * K * h),
        fin(b * K * h), gs(b * t * K * h), gu(b * t * G * h), gp(P * h), gs0(b * K * h) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> U(-1.f, 1.f);
    auto random = [&](std::size_t n, float scale) {
      std::vector<float> v(n);
      for (auto& x : v) x = scale * U(rng);
      return v;
    };
    u.upload(random(u.n, 1.5f));
    p.upload(random(p.n, 0.9f));
    s0.upload(random(s0.n, 0.5f));
    gs.upload(random(gs.n, 1.0f));
  }

  /// Forward (reading the report, so it waits for `stream`) then backward, on `stream`.
  void run(cudaStream_t stream) {
    SolverOptions o;
    o.mode = mode;
    o.check_finite = false;
    report = cuda::forward<Cell, float>(batch_first<const float>(u.ptr, B, T, G, H),
                                        param_view<const float>(p.ptr, P, H),
                                        state_view<const float>(s0.ptr, B, K, H),
                                        batch_first(st.ptr, B, T, K, H), state_view(fin.ptr, B, K, H), o,
                                        stream);
    cuda::backward<Cell, float>(batch_first<const float>(u.ptr, B, T, G, H),
                                param_view<const float>(p.ptr, P, H),
                                state_view<const float>(s0.ptr, B, K, H),
                                batch_first<const float>(st.ptr, B, T, K, H),
                                batch_first<const float>(gs.ptr, B, T, K, H), {},
                                batch_first(gu.ptr, B, T, G, H), param_view(gp.ptr, P, H),
                                state_view(gs0.ptr, B, K, H), stream);
  }

  /// Overwrites every output with NaN bytes, so stale results cannot pass.
  void poison() {
    for (auto* d : {&st, &fin, &gu, &gp, &gs0})
      REQUIRE(cudaMemset(d->ptr, 0xff, d->n * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  }

  std::vector<std::vector<float>> outputs() const {
    return {st.download(), fin.download(), gu.download(), gp.download(), gs0.download()};
  }
};

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("cuda calls from several threads on several streams equal serial calls bitwise",
          "[cuda][streams]") {
  // Shapes that take every path: one-block and chained multi-block Newton
  // (ticket counter, flags, carries), per-step Newton, sequential stepping, and
  // both the one-thread-per-lane and the parallel adjoint.
  std::vector<std::unique_ptr<Job>> jobs;
  jobs.emplace_back(new Job(2, 6000, 40, Mode::newton_chunked, 1));
  jobs.emplace_back(new Job(4, 300, 64, Mode::newton_chunked, 2));
  jobs.emplace_back(new Job(1, 900, 16, Mode::newton, 3));
  jobs.emplace_back(new Job(8, 700, 512, Mode::sequential, 4));
  jobs.emplace_back(new Job(3, 5000, 24, Mode::automatic, 5));
  jobs.emplace_back(new Job(2, 2500, 100, Mode::newton_chunked, 6));

  std::vector<std::vector<std::vector<float>>> serial;
  std::vector<SolveReport> serial_reports;
  for (auto& j : jobs) {
    j->run(nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(j->report.converged);
    serial.push_back(j->outputs());
    serial_reports.push_back(j->report);
  }

  for (int round = 0; round < 3; ++round) {
    for (auto& j : jobs) j->poison();
    std::vector<cudaStream_t> streams(jobs.size());
    for (auto& s : streams) REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    std::vector<std::exception_ptr> errors(jobs.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < jobs.size(); ++i)
      threads.emplace_back([&, i] {
        try {
          jobs[i]->run(streams[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    for (auto& s : streams) REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      INFO("round " << round << ", job " << i);
      if (errors[i]) {
        try {
          std::rethrow_exception(errors[i]);
        } catch (const std::exception& e) {
          FAIL(std::string("threaded call threw: ") + e.what());
        }
      }
      const auto out = jobs[i]->outputs();
      const char* names[] = {"states", "final_state", "grad_u", "grad_p", "grad_s0"};
      for (std::size_t k = 0; k < out.size(); ++k) {
        INFO(names[k]);
        CHECK(bitwise_equal(out[k], serial[i][k]));
      }
      CHECK(jobs[i]->report.iterations == serial_reports[i].iterations);
      CHECK(jobs[i]->report.mode_used == serial_reports[i].mode_used);
    }
  }
}

TEST_CASE("cuda forward_async on separate streams needs no host synchronisation between calls",
          "[cuda][streams]") {
  // Two dependent solves chained on one stream (the second reads the first's
  // final state as s0) and an independent one on another stream, all enqueued
  // before any wait. Sequential stepping makes the halves bitwise the whole.
  const index_t B = 2, T = 3000, H = 48;
  Job whole(B, 2 * T, H, Mode::sequential, 11);
  whole.run(nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto ref = whole.st.download();

  DeviceBuffer<float> mid(B * K * H), st1(B * T * K * H), st2(B * T * K * H);
  cudaStream_t s1, s2;
  REQUIRE(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking) == cudaSuccess);
  cuda::DeviceReport* reps = nullptr;
  REQUIRE(cudaMalloc(&reps, 3 * sizeof(cuda::DeviceReport)) == cudaSuccess);
  SolverOptions o;
  o.mode = Mode::sequential;
  o.check_finite = false;
  // u of the whole problem, time-strided: the first and second halves.
  const auto u_all = batch_first<const float>(whole.u.ptr, B, 2 * T, G, H);
  View<const float> u1 = u_all, u2 = u_all;
  u1.steps = T;
  u2.steps = T;
  u2.data = u_all.data + T * u_all.stride_t;
  const auto p = param_view<const float>(whole.p.ptr, P, H);
  cuda::forward_async<Cell, float>(u1, p, state_view<const float>(whole.s0.ptr, B, K, H),
                                   batch_first(st1.ptr, B, T, K, H), state_view(mid.ptr, B, K, H), o,
                                   reps, s1);
  Job other(4, 4000, 32, Mode::newton_chunked, 12);
  SolverOptions o_other = o;
  o_other.mode = Mode::newton_chunked;
  cuda::forward_async<Cell, float>(batch_first<const float>(other.u.ptr, 4, 4000, G, 32),
                                   param_view<const float>(other.p.ptr, P, 32), {},
                                   batch_first(other.st.ptr, 4, 4000, K, 32), {}, o_other, reps + 1, s2);
  cuda::forward_async<Cell, float>(u2, p, state_view<const float>(mid.ptr, B, K, H),
                                   batch_first(st2.ptr, B, T, K, H), {}, o, reps + 2, s1);
  REQUIRE(cudaStreamSynchronize(s1) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(s2) == cudaSuccess);
  cuda::DeviceReport h[3];
  REQUIRE(cudaMemcpy(h, reps, sizeof(h), cudaMemcpyDeviceToHost) == cudaSuccess);
  for (const auto& r : h) CHECK(r.not_converged == 0);
  // The halves, re-assembled, against the whole solve.
  const auto a = st1.download(), b = st2.download();
  std::size_t mismatches = 0;
  for (index_t bb = 0; bb < B; ++bb)
    for (index_t t = 0; t < 2 * T; ++t)
      for (index_t j = 0; j < H; ++j) {
        const float got = t < T ? a[static_cast<std::size_t>((bb * T + t) * H + j)]
                                : b[static_cast<std::size_t>((bb * T + t - T) * H + j)];
        const float want = ref[static_cast<std::size_t>((bb * 2 * T + t) * H + j)];
        if (std::memcmp(&got, &want, sizeof(float)) != 0) ++mismatches;
      }
  CHECK(mismatches == 0);
  cudaFree(reps);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
}

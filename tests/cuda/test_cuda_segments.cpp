// The segmented sequential forward (backends/cuda/src/sequential_forward.cuh):
// cutting each lane's sequence into C segments that are stepped from guessed
// starts and then corrected, with one lane or a pair of lanes a thread, must
// give bitwise the states of one thread stepping the whole sequence of one
// lane (C = 1), for every cell and storage type, for segment counts that do
// not divide T, partial warps of lanes, and cells that never forget (every
// round of corrections needed).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "catch.hpp"
#include "cuda_test_support.hpp"
#include "flashrnn/cuda/api.hpp"
#include "flashrnn/cuda/tuning.hpp"
#include "flashrnn/flashrnn.hpp"
#include "segment_range.hpp"

namespace {
using namespace flashrnn;
using flashrnn_test::DeviceBuffer;
using flashrnn_test::to_s;

/// How the inputs are drawn.
enum class Inputs {
  random,  // u ~ U(-1.5, 1.5): contracting, trajectories merge quickly
  slow,    // ParaGRU with update gate nearly shut (u_z ~ -2.5): merges after hundreds of steps
  hold,    // ParaGRU with update gate shut (u_z = -30): h never changes, never merges
};

template <class Cell, class S>
struct Problem {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  index_t B, T, H;
  DeviceBuffer<S> u, p, s0, st, fin;

  Problem(index_t b, index_t t, index_t h, Inputs inputs, unsigned seed)
      : B(b), T(t), H(h), u(b * t * G * h), p(P * h), s0(b * K * h), st(b * t * K * h), fin(b * K * h) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> U(-1.0, 1.0);
    std::vector<S> uh(u.n), ph(p.n), sh(s0.n);
    for (std::size_t i = 0; i < uh.size(); ++i) {
      double x = 1.5 * U(rng);
      // batch_first: index ((b * T + t) * G + g) * H + j
      if (inputs == Inputs::slow && (i / H) % G == 0) x = -2.5 + 0.2 * x;
      if (inputs == Inputs::hold && (i / H) % G == 0) x = -30.0;
      uh[i] = to_s<S>(x);
    }
    const double scale = 0.9 / (P > K ? K : 1);
    for (auto& x : ph) x = to_s<S>(scale * U(rng));
    for (auto& x : sh) x = to_s<S>(0.5 * U(rng));
    u.upload(uh);
    p.upload(ph);
    s0.upload(sh);
  }

  static SolverOptions sequential_options() {
    SolverOptions o;
    o.mode = Mode::sequential;
    return o;
  }

  /// Sequential forward with the launch choices `forced` (u read from
  /// `u_data` if given, a copy of u); returns states then final state (raw bytes).
  std::vector<unsigned char> solve(cuda::detail::SequentialOverrides forced, int* input_nonfinite = nullptr,
                                   SolverOptions o = sequential_options(), const S* u_data = nullptr) {
    REQUIRE(cudaMemset(st.ptr, 0xff, st.n * sizeof(S)) == cudaSuccess);  // NaN bytes: stale output cannot pass
    REQUIRE(cudaMemset(fin.ptr, 0xff, fin.n * sizeof(S)) == cudaSuccess);
    DeviceBuffer<cuda::DeviceReport> rep(1);
    const Mode used = cuda::detail::forward_async_with<Cell, S>(
        batch_first<const S>(u_data ? u_data : u.ptr, B, T, G, H), param_view<const S>(p.ptr, P, H),
        state_view<const S>(s0.ptr, B, K, H), batch_first(st.ptr, B, T, K, H), state_view(fin.ptr, B, K, H), o,
        rep.ptr, forced, nullptr);
    REQUIRE((o.mode == Mode::automatic || used == o.mode));
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    if (input_nonfinite) *input_nonfinite = rep.download()[0].input_nonfinite;
    const auto a = st.download(), f = fin.download();
    std::vector<unsigned char> out((a.size() + f.size()) * sizeof(S));
    std::memcpy(out.data(), a.data(), a.size() * sizeof(S));
    std::memcpy(out.data() + a.size() * sizeof(S), f.data(), f.size() * sizeof(S));
    return out;
  }
  std::vector<unsigned char> solve(int segments, int* input_nonfinite = nullptr, int burn_in = -1,
                                   SolverOptions o = sequential_options()) {
    return solve({segments, burn_in, 0}, input_nonfinite, o);
  }
};

/// Whether a thread may step two lanes here (lane_pack.cuh): bf16/fp16/fp32
/// storage, state_dim <= 2, H even (contiguous, aligned buffers).
template <class Cell, class S>
bool pairs_allowed(index_t H) {
  return sizeof(S) <= 4 && Cell::state_dim <= 2 && H % 2 == 0;
}

/// Whether the inputs may be staged in shared memory here (input_stage.cuh):
/// bf16/fp16/fp32 storage, H a multiple of one 16-byte copy's lanes
/// (contiguous buffers from cudaMalloc), and the input stages of the block's
/// warps (at most 12 KB a warp) within the device's shared memory per block.
template <class Cell, class S>
bool staging_allowed(index_t H, int segments, int lanes_per_thread) {
  if (sizeof(S) > 4 || H % static_cast<index_t>(16 / sizeof(S)) != 0) return false;
  constexpr int D = cuda::tuning::sequential_stage_steps, NS = cuda::tuning::sequential_stages;
  const std::size_t warp = static_cast<std::size_t>(NS * D * Cell::input_dim) * 32 * lanes_per_thread * sizeof(S);
  const int warps = segments > 1 ? segments : cuda::tuning::sequential_block_threads / 32;
  const std::size_t ends = segments > 1 ? segments * 32 * lanes_per_thread * Cell::state_dim * sizeof(float) : 0;
  int device = 0, max_block = 0;
  REQUIRE(cudaGetDevice(&device) == cudaSuccess);
  REQUIRE(cudaDeviceGetAttribute(&max_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) == cudaSuccess);
  return warp <= 12 * 1024 && warps * warp + ends <= static_cast<std::size_t>(max_block);
}

template <class Cell, class S>
void check_bitwise(Inputs inputs = Inputs::random) {
  for (index_t T : {1, 7, 100, 1000}) {
    // H = 40 and 64: 16-byte copies of u fit (40: a warp's lanes span two batch rows).
    for (index_t H : {1, 33, 40, 64, 100}) {
      Problem<Cell, S> prob(2, T, H, inputs, static_cast<unsigned>(T * 131 + H));
      const auto whole = prob.solve({1, -1, 1, 1});  // one thread steps one lane's whole sequence
      const bool pairs = pairs_allowed<Cell, S>(H);
      if (pairs) CHECK(prob.solve({1, -1, 2}) == whole);
      for (int C : {1, 2, 3, 5, 8, 9, cuda::tuning::max_sequential_segments})
        // Burn-in: none (start guess 0), shorter than a prefetch block, the
        // tuned length, and reaching back to step 0 (the guess is exact).
        for (int burn_in : {0, 5, -1, 400})
          // One lane a thread, the tuned choice, and pairs where they fit;
          // inputs prefetched into registers, or staged in shared memory
          // (refused where it does not fit).
          for (int lanes_per_thread : {1, 0, 2})
            for (int staged : {1, 2}) {
              if (C == 1 && burn_in != -1) continue;  // one segment has no burn-in
              const bool registers_h = H == 1 || H == 33 || H == 100, staged_h = H == 40 || H == 64 || H == 100;
              if (staged == 1 && (!registers_h || C == 1 || C == 8)) continue;  // the grid before staging
              if (staged == 2 && (!staged_h || lanes_per_thread == 0)) continue;
              INFO(Cell::name << " bytes/value " << sizeof(S) << " T=" << T << " H=" << H << " segments=" << C
                              << " burn_in=" << burn_in << " lanes/thread=" << lanes_per_thread
                              << " staged=" << staged);
              const int segments_used = static_cast<int>(std::min<index_t>(C, T)), V = lanes_per_thread == 2 ? 2 : 1;
              const bool refused = (lanes_per_thread == 2 && !pairs) ||
                                   (staged == 2 && !staging_allowed<Cell, S>(H, segments_used, V));
              if (refused)
                CHECK_THROWS_AS(prob.solve({C, burn_in, lanes_per_thread, staged}), InvalidArgument);
              else
                CHECK(prob.solve({C, burn_in, lanes_per_thread, staged}) == whole);
            }
    }
  }
}

}  // namespace

TEST_CASE("cuda segmented sequential forward equals one-thread stepping bitwise", "[cuda][forward][segments]") {
  check_bitwise<cells::ParaGRU, float>();
  check_bitwise<cells::ParaGRU, __nv_bfloat16>();
  check_bitwise<cells::ParaGRU, __half>();
  check_bitwise<cells::ParaGRU, double>();
  check_bitwise<cells::ParaLSTM, float>();
  check_bitwise<cells::ParaLSTM, __nv_bfloat16>();
  check_bitwise<cells::ParaLSTM, __half>();
  check_bitwise<cells::DiagTanh, float>();
  check_bitwise<cells::DiagTanh, __nv_bfloat16>();
  check_bitwise<cells::DiagTanh, double>();
  check_bitwise<cells::HeadTanh4, float>();
  check_bitwise<cells::HeadTanh4, double>();
}

TEST_CASE("cuda segmented sequential forward: a cell that never forgets takes every round",
          "[cuda][forward][segments]") {
  // h stays at s0 through every step, so a segment started from 0 never meets
  // the true trajectory: each correction ends with a new end state and the
  // next segment needs another round (C - 1 in all).
  check_bitwise<cells::ParaGRU, float>(Inputs::hold);
  check_bitwise<cells::ParaGRU, __nv_bfloat16>(Inputs::hold);
  check_bitwise<cells::ParaGRU, double>(Inputs::hold);
}

TEST_CASE("cuda segmented sequential forward: slowly merging segments", "[cuda][forward][segments]") {
  // Merging takes longer than the burn-in but often less than a segment:
  // corrections wait for their round and then stop part-way.
  check_bitwise<cells::ParaGRU, float>(Inputs::slow);
  check_bitwise<cells::ParaGRU, __nv_bfloat16>(Inputs::slow);
  check_bitwise<cells::ParaGRU, double>(Inputs::slow);
}

/// Sets element `i` of a device buffer to `x`.
template <class S>
void poke(S* data, std::size_t i, float x) {
  const S v = to_s<S>(x);
  REQUIRE(cudaMemcpy(data + i, &v, sizeof(S), cudaMemcpyHostToDevice) == cudaSuccess);
}

/// An inf or NaN anywhere in u, p or s0 is reported, whatever the launch:
/// unit 5 is the second lane of the pair (4, 5) when a thread steps two; the
/// steps lie in the first segment's first block, the last segment's whole
/// blocks and its partial last block (8 segments of 125 steps, blocks of 8).
/// 16-bit pairs fold their inputs with one packed FMA (lane_pack.cuh).
template <class S>
void check_nonfinite_reported() {
  const float bad_values[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
  for (int lanes_per_thread : {1, 2})
    for (int staged : {1, 2}) {
      const cuda::detail::SequentialOverrides launch{8, -1, lanes_per_thread, staged};
      for (float bad : bad_values) {
        INFO("lanes/thread=" << lanes_per_thread << " staged=" << staged << " value=" << bad);
        for (index_t step : {3, 990, 998}) {
          INFO("u at step " << step);
          Problem<cells::ParaGRU, S> prob(1, 1000, 40, Inputs::random, 7);
          int flagged = -1;
          prob.solve(launch, &flagged);
          CHECK(flagged == 0);
          poke(prob.u.ptr, static_cast<std::size_t>((step * 3 + 2) * 40 + 5), bad);  // gate 2, unit 5
          prob.solve(launch, &flagged);
          CHECK(flagged == 1);
        }
        Problem<cells::ParaGRU, S> p_bad(1, 1000, 40, Inputs::random, 7);
        poke(p_bad.p.ptr, 2 * 40 + 5, bad);
        int flagged = -1;
        p_bad.solve(launch, &flagged);
        CHECK(flagged == 1);
        Problem<cells::ParaGRU, S> s0_bad(1, 1000, 40, Inputs::random, 7);
        poke(s0_bad.s0.ptr, 5, bad);
        s0_bad.solve(launch, &flagged);
        CHECK(flagged == 1);
      }
    }
}

TEST_CASE("cuda segmented sequential forward reports non-finite inputs in any segment",
          "[cuda][forward][segments][errors]") {
  SECTION("fp32") { check_nonfinite_reported<float>(); }
  SECTION("bf16") { check_nonfinite_reported<__nv_bfloat16>(); }
  SECTION("fp16") { check_nonfinite_reported<__half>(); }
}

// Tagged [tuning], not [segments]: 131072 lanes are too large for the
// compute-sanitizer runs (tests/run_gpu.sh), which the smaller cases cover.
TEST_CASE("cuda sequential forward: the tuned choice takes lane pairs where lanes fill the GPU, same bits",
          "[cuda][forward][tuning]") {
  // 131072 lanes, T = 512: pairs (65536 threads, one segment each).
  REQUIRE(cuda::tuning::sequential_lanes_per_thread(131072, 512) == 2);
  Problem<cells::ParaGRU, __nv_bfloat16> bf16(2, 512, 65536, Inputs::random, 21);
  CHECK(bf16.solve({0, -1, 0}) == bf16.solve({1, -1, 1}));
  Problem<cells::ParaLSTM, float> fp32(2, 512, 65536, Inputs::random, 22);
  CHECK(fp32.solve({0, -1, 0}) == fp32.solve({1, -1, 1}));
}

TEST_CASE("cuda sequential forward: the tuned choice stages 16-bit inputs from 8192 lanes, same bits",
          "[cuda][forward][tuning]") {
  REQUIRE(cuda::tuning::sequential_staged(8192, sizeof(__nv_bfloat16), 1));
  REQUIRE(cuda::tuning::sequential_staged_segments(8192 / 2, 1000) == 7);
  // 8192 lanes, T = 1000: lane pairs in 7 segments, staged (forcing
  // registers falls back to 8 segments of one lane a thread).
  Problem<cells::ParaGRU, __nv_bfloat16> gru(2, 1000, 4096, Inputs::random, 23);
  CHECK(gru.solve({0, -1, 0, 0}) == gru.solve({0, -1, 0, 1}));
  CHECK(gru.solve({0, -1, 0, 2}) == gru.solve({1, -1, 1, 1}));
  Problem<cells::ParaLSTM, __half> lstm(2, 1000, 4096, Inputs::random, 24);
  CHECK(lstm.solve({0, -1, 0, 0}) == lstm.solve({1, -1, 1, 1}));
}

TEST_CASE("cuda lane pairs: time-first layout, odd strides and misaligned states", "[cuda][forward][segments]") {
  using S = __nv_bfloat16;
  using Prob = Problem<cells::ParaGRU, S>;
  constexpr int G = Prob::G, K = Prob::K, P = Prob::P;
  const index_t B = 3, T = 300, H = 64;
  Prob prob(B, T, H, Inputs::random, 9);
  const auto one = prob.solve({4, -1, 1});  // batch-first, one lane a thread
  std::vector<S> states_ref(static_cast<std::size_t>(B * T * K * H)), fin_ref(static_cast<std::size_t>(B * K * H));
  std::memcpy(states_ref.data(), one.data(), states_ref.size() * sizeof(S));
  std::memcpy(fin_ref.data(), one.data() + states_ref.size() * sizeof(S), fin_ref.size() * sizeof(S));
  const auto uh = prob.u.download();
  auto bits = [](const std::vector<S>& v) {
    std::vector<unsigned char> out(v.size() * sizeof(S));
    std::memcpy(out.data(), v.data(), out.size());
    return out;
  };
  // Runs the sequential forward on the given u and states views; returns the final state.
  auto run = [&](View<const S> u, View<S> st, cuda::detail::SequentialOverrides forced) {
    DeviceBuffer<S> fin(fin_ref.size());
    cuda::detail::forward_async_with<cells::ParaGRU, S>(u, param_view<const S>(prob.p.ptr, P, H),
                                                       state_view<const S>(prob.s0.ptr, B, K, H), st,
                                                       state_view(fin.ptr, B, K, H), Prob::sequential_options(),
                                                       nullptr, forced, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    return fin.download();
  };
  SECTION("time-first u and states: pairs, same bits") {
    std::vector<S> ut(uh.size());
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t)
        for (index_t i = 0; i < G * H; ++i) ut[((t * B + b) * G * H) + i] = uh[((b * T + t) * G * H) + i];
    DeviceBuffer<S> u(ut.size()), st(states_ref.size());
    u.upload(ut);
    for (int lanes_per_thread : {2, 0}) {
      const auto fin = run(time_first<const S>(u.ptr, T, B, G, H), time_first(st.ptr, T, B, K, H),
                           {4, -1, lanes_per_thread});
      const auto sth = st.download();
      std::vector<S> back(sth.size());
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t < T; ++t)
          for (index_t i = 0; i < K * H; ++i) back[((b * T + t) * K * H) + i] = sth[((t * B + b) * K * H) + i];
      CHECK(bits(back) == bits(states_ref));
      CHECK(bits(fin) == bits(fin_ref));
    }
  }
  SECTION("u rows one element apart (odd batch stride): one lane a thread, same bits; pairs refused") {
    const index_t row = T * G * H + 1;
    std::vector<S> up(static_cast<std::size_t>(B * row));
    for (index_t b = 0; b < B; ++b)
      std::copy(uh.begin() + b * T * G * H, uh.begin() + (b + 1) * T * G * H, up.begin() + b * row);
    DeviceBuffer<S> u(up.size()), st(states_ref.size());
    u.upload(up);
    const View<const S> uv{u.ptr, T, B, G, H, G * H, row, H, 1};
    const auto fin = run(uv, batch_first(st.ptr, B, T, K, H), {4, -1, 0});
    CHECK(bits(st.download()) == bits(states_ref));
    CHECK(bits(fin) == bits(fin_ref));
    CHECK_THROWS_AS(run(uv, batch_first(st.ptr, B, T, K, H), {4, -1, 2}), InvalidArgument);
  }
  SECTION("states one element into their buffer: one lane a thread, same bits; pairs refused") {
    DeviceBuffer<S> st(states_ref.size() + 1);
    const S guard = to_s<S>(7.0);  // the element before the states must stay untouched
    st.upload(std::vector<S>(st.n, guard));
    const auto fin = run(batch_first<const S>(prob.u.ptr, B, T, G, H), batch_first(st.ptr + 1, B, T, K, H),
                         {4, -1, 0});
    auto sth = st.download();
    CHECK(bits(std::vector<S>{sth.front()}) == bits(std::vector<S>{guard}));
    sth.erase(sth.begin());
    CHECK(bits(sth) == bits(states_ref));
    CHECK(bits(fin) == bits(fin_ref));
    CHECK_THROWS_AS(run(batch_first<const S>(prob.u.ptr, B, T, G, H), batch_first(st.ptr + 1, B, T, K, H),
                        {4, -1, 2}),
                    InvalidArgument);
  }
}

TEST_CASE("cuda SolverOptions::sequential_segments picks the segment count, same bits", "[cuda][forward][segments]") {
  Problem<cells::ParaGRU, float> prob(2, 3000, 64, Inputs::random, 11);
  const auto tuned = prob.solve(0);
  for (int c : {1, 3, cuda::tuning::max_sequential_segments}) {
    SolverOptions o;
    o.mode = Mode::sequential;
    o.sequential_segments = c;
    INFO("sequential_segments=" << c);
    CHECK(prob.solve(0, nullptr, -1, o) == tuned);
    o.mode = Mode::automatic;  // picks the segmented kernel too
    CHECK(prob.solve(0, nullptr, -1, o) == tuned);
  }
  SolverOptions bad;
  bad.sequential_segments = cuda::tuning::max_sequential_segments + 1;
  CHECK_THROWS_AS(prob.solve(0, nullptr, -1, bad), InvalidArgument);
}

TEST_CASE("cuda segmented sequential forward rejects a segment count out of range", "[cuda][forward][segments][errors]") {
  Problem<cells::ParaGRU, float> prob(1, 10, 4, Inputs::random, 3);
  CHECK_THROWS_AS(prob.solve(cuda::tuning::max_sequential_segments + 1), InvalidArgument);
  CHECK_THROWS_AS(prob.solve(-1), InvalidArgument);
  CHECK_THROWS_AS(prob.solve(2, nullptr, -2), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 3}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, -1}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, 3}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, -1}), InvalidArgument);
}

// Small enough for compute-sanitizer's racecheck ([sanitize]): staged launches
// with segment counts that are not powers of two (the tuned staged count is
// any from 1 to 16), one and two lanes a thread, a burn-in reaching back to
// step 0 and one of 5 steps, against one thread stepping each lane.
template <class Cell, class S>
void check_staged_small() {
  Problem<Cell, S> prob(2, 150, 64, Inputs::random, 31);
  const auto whole = prob.solve({1, -1, 1, 1});
  for (int C : {3, 6, 7, 12})
    for (int V : {1, 2})
      for (int burn_in : {-1, 5, 200}) {
        INFO(Cell::name << " bytes/value " << sizeof(S) << " segments=" << C << " lanes/thread=" << V
                        << " burn_in=" << burn_in);
        CHECK(prob.solve({C, burn_in, V, 2}) == whole);
        // The start guess's shortcuts all off, and all on (the whole burn-in rough).
        CHECK(prob.solve({C, burn_in, V, 2, 0, 0, 0}) == whole);
        CHECK(prob.solve({C, burn_in, V, 2, 1000, 1, 1}) == whole);
      }
}

/// The start guess's shortcuts change no bit: rough burn-in steps (none,
/// some, more than the burn-in), segments of equal length or equal work,
/// and deferred copies, each forced on and off, staged and in registers,
/// against one thread stepping each lane. Half-warp segments (16, registers) run
/// a balanced cut's ranges one after the other in a warp.
template <class Cell, class S>
void check_guess_shortcuts(Inputs inputs = Inputs::random) {
  for (index_t T : {100, 1000}) {
    Problem<Cell, S> prob(2, T, 64, inputs, static_cast<unsigned>(T + 17));
    const auto whole = prob.solve({1, -1, 1, 1});
    const bool pairs = pairs_allowed<Cell, S>(64);
    for (int C : {3, 12, 16})
      for (int burn_in : {-1, 5, 400})
        for (int rough : {0, 16, 1000})
          for (int balanced : {0, 1})
            for (int defer : {0, 1})
              for (int V : {1, 2})
                for (int staged : {1, 2}) {
                  if (V == 2 && !pairs) continue;
                  if (staged == 1 && (rough != 16 || defer != 1)) continue;  // registers: neither applies
                  if (staged == 2 && !staging_allowed<Cell, S>(64, C, V)) continue;
                  INFO(Cell::name << " bytes/value " << sizeof(S) << " T=" << T << " segments=" << C
                                  << " burn_in=" << burn_in << " rough=" << rough << " balanced=" << balanced
                                  << " defer=" << defer << " lanes/thread=" << V << " staged=" << staged);
                  CHECK(prob.solve({C, burn_in, V, staged, rough, balanced, defer}) == whole);
                }
  }
}

// Tagged [guess], not [segments]: too many launches for the
// compute-sanitizer runs; check_staged_small covers the shortcuts there.
TEST_CASE("cuda sequential forward: rough burn-in, equal-work segments and deferred copies change no bit",
          "[cuda][forward][guess]") {
  check_guess_shortcuts<cells::ParaGRU, __nv_bfloat16>();
  check_guess_shortcuts<cells::ParaGRU, __half>();
  check_guess_shortcuts<cells::ParaGRU, float>();
  check_guess_shortcuts<cells::ParaLSTM, __nv_bfloat16>();
  check_guess_shortcuts<cells::ParaLSTM, float>();
  check_guess_shortcuts<cells::DiagTanh, __nv_bfloat16>();
  check_guess_shortcuts<cells::HeadTanh4, __nv_bfloat16>();  // a dense cell stepped with RoughFloat
  // Slow merges (corrections cut short) and no merge at all (every round).
  check_guess_shortcuts<cells::ParaGRU, __nv_bfloat16>(Inputs::slow);
  check_guess_shortcuts<cells::ParaGRU, __nv_bfloat16>(Inputs::hold);
}

TEST_CASE("cuda sequential forward rejects bad guess options", "[cuda][forward][segments][errors]") {
  Problem<cells::ParaGRU, __nv_bfloat16> prob(1, 10, 64, Inputs::random, 3);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, 0, -2}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, 0, -1, 2}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, 0, -1, -2}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, 0, -1, -1, 2}), InvalidArgument);
  CHECK_THROWS_AS(prob.solve({2, -1, 0, 0, -1, -1, -2}), InvalidArgument);
}

TEST_CASE("cuda staged forward, odd segment counts and pairs, same bits (small shapes)",
          "[cuda][forward][segments][sanitize]") {
  check_staged_small<cells::ParaGRU, __nv_bfloat16>();
  check_staged_small<cells::ParaLSTM, __half>();
  check_staged_small<cells::DiagTanh, __nv_bfloat16>();
}

TEST_CASE("cuda sequential forward keeps one lane a thread where pairs do not fit, same bits",
          "[cuda][forward][segments][sanitize]") {
  // u one element into its buffer: H even, but a pair's two values straddle
  // a 4-byte boundary, so one access cannot load them.
  using Prob = Problem<cells::ParaGRU, __nv_bfloat16>;
  Prob prob(2, 500, 64, Inputs::random, 5);
  DeviceBuffer<__nv_bfloat16> shifted(prob.u.n + 1);
  REQUIRE(cudaMemcpy(shifted.ptr + 1, prob.u.ptr, prob.u.n * sizeof(__nv_bfloat16), cudaMemcpyDeviceToDevice) ==
          cudaSuccess);
  const auto one = prob.solve({4, -1, 1});
  CHECK(prob.solve({4, -1, 2}) == one);
  CHECK(prob.solve({16, -1, 2}) == one);  // half-warp segments
  CHECK(prob.solve({4, -1, 0}, nullptr, Prob::sequential_options(), shifted.ptr + 1) == one);
  CHECK_THROWS_AS(prob.solve({4, -1, 2}, nullptr, Prob::sequential_options(), shifted.ptr + 1), InvalidArgument);
  // Staged: same bits where u is aligned; refused where it is not.
  CHECK(prob.solve({4, -1, 1, 2}) == one);
  CHECK(prob.solve({4, -1, 2, 2}) == one);
  CHECK_THROWS_AS(prob.solve({4, -1, 1, 2}, nullptr, Prob::sequential_options(), shifted.ptr + 1), InvalidArgument);
}

// Host code only ([host]): runs in CI without a GPU too (cuda_test_main.cpp).
TEST_CASE("cuda sequential forward stages inputs only for 16-bit storage from 8192 lanes",
          "[cuda][segments][host]") {
  using cuda::tuning::sequential_staged;
  CHECK(sequential_staged(8192, 2, 1));
  CHECK(sequential_staged(1 << 20, 2, 2));
  CHECK_FALSE(sequential_staged(4096, 2, 1));   // few lanes: the register kernel's latency wins
  CHECK_FALSE(sequential_staged(65536, 4, 1));  // fp32: no gain measured
  CHECK_FALSE(sequential_staged(65536, 8, 1));
  CHECK_FALSE(sequential_staged(65536, 2, 4));  // dense cells: not measured
}

// Host code only ([host]): runs in CI without a GPU too (cuda_test_main.cpp).
TEST_CASE("cuda staged forward with lane pairs aims at 12 warps an SM, any segment count",
          "[cuda][segments][host]") {
  using cuda::tuning::sequential_staged_segments;
  CHECK(sequential_staged_segments(8192 / 2, 2048) == 12);
  CHECK(sequential_staged_segments(16384 / 2, 2048) == 6);
  CHECK(sequential_staged_segments(32768 / 2, 8192) == 3);
  CHECK(sequential_staged_segments(65536 / 2, 2048) == 2);
  CHECK(sequential_staged_segments(1 << 20, 1 << 16) == 1);  // lanes fill the GPU
  CHECK(sequential_staged_segments(1, 1 << 20) == cuda::tuning::max_sequential_segments);
  CHECK(sequential_staged_segments(8192 / 2, 1000) == 7);  // segments stay >= 2 x 64 steps
  CHECK(sequential_staged_segments(8192 / 2, 100) == 1);
  CHECK(sequential_staged_segments(0, 2048) == cuda::tuning::max_sequential_segments);
}

// Host code only ([host]): runs in CI without a GPU too (cuda_test_main.cpp).
TEST_CASE("cuda sequential mode picks segments only where lanes are few", "[cuda][segments][host]") {
  using cuda::tuning::max_sequential_segments;
  using cuda::tuning::sequential_segments;
  CHECK(sequential_segments(1 << 20, 1 << 16) == 1);  // lanes fill the GPU
  CHECK(sequential_segments(8192, 100) == 1);         // too short to cut
  CHECK(sequential_segments(8192, 1 << 16) > 1);
  for (index_t lanes : {1, 100, 8192, 32768})
    for (index_t T : {1, 513, 2048, 1 << 20}) {
      const int c = sequential_segments(lanes, T);
      CHECK(c >= 1);
      CHECK(c <= max_sequential_segments);
    }
  // Pairs of lanes halve the threads: twice the segments where lanes are few.
  CHECK(sequential_segments(8192 / 2, 2048) == 2 * sequential_segments(8192, 2048));
  // Heavier steps (fp64, dense cells) aim at half the threads x segments.
  using cuda::tuning::sequential_target_threads;
  CHECK(sequential_target_threads(sizeof(float), 2) == 65536);
  CHECK(sequential_target_threads(2, 1) == 65536);
  CHECK(sequential_target_threads(sizeof(double), 1) == 32768);
  CHECK(sequential_target_threads(sizeof(float), 4) == 32768);
  CHECK(sequential_segments(8192, 2048, 32768) == 4);
  CHECK(sequential_segments(32768, 2048, 32768) == 1);
  CHECK(sequential_segments(1024, 2048, 32768) == 16);
  // Pairs where they cost no parallelism and keep segments long.
  using cuda::tuning::sequential_lanes_per_thread;
  CHECK(sequential_lanes_per_thread(2048, 1 << 16) == 1);  // half the threads would idle SMs
  CHECK(sequential_lanes_per_thread(8192, 2048) == 1);     // 16 segments of 128 steps
  CHECK(sequential_lanes_per_thread(8192, 1 << 16) == 2);
  CHECK(sequential_lanes_per_thread(32768, 2048) == 2);
  CHECK(sequential_lanes_per_thread(1 << 20, 600) == 2);
}

// Host code only ([host]): runs in CI without a GPU too (cuda_test_main.cpp).
TEST_CASE("cuda segments tile the sequence and share the burn-in's work", "[cuda][segments][host]") {
  using cuda::detail::segment_range;
  for (int grain : {1, 8})
    for (index_t T : {1, 2, 7, 47, 48, 49, 100, 513, 2048, 8192, 1 << 20})
      for (int C = 1; C <= cuda::tuning::max_sequential_segments; ++C)
        for (int burn : {0, 1, 32, 48, 1000}) {
          CAPTURE(grain, T, C, burn);
          index_t next = 0, most = 0, least = T + burn, last = 0;
          for (int c = 0; c < C; ++c) {
            const auto r = segment_range(c, C, T, burn, grain);
            REQUIRE(r.t0 == next);  // in order, no gap, no overlap
            REQUIRE(r.t1 >= r.t0);
            next = r.t1;
            // Whole blocks of the grain, but where a range stops at T.
            if (r.t1 < T) CHECK((r.t1 - r.t0) % grain == 0);
            // Steps a segment takes: its range plus the burn-in that fits before it.
            const index_t work = r.t1 - r.t0 + (c > 0 ? std::min<index_t>(burn, r.t0) : 0);
            if (c == C - 1) {
              last = work;
            } else {
              least = std::min(least, work);
              most = std::max(most, work);
            }
          }
          REQUIRE(next == T);
          // Where every range is longer than the burn-in the work is equal
          // but for rounding to the grain; the last segment takes no more.
          if (C > 1 && T >= static_cast<index_t>(4) * C * (burn + C + grain)) {
            CHECK(most - least <= grain);
            CHECK(last <= most);
          }
        }
  // The miss: 2048 steps, 12 segments, burn-in 48, blocks of 8 steps:
  // 216 steps for the first segment (no burn-in), 168 + 48 for the others
  // but the last (152 + 48).
  CHECK(segment_range(0, 12, 2048, 48, 8).t1 == 216);
  CHECK(segment_range(1, 12, 2048, 48, 8).t0 == 216);
  CHECK(segment_range(1, 12, 2048, 48, 8).t1 == 216 + 168);
  CHECK(segment_range(11, 12, 2048, 48, 8).t0 == 2048 - 152);
  // No burn-in, grain 1: the equal lengths ceil(T / C), the last shorter
  // (9 = 3 + 3 + 3 + 0, not 3 + 2 + 2 + 2).
  for (int c = 0; c < 4; ++c) CHECK(segment_range(c, 4, 9, 0, 1).t0 == std::min(9, 3 * c));
  for (int c = 0; c < 12; ++c) {
    CHECK(segment_range(c, 12, 2048, 0, 1).t0 == std::min<index_t>(2048, c * 171));
    CHECK(segment_range(c, 12, 2048, 0, 1).t1 == std::min<index_t>(2048, (c + 1) * 171));
  }
  CHECK(segment_range(0, 1, 2048, 48, 8).t1 == 2048);
}

// Concurrency (issue 6): forward and backward called at the same time from
// several std::threads, sharing read-only inputs, give bitwise the results of
// the same calls made one after another. Covers the lane-parallel path, the
// time-parallel path (one long lane: parallel scans inside the lane, when the
// suite runs with more than one thread), every mode, and both precisions.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "test_config.hpp"

namespace {

using namespace flashrnn;

/// One forward + backward call and everything it writes.
struct Job {
  virtual ~Job() = default;
  virtual void run() = 0;                    // writes this job's outputs
  virtual std::vector<unsigned char> bytes() const = 0;  // outputs and report, for bitwise comparison
  virtual std::unique_ptr<Job> fresh() const = 0;         // same inputs, empty outputs
  virtual std::string name() const = 0;
};

template <class Cell, class S>
struct Inputs {
  index_t B, T, H;
  std::vector<S> u, p, s0, grad_states, grad_final;
};

template <class Cell, class S>
std::shared_ptr<const Inputs<Cell, S>> make_inputs(index_t B, index_t T, index_t H, double scale,
                                                   unsigned seed) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  auto in = std::make_shared<Inputs<Cell, S>>();
  in->B = B, in->T = T, in->H = H;
  auto fill = [&](std::vector<S>& v, size_t n, double s) {
    v.resize(n);
    for (auto& x : v) x = static_cast<S>(s * d(rng));
  };
  fill(in->u, static_cast<size_t>(B * T * G * H), 1.0);
  fill(in->p, static_cast<size_t>(P * H), scale);
  fill(in->s0, static_cast<size_t>(B * K * H), 0.5);
  fill(in->grad_states, static_cast<size_t>(B * T * K * H), 1.0);
  fill(in->grad_final, static_cast<size_t>(B * K * H), 1.0);
  return in;
}

template <class Cell, class S>
struct CellJob : Job {
  std::shared_ptr<const Inputs<Cell, S>> in;
  SolverOptions opts;
  std::vector<S> states, final_state, grad_u, grad_p, grad_s0;
  SolveReport report;

  CellJob(std::shared_ptr<const Inputs<Cell, S>> inputs, SolverOptions o)
      : in(std::move(inputs)), opts(o) {}

  void run() override {
    constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
    const index_t B = in->B, T = in->T, H = in->H;
    states.assign(static_cast<size_t>(B * T * K * H), S(0));
    final_state.assign(static_cast<size_t>(B * K * H), S(0));
    grad_u.assign(static_cast<size_t>(B * T * G * H), S(0));
    grad_p.assign(static_cast<size_t>(P * H), S(0));
    grad_s0.assign(static_cast<size_t>(B * K * H), S(0));
    const auto ctx = flashrnn_test::context();
    const View<const S> u = batch_first<const S>(in->u.data(), B, T, G, H);
    const View<const S> p = param_view<const S>(in->p.data(), P, H);
    const View<const S> s0 = state_view<const S>(in->s0.data(), B, K, H);
    report = forward<Cell, S>(u, p, s0, batch_first(states.data(), B, T, K, H),
                              state_view(final_state.data(), B, K, H), opts, ctx);
    backward<Cell, S>(u, p, s0, batch_first<const S>(states.data(), B, T, K, H),
                      batch_first<const S>(in->grad_states.data(), B, T, K, H),
                      state_view<const S>(in->grad_final.data(), B, K, H),
                      batch_first(grad_u.data(), B, T, G, H), param_view(grad_p.data(), P, H),
                      state_view(grad_s0.data(), B, K, H), ctx);
  }

  std::vector<unsigned char> bytes() const override {
    std::vector<unsigned char> out;
    auto put = [&](const void* data, size_t n) {
      const auto* c = static_cast<const unsigned char*>(data);
      out.insert(out.end(), c, c + n);
    };
    for (const auto* v : {&states, &final_state, &grad_u, &grad_p, &grad_s0})
      put(v->data(), v->size() * sizeof(S));
    put(&report.iterations, sizeof report.iterations);
    put(&report.final_residual, sizeof report.final_residual);
    put(&report.lanes_fell_back, sizeof report.lanes_fell_back);
    const unsigned char flags[3] = {static_cast<unsigned char>(report.converged),
                                    static_cast<unsigned char>(report.nonfinite_detected),
                                    static_cast<unsigned char>(report.mode_used)};
    put(flags, sizeof flags);
    return out;
  }

  std::unique_ptr<Job> fresh() const override { return std::make_unique<CellJob>(in, opts); }

  std::string name() const override {
    return std::string(Cell::name) + (sizeof(S) == 8 ? " double" : " float") + " B=" +
           std::to_string(in->B) + " T=" + std::to_string(in->T) + " H=" + std::to_string(in->H) +
           " mode=" + to_string(opts.mode) + " damping=" + std::to_string(opts.damping);
  }
};

template <class Cell, class S>
void add_jobs(std::vector<std::unique_ptr<Job>>& jobs, index_t B, index_t T, index_t H, double scale,
              unsigned seed) {
  const auto in = make_inputs<Cell, S>(B, T, H, scale, seed);
  for (Mode mode : {Mode::sequential, Mode::newton, Mode::newton_chunked, Mode::automatic}) {
    SolverOptions o;
    o.mode = mode;
    jobs.push_back(std::make_unique<CellJob<Cell, S>>(in, o));
  }
  // A case that needs the fallback on some lanes, and damped Newton.
  SolverOptions o;
  o.mode = Mode::newton;
  o.max_iters = 3;
  jobs.push_back(std::make_unique<CellJob<Cell, S>>(in, o));
  o.max_iters = 100;
  o.damping = 0.5;
  jobs.push_back(std::make_unique<CellJob<Cell, S>>(in, o));
}

std::vector<std::unique_ptr<Job>> all_jobs() {
  std::vector<std::unique_ptr<Job>> jobs;
  add_jobs<cells::ParaGRU, double>(jobs, 3, 96, 8, 2.0, 1);        // lane-parallel
  add_jobs<cells::ParaLSTM, float>(jobs, 2, 80, 5, 3.0, 2);        // lane-parallel
  add_jobs<cells::DiagTanh, double>(jobs, 1, 2500, 1, 1.5, 3);     // time-parallel
  add_jobs<cells::ParaLSTM, double>(jobs, 1, 1500, 1, 2.0, 4);     // time-parallel, K = 2
  return jobs;
}

}  // namespace

TEST_CASE("concurrency: concurrent forward/backward equal serial calls bitwise", "[concurrency]") {
  auto jobs = all_jobs();
  // Serial reference: every job once, one after another, on this thread.
  std::vector<std::vector<unsigned char>> expected;
  for (auto& j : jobs) {
    j->run();
    expected.push_back(j->bytes());
  }

  const int n_threads = 4, reps = 2;
  // Each thread runs every job `reps` times in its own rotated order, so that
  // different modes and cells overlap in time.
  std::vector<std::vector<std::unique_ptr<Job>>> copies(static_cast<size_t>(n_threads));
  for (auto& c : copies)
    for (auto& j : jobs) c.push_back(j->fresh());
  std::vector<std::string> failures(static_cast<size_t>(n_threads));
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < n_threads; ++w)
    threads.emplace_back([&, w] {
      ready.fetch_add(1);
      while (ready.load() < n_threads) std::this_thread::yield();  // start together
      const size_t n = copies[static_cast<size_t>(w)].size();
      for (int r = 0; r < reps; ++r)
        for (size_t i = 0; i < n; ++i) {
          const size_t k = (i + static_cast<size_t>(w) * 3) % n;
          Job& job = *copies[static_cast<size_t>(w)][k];
          try {
            job.run();
          } catch (const std::exception& e) {
            failures[static_cast<size_t>(w)] += job.name() + " threw " + e.what() + "\n";
            continue;
          }
          if (job.bytes() != expected[k])
            failures[static_cast<size_t>(w)] += job.name() + " differs from the serial call (rep " +
                                                std::to_string(r) + ")\n";
        }
    });
  for (auto& t : threads) t.join();
  for (int w = 0; w < n_threads; ++w) {
    INFO("thread " << w);
    CHECK(failures[static_cast<size_t>(w)].empty());
    if (!failures[static_cast<size_t>(w)].empty()) WARN(failures[static_cast<size_t>(w)]);
  }
}

TEST_CASE("concurrency: threads writing disjoint slices of one output buffer", "[concurrency]") {
  // Callers that split a batch across their own threads write neighbouring
  // views of one allocation; each call must touch only its own elements.
  using Cell = cells::ParaGRU;
  constexpr int K = 1, G = 3, P = 3;
  const index_t B = 8, T = 200, H = 6;
  const auto in = make_inputs<Cell, double>(B, T, H, 2.0, 7);
  SolverOptions o;
  o.mode = Mode::newton;
  // Time-first layout: batch element b of every step is a slice with stride B*K*H.
  std::vector<double> serial(static_cast<size_t>(T * B * K * H)), shared(serial.size(), 0.0);
  const View<const double> u_all{in->u.data(), T, B, G, H, G * H, T * G * H, H, 1};  // batch-first storage
  auto slice_u = [&](index_t b) {
    View<const double> v = u_all;
    v.data += b * u_all.stride_b;
    v.batch = 1;
    return v;
  };
  auto slice_out = [&](std::vector<double>& buf, index_t b) {
    View<double> v = time_first(buf.data(), T, B, K, H);
    v.data += b * v.stride_b;
    v.batch = 1;
    return v;
  };
  const View<const double> p = param_view<const double>(in->p.data(), P, H);
  for (index_t b = 0; b < B; ++b)
    forward<Cell, double>(slice_u(b), p, {}, slice_out(serial, b), {}, o, flashrnn_test::context());
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(B));
  for (index_t b = 0; b < B; ++b)
    threads.emplace_back([&, b] {
      try {
        forward<Cell, double>(slice_u(b), p, {}, slice_out(shared, b), {}, o, flashrnn_test::context());
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(b)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) CHECK(e.empty());
  CHECK(std::memcmp(serial.data(), shared.data(), serial.size() * sizeof(double)) == 0);
}

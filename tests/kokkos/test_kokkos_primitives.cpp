// The scan building blocks on their own, exercised the way a multi-threaded
// execution space would exercise them, even where Kokkos itself is Serial
// (Debian's build): the parallel_scan functor's init/join are driven through a
// chunked two-pass scan like Kokkos' OpenMP backend, and the team scans run on
// real std::threads behind a minimal stand-in for a team member.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "catch.hpp"
#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
using Catch::Approx;
#endif
#include "flashrnn/kokkos/scan.hpp"

namespace {
using flashrnn::Affine;
using flashrnn::index_t;
using namespace flashrnn::kokkos::detail;

template <int K>
Affine<double, K> random_map(unsigned& x, bool constant) {
  auto next = [&]() {
    x = x * 1664525u + 1013904223u;
    return static_cast<double>(x >> 8) / static_cast<double>(1u << 24) * 1.8 - 0.9;
  };
  Affine<double, K> m;
  for (int i = 0; i < K * K; ++i) m.A[i] = constant ? 0.0 : next() / K;
  for (int i = 0; i < K; ++i) m.c[i] = next();
  return m;
}

template <int K>
void require_close(const Affine<double, K>& a, const Affine<double, K>& b) {
  for (int i = 0; i < K * K; ++i) REQUIRE(a.A[i] == Approx(b.A[i]).margin(1e-12));
  for (int i = 0; i < K; ++i) REQUIRE(a.c[i] == Approx(b.c[i]).margin(1e-12));
}

/// Lanes of n maps, each lane starting with a constant map (as Newton's are).
template <int K>
std::vector<Affine<double, K>> make_lanes(index_t lanes, index_t n, unsigned seed, bool reverse) {
  std::vector<Affine<double, K>> v(static_cast<size_t>(lanes * n));
  for (index_t l = 0; l < lanes; ++l)
    for (index_t e = 0; e < n; ++e) v[l * n + e] = random_map<K>(seed, reverse ? e == n - 1 : e == 0);
  return v;
}

template <int K>
std::vector<Affine<double, K>> sequential_scan(std::vector<Affine<double, K>> v, index_t lanes, index_t n,
                                               bool reverse) {
  for (index_t l = 0; l < lanes; ++l) {
    Affine<double, K>* m = v.data() + l * n;
    if (reverse)
      for (index_t i = n - 2; i >= 0; --i) m[i] = flashrnn::compose(m[i], m[i + 1]);
    else
      for (index_t i = 1; i < n; ++i) m[i] = flashrnn::compose(m[i], m[i - 1]);
  }
  return v;
}

/// Kokkos' threaded scan schedule (see OpenMP's ParallelScan): per-chunk
/// partial sums with final = false, an ordered join of the partials, then a
/// final pass per chunk from its prefix.
template <int K>
void chunked_two_pass(SegmentedAffineScan<double, K> f, int chunks) {
  using V = typename SegmentedAffineScan<double, K>::value_type;
  const index_t N = f.total, cs = (N + chunks - 1) / chunks;
  std::vector<V> partial(static_cast<size_t>(chunks)), prefix(static_cast<size_t>(chunks));
  for (int c = 0; c < chunks; ++c) {
    f.init(partial[c]);
    for (index_t i = c * cs; i < std::min(N, (c + 1) * cs); ++i) f(i, partial[c], false);
  }
  f.init(prefix[0]);
  for (int c = 1; c < chunks; ++c) {
    prefix[c] = prefix[c - 1];
#if KOKKOS_VERSION < 40000
    volatile V& dst = prefix[c];  // Kokkos 3.x joins through volatile references
    const volatile V& src = partial[c - 1];
    f.join(dst, src);
#else
    f.join(prefix[c], partial[c - 1]);
#endif
  }
  for (int c = 0; c < chunks; ++c)
    for (index_t i = c * cs; i < std::min(N, (c + 1) * cs); ++i) f(i, prefix[c], true);
}

/// A stand-in for a Kokkos team member: team_size threads and a barrier.
class FakeTeam {
 public:
  explicit FakeTeam(int size) : size_(size) {}
  struct Member {
    FakeTeam* team;
    int rank;
    int team_size() const { return team->size_; }
    int team_rank() const { return rank; }
    void team_barrier() const { team->barrier(); }
  };
  template <class F>
  void run(const F& f) {
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r) threads.emplace_back([&, r] { f(Member{this, r}); });
    for (auto& t : threads) t.join();
  }

 private:
  void barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    const unsigned gen = generation_;
    if (++waiting_ == size_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }
  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  unsigned generation_ = 0;
};

template <int K>
void check_segmented(index_t lanes, index_t n, int chunks, bool reverse) {
  auto maps = make_lanes<K>(lanes, n, 7u + static_cast<unsigned>(n), reverse);
  const auto expect = sequential_scan<K>(maps, lanes, n, reverse);
  SegmentedAffineScan<double, K> f{maps.data(), n, lanes * n, reverse};
  chunked_two_pass<K>(f, chunks);
  INFO("K=" << K << " lanes=" << lanes << " n=" << n << " chunks=" << chunks << " reverse=" << reverse);
  for (size_t i = 0; i < maps.size(); ++i) require_close<K>(maps[i], expect[i]);
}

template <int K>
void check_team(index_t n, int ts, bool reverse) {
  auto maps = make_lanes<K>(1, n, 3u + static_cast<unsigned>(n * 31 + ts), reverse);
  const auto expect = sequential_scan<K>(maps, 1, n, reverse);
  std::vector<Affine<double, K>> carry(static_cast<size_t>(ts));
  FakeTeam team(ts);
  team.run([&](const FakeTeam::Member& m) {
    if (reverse)
      team_reverse_inclusive_scan(m, maps.data(), n, carry.data());
    else
      team_inclusive_scan(m, maps.data(), n, carry.data());
  });
  INFO("K=" << K << " n=" << n << " team_size=" << ts << " reverse=" << reverse);
  for (size_t i = 0; i < maps.size(); ++i) require_close<K>(maps[i], expect[i]);
}
}  // namespace

TEST_CASE("segmented parallel_scan functor: init/join in Kokkos' threaded order", "[kokkos][unit]") {
  for (bool reverse : {false, true})
    for (int chunks : {1, 2, 3, 8})
      for (index_t n : {1, 2, 7, 50}) {
        check_segmented<1>(3, n, chunks, reverse);
        check_segmented<2>(4, n, chunks, reverse);
        check_segmented<3>(2, n, chunks, reverse);
      }
}

TEST_CASE("segmented scan does not leak a non-finite lane into the next", "[kokkos][unit]") {
  auto maps = make_lanes<1>(2, 5, 1u, false);
  maps[2].A[0] = std::numeric_limits<double>::infinity();  // lane 0 blows up
  maps[3].c[0] = std::numeric_limits<double>::quiet_NaN();
  SegmentedAffineScan<double, 1> f{maps.data(), 5, 10, false};
  chunked_two_pass<1>(f, 3);
  for (int i = 5; i < 10; ++i) REQUIRE(std::isfinite(maps[i].c[0]));
}

TEST_CASE("team scans and reduction on a team of real threads", "[kokkos][unit]") {
  for (int ts : {1, 2, 3, 4, 7})
    for (index_t n : {0, 1, 2, 5, 6, 37, 100})
      for (bool reverse : {false, true}) {
        check_team<1>(n, ts, reverse);
        check_team<2>(n, ts, reverse);
      }
  for (int ts : {1, 3, 8}) {
    std::vector<double> buf(static_cast<size_t>(ts));
    std::vector<double> got(static_cast<size_t>(ts));
    FakeTeam team(ts);
    team.run([&](const FakeTeam::Member& m) {
      got[m.team_rank()] = team_reduce(
          m, 1000, 0.0, [](index_t i) { return static_cast<double>(i); },
          [](double a, double b) { return a + b; }, buf.data());
    });
    for (double g : got) REQUIRE(g == 999.0 * 1000.0 / 2);
  }
}

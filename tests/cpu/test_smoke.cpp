// The smallest end-to-end check: Newton equals stepping for one ParaGRU lane.
#include <cmath>
#include <vector>

#include "catch.hpp"
#include "test_config.hpp"

TEST_CASE("smoke: ParaGRU Newton equals stepping", "[smoke]") {
  using namespace flashrnn;
  const int T = 64, G = 3, P = 3;
  std::vector<double> u(T * G), p = {0.5, -0.3, 0.8}, ref(T), out(T);
  for (int i = 0; i < T * G; ++i) u[i] = 0.1 * ((i * 37) % 21 - 10);
  SolverOptions o;
  o.mode = Mode::sequential;
  forward<cells::ParaGRU, double>(batch_first<const double>(u.data(), 1, T, G, 1),
                                  param_view<const double>(p.data(), P, 1), {},
                                  batch_first(ref.data(), 1, T, 1, 1), {}, o, flashrnn_test::context());
  o.mode = Mode::newton;
  const auto rep = forward<cells::ParaGRU, double>(
      batch_first<const double>(u.data(), 1, T, G, 1), param_view<const double>(p.data(), P, 1), {},
      batch_first(out.data(), 1, T, 1, 1), {}, o, flashrnn_test::context());
  REQUIRE(rep.converged);
  for (int t = 0; t < T; ++t) REQUIRE(std::abs(out[t] - ref[t]) <= 1e-13);
}

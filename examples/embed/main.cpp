// The smallest program built against the installed FlashRNN package: a code
// that owns its arrays solves a ParaGRU layer with chunked Newton, takes
// gradients, then generates a few steps one at a time.
#include <cmath>
#include <cstdio>
#include <vector>

#include <flashrnn/flashrnn.hpp>

int main() {
  using Cell = flashrnn::cells::ParaGRU;  // K = 1 state, G = 3 gates, P = 3 parameters per unit
  const flashrnn::index_t B = 2, T = 4096, H = 8, K = 1, G = 3, P = 3;

  // The application's own memory, time-first: u[t][b][g*H + j], states[t][b][j].
  std::vector<double> u(T * B * G * H), p(P * H), states(T * B * K * H), ref(states.size());
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = std::sin(0.37 * double(i));
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = 0.4 * std::cos(double(i));

  auto u_v = flashrnn::time_first<const double>(u.data(), T, B, G, H);
  auto p_v = flashrnn::param_view<const double>(p.data(), P, H);
  try {
    flashrnn::SolverOptions opts;
    opts.mode = flashrnn::Mode::sequential;
    flashrnn::forward<Cell, double>(u_v, p_v, {}, flashrnn::time_first(ref.data(), T, B, K, H), {}, opts);

    opts.mode = flashrnn::Mode::newton_chunked;
    const flashrnn::SolveReport rep = flashrnn::forward<Cell, double>(
        u_v, p_v, {}, flashrnn::time_first(states.data(), T, B, K, H), {}, opts, flashrnn::Context{2});
    double diff = 0;
    for (std::size_t i = 0; i < states.size(); ++i) diff = std::fmax(diff, std::fabs(states[i] - ref[i]));
    std::printf("forward (%s): %d Newton iterations, converged %d, max |newton - sequential| = %.2e\n",
                flashrnn::to_string(rep.mode_used), rep.iterations, int(rep.converged), diff);

    // Loss L = sum of all states: dL/dstates = 1.
    std::vector<double> ones(states.size(), 1.0), grad_u(u.size()), grad_p(p.size());
    flashrnn::backward<Cell, double>(u_v, p_v, {}, flashrnn::time_first<const double>(states.data(), T, B, K, H),
                                     flashrnn::time_first<const double>(ones.data(), T, B, K, H), {},
                                     flashrnn::time_first(grad_u.data(), T, B, G, H),
                                     flashrnn::param_view(grad_p.data(), P, H), {});
    std::printf("backward: dL/da_z[unit 0] = %.6f\n", grad_p[0]);

    // Autoregressive steps continue from the last state, in place.
    std::vector<double> s(states.end() - B * K * H, states.end()), u_t(B * G * H, 0.1);
    for (int n = 0; n < 3; ++n)
      flashrnn::step<Cell, double>(flashrnn::state_view<const double>(u_t.data(), B, G, H), p_v,
                                   flashrnn::state_view<const double>(s.data(), B, K, H),
                                   flashrnn::state_view(s.data(), B, K, H));
    std::printf("after 3 more steps: h[b=0, unit 0] = %.6f\n", s[0]);

    const bool ok = rep.converged && diff < 1e-10 && std::isfinite(grad_p[0]) && std::isfinite(s[0]);
    std::printf("embed: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
  } catch (const flashrnn::Error& e) {
    std::fprintf(stderr, "flashrnn error: %s\n", e.what());
    return 1;
  }
}

// A Kokkos application that owns its data in Kokkos::Views and calls FlashRNN:
// a ParaLSTM layer forward (chunked Newton), a loss on the last hidden state,
// its gradients, and a few autoregressive steps, all on the default execution
// space (Serial with Debian's Kokkos, Cuda/HIP/OpenMP with a cluster's).
#include <Kokkos_Core.hpp>
#include <cmath>
#include <cstdio>

#include "flashrnn/kokkos/flashrnn_kokkos.hpp"

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  using Cell = flashrnn::cells::ParaLSTM;  // K = 2 (c, h), G = 3, P = 5
  using Space = Kokkos::DefaultExecutionSpace;
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  const int B = 4, T = 2048, H = 32;

  // The application's own views: pre-activations (B, T, G*H) as a GEMM would
  // leave them, parameters (P, H), states (B, T, K, H).
  Kokkos::View<double***, Space> u("u", B, T, G * H);
  Kokkos::View<double**, Space> p("p", P, H);
  Kokkos::View<double****, Space> states("states", B, T, K, H);
  Kokkos::parallel_for(
      "fill_u", Kokkos::MDRangePolicy<Space, Kokkos::Rank<3>>({0, 0, 0}, {B, T, G * H}),
      KOKKOS_LAMBDA(int b, int t, int i) { u(b, t, i) = std::sin(0.01 * t + 0.3 * i + b); });
  Kokkos::parallel_for(
      "fill_p", Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>({0, 0}, {P, H}),
      KOKKOS_LAMBDA(int q, int j) { p(q, j) = 0.5 * std::cos(q + 0.1 * j); });

  flashrnn::SolverOptions opts;
  opts.mode = flashrnn::Mode::newton_chunked;
  const Kokkos::View<double***, Space> none;  // absent s0 / final state (zeros / not wanted)
  const auto rep = flashrnn::kokkos::forward<Cell>(Space(), u, p, none, states, none, opts);
  std::printf("forward: %s, %d Newton iterations, residual %.2e, %s, lanes %lld\n",
              flashrnn::to_string(rep.mode_used), rep.iterations, rep.final_residual,
              rep.converged ? "converged" : "NOT converged", static_cast<long long>(rep.lanes));

  // L = sum of the last hidden state h_T: dL/dfinal_state = (0, 1) per unit.
  Kokkos::View<double***, Space> grad_final("grad_final", B, K, H);
  Kokkos::deep_copy(Kokkos::subview(grad_final, Kokkos::ALL, 1, Kokkos::ALL), 1.0);
  Kokkos::View<double***, Space> grad_u("grad_u", B, T, G * H);
  Kokkos::View<double**, Space> grad_p("grad_p", P, H);
  const Kokkos::View<double****, Space> no_grad_states;
  flashrnn::kokkos::backward<Cell>(Space(), u, p, none, states, no_grad_states, grad_final, grad_u, grad_p,
                                   none);
  double norm = 0;
  Kokkos::parallel_reduce(
      "grad_p_norm", Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>({0, 0}, {P, H}),
      KOKKOS_LAMBDA(int q, int j, double& acc) { acc += grad_p(q, j) * grad_p(q, j); }, norm);
  std::printf("backward: |dL/dp| = %.6f\n", std::sqrt(norm));

  // Generation: continue from the last state one step at a time.
  Kokkos::View<double***, Space> s("s", B, K, H);
  Kokkos::deep_copy(s, Kokkos::subview(states, Kokkos::ALL, T - 1, Kokkos::ALL, Kokkos::ALL));
  auto u_next = Kokkos::subview(u, Kokkos::ALL, 0, Kokkos::ALL);  // (B, G*H)
  for (int i = 0; i < 3; ++i) flashrnn::kokkos::step<Cell>(Space(), u_next, p, s, s);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), s);
  std::printf("after 3 steps: h(0, 0) = %.6f\n", h(0, 1, 0));
  return rep.converged ? 0 : 1;
}

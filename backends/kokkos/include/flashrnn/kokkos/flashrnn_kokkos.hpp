// FlashRNN on Kokkos: the forward solve, the backward (adjoint) and one step
// for every lane, on the caller's Kokkos::Views and execution space.
//
// Same contracts as flashrnn/flashrnn.hpp, for data a Kokkos application
// owns. For a cell with state size K, G pre-activations and P parameters per
// unit, B sequences of T steps and H units (B*H independent lanes):
//   u            (B, T, G, H) or (B, T, G*H)    pre-activations (gate-major)
//   p            (P, H)                         per-unit parameters
//   s0           (B, K, H) or (B, K*H)          initial state, optional
//   states       (B, T, K, H) or (B, T, K*H)    trajectory, optional output
//   final_state  (B, K, H) or (B, K*H)          last state, optional output
// Any layout (LayoutRight, LayoutLeft, LayoutStride, subviews); an absent
// optional argument is a default-constructed View (data() == nullptr). Every
// view must be accessible from the execution space. The element type is the
// compute precision (float or double). Everything runs on `space`; the calls
// return after `space` is fenced.
//
// Works for every execution space the Kokkos build enables (Serial, OpenMP,
// Threads, Cuda, HIP, SYCL): cells' FLASHRNN_HOST_DEVICE is __host__
// __device__ under CUDA/HIP, i.e. KOKKOS_FUNCTION. Each entry point is a
// Kokkos profiling region named after it ("flashrnn::kokkos::forward", ...).
//
// Errors: InvalidArgument (argument named, as in the native API);
// ConvergenceError only with OnNonConvergence::throw_error.
#pragma once
#include <Kokkos_Core.hpp>
#include <type_traits>

#include "flashrnn/cells/diag_tanh.hpp"
#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/core/options.hpp"
#include "flashrnn/kokkos/solver.hpp"
#include "flashrnn/kokkos/tuning.hpp"
#include "flashrnn/kokkos/views.hpp"

namespace flashrnn {
namespace kokkos {

namespace detail {
template <class ExecSpace, class KV>
constexpr void require_accessible_view() {
  static_assert(Kokkos::is_view<KV>::value, "flashrnn::kokkos: arguments must be Kokkos::View");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename KV::memory_space>::accessible,
                "flashrnn::kokkos: a view is not accessible from the execution space");
}
/// Every one of the views KVs is a Kokkos::View that `ExecSpace` can access.
template <class ExecSpace, class... KVs>
constexpr void require_accessible() {
  (require_accessible_view<ExecSpace, KVs>(), ...);
}
template <class KV>
using scalar_t = typename KV::non_const_value_type;
template <class E>
using if_space = std::enable_if_t<Kokkos::is_execution_space<E>::value, int>;
template <class V>
using if_view = std::enable_if_t<Kokkos::is_view<V>::value, int>;
}  // namespace detail

/// Solves the recurrence for all lanes on `space`; writes `states` and/or
/// `final_state` (at least one). Returns the solve report (mode used, Newton
/// iterations, final residual, convergence, lanes recomputed by stepping).
template <class Cell, class ExecSpace, class UView, class PView, class S0View, class StatesView,
          class FinalView, detail::if_space<ExecSpace> = 0>
SolveReport forward(const ExecSpace& space, const UView& u, const PView& p, const S0View& s0,
                    const StatesView& states, const FinalView& final_state,
                    const SolverOptions& options = {}, const KokkosOptions& kokkos_options = {}) {
  detail::ScopedRegion region("flashrnn::kokkos::forward");
  using S = detail::scalar_t<UView>;
  static_assert(std::is_floating_point<S>::value, "flashrnn::kokkos: float or double views");
  detail::require_accessible<ExecSpace, UView, PView, S0View, StatesView, FinalView>();
  constexpr const char* where = "flashrnn::kokkos::forward";
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  const View<const S> ud = sequence_view(u, G, where, "u");
  const View<const S> pd = param_view(p);
  const View<const S> s0d = state_view(s0, K, where, "s0");
  const View<S> sd = sequence_view(states, K, where, "states");
  const View<S> fd = state_view(final_state, K, where, "final_state");
  return kokkos::solve_forward<Cell, S, S>(space, ud, pd, s0d, sd, fd, options, kokkos_options);
}

/// forward() on the default execution space.
template <class Cell, class UView, class PView, class S0View, class StatesView, class FinalView,
          detail::if_view<UView> = 0>
SolveReport forward(const UView& u, const PView& p, const S0View& s0, const StatesView& states,
                    const FinalView& final_state, const SolverOptions& options = {},
                    const KokkosOptions& kokkos_options = {}) {
  return forward<Cell>(typename UView::execution_space(), u, p, s0, states, final_state, options,
                       kokkos_options);
}

/// Gradients of a loss L given ∂L/∂states (`grad_states`, optional, shaped
/// like states) and ∂L/∂final_state (`grad_final`, optional), at the
/// trajectory `states` that forward returned. Overwrites whichever of grad_u
/// (like u), grad_p (like p) and grad_s0 (like s0) are given. grad_p sums over
/// the batch in a fixed order (deterministic).
template <class Cell, class ExecSpace, class UView, class PView, class S0View, class StatesView,
          class GStatesView, class GFinalView, class GUView, class GPView, class GS0View,
          detail::if_space<ExecSpace> = 0>
void backward(const ExecSpace& space, const UView& u, const PView& p, const S0View& s0,
              const StatesView& states, const GStatesView& grad_states, const GFinalView& grad_final,
              const GUView& grad_u, const GPView& grad_p, const GS0View& grad_s0,
              const KokkosOptions& kokkos_options = {}) {
  detail::ScopedRegion region("flashrnn::kokkos::backward");
  using S = detail::scalar_t<UView>;
  static_assert(std::is_floating_point<S>::value, "flashrnn::kokkos: float or double views");
  detail::require_accessible<ExecSpace, UView, PView, S0View, StatesView, GStatesView, GFinalView,
                             GUView, GPView, GS0View>();
  constexpr const char* where = "flashrnn::kokkos::backward";
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  kokkos::solve_backward<Cell, S, S>(space, View<const S>(sequence_view(u, G, where, "u")),
                             View<const S>(param_view(p)), View<const S>(state_view(s0, K, where, "s0")),
                             View<const S>(sequence_view(states, K, where, "states")),
                             View<const S>(sequence_view(grad_states, K, where, "grad_states")),
                             View<const S>(state_view(grad_final, K, where, "grad_final")),
                             View<S>(sequence_view(grad_u, G, where, "grad_u")), View<S>(param_view(grad_p)),
                             View<S>(state_view(grad_s0, K, where, "grad_s0")), kokkos_options);
}

/// backward() on the default execution space.
template <class Cell, class UView, class PView, class S0View, class StatesView, class GStatesView,
          class GFinalView, class GUView, class GPView, class GS0View, detail::if_view<UView> = 0>
void backward(const UView& u, const PView& p, const S0View& s0, const StatesView& states,
              const GStatesView& grad_states, const GFinalView& grad_final, const GUView& grad_u,
              const GPView& grad_p, const GS0View& grad_s0, const KokkosOptions& kokkos_options = {}) {
  backward<Cell>(typename UView::execution_space(), u, p, s0, states, grad_states, grad_final, grad_u,
                 grad_p, grad_s0, kokkos_options);
}

/// One step for every lane (autoregressive generation): u_t (B, G, H) or
/// (B, G*H), s_prev / s_next (B, K, H) or (B, K*H); s_next may be s_prev.
template <class Cell, class ExecSpace, class UView, class PView, class SPrevView, class SNextView,
          detail::if_space<ExecSpace> = 0>
void step(const ExecSpace& space, const UView& u_t, const PView& p, const SPrevView& s_prev,
          const SNextView& s_next) {
  detail::ScopedRegion region("flashrnn::kokkos::step");
  using S = detail::scalar_t<UView>;
  detail::require_accessible<ExecSpace, UView, PView, SPrevView, SNextView>();
  constexpr const char* where = "flashrnn::kokkos::step";
  constexpr int K = cell_traits<Cell>::K, G = cell_traits<Cell>::G;
  kokkos::solve_step<Cell, S, S>(space, View<const S>(state_view(u_t, G, where, "u_t")), View<const S>(param_view(p)),
                         View<const S>(state_view(s_prev, K, where, "s_prev")),
                         View<S>(state_view(s_next, K, where, "s_next")));
}

/// step() on the default execution space.
template <class Cell, class UView, class PView, class SPrevView, class SNextView,
          detail::if_view<UView> = 0>
void step(const UView& u_t, const PView& p, const SPrevView& s_prev, const SNextView& s_next) {
  step<Cell>(typename UView::execution_space(), u_t, p, s_prev, s_next);
}

}  // namespace kokkos
}  // namespace flashrnn

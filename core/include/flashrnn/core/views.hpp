// Non-owning strided views over caller-owned memory.
//
// Every tensor FlashRNN touches is a 4-D view (steps, batch, channels, units):
//   u       pre-activations   (T, B, G, H)   channel g of unit j = gate g
//   states  trajectory        (T, B, K, H)   channel k = state component k
//   s0, sT  initial / final   (1, B, K, H)
//   p       parameters        (1, 1, P, H)   shared by the batch
// Strides are in elements and may be anything non-negative (batch-first,
// time-first, gate-major or unit-major layouts all fit). The helpers below
// build the common contiguous layouts.
#pragma once
#include "config.hpp"

namespace flashrnn {

template <class T>
struct View {
  T* data = nullptr;
  index_t steps = 1, batch = 1, channels = 1, units = 1;
  index_t stride_t = 0, stride_b = 0, stride_c = 0, stride_h = 0;

  FLASHRNN_HOST_DEVICE T& operator()(index_t t, index_t b, index_t c, index_t h) const {
    return data[t * stride_t + b * stride_b + c * stride_c + h * stride_h];
  }
  FLASHRNN_HOST_DEVICE index_t size() const { return steps * batch * channels * units; }
  /// The same view with const elements.
  operator View<const T>() const {  // NOLINT(google-explicit-constructor)
    return View<const T>{data, steps, batch, channels, units, stride_t, stride_b, stride_c, stride_h};
  }
};

/// Contiguous [B][T][C*H] (PyTorch batch_first, gate-major within the last axis).
template <class T>
View<T> batch_first(T* data, index_t batch, index_t steps, index_t channels, index_t units) {
  return View<T>{data,  steps, batch, channels, units, channels * units,
                 steps * channels * units, units, 1};
}
/// Contiguous [T][B][C*H] (PyTorch's default sequence-first layout).
template <class T>
View<T> time_first(T* data, index_t steps, index_t batch, index_t channels, index_t units) {
  return View<T>{data, steps, batch, channels, units, batch * channels * units, channels * units,
                 units, 1};
}
/// Contiguous [B][C*H] state (initial or final), one time step.
template <class T>
View<T> state_view(T* data, index_t batch, index_t channels, index_t units) {
  return View<T>{data, 1, batch, channels, units, 0, channels * units, units, 1};
}
/// Contiguous [P][H] per-unit parameters shared by the batch.
template <class T>
View<T> param_view(T* data, index_t params, index_t units) {
  return View<T>{data, 1, 1, params, units, 0, 0, units, 1};
}

}  // namespace flashrnn

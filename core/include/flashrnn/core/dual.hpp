// Forward-mode dual numbers with N tangents. Instantiating a cell's `step`
// with Dual<T, N> yields its value and N directional derivatives in one pass;
// this is how every Jacobian in FlashRNN is obtained.
#pragma once
#include "config.hpp"
#include "math.hpp"

namespace flashrnn {

template <class T, int N>
struct Dual {
  T v;     ///< value
  T d[N];  ///< d[i] = derivative along tangent direction i

  FLASHRNN_HOST_DEVICE Dual() : v(0) {
    FLASHRNN_UNROLL
    for (int i = 0; i < N; ++i) d[i] = T(0);
  }
  // Constants convert implicitly so that cells can write `T(1) - z` or `1 - z`.
  FLASHRNN_HOST_DEVICE Dual(T value) : v(value) {  // NOLINT(google-explicit-constructor)
    FLASHRNN_UNROLL
    for (int i = 0; i < N; ++i) d[i] = T(0);
  }
  /// A variable seeded along tangent `direction` (value `value`, d = e_direction).
  FLASHRNN_HOST_DEVICE static Dual variable(T value, int direction) {
    Dual x(value);
    x.d[direction] = T(1);
    return x;
  }
};

namespace detail {
// r = a*x + b*y applied to tangents (the chain rule of every binary operation).
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> combine(T value, T a, const Dual<T, N>& x, T b,
                                                const Dual<T, N>& y) {
  Dual<T, N> r;
  r.v = value;
  FLASHRNN_UNROLL
  for (int i = 0; i < N; ++i) r.d[i] = a * x.d[i] + b * y.d[i];
  return r;
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> scale(T value, T a, const Dual<T, N>& x) {
  Dual<T, N> r;
  r.v = value;
  FLASHRNN_UNROLL
  for (int i = 0; i < N; ++i) r.d[i] = a * x.d[i];
  return r;
}
}  // namespace detail

template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator+(const Dual<T, N>& x, const Dual<T, N>& y) {
  return detail::combine(x.v + y.v, T(1), x, T(1), y);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator-(const Dual<T, N>& x, const Dual<T, N>& y) {
  return detail::combine(x.v - y.v, T(1), x, T(-1), y);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator*(const Dual<T, N>& x, const Dual<T, N>& y) {
  return detail::combine(x.v * y.v, y.v, x, x.v, y);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator/(const Dual<T, N>& x, const Dual<T, N>& y) {
  const T q = x.v / y.v;
  return detail::combine(q, T(1) / y.v, x, -q / y.v, y);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator-(const Dual<T, N>& x) {
  return detail::scale(-x.v, T(-1), x);
}

// Mixed operations with plain scalars (no tangent on the scalar side).
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator+(const Dual<T, N>& x, T y) {
  return detail::scale(x.v + y, T(1), x);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator+(T y, const Dual<T, N>& x) {
  return x + y;
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator-(const Dual<T, N>& x, T y) {
  return detail::scale(x.v - y, T(1), x);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator-(T y, const Dual<T, N>& x) {
  return detail::scale(y - x.v, T(-1), x);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator*(const Dual<T, N>& x, T y) {
  return detail::scale(x.v * y, y, x);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> operator*(T y, const Dual<T, N>& x) {
  return x * y;
}

template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> exp(const Dual<T, N>& x) {
  const T e = math::exp(x.v);
  return detail::scale(e, e, x);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> tanh(const Dual<T, N>& x) {
  const T t = math::tanh(x.v);
  return detail::scale(t, T(1) - t * t, x);
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline Dual<T, N> sigmoid(const Dual<T, N>& x) {
  const T s = math::sigmoid(x.v);
  return detail::scale(s, s * (T(1) - s), x);
}

// Cells call activations unqualified through these, so one spelling serves
// plain scalars and duals.
using math::sigmoid;
using math::tanh;
using math::exp;

/// Value part of a scalar or dual (identity on scalars).
template <class T>
FLASHRNN_HOST_DEVICE inline T value_of(T x) {
  return x;
}
template <class T, int N>
FLASHRNN_HOST_DEVICE inline T value_of(const Dual<T, N>& x) {
  return x.v;
}

}  // namespace flashrnn

// Affine maps x -> A x + c on R^K and their associative composition: the value
// type of every scan in FlashRNN (Newton steps, chunk boundaries, adjoints).
#pragma once
#include "config.hpp"

namespace flashrnn {

/// x -> A x + c with A a dense K x K matrix stored row-major.
template <class T, int K>
struct Affine {
  T A[K * K];
  T c[K];

  FLASHRNN_HOST_DEVICE static Affine identity() {
    Affine m;
    FLASHRNN_UNROLL
    for (int i = 0; i < K * K; ++i) m.A[i] = T(0);
    FLASHRNN_UNROLL
    for (int i = 0; i < K; ++i) {
      m.A[i * K + i] = T(1);
      m.c[i] = T(0);
    }
    return m;
  }
  /// The constant map x -> c (A = 0): a scan started from it carries states.
  FLASHRNN_HOST_DEVICE static Affine constant(const T* value) {
    Affine m;
    FLASHRNN_UNROLL
    for (int i = 0; i < K * K; ++i) m.A[i] = T(0);
    FLASHRNN_UNROLL
    for (int i = 0; i < K; ++i) m.c[i] = value[i];
    return m;
  }
  /// The tangent at `at` of a map whose value there is `value` and whose
  /// Jacobian there is `jac` (K x K, row-major): x -> jac x + (value - jac at).
  /// Every Newton iteration scans these.
  FLASHRNN_HOST_DEVICE static Affine tangent(const T* value, const T* jac, const T* at) {
    Affine m;
    FLASHRNN_UNROLL
    for (int i = 0; i < K; ++i) {
      T c = value[i];
      FLASHRNN_UNROLL
      for (int j = 0; j < K; ++j) {
        m.A[i * K + j] = jac[i * K + j];
        c -= jac[i * K + j] * at[j];
      }
      m.c[i] = c;
    }
    return m;
  }
  FLASHRNN_HOST_DEVICE void apply(const T* x, T* y) const {
    FLASHRNN_UNROLL
    for (int i = 0; i < K; ++i) {
      T acc = c[i];
      FLASHRNN_UNROLL
      for (int j = 0; j < K; ++j) acc += A[i * K + j] * x[j];
      y[i] = acc;
    }
  }
};

/// later ∘ earlier = (A2 A1, A2 c1 + c2): apply `earlier` first. Associative,
/// not commutative; every scan composes in this order.
template <class T, int K>
FLASHRNN_HOST_DEVICE inline Affine<T, K> compose(const Affine<T, K>& later,
                                                  const Affine<T, K>& earlier) {
  Affine<T, K> r;
  FLASHRNN_UNROLL
  for (int i = 0; i < K; ++i) {
    T acc = later.c[i];
    FLASHRNN_UNROLL
    for (int k = 0; k < K; ++k) acc += later.A[i * K + k] * earlier.c[k];
    r.c[i] = acc;
    FLASHRNN_UNROLL
    for (int j = 0; j < K; ++j) {
      T a = T(0);
      FLASHRNN_UNROLL
      for (int k = 0; k < K; ++k) a += later.A[i * K + k] * earlier.A[k * K + j];
      r.A[i * K + j] = a;
    }
  }
  return r;
}

// K = 1 and K = 2 written out: these are the hot paths of ParaGRU and ParaLSTM,
// and the explicit form keeps the operation count minimal on every compiler.
template <class T>
FLASHRNN_HOST_DEVICE inline Affine<T, 1> compose(const Affine<T, 1>& later,
                                                  const Affine<T, 1>& earlier) {
  Affine<T, 1> r;
  r.A[0] = later.A[0] * earlier.A[0];
  r.c[0] = later.A[0] * earlier.c[0] + later.c[0];
  return r;
}

template <class T>
FLASHRNN_HOST_DEVICE inline Affine<T, 2> compose(const Affine<T, 2>& later,
                                                  const Affine<T, 2>& earlier) {
  const T* a = later.A;
  const T* b = earlier.A;
  Affine<T, 2> r;
  r.A[0] = a[0] * b[0] + a[1] * b[2];
  r.A[1] = a[0] * b[1] + a[1] * b[3];
  r.A[2] = a[2] * b[0] + a[3] * b[2];
  r.A[3] = a[2] * b[1] + a[3] * b[3];
  r.c[0] = a[0] * earlier.c[0] + a[1] * earlier.c[1] + later.c[0];
  r.c[1] = a[2] * earlier.c[0] + a[3] * earlier.c[1] + later.c[1];
  return r;
}

/// The map x -> A^T x + c, used by the adjoint (reverse) scan.
template <class T, int K>
FLASHRNN_HOST_DEVICE inline Affine<T, K> transposed_linear(const T* A, const T* c) {
  Affine<T, K> m;
  FLASHRNN_UNROLL
  for (int i = 0; i < K; ++i) {
    m.c[i] = c[i];
    FLASHRNN_UNROLL
    for (int j = 0; j < K; ++j) m.A[i * K + j] = A[j * K + i];
  }
  return m;
}

}  // namespace flashrnn

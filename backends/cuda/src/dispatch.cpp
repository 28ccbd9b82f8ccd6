// Runtime-typed entry points of the CUDA backend (flashrnn/dispatch.hpp
// signatures): one switch turns (cell, dtype) into the template instance.
#include <cuda_runtime.h>

#include "flashrnn/cells/diag_tanh.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "flashrnn/cells/para_gru.hpp"
#include "flashrnn/cells/para_lstm.hpp"
#include "flashrnn/core/error.hpp"
#include "flashrnn/cuda/api.hpp"

namespace flashrnn {
namespace cuda {
namespace {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::bfloat16: return "bfloat16";
    case DType::float16: return "float16";
  }
  return "?";
}

/// Checks device and dtype of every given tensor against u's.
struct TensorChecker {
  const char* where;
  DType dtype;
  int device_index;
  void operator()(const char* arg, const Tensor& t) const {
    if (t.data == nullptr) return;
    if (t.device != Device::cuda)
      flashrnn::detail::fail_argument(where, arg, "a CUDA tensor", "a CPU tensor");
    if (t.dtype != dtype)
      flashrnn::detail::fail_argument(where, arg, flashrnn::detail::concat("dtype ", dtype_name(dtype)),
                                      flashrnn::detail::concat("dtype ", dtype_name(t.dtype)));
    if (t.device_index != device_index)
      flashrnn::detail::fail_argument(where, arg, flashrnn::detail::concat("cuda:", device_index),
                                      flashrnn::detail::concat("cuda:", t.device_index));
  }
};

template <class S>
View<S> view_of(const Tensor& t) {
  return View<S>{static_cast<S*>(t.data), t.sizes[0], t.sizes[1], t.sizes[2], t.sizes[3],
                 t.strides[0], t.strides[1], t.strides[2], t.strides[3]};
}

/// Makes t.device_index current for the call and restores the previous device.
struct DeviceGuard {
  int previous = -1;
  explicit DeviceGuard(int index) {
    if (cudaGetDevice(&previous) != cudaSuccess) {
      (void)cudaGetLastError();
      throw BackendError("flashrnn::cuda: cudaGetDevice failed (is a GPU present?)");
    }
    if (previous != index && cudaSetDevice(index) != cudaSuccess) {
      (void)cudaGetLastError();
      throw BackendError(flashrnn::detail::concat("flashrnn::cuda: cudaSetDevice(", index, ") failed"));
    }
  }
  ~DeviceGuard() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous) (void)cudaSetDevice(previous);
  }
};

/// Calls f.template operator()<Cell, S>() for the runtime cell and dtype.
template <class F>
decltype(auto) switch_types(const char* where, CellKind cell, DType dtype, F&& f) {
  auto by_dtype = [&](auto cell_tag) -> decltype(auto) {
    using Cell = decltype(cell_tag);
    switch (dtype) {
      case DType::float32: return f.template operator()<Cell, float>();
      case DType::float64: return f.template operator()<Cell, double>();
      case DType::bfloat16: return f.template operator()<Cell, __nv_bfloat16>();
      case DType::float16: return f.template operator()<Cell, __half>();
    }
    flashrnn::detail::fail_argument(where, "dtype", "float32, float64, bfloat16 or float16", static_cast<int>(dtype));
  };
  switch (cell) {
    case CellKind::para_gru: return by_dtype(cells::ParaGRU{});
    case CellKind::para_lstm: return by_dtype(cells::ParaLSTM{});
    case CellKind::diag_tanh: return by_dtype(cells::DiagTanh{});
    case CellKind::head_tanh4: return by_dtype(cells::HeadTanh4{});
  }
  flashrnn::detail::fail_argument(where, "cell", "para_gru, para_lstm, diag_tanh or head_tanh4",
                                  static_cast<int>(cell));
}

struct ForwardCall {
  const Tensor &u, &p, &s0, &states, &final_state;
  const SolverOptions& options;
  cudaStream_t stream;
  template <class Cell, class S>
  SolveReport operator()() const {
    return forward<Cell, S>(view_of<const S>(u), view_of<const S>(p), view_of<const S>(s0),
                            view_of<S>(states), view_of<S>(final_state), options, stream);
  }
};

struct BackwardCall {
  const Tensor &u, &p, &s0, &states, &grad_states, &grad_final, &grad_u, &grad_p, &grad_s0;
  cudaStream_t stream;
  template <class Cell, class S>
  int operator()() const {
    backward<Cell, S>(view_of<const S>(u), view_of<const S>(p), view_of<const S>(s0),
                      view_of<const S>(states), view_of<const S>(grad_states),
                      view_of<const S>(grad_final), view_of<S>(grad_u), view_of<S>(grad_p),
                      view_of<S>(grad_s0), stream);
    return 0;
  }
};

struct StepCall {
  const Tensor &u_t, &p, &s_prev, &s_next;
  cudaStream_t stream;
  template <class Cell, class S>
  int operator()() const {
    step<Cell, S>(view_of<const S>(u_t), view_of<const S>(p), view_of<const S>(s_prev),
                  view_of<S>(s_next), stream);
    return 0;
  }
};

void require_u(const char* where, const char* arg, const Tensor& u) {
  if (u.data == nullptr) flashrnn::detail::fail_argument(where, arg, "a non-null data pointer", "nullptr");
  if (u.device != Device::cuda) flashrnn::detail::fail_argument(where, arg, "a CUDA tensor", "a CPU tensor");
}

}  // namespace

SolveReport dispatch_forward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                             const Tensor& states, const Tensor& final_state,
                             const SolverOptions& options, const ExecutionContext& ctx) {
  constexpr const char* where = "flashrnn::cuda::forward";
  require_u(where, "u", u);
  const TensorChecker check{where, u.dtype, u.device_index};
  check("p", p);
  check("s0", s0);
  check("states", states);
  check("final_state", final_state);
  DeviceGuard guard(u.device_index);
  return switch_types(where, cell, u.dtype,
                      ForwardCall{u, p, s0, states, final_state, options,
                                  static_cast<cudaStream_t>(ctx.stream)});
}

void dispatch_backward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                       const Tensor& states, const Tensor& grad_states, const Tensor& grad_final,
                       const Tensor& grad_u, const Tensor& grad_p, const Tensor& grad_s0,
                       const ExecutionContext& ctx) {
  constexpr const char* where = "flashrnn::cuda::backward";
  require_u(where, "u", u);
  const TensorChecker check{where, u.dtype, u.device_index};
  check("p", p);
  check("s0", s0);
  check("states", states);
  check("grad_states", grad_states);
  check("grad_final", grad_final);
  check("grad_u", grad_u);
  check("grad_p", grad_p);
  check("grad_s0", grad_s0);
  DeviceGuard guard(u.device_index);
  switch_types(where, cell, u.dtype,
               BackwardCall{u, p, s0, states, grad_states, grad_final, grad_u, grad_p, grad_s0,
                            static_cast<cudaStream_t>(ctx.stream)});
}

void dispatch_step(CellKind cell, const Tensor& u_t, const Tensor& p, const Tensor& s_prev,
                   const Tensor& s_next, const ExecutionContext& ctx) {
  constexpr const char* where = "flashrnn::cuda::step";
  require_u(where, "u_t", u_t);
  const TensorChecker check{where, u_t.dtype, u_t.device_index};
  check("p", p);
  check("s_prev", s_prev);
  check("s_next", s_next);
  DeviceGuard guard(u_t.device_index);
  switch_types(where, cell, u_t.dtype,
               StepCall{u_t, p, s_prev, s_next, static_cast<cudaStream_t>(ctx.stream)});
}

}  // namespace cuda
}  // namespace flashrnn

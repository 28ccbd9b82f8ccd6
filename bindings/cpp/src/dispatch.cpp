// Runtime-typed entry points (flashrnn/dispatch.hpp): validate that every
// tensor agrees with `u` on dtype and device, then switch once from runtime
// values (cell, dtype) to the templates of flashrnn.hpp (CPU) or to
// flashrnn::cuda::dispatch_* (CUDA, when built with FLASHRNN_HAVE_CUDA).
#include "flashrnn/dispatch.hpp"

#include <string>

#include "flashrnn/flashrnn.hpp"

#ifdef FLASHRNN_HAVE_CUDA
#if __has_include("flashrnn/cuda/api.hpp")
#include "flashrnn/cuda/api.hpp"  // flashrnn::cuda::dispatch_* (backends/cuda)
#else
namespace flashrnn {
namespace cuda {
// Provided by backends/cuda (flashrnn_cuda); same contracts as flashrnn::forward etc.
SolveReport dispatch_forward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                             const Tensor& states, const Tensor& final_state,
                             const SolverOptions& options, const ExecutionContext& ctx);
void dispatch_backward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                       const Tensor& states, const Tensor& grad_states, const Tensor& grad_final,
                       const Tensor& grad_u, const Tensor& grad_p, const Tensor& grad_s0,
                       const ExecutionContext& ctx);
void dispatch_step(CellKind cell, const Tensor& u_t, const Tensor& p, const Tensor& s_prev,
                   const Tensor& s_next, const ExecutionContext& ctx);
}  // namespace cuda
}  // namespace flashrnn
#endif
#endif

namespace flashrnn {

CellDims cell_dims(CellKind cell) {
  switch (cell) {
    case CellKind::para_gru:
      return {cells::ParaGRU::state_dim, cells::ParaGRU::input_dim, cells::ParaGRU::param_dim};
    case CellKind::para_lstm:
      return {cells::ParaLSTM::state_dim, cells::ParaLSTM::input_dim, cells::ParaLSTM::param_dim};
    case CellKind::diag_tanh:
      return {cells::DiagTanh::state_dim, cells::DiagTanh::input_dim, cells::DiagTanh::param_dim};
    case CellKind::head_tanh4:
      return {cells::HeadTanh4::state_dim, cells::HeadTanh4::input_dim, cells::HeadTanh4::param_dim};
  }
  throw InvalidArgument(detail::concat("flashrnn::cell_dims: unknown cell kind ", static_cast<int>(cell)));
}

const char* to_string(CellKind cell) {
  switch (cell) {
    case CellKind::para_gru: return "para_gru";
    case CellKind::para_lstm: return "para_lstm";
    case CellKind::diag_tanh: return "diag_tanh";
    case CellKind::head_tanh4: return "head_tanh4";
  }
  return "?";
}

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::bfloat16: return "bfloat16";
    case DType::float16: return "float16";
  }
  return "?";
}

namespace {

std::string describe_device(const Tensor& t) {
  return t.device == Device::cpu ? std::string("cpu")
                                 : detail::concat("cuda:", t.device_index);
}

/// Every present tensor must share u's dtype and device; `args` pairs names
/// with tensors, the first one being the reference.
struct NamedTensor {
  const char* name;
  const Tensor* t;
};

template <size_t N>
void check_consistent(const char* where, const NamedTensor (&args)[N]) {
  const Tensor& ref = *args[0].t;
  if (ref.data == nullptr) detail::fail_argument(where, args[0].name, "a non-null data pointer", "nullptr");
  for (size_t i = 1; i < N; ++i) {
    const Tensor& t = *args[i].t;
    if (t.data == nullptr) continue;
    if (t.dtype != ref.dtype)
      detail::fail_argument(where, args[i].name,
                            detail::concat("dtype ", to_string(ref.dtype), " (the dtype of '",
                                           args[0].name, "')"),
                            to_string(t.dtype));
    if (t.device != ref.device || (t.device == Device::cuda && t.device_index != ref.device_index))
      detail::fail_argument(where, args[i].name,
                            detail::concat("device ", describe_device(ref), " (the device of '",
                                           args[0].name, "')"),
                            describe_device(t));
  }
}

template <class T>
View<T> view_of(const Tensor& t) {
  View<T> v;
  v.data = static_cast<T*>(t.data);
  v.steps = t.sizes[0];
  v.batch = t.sizes[1];
  v.channels = t.sizes[2];
  v.units = t.sizes[3];
  v.stride_t = t.strides[0];
  v.stride_b = t.strides[1];
  v.stride_c = t.strides[2];
  v.stride_h = t.strides[3];
  return v;
}

template <class T>
View<const T> cview_of(const Tensor& t) {
  return view_of<const T>(t);
}

template <class T>
struct Tag {
  using type = T;
};

/// The one switch from runtime (cell, dtype) to template parameters, CPU side.
template <class F>
decltype(auto) with_cell_and_float(const char* where, CellKind cell, DType dtype, F&& f) {
  auto with_cell = [&](auto real_tag) -> decltype(auto) {
    using R = typename decltype(real_tag)::type;
    switch (cell) {
      case CellKind::para_gru: return f(cells::ParaGRU{}, R{});
      case CellKind::para_lstm: return f(cells::ParaLSTM{}, R{});
      case CellKind::diag_tanh: return f(cells::DiagTanh{}, R{});
      case CellKind::head_tanh4: return f(cells::HeadTanh4{}, R{});
    }
    throw InvalidArgument(detail::concat(where, ": argument 'cell': unknown cell kind ",
                                         static_cast<int>(cell)));
  };
  switch (dtype) {
    case DType::float32: return with_cell(Tag<float>{});
    case DType::float64: return with_cell(Tag<double>{});
    default: break;
  }
  detail::fail_argument(where, "u", "dtype float32 or float64 on the CPU (bfloat16/float16 are GPU-only)",
                        to_string(dtype));
}

#ifndef FLASHRNN_HAVE_CUDA
[[noreturn]] void no_cuda(const char* where, const char* arg) {
  throw InvalidArgument(detail::concat(
      where, ": argument '", arg,
      "': a CUDA tensor, but FlashRNN was built without CUDA (configure with -DFLASHRNN_ENABLE_CUDA=ON "
      "on a machine with nvcc)"));
}
#endif

}  // namespace

SolveReport forward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                    const Tensor& states, const Tensor& final_state, const SolverOptions& options,
                    const ExecutionContext& ctx) {
  constexpr const char* where = "flashrnn::forward";
  check_consistent(where, {{"u", &u}, {"p", &p}, {"s0", &s0}, {"states", &states},
                           {"final_state", &final_state}});
  if (u.device == Device::cuda) {
#ifdef FLASHRNN_HAVE_CUDA
    return cuda::dispatch_forward(cell, u, p, s0, states, final_state, options, ctx);
#else
    no_cuda(where, "u");
#endif
  }
  return with_cell_and_float(where, cell, u.dtype, [&](auto c, auto r) {
    using Cell = decltype(c);
    using R = decltype(r);
    return flashrnn::forward<Cell, R>(cview_of<R>(u), cview_of<R>(p), cview_of<R>(s0),
                                      view_of<R>(states), view_of<R>(final_state), options,
                                      Context{ctx.num_threads});
  });
}

void backward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
              const Tensor& states, const Tensor& grad_states, const Tensor& grad_final,
              const Tensor& grad_u, const Tensor& grad_p, const Tensor& grad_s0,
              const ExecutionContext& ctx) {
  constexpr const char* where = "flashrnn::backward";
  check_consistent(where, {{"u", &u}, {"p", &p}, {"s0", &s0}, {"states", &states},
                           {"grad_states", &grad_states}, {"grad_final", &grad_final},
                           {"grad_u", &grad_u}, {"grad_p", &grad_p}, {"grad_s0", &grad_s0}});
  if (u.device == Device::cuda) {
#ifdef FLASHRNN_HAVE_CUDA
    cuda::dispatch_backward(cell, u, p, s0, states, grad_states, grad_final, grad_u, grad_p,
                            grad_s0, ctx);
    return;
#else
    no_cuda(where, "u");
#endif
  }
  with_cell_and_float(where, cell, u.dtype, [&](auto c, auto r) {
    using Cell = decltype(c);
    using R = decltype(r);
    flashrnn::backward<Cell, R>(cview_of<R>(u), cview_of<R>(p), cview_of<R>(s0),
                                cview_of<R>(states), cview_of<R>(grad_states),
                                cview_of<R>(grad_final), view_of<R>(grad_u), view_of<R>(grad_p),
                                view_of<R>(grad_s0), Context{ctx.num_threads});
    return 0;
  });
}

void step(CellKind cell, const Tensor& u_t, const Tensor& p, const Tensor& s_prev,
          const Tensor& s_next, const ExecutionContext& ctx) {
  constexpr const char* where = "flashrnn::step";
  check_consistent(where, {{"u_t", &u_t}, {"p", &p}, {"s_prev", &s_prev}, {"s_next", &s_next}});
  if (u_t.device == Device::cuda) {
#ifdef FLASHRNN_HAVE_CUDA
    cuda::dispatch_step(cell, u_t, p, s_prev, s_next, ctx);
    return;
#else
    no_cuda(where, "u_t");
#endif
  }
  with_cell_and_float(where, cell, u_t.dtype, [&](auto c, auto r) {
    using Cell = decltype(c);
    using R = decltype(r);
    flashrnn::step<Cell, R>(cview_of<R>(u_t), cview_of<R>(p), cview_of<R>(s_prev),
                            view_of<R>(s_next), Context{ctx.num_threads});
    return 0;
  });
}

}  // namespace flashrnn

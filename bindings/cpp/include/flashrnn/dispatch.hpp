// Runtime-typed entry points: the cell, dtype and device are values, not
// template parameters. Language bindings (Python) and codes that pick a cell
// at run time call these; the backend is chosen by where the data lives.
//
// Implemented in the compiled library flashrnn::dispatch (bindings/cpp/src):
// CPU always; CUDA when built with FLASHRNN_ENABLE_CUDA (backends/cuda provides
// flashrnn::cuda::dispatch_* with the same signatures).
#pragma once
#include "flashrnn/core/config.hpp"
#include "flashrnn/core/options.hpp"

namespace flashrnn {

/// The built-in cells: ParaGRU, ParaLSTM, DiagTanh, HeadTanh4 (= HeadTanh<4>).
enum class CellKind { para_gru, para_lstm, diag_tanh, head_tanh4 };
enum class DType { float32, float64, bfloat16, float16 };
enum class Device { cpu, cuda };

/// A strided 4-D tensor (steps, batch, channels, units) of a runtime dtype;
/// data == nullptr means "absent" for optional arguments.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::float32;
  Device device = Device::cpu;
  int device_index = 0;
  index_t sizes[4] = {1, 1, 1, 1};    ///< steps, batch, channels, units
  index_t strides[4] = {0, 0, 0, 0};  ///< in elements
};

/// Where a call runs: CPU threads, or the CUDA stream (a cudaStream_t; null =
/// the default stream).
struct ExecutionContext {
  int num_threads = 0;
  void* stream = nullptr;
};

/// Dimensions (K, G, P) of a cell kind.
struct CellDims {
  int state_dim, input_dim, param_dim;
};
CellDims cell_dims(CellKind cell);
const char* to_string(CellKind cell);
const char* to_string(DType dtype);

/// Same contracts as the templates in flashrnn.hpp; all tensors must share one
/// dtype and one device. Throws InvalidArgument naming the argument otherwise.
SolveReport forward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
                    const Tensor& states, const Tensor& final_state,
                    const SolverOptions& options = {}, const ExecutionContext& ctx = {});
void backward(CellKind cell, const Tensor& u, const Tensor& p, const Tensor& s0,
              const Tensor& states, const Tensor& grad_states, const Tensor& grad_final,
              const Tensor& grad_u, const Tensor& grad_p, const Tensor& grad_s0,
              const ExecutionContext& ctx = {});
void step(CellKind cell, const Tensor& u_t, const Tensor& p, const Tensor& s_prev,
          const Tensor& s_next, const ExecutionContext& ctx = {});

}  // namespace flashrnn

// flashrnn._C: the Python extension. Takes DLPack tensors (capsules or objects
// with __dlpack__: PyTorch, NumPy, ...), checks them, and calls the
// runtime-typed API (flashrnn/dispatch.hpp) on the tensors' device with the
// GIL released. Also exposes the generic affine scan behind Python cells.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include FLASHRNN_DLPACK_HEADER

#include "flashrnn/core/error.hpp"
#include "flashrnn/cpu/parallel_loop.hpp"
#include "flashrnn/dispatch.hpp"
#include "affine_scan.hpp"

namespace py = pybind11;
using flashrnn::index_t;

namespace {

const char* const kWhere = "flashrnn._C";

/// A DLPack tensor borrowed from its capsule; the capsule (and so the memory)
/// stays alive as long as this object.
struct Borrowed {
  py::object owner;  // the capsule
  DLTensor* dl = nullptr;
};

std::string shape_string(const DLTensor& t) {
  std::string s = "(";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + (t.ndim == 1 ? ",)" : ")");
}

Borrowed borrow(const char* fn, const char* name, const py::handle& obj) {
  Borrowed b;
  py::object cap;
  if (PyCapsule_CheckExact(obj.ptr())) {
    cap = py::reinterpret_borrow<py::object>(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    cap = obj.attr("__dlpack__")();
  } else {
    throw py::type_error(std::string(fn) + ": argument '" + name +
                         "': expected a DLPack tensor (torch.Tensor, numpy.ndarray, or a "
                         "'dltensor' capsule), got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  if (!PyCapsule_IsValid(cap.ptr(), "dltensor"))
    throw py::type_error(std::string(fn) + ": argument '" + name +
                         "': expected an unconsumed 'dltensor' capsule (a capsule can be used once)");
  auto* mt = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  b.owner = cap;
  b.dl = &mt->dl_tensor;
  return b;
}

flashrnn::DType dtype_of(const char* fn, const char* name, const DLDataType& t) {
  if (t.lanes == 1) {
    if (t.code == kDLFloat && t.bits == 32) return flashrnn::DType::float32;
    if (t.code == kDLFloat && t.bits == 64) return flashrnn::DType::float64;
    if (t.code == kDLFloat && t.bits == 16) return flashrnn::DType::float16;
    if (t.code == kDLBfloat && t.bits == 16) return flashrnn::DType::bfloat16;
  }
  throw py::type_error(std::string(fn) + ": argument '" + name +
                       "': expected a floating-point tensor (float32, float64, bfloat16, float16), "
                       "got DLPack dtype code " + std::to_string(t.code) + " with " +
                       std::to_string(t.bits) + " bits x " + std::to_string(t.lanes) + " lanes");
}

size_t element_size(flashrnn::DType d) {
  return d == flashrnn::DType::float64 ? 8 : d == flashrnn::DType::float32 ? 4 : 2;
}

flashrnn::Device device_of(const char* fn, const char* name, const DLDevice& d) {
  if (d.device_type == kDLCPU) return flashrnn::Device::cpu;
  if (d.device_type == kDLCUDA) return flashrnn::Device::cuda;
  throw py::value_error(std::string(fn) + ": argument '" + name +
                        "': expected a CPU or CUDA tensor, got DLPack device type " +
                        std::to_string(d.device_type));
}

/// Element strides of a DLPack tensor (null strides mean compact row-major).
std::vector<int64_t> strides_of(const DLTensor& t) {
  std::vector<int64_t> s(static_cast<size_t>(t.ndim));
  if (t.strides) {
    for (int i = 0; i < t.ndim; ++i) s[i] = t.strides[i];
  } else {
    int64_t acc = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      s[i] = acc;
      acc *= t.shape[i];
    }
  }
  return s;
}

/// A 4-D (steps, batch, channels, units) tensor argument of the cell API, or
/// absent (None).
struct Arg {
  Borrowed b;
  flashrnn::Tensor t;
};

Arg tensor_arg(const char* fn, const char* name, const py::handle& obj) {
  Arg a;
  if (obj.is_none()) return a;
  a.b = borrow(fn, name, obj);
  const DLTensor& dl = *a.b.dl;
  if (dl.ndim != 4)
    throw py::value_error(std::string(fn) + ": argument '" + name +
                          "': expected a 4-D tensor (steps, batch, channels, units), got " +
                          std::to_string(dl.ndim) + "-D with shape " + shape_string(dl));
  a.t.dtype = dtype_of(fn, name, dl.dtype);
  a.t.device = device_of(fn, name, dl.device);
  a.t.device_index = dl.device.device_id;
  const auto st = strides_of(dl);
  for (int i = 0; i < 4; ++i) {
    if (st[i] < 0)
      throw py::value_error(std::string(fn) + ": argument '" + name +
                            "': expected non-negative strides, got a negative stride on axis " +
                            std::to_string(i));
    a.t.sizes[i] = dl.shape[i];
    a.t.strides[i] = st[i];
  }
  a.t.data = static_cast<char*>(dl.data) + dl.byte_offset;
  if (reinterpret_cast<std::uintptr_t>(a.t.data) % element_size(a.t.dtype) != 0)
    throw py::value_error(std::string(fn) + ": argument '" + name +
                          "': data pointer is not aligned to its element size");
  return a;
}

flashrnn::CellKind cell_of(const std::string& s) {
  if (s == "para_gru" || s == "gru") return flashrnn::CellKind::para_gru;
  if (s == "para_lstm" || s == "lstm") return flashrnn::CellKind::para_lstm;
  if (s == "diag_tanh" || s == "tanh") return flashrnn::CellKind::diag_tanh;
  if (s == "head_tanh4") return flashrnn::CellKind::head_tanh4;
  throw py::value_error("flashrnn: unknown cell '" + s +
                        "'; expected one of 'para_gru', 'para_lstm', 'diag_tanh', 'head_tanh4'");
}

flashrnn::Mode mode_of(const std::string& s) {
  if (s == "sequential") return flashrnn::Mode::sequential;
  if (s == "newton") return flashrnn::Mode::newton;
  if (s == "newton_chunked" || s == "chunked") return flashrnn::Mode::newton_chunked;
  if (s == "auto" || s == "automatic") return flashrnn::Mode::automatic;
  throw py::value_error("flashrnn: unknown mode '" + s +
                        "'; expected one of 'auto', 'sequential', 'newton', 'newton_chunked'");
}

flashrnn::OnNonConvergence policy_of(const std::string& s) {
  if (s == "fallback_sequential" || s == "fallback") return flashrnn::OnNonConvergence::fallback_sequential;
  if (s == "throw" || s == "raise" || s == "throw_error") return flashrnn::OnNonConvergence::throw_error;
  if (s == "keep_last_iterate" || s == "keep") return flashrnn::OnNonConvergence::keep_last_iterate;
  throw py::value_error("flashrnn: unknown on_nonconvergence '" + s +
                        "'; expected 'fallback_sequential', 'raise' or 'keep_last_iterate'");
}

flashrnn::ExecutionContext context_of(int num_threads, std::uintptr_t stream) {
  flashrnn::ExecutionContext ctx;
  ctx.num_threads = num_threads;
  ctx.stream = reinterpret_cast<void*>(stream);
  return ctx;
}

py::dict report_dict(const flashrnn::SolveReport& r) {
  py::dict d;
  d["mode"] = flashrnn::to_string(r.mode_used);
  d["iterations"] = r.iterations;
  d["final_residual"] = r.final_residual;
  d["converged"] = r.converged;
  d["lanes"] = r.lanes;
  d["lanes_fell_back"] = r.lanes_fell_back;
  d["nonfinite_detected"] = r.nonfinite_detected;
  return d;
}

py::dict forward(const std::string& cell, py::handle u, py::handle p, py::handle s0,
                 py::handle states, py::handle final_state, const std::string& mode,
                 int max_iters, double atol, double rtol, double damping, index_t chunk_length,
                 int sequential_segments, const std::string& on_nonconvergence,
                 bool check_finite, int num_threads, std::uintptr_t stream) {
  const char* fn = "flashrnn._C.forward";
  Arg au = tensor_arg(fn, "u", u), ap = tensor_arg(fn, "p", p), as0 = tensor_arg(fn, "s0", s0),
      ast = tensor_arg(fn, "states", states), afs = tensor_arg(fn, "final_state", final_state);
  flashrnn::SolverOptions o;
  o.mode = mode_of(mode);
  o.max_iters = max_iters;
  o.atol = atol;
  o.rtol = rtol;
  o.damping = damping;
  o.chunk_length = chunk_length;
  o.sequential_segments = sequential_segments;
  o.on_nonconvergence = policy_of(on_nonconvergence);
  o.check_finite = check_finite;
  const auto kind = cell_of(cell);
  flashrnn::SolveReport rep;
  {
    py::gil_scoped_release release;
    rep = flashrnn::forward(kind, au.t, ap.t, as0.t, ast.t, afs.t, o, context_of(num_threads, stream));
  }
  return report_dict(rep);
}

void backward(const std::string& cell, py::handle u, py::handle p, py::handle s0,
              py::handle states, py::handle grad_states, py::handle grad_final, py::handle grad_u,
              py::handle grad_p, py::handle grad_s0, int num_threads, std::uintptr_t stream) {
  const char* fn = "flashrnn._C.backward";
  Arg au = tensor_arg(fn, "u", u), ap = tensor_arg(fn, "p", p), as0 = tensor_arg(fn, "s0", s0),
      ast = tensor_arg(fn, "states", states), ags = tensor_arg(fn, "grad_states", grad_states),
      agf = tensor_arg(fn, "grad_final", grad_final), agu = tensor_arg(fn, "grad_u", grad_u),
      agp = tensor_arg(fn, "grad_p", grad_p), ags0 = tensor_arg(fn, "grad_s0", grad_s0);
  const auto kind = cell_of(cell);
  py::gil_scoped_release release;
  flashrnn::backward(kind, au.t, ap.t, as0.t, ast.t, ags.t, agf.t, agu.t, agp.t, ags0.t,
                     context_of(num_threads, stream));
}

void step(const std::string& cell, py::handle u_t, py::handle p, py::handle s_prev,
          py::handle s_next, int num_threads, std::uintptr_t stream) {
  const char* fn = "flashrnn._C.step";
  Arg au = tensor_arg(fn, "u_t", u_t), ap = tensor_arg(fn, "p", p),
      asp = tensor_arg(fn, "s_prev", s_prev), asn = tensor_arg(fn, "s_next", s_next);
  const auto kind = cell_of(cell);
  py::gil_scoped_release release;
  flashrnn::step(kind, au.t, ap.t, asp.t, asn.t, context_of(num_threads, stream));
}

// ---- the generic affine scan (Python cells) ----

/// A contiguous CPU float tensor of the given rank for the scan.
Borrowed scan_arg(const char* name, const py::handle& obj, int ndim, flashrnn::DType* dtype) {
  const char* fn = "flashrnn._C.affine_scan";
  Borrowed b = borrow(fn, name, obj);
  const DLTensor& dl = *b.dl;
  const auto dt = dtype_of(fn, name, dl.dtype);
  if (dt != flashrnn::DType::float32 && dt != flashrnn::DType::float64)
    throw py::type_error(std::string(fn) + ": argument '" + name +
                         "': expected float32 or float64, got " + flashrnn::to_string(dt));
  if (device_of(fn, name, dl.device) != flashrnn::Device::cpu)
    throw py::value_error(std::string(fn) + ": argument '" + name +
                          "': expected a CPU tensor (the Python package scans CUDA tensors with torch)");
  if (ndim > 0 && dl.ndim != ndim)
    throw py::value_error(std::string(fn) + ": argument '" + name + "': expected " +
                          std::to_string(ndim) + "-D, got " + std::to_string(dl.ndim) +
                          "-D with shape " + shape_string(dl));
  const auto st = strides_of(dl);
  int64_t acc = 1;
  for (int i = dl.ndim - 1; i >= 0; --i) {
    if (dl.shape[i] != 1 && st[i] != acc)
      throw py::value_error(std::string(fn) + ": argument '" + name +
                            "': expected a contiguous tensor (call .contiguous())");
    acc *= dl.shape[i];
  }
  *dtype = dt;
  return b;
}

void affine_scan(py::handle A, py::handle c, py::handle s0, py::handle out, bool reverse,
                 int num_threads) {
  const char* fn = "flashrnn._C.affine_scan";
  flashrnn::DType dA = flashrnn::DType::float32, dc = dA, ds = dA, dout = dA;
  Borrowed bc = scan_arg("c", c, 3, &dc);
  const index_t T = bc.dl->shape[0], N = bc.dl->shape[1], K = bc.dl->shape[2];
  Borrowed bA = scan_arg("A", A, 0, &dA);
  Borrowed bout = scan_arg("out", out, 3, &dout);
  Borrowed bs;
  if (!s0.is_none()) bs = scan_arg("s0", s0, 2, &ds);
  auto fail = [&](const char* name, const std::string& expected, const std::string& got) {
    throw py::value_error(std::string(fn) + ": argument '" + name + "': expected " + expected +
                          ", got " + got);
  };
  // Block size of A's structure: 1 (diagonal), b (block-diagonal) or K (dense).
  const auto* sa = bA.dl->shape;
  const int nd = bA.dl->ndim;
  index_t block = 0;
  if (nd >= 3 && sa[0] == T && sa[1] == N) {
    if (nd == 3 && sa[2] == K) block = 1;
    else if (nd == 4 && sa[2] == K && sa[3] == K) block = K;
    else if (nd == 5 && sa[3] >= 1 && sa[3] == sa[4] && sa[2] * sa[3] == K) block = sa[3];
  }
  if (block == 0)
    fail("A", "shape (T, N, K) (diagonal), (T, N, K/b, b, b) (block-diagonal) or (T, N, K, K) "
              "(dense) matching c",
         shape_string(*bA.dl));
  for (int i = 0; i < 3; ++i)
    if (bout.dl->shape[i] != bc.dl->shape[i]) fail("out", "the shape of c", shape_string(*bout.dl));
  if (bs.dl && (bs.dl->shape[0] != N || bs.dl->shape[1] != K))
    fail("s0", "shape (N, K)", shape_string(*bs.dl));
  if (dA != dc) fail("A", std::string("dtype ") + flashrnn::to_string(dc), flashrnn::to_string(dA));
  if (dout != dc) fail("out", std::string("dtype ") + flashrnn::to_string(dc), flashrnn::to_string(dout));
  if (bs.dl && ds != dc) fail("s0", std::string("dtype ") + flashrnn::to_string(dc), flashrnn::to_string(ds));
  auto ptr = [](const Borrowed& b) -> void* {
    return b.dl ? static_cast<char*>(b.dl->data) + b.dl->byte_offset : nullptr;
  };
  void *pA = ptr(bA), *pc = ptr(bc), *ps = ptr(bs), *po = ptr(bout);
  py::gil_scoped_release release;
  if (dc == flashrnn::DType::float64)
    flashrnn::pybind_detail::affine_scan<double>(static_cast<const double*>(pA), static_cast<const double*>(pc),
                                      static_cast<const double*>(ps), static_cast<double*>(po), T, N,
                                      K, block, reverse, num_threads);
  else
    flashrnn::pybind_detail::affine_scan<float>(static_cast<const float*>(pA), static_cast<const float*>(pc),
                                     static_cast<const float*>(ps), static_cast<float*>(po), T, N, K,
                                     block, reverse, num_threads);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "FlashRNN native extension: nonlinear RNNs solved in parallel along time (DLPack in, "
            "results written in place).";
  static py::exception<flashrnn::ConvergenceError> convergence_error(m, "ConvergenceError",
                                                                      PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const flashrnn::InvalidArgument& ex) {
      PyErr_SetString(PyExc_ValueError, ex.what());
    } catch (const flashrnn::ConvergenceError& ex) {
      convergence_error(ex.what());
    } catch (const flashrnn::Error& ex) {
      PyErr_SetString(PyExc_RuntimeError, ex.what());
    }
  });
  m.attr("max_sequential_segments") = flashrnn::max_sequential_segments;

  m.def("forward", &forward, py::arg("cell"), py::arg("u"), py::arg("p"), py::arg("s0"),
        py::arg("states"), py::arg("final_state"), py::arg("mode") = "auto",
        py::arg("max_iters") = 50, py::arg("atol") = -1.0, py::arg("rtol") = -1.0,
        py::arg("damping") = 1.0, py::arg("chunk_length") = 0,
        py::arg("sequential_segments") = 0,
        py::arg("on_nonconvergence") = "fallback_sequential", py::arg("check_finite") = true,
        py::arg("num_threads") = 0, py::arg("stream") = 0,
        "Solves the recurrence; tensors are 4-D (steps, batch, channels, units) DLPack tensors "
        "(None = absent); writes states / final_state; returns the solve report as a dict.");
  m.def("backward", &backward, py::arg("cell"), py::arg("u"), py::arg("p"), py::arg("s0"),
        py::arg("states"), py::arg("grad_states"), py::arg("grad_final"), py::arg("grad_u"),
        py::arg("grad_p"), py::arg("grad_s0"), py::arg("num_threads") = 0, py::arg("stream") = 0,
        "Adjoint of forward: writes grad_u, grad_p, grad_s0 (any may be None).");
  m.def("step", &step, py::arg("cell"), py::arg("u_t"), py::arg("p"), py::arg("s_prev"),
        py::arg("s_next"), py::arg("num_threads") = 0, py::arg("stream") = 0,
        "One step of every lane (autoregressive inference); s_next may be s_prev.");
  m.def("affine_scan", &affine_scan, py::arg("A"), py::arg("c"), py::arg("s0"), py::arg("out"),
        py::arg("reverse") = false, py::arg("num_threads") = 0,
        "out[t] = A[t] out[t-1] + c[t] (out[-1] = s0 or 0); reverse=True runs from the end: "
        "out[t] = A[t] out[t+1] + c[t]. A is (T, N, K) diagonal, (T, N, K/b, b, b) "
        "block-diagonal or (T, N, K, K) dense; c, out "
        "(T, N, K); s0 (N, K) or None. Contiguous CPU float32/float64.");
  m.def("cell_dims", [](const std::string& cell) {
    const auto d = flashrnn::cell_dims(cell_of(cell));
    return py::make_tuple(d.state_dim, d.input_dim, d.param_dim);
  }, py::arg("cell"), "(state_dim K, input_dim G, param_dim P) of a built-in cell.");
  m.def("build_info", [] {
    py::dict d;
    d["cpu_runtime"] = flashrnn::cpu::runtime_name();
    d["cpu_threads"] = flashrnn::cpu::default_threads();
#ifdef FLASHRNN_HAVE_CUDA
    d["cuda"] = true;
#else
    d["cuda"] = false;
#endif
#if defined(DLPACK_VERSION)  // DLPack 0.x
    d["dlpack_version"] = DLPACK_VERSION;
#else  // DLPack 1.x (e.g. the header inside PyTorch 2.x) spells it in two parts
    d["dlpack_version"] = DLPACK_MAJOR_VERSION * 100 + DLPACK_MINOR_VERSION;
#endif
    return d;
  });
}

"""Differentiable solves of the built-in cells (ParaGRU, ParaLSTM, DiagTanh).

Shapes (time-first, strided views are fine on the CPU):
    u       (T, B, G, H)  pre-activations, channel g = gate g of unit j
    p       (P, H)        per-unit recurrent parameters
    s0      (B, K, H)     initial state, or None (zeros)
    states  (T, B, K, H)  the solved trajectory (states[-1] is the final state)

On PyTorch >= 2.4 the solves are torch.library custom ops (flashrnn::cell_forward,
flashrnn::cell_backward, flashrnn::cell_step) with fake kernels, so torch.compile
traces through them; on older PyTorch they are a torch.autograd.Function.

Non-convergence is reported from inside the forward's implementation (the
op body, which torch.compile does not trace), so report_nonconvergence's
warning or ConvergenceError comes the same way eagerly, compiled, on CPU and CUDA.
"""
# NB: no `from __future__ import annotations`: torch.library reads the annotations.
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

from ._ext import (REPORT_SIZE, SolveReport, SolverOptions, check_dtype_device, check_report, dl,
                   ext, stream_of)

#: (state_dim K, input_dim G, param_dim P, output channel) of the built-in cells.
CELLS = {
    "para_gru": (1, 3, 3, 0),
    "para_lstm": (2, 3, 5, 1),
    "diag_tanh": (1, 1, 1, 0),
}


def _dims(cell: str):
    try:
        return CELLS[cell]
    except KeyError:
        raise ValueError(f"flashrnn: unknown cell {cell!r}; expected one of {sorted(CELLS)}") from None


def check_args(where: str, cell: str, u: torch.Tensor, p: torch.Tensor,
               s0: Optional[torch.Tensor]) -> None:
    """Shape, dtype and device checks with messages that name the argument."""
    K, G, P, _ = _dims(cell)
    for name, t in (("u", u), ("p", p)):
        check_dtype_device(where, name, t)
    if u.dim() != 4 or u.shape[2] != G:
        raise ValueError(f"{where}: 'u' must have shape (T, B, {G}, H) for {cell}, got {tuple(u.shape)}")
    T, B, _, H = u.shape
    if T < 1 or B < 1 or H < 1:
        raise ValueError(f"{where}: 'u' must be non-empty, got shape {tuple(u.shape)}")
    if tuple(p.shape) != (P, H):
        raise ValueError(f"{where}: 'p' must have shape ({P}, {H}) for {cell}, got {tuple(p.shape)}")
    tensors = [("p", p)]
    if s0 is not None:
        check_dtype_device(where, "s0", s0)
        if tuple(s0.shape) != (B, K, H):
            raise ValueError(f"{where}: 's0' must have shape ({B}, {K}, {H}), got {tuple(s0.shape)}")
        tensors.append(("s0", s0))
    for name, t in tensors:
        if t.dtype != u.dtype:
            raise TypeError(f"{where}: '{name}' has dtype {t.dtype} but 'u' has {u.dtype}; "
                            "all tensors must share one dtype")
        if t.device != u.device:
            raise ValueError(f"{where}: '{name}' is on {t.device} but 'u' is on {u.device}")


# ---- the native calls (no autograd) ----

def _forward_impl(u, p, s0, cell, opts: SolverOptions):
    K, _, _, _ = _dims(cell)
    T, B, _, H = u.shape
    states = u.new_empty((T, B, K, H))
    rep = ext().forward(cell, dl(u), dl(p[None, None]), dl(None if s0 is None else s0[None]),
                        dl(states), None, **opts.native_kwargs(), num_threads=opts.num_threads,
                        stream=stream_of(u))
    report = SolveReport.from_dict(rep)
    check_report(f"the {cell} forward solve (T={T}, B={B}, H={H})", report, opts.max_iters,
                 opts.on_nonconvergence, opts.report_nonconvergence)
    return states, report.to_tensor()


def _backward_impl(u, p, s0, states, grad_states, cell, num_threads, need_s0):
    K, G, P, _ = _dims(cell)
    T, B, _, H = u.shape
    grad_u = torch.empty_like(u, memory_format=torch.contiguous_format)
    grad_p = p.new_empty((P, H))
    grad_s0 = u.new_empty((B, K, H)) if (need_s0 and s0 is not None) else None
    ext().backward(cell, dl(u), dl(p[None, None]), dl(None if s0 is None else s0[None]),
                   dl(states), dl(grad_states), None, dl(grad_u), dl(grad_p[None, None]),
                   dl(None if grad_s0 is None else grad_s0[None]), num_threads=num_threads,
                   stream=stream_of(u))
    return grad_u, grad_p, grad_s0


def _step_impl(u_t, p, s_prev, cell, num_threads):
    s_next = torch.empty_like(s_prev, memory_format=torch.contiguous_format)
    ext().step(cell, dl(u_t[None]), dl(p[None, None]), dl(s_prev[None]), dl(s_next[None]),
               num_threads=num_threads, stream=stream_of(u_t))
    return s_next


# ---- PyTorch < 2.4: an autograd.Function ----

class _CellFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, p, s0, cell, opts):
        states, report = _forward_impl(u, p, s0, cell, opts)
        ctx.save_for_backward(u, p, s0, states)
        ctx.cell, ctx.num_threads = cell, opts.num_threads
        ctx.mark_non_differentiable(report)
        return states, report

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states, _grad_report):
        u, p, s0, states = ctx.saved_tensors
        if grad_states is None:
            grad_states = torch.zeros_like(states)
        gu, gp, gs0 = _backward_impl(u, p, s0, states, grad_states, ctx.cell, ctx.num_threads,
                                     ctx.needs_input_grad[2])
        return gu, gp, gs0, None, None


# ---- PyTorch >= 2.4: torch.library custom ops (traceable by torch.compile) ----

HAS_LIBRARY_OPS = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake")

if HAS_LIBRARY_OPS:  # pragma: no cover - Debian's torch 1.13 takes the other branch
    @torch.library.custom_op("flashrnn::cell_forward", mutates_args=())
    def _op_forward(u: torch.Tensor, p: torch.Tensor, s0: Optional[torch.Tensor], cell: str,
                    mode: str, max_iters: int, atol: float, rtol: float, damping: float,
                    chunk_length: int, sequential_segments: int, on_nonconvergence: str,
                    check_finite: bool, report_nonconvergence: str,
                    num_threads: int) -> Tuple[torch.Tensor, torch.Tensor]:
        opts = SolverOptions(mode=mode, max_iters=max_iters, atol=None if atol < 0 else atol,
                             rtol=None if rtol < 0 else rtol, damping=damping,
                             chunk_length=chunk_length, sequential_segments=sequential_segments,
                             on_nonconvergence=on_nonconvergence, check_finite=check_finite,
                             num_threads=num_threads,
                             report_nonconvergence=report_nonconvergence)
        return _forward_impl(u, p, s0, cell, opts)

    @_op_forward.register_fake
    def _(u, p, s0, cell, mode, max_iters, atol, rtol, damping, chunk_length,
          sequential_segments, on_nonconvergence, check_finite, report_nonconvergence,
          num_threads):
        K = _dims(cell)[0]
        T, B, _, H = u.shape
        return u.new_empty((T, B, K, H)), torch.empty(REPORT_SIZE, dtype=torch.float64)

    @torch.library.custom_op("flashrnn::cell_backward", mutates_args=())
    def _op_backward(u: torch.Tensor, p: torch.Tensor, s0: Optional[torch.Tensor],
                     states: torch.Tensor, grad_states: torch.Tensor, cell: str,
                     num_threads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gu, gp, gs0 = _backward_impl(u, p, s0, states, grad_states, cell, num_threads, True)
        if gs0 is None:  # ops return tensors only; the autograd formula drops it
            gs0 = u.new_zeros((u.shape[1], _dims(cell)[0], u.shape[3]))
        return gu, gp, gs0

    @_op_backward.register_fake
    def _(u, p, s0, states, grad_states, cell, num_threads):
        K = _dims(cell)[0]
        return (torch.empty_like(u, memory_format=torch.contiguous_format), p.new_empty(p.shape),
                u.new_empty((u.shape[1], K, u.shape[3])))

    def _setup_context(ctx, inputs, output):
        u, p, s0, cell = inputs[:4]
        ctx.save_for_backward(u, p, s0, output[0])
        ctx.cell, ctx.num_threads, ctx.has_s0 = cell, inputs[-1], s0 is not None

    def _op_autograd(ctx, grad_states, _grad_report):
        u, p, s0, states = ctx.saved_tensors
        if grad_states is None:
            grad_states = torch.zeros_like(states)
        gu, gp, gs0 = _op_backward(u, p, s0, states, grad_states, ctx.cell, ctx.num_threads)
        # One gradient per _op_forward input: u, p, s0, then None for the 12 options.
        return (gu, gp, gs0 if ctx.has_s0 else None) + (None,) * 12

    _op_forward.register_autograd(_op_autograd, setup_context=_setup_context)

    @torch.library.custom_op("flashrnn::cell_step", mutates_args=())
    def _op_step(u_t: torch.Tensor, p: torch.Tensor, s_prev: torch.Tensor, cell: str,
                 num_threads: int) -> torch.Tensor:
        return _step_impl(u_t, p, s_prev, cell, num_threads)

    @_op_step.register_fake
    def _(u_t, p, s_prev, cell, num_threads):
        return torch.empty_like(s_prev, memory_format=torch.contiguous_format)


# ---- public functions ----

def cell_solve(cell: str, u: torch.Tensor, p: torch.Tensor, s0: Optional[torch.Tensor] = None,
               options: Optional[SolverOptions] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Solves the recurrence of a built-in cell; differentiable in u, p and s0.

    Returns (states (T, B, K, H), report) where report is a float64 tensor;
    SolveReport.from_tensor(report) reads it. A solve that did not converge
    warns (NonConvergenceWarning), raises (ConvergenceError) or stays silent
    per options.report_nonconvergence.
    """
    opts = SolverOptions() if options is None else options
    if not isinstance(opts, SolverOptions):
        raise TypeError(f"flashrnn.cell_solve: 'options' must be a flashrnn.SolverOptions or None, "
                        f"got {type(opts).__name__}")
    check_args("flashrnn.cell_solve", cell, u, p, s0)
    if HAS_LIBRARY_OPS:
        kw = opts.native_kwargs()
        return _op_forward(u, p, s0, cell, kw["mode"], kw["max_iters"], kw["atol"], kw["rtol"],
                           kw["damping"], kw["chunk_length"], kw["sequential_segments"],
                           kw["on_nonconvergence"], kw["check_finite"],
                           opts.report_nonconvergence, opts.num_threads)
    return _CellFunction.apply(u, p, s0, cell, opts)


def cell_step(cell: str, u_t: torch.Tensor, p: torch.Tensor, s_prev: torch.Tensor,
              num_threads: int = 0) -> torch.Tensor:
    """One step of every lane: u_t (B, G, H), p (P, H), s_prev (B, K, H) -> s_next.

    Runs natively when no gradient is needed, else through the differentiable
    PyTorch definition of the cell (flashrnn.reference)."""
    K, G, P, _ = _dims(cell)
    where = "flashrnn.cell_step"
    check_args(where, cell, u_t[None] if u_t.dim() == 3 else u_t, p, s_prev)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u_t, p, s_prev))
    if needs_grad:
        from .reference import STEPS
        return STEPS[cell](s_prev, u_t, p)
    if HAS_LIBRARY_OPS:
        return _op_step(u_t, p, s_prev, cell, num_threads)
    return _step_impl(u_t, p, s_prev, cell, num_threads)

"""Any cell from Python: write only the step in torch ops.

    @flashrnn.cell(state_dim=1, input_dim=3, param_dim=3)
    def my_gru(s, u, p):                 # one lane: s (K,), u (G,), p (P,) -> (K,)
        z = torch.sigmoid(p[0] * s[0] + u[0])
        ...
        return torch.stack([h_next])

    layer = flashrnn.RNN(my_gru, input_size=16, hidden_size=64)

Jacobians come from torch.func (functorch on PyTorch < 2.0) applied to the
step; each Newton iteration's linear recurrence and the adjoint are solved by
flashrnn.affine_scan (the library's scan on the CPU, for diagonal,
block-diagonal and dense Jacobians). The Newton loop itself runs in Python. Lanes are (batch element, unit) pairs as for the built-in
cells; a dense-recurrence cell is a cell with one unit and K = hidden state.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn

from ._ext import ConvergenceError, SolveReport, SolverOptions, check_report, nonconvergence_message
from .modules import _Layered
from .scan import affine_scan

try:  # PyTorch >= 2.0
    from torch.func import jacfwd, vmap  # type: ignore[attr-defined]
except ImportError:  # PyTorch 1.13 ships functorch
    from functorch import jacfwd, vmap  # type: ignore[no-redef]

JACOBIANS = ("dense", "diagonal", "block_diagonal", "quasi_diagonal")


class PythonCell:
    """Base class of a cell defined by its step in torch ops.

    Subclasses set state_dim (K), input_dim (G), param_dim (P) and define
    step(s, u, p) for ONE lane: s (K,), u (G,), p (P,) -> s_next (K,).
    jacobian: 'dense' (exact K x K Newton), 'diagonal' (the cell's state
    components do not interact: exact and cheaper), 'block_diagonal' (state
    components interact only within consecutive groups of block_size: exact,
    scans of block_size x block_size maps), 'quasi_diagonal' (Newton uses only
    the diagonal -- more iterations, cheaper scans; gradients stay exact).
    output_channel: the state component a layer outputs.
    """
    state_dim: int = 1
    input_dim: int = 1
    param_dim: int = 0
    jacobian: str = "dense"
    block_size: int = 0  # only for jacobian='block_diagonal'; divides state_dim
    output_channel: int = 0

    def step(self, s: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_params(self, hidden_size: int, **factory) -> torch.Tensor:
        """Initial per-unit parameters (P, H)."""
        return torch.empty(self.param_dim, hidden_size, **factory).uniform_(-0.5, 0.5)

    def __repr__(self):
        return (f"{type(self).__name__}(state_dim={self.state_dim}, input_dim={self.input_dim}, "
                f"param_dim={self.param_dim}, jacobian={self.jacobian!r})")

    # ---- batched evaluation over N lane-steps ----
    def _batched(self):
        return vmap(self.step)

    def _value_and_jac(self, s, u, p):
        """s (N, K), u (N, G), p (N, P) -> f (N, K), A (N, K, K)."""
        def with_aux(s_, u_, p_):
            out = self.step(s_, u_, p_)
            return out, out
        A, f = vmap(jacfwd(with_aux, argnums=0, has_aux=True))(s, u, p)
        return f, A


def _check_structure(where: str, jacobian: str, block_size: int, state_dim: int) -> None:
    if jacobian not in JACOBIANS:
        raise ValueError(f"{where}: jacobian must be one of {JACOBIANS}, got {jacobian!r}")
    if jacobian == "block_diagonal" and not (
            isinstance(block_size, int) and block_size >= 1 and state_dim % block_size == 0):
        raise ValueError(f"{where}: jacobian='block_diagonal' needs block_size, a positive int "
                         f"dividing state_dim ({state_dim}), got {block_size!r}")


def cell(state_dim: int, input_dim: int, param_dim: int = 0, jacobian: str = "dense",
         output_channel: int = 0, name: Optional[str] = None, block_size: int = 0):
    """Decorator: turns step(s, u, p) -> s_next (one lane) into a PythonCell.
    block_size: the size of the diagonal blocks for jacobian='block_diagonal'."""
    if not isinstance(state_dim, int) or state_dim < 1:
        raise ValueError(f"flashrnn.cell: state_dim must be a positive int, got {state_dim!r}")
    _check_structure("flashrnn.cell", jacobian, block_size, state_dim)
    for n, v in (("state_dim", state_dim), ("input_dim", input_dim)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"flashrnn.cell: {n} must be a positive int, got {v!r}")
    if not isinstance(param_dim, int) or param_dim < 0:
        raise ValueError(f"flashrnn.cell: param_dim must be an int >= 0, got {param_dim!r}")
    if not 0 <= output_channel < state_dim:
        raise ValueError(f"flashrnn.cell: output_channel must be in [0, {state_dim}), got {output_channel}")

    def wrap(fn: Callable) -> PythonCell:
        attrs = dict(state_dim=state_dim, input_dim=input_dim, param_dim=param_dim,
                     jacobian=jacobian, block_size=block_size, output_channel=output_channel,
                     step=staticmethod(fn), __doc__=fn.__doc__)
        return type(name or fn.__name__, (PythonCell,), attrs)()
    return wrap


# ---- the solver ----

def _lanes(u: torch.Tensor, p: torch.Tensor):
    """u (T, B, G, H) -> (T, N, G); p (P, H) -> (T, N, P) broadcast; N = B*H."""
    T, B, G, H = u.shape
    U = u.permute(0, 1, 3, 2).reshape(T, B * H, G)
    Pn = p.t().unsqueeze(0).unsqueeze(0).expand(T, B, H, p.shape[0]).reshape(T, B * H, p.shape[0])
    return U, Pn


def _eval(c: PythonCell, prev, U, Pn, jac: bool):
    T, N, K = prev.shape
    flat = (prev.reshape(T * N, K), U.reshape(T * N, -1), Pn.reshape(T * N, -1))
    if not jac:
        return c._batched()(*flat).reshape(T, N, K), None
    f, A = c._value_and_jac(*flat)
    return f.reshape(T, N, K), A.reshape(T, N, K, K)


def _blocks(A: torch.Tensor, b: int) -> torch.Tensor:
    """The b x b diagonal blocks of A (T, N, K, K) -> (T, N, K/b, b, b)."""
    T, N, K, _ = A.shape
    nb = K // b
    return torch.diagonal(A.reshape(T, N, nb, b, nb, b), dim1=2, dim2=4).permute(0, 1, 4, 2, 3)


def _sequential(c: PythonCell, U, Pn, s0):
    step = c._batched()
    s, out = s0, []
    for t in range(U.shape[0]):
        s = step(s, U[t], Pn[t])
        out.append(s)
    return torch.stack(out)


def newton_solve(c: PythonCell, U, Pn, s0, opts: SolverOptions) -> Tuple[torch.Tensor, SolveReport]:
    """Per-step Newton on lanes: U (T, N, G), Pn (T, N, P), s0 (N, K) -> (T, N, K)."""
    T, N, _ = U.shape
    K = c.state_dim
    _check_structure(f"flashrnn: cell {type(c).__name__}", c.jacobian, c.block_size, K)
    eps = torch.finfo(U.dtype).eps
    default_tol = 1e-10 if U.dtype == torch.float64 else max(1e-5, 10 * float(eps) ** 0.5)
    atol = default_tol if opts.atol is None else opts.atol
    rtol = default_tol if opts.rtol is None else opts.rtol
    if opts.mode == "sequential":
        return _sequential(c, U, Pn, s0), SolveReport("sequential", 0, 0.0, True, N, 0)
    S = _eval(c, torch.zeros_like(s0).expand(T, N, K), U, Pn, False)[0]  # s^0_t = f(0, u_t)
    it, residual, converged, nonfinite = 0, float("inf"), False, False
    for it in range(1, opts.max_iters + 1):
        prev = torch.cat([s0.unsqueeze(0), S[:-1]])
        f, A = _eval(c, prev, U, Pn, True)
        if c.jacobian in ("diagonal", "quasi_diagonal"):
            A = torch.diagonal(A, dim1=-2, dim2=-1)
            cc = f - A * prev
        elif c.jacobian == "block_diagonal":
            b = c.block_size
            A = _blocks(A, b)
            cc = f - (A @ prev.reshape(T, N, K // b, b, 1)).reshape(T, N, K)
        else:
            cc = f - (A @ prev.unsqueeze(-1)).squeeze(-1)
        S_new = affine_scan(A, cc, s0, num_threads=opts.num_threads)
        delta = S_new - S
        S = S + opts.damping * delta if opts.damping != 1.0 else S_new
        residual = float(delta.abs().max())
        if not torch.isfinite(S).all():
            nonfinite = True
            break
        exact = opts.damping == 1.0 and it >= T and c.jacobian != "quasi_diagonal"
        if exact or bool((delta.abs() <= atol + rtol * S.abs()).all()):
            converged = True
            break
    fell_back = 0
    what = f"the Python cell {type(c).__name__} forward solve (T={T}, {N} lanes)"
    if not converged:
        if opts.on_nonconvergence == "raise":
            raise ConvergenceError(nonconvergence_message(
                what, SolveReport("newton", it, residual, False, N, 0, nonfinite), opts.max_iters,
                "raise") + " (on_nonconvergence='raise')")
        if opts.on_nonconvergence == "fallback_sequential":
            S, fell_back = _sequential(c, U, Pn, s0), N
    report = SolveReport("newton", it, residual, converged, N, fell_back, nonfinite)
    check_report(what, report, opts.max_iters, opts.on_nonconvergence, opts.report_nonconvergence)
    return S, report


class _GenericFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, p, s0, c, opts):
        T, B, G, H = u.shape
        K = c.state_dim
        U, Pn = _lanes(u, p)
        s0l = (u.new_zeros(B * H, K) if s0 is None
               else s0.permute(0, 2, 1).reshape(B * H, K))
        S, report = newton_solve(c, U, Pn, s0l, opts)
        states = S.reshape(T, B, H, K).permute(0, 1, 3, 2).contiguous()
        ctx.save_for_backward(u, p, s0, states)
        ctx.c, ctx.num_threads = c, opts.num_threads
        rt = report.to_tensor()
        ctx.mark_non_differentiable(rt)
        return states, rt

    @staticmethod
    def backward(ctx, grad_states, _grad_report):
        u, p, s0, states = ctx.saved_tensors
        c = ctx.c
        T, B, G, H = u.shape
        K = c.state_dim
        if grad_states is None:
            grad_states = torch.zeros_like(states)
        U, Pn = _lanes(u.detach(), p.detach())
        S = states.permute(0, 1, 3, 2).reshape(T, B * H, K)
        s0l = (u.new_zeros(B * H, K) if s0 is None
               else s0.detach().permute(0, 2, 1).reshape(B * H, K))
        g = grad_states.permute(0, 1, 3, 2).reshape(T, B * H, K)
        prev = torch.cat([s0l.unsqueeze(0), S[:-1]])
        with torch.no_grad():
            _, A = _eval(c, prev, U, Pn, True)
            # λ_t = g_t + A_{t+1}^T λ_{t+1}: a reverse scan with maps A'_t = A_{t+1}^T.
            At = torch.zeros_like(A)
            At[:-1] = A[1:].transpose(-1, -2)
            if c.jacobian == "diagonal":
                lam = affine_scan(torch.diagonal(At, dim1=-2, dim2=-1), g, None, reverse=True,
                                  num_threads=ctx.num_threads)
            elif c.jacobian == "block_diagonal":  # blocks of A^T are the blocks' transposes
                lam = affine_scan(_blocks(At, c.block_size), g, None, reverse=True,
                                  num_threads=ctx.num_threads)
            else:
                lam = affine_scan(At, g, None, reverse=True, num_threads=ctx.num_threads)
        # One vector-Jacobian product of the step at the solved trajectory
        # gives ∂L/∂u_t, Σ ∂L/∂p and ∂L/∂s0 = A_0^T λ_0.
        with torch.enable_grad():
            prev_ = prev.detach().requires_grad_(True)
            u_ = u.detach().requires_grad_(True)
            p_ = p.detach().requires_grad_(True)
            U_, Pn_ = _lanes(u_, p_)
            f = _eval(c, prev_, U_, Pn_, False)[0]
            gprev, gu, gp = torch.autograd.grad(f, (prev_, u_, p_), lam, allow_unused=True)
        if gu is None:
            gu = torch.zeros_like(u)
        if gp is None:
            gp = torch.zeros_like(p)
        gs0 = None
        if s0 is not None and ctx.needs_input_grad[2]:
            gs0 = (gprev[0] if gprev is not None else torch.zeros_like(s0l)).reshape(B, H, K).permute(0, 2, 1)
        return gu, gp, gs0, None, None


def generic_solve(c: PythonCell, u: torch.Tensor, p: torch.Tensor,
                  s0: Optional[torch.Tensor] = None, options: Optional[SolverOptions] = None):
    """Solves a Python cell's recurrence: u (T, B, G, H), p (P, H), s0 (B, K, H)
    or None -> (states (T, B, K, H), report tensor); differentiable in u, p, s0."""
    if not isinstance(c, PythonCell):
        raise TypeError(f"flashrnn.generic_solve: expected a PythonCell, got {type(c).__name__}")
    where = "flashrnn.generic_solve"
    if u.dim() != 4 or u.shape[2] != c.input_dim:
        raise ValueError(f"{where}: 'u' must be (T, B, {c.input_dim}, H), got {tuple(u.shape)}")
    if tuple(p.shape) != (c.param_dim, u.shape[3]):
        raise ValueError(f"{where}: 'p' must be ({c.param_dim}, {u.shape[3]}), got {tuple(p.shape)}")
    if s0 is not None and tuple(s0.shape) != (u.shape[1], c.state_dim, u.shape[3]):
        raise ValueError(f"{where}: 's0' must be ({u.shape[1]}, {c.state_dim}, {u.shape[3]}), "
                         f"got {tuple(s0.shape)}")
    opts = SolverOptions() if options is None else options
    if not isinstance(opts, SolverOptions):
        raise TypeError(f"{where}: 'options' must be a flashrnn.SolverOptions or None, "
                        f"got {type(opts).__name__}")
    return _GenericFunction.apply(u, p, s0, c, opts)


class RNN(_Layered):
    """A recurrent layer stack over any PythonCell, with the same constructor
    options and call convention as ParaGRU (forward(input, h0) -> (output, h_n),
    h_n of shape (num_layers, B, K, H) when K > 1, else (num_layers, B, H))."""

    def __init__(self, cell: PythonCell, input_size: int, hidden_size: int, **kw):
        if not isinstance(cell, PythonCell):
            raise TypeError(f"flashrnn.RNN: 'cell' must be a PythonCell (see flashrnn.cell), "
                            f"got {type(cell).__name__}")
        # Plain attributes set before nn.Module.__init__ (not submodules/parameters).
        self.__dict__.update(cell_def=cell, state_dim=cell.state_dim, input_dim=cell.input_dim,
                             param_dim=cell.param_dim, output_channel=cell.output_channel)
        _Layered.__init__(self, input_size, hidden_size, **kw)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in range(self.num_layers):
            w = getattr(self, f"weight_hh_l{layer}")
            with torch.no_grad():
                w.copy_(self.cell_def.init_params(self.hidden_size, dtype=w.dtype, device=w.device))

    def _solve(self, layer, u, p, s0):
        return generic_solve(self.cell_def, u, p, s0, self.options)

    def _step(self, layer, u_t, p, s):
        # s (B, K, H), u_t (B, G, H) -> lanes, one step, back.
        B, K, H = s.shape
        U, Pn = _lanes(u_t.unsqueeze(0), p)
        sl = s.permute(0, 2, 1).reshape(B * H, K)
        out = self.cell_def._batched()(sl, U[0], Pn[0])
        return out.reshape(B, H, K).permute(0, 2, 1)

    def _states_in(self, hx, batch, ref):
        if hx is None:
            return None
        if self.state_dim == 1:
            return self._check_state("h0", hx, batch, ref).unsqueeze(2)
        want = (self.num_layers, batch, self.state_dim, self.hidden_size)
        if not isinstance(hx, torch.Tensor) or tuple(hx.shape) != want:
            raise ValueError(f"flashrnn.RNN: h0 must have shape {want}, got "
                             f"{tuple(hx.shape) if isinstance(hx, torch.Tensor) else type(hx).__name__}")
        return hx

    def _states_out(self, s):
        return s[:, :, 0, :] if self.state_dim == 1 else s

    @staticmethod
    def _unsqueeze_state(hx):
        return hx.unsqueeze(1)

    @staticmethod
    def _squeeze_state(s):
        return s.squeeze(1)

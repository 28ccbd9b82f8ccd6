"""nn.Modules mirroring torch.nn.GRU / torch.nn.LSTM, solved by FlashRNN."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from ._ext import SolveReport, SolverOptions, check_dtype_device
from .functional import CELLS, cell_solve, cell_step


class _Layered(nn.Module):
    """Stack of recurrent layers: per layer a (block-diagonal) input projection
    x -> u (G pre-activations per unit) and a per-unit recurrent cell solved
    in parallel along time. Subclasses define the cell (`_solve`, `_step`)."""

    state_dim: int
    input_dim: int
    param_dim: int
    output_channel: int

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, num_heads: int = 1,
                 mode: str = "auto", max_iters: int = 50, atol: Optional[float] = None,
                 rtol: Optional[float] = None, on_nonconvergence: str = "fallback_sequential",
                 num_threads: int = 0, device=None, dtype=None, damping: float = 1.0,
                 report_nonconvergence: str = "warn"):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers), ("num_heads", num_heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {v!r}")
        if hidden_size % num_heads:
            raise ValueError(f"{type(self).__name__}: hidden_size ({hidden_size}) must be divisible "
                             f"by num_heads ({num_heads})")
        if input_size % num_heads:
            raise ValueError(f"{type(self).__name__}: input_size ({input_size}) must be divisible "
                             f"by num_heads ({num_heads})")
        if not (0.0 <= float(dropout) < 1.0):
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.num_heads = num_heads
        self.options = SolverOptions(mode=mode, max_iters=max_iters, atol=atol, rtol=rtol,
                                     damping=damping, on_nonconvergence=on_nonconvergence,
                                     num_threads=num_threads,
                                     report_nonconvergence=report_nonconvergence)
        G, P, H = self.input_dim, self.param_dim, hidden_size
        fk = dict(device=device, dtype=dtype)
        for layer in range(num_layers):
            d_in = input_size if layer == 0 else hidden_size
            if d_in % num_heads:
                raise ValueError(f"{type(self).__name__}: layer {layer} input width {d_in} must be "
                                 f"divisible by num_heads ({num_heads})")
            # Rows grouped by head (G*H/num_heads each, gate-major inside a head);
            # with num_heads = 1 this is nn.GRU's (3H, input_size) layout.
            self.register_parameter(f"weight_ih_l{layer}",
                                    nn.Parameter(torch.empty(G * H, d_in // num_heads, **fk)))
            self.register_parameter(f"bias_ih_l{layer}",
                                    nn.Parameter(torch.empty(G * H, **fk)) if bias else None)
            # Per-unit recurrent parameters (diagonal weights, peepholes): (P, H).
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(P, H, **fk)))
        self._last_reports: List[torch.Tensor] = []
        self.reset_parameters()

    # ---- parameters ----
    def reset_parameters(self) -> None:
        for layer in range(self.num_layers):
            w = getattr(self, f"weight_ih_l{layer}")
            k = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -k, k)
            b = getattr(self, f"bias_ih_l{layer}")
            if b is not None:
                nn.init.uniform_(b, -k, k)
            nn.init.uniform_(getattr(self, f"weight_hh_l{layer}"), -0.5, 0.5)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.num_heads != 1:
            s += f", num_heads={self.num_heads}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s + f", mode={self.options.mode!r}"

    def project(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_in) -> u (..., G, H) through the block-diagonal projection."""
        w = getattr(self, f"weight_ih_l{layer}")
        b = getattr(self, f"bias_ih_l{layer}")
        G, H, nh = self.input_dim, self.hidden_size, self.num_heads
        if nh == 1:
            return F.linear(x, w, b).unflatten(-1, (G, H))
        lead = x.shape[:-1]
        xh = x.reshape(*lead, nh, x.shape[-1] // nh)
        y = torch.einsum("...hi,hoi->...ho", xh, w.view(nh, G * H // nh, -1))
        if b is not None:
            y = y + b.view(nh, -1)
        # (..., heads, G, H/heads) -> (..., G, heads * H/heads): units head-major.
        return y.view(*lead, nh, G, H // nh).transpose(-3, -2).reshape(*lead, G, H)

    # ---- the cell (overridden) ----
    def _solve(self, layer: int, u: torch.Tensor, p: torch.Tensor, s0: Optional[torch.Tensor]):
        raise NotImplementedError

    def _step(self, layer: int, u_t: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- state conversions between the user's format and (L, B, K, H) ----
    def _states_in(self, hx, batch: int, ref: torch.Tensor) -> Optional[torch.Tensor]:
        raise NotImplementedError

    def _states_out(self, s: torch.Tensor):
        raise NotImplementedError

    def _check_state(self, name: str, t, batch: int, ref: torch.Tensor) -> torch.Tensor:
        where = type(self).__name__
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
        want = (self.num_layers, batch, self.hidden_size)
        if tuple(t.shape) != want:
            raise ValueError(f"{where}: {name} must have shape (num_layers, batch, hidden_size) = "
                             f"{want}, got {tuple(t.shape)}")
        if t.dtype != ref.dtype or t.device != ref.device:
            raise TypeError(f"{where}: {name} has dtype {t.dtype} on {t.device}; expected "
                            f"{ref.dtype} on {ref.device} (the input's)")
        return t

    def _check_input(self, x) -> Tuple[torch.Tensor, bool]:
        where = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: input must be a torch.Tensor, got {type(x).__name__}")
        check_dtype_device(where, "input", x)
        unbatched = x.dim() == 2
        if x.dim() not in (2, 3):
            raise ValueError(f"{where}: input must be 3-D ({'batch, seq' if self.batch_first else 'seq, batch'}"
                             f", {self.input_size}) or 2-D (seq, {self.input_size}), got shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{where}: input has {x.shape[-1]} features, expected input_size = "
                             f"{self.input_size} (shape {tuple(x.shape)})")
        w = self.weight_ih_l0
        if x.dtype != w.dtype:
            raise TypeError(f"{where}: input dtype {x.dtype} differs from the parameters' {w.dtype}; "
                            "convert one of them (e.g. module.to(x.dtype))")
        if x.device != w.device:
            raise ValueError(f"{where}: input is on {x.device} but the parameters are on {w.device}")
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{where}: empty input of shape {tuple(x.shape)}")
        return x, unbatched

    # ---- forward ----
    def forward(self, input: torch.Tensor, hx=None):
        """input (T, B, input_size) or (B, T, input_size) with batch_first, or
        unbatched (T, input_size). Returns (output, h_n) like nn.GRU /
        (output, (h_n, c_n)) like nn.LSTM; output holds the last layer's h."""
        x, unbatched = self._check_input(input)
        if unbatched and hx is not None:
            hx = self._unsqueeze_state(hx)
        B = x.shape[0] if self.batch_first else x.shape[1]
        s0_all = self._states_in(hx, B, x)
        reports, finals = [], []
        for layer in range(self.num_layers):
            u = self.project(layer, x)  # (T, B, G, H) or (B, T, G, H)
            if self.batch_first:
                u = u.transpose(0, 1)
            s0 = None if s0_all is None else s0_all[layer].to(u.dtype)
            # Under autocast the projection yields bf16/fp16 while parameters stay fp32.
            p = getattr(self, f"weight_hh_l{layer}").to(u.dtype)
            states, report = self._solve(layer, u, p, s0)
            reports.append(report)
            finals.append(states[-1])
            y = states[:, :, self.output_channel, :]  # (T, B, H)
            if self.batch_first:
                y = y.transpose(0, 1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                y = F.dropout(y, self.dropout, True)
            x = y
        self._last_reports = reports
        out, state = x, self._states_out(torch.stack(finals))
        if unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
            state = self._squeeze_state(state)
        return out, state

    @property
    def last_report(self) -> List[SolveReport]:
        """Solve reports of the last forward, one per layer."""
        return [SolveReport.from_tensor(r) for r in self._last_reports]

    # ---- autoregressive generation ----
    def step(self, input: torch.Tensor, hx=None):
        """One time step: input (B, input_size) -> (output (B, H), state) with
        state in forward's format (h_n, or (h_n, c_n) for LSTM). Runs natively
        unless gradients are needed."""
        where = type(self).__name__ + ".step"
        if not isinstance(input, torch.Tensor) or input.dim() != 2 or input.shape[1] != self.input_size:
            raise ValueError(f"{where}: input must be (batch, {self.input_size}), got "
                             f"{tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__}")
        B = input.shape[0]
        s = self._states_in(hx, B, input)
        if s is None:
            s = input.new_zeros((self.num_layers, B, self.state_dim, self.hidden_size))
        x, new = input, []
        for layer in range(self.num_layers):
            u_t = self.project(layer, x)
            s_next = self._step(layer, u_t, getattr(self, f"weight_hh_l{layer}").to(u_t.dtype),
                                s[layer].to(u_t.dtype))
            new.append(s_next)
            x = s_next[:, self.output_channel, :]
        return x, self._states_out(torch.stack(new))


class _BuiltinCell(_Layered):
    cell: str

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        K, G, P, ch = CELLS[cls.cell]
        cls.state_dim, cls.input_dim, cls.param_dim, cls.output_channel = K, G, P, ch

    def _solve(self, layer, u, p, s0):
        return cell_solve(self.cell, u, p, s0, self.options)

    def _step(self, layer, u_t, p, s):
        return cell_step(self.cell, u_t, p, s, self.options.num_threads)


class ParaGRU(_BuiltinCell):
    """GRU with diagonal recurrent weights, solved in parallel along time.

    Mirrors torch.nn.GRU (input_size, hidden_size, num_layers, bias,
    batch_first, dropout; forward(input, h0) -> (output, h_n)), plus
    num_heads (block-diagonal input projection), mode, max_iters, atol, rtol,
    damping, on_nonconvergence, report_nonconvergence ('warn' | 'raise' |
    'ignore': a solve that did not converge gives a flashrnn.NonConvergenceWarning,
    a ConvergenceError, or nothing), num_threads. Parameters per layer: weight_ih_l{k}
    (3H, input/num_heads), bias_ih_l{k} (3H), weight_hh_l{k} (3, H) =
    (a_z, a_r, a_h) per unit. `last_report` holds the solve reports.
    """
    cell = "para_gru"

    def _states_in(self, hx, batch, ref):
        if hx is None:
            return None
        h = self._check_state("h0", hx, batch, ref)
        return h.unsqueeze(2)  # (L, B, 1, H)

    def _states_out(self, s):
        return s[:, :, 0, :]

    @staticmethod
    def _unsqueeze_state(hx):
        return hx.unsqueeze(1) if isinstance(hx, torch.Tensor) else hx

    @staticmethod
    def _squeeze_state(s):
        return s.squeeze(1)


class ParaLSTM(_BuiltinCell):
    """CIFG LSTM with peepholes and diagonal recurrent weights (state (c, h)),
    solved in parallel along time. Mirrors torch.nn.LSTM: forward(input,
    (h0, c0)) -> (output, (h_n, c_n)). weight_hh_l{k} is (5, H) =
    (a_f, a_c, a_o, C_f, C_o) per unit; other options as ParaGRU."""
    cell = "para_lstm"

    def _states_in(self, hx, batch, ref):
        if hx is None:
            return None
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("ParaLSTM: the initial state must be a tuple (h0, c0)")
        h = self._check_state("h0", hx[0], batch, ref)
        c = self._check_state("c0", hx[1], batch, ref)
        return torch.stack([c, h], dim=2)  # (L, B, 2, H): channel 0 = c, 1 = h

    def _states_out(self, s):
        return s[:, :, 1, :], s[:, :, 0, :]

    @staticmethod
    def _unsqueeze_state(hx):
        return tuple(t.unsqueeze(1) for t in hx)

    @staticmethod
    def _squeeze_state(s):
        return tuple(t.squeeze(1) for t in s)

"""The built-in cells written in PyTorch, channel-first per unit:
s (..., K, H), u (..., G, H), p (P, H) -> s_next (..., K, H).

Same equations as cells/include/flashrnn/cells/*.hpp. Used for differentiable
single steps and as readable documentation; `sequential` runs a plain loop.
"""
from typing import Optional

import torch


def para_gru_step(s, u, p):
    h = s[..., 0, :]
    z = torch.sigmoid(p[0] * h + u[..., 0, :])
    r = torch.sigmoid(p[1] * h + u[..., 1, :])
    h_cand = torch.tanh(p[2] * (h * r) + u[..., 2, :])
    return (z * h_cand + (1 - z) * h).unsqueeze(-2)


def para_lstm_step(s, u, p):
    c, h = s[..., 0, :], s[..., 1, :]
    f = torch.sigmoid(p[0] * h + u[..., 0, :] + p[3] * c)
    c_cand = torch.tanh(p[1] * h + u[..., 1, :])
    c_next = f * c + (1 - f) * c_cand
    o = torch.sigmoid(p[2] * h + u[..., 2, :] + p[4] * c_next)
    return torch.stack([c_next, o * torch.tanh(c_next)], dim=-2)


def diag_tanh_step(s, u, p):
    return torch.tanh(p[0] * s[..., 0, :] + u[..., 0, :]).unsqueeze(-2)


STEPS = {"para_gru": para_gru_step, "para_lstm": para_lstm_step, "diag_tanh": diag_tanh_step}


def sequential(cell: str, u: torch.Tensor, p: torch.Tensor, s0: Optional[torch.Tensor] = None):
    """Plain loop over time: u (T, B, G, H) -> states (T, B, K, H)."""
    from .functional import CELLS
    K = CELLS[cell][0]
    T, B, _, H = u.shape
    s = u.new_zeros((B, K, H)) if s0 is None else s0
    out = []
    for t in range(T):
        s = STEPS[cell](s, u[t], p)
        out.append(s)
    return torch.stack(out)

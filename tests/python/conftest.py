import os
import sys

import pytest
import torch

# Allow running from a source checkout: pytest tests/python with PYTHONPATH=<build>/python.
flashrnn = pytest.importorskip("flashrnn")
if not flashrnn.HAVE_EXTENSION:
    pytest.skip("flashrnn._C not built", allow_module_level=True)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@flashrnn.cell(state_dim=1, input_dim=3, param_dim=3)
def py_gru(s, u, p):
    """ParaGRU written as a Python cell (the tests' generic-solve example)."""
    h = s[0]
    z = torch.sigmoid(p[0] * h + u[0])
    r = torch.sigmoid(p[1] * h + u[1])
    n = torch.tanh(p[2] * (h * r) + u[2])
    return (z * n + (1 - z) * h).reshape(1)


def loop_reference(cell, u, p, s0=None):
    """The plain-loop PyTorch definition of the built-in cells (written out
    here independently of flashrnn.reference): u (T, B, G, H), p (P, H),
    s0 (B, K, H) -> states (T, B, K, H)."""
    T, B, G, H = u.shape
    K = {"para_gru": 1, "para_lstm": 2, "diag_tanh": 1}[cell]
    s = u.new_zeros(B, K, H) if s0 is None else s0
    out = []
    for t in range(T):
        ut = u[t]
        if cell == "para_gru":
            h = s[:, 0]
            z = torch.sigmoid(p[0] * h + ut[:, 0])
            r = torch.sigmoid(p[1] * h + ut[:, 1])
            n = torch.tanh(p[2] * (h * r) + ut[:, 2])
            s = (z * n + (1 - z) * h)[:, None]
        elif cell == "para_lstm":
            c, h = s[:, 0], s[:, 1]
            f = torch.sigmoid(p[0] * h + ut[:, 0] + p[3] * c)
            cc = torch.tanh(p[1] * h + ut[:, 1])
            c2 = f * c + (1 - f) * cc
            o = torch.sigmoid(p[2] * h + ut[:, 2] + p[4] * c2)
            s = torch.stack([c2, o * torch.tanh(c2)], dim=1)
        else:
            s = torch.tanh(p[0] * s[:, 0] + ut[:, 0])[:, None]
        out.append(s)
    return torch.stack(out)


@pytest.fixture
def ref():
    return loop_reference

"""Cells written in Python: Newton + library scan equal the plain loop."""
import pytest
import torch

import flashrnn
from conftest import loop_reference, py_gru


class PyLSTM(flashrnn.PythonCell):
    state_dim, input_dim, param_dim, output_channel = 2, 3, 5, 1

    def step(self, s, u, p):
        c, h = s[0], s[1]
        f = torch.sigmoid(p[0] * h + u[0] + p[3] * c)
        cc = torch.tanh(p[1] * h + u[1])
        c2 = f * c + (1 - f) * cc
        o = torch.sigmoid(p[2] * h + u[2] + p[4] * c2)
        return torch.stack([c2, o * torch.tanh(c2)])


@flashrnn.cell(state_dim=3, input_dim=3, param_dim=9)
def mixing(s, u, p):
    """A cell whose state components interact (dense 3x3 Jacobian)."""
    W = p.reshape(3, 3)
    return torch.tanh(0.5 * (W * s).sum(-1) + u)


@flashrnn.cell(state_dim=3, input_dim=3, param_dim=9, jacobian="quasi_diagonal")
def mixing_quasi(s, u, p):
    return mixing.step(s, u, p)


def _pairs_step(s, u, p):
    """Two independent 2-component blocks: (s0, s1) and (s2, s3) mix only inside a block."""
    W = p[:8].reshape(2, 2, 2)
    x = s.reshape(2, 2)
    return torch.tanh(0.8 * (W * x[:, None, :]).sum(-1) + u.reshape(2, 2)).reshape(4)


pairs_block = flashrnn.cell(state_dim=4, input_dim=4, param_dim=8, jacobian="block_diagonal",
                            block_size=2, name="pairs_block")(_pairs_step)
pairs_dense = flashrnn.cell(state_dim=4, input_dim=4, param_dim=8, name="pairs_dense")(_pairs_step)


def _data(G, P, K, T=16, B=2, H=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, B, G, H, generator=g, dtype=torch.float64),
            0.7 * torch.randn(P, H, generator=g, dtype=torch.float64),
            0.4 * torch.randn(B, K, H, generator=g, dtype=torch.float64))


def _loop(c, u, p, s0):
    T, B, G, H = u.shape
    out, s = [], s0
    for t in range(T):
        nxt = torch.stack([torch.stack([c.step(s[b, :, j], u[t, b, :, j], p[:, j]) for j in range(H)], -1)
                           for b in range(B)])
        out.append(nxt)
        s = nxt
    return torch.stack(out)


@pytest.mark.parametrize("c,builtin", [(py_gru, "para_gru"), (PyLSTM(), "para_lstm")])
def test_python_cell_equals_builtin(c, builtin):
    u, p, s0 = _data(c.input_dim, c.param_dim, c.state_dim)
    states, rep = flashrnn.generic_solve(c, u, p, s0, flashrnn.SolverOptions(mode="newton"))
    torch.testing.assert_close(states, loop_reference(builtin, u, p, s0), rtol=1e-9, atol=1e-10)
    r = flashrnn.SolveReport.from_tensor(rep)
    assert r.converged and r.lanes_fell_back == 0 and 1 <= r.iterations <= 16
    ua, pa, sa = (t.clone().requires_grad_(True) for t in (u, p, s0))
    ub, pb, sb = (t.clone().requires_grad_(True) for t in (u, p, s0))
    w = torch.randn_like(states)
    ga = torch.autograd.grad((flashrnn.generic_solve(c, ua, pa, sa)[0] * w).sum(), (ua, pa, sa))
    gb = torch.autograd.grad((flashrnn.cell_solve(builtin, ub, pb, sb)[0] * w).sum(), (ub, pb, sb))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_dense_jacobian_cell_gradcheck():
    u, p, s0 = _data(3, 9, 3, T=8, B=2, H=2)
    for c in (mixing, mixing_quasi):
        states, rep = flashrnn.generic_solve(c, u, p, s0)
        torch.testing.assert_close(states, _loop(mixing, u, p, s0), rtol=1e-9, atol=1e-10)
        assert flashrnn.SolveReport.from_tensor(rep).converged
    u, p, s0 = _data(3, 9, 3, T=4, B=1, H=2)
    args = tuple(t.clone().requires_grad_(True) for t in (u, p, s0))
    assert torch.autograd.gradcheck(lambda a, b, c: flashrnn.generic_solve(mixing, a, b, c)[0], args)


def test_block_diagonal_cell(monkeypatch):
    u, p, s0 = _data(4, 8, 4, T=12, B=2, H=3)
    ref = _loop(pairs_dense, u, p, s0)
    seen = []
    import flashrnn.generic as generic
    real = generic.affine_scan

    def spy(A, c, *a, **k):
        seen.append(tuple(A.shape))
        return real(A, c, *a, **k)
    monkeypatch.setattr(generic, "affine_scan", spy)
    states, rep = flashrnn.generic_solve(pairs_block, u, p, s0, flashrnn.SolverOptions(mode="newton"))
    torch.testing.assert_close(states, ref, rtol=1e-9, atol=1e-10)
    r = flashrnn.SolveReport.from_tensor(rep)
    assert r.converged and r.lanes_fell_back == 0
    # Newton's scans and the adjoint both ran on (T, N, 2 blocks, 2, 2) maps.
    assert seen and all(sh == (12, 6, 2, 2, 2) for sh in seen)
    dense_rep = flashrnn.SolveReport.from_tensor(flashrnn.generic_solve(pairs_dense, u, p, s0)[1])
    assert r.iterations == dense_rep.iterations  # exact Newton either way
    ua, pa, sa = (t.clone().requires_grad_(True) for t in (u, p, s0))
    ub, pb, sb = (t.clone().requires_grad_(True) for t in (u, p, s0))
    w = torch.randn_like(states)
    ga = torch.autograd.grad((flashrnn.generic_solve(pairs_block, ua, pa, sa)[0] * w).sum(), (ua, pa, sa))
    gb = torch.autograd.grad((flashrnn.generic_solve(pairs_dense, ub, pb, sb)[0] * w).sum(), (ub, pb, sb))
    assert len(seen) > 3  # the block adjoint scan ran too
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    monkeypatch.undo()
    u, p, s0 = _data(4, 8, 4, T=4, B=1, H=2)
    args = tuple(t.clone().requires_grad_(True) for t in (u, p, s0))
    assert torch.autograd.gradcheck(lambda a, b, c: flashrnn.generic_solve(pairs_block, a, b, c)[0], args)


def test_rnn_layer_with_python_cell_matches_paragru():
    torch.manual_seed(0)
    a = flashrnn.RNN(py_gru, 4, 5, num_layers=2, batch_first=True).double()
    b = flashrnn.ParaGRU(4, 5, num_layers=2, batch_first=True).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 11, 4, dtype=torch.float64)
    ya, ha = a(x)
    yb, hb = b(x)
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(ha, hb)
    with torch.no_grad():
        y, h = a.step(x[:, 0])
    torch.testing.assert_close(y, b.step(x[:, 0])[0])


def test_decorator_validation():
    with pytest.raises(ValueError, match="jacobian"):
        flashrnn.cell(1, 1, 1, jacobian="sparse")
    with pytest.raises(ValueError, match="block_size"):
        flashrnn.cell(4, 1, 1, jacobian="block_diagonal", block_size=3)
    with pytest.raises(ValueError, match="block_size"):
        flashrnn.cell(4, 1, 1, jacobian="block_diagonal")
    with pytest.raises(TypeError, match="PythonCell"):
        flashrnn.RNN(lambda s, u, p: s, 3, 4)

"""ParaGRU / ParaLSTM modules against a plain-loop PyTorch model with the same
parameters; state-dict round trip; step(); heads; report."""
import io

import pytest
import torch

import flashrnn
from conftest import loop_reference

MODULES = [(flashrnn.ParaGRU, "para_gru"), (flashrnn.ParaLSTM, "para_lstm")]


def loop_model(m, cell, x, hx=None):
    """The same network as `m` written as plain PyTorch: projection + loop."""
    if m.batch_first:
        x = x.transpose(0, 1)
    K, G, P, ch = flashrnn.CELLS[cell]
    finals = []
    for layer in range(m.num_layers):
        u = m.project(layer, x)
        s0 = None
        if hx is not None:
            if cell == "para_gru":
                s0 = hx[layer].unsqueeze(1)
            else:
                s0 = torch.stack([hx[1][layer], hx[0][layer]], dim=1)
        st = loop_reference(cell, u, getattr(m, f"weight_hh_l{layer}"), s0)
        finals.append(st[-1])
        x = st[:, :, ch, :]
    out = x.transpose(0, 1) if m.batch_first else x
    f = torch.stack(finals)
    return out, (f[:, :, 0] if cell == "para_gru" else (f[:, :, 1], f[:, :, 0]))


def flat(state):
    return torch.cat([t.reshape(-1) for t in state]) if isinstance(state, tuple) else state.reshape(-1)


@pytest.mark.parametrize("cls,cell", MODULES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
def test_module_matches_loop(cls, cell, batch_first, heads):
    torch.manual_seed(0)
    m = cls(6, 8, num_layers=2, batch_first=batch_first, num_heads=heads, mode="newton").double()
    x = torch.randn(3, 20, 6, dtype=torch.float64) if batch_first else torch.randn(20, 3, 6, dtype=torch.float64)
    if cell == "para_gru":
        hx = 0.3 * torch.randn(2, 3, 8, dtype=torch.float64)
    else:
        hx = (0.3 * torch.randn(2, 3, 8, dtype=torch.float64), 0.3 * torch.randn(2, 3, 8, dtype=torch.float64))
    x1 = x.clone().requires_grad_(True)
    out, state = m(x1, hx)
    loss = out.pow(2).sum() + flat(state).sum()
    g1 = torch.autograd.grad(loss, [x1] + list(m.parameters()))
    x2 = x.clone().requires_grad_(True)
    out2, state2 = loop_model(m, cell, x2, hx)
    loss2 = out2.pow(2).sum() + flat(state2).sum()
    g2 = torch.autograd.grad(loss2, [x2] + list(m.parameters()))
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(flat(state), flat(state2))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    reps = m.last_report
    assert len(reps) == 2 and all(r.converged and r.mode == "newton" for r in reps)


@pytest.mark.parametrize("cls,cell", MODULES)
def test_module_gradcheck(cls, cell):
    torch.manual_seed(1)
    m = cls(3, 4, num_layers=2).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: flat(m(inp)[1]).sum() + m(inp)[0].sum(), (x,))


@pytest.mark.parametrize("cls,cell", MODULES)
def test_unbatched_matches_batched(cls, cell):
    torch.manual_seed(2)
    m = cls(5, 7)
    x = torch.randn(9, 5)
    out, _ = m(x)
    out_b, _ = m(x.unsqueeze(1))
    torch.testing.assert_close(out, out_b.squeeze(1))


@pytest.mark.parametrize("cls,cell", MODULES)
def test_step_matches_forward(cls, cell):
    torch.manual_seed(3)
    m = cls(4, 6, num_layers=2, batch_first=True)
    x = torch.randn(2, 12, 4)
    out, final = m(x)
    state = None
    with torch.no_grad():
        for t in range(12):
            y, state = m.step(x[:, t], state)
            torch.testing.assert_close(y, out[:, t], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(flat(state), flat(final).detach(), rtol=1e-5, atol=1e-6)
    # with gradients the step runs through the PyTorch definition
    y, _ = m.step(x[:, 0])
    y.sum().backward()
    assert m.weight_ih_l0.grad is not None


@pytest.mark.parametrize("cls,cell", MODULES)
def test_state_dict_roundtrip(cls, cell):
    torch.manual_seed(4)
    m = cls(5, 6, num_layers=2, num_heads=1)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = cls(5, 6, num_layers=2)
    m2.load_state_dict(torch.load(buf))
    x = torch.randn(7, 3, 5)
    torch.testing.assert_close(m(x)[0], m2(x)[0])
    assert set(m.state_dict()) == set(m2.state_dict())


def test_gru_parameter_names_mirror_nn_gru():
    m = flashrnn.ParaGRU(5, 6, num_layers=2)
    ref = torch.nn.GRU(5, 6, num_layers=2)
    for name in ("weight_ih_l0", "bias_ih_l0", "weight_ih_l1"):
        assert getattr(m, name).shape == getattr(ref, name).shape
    assert m.weight_hh_l0.shape == (3, 6)  # diagonal recurrence: 3 per unit
    assert "bias_ih_l0" not in dict(flashrnn.ParaGRU(5, 6, bias=False).named_parameters())


def test_dropout_and_train_eval():
    torch.manual_seed(5)
    m = flashrnn.ParaLSTM(4, 8, num_layers=3, dropout=0.5)
    x = torch.randn(10, 2, 4)
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])
    m.train()
    out, _ = m(x)
    out.sum().backward()


def test_options_reach_the_solver():
    m = flashrnn.ParaGRU(3, 4, mode="newton", max_iters=1, on_nonconvergence="keep_last_iterate")
    with pytest.warns(flashrnn.NonConvergenceWarning, match="keep_last_iterate"):
        m(torch.randn(50, 2, 3) * 3)
    r = m.last_report[0]
    assert r.mode == "newton" and r.iterations == 1
    m2 = flashrnn.ParaGRU(3, 4, mode="newton", max_iters=1, on_nonconvergence="raise")
    m2.load_state_dict(m.state_dict())
    with pytest.raises(flashrnn.ConvergenceError):
        m2(torch.randn(50, 2, 3) * 3)
